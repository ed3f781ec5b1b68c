//! `/openapi.json` (and `/.well-known/openapi.json`): an OpenAPI 3.1 document with one
//! operation per method of each listed offer's routes, its input and output from the offer's
//! description ([`crate::discovery`]), a `402` response and `x-payment-info` on paid
//! operations (shared/spec/extensions.md §3) whose prices are computed by the same code as the
//! 402s ([`crate::routes::payment_options`]), so they cannot disagree.
//!
//! Route patterns become OpenAPI paths: a `*` segment is a path parameter (`{rest}` when last:
//! anything below), a `*` inside a segment a parameter inside it (`/files/{p2}.json`).

use obol_x402::money::format_units;
use obol_x402::token::TokenRegistry;
use serde_json::{Map, Value, json};

use crate::discovery::{BODY_METHODS, effective_io};
use crate::offer::{GateSpec, InputSpec, OfferType, OutputSpec, RouteSpec, ServiceOffer};
use crate::routes::{payment_options, resolve_token, route_pattern};
use crate::storefront::{DISPLAY_NAME, description};

/// An OpenAPI path for `pattern`, and its path parameters.
fn path_template(pattern: &str) -> (String, Vec<String>) {
    let segments: Vec<&str> = pattern.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut params = Vec::new();
    let path = segments
        .iter()
        .enumerate()
        .map(|(i, segment)| {
            if !segment.contains('*') {
                return (*segment).to_owned();
            }
            let name = if *segment == "*" && i == last {
                "rest".to_owned()
            } else {
                format!("p{i}")
            };
            let replaced = segment.replacen('*', &format!("{{{name}}}"), 1);
            params.push(name);
            replaced
        })
        .collect::<Vec<_>>()
        .join("/");
    (path, params)
}

/// The methods an operation is listed under: the route's, else the described one.
fn methods(route: &RouteSpec, input: Option<&InputSpec>, type_: OfferType) -> Vec<String> {
    if !route.methods.is_empty() {
        return route
            .methods
            .iter()
            .filter(|m| *m != "HEAD" || !route.methods.iter().any(|g| g == "GET"))
            .cloned()
            .collect();
    }
    let default = match type_ {
        OfferType::Http => "GET",
        _ => "POST",
    };
    vec![
        input
            .and_then(|i| i.method.clone())
            .unwrap_or_else(|| default.to_owned()),
    ]
}

/// `x-payment-info` of a paid route: fixed at the route's price in the first currency, the
/// others listed with theirs.
fn payment_info(tokens: &TokenRegistry, offer: &ServiceOffer, route: &RouteSpec) -> Option<Value> {
    let price = route.price.as_ref().map(|p| p.fields());
    let options = payment_options(tokens, offer, price.as_ref()).ok()?;
    let accepts: Vec<Value> = options
        .iter()
        .zip(offer.effective_payments())
        .filter_map(|(option, payment)| {
            let token = resolve_token(tokens, &payment.network, payment.asset.as_ref()).ok()?;
            Some(json!({
                "price": format_units(option.requirements.amount.0, token.decimals),
                "currency": option.asset_symbol,
                "amount": option.requirements.amount.0.to_string(),
                "network": option.requirements.network,
                "asset": option.requirements.asset,
                "payTo": option.requirements.pay_to,
            }))
        })
        .collect();
    let first = accepts.first()?;
    Some(json!({
        "protocols": ["x402"],
        "pricingMode": "fixed",
        "price": first["price"],
        "currency": first["currency"],
        "accepts": accepts,
    }))
}

fn media_type(body_type: Option<&str>) -> &'static str {
    match body_type {
        Some("form-data") => "multipart/form-data",
        Some("text") => "text/plain",
        _ => "application/json",
    }
}

