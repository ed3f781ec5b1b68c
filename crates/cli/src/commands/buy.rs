//! `obol buy`: paying x402 sellers.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
pub(super) use obol_buyer::seller::receipt_of;
use obol_buyer::seller::{self, PaidAnswer};
use obol_buyer::{Offered, payment_header, probe};
use obol_x402::money::{format_units, parse_units};
use obol_x402::signer::{ValidityWindow, prepare_payment, random_nonce};
use obol_x402::wire::v2;
use obol_x402::{LocalSigner, Token, TokenRegistry, network};
use serde_json::json;

use super::{Context, purchase};
use crate::cli::{BuyCommand, BuyPayArgs, BuyProbeArgs};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: BuyCommand) -> anyhow::Result<ExitCode> {
    match command {
        BuyCommand::Probe(args) => probe_command(ctx, args).await,
        BuyCommand::Pay(args) => pay(ctx, args).await,
        BuyCommand::Inference(args) => purchase::inference(ctx, *args).await,
        BuyCommand::Discover(args) => super::discover::discover(ctx, &args).await,
        BuyCommand::List => purchase::list(ctx).await,
        BuyCommand::Status { name, namespace } => purchase::status(ctx, &namespace, &name).await,
        BuyCommand::Refill(args) => purchase::refill(ctx, args).await,
        BuyCommand::Cancel {
            name,
            namespace,
            yes,
        } => purchase::cancel(ctx, &namespace, &name, yes).await,
    }
}

/// The network and token of `requirement`, when this build knows both.
pub(super) fn known_token<'t>(
    tokens: &'t TokenRegistry,
    requirement: &v2::PaymentRequirements,
) -> Option<(&'static network::Network, &'t Token)> {
    let known = network::resolve(&requirement.network).ok()?;
    let asset = requirement.asset_address().ok()?;
    Some((known, tokens.by_address(known.chain_id?, asset)?))
}

/// `0.001 USDC`, or the atomic amount and asset address for a token this build does not know.
pub(super) fn human_price(tokens: &TokenRegistry, requirement: &v2::PaymentRequirements) -> String {
    match known_token(tokens, requirement) {
        Some((_, token)) => format!(
            "{} {}",
            format_units(requirement.amount(), token.decimals),
            token.symbol
        ),
        None => format!(
            "{} atomic units of {}",
            requirement.amount(),
            requirement.asset
        ),
    }
}

