//! `obol buy inference|list|status|refill|cancel`: pools of pre-signed authorizations served by
//! the stack's buyer proxy. Signing happens here, with the user's key; the daemon only ever
//! receives the signed authorizations.
//!
//! | module | what |
//! | --- | --- |
//! | this one | what the commands share: the stack, signing with progress, waiting for Ready, appending a batch (conflicts re-read), the receipt |
//! | `buying` | `buy inference` (catalog, probe, count and budget, balance, confirmation, Permit2 approval) and `buy refill` |
//! | `records` | `buy list`, `buy status`, `buy cancel` |

mod buying;
mod records;
#[cfg(test)]
mod tests;

pub(crate) use buying::{buy_pool, inference, refill, refill_pool};
pub(crate) use records::{cancel, drop_purchase, list, rows, status};

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
use super::buy::{clean, known_token};
use super::stack::admin;
use super::tokens;
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

/// The stack's client and its buyer proxy's address: the running daemon's, or on a
/// cluster-backed stack the cluster's resources and the buyer proxy the settings name.
pub(crate) async fn stack(ctx: &Context) -> anyhow::Result<(obol_daemon::AdminClient, String)> {
    if let Some((settings, setting)) = super::stack::on_cluster(ctx)? {
        let client = super::cluster::admin_client(&settings, &setting).await?;
        return Ok((client, super::cluster::buyer_address(&setting)));
    }
    let (state, client) =
        admin(ctx)?.context("the stack is not running; start it with `obol stack up`")?;
    Ok((client, state.buyer))
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
/// A pool's counts as the buyer proxy reports them live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Live {
    pub(crate) remaining: u64,
    pub(crate) spent: u64,
    /// What the spent calls whose seller said so were charged (atomic units).
    pub(crate) charged: obol_x402::primitives::U256,
    /// Spent calls whose seller did not say (their price counts).
    pub(crate) unstated: u64,
}

pub(super) async fn live_counts(buyer: &str) -> HashMap<String, Live> {
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
            let spent = p.get("spent")?.as_u64()?;
            Some((
                pool.clone(),
                Live {
                    remaining: p.get("remaining")?.as_u64()?,
                    spent,
                    charged: p
                        .get("charged")
                        .and_then(Value::as_str)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or_default(),
                    unstated: p
                        .get("spentUnstated")
                        .and_then(Value::as_u64)
                        .unwrap_or(spent),
                },
            ))
        })
        .collect()
}

/// The price of one call of `purchase`, in its token when `tokens` knows it.
fn price_of(tokens: &TokenRegistry, purchase: &PurchaseRequest) -> String {
    let payment = &purchase.spec.payment;
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
    let price = price_of(&tokens::registry(ctx)?, purchase);
    let model = purchase
        .status
        .public_model
        .clone()
        .unwrap_or_else(|| format!("paid/{}", purchase.spec.model));
    if ctx.json {
        output::json(&json!({
            "status": what, "name": meta.name, "namespace": meta.namespace,
            "publicModel": model, "endpoint": purchase.spec.endpoint,
            "price": price, "remaining": purchase.status.remaining,
            "spent": purchase.status.spent, "totalSigned": purchase.status.total_signed,
            "buyerUrl": format!("http://{buyer}/v1"),
        }))?;
    } else {
        println!(
            "{what} {}/{}: {} calls left at {} each",
            meta.namespace, meta.name, purchase.status.remaining, price
        );
        println!(
            "  call it as model {} at http://{buyer}/v1 (OpenAI-compatible)",
            clean(&model)
        );
    }
    Ok(())
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
            Err(e) if e.is_stale() => {
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
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) if Instant::now() > deadline => {
                bail!("purchase {namespace}/{name} is still being deleted")
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