/// One operation.
fn operation(
    tokens: &TokenRegistry,
    offer: &ServiceOffer,
    route: &RouteSpec,
    method: &str,
    path_params: &[String],
    io: Option<&(InputSpec, Option<OutputSpec>)>,
    index: usize,
) -> Value {
    let mut parameters: Vec<Value> = path_params
        .iter()
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"},
                   "description": if name == "rest" { "any path below" } else { "one path segment" }})
        })
        .collect();
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        format!(
            "{}-{}-{index}-{}",
            offer.metadata.namespace,
            offer.metadata.name,
            method.to_ascii_lowercase()
        )
        .into(),
    );
    op.insert(
        "summary".into(),
        route
            .summary
            .clone()
            .unwrap_or_else(|| description(offer))
            .into(),
    );
    op.insert("tags".into(), json!([offer.metadata.name]));
    let input = io.map(|(input, _)| input);
    if BODY_METHODS.contains(&method) {
        if let Some(input) = input {
            let schema = input
                .body
                .clone()
                .unwrap_or_else(|| json!({"type": "object"}));
            let mut content = json!({"schema": schema});
            if let Some(example) = &input.example {
                content["example"] = example.clone();
            }
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {media_type(input.body_type.as_deref()): content}}),
            );
        }
    } else if let Some(Value::Object(properties)) = input
        .and_then(|i| i.query_params.as_ref())
        .and_then(|q| q.get("properties"))
    {
        let required = input
            .and_then(|i| i.query_params.as_ref())
            .and_then(|q| q.get("required"))
            .and_then(Value::as_array);
        for (name, schema) in properties {
            parameters.push(json!({
                "name": name, "in": "query", "schema": schema,
                "required": required.is_some_and(|r| r.iter().any(|n| n == name)),
            }));
        }
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), parameters.into());
    }
    let mut ok = json!({"description": "The answer"});
    if let Some(output) = io.and_then(|(_, output)| output.as_ref()) {
        let mut content = json!({"schema": output.schema.clone().unwrap_or_else(|| json!({}))});
        if let Some(example) = &output.example {
            content["example"] = example.clone();
        }
        ok["content"] = json!({"application/json": content});
    }
    let mut responses = json!({"200": ok});
    match route.gate {
        GateSpec::Paid => {
            ok_paid(&mut responses);
            if let Some(info) = payment_info(tokens, offer, route) {
                op.insert("x-payment-info".into(), info);
            }
        }
        GateSpec::Auth => {
            responses["401"] = json!({
                "description": "Sign-in required: the x402 sign-in-with-x challenge in PAYMENT-REQUIRED and WWW-Authenticate",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}
            });
            op.insert("x-sign-in".into(), "sign-in-with-x".into());
        }
        GateSpec::Free => {}
    }
    op.insert("responses".into(), responses);
    Value::Object(op)
}

fn ok_paid(responses: &mut Value) {
    responses["200"]["headers"] = json!({
        "PAYMENT-RESPONSE": {"description": "The settlement receipt (base64 JSON)", "schema": {"type": "string"}}
    });
    responses["402"] = json!({
        "description": "Payment required: PAYMENT-REQUIRED header (base64 JSON) and the same JSON body",
        "headers": {"PAYMENT-REQUIRED": {"schema": {"type": "string"}}}
    });
}

