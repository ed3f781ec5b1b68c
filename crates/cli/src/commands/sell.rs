//! `obol sell http|list|status|delete` over the daemon's admin API.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use obol_control::offer::{
    AssetSpec, ModelSpec, OfferType, PaymentSpec, PriceSpec, RegistrationSpec, UpstreamSpec,
};
use obol_control::resource::{ConditionStatus, condition};
use obol_control::validate::validate_offer;
use obol_control::{ServiceOffer, ServiceOfferSpec};
use obol_x402::TokenRegistry;
use serde_json::json;

use super::Context;
use super::stack::require_admin;
use crate::cli::{PaymentFlags, SellCommand, SellHttpArgs, SellInferenceArgs, SellUpdateArgs};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: SellCommand) -> anyhow::Result<ExitCode> {
    match command {
        SellCommand::Http(args) => http(ctx, &args).await,
        SellCommand::Inference(args) => inference(ctx, &args).await,
        SellCommand::Update(args) => update(ctx, &args).await,
        SellCommand::Test {
            name,
            namespace,
            path,
        } => test(ctx, &namespace, &name, &path).await,
        SellCommand::List => list(ctx).await,
        SellCommand::Status {
            name: Some(name),
            namespace,
        } => status_one(ctx, &namespace, &name).await,
        SellCommand::Status { name: None, .. } => list(ctx).await,
        SellCommand::Delete {
            name,
            namespace,
            yes,
        } => delete(ctx, &namespace, &name, yes).await,
    }
}

/// The price the flags ask for: per request > per MTok > per hour, else `default`.
fn price(
    per_request: Option<&String>,
    per_mtok: Option<&String>,
    per_hour: Option<&String>,
    default: Option<&str>,
) -> anyhow::Result<PriceSpec> {
    let mut price = PriceSpec::default();
    if let Some(p) = per_request {
        price.per_request = Some(p.clone());
    } else if let Some(p) = per_mtok {
        price.per_mtok = Some(p.clone());
    } else if let Some(p) = per_hour {
        price.per_hour = Some(p.clone());
    } else if let Some(p) = default {
        price.per_request = Some(p.to_owned());
    } else {
        anyhow::bail!("set a price: --per-request (or --price), --per-mtok or --per-hour");
    }
    Ok(price)
}

/// USDC needs no asset block (the chain default); other tokens come from the registry.
fn asset(symbol: &str, chain: &str) -> anyhow::Result<Option<AssetSpec>> {
    if symbol.eq_ignore_ascii_case("USDC") {
        return Ok(None);
    }
    let token = TokenRegistry::builtin().resolve(symbol, chain)?.clone();
    Ok(Some(AssetSpec {
        address: Some(token.address.to_checksum(None)),
        symbol: Some(token.symbol),
        decimals: Some(token.decimals),
        transfer_method: Some(token.transfer_method.as_str().to_owned()),
        eip712_name: Some(token.eip712_name),
        eip712_version: Some(token.eip712_version),
    }))
}

/// What `sell http` and `sell inference` have in common.
struct OfferInput<'a> {
    name: &'a str,
    namespace: &'a str,
    type_: OfferType,
    model: Option<ModelSpec>,
    upstream: &'a str,
    health_path: &'a str,
    payment: &'a PaymentFlags,
    price: PriceSpec,
    path: Option<String>,
    description: Option<String>,
}

async fn apply(ctx: &Context, input: OfferInput<'_>) -> anyhow::Result<ExitCode> {
    let spec = ServiceOfferSpec {
        type_: input.type_,
        model: input.model,
        upstream: UpstreamSpec {
            url: Some(input.upstream.to_owned()),
            health_path: Some(input.health_path.to_owned()),
            ..UpstreamSpec::default()
        },
        payment: PaymentSpec {
            scheme: "exact".into(),
            network: input.payment.chain.clone(),
            pay_to: input.payment.pay_to.clone(),
            max_timeout_seconds: Some(input.payment.max_timeout),
            asset: asset(&input.payment.token, &input.payment.chain)?,
            price: input.price,
        },
        path: input.path,
        registration: Some(RegistrationSpec {
            enabled: !input.payment.no_register,
            ..RegistrationSpec::default()
        }),
        listing: None,
        drain_at: None,
        drain_grace_period: None,
        provenance: None,
        description: input.description,
    };
    let offer = ServiceOffer::new(input.namespace, input.name, spec);
    validate_offer(&offer)?;
    report_applied(ctx, &require_admin(ctx)?.apply(&offer).await?)
}

