//! `obol sell http|inference|mcp|update|test|stop|pricing|list|status|delete` over the daemon's
//! admin API; `sell register` and `sell identity` live in [`super::identity`].

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use obol_config::stack::{FacilitatorSetting, StackFile};
use obol_control::mcp::{McpSpec, McpToolSpec, McpUpstream};
use obol_control::offer::{
    AssetSpec, GateSpec, LimitsSpec, ModelSpec, OfferType, PaymentSpec, PriceSpec,
    RegistrationSpec, RoutePrice, SettleTiming, UpstreamSpec,
};
use obol_control::resource::{ConditionStatus, condition};
use obol_control::storefront::price_text;
use obol_control::validate::validate_offer;
use obol_control::{ServiceOffer, ServiceOfferSpec};
use obol_x402::TokenRegistry;
use serde_json::json;

use super::secret::UpstreamCredential;
use super::stack::require_admin;
use super::{Context, offer_flags};
use crate::cli::{
    PaymentFlags, SellCommand, SellHttpArgs, SellInferenceArgs, SellMcpArgs, SellUpdateArgs,
};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: SellCommand) -> anyhow::Result<ExitCode> {
    match command {
        SellCommand::Http(args) => http(ctx, &args).await,
        SellCommand::Inference(args) => inference(ctx, &args).await,
        SellCommand::Mcp(args) => mcp(ctx, &args).await,
        SellCommand::Update(args) => update(ctx, &args).await,
        SellCommand::Test {
            name,
            namespace,
            path,
        } => test(ctx, &namespace, &name, &path).await,
        SellCommand::Stop { name, namespace } => stop(ctx, &namespace, &name).await,
        SellCommand::Pricing {
            pay_to,
            chain,
            facilitator_url,
            facilitator_chain,
        } => pricing(
            ctx,
            pay_to.as_deref(),
            chain.as_deref(),
            facilitator_url,
            facilitator_chain,
        ),
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
        SellCommand::Info(command) => super::info::run(ctx, command).await,
        SellCommand::Register(args) => super::identity::register(ctx, &args).await,
        SellCommand::Identity(command) => super::identity::identity(ctx, command).await,
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
pub(super) fn asset(symbol: &str, chain: &str) -> anyhow::Result<Option<AssetSpec>> {
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
    auth: Option<UpstreamCredential>,
    mcp: Option<McpSpec>,
}

/// `(payTo, chain)`: the flags, else the stack defaults (`obol sell pricing`), else base.
fn payment_target(ctx: &Context, flags: &PaymentFlags) -> anyhow::Result<(String, String)> {
    let settings = StackFile::load(&ctx.paths.stack_file())?;
    let pay_to = flags
        .pay_to
        .clone()
        .or(settings.default_pay_to)
        .ok_or_else(|| {
            anyhow::anyhow!("pass --pay-to, or set a default with `obol sell pricing --pay-to 0x…`")
        })?;
    let chain = flags
        .chain
        .clone()
        .or(settings.default_chain)
        .unwrap_or_else(|| "base".to_owned());
    Ok((pay_to, chain))
}

/// The registration block: off with `--no-register`, else the `--register-*` values with the
/// original's defaults.
fn registration(name: &str, flags: &PaymentFlags) -> anyhow::Result<RegistrationSpec> {
    if flags.no_register {
        return Ok(RegistrationSpec::default());
    }
    let register = &flags.register;
    let mut metadata = serde_json::Map::new();
    for pair in &register.register_metadata {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .with_context(|| format!("--register-metadata {pair:?} is not KEY=VALUE"))?;
        metadata.insert(key.trim().to_owned(), value.into());
    }
    Ok(RegistrationSpec {
        enabled: true,
        name: Some(
            register
                .register_name
                .clone()
                .unwrap_or_else(|| name.to_owned()),
        ),
        description: Some(
            register
                .register_description
                .clone()
                .unwrap_or_else(|| format!("Obol Stack service {name}")),
        ),
        image: register.register_image.clone(),
        skills: register.register_skills.clone(),
        domains: register.register_domains.clone(),
        metadata,
    })
}

async fn apply(ctx: &Context, input: OfferInput<'_>) -> anyhow::Result<ExitCode> {
    let (pay_to, chain) = payment_target(ctx, input.payment)?;
    let payment = PaymentSpec {
        scheme: "exact".into(),
        asset: asset(&input.payment.token, &chain)?,
        network: chain,
        pay_to,
        max_timeout_seconds: Some(input.payment.max_timeout),
        price: input.price,
        upto: None,
        settle: if input.payment.settle_first {
            SettleTiming::SettleFirst
        } else {
            SettleTiming::ServeFirst
        },
    };
    let payments = if input.payment.payments.is_empty() {
        Vec::new()
    } else {
        std::iter::once(Ok(payment.clone()))
            .chain(
                input
                    .payment
                    .payments
                    .iter()
                    .map(|text| offer_flags::parse_payment(text, &payment)),
            )
            .collect::<anyhow::Result<_>>()?
    };
    let spec = ServiceOfferSpec {
        type_: input.type_,
        model: input.model,
        upstream: UpstreamSpec {
            url: Some(input.upstream.to_owned()),
            health_path: Some(input.health_path.to_owned()),
            auth: input.auth.as_ref().map(|a| a.spec.clone()),
            ..UpstreamSpec::default()
        },
        payment,
        payments,
        path: input.path,
        routes: offer_flags::routes(input.payment)?,
        limits: (input.payment.max_in_flight.is_some() || input.payment.rps.is_some()).then_some(
            LimitsSpec {
                max_in_flight: input.payment.max_in_flight,
                rps: input.payment.rps,
            },
        ),
        discovery: None,
        hostname: input.payment.hostname.clone(),
        registration: Some(registration(input.name, input.payment)?),
        listing: None,
        drain_at: None,
        drain_grace_period: None,
        provenance: None,
        description: input.description,
        mcp: input.mcp,
    };
    let offer = ServiceOffer::new(input.namespace, input.name, spec);
    if let Some(auth) = &input.auth {
        // The key first, so that the offer's first reconcile finds it.
        validate_offer(&offer)?;
        auth.store(&require_admin(ctx).await?, input.namespace)
            .await?;
    }
    submit(ctx, offer).await
}

/// Validates and applies the offer, then registers the stack on ERC-8004 when that needs no
/// question ([`super::identity::auto_register`]; a failure is a warning).
async fn submit(ctx: &Context, offer: ServiceOffer) -> anyhow::Result<ExitCode> {
    validate_offer(&offer)?;
    let client = require_admin(ctx).await?;
    let applied = client.apply(&offer).await?;
    let registration = super::identity::auto_register(ctx, &client, &applied.object).await;
    report_applied(ctx, &applied, registration.as_ref())
}

/// `--from-json`: a spec, or an object with a `spec`.
async fn from_json(ctx: &Context, args: &SellHttpArgs, source: &str) -> anyhow::Result<ExitCode> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().take(1 << 20), &mut text)?;
        text
    } else {
        std::fs::read_to_string(source).map_err(|e| anyhow::anyhow!("cannot read {source}: {e}"))?
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{source} is not JSON: {e}"))?;
    let spec_value = value.get("spec").cloned().unwrap_or(value);
    let spec: ServiceOfferSpec = serde_json::from_value(spec_value)
        .map_err(|e| anyhow::anyhow!("{source} is not a ServiceOffer spec: {e}"))?;
    submit(
        ctx,
        ServiceOffer::new(args.namespace.clone(), args.name.clone(), spec),
    )
    .await
}