async fn probe_command(ctx: &Context, args: BuyProbeArgs) -> anyhow::Result<ExitCode> {
    let prober = probe::Prober::new(args.user_agent.as_deref(), Duration::from_secs(15))?;
    let offered = if args.chat {
        prober.chat(&args.url).await?
    } else {
        prober.get(&args.url).await?
    };
    let tokens = super::tokens::registry(ctx)?;
    if ctx.json {
        let accepts: Vec<serde_json::Value> = offered
            .accepts
            .iter()
            .map(|r| json!({"price": human_price(&tokens, r), "requirement": r}))
            .collect();
        output::json(&json!({
            "x402Version": offered.version,
            "resource": offered.resource,
            "accepts": accepts,
        }))?;
    } else {
        println!(
            "x402 v{} — {}",
            offered.version,
            clean(&offered.resource.url)
        );
        for requirement in &offered.accepts {
            let network = network::resolve(&requirement.network)
                .map_or(requirement.network.as_str(), |n| n.name);
            let line = format!(
                "  {} on {network} to {} ({}, valid {} s)",
                human_price(&tokens, requirement),
                requirement.pay_to,
                requirement.scheme,
                requirement.max_timeout_seconds
            );
            println!("{}", clean(&line));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The longest validity window `buy pay` signs, whatever the seller asks.
const MAX_VALIDITY_SECS: u64 = 3600;

/// Seller-supplied text made safe for a terminal: control characters (ANSI escapes, newlines)
/// are shown escaped, never interpreted.
pub(super) fn clean(text: &str) -> String {
    obol_config::text::printable(text, usize::MAX)
}

/// The option to pay and its human price, or why none is acceptable.
pub(super) struct Choice {
    pub(super) requirement: v2::PaymentRequirements,
    /// The token it pays in (a metered payment moves it through Permit2, whatever the token's
    /// own method).
    pub(super) token: Token,
    /// `0.001 USDC`, or `up to 0.002458 USDC` for a metered option.
    pub(super) price: String,
    pub(super) network: &'static str,
    /// A metered (`upto`) option: the price is a ceiling, the receipt says what was charged.
    pub(super) metered: bool,
}

impl Choice {
    /// `atomic` units of the chosen token, as text (`0.000023 USDC`).
    pub(super) fn amount_text(&self, atomic: obol_x402::primitives::U256) -> String {
        format!(
            "{} {}",
            format_units(atomic, self.token.decimals),
            self.token.symbol
        )
    }
}

/// The first `exact` option in `symbol` on a known network costing at most `max_amount` units
/// (any price when `None`), among the tokens of `tokens`.
pub(super) fn choose(
    offered: &Offered,
    max_amount: Option<&str>,
    symbol: &str,
    tokens: &TokenRegistry,
) -> anyhow::Result<Choice> {
    choose_scheme(offered, max_amount, symbol, tokens, false)
}

/// [`choose`], or with `metered` the first `upto` option instead (its ceiling at most
/// `max_amount`).
pub(super) fn choose_scheme(
    offered: &Offered,
    max_amount: Option<&str>,
    symbol: &str,
    tokens: &TokenRegistry,
    metered: bool,
) -> anyhow::Result<Choice> {
    let wanted = if metered { "upto" } else { "exact" };
    let mut refusals = Vec::new();
    for requirement in &offered.accepts {
        let Some((known, token)) = known_token(tokens, requirement) else {
            refusals.push(format!(
                "{} on {}: unknown token or network (a token outside the built-in table is paid with --token-address)",
                requirement.asset, requirement.network
            ));
            continue;
        };
        if !token.symbol.eq_ignore_ascii_case(symbol) {
            refusals.push(format!(
                "{} on {}: not {symbol} (--token)",
                human_price(tokens, requirement),
                known.name
            ));
            continue;
        }
        let cap = max_amount
            .map(|max| {
                parse_units(max, token.decimals)
                    .with_context(|| format!("--max-amount {max:?} in {}", token.symbol))
            })
            .transpose()?;
        let price = human_price(tokens, requirement);
        if requirement
            .pay_to
            .parse::<obol_x402::primitives::Address>()
            .is_err()
        {
            refusals.push(format!("{price}: payTo is not an address"));
        } else if requirement.scheme != wanted {
            let why = match requirement.scheme.as_str() {
                "upto" => "metered: pay it with --metered",
                "exact" => "not metered (--metered pays upto only)",
                _ => "unsupported",
            };
            refusals.push(format!("{price}: scheme {:?} {why}", requirement.scheme));
        } else if let Some(cap) = cap
            && requirement.amount() > cap
        {
            refusals.push(format!(
                "{price} on {} exceeds --max-amount {}",
                known.name,
                max_amount.unwrap_or_default()
            ));
        } else {
            let mut token = token.clone();
            let price = if metered {
                token.transfer_method = obol_x402::TransferMethod::Permit2;
                format!("up to {price}")
            } else {
                price
            };
            return Ok(Choice {
                requirement: requirement.clone(),
                token,
                price,
                network: known.name,
                metered,
            });
        }
    }
    bail!("refusing to pay: {}", clean(&refusals.join("; ")))
}

fn body_of(data: Option<&str>) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(match data {
        None => None,
        Some("@-") => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body)?;
            Some(body)
        }
        Some(text) => match text.strip_prefix('@') {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {path}"))?),
            None => Some(text.as_bytes().to_vec()),
        },
    })
}

/// An HTTP call to make, paid when the seller asks.
pub(super) struct Call {
    pub(super) method: reqwest::Method,
    pub(super) url: String,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) body: Option<Vec<u8>>,
}

/// A paid call's outcome.
pub(super) struct Paid {
    /// The seller's last answer.
    pub(super) response: reqwest::Response,
    /// What was paid.
    pub(super) choice: Choice,
    /// Who paid.
    pub(super) payer: obol_x402::primitives::Address,
    /// The settlement receipt, if the seller sent one.
    pub(super) receipt: Option<obol_x402::wire::SettleResponse>,
    /// Set while the settlement may still land.
    pub(super) pending: Option<seller::Pending>,
    /// How many times the same payment was sent again.
    pub(super) retries: u32,
}

