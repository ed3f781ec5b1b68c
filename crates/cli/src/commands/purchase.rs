//! `obol buy inference|list|status|refill|cancel`: pools of pre-signed authorizations served by
//! the stack's buyer proxy. Signing happens here, with the user's key; the daemon only ever
//! receives the signed authorizations.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use obol_buyer::reconcile::pool_name;
use obol_buyer::{PresignOptions, auths, presign, probe};
use obol_control::purchase::{PurchasePayment, PurchaseRequest, PurchaseRequestSpec};
use obol_control::reconcile::parse_duration;
use obol_control::resource::{ConditionStatus, condition};
use obol_x402::money::{format_units, parse_units};
use obol_x402::primitives::U256;
use obol_x402::wire::v2;
use obol_x402::{LocalSigner, Token, TokenRegistry};
use serde_json::{Value, json};

use super::Context;
use super::buy::{choose, clean, known_token};
use super::stack::admin;
use crate::cli::{BuyInferenceArgs, BuyRefillArgs};
use crate::output;

/// Calls bought when neither --count nor --budget says.
const DEFAULT_COUNT: u32 = 50;
/// The most authorizations signed in one batch (obol-stack.md §2.4): 1000, or 500 for tokens
/// paid through Permit2 (larger payloads).
fn max_count(token: &Token) -> u32 {
    match token.transfer_method {
        obol_x402::token::TransferMethod::Permit2 => 500,
        obol_x402::token::TransferMethod::Eip3009 => 1000,
    }
}

/// Refuses a batch that would take a purchase past what one request may carry.
fn check_room(existing: usize, count: u32) -> anyhow::Result<()> {
    let max = obol_control::validate::MAX_PRE_SIGNED_AUTHS;
    if existing + count as usize > max {
        bail!(
            "the purchase already carries {existing} authorizations and holds at most {max}; cancel it and buy anew (or use another --name)"
        );
    }
    Ok(())
}
/// How long `buy inference|refill` waits for the proxy to serve the purchase.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The running stack's admin client and buyer proxy address.
fn stack(ctx: &Context) -> anyhow::Result<(obol_daemon::AdminClient, String)> {
    let (state, client) =
        admin(ctx)?.context("the stack is not running; start it with `obol stack up`")?;
    Ok((client, state.buyer))
}