fn report_applied(
    ctx: &Context,
    applied: &obol_daemon::Applied<ServiceOfferSpec>,
    registration: Option<&super::identity::AutoRegistration>,
) -> anyhow::Result<ExitCode> {
    // Like `kubectl apply`: "unchanged" is reported as updated.
    let verb = if applied.outcome == "created" {
        "created"
    } else {
        "updated"
    };
    let (namespace, name) = (
        &applied.object.metadata.namespace,
        &applied.object.metadata.name,
    );
    if ctx.json {
        let mut value = json!({"outcome": verb, "offer": applied.object});
        if let Some(registration) = registration {
            value["registration"] = registration.json();
        }
        output::json(&value)?;
    } else {
        println!("serviceoffer {namespace}/{name} {verb}");
        println!("  path: {}", applied.object.effective_path());
        if let Some(registration) = registration {
            registration.print();
        }
        println!("  check it with `obol sell status {name} -n {namespace}`");
    }
    Ok(ExitCode::SUCCESS)
}

async fn http(ctx: &Context, args: &SellHttpArgs) -> anyhow::Result<ExitCode> {
    if let Some(source) = &args.from_json {
        return from_json(ctx, args, source).await;
    }
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
        upstream: args.upstream.as_deref().unwrap_or_default(),
        health_path: &args.health_path,
        payment: p,
        price,
        path: args.path.clone(),
        description: args.description.clone(),
        auth: UpstreamCredential::from_flags(&args.name, &args.upstream_auth)?,
        mcp: None,
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
        auth: UpstreamCredential::from_flags(&args.name, &args.upstream_auth)?,
        mcp: None,
    };
    apply(ctx, offer).await
}

