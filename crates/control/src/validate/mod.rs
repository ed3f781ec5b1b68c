//! Checks a `ServiceOffer` or a `PurchaseRequest` before it is stored, with errors that name
//! the field and the rule.

use std::borrow::Cow;
use std::fmt;

use obol_x402::money::Decimal;
use obol_x402::network;
use obol_x402::pricing::Price;

use crate::identity::AgentIdentity;
use crate::offer::{
    MAX_LIMIT, MAX_ROUTES, OfferType, PaymentSpec, PriceSpec, RouteSpec, SIGN_IN_PATH,
    ServiceOffer, is_reserved, is_sign_in_path,
};
use crate::purchase::{MAX_PURCHASE_COUNT, PurchaseRequest};
use crate::secrets::is_secret_key;
use obol_gateway::Methods;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.payment.payTo` or `spec.routes[2].methods`.
    pub field: Cow<'static, str>,
    /// What is wrong.
    pub message: String,
}

/// Every broken rule of an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The object's kind.
    pub kind: &'static str,
    /// The broken rules.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        write!(f, "invalid {}: {}", self.kind, parts.join("; "))
    }
}

fn verdict(kind: &'static str, errors: Vec<FieldError>) -> Result<(), ValidationError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { kind, errors })
    }
}

/// What [`is_address`] accepts, as the original's CRD pattern for `payTo`.
pub const ADDRESS_PATTERN: &str = "^0x[0-9a-fA-F]{40}$";

/// The original's pattern for an offer's `path` (`path_problem` checks more: normal form, no
/// `*`).
pub const PATH_PATTERN: &str = "^/[a-zA-Z0-9/_.-]*$";

/// The original's pattern for a route's `path` (`route_path_problem` checks more).
pub const ROUTE_PATH_PATTERN: &str = "^/[a-zA-Z0-9/_.*-]*$";

/// A lower-case DNS name, the CRD's pattern for `hostname` ([`hostname_problem`] also refuses
/// IP addresses, single labels and labels longer than 63).
pub const HOSTNAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// The longest vanity hostname accepted.
pub const MAX_HOSTNAME_LEN: usize = 253;

/// `0x` followed by 40 hex digits (any case).
pub fn is_address(text: &str) -> bool {
    text.len() == 42 && text.starts_with("0x") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// What is wrong with `url` as an http(s) URL with a host, if anything.
fn http_url_problem(url: &str) -> Option<String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => None,
        Ok(_) => Some(format!("{url:?} must be an http(s) URL with a host")),
        Err(e) => Some(format!("{url:?}: {e}")),
    }
}

fn check_meta(meta: &crate::ObjectMeta, errors: &mut Vec<FieldError>) {
    if !is_dns_label(&meta.name) {
        errors.push(FieldError {
            field: "metadata.name".into(),
            message: format!(
                "{:?} must be a DNS label: lower-case letters, digits and '-', at most 63 characters",
                meta.name
            ),
        });
    }
    if !is_dns_label(&meta.namespace) {
        errors.push(FieldError {
            field: "metadata.namespace".into(),
            message: format!("{:?} must be a DNS label", meta.namespace),
        });
    }
}

/// The most authorizations one request may carry (top-ups append to the spec).
pub const MAX_PRE_SIGNED_AUTHS: usize = 10_000;

/// Validates a purchase request; all broken rules are reported at once.
pub fn validate_purchase(purchase: &PurchaseRequest) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    check_meta(&purchase.metadata, &mut errors);
    let spec = &purchase.spec;
    let mut fail = |field: &'static str, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        });
    };
    if spec.model.trim().is_empty() {
        fail("spec.model", "must not be empty".to_owned());
    }
    if !(1..=MAX_PURCHASE_COUNT).contains(&spec.count) {
        fail(
            "spec.count",
            format!("{} must be between 1 and {MAX_PURCHASE_COUNT}", spec.count),
        );
    }
    if let Some(refill) = spec.auto_refill.as_ref().filter(|r| r.enabled) {
        if refill.count == 0 || refill.count > 1000 {
            fail(
                "spec.autoRefill.count",
                format!("{} must be between 1 and 1000", refill.count),
            );
        }
        if refill.threshold == 0 {
            fail(
                "spec.autoRefill.threshold",
                "must be at least 1 (refill when fewer remain)".to_owned(),
            );
        }
        let cap = refill.max_spend_per_day.as_deref();
        if cap
            .and_then(|c| c.parse::<obol_x402::primitives::U256>().ok())
            .is_none_or(|c| c.is_zero())
        {
            fail(
                "spec.autoRefill.maxSpendPerDay",
                "is required with autoRefill: the most refills may sign a UTC day, in atomic units"
                    .to_owned(),
            );
        }
    }
    if spec.pre_signed_auths.len() > MAX_PRE_SIGNED_AUTHS {
        fail(
            "spec.preSignedAuths",
            format!(
                "{} exceeds {MAX_PRE_SIGNED_AUTHS}",
                spec.pre_signed_auths.len()
            ),
        );
    }
    let payment = &spec.payment;
    if let Err(e) = network::evm_chain_id(&payment.network) {
        fail("spec.payment.network", e.to_string());
    }
    if !is_address(&payment.pay_to) {
        fail(
            "spec.payment.payTo",
            format!("{:?} must be 0x followed by 40 hex digits", payment.pay_to),
        );
    }
    if !is_address(&payment.asset) {
        fail(
            "spec.payment.asset",
            format!("{:?} must be 0x followed by 40 hex digits", payment.asset),
        );
    }
    if payment.price.is_empty()
        || !payment.price.bytes().all(|b| b.is_ascii_digit())
        || payment.price.bytes().all(|b| b == b'0')
    {
        fail(
            "spec.payment.price",
            format!(
                "{:?} must be a positive integer in atomic units",
                payment.price
            ),
        );
    }
    if let Some(problem) = http_url_problem(&spec.endpoint) {
        fail("spec.endpoint", problem);
    }
    verdict("PurchaseRequest", errors)
}

/// Validates an agent identity: chain names, decimal agent ids, one entry per chain, an http(s)
/// image.
pub fn validate_identity(identity: &AgentIdentity) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    check_meta(&identity.metadata, &mut errors);
    let mut fail = |field: &'static str, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        });
    };
    if let Some(image) = identity.spec.image.as_deref()
        && let Some(problem) = http_url_problem(image)
    {
        fail("spec.image", problem);
    }
    let mut seen: Vec<String> = Vec::new();
    for r in &identity.status.registrations {
        let chain = r.chain.trim().to_ascii_lowercase();
        let valid_name = !chain.is_empty()
            && chain.len() <= 64
            && chain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'));
        if !valid_name {
            fail(
                "status.registrations[].chain",
                format!("{:?} is not a chain name", r.chain),
            );
        }
        if seen.contains(&chain) {
            fail(
                "status.registrations[].chain",
                format!("{:?} is listed twice", r.chain),
            );
        }
        seen.push(chain);
        let decimal = !r.agent_id.is_empty()
            && r.agent_id.len() <= 78
            && r.agent_id.bytes().all(|b| b.is_ascii_digit());
        if !decimal {
            fail(
                "status.registrations[].agentId",
                format!("{:?} must be a decimal integer", r.agent_id),
            );
        }
    }
    verdict("AgentIdentity", errors)
}

/// A DNS-1123 label: lower-case letters, digits and `-`, starting and ending alphanumeric,
/// at most 63 characters.
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// What is wrong with `host` as a vanity hostname, if anything: a lower-case DNS name (labels
/// of letters, digits and `-`, 1 to 63 long, not starting or ending with `-`), at most 253
/// bytes, with at least one dot, not an IP address, without a port or a trailing dot.
pub fn hostname_problem(host: &str) -> Option<String> {
    if host.len() > MAX_HOSTNAME_LEN {
        return Some(format!("is longer than {MAX_HOSTNAME_LEN} bytes"));
    }
    if host.parse::<std::net::IpAddr>().is_ok()
        || host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return Some(format!("{host:?} is an IP address; use a DNS name"));
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 || !labels.iter().all(|l| is_dns_label(l)) {
        return Some(format!(
            "{host:?} must be a lower-case DNS name such as api.example.com (no port, no scheme, no trailing dot)"
        ));
    }
    None
}

/// The longest offer path accepted.
pub const MAX_PATH_LEN: usize = 512;

/// What is wrong with `path` as an offer's public path, if anything: it must match
/// `^/[a-zA-Z0-9/_.-]*$` (the original's pattern), be at most [`MAX_PATH_LEN`] bytes, and be in
/// normal form (no empty, `.` or `..` segment; one trailing `/` is allowed and ignored), so that
/// two offers claim the same path exactly when their paths are equal. No `*`: an offer's path is
/// a prefix, everything below it is served.
fn path_problem(path: &str) -> Option<String> {
    if path.len() > MAX_PATH_LEN {
        return Some(format!("is longer than {MAX_PATH_LEN} bytes"));
    }
    if path.contains('*') {
        return Some(format!(
            "{path:?} must not contain '*': an offer's path is a prefix and everything below it is served; drop the wildcard"
        ));
    }
    let charset = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-'));
    let Some(rest) = path.strip_prefix('/').filter(|_| charset) else {
        return Some(format!("{path:?} must match {PATH_PATTERN}"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return None;
    }
    rest.split('/').find_map(|segment| match segment {
        "" => Some(format!("{path:?} has an empty segment ('//')")),
        "." | ".." => Some(format!("{path:?} has a {segment:?} segment")),
        _ => None,
    })
}

/// Validates an offer; all broken rules are reported at once.
pub fn validate_offer(offer: &ServiceOffer) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    check_meta(&offer.metadata, &mut errors);
    let mut fail = |field: &'static str, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        });
    };
    let spec = &offer.spec;
    if spec.type_ != OfferType::Inference
        && offer.effective_payments().iter().any(|p| p.upto.is_some())
    {
        fail(
            "spec.payment.upto",
            "metered billing reads the token usage of inference answers: only type inference offers it".to_owned(),
        );
    }

    let upstream = &spec.upstream;
    match (&upstream.url, &upstream.service) {
        (Some(_), Some(_)) => fail(
            "spec.upstream",
            "set either url or service/namespace/port, not both".to_owned(),
        ),
        (None, None) => fail(
            "spec.upstream",
            "set url (embedded mode) or service and port (Kubernetes mode)".to_owned(),
        ),
        (Some(url), None) => {
            if let Some(problem) = http_url_problem(url) {
                fail("spec.upstream.url", problem);
            }
        }
        (None, Some(service)) => {
            if !is_dns_label(service) {
                fail(
                    "spec.upstream.service",
                    format!("{service:?} must be a DNS label"),
                );
            }
            if upstream.port.is_none_or(|p| p == 0) {
                fail(
                    "spec.upstream.port",
                    "is required with a service (1-65535)".to_owned(),
                );
            }
        }
    }
    if let Some(health) = &upstream.health_path
        && !health.starts_with('/')
    {
        fail(
            "spec.upstream.healthPath",
            format!("{health:?} must start with '/'"),
        );
    }

    if let Some(auth) = &upstream.auth {
        if !is_dns_label(&auth.secret_ref.name) {
            fail(
                "spec.upstream.auth.secretRef.name",
                format!("{:?} must be a DNS label", auth.secret_ref.name),
            );
        }
        if !is_secret_key(&auth.secret_ref.key) {
            fail(
                "spec.upstream.auth.secretRef.key",
                format!(
                    "{:?} must be letters, digits, '-', '_' or '.'",
                    auth.secret_ref.key
                ),
            );
        }
        if let Err(problem) = obol_gateway::proxy::auth_header(auth.header()) {
            fail("spec.upstream.auth.header", problem);
        }
    }

    if spec.type_ == OfferType::Inference
        && spec.model.as_ref().is_none_or(|m| m.name.trim().is_empty())
    {
        fail(
            "spec.model.name",
            "is required for inference offers".to_owned(),
        );
    }

    let effective = offer.effective_path();
    if let Some(problem) = spec.path.as_deref().and_then(path_problem) {
        fail("spec.path", problem);
    } else if is_reserved(&effective) {
        fail(
            "spec.path",
            format!(
                "{effective} is reserved (/, /services, /api, /openapi.json, /skill.md, /rpc, /.well-known)"
            ),
        );
    }
    if let Some(problem) = spec.hostname.as_deref().and_then(hostname_problem) {
        errors.push(FieldError {
            field: "spec.hostname".into(),
            message: problem,
        });
    }
    if let Some(discovery) = &spec.discovery {
        crate::discovery::check(discovery, &mut errors);
    }
    check_payment("spec.payment", &spec.payment, &mut errors);
    check_payments(&spec.payment, &spec.payments, &mut errors);
    check_routes(&spec.routes, &mut errors);
    crate::mcp::check(spec, &mut errors);
    if let Some(limits) = spec.limits {
        for (name, value) in [("maxInFlight", limits.max_in_flight), ("rps", limits.rps)] {
            if value.is_some_and(|v| v == 0 || v > MAX_LIMIT) {
                errors.push(FieldError {
                    field: format!("spec.limits.{name}").into(),
                    message: format!("must be between 1 and {MAX_LIMIT}"),
                });
            }
        }
    }
    errors.sort_by_key(|e| !e.field.starts_with("metadata"));
    verdict("ServiceOffer", errors)
}

/// Checks one way to pay, its fields named below `prefix` (`spec.payment`, `spec.payments[1]`).
fn check_payment(prefix: &str, payment: &PaymentSpec, errors: &mut Vec<FieldError>) {
    let mut fail = |name: &str, message: String| {
        errors.push(FieldError {
            field: format!("{prefix}.{name}").into(),
            message,
        });
    };
    let pay_to = &payment.pay_to;
    if !is_address(pay_to) {
        fail(
            "payTo",
            format!("{pay_to:?} must be 0x followed by 40 hex digits"),
        );
    }
    if payment.scheme != "exact" {
        fail(
            "scheme",
            format!("{:?} is not supported; use \"exact\"", payment.scheme),
        );
    }
    if let Err(e) = network::evm_chain_id(&payment.network) {
        fail("network", e.to_string());
    }
    if payment
        .max_timeout_seconds
        .is_some_and(|t| t == 0 || t > 86_400)
    {
        fail(
            "maxTimeoutSeconds",
            "must be between 1 and 86400".to_owned(),
        );
    }
    for (part, message) in price_problems(&payment.price) {
        fail(
            &if part.is_empty() {
                "price".to_owned()
            } else {
                format!("price.{part}")
            },
            message,
        );
    }
    if let Some(upto) = &payment.upto {
        if payment.price.token_rates().is_none() {
            fail(
                "upto",
                "metered billing needs a price per token: perMTok, or perMTokInput and perMTokOutput".to_owned(),
            );
        }
        if upto
            .max_tokens
            .is_some_and(|n| n == 0 || n > MAX_UPTO_TOKENS)
        {
            fail(
                "upto.maxTokens",
                format!("must be between 1 and {MAX_UPTO_TOKENS}"),
            );
        }
    }
}

/// The largest `payment.upto.maxTokens`.
pub const MAX_UPTO_TOKENS: u64 = 10_000_000;

/// Checks `spec.payments`: each like `payment`, the first equal to `payment` (as the original
/// requires), no token on a chain twice, one settle timing (`payment.settle`).
fn check_payments(first: &PaymentSpec, payments: &[PaymentSpec], errors: &mut Vec<FieldError>) {
    let Some(head) = payments.first() else {
        return;
    };
    if normalized(head) != normalized(first) {
        errors.push(FieldError {
            field: "spec.payments[0]".into(),
            message: "must equal spec.payment (payments lists every way to pay, the first being spec.payment)".to_owned(),
        });
    }
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, payment) in payments.iter().enumerate() {
        let prefix = format!("spec.payments[{i}]");
        check_payment(&prefix, payment, errors);
        if payment.settle != first.settle {
            errors.push(FieldError {
                field: format!("{prefix}.settle").into(),
                message: "is per offer: set it on spec.payment only".to_owned(),
            });
        }
        let token = (
            network::normalize(&payment.network),
            payment
                .asset
                .as_ref()
                .and_then(|a| a.address.clone().or_else(|| a.symbol.clone()))
                .unwrap_or_else(|| "USDC".to_owned())
                .to_ascii_lowercase(),
        );
        if let Some(j) = seen.iter().position(|t| *t == token) {
            errors.push(FieldError {
                field: prefix.into(),
                message: format!("pays in the same token on the same chain as spec.payments[{j}]"),
            });
        }
        seen.push(token);
    }
}

/// `payment` in the form two equal payments share: CAIP-2 network, lower-case payTo, the
/// default validity written out.
fn normalized(payment: &PaymentSpec) -> PaymentSpec {
    let mut payment = payment.clone();
    payment.network = network::normalize(&payment.network);
    payment.pay_to = payment.pay_to.to_ascii_lowercase();
    payment.max_timeout_seconds = Some(
        payment
            .max_timeout_seconds
            .unwrap_or(crate::routes::DEFAULT_MAX_TIMEOUT_SECONDS),
    );
    payment
}

/// What is wrong with a price: `("", message)` for the price as a whole, `("perEpoch", …)`.
pub(crate) fn price_problems(price: &PriceSpec) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if price.per_epoch.is_some() {
        problems.push((
            "perEpoch",
            "is not supported; use perRequest, perMTok or perHour".to_owned(),
        ));
    }
    match (&price.per_mtok_input, &price.per_mtok_output) {
        (None, None) => {}
        (Some(_), Some(_)) => {
            if price.per_mtok.is_some() {
                problems.push((
                    "perMTok",
                    "set perMTok, or perMTokInput and perMTokOutput, not both".to_owned(),
                ));
            }
            if let Some(Err(e)) = price.token_rates() {
                problems.push(("", e.to_string()));
            }
        }
        (Some(_), None) => {
            problems.push(("perMTokOutput", "is required with perMTokInput".to_owned()))
        }
        (None, Some(_)) => {
            problems.push(("perMTokInput", "is required with perMTokOutput".to_owned()))
        }
    }
    match Price::from_fields(
        price.per_request.as_deref(),
        price.flat_per_mtok(),
        price.per_hour.as_deref(),
    ) {
        Ok(p) if p.amount == Decimal::ZERO => {
            problems.push(("", "must be greater than zero".to_owned()));
        }
        Ok(_) => {}
        Err(e) => problems.push(("", e.to_string())),
    }
    problems
}

/// The longest route summary accepted, in characters.
pub const MAX_SUMMARY_CHARS: usize = 300;

/// What is wrong with a route's path, if anything: `^/[a-zA-Z0-9/_.*-]*$` (the original's
/// pattern), at most [`MAX_PATH_LEN`] bytes, no empty, `.` or `..` segment, no trailing `/`
/// (but `/` itself, the offer's own path), at most one `*` per segment.
pub(crate) fn route_path_problem(path: &str) -> Option<String> {
    if path.len() > MAX_PATH_LEN {
        return Some(format!("is longer than {MAX_PATH_LEN} bytes"));
    }
    let charset = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'*' | b'-'));
    let Some(rest) = path.strip_prefix('/').filter(|_| charset) else {
        return Some(format!("{path:?} must match {ROUTE_PATH_PATTERN}"));
    };
    if rest.is_empty() {
        return None;
    }
    rest.split('/').find_map(|segment| match segment {
        "" => Some(format!(
            "{path:?} has an empty segment ('//' or a trailing '/'): write /x or /x/*"
        )),
        "." | ".." => Some(format!("{path:?} has a {segment:?} segment")),
        s if s.matches('*').count() > 1 => {
            Some(format!("{path:?}: a segment may hold one '*' ({s:?})"))
        }
        _ => None,
    })
}

/// Checks `spec.routes`: count, each route's fields, and no two routes on the same path with a
/// method in common.
fn check_routes(routes: &[RouteSpec], errors: &mut Vec<FieldError>) {
    let mut fail = |field: String, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        });
    };
    if routes.len() > MAX_ROUTES {
        fail(
            "spec.routes".into(),
            format!("declares {} routes; at most {MAX_ROUTES}", routes.len()),
        );
    }
    let mut seen: Vec<(&str, Methods)> = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let field = |name: &str| format!("spec.routes[{i}].{name}");
        if let Some(problem) = route_path_problem(&route.path) {
            fail(field("path"), problem);
        } else if is_sign_in_path(&route.path) {
            fail(
                field("path"),
                format!("{SIGN_IN_PATH} below an offer is reserved for sign-in"),
            );
        }
        match Methods::parse(route.methods.iter().map(String::as_str)) {
            Err(bad) => fail(
                field("methods"),
                format!(
                    "{bad:?} is not one of {} (upper case)",
                    Methods::NAMES.join(", ")
                ),
            ),
            Ok(methods) => {
                if let Some(j) = seen
                    .iter()
                    .position(|(path, other)| *path == route.path && other.overlaps(methods))
                {
                    fail(
                        field("path"),
                        format!(
                            "{:?} with these methods is already declared by spec.routes[{j}]",
                            route.path
                        ),
                    );
                }
                seen.push((&route.path, methods));
            }
        }
        if route
            .summary
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SUMMARY_CHARS)
        {
            fail(
                field("summary"),
                format!("is longer than {MAX_SUMMARY_CHARS} characters"),
            );
        }
        if let Some(price) = &route.price {
            for (part, message) in price_problems(&price.fields()) {
                let name = if part.is_empty() {
                    "price".to_owned()
                } else {
                    format!("price.{part}")
                };
                fail(field(&name), message);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