impl Paid {
    /// One line saying what happened to the money (seller text escaped).
    pub(super) fn note(&self) -> String {
        let Self {
            response,
            choice,
            receipt,
            pending,
            retries,
            ..
        } = self;
        let retried = if *retries > 0 {
            format!(" (the same payment sent {} times)", retries + 1)
        } else {
            String::new()
        };
        let served = response.status().is_success();
        let note = match (pending, receipt) {
            (Some(pending), _) if served => format!(
                "served; settlement pending, transaction {} — {} on {} to {}, not yet confirmed",
                pending.transaction.as_deref().unwrap_or("not named yet"),
                choice.price,
                choice.network,
                choice.requirement.pay_to
            ),
            (Some(pending), _) => format!(
                "settlement pending, transaction {} — {} on {} to {} may still be charged, but the \
                 seller has not served the call{retried}; not signed again (check the transaction \
                 before paying for this call anew)",
                pending.transaction.as_deref().unwrap_or("not named yet"),
                choice.price,
                choice.network,
                choice.requirement.pay_to
            ),
            (None, Some(r)) if r.success && choice.metered => format!(
                "paid {} of {} on {} to {} — {}{retried}",
                r.amount.map_or_else(
                    || "an unstated amount".to_owned(),
                    |a| choice.amount_text(a.get())
                ),
                choice.price,
                choice.network,
                choice.requirement.pay_to,
                if r.transaction.is_empty() {
                    "nothing used, no transaction".to_owned()
                } else {
                    format!("transaction {}", r.transaction)
                }
            ),
            (None, Some(r)) if r.success => format!(
                "paid {} on {} to {} — transaction {}{retried}",
                choice.price, choice.network, choice.requirement.pay_to, r.transaction
            ),
            (None, Some(r)) => format!(
                "payment not settled: {} (not retried: a new signature could pay twice)",
                r.error_reason.as_deref().unwrap_or("no reason given")
            ),
            (None, None) if served => {
                format!("{}: the seller sent no payment receipt", response.status())
            }
            (None, None) => format!(
                "{}: the seller did not accept the payment (not retried)",
                response.status()
            ),
        };
        clean(&note)
    }

    /// The report of `--json` and of the MCP tools: price, network, payTo, payer, retries,
    /// receipt, pending.
    pub(super) fn report(&self) -> serde_json::Value {
        let summary = json!({
            "price": self.choice.price, "network": self.choice.network,
            "payTo": self.choice.requirement.pay_to,
            "payer": self.payer.to_checksum(None), "retries": self.retries,
        });
        let pending = self.pending.as_ref().map(|p| {
            json!({"transaction": p.transaction, "retries": self.retries, "message": self.note()})
        });
        json!({"payment": summary, "receipt": self.receipt, "pending": pending})
    }
}

/// How a call ended.
pub(super) enum Called {
    /// The seller did not ask for a payment; nothing was paid.
    Free(reqwest::Response),
    /// It asked, and was paid.
    Paid(Box<Paid>),
}

/// Makes `call`; when the seller answers 402, `choose`s an option, gets the signer, sees to a
/// Permit2 approval (`approve` decides whether to send one), lets `commit` refuse or count the
/// payment, signs it and sends the call again with it (again with the same payment while the seller says its settlement is
/// under way; nothing is ever signed twice).
pub(super) async fn call_paying(
    ctx: &Context,
    client: &reqwest::Client,
    call: &Call,
    choose: impl AsyncFnOnce(&Offered) -> anyhow::Result<Choice>,
    signer: impl FnOnce() -> anyhow::Result<LocalSigner>,
    approve: impl FnOnce(&super::permit2::Approval, &LocalSigner) -> anyhow::Result<bool>,
    commit: impl FnOnce(&Choice) -> anyhow::Result<()>,
) -> anyhow::Result<Called> {
    let send = |payment: Option<&(&'static str, String)>| {
        let mut request = client
            .request(call.method.clone(), &call.url)
            .headers(call.headers.clone());
        if let Some(body) = &call.body {
            request = request.body(body.clone());
        }
        if let Some((name, value)) = payment {
            request = request.header(*name, value);
        }
        seller::send(request)
    };
    let first = send(None).await.context("calling the seller")?;
    if first.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
        return Ok(Called::Free(first));
    }
    let offered = probe::read_offer(first, &call.url).await?;
    let choice = choose(&offered).await?;
    let signer = signer()?;
    let token = &choice.token;
    if let Some(approval) =
        super::permit2::needed(ctx, token, &signer, choice.requirement.amount()).await?
    {
        if !approve(&approval, &signer)? {
            bail!(
                "not paid: paying in {} needs the Permit2 approval",
                token.symbol
            );
        }
        let hash = approval.send(&signer).await?;
        output::note(&format!(
            "approved Permit2 for {}: transaction {hash}",
            token.symbol
        ));
    }
    commit(&choice)?;
    let header = sign_one(&signer, &offered, &choice.requirement)?;
    let PaidAnswer {
        response,
        retries,
        pending,
    } = async {
        let first = send(Some(&header)).await?;
        seller::until_settled(first, || send(Some(&header)), || {}).await
    }
    .await
    .context("calling the seller with the payment")?;
    let receipt = receipt_of(response.headers());
    Ok(Called::Paid(Box::new(Paid {
        response,
        choice,
        payer: signer.address(),
        receipt,
        pending,
        retries,
    })))
}

