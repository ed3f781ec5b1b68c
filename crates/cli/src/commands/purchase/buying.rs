//! `buy inference` and `buy refill`: decide what to buy, sign it here, hand it to the stack.

use super::*;

/// `model` as a resource name: lower-case letters, digits and `-`.
pub(super) fn name_for(model: &str) -> String {
    let mut name = String::new();
    for c in model.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name: String = name.trim_matches('-').chars().take(63).collect();
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "purchase".to_owned()
    } else {
        name.to_owned()
    }
}

/// The seller's offer URL and model, using its catalog (`/api/services.json`) when it has one.
async fn resolve_offer(
    http: &reqwest::Client,
    seller: &str,
    model: Option<&str>,
) -> anyhow::Result<(String, String)> {
    let url = url::Url::parse(seller).with_context(|| format!("seller URL {seller:?}"))?;
    let catalog_url = url.join("/api/services.json")?;
    let catalog: Option<Value> = match http.get(catalog_url.clone()).send().await {
        Ok(r) if r.status().is_success() => r.json().await.ok(),
        _ => None,
    };
    let entries: Vec<&Value> = catalog
        .as_ref()
        .and_then(|c| c.get("services")?.as_array())
        .map(|s| s.iter().filter(|e| e.get("model").is_some()).collect())
        .unwrap_or_default();
    let text = |e: &Value, key: &str| e.get(key).and_then(Value::as_str).map(str::to_owned);
    let trusted = url.path().contains("/services/");
    let entry = entries.iter().find(|e| {
        let same_endpoint = text(e, "endpoint").is_some_and(|ep| seller.starts_with(&ep));
        let same_model = match (model, text(e, "model")) {
            (Some(want), Some(has)) => want.eq_ignore_ascii_case(&has),
            _ => false,
        };
        if trusted { same_endpoint } else { same_model }
    });
    let models = || {
        let names: Vec<String> = entries.iter().filter_map(|e| text(e, "model")).collect();
        clean(&names.join(", "))
    };
    let entry = match (entry, model, trusted) {
        (Some(e), _, _) => Some(*e),
        (None, None, false) if entries.len() == 1 => Some(entries[0]),
        (None, None, false) if entries.len() > 1 => bail!(
            "the seller sells several models ({}); pick one with --model",
            models()
        ),
        (None, Some(want), false) if !entries.is_empty() => bail!(
            "the seller's catalog has no model {:?} (it sells {})",
            clean(want),
            models()
        ),
        _ => None,
    };
    let endpoint = match entry.and_then(|e| text(e, "endpoint")) {
        Some(endpoint) if !trusted => endpoint,
        _ => seller.trim_end_matches('/').to_owned(),
    };
    let offered_model = entry.and_then(|e| text(e, "model"));
    let model = match (model, offered_model) {
        (Some(want), Some(has)) if !want.eq_ignore_ascii_case(&has) => bail!(
            "the seller's offer at {} serves model {:?}, not {want:?}",
            clean(&endpoint),
            clean(&has)
        ),
        (Some(want), _) => want.to_owned(),
        (None, Some(has)) => has,
        (None, None) => bail!("say which model to buy with --model"),
    };
    Ok((endpoint, model))
}

/// How many calls to buy: --count, or as many as --budget allows, or the default.
pub(super) fn call_count(
    count: Option<u32>,
    budget: Option<&str>,
    price: U256,
    token: &Token,
) -> anyhow::Result<u32> {
    let budget = budget
        .map(|b| parse_units(b, token.decimals).with_context(|| format!("--budget {b:?}")))
        .transpose()?;
    let max = max_count(token);
    let n = match (count, budget) {
        (Some(n), Some(budget)) => {
            let total = price.saturating_mul(U256::from(n));
            if total > budget {
                bail!(
                    "{n} calls at {} {} cost {} {}, over --budget {}",
                    format_units(price, token.decimals),
                    token.symbol,
                    format_units(total, token.decimals),
                    token.symbol,
                    format_units(budget, token.decimals)
                );
            }
            n
        }
        (Some(n), None) => n,
        (None, Some(budget)) => {
            let n = if price.is_zero() {
                U256::from(max)
            } else {
                budget / price
            };
            if n.is_zero() {
                bail!(
                    "--budget {} {} does not cover one call at {} {}",
                    format_units(budget, token.decimals),
                    token.symbol,
                    format_units(price, token.decimals),
                    token.symbol
                );
            }
            u32::try_from(n.min(U256::from(max))).unwrap_or(max)
        }
        (None, None) => DEFAULT_COUNT,
    };
    if !(1..=max).contains(&n) {
        bail!("--count must be between 1 and {max} for {}", token.symbol);
    }
    Ok(n)
}