/// `model` as a resource name: lower-case letters, digits and `-`.
fn name_for(model: &str) -> String {
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
fn call_count(
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
    match super::permit2::chain_by_id(ctx, token.chain_id)? {
        Some(client) => Ok(Some(client.token_balance(token.address, owner).await?)),
        None => Ok(None),
    }
}

/// The authorizations' lifetime in seconds.
fn ttl_secs(text: &str) -> anyhow::Result<u64> {
    let secs = text
        .parse::<u64>()
        .ok()
        .or_else(|| parse_duration(text))
        .with_context(|| format!("--ttl {text:?}: use seconds or 30m, 12h, 30d"))?;
    if secs < obol_buyer::presign::MIN_TTL_SECS {
        bail!(
            "--ttl {text:?} is under the {} s minimum",
            obol_buyer::presign::MIN_TTL_SECS
        );
    }
    Ok(secs)
}

/// Signs `count` authorizations paying `requirement`, with a progress bar on a terminal and
/// the time taken on stderr.
pub(super) fn sign(
    ctx: &Context,
    signer: &LocalSigner,
    requirement: &v2::PaymentRequirements,
    resource: Option<&v2::ResourceInfo>,
    count: u32,
    ttl: u64,
) -> anyhow::Result<Vec<obol_control::purchase::PreSignedAuth>> {
    let bar = if ctx.json || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(u64::from(count)).with_style(
            indicatif::ProgressStyle::with_template("signing {bar:30} {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
    };
    let started = Instant::now();
    let signed = presign(
        signer,
        requirement,
        resource,
        PresignOptions {
            count: count as usize,
            ttl_secs: ttl,
            now: obol_config::time::unix_now(),
        },
        &|n| bar.set_position(n as u64),
    )?;
    bar.finish_and_clear();
    if !ctx.json {
        output::note(&format!(
            "signed {count} authorizations in {} ms",
            started.elapsed().as_millis()
        ));
    }
    Ok(auths::to_resource(&signed)?)
}

/// Waits until the daemon serves the purchase at its current generation; fails on a step
/// that failed for it.
pub(super) async fn wait_ready(
    client: &obol_daemon::AdminClient,
    namespace: &str,
    name: &str,
) -> anyhow::Result<PurchaseRequest> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let purchase = client.get::<PurchaseRequestSpec>(namespace, name).await?;
        if purchase.status.observed_generation == purchase.metadata.generation {
            let conditions = &purchase.status.conditions;
            if condition(conditions, "Ready").is_some_and(|c| c.status == ConditionStatus::True) {
                return Ok(purchase);
            }
            if let Some(failed) = ["Probed", "AuthsSigned", "Configured"]
                .iter()
                .filter_map(|t| condition(conditions, t))
                .find(|c| c.status == ConditionStatus::False)
            {
                bail!(
                    "purchase {namespace}/{name} is not ready: {} ({}): {}; fix it or remove it with `obol buy cancel {name}`",
                    failed.type_,
                    failed.reason,
                    clean(&failed.message)
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "purchase {namespace}/{name} is not ready after {} s; see `obol buy status {name}`",
                READY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Live `{pool: (remaining, spent)}` from the buyer proxy.
pub(super) async fn live_counts(buyer: &str) -> HashMap<String, (u64, u64)> {
    let status: Option<Value> = async {
        reqwest::Client::new()
            .get(format!("http://{buyer}/status"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
    .await;
    status
        .as_ref()
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(pool, p)| {
            Some((
                pool.clone(),
                (p.get("remaining")?.as_u64()?, p.get("spent")?.as_u64()?),
            ))
        })
        .collect()
}

/// The price of one call of `purchase`, in its token when this build knows it.
fn price_of(purchase: &PurchaseRequest) -> String {
    let payment = &purchase.spec.payment;
    let tokens = TokenRegistry::builtin();
    let token = obol_x402::network::evm_chain_id(&payment.network)
        .ok()
        .zip(payment.asset.parse().ok())
        .and_then(|(chain, asset)| tokens.by_address(chain, asset));
    match (token, payment.price.parse::<U256>()) {
        (Some(t), Ok(price)) => format!("{} {}", format_units(price, t.decimals), t.symbol),
        _ => format!("{} atomic units of {}", payment.price, payment.asset),
    }
}

fn report(
    ctx: &Context,
    purchase: &PurchaseRequest,
    buyer: &str,
    what: &str,
) -> anyhow::Result<()> {
    let meta = &purchase.metadata;
    let model = purchase
        .status
        .public_model
        .clone()
        .unwrap_or_else(|| format!("paid/{}", purchase.spec.model));
    if ctx.json {
        output::json(&json!({
            "status": what, "name": meta.name, "namespace": meta.namespace,
            "publicModel": model, "endpoint": purchase.spec.endpoint,
            "price": price_of(purchase), "remaining": purchase.status.remaining,
            "spent": purchase.status.spent, "totalSigned": purchase.status.total_signed,
            "buyerUrl": format!("http://{buyer}/v1"),
        }))?;
    } else {
        println!(
            "{what} {}/{}: {} calls left at {} each",
            meta.namespace,
            meta.name,
            purchase.status.remaining,
            price_of(purchase)
        );
        println!(
            "  call it as model {} at http://{buyer}/v1 (OpenAI-compatible)",
            clean(&model)
        );
    }
    Ok(())
}

pub(crate) async fn inference(ctx: &Context, args: BuyInferenceArgs) -> anyhow::Result<ExitCode> {
    let (client, buyer) = stack(ctx)?;
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
    let choice = choose(&offered, None, &args.token)?;
    if let Some(agent_id) = args.expected_agent_id {
        super::discover::verify_seller(ctx, &endpoint, &choice.requirement, agent_id).await?;
    }
    let tokens = TokenRegistry::builtin();
    let (_, token) =
        known_token(&tokens, &choice.requirement).context("the chosen option's token")?;
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
        Err(e) if e.status == Some(404) => None,
        Err(e) => return Err(e.into()),
    };
    let payment = PurchasePayment {
        network: choice.requirement.network.clone(),
        pay_to: choice.requirement.pay_to.clone(),
        price: price.to_string(),
        asset: choice.requirement.asset.clone(),
        asset_symbol: Some(token.symbol.clone()),
        asset_decimals: Some(token.decimals),
        asset_transfer_method: Some(token.transfer_method.as_str().to_owned()),
        eip712_name: Some(token.eip712_name.clone()),
        eip712_version: Some(token.eip712_version.clone()),
    };
    if let Some(existing) = &existing
        && !args.replace
        && (existing.spec.endpoint != endpoint
            || existing.spec.model != model
            || existing.spec.payment.price != payment.price
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
            price_of(existing),
            clean(&existing.spec.endpoint)
        );
    }

    if let Some(existing) = existing.as_ref().filter(|_| !args.replace) {
        check_room(existing.spec.pre_signed_auths.len(), count)?;
    }
    let (signer, _) = super::wallet::load_signer(ctx, &args.sign.signer)?;
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
    let approval = super::permit2::needed(ctx, token, &signer, total).await?;
    if !ctx.json || !args.sign.yes {
        if let Some(approval) = &approval {
            output::note(&format!("permit2: {}", approval.describe(&signer)));
        }
        output::note(&format!(
            "seller:  {} (model {})",
            clean(&endpoint),
            clean(&model)
        ));
        output::note(&format!(
            "price:   {} per call on {} to {}",
            choice.price, choice.network, choice.requirement.pay_to
        ));
        output::note(&format!(
            "buy:     {count} calls = {}{}",
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
        return Ok(ExitCode::FAILURE);
    }
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
                    auto_refill: None,
                    payment,
                },
            );
            match client.create(&created).await {
                Ok(_) => {}
                // Another `buy` created it first: add this batch to theirs.
                Err(e) if e.status == Some(409) && e.message.ends_with("already exists") => {
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
    report(ctx, &ready, &buyer, "bought")?;
    Ok(ExitCode::SUCCESS)
}

/// Stores `purchase` with `signed` appended. When another command changed it since it was read
/// (a concurrent refill), reads it again and appends to that: no signed batch is lost.
async fn append(
    client: &obol_daemon::AdminClient,
    mut purchase: PurchaseRequest,
    signed: Vec<obol_control::purchase::PreSignedAuth>,
    count: u32,
    terms: &PurchasePayment,
) -> anyhow::Result<()> {
    let key = |pay: &PurchasePayment| {
        (
            obol_x402::network::normalize(&pay.network),
            pay.pay_to.to_ascii_lowercase(),
            pay.asset.to_ascii_lowercase(),
            pay.price.clone(),
        )
    };
    for _ in 0..5 {
        if key(&purchase.spec.payment) != key(terms) {
            bail!(
                "purchase {}/{} pays other terms than this batch was signed for (changed meanwhile?); nothing added (the signed authorizations are discarded)",
                purchase.metadata.namespace,
                purchase.metadata.name
            );
        }
        let mut next = purchase.clone();
        next.spec.count = count;
        next.spec.pre_signed_auths.extend(signed.iter().cloned());
        match client.apply(&next).await {
            Ok(_) => return Ok(()),
            Err(e) if e.status == Some(409) && e.message.contains("changed since it was read") => {
                let meta = &purchase.metadata;
                purchase = client
                    .get::<PurchaseRequestSpec>(&meta.namespace, &meta.name)
                    .await?;
                check_room(purchase.spec.pre_signed_auths.len(), count)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the purchase kept changing while this batch was being stored; run the command again")
}

async fn wait_gone(
    client: &obol_daemon::AdminClient,
    namespace: &str,
    name: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match client.get::<PurchaseRequestSpec>(namespace, name).await {
            Err(e) if e.status == Some(404) => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) if Instant::now() > deadline => {
                bail!("purchase {namespace}/{name} is still being deleted")
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub(crate) async fn refill(ctx: &Context, args: BuyRefillArgs) -> anyhow::Result<ExitCode> {
    let (client, buyer) = stack(ctx)?;
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
    let tokens = TokenRegistry::builtin();
    let (_, token) = known_token(&tokens, &last.accepted)
        .context("the purchase pays in a token this build does not know")?;
    let max = max_count(token);
    if !(1..=max).contains(&args.count) {
        bail!("--count must be between 1 and {max} for {}", token.symbol);
    }
    check_room(purchase.spec.pre_signed_auths.len(), args.count)?;
    let ttl = ttl_secs(&args.sign.ttl)?;
    let (signer, _) = super::wallet::load_signer(ctx, &args.sign.signer)?;
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
            price_of(&purchase)
        ));
    }
    if !output::confirm("Pre-sign and hand these to the buyer proxy?", args.sign.yes)? {
        output::note("nothing signed");
        return Ok(ExitCode::FAILURE);
    }
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
    report(ctx, &ready, &buyer, "refilled")?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let (client, buyer) = stack(ctx)?;
    let purchases = client.list::<PurchaseRequestSpec>().await?;
    let live = live_counts(&buyer).await;
    let rows: Vec<Value> = purchases
        .iter()
        .map(|p| {
            let meta = &p.metadata;
            let (remaining, spent) = live
                .get(&pool_name(&meta.namespace, &meta.name))
                .copied()
                .unwrap_or((u64::from(p.status.remaining), u64::from(p.status.spent)));
            let ready = condition(&p.status.conditions, "Ready")
                .is_some_and(|c| c.status == ConditionStatus::True);
            json!({"namespace": meta.namespace, "name": meta.name, "model": p.spec.model,
                   "endpoint": p.spec.endpoint, "price": price_of(p), "remaining": remaining,
                   "spent": spent, "ready": ready})
        })
        .collect();
    if ctx.json {
        output::json(&Value::Array(rows))?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no purchases; buy with `obol buy inference <seller-url>`");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<20} {:<14} {:>9} {:>6} {:<5} ENDPOINT",
        "NAME", "MODEL", "PRICE", "REMAINING", "SPENT", "READY"
    );
    for row in &rows {
        let s = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
        println!(
            "{:<24} {:<20} {:<14} {:>9} {:>6} {:<5} {}",
            format!("{}/{}", s("namespace"), s("name")),
            clean(&s("model")),
            s("price"),
            // serde_json's Display ignores widths: format the plain values.
            row["remaining"].as_u64().unwrap_or_default(),
            row["spent"].as_u64().unwrap_or_default(),
            row["ready"].as_bool().unwrap_or_default(),
            clean(&s("endpoint"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn status(ctx: &Context, namespace: &str, name: &str) -> anyhow::Result<ExitCode> {
    let (client, buyer) = stack(ctx)?;
    let mut purchase = client.get::<PurchaseRequestSpec>(namespace, name).await?;
    if let Some((remaining, spent)) = live_counts(&buyer)
        .await
        .get(&pool_name(namespace, name))
        .copied()
    {
        purchase.status.remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
        purchase.status.spent = u32::try_from(spent).unwrap_or(u32::MAX);
    }
    // The authorizations are bulky and say nothing a user needs here.
    purchase.spec.pre_signed_auths.clear();
    if ctx.json {
        output::json(&serde_json::to_value(&purchase)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let model = format!("paid/{}", purchase.spec.model);
    println!(
        "{namespace}/{name}: {} → {}",
        clean(&model),
        clean(&purchase.spec.endpoint)
    );
    println!(
        "  price {} on {} to {}",
        price_of(&purchase),
        purchase.spec.payment.network,
        purchase.spec.payment.pay_to
    );
    println!(
        "  remaining {}, spent {}, signed {}{}",
        purchase.status.remaining,
        purchase.status.spent,
        purchase.status.total_signed,
        purchase
            .status
            .signer_address
            .as_deref()
            .map(|s| format!(" by {s}"))
            .unwrap_or_default()
    );
    println!("  buyer proxy: http://{buyer}/v1");
    for c in &purchase.status.conditions {
        println!(
            "  {:<12} {:<7} {:<16} {}",
            c.type_,
            format!("{:?}", c.status),
            c.reason,
            clean(&c.message)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn cancel(
    ctx: &Context,
    namespace: &str,
    name: &str,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let (client, buyer) = stack(ctx)?;
    client.get::<PurchaseRequestSpec>(namespace, name).await?;
    let remaining = live_counts(&buyer)
        .await
        .get(&pool_name(namespace, name))
        .map_or(0, |(r, _)| *r);
    if !output::confirm(
        &format!(
            "Cancel purchase {namespace}/{name} and drop its {remaining} unspent authorizations?"
        ),
        yes,
    )? {
        output::note("not cancelled");
        return Ok(ExitCode::FAILURE);
    }
    client
        .delete::<PurchaseRequestSpec>(namespace, name)
        .await?;
    wait_gone(&client, namespace, name).await?;
    if ctx.json {
        output::json(&json!({"cancelled": format!("{namespace}/{name}"), "dropped": remaining}))?;
    } else {
        println!(
            "purchase {namespace}/{name} cancelled; {remaining} unspent authorizations dropped"
        );
        if remaining > 0 {
            println!("  (they stay valid signatures until they expire; none is kept anywhere)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_models() {
        assert_eq!(name_for("Qwen3:0.6B"), "qwen3-0-6b");
        assert_eq!(name_for("--"), "purchase");
        assert_eq!(name_for("meta/llama-3"), "meta-llama-3");
    }

    #[test]
    fn counts_follow_count_budget_or_default() {
        let tokens = TokenRegistry::builtin();
        let usdc = tokens
            .resolve("USDC", "base-sepolia")
            .expect("base-sepolia USDC is built in");
        let price = U256::from(1000u64); // 0.001 USDC
        assert_eq!(call_count(None, None, price, usdc).unwrap(), DEFAULT_COUNT);
        assert_eq!(call_count(Some(5), None, price, usdc).unwrap(), 5);
        assert_eq!(call_count(None, Some("0.0055"), price, usdc).unwrap(), 5);
        assert_eq!(call_count(Some(5), Some("0.005"), price, usdc).unwrap(), 5);
        assert!(
            call_count(Some(6), Some("0.005"), price, usdc)
                .unwrap_err()
                .to_string()
                .contains("over --budget")
        );
        assert!(
            call_count(None, Some("0.0001"), price, usdc)
                .unwrap_err()
                .to_string()
                .contains("does not cover one call")
        );
        assert!(call_count(Some(0), None, price, usdc).is_err());
        assert_eq!(call_count(None, Some("1000"), price, usdc).unwrap(), 1000);
        assert!(
            call_count(Some(1001), None, price, usdc)
                .unwrap_err()
                .to_string()
                .contains("between 1 and 1000 for USDC")
        );
        let obol = TokenRegistry::builtin();
        let obol = obol.resolve("OBOL", "base-sepolia").unwrap();
        assert_eq!(call_count(None, Some("1000000"), price, obol).unwrap(), 500);
        assert!(check_room(9_999, 1).is_ok());
        assert!(
            check_room(9_999, 2)
                .unwrap_err()
                .to_string()
                .contains("holds at most 10000")
        );
    }

    #[test]
    fn ttl_accepts_seconds_and_durations_above_the_floor() {
        assert_eq!(ttl_secs("3600").unwrap(), 3600);
        assert_eq!(ttl_secs("30d").unwrap(), 2_592_000);
        assert!(ttl_secs("5m").is_err());
        assert!(ttl_secs("soon").is_err());
    }
}