fn report_applied(ctx: &Context, applied: &obol_daemon::Applied) -> anyhow::Result<ExitCode> {
    // Like `kubectl apply`: "unchanged" is reported as updated.
    let verb = if applied.outcome == "created" {
        "created"
    } else {
        "updated"
    };
    let (namespace, name) = (
        &applied.offer.metadata.namespace,
        &applied.offer.metadata.name,
    );
    if ctx.json {
        output::json(&json!({"outcome": verb, "offer": applied.offer}))?;
    } else {
        println!("serviceoffer {namespace}/{name} {verb}");
        println!("  path: {}", applied.offer.effective_path());
        println!("  check it with `obol sell status {name} -n {namespace}`");
    }
    Ok(ExitCode::SUCCESS)
}

async fn http(ctx: &Context, args: &SellHttpArgs) -> anyhow::Result<ExitCode> {
    let p = &args.payment;
    let price = price(
        p.per_request.as_ref(),
        p.per_mtok.as_ref(),
        args.per_hour.as_ref(),
        None,
    )?;
    let offer = OfferInput {
        name: &args.name,
        namespace: &args.namespace,
        type_: OfferType::Http,
        model: None,
        upstream: &args.upstream,
        health_path: &args.health_path,
        payment: p,
        price,
        path: args.path.clone(),
        description: args.description.clone(),
    };
    apply(ctx, offer).await
}

async fn inference(ctx: &Context, args: &SellInferenceArgs) -> anyhow::Result<ExitCode> {
    let p = &args.payment;
    let price = price(
        p.per_request.as_ref(),
        p.per_mtok.as_ref(),
        None,
        Some("0.001"),
    )?;
    let offer = OfferInput {
        name: &args.name,
        namespace: &args.namespace,
        type_: OfferType::Inference,
        model: Some(ModelSpec {
            name: args.model.clone(),
            runtime: None,
        }),
        upstream: &args.upstream,
        health_path: &args.health_path,
        payment: p,
        price,
        path: None,
        description: Some(format!("{} inference via x402 micropayments", args.model)),
    };
    apply(ctx, offer).await
}

async fn update(ctx: &Context, args: &SellUpdateArgs) -> anyhow::Result<ExitCode> {
    let nothing = args.pay_to.is_none()
        && args.chain.is_none()
        && args.per_request.is_none()
        && args.per_mtok.is_none()
        && args.per_hour.is_none();
    if nothing {
        anyhow::bail!(
            "nothing to update: pass at least one of --per-request / --per-mtok / --per-hour / --pay-to / --chain"
        );
    }
    let client = require_admin(ctx)?;
    let mut offer = client.offer(&args.namespace, &args.name).await?;
    if let Some(pay_to) = &args.pay_to {
        offer.spec.payment.pay_to.clone_from(pay_to);
    }
    if let Some(chain) = &args.chain {
        offer.spec.payment.network.clone_from(chain);
    }
    if args.per_request.is_some() || args.per_mtok.is_some() || args.per_hour.is_some() {
        offer.spec.payment.price = price(
            args.per_request.as_ref(),
            args.per_mtok.as_ref(),
            args.per_hour.as_ref(),
            None,
        )?;
    }
    validate_offer(&offer)?;
    report_applied(ctx, &client.apply(&offer).await?)
}

