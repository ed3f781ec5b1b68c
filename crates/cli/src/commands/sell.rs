//! `obol sell http|list|status|delete` over the daemon's admin API.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use obol_control::offer::{AssetSpec, PaymentSpec, PriceSpec, RegistrationSpec, UpstreamSpec};
use obol_control::resource::{ConditionStatus, condition};
use obol_control::validate::validate_offer;
use obol_control::{ServiceOffer, ServiceOfferSpec};
use obol_x402::TokenRegistry;
use serde_json::json;

use super::Context;
use super::stack::require_admin;
use crate::cli::{SellCommand, SellHttpArgs};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: SellCommand) -> anyhow::Result<ExitCode> {
    match command {
        SellCommand::Http(args) => http(ctx, &args).await,
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

/// The price the flags ask for: --per-request > --per-mtok > --per-hour.
fn price(args: &SellHttpArgs) -> anyhow::Result<PriceSpec> {
    let mut price = PriceSpec::default();
    if let Some(p) = &args.per_request {
        price.per_request = Some(p.clone());
    } else if let Some(p) = &args.per_mtok {
        price.per_mtok = Some(p.clone());
    } else if let Some(p) = &args.per_hour {
        price.per_hour = Some(p.clone());
    } else {
        anyhow::bail!("set a price: --per-request (or --price), --per-mtok or --per-hour");
    }
    Ok(price)
}

/// USDC needs no asset block (the chain default); other tokens come from the registry.
fn asset(args: &SellHttpArgs) -> anyhow::Result<Option<AssetSpec>> {
    if args.token.eq_ignore_ascii_case("USDC") {
        return Ok(None);
    }
    let token = TokenRegistry::builtin()
        .resolve(&args.token, &args.chain)?
        .clone();
    Ok(Some(AssetSpec {
        address: Some(token.address.to_checksum(None)),
        symbol: Some(token.symbol),
        decimals: Some(token.decimals),
        transfer_method: Some(token.transfer_method.as_str().to_owned()),
        eip712_name: Some(token.eip712_name),
        eip712_version: Some(token.eip712_version),
    }))
}

async fn http(ctx: &Context, args: &SellHttpArgs) -> anyhow::Result<ExitCode> {
    let spec = ServiceOfferSpec {
        type_: Default::default(),
        model: None,
        upstream: UpstreamSpec {
            url: Some(args.upstream.clone()),
            health_path: Some(args.health_path.clone()),
            ..UpstreamSpec::default()
        },
        payment: PaymentSpec {
            scheme: "exact".into(),
            network: args.chain.clone(),
            pay_to: args.pay_to.clone(),
            max_timeout_seconds: Some(args.max_timeout),
            asset: asset(args)?,
            price: price(args)?,
        },
        path: args.path.clone(),
        registration: Some(RegistrationSpec {
            enabled: !args.no_register,
            ..RegistrationSpec::default()
        }),
        listing: None,
        drain_at: None,
        drain_grace_period: None,
        provenance: None,
        description: args.description.clone(),
    };
    let offer = ServiceOffer::new(args.namespace.clone(), args.name.clone(), spec);
    validate_offer(&offer)?;
    let applied = require_admin(ctx)?.apply(&offer).await?;
    // Like `kubectl apply`: "unchanged" is reported as updated.
    let verb = if applied.outcome == "created" {
        "created"
    } else {
        "updated"
    };
    if ctx.json {
        output::json(&json!({"outcome": verb, "offer": applied.offer}))?;
    } else {
        println!("serviceoffer {}/{} {verb}", args.namespace, args.name);
        println!("  path: {}", applied.offer.effective_path());
        println!(
            "  check it with `obol sell status {} -n {}`",
            args.name, args.namespace
        );
    }
    Ok(ExitCode::SUCCESS)
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