async fn mcp(ctx: &Context, args: &SellMcpArgs) -> anyhow::Result<ExitCode> {
    let tools: Vec<McpToolSpec> = args
        .tools
        .iter()
        .map(|text| offer_flags::parse_tool(text))
        .collect::<anyhow::Result<_>>()?;
    // Without a price flag, the offer's price is its first tool's own (or 0.001).
    let first_own = tools.iter().find_map(|tool| match &tool.price {
        Some(RoutePrice::PerRequest(amount)) => Some(amount.clone()),
        _ => None,
    });
    let p = &args.payment;
    let price = price(
        p.per_request.as_ref(),
        p.per_mtok.as_ref(),
        None,
        Some(first_own.as_deref().unwrap_or("0.001")),
    )?;
    let offer = OfferInput {
        name: &args.name,
        namespace: &args.namespace,
        type_: OfferType::Mcp,
        model: None,
        upstream: &args.upstream,
        health_path: &args.health_path,
        payment: p,
        price,
        path: args.path.clone(),
        description: args.description.clone(),
        auth: UpstreamCredential::from_flags(&args.name, &args.upstream_auth)?,
        mcp: Some(McpSpec {
            upstream: if args.mcp_server {
                McpUpstream::Mcp
            } else {
                McpUpstream::Http
            },
            tools,
        }),
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
    let client = require_admin(ctx).await?;
    let mut offer = client
        .get::<ServiceOfferSpec>(&args.namespace, &args.name)
        .await?;
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
    report_applied(ctx, &client.apply(&offer).await?, None)
}

async fn test(ctx: &Context, namespace: &str, name: &str, path: &str) -> anyhow::Result<ExitCode> {
    if path.contains("..") || !path.starts_with('/') {
        anyhow::bail!("--path must start with '/' and must not contain '..'");
    }
    let (gateway, client) = match super::stack::on_cluster(ctx)? {
        Some((settings, setting)) => (
            setting.gateway_url.clone().context(
                "the cluster's gateway URL is not set: `obol stack init --backend kubernetes \
                 --gateway-url URL --force` (its Ingress, or a `kubectl port-forward`)",
            )?,
            super::cluster::admin_client(&settings, &setting).await?,
        ),
        None => {
            let (state, client) = super::stack::admin(ctx)?.ok_or_else(|| {
                anyhow::anyhow!("the stack is not running; start it with `obol stack up`")
            })?;
            (state.gateway_url(), client)
        }
    };
    let offer = client.get::<ServiceOfferSpec>(namespace, name).await?;
    let url = format!(
        "{}{}{}",
        gateway.trim_end_matches('/'),
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

async fn stop(ctx: &Context, namespace: &str, name: &str) -> anyhow::Result<ExitCode> {
    let client = require_admin(ctx).await?;
    let mut offer = client.get::<ServiceOfferSpec>(namespace, name).await?;
    offer.spec.drain_at = Some(obol_config::time::now_rfc3339());
    offer.spec.drain_grace_period = Some("0s".into());
    client.apply(&offer).await?;
    if ctx.json {
        output::json(&json!({"stopped": format!("{namespace}/{name}")}))?;
    } else {
        println!("serviceoffer {namespace}/{name} stopped: no longer sold");
        println!("  resume it by running `obol sell http …` (or `sell inference …`) again");
    }
    Ok(ExitCode::SUCCESS)
}

fn pricing(
    ctx: &Context,
    pay_to: Option<&str>,
    chain: Option<&str>,
    facilitator_url: Option<String>,
    facilitator_chain: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let path = ctx.paths.stack_file();
    let mut settings = StackFile::load(&path)?;
    if let Some(pay_to) = pay_to {
        if !obol_control::validate::is_address(pay_to) {
            anyhow::bail!("--pay-to {pay_to:?} must be 0x followed by 40 hex digits");
        }
        settings.default_pay_to = Some(pay_to.to_owned());
    }
    if let Some(chain) = chain {
        obol_x402::network::evm_chain_id(chain)?;
        settings.default_chain = Some(chain.to_owned());
    }
    let facilitator_changed = facilitator_url.is_some() || !facilitator_chain.is_empty();
    if let Some(url) = facilitator_url {
        obol_facilitator::http::RemoteFacilitator::new(&url, Default::default())?;
        settings.facilitator = Some(FacilitatorSetting::Url(url));
    } else if !facilitator_chain.is_empty() {
        settings.facilitator = Some(FacilitatorSetting::Embedded {
            chains: facilitator_chain,
            wallet: None,
            gas_wallets: None,
        });
    }
    settings.save(&path)?;
    if ctx.json {
        output::json(
            &json!({"defaultPayTo": settings.default_pay_to, "defaultChain": settings.default_chain, "facilitator": settings.facilitator}),
        )?;
    } else {
        println!("pricing defaults saved to {}", path.display());
        println!(
            "  payTo:       {}",
            settings
                .default_pay_to
                .as_deref()
                .unwrap_or("(none: pass --pay-to)")
        );
        println!(
            "  chain:       {}",
            settings.default_chain.as_deref().unwrap_or("base")
        );
        let facilitator = match &settings.facilitator {
            None => "none (paid requests are refused)".to_owned(),
            Some(FacilitatorSetting::Url(url)) => url.clone(),
            Some(FacilitatorSetting::Embedded { chains, .. }) => {
                format!("embedded on {}", chains.join(", "))
            }
        };
        println!("  facilitator: {facilitator}");
        if facilitator_changed {
            println!(
                "  restart the stack to use the new facilitator: `obol stack down && obol stack up`"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn price_label(offer: &ServiceOffer) -> String {
    let p = &offer.spec.payment.price;
    if p.per_request.is_none() && p.flat_per_mtok().is_none() && p.per_hour.is_none() {
        return "-".into();
    }
    price_text(p, &symbol(&offer.spec.payment))
}

/// A payment's token symbol as written (USDC by default).
fn symbol(payment: &PaymentSpec) -> String {
    payment
        .asset
        .as_ref()
        .and_then(|a| a.symbol.clone())
        .unwrap_or_else(|| "USDC".into())
}

fn ready(offer: &ServiceOffer) -> &'static str {
    match condition(&offer.status.conditions, "Ready").map(|c| c.status) {
        Some(ConditionStatus::True) => "True",
        Some(ConditionStatus::False) => "False",
        _ => "Unknown",
    }
}

async fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let offers = require_admin(ctx).await?.list::<ServiceOfferSpec>().await?;
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
    let client = require_admin(ctx).await?;
    let offer = client.get::<ServiceOfferSpec>(namespace, name).await?;
    if ctx.json {
        output::json(&serde_json::to_value(&offer)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let stack = client.status().await?;
    println!("ServiceOffer {namespace}/{name}");
    println!("  Endpoint: {}{}", stack.public_url, offer.effective_path());
    println!("  Network:  {}", offer.spec.payment.network);
    println!("  Price:    {}", price_label(&offer));
    if let Some(upto) = offer.spec.payment.upto {
        println!(
            "  Metered:  upto, at most {} tokens a call; no usage reported → {}",
            upto.max_tokens(),
            match upto.no_usage {
                obol_x402::metering::NoUsage::Estimate => "the 1000-token estimate",
                obol_x402::metering::NoUsage::Ceiling => "the ceiling",
            }
        );
    }
    if let Some(usage) = &offer.status.usage {
        println!(
            "  Usage:    {} metered calls, {} prompt + {} completion tokens, charged {}",
            usage.requests, usage.prompt_tokens, usage.completion_tokens, usage.charged
        );
    }
    println!("  Pay To:   {}", offer.spec.payment.pay_to);
    if let Some(host) = &offer.spec.hostname {
        println!("  Hostname: https://{host} (this offer's own site)");
    }
    if let Some(auth) = &offer.spec.upstream.auth {
        println!(
            "  Upstream: {} from secret {namespace}/{} key {}",
            auth.header(),
            auth.secret_ref.name,
            auth.secret_ref.key
        );
    }
    for other in offer.effective_payments().iter().skip(1) {
        println!(
            "  Or:       {} on {}, to {}",
            price_text(&other.price, &symbol(other)),
            other.network,
            other.pay_to
        );
    }
    if let Some(limits) = offer.spec.limits {
        let show = |v: Option<u32>| v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
        println!(
            "  Limits:   {} in flight, {} requests/s (bursts of twice as many)",
            show(limits.max_in_flight),
            show(limits.rps)
        );
    }
    if !offer.spec.routes.is_empty() {
        println!("  Routes (anything else under the endpoint is refused):");
        let prefix = offer.effective_path();
        for route in &offer.spec.routes {
            let methods = if route.methods.is_empty() {
                "*".to_owned()
            } else {
                route.methods.join("|")
            };
            let price = match (route.gate, &route.price) {
                (GateSpec::Paid, Some(price)) => {
                    price_text(&price.fields(), &symbol(&offer.spec.payment))
                }
                (GateSpec::Paid, None) => price_label(&offer),
                (gate, _) => gate.as_str().to_owned(),
            };
            let path = if route.path == "/" {
                String::new()
            } else {
                route.path.clone()
            };
            println!(
                "    {methods:7} {prefix}{path:24} {price:22} {}",
                route.summary.as_deref().unwrap_or("")
            );
        }
    }
    if let Some(agent_id) = &offer.status.agent_id {
        println!("  Agent ID: {agent_id} (ERC-8004)");
    }
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
    if !output::confirm(&format!("Delete ServiceOffer {namespace}/{name}?"), yes)? {
        println!("not deleted");
        return Ok(ExitCode::FAILURE);
    }
    let client = require_admin(ctx).await?;
    let auth = match client.get::<ServiceOfferSpec>(namespace, name).await {
        Ok(offer) => offer.spec.upstream.auth,
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    client.delete::<ServiceOfferSpec>(namespace, name).await?;
    super::secret::forget_own_secret(&client, namespace, name, auth.as_ref()).await?;
    if ctx.json {
        output::json(&json!({"deleted": format!("{namespace}/{name}")}))?;
    } else {
        println!("serviceoffer {namespace}/{name} deleted");
    }
    Ok(ExitCode::SUCCESS)
}