async fn test(ctx: &Context, namespace: &str, name: &str, path: &str) -> anyhow::Result<ExitCode> {
    if path.contains("..") || !path.starts_with('/') {
        anyhow::bail!("--path must start with '/' and must not contain '..'");
    }
    let (state, client) = super::stack::admin(ctx)?.ok_or_else(|| {
        anyhow::anyhow!("the stack is not running; start it with `obol stack up`")
    })?;
    let offer = client.offer(namespace, name).await?;
    let url = format!(
        "http://{}{}{}",
        state.gateway,
        offer.effective_path(),
        path.trim_end_matches('/')
    );
    let response = reqwest::get(&url)
        .await
        .map_err(|e| anyhow::anyhow!("GET {url}: {}", e.without_url()))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if ctx.json {
        output::json(
            &json!({"url": url, "status": status, "body": serde_json::from_str::<serde_json::Value>(&body).ok()}),
        )?;
        return Ok(if status == 402 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    match status {
        402 => {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&body) {
                output::json(&value)?;
            }
            println!("{url}: 402 — live and payment-gated");
            Ok(ExitCode::SUCCESS)
        }
        200..=299 => {
            println!("{url}: {status} — WARNING: answered without payment (not gated)");
            Ok(ExitCode::FAILURE)
        }
        _ => {
            println!(
                "{url}: {status} — not served yet; see `obol sell status {name} -n {namespace}`"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn price_label(offer: &ServiceOffer) -> String {
    let p = &offer.spec.payment.price;
    let symbol = offer
        .spec
        .payment
        .asset
        .as_ref()
        .and_then(|a| a.symbol.clone())
        .unwrap_or_else(|| "USDC".into());
    match (&p.per_request, &p.per_mtok, &p.per_hour) {
        (Some(v), _, _) => format!("{v} {symbol}/request"),
        (None, Some(v), _) => format!("{v} {symbol}/MTok"),
        (None, None, Some(v)) => format!("{v} {symbol}/hour"),
        _ => "-".into(),
    }
}

fn ready(offer: &ServiceOffer) -> &'static str {
    match condition(&offer.status.conditions, "Ready").map(|c| c.status) {
        Some(ConditionStatus::True) => "True",
        Some(ConditionStatus::False) => "False",
        _ => "Unknown",
    }
}

async fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let offers = require_admin(ctx)?.offers().await?;
    if ctx.json {
        output::json(&serde_json::to_value(&offers)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if offers.is_empty() {
        println!(
            "No offers yet; create one with `obol sell http <name> --upstream URL --pay-to 0x… --per-request 0.001`."
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 5]> = offers
        .iter()
        .map(|o| {
            [
                format!("{}/{}", o.metadata.namespace, o.metadata.name),
                o.spec.type_.as_str().to_owned(),
                price_label(o),
                o.spec.payment.network.clone(),
                ready(o).to_owned(),
            ]
        })
        .collect();
    let headers = ["OFFER", "TYPE", "PRICE", "NETWORK", "READY"];
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(headers));
    for row in &rows {
        println!("{}", line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    Ok(ExitCode::SUCCESS)
}

fn icon(type_: &str, status: ConditionStatus, reason: &str) -> &'static str {
    match status {
        _ if type_ == "Draining" => "ℹ",
        ConditionStatus::True if matches!(reason, "Skipped" | "Disabled") => "ℹ",
        ConditionStatus::True => "✓",
        ConditionStatus::False => "⚠",
        ConditionStatus::Unknown => "⏳",
    }
}

async fn status_one(ctx: &Context, namespace: &str, name: &str) -> anyhow::Result<ExitCode> {
    let client = require_admin(ctx)?;
    let offer = client.offer(namespace, name).await?;
    if ctx.json {
        output::json(&serde_json::to_value(&offer)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let stack = client.status().await?;
    println!("ServiceOffer {namespace}/{name}");
    println!("  Endpoint: {}{}", stack.public_url, offer.effective_path());
    println!("  Network:  {}", offer.spec.payment.network);
    println!("  Price:    {}", price_label(&offer));
    println!("  Pay To:   {}", offer.spec.payment.pay_to);
    println!("  Conditions:");
    for c in &offer.status.conditions {
        println!(
            "    {} {:17} {:28} {}",
            icon(&c.type_, c.status, &c.reason),
            c.type_,
            c.reason,
            c.message
        );
    }
    if stack.public_url_is_default {
        println!(
            "  note: no public URL is set; buyers on other machines cannot reach {}",
            stack.public_url
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(ctx: &Context, namespace: &str, name: &str, yes: bool) -> anyhow::Result<ExitCode> {
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("pass --yes to delete {namespace}/{name} without confirmation");
        }
        eprint!("Delete ServiceOffer {namespace}/{name}? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("not deleted");
            return Ok(ExitCode::FAILURE);
        }
    }
    require_admin(ctx)?.delete(namespace, name).await?;
    if ctx.json {
        output::json(&json!({"deleted": format!("{namespace}/{name}")}))?;
    } else {
        println!("serviceoffer {namespace}/{name} deleted");
    }
    Ok(ExitCode::SUCCESS)
}