async fn pay(ctx: &Context, args: BuyPayArgs) -> anyhow::Result<ExitCode> {
    let body = body_of(args.data.as_deref())?;
    let method: reqwest::Method = args
        .method
        .as_deref()
        .unwrap_or(if body.is_some() { "POST" } else { "GET" })
        .to_ascii_uppercase()
        .parse()
        .context("--method")?;
    let mut headers = reqwest::header::HeaderMap::new();
    for line in &args.headers {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("--header {line:?} is not `Name: value`"))?;
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("header name {name:?}"))?,
            value
                .trim()
                .parse()
                .with_context(|| format!("header {name:?} value"))?,
        );
    }
    // No redirects: the body, and then the payment, go to the URL given or nowhere.
    let client = seller::client(args.user_agent.as_deref(), |builder| {
        builder.timeout(Duration::from_secs(120))
    })?;
    let call = Call {
        method,
        url: args.url.clone(),
        headers,
        body,
    };
    let called = call_paying(
        ctx,
        &client,
        &call,
        async |offered| {
            let tokens = super::tokens::confirm(ctx, &args.token, offered).await?;
            choose_scheme(
                offered,
                Some(&args.max_amount),
                &args.token.symbol,
                &tokens,
                args.metered,
            )
        },
        || Ok(super::wallet::load_signer(ctx, &args.signer)?.0),
        |approval, signer| {
            output::note(&format!("permit2: {}", approval.describe(signer)));
            output::confirm("Send the approval?", args.yes)
        },
        |_| Ok(()),
    )
    .await?;
    match called {
        Called::Free(response) => {
            output::note(&format!(
                "not payment gated: {} (nothing paid)",
                response.status()
            ));
            finish(ctx, response, json!({"payment": null, "receipt": null})).await
        }
        Called::Paid(paid) => {
            output::note(&paid.note());
            let report = paid.report();
            finish(ctx, paid.response, report).await
        }
    }
}

/// One payment of `requirement` for `offered`, as the header to send. The seller picks the
/// validity window; a window of hours would let it settle long after a failed call, so it is
/// capped at [`MAX_VALIDITY_SECS`].
pub(super) fn sign_one(
    signer: &LocalSigner,
    offered: &Offered,
    requirement: &v2::PaymentRequirements,
) -> anyhow::Result<(&'static str, String)> {
    let payment = sign_payment(signer, offered, requirement)?;
    Ok(payment_header(offered.version, &payment)?)
}

/// One payment of `requirement` for `offered` (see [`sign_one`]), as the payload itself (an MCP
/// call carries it in `_meta`).
pub(super) fn sign_payment(
    signer: &LocalSigner,
    offered: &Offered,
    requirement: &v2::PaymentRequirements,
) -> anyhow::Result<v2::PaymentPayload> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let unsigned = prepare_payment(
        requirement,
        Some(offered.resource.clone()),
        signer.address(),
        ValidityWindow::for_request(now, requirement.max_timeout_seconds.min(MAX_VALIDITY_SECS)),
        random_nonce(),
    )?;
    let signature = signer.sign_digest_sync(&unsigned.digest())?;
    Ok(unsigned.finish(&signature))
}

/// Prints the answer (body, or `report` — payment, receipt, pending — with its status and
/// body as one JSON document) and maps its status to the exit code.
async fn finish(
    ctx: &Context,
    response: reqwest::Response,
    mut report: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    let status = response.status();
    let body = response.bytes().await?;
    if ctx.json {
        report["status"] = json!(status.as_u16());
        report["body"] = json!(String::from_utf8_lossy(&body));
        output::json(&report)?;
    } else {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(&body)?;
        out.flush()?;
    }
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn seller_text_cannot_drive_the_terminal() {
        assert_eq!(clean("0xabc\u{1b}[2K\npaid"), "0xabc\\u{1b}[2K\\npaid");
        assert_eq!(clean("plain — text"), "plain — text");
    }
}
