//! The route, payment and tool flags of `sell http|inference|mcp` (`--route`, `--free-quota`,
//! `--payment`, `--tool`), read into the spec's `routes[]`, `payments[]` and `mcp.tools[]` as a
//! manifest would say them.

use anyhow::Context as _;
use obol_control::mcp::McpToolSpec;
use obol_control::offer::{GateSpec, PaymentSpec, PriceSpec, RoutePrice, RouteSpec};

use super::sell::asset;
use crate::cli::PaymentFlags;

/// `--route`s, with `--free-quota` on each paid one that sets none (no `--route`: the whole
/// offer as one paid route with that quota).
pub(super) fn routes(flags: &PaymentFlags) -> anyhow::Result<Vec<RouteSpec>> {
    let mut routes: Vec<RouteSpec> = flags
        .routes
        .iter()
        .map(|text| parse_route(text))
        .collect::<anyhow::Result<_>>()?;
    if let Some(quota) = flags.free_quota {
        if routes.is_empty() {
            routes.push(RouteSpec::everything_paid());
        }
        for route in routes.iter_mut().filter(|r| r.gate == GateSpec::Paid) {
            route.free_quota.get_or_insert(quota);
        }
    }
    Ok(routes)
}

/// One `--tool`: `NAME`, `NAME:PRICE` or `NAME:free`.
pub(super) fn parse_tool(text: &str) -> anyhow::Result<McpToolSpec> {
    let (name, price) = match text.split_once(':') {
        None => (text, None),
        Some((name, price)) => (name, Some(price.trim())),
    };
    let mut tool = McpToolSpec::named(name.trim());
    match price {
        None => {}
        Some("free") => tool.free = true,
        Some("") => anyhow::bail!("--tool {text:?}: a price after ':' (or `free`)"),
        Some(price) => tool.price = Some(RoutePrice::PerRequest(price.to_owned())),
    }
    Ok(tool)
}

/// One `--route`: `key=value` pairs separated by `,` (`path` required; `methods` separated by
/// `|`); a part without `=` continues the previous value, so a summary may hold commas.
fn parse_route(text: &str) -> anyhow::Result<RouteSpec> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in text.split(',') {
        match part.split_once('=') {
            Some((key, value)) if ROUTE_KEYS.contains(&key.trim()) => {
                pairs.push((key.trim().to_owned(), value.trim().to_owned()));
            }
            _ => match pairs.last_mut() {
                Some((_, value)) => {
                    value.push(',');
                    value.push_str(part);
                }
                None => anyhow::bail!(
                    "--route {text:?}: expected key=value pairs ({})",
                    ROUTE_KEYS.join(", ")
                ),
            },
        }
    }
    let mut route = RouteSpec {
        path: String::new(),
        ..RouteSpec::everything_paid()
    };
    for (key, value) in pairs {
        match key.as_str() {
            "path" => route.path = value,
            "methods" => {
                route.methods = value
                    .split(['|', ' '])
                    .filter(|m| !m.is_empty())
                    .map(str::to_ascii_uppercase)
                    .collect();
            }
            "gate" => {
                route.gate = serde_json::from_value(serde_json::Value::String(value.clone()))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "--route {text:?}: gate {value:?} is not paid, free or auth"
                        )
                    })?;
            }
            "price" => route.price = Some(RoutePrice::PerRequest(value)),
            "summary" => route.summary = Some(value),
            _ => {
                route.free_quota = Some(value.parse().map_err(|_| {
                    anyhow::anyhow!("--route {text:?}: freeQuota {value:?} is not a count")
                })?);
            }
        }
    }
    anyhow::ensure!(
        !route.path.is_empty(),
        "--route {text:?}: path= is required (e.g. path=/submit)"
    );
    Ok(route)
}

/// One `--payment token=OBOL,chain=ethereum,price=…[,payTo=0x…]`: another way to pay, like
/// `first` (the main flags) where a key is left out; `price` is in the same unit as `first`'s.
pub(super) fn parse_payment(text: &str, first: &PaymentSpec) -> anyhow::Result<PaymentSpec> {
    let mut payment = first.clone();
    let mut token = first
        .asset
        .as_ref()
        .and_then(|a| a.symbol.clone())
        .unwrap_or_else(|| "USDC".into());
    let mut price = None;
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = part
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim().to_owned()))
            .with_context(|| format!("--payment {text:?}: {part:?} is not key=value"))?;
        match key {
            "token" => token = value,
            "chain" | "network" => payment.network = value,
            "payTo" | "pay-to" => payment.pay_to = value,
            "price" => price = Some(value),
            _ => anyhow::bail!(
                "--payment {text:?}: unknown key {key:?} (token, chain, price, payTo)"
            ),
        }
    }
    payment.asset = asset(&token, &payment.network)?;
    if let Some(amount) = price {
        let p = &first.price;
        payment.price = PriceSpec {
            per_request: p.per_request.as_ref().map(|_| amount.clone()),
            per_mtok: p.per_mtok.as_ref().map(|_| amount.clone()),
            per_hour: p.per_hour.as_ref().map(|_| amount.clone()),
            ..PriceSpec::default()
        };
    }
    Ok(payment)
}

/// The keys `--route` takes.
const ROUTE_KEYS: [&str; 6] = ["path", "methods", "gate", "price", "summary", "freeQuota"];

#[cfg(test)]
mod tests {
    use obol_control::offer::SettleTiming;
    use serde_json::json;

    use super::*;

    #[test]
    fn route_flags_read_like_the_manifest() {
        let route =
            parse_route("path=/submit,methods=POST|put,price=0.5,summary=Submit, then wait")
                .unwrap();
        assert_eq!(
            serde_json::to_value(&route).unwrap(),
            json!({"path": "/submit", "methods": ["POST", "PUT"], "price": "0.5",
                   "summary": "Submit, then wait"})
        );
        let free = parse_route("path=/*,gate=free,freeQuota=3").unwrap();
        assert_eq!((free.gate, free.free_quota), (GateSpec::Free, Some(3)));
        for (bad, says) in [
            ("methods=GET", "path= is required"),
            ("/submit", "expected key=value pairs"),
            (
                "path=/x,gate=open",
                "gate \"open\" is not paid, free or auth",
            ),
            ("path=/x,freeQuota=many", "is not a count"),
        ] {
            let error = parse_route(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn payment_flags_add_a_way_to_pay_like_the_first() {
        let first = PaymentSpec {
            scheme: "exact".into(),
            network: "base-sepolia".into(),
            pay_to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".into(),
            max_timeout_seconds: Some(300),
            asset: None,
            price: PriceSpec {
                per_mtok: Some("1".into()),
                ..PriceSpec::default()
            },
            settle: SettleTiming::ServeFirst,
            upto: None,
        };
        let obol = parse_payment("token=OBOL,price=0.5", &first).unwrap();
        assert_eq!(obol.network, "base-sepolia");
        assert_eq!(
            obol.price.per_mtok.as_deref(),
            Some("0.5"),
            "the first's unit"
        );
        assert_eq!(obol.asset.and_then(|a| a.symbol).as_deref(), Some("OBOL"));
        let elsewhere = parse_payment(
            "chain=base,payTo=0x00000000000000000000000000000000000000aa",
            &first,
        )
        .unwrap();
        assert_eq!(elsewhere.network, "base");
        assert_eq!(elsewhere.price, first.price, "left out: the first's");
        for (bad, says) in [
            ("token", "is not key=value"),
            ("colour=red", "unknown key \"colour\""),
            ("token=NOPE", "NOPE"),
        ] {
            let error = format!("{:#}", parse_payment(bad, &first).unwrap_err());
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