/// The document for `offers` at `base_url`, each offer at its prefix (`""` on its own
/// hostname).
pub fn document(
    tokens: &TokenRegistry,
    base_url: &str,
    offers: &[(String, &ServiceOffer)],
) -> Value {
    let mut paths = Map::new();
    let mut prices: Vec<f64> = Vec::new();
    // MCP offers are JSON-RPC endpoints, not REST operations: their tools are in the catalog,
    // `/skill.md` and `/.well-known/x402*`.
    for (prefix, offer) in offers
        .iter()
        .filter(|(_, offer)| offer.spec.type_ != OfferType::Mcp)
    {
        let io = effective_io(offer);
        for (index, route) in offer.effective_routes().iter().enumerate() {
            let (path, params) = path_template(&route_pattern(prefix, &route.path));
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            let item = paths
                .entry(path)
                .or_insert_with(|| Value::Object(Map::new()));
            for method in methods(route, io.as_ref().map(|(i, _)| i), offer.spec.type_) {
                let op = operation(tokens, offer, route, &method, &params, io.as_ref(), index);
                if let Some(price) = op["x-payment-info"]["price"]
                    .as_str()
                    .and_then(|p| p.parse().ok())
                {
                    prices.push(price);
                }
                item[method.to_ascii_lowercase()] = op;
            }
        }
    }
    let mut info = json!({
        "title": format!("{DISPLAY_NAME} services"),
        "version": "1",
        "description": "Paid with x402: call an operation, answer its 402 with a PAYMENT-SIGNATURE, get the result and a PAYMENT-RESPONSE receipt.",
    });
    if let (Some(min), Some(max)) = (
        prices.iter().copied().reduce(f64::min),
        prices.iter().copied().reduce(f64::max),
    ) {
        info["x-payment-info"] = if (max - min).abs() < f64::EPSILON {
            json!({"protocols": ["x402"], "pricingMode": "fixed", "price": min.to_string()})
        } else {
            json!({"protocols": ["x402"], "pricingMode": "range", "minPrice": min.to_string(), "maxPrice": max.to_string()})
        };
    }
    json!({
        "openapi": "3.1.0",
        "info": info,
        "servers": [{"url": base_url}],
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_paths() {
        assert_eq!(
            path_template("/services/x/*"),
            ("/services/x/{rest}".into(), vec!["rest".into()])
        );
        assert_eq!(
            path_template("/services/x/v1/*/info"),
            ("/services/x/v1/{p4}/info".into(), vec!["p4".into()])
        );
        assert_eq!(
            path_template("/services/x/files/*.json"),
            ("/services/x/files/{p4}.json".into(), vec!["p4".into()])
        );
        assert_eq!(
            path_template("/services/x/submit"),
            ("/services/x/submit".into(), vec![])
        );
    }

    #[test]
    fn every_route_and_method_is_an_operation_priced_like_its_402() {
        let mut o = crate::validate::tests::offer();
        o.spec.routes = serde_json::from_value(json!([
            {"path": "/public/*", "methods": ["GET", "HEAD"], "gate": "free"},
            {"path": "/me", "gate": "auth"},
            {"path": "/submit", "methods": ["POST"], "price": "0.5", "summary": "Submit"},
            {"path": "/*"}
        ]))
        .unwrap();
        o.spec.discovery = Some(
            serde_json::from_value(json!({
                "input": {"queryParams": {"properties": {"q": {"type": "string"}}, "required": ["q"]}},
                "output": {"example": {"ok": true}}
            }))
            .unwrap(),
        );
        let tokens = TokenRegistry::builtin();
        let doc = document(&tokens, "https://s.example", &[(o.effective_path(), &o)]);
        let paths = &doc["paths"];
        let free = &paths["/services/echo/public/{rest}"]["get"];
        assert!(free.get("x-payment-info").is_none());
        assert!(
            paths["/services/echo/public/{rest}"].get("head").is_none(),
            "HEAD rides on GET"
        );
        assert_eq!(
            paths["/services/echo/me"]["get"]["x-sign-in"],
            "sign-in-with-x"
        );
        let submit = &paths["/services/echo/submit"]["post"];
        assert_eq!(submit["x-payment-info"]["price"], "0.5");
        assert_eq!(submit["x-payment-info"]["accepts"][0]["amount"], "500000");
        assert_eq!(submit["summary"], "Submit");
        assert!(submit["responses"].get("402").is_some());
        let rest = &paths["/services/echo/{rest}"]["get"];
        assert_eq!(rest["x-payment-info"]["price"], "0.001");
        assert_eq!(rest["x-payment-info"]["currency"], "USDC");
        assert_eq!(
            rest["parameters"][1],
            json!({"name": "q", "in": "query", "schema": {"type": "string"}, "required": true})
        );
        assert_eq!(
            rest["responses"]["200"]["content"]["application/json"]["example"],
            json!({"ok": true})
        );
        assert_eq!(
            doc["info"]["x-payment-info"],
            json!({"protocols": ["x402"], "pricingMode": "range", "minPrice": "0.001", "maxPrice": "0.5"})
        );
    }
}