/// The signer's balance of the token, when an RPC endpoint for the chain is configured.
async fn balance_of(
    ctx: &Context,
    token: &Token,
    owner: obol_x402::primitives::Address,
) -> anyhow::Result<Option<U256>> {
    match crate::commands::permit2::chain_by_id(ctx, token.chain_id)? {
        Some(client) => Ok(Some(client.token_balance(token.address, owner).await?)),
        None => Ok(None),
    }
}

pub(crate) async fn inference(ctx: &Context, args: BuyInferenceArgs) -> anyhow::Result<ExitCode> {
    let signer_args = &args.sign.signer;
    let bought = buy_pool(
        ctx,
        &args,
        || Ok(crate::commands::wallet::load_signer(ctx, signer_args)?.0),
        |_, _, _| Ok(()),
    )
    .await?;
    match bought {
        None => Ok(ExitCode::FAILURE),
        Some((ready, buyer)) => {
            report(ctx, &ready, &buyer, "bought")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `buy inference` without its report: resolves the seller's model, probes it, checks the
/// count, the terms of a purchase it tops up and the balance, asks (unless `--yes`), lets
/// `admit` refuse the batch (its choice, total cost, and whether a Permit2 approval would be
/// sent) before anything is sent or signed, pre-signs with `signer` and hands the batch to the
/// stack. The purchase once Ready and the buyer
/// proxy's address, or `None` when the user said no.
pub(crate) async fn buy_pool(
    ctx: &Context,
    args: &BuyInferenceArgs,
    signer: impl FnOnce() -> anyhow::Result<LocalSigner>,
    admit: impl FnOnce(&crate::commands::buy::Choice, U256, bool) -> anyhow::Result<()>,
) -> anyhow::Result<Option<(PurchaseRequest, String)>> {
    let (client, buyer) = stack(ctx).await?;
    let http = reqwest::Client::builder()
        .user_agent(
            args.user_agent
                .as_deref()
                .unwrap_or(probe::DEFAULT_USER_AGENT),
        )
        .timeout(Duration::from_secs(15))
        .build()?;
    let (endpoint, model) = resolve_offer(&http, &args.seller, args.model.as_deref()).await?;
    let prober = probe::Prober::new(args.user_agent.as_deref(), Duration::from_secs(15))?;
    let offered = prober.chat(&endpoint).await?;
    let tokens = tokens::confirm(ctx, &args.token, &offered).await?;
    let choice = crate::commands::buy::choose_scheme(
        &offered,
        None,
        &args.token.symbol,
        &tokens,
        args.metered,
    )?;
    if let Some(agent_id) = args.expected_agent_id {
        crate::commands::discover::verify_seller(ctx, &endpoint, &choice.requirement, agent_id)
            .await?;
    }
    let token = &choice.token;
    let price = choice.requirement.amount();
    let count = call_count(args.count, args.budget.as_deref(), price, token)?;
    let total = price.saturating_mul(U256::from(count));
    let ttl = ttl_secs(&args.sign.ttl)?;
    // The model may already be bought under another name: top that purchase up (same seller)
    // or say who owns `paid/<model>`, before anything is signed.
    let owner = client
        .list::<PurchaseRequestSpec>()
        .await?
        .into_iter()
        .find(|p| !p.metadata.is_deleting() && p.spec.model.eq_ignore_ascii_case(&model));
    let name = match (&args.name, &owner) {
        (Some(name), _) => name.clone(),
        (None, Some(owner))
            if owner.metadata.namespace == args.namespace && owner.spec.endpoint == endpoint =>
        {
            owner.metadata.name.clone()
        }
        (None, _) => name_for(&model),
    };
    if let Some(owner) = &owner
        && !args.replace
        && (owner.metadata.namespace != args.namespace || owner.metadata.name != name)
    {
        bail!(
            "paid/{} is already bought by purchase {}/{} (from {}); top it up with `obol buy refill {} --count N`, or cancel it first",
            clean(&model),
            owner.metadata.namespace,
            owner.metadata.name,
            clean(&owner.spec.endpoint),
            owner.metadata.name
        );
    }

    let existing = match client
        .get::<PurchaseRequestSpec>(&args.namespace, &name)
        .await
    {
        Ok(p) => Some(p),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let payment = PurchasePayment {
        asset_symbol: Some(token.symbol.clone()),
        asset_decimals: Some(token.decimals),
        asset_transfer_method: Some(token.transfer_method.as_str().to_owned()),
        eip712_name: Some(token.eip712_name.clone()),
        eip712_version: Some(token.eip712_version.clone()),
        scheme: choice.metered.then(|| "upto".to_owned()),
        ..PurchasePayment::of(&choice.requirement)
    };
    if let Some(existing) = &existing
        && !args.replace
        && (existing.spec.endpoint != endpoint
            || existing.spec.model != model
            || existing.spec.payment.price != payment.price
            || existing.spec.payment.scheme() != payment.scheme()
            || !existing
                .spec
                .payment
                .pay_to
                .eq_ignore_ascii_case(&payment.pay_to)
            || !existing
                .spec
                .payment
                .asset
                .eq_ignore_ascii_case(&payment.asset))
    {
        bail!(
            "purchase {}/{name} exists with other terms ({} for {}); pass --replace or another --name",
            args.namespace,
            price_of(&tokens, existing),
            clean(&existing.spec.endpoint)
        );
    }

    if let Some(existing) = existing.as_ref().filter(|_| !args.replace) {
        check_room(existing.spec.pre_signed_auths.len(), count)?;
    }
    let signer = signer()?;
    let balance = match balance_of(ctx, token, signer.address()).await {
        Ok(balance) => balance,
        Err(e) => {
            output::note(&format!("balance not checked: {e:#}"));
            None
        }
    };
    let units = |v: U256| format!("{} {}", format_units(v, token.decimals), token.symbol);
    if let Some(balance) = balance
        && balance < total
    {
        bail!(
            "{} holds {}, less than the {} for {count} calls; fund it first",
            signer.address(),
            units(balance),
            units(total)
        );
    }
    let approval = crate::commands::permit2::needed(ctx, token, &signer, total).await?;
    if !ctx.json || !args.sign.yes {
        if let Some(approval) = &approval {
            output::note(&format!("permit2: {}", approval.describe(&signer)));
        }
        output::note(&format!(
            "seller:  {} (model {})",
            clean(&endpoint),
            clean(&model)
        ));
        let metered = if choice.metered {
            ", charged per token"
        } else {
            ""
        };
        output::note(&format!(
            "price:   {} per call{metered} on {} to {}",
            choice.price, choice.network, choice.requirement.pay_to
        ));
        output::note(&format!(
            "buy:     {count} calls = {}{}{}",
            if choice.metered { "up to " } else { "" },
            units(total),
            balance.map_or_else(
                || " (balance not checked: no RPC endpoint for this chain)".to_owned(),
                |b| format!(" (balance {})", units(b))
            )
        ));
        output::note(&format!(
            "signer:  {} · valid {} · {}",
            signer.address(),
            args.sign.ttl,
            if existing.is_some() && !args.replace {
                "top-up"
            } else {
                "new purchase"
            }
        ));
    }
    if !output::confirm("Pre-sign and hand these to the buyer proxy?", args.sign.yes)? {
        output::note("nothing signed");
        return Ok(None);
    }
    admit(&choice, total, approval.is_some())?;
    if let Some(approval) = &approval {
        let hash = approval.send(&signer).await?;
        output::note(&format!(
            "approved Permit2 for {}: transaction {hash}",
            token.symbol
        ));
    }
    let signed = sign(
        ctx,
        &signer,
        &choice.requirement,
        Some(&offered.resource),
        count,
        ttl,
    )?;

    let terms = payment.clone();
    match existing {
        Some(existing) if !args.replace => {
            append(&client, existing, signed, count, &terms).await?;
        }
        replaced => {
            if replaced.is_some() {
                client
                    .delete::<PurchaseRequestSpec>(&args.namespace, &name)
                    .await?;
                wait_gone(&client, &args.namespace, &name).await?;
            }
            let created = PurchaseRequest::new(
                &args.namespace,
                &name,
                PurchaseRequestSpec {
                    endpoint,
                    model,
                    count,
                    pre_signed_auths: signed.clone(),
                    auto_refill: refill_policy(&args.refill, count, token)?,
                    payment,
                },
            );
            match client.create(&created).await {
                Ok(_) => {}
                // Another `buy` created it first: add this batch to theirs.
                Err(e) if e.is_already_exists() => {
                    let theirs = client
                        .get::<PurchaseRequestSpec>(&args.namespace, &name)
                        .await?;
                    append(&client, theirs, signed, count, &terms).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let ready = wait_ready(&client, &args.namespace, &name).await?;
    Ok(Some((ready, buyer)))
}

/// The autoRefill policy of `--refill-*` (none without `--refill-below`), its daily cap in
/// `token`'s atomic units.
fn refill_policy(
    flags: &crate::cli::RefillFlags,
    count: u32,
    token: &obol_x402::Token,
) -> anyhow::Result<Option<obol_control::purchase::AutoRefill>> {
    let Some(threshold) = flags.refill_below else {
        return Ok(None);
    };
    let per_day = flags.refill_max_per_day.as_deref().unwrap_or_default();
    let atomic = obol_x402::money::parse_units(per_day, token.decimals)
        .with_context(|| format!("--refill-max-per-day {per_day:?} in {}", token.symbol))?;
    Ok(Some(obol_control::purchase::AutoRefill {
        enabled: true,
        threshold,
        count: flags.refill_count.unwrap_or(count),
        max_total: flags.refill_max_total,
        max_spend_per_day: Some(atomic.to_string()),
    }))
}

pub(crate) async fn refill(ctx: &Context, args: BuyRefillArgs) -> anyhow::Result<ExitCode> {
    let signer_args = &args.sign.signer;
    let refilled = refill_pool(
        ctx,
        &args,
        || Ok(crate::commands::wallet::load_signer(ctx, signer_args)?.0),
        |_, _| Ok(()),
    )
    .await?;
    match refilled {
        None => Ok(ExitCode::FAILURE),
        Some((ready, buyer)) => {
            report(ctx, &ready, &buyer, "refilled")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `buy refill` without its report: the purchase's last terms, `count` more authorizations
/// signed by `signer` once `admit` accepted them (their token and requirement) and the user
/// said yes (or `--yes`); the purchase once Ready and the buyer proxy's address, or `None`.
pub(crate) async fn refill_pool(
    ctx: &Context,
    args: &BuyRefillArgs,
    signer: impl FnOnce() -> anyhow::Result<LocalSigner>,
    admit: impl FnOnce(&obol_x402::Token, &v2::PaymentRequirements) -> anyhow::Result<()>,
) -> anyhow::Result<Option<(PurchaseRequest, String)>> {
    let (client, buyer) = stack(ctx).await?;
    let purchase = client
        .get::<PurchaseRequestSpec>(&args.namespace, &args.name)
        .await?;
    // The same terms as the last batch: its signed requirement and resource.
    let last = purchase
        .spec
        .pre_signed_auths
        .last()
        .and_then(|a| a.payment.clone())
        .context("the purchase holds no signed payment to copy the terms from")?;
    let last: v2::PaymentPayload = serde_json::from_value(Value::Object(last))
        .context("the purchase's last authorization is unreadable")?;
    let tokens = tokens::registry(ctx)?;
    let (_, token) = known_token(&tokens, &last.accepted)
        .context("the purchase pays in a token this build does not know")?;
    let max = max_count(token);
    if !(1..=max).contains(&args.count) {
        bail!("--count must be between 1 and {max} for {}", token.symbol);
    }
    check_room(purchase.spec.pre_signed_auths.len(), args.count)?;
    let ttl = ttl_secs(&args.sign.ttl)?;
    let signer = signer()?;
    if purchase
        .status
        .signer_address
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case(&signer.address().to_string()))
    {
        output::note(&format!(
            "note: this purchase was signed by {}; {} signs the refill",
            purchase
                .status
                .signer_address
                .as_deref()
                .unwrap_or_default(),
            signer.address()
        ));
    }
    if !ctx.json || !args.sign.yes {
        output::note(&format!(
            "refill {}/{}: {} more calls at {}",
            args.namespace,
            args.name,
            args.count,
            price_of(&tokens, &purchase)
        ));
    }
    if !output::confirm("Pre-sign and hand these to the buyer proxy?", args.sign.yes)? {
        output::note("nothing signed");
        return Ok(None);
    }
    admit(token, &last.accepted)?;
    let signed = sign(
        ctx,
        &signer,
        &last.accepted,
        last.resource.as_ref(),
        args.count,
        ttl,
    )?;
    let terms = purchase.spec.payment.clone();
    append(&client, purchase, signed, args.count, &terms).await?;
    let ready = wait_ready(&client, &args.namespace, &args.name).await?;
    Ok(Some((ready, buyer)))
}
