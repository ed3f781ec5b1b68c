//! Checks a `ServiceOffer` before it is stored, with errors that name the field and the rule.

use std::fmt;

use obol_x402::money::Decimal;
use obol_x402::network;
use obol_x402::pricing::Price;

use crate::offer::{OfferType, ServiceOffer, is_reserved};

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.payment.payTo`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Every broken rule of an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError(pub Vec<FieldError>);

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        write!(f, "invalid ServiceOffer: {}", parts.join("; "))
    }
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

/// Validates an offer; all broken rules are reported at once.
pub fn validate_offer(offer: &ServiceOffer) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    let mut fail =
        |field: &'static str, message: String| errors.push(FieldError { field, message });
    let meta = &offer.metadata;
    if !is_dns_label(&meta.name) {
        fail(
            "metadata.name",
            format!(
                "{:?} must be a DNS label: lower-case letters, digits and '-', at most 63 characters",
                meta.name
            ),
        );
    }
    if !is_dns_label(&meta.namespace) {
        fail(
            "metadata.namespace",
            format!("{:?} must be a DNS label", meta.namespace),
        );
    }
    let spec = &offer.spec;

    let pay_to = &spec.payment.pay_to;
    let valid_pay_to = pay_to.len() == 42
        && pay_to.starts_with("0x")
        && pay_to[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if !valid_pay_to {
        fail(
            "spec.payment.payTo",
            format!("{pay_to:?} must be 0x followed by 40 hex digits"),
        );
    }
    if spec.payment.scheme != "exact" {
        fail(
            "spec.payment.scheme",
            format!("{:?} is not supported; use \"exact\"", spec.payment.scheme),
        );
    }
    if let Err(e) = network::evm_chain_id(&spec.payment.network) {
        fail("spec.payment.network", e.to_string());
    }
    if spec
        .payment
        .max_timeout_seconds
        .is_some_and(|t| t == 0 || t > 86_400)
    {
        fail(
            "spec.payment.maxTimeoutSeconds",
            "must be between 1 and 86400".to_owned(),
        );
    }
    let price = &spec.payment.price;
    if price.per_epoch.is_some() {
        fail(
            "spec.payment.price.perEpoch",
            "is not supported; use perRequest, perMTok or perHour".to_owned(),
        );
    }
    match Price::from_fields(
        price.per_request.as_deref(),
        price.per_mtok.as_deref(),
        price.per_hour.as_deref(),
    ) {
        Ok(p) if p.amount == Decimal::ZERO => {
            fail("spec.payment.price", "must be greater than zero".to_owned())
        }
        Ok(_) => {}
        Err(e) => fail("spec.payment.price", e.to_string()),
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
        (Some(url), None) => match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(_) => fail(
                "spec.upstream.url",
                format!("{url:?} must be an http(s) URL with a host"),
            ),
            Err(e) => fail("spec.upstream.url", format!("{url:?}: {e}")),
        },
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

    if spec.type_ == OfferType::Inference
        && spec.model.as_ref().is_none_or(|m| m.name.trim().is_empty())
    {
        fail(
            "spec.model.name",
            "is required for inference offers".to_owned(),
        );
    }

    if let Some(path) = &spec.path {
        let syntax = path.starts_with('/')
            && path.len() <= 512
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-'));
        if !syntax {
            fail(
                "spec.path",
                format!("{path:?} must match ^/[a-zA-Z0-9/_.-]*$"),
            );
        }
    }
    let effective = offer.effective_path();
    if is_reserved(&effective) {
        fail(
            "spec.path",
            format!(
                "{effective} is reserved (/, /services, /api, /openapi.json, /skill.md, /rpc, /.well-known)"
            ),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationError(errors))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::offer::{PaymentSpec, PriceSpec, ServiceOfferSpec, SettleTiming, UpstreamSpec};

    pub(crate) fn offer() -> ServiceOffer {
        ServiceOffer::new(
            "default",
            "echo",
            ServiceOfferSpec {
                type_: OfferType::Http,
                model: None,
                upstream: UpstreamSpec {
                    url: Some("http://127.0.0.1:9000".into()),
                    ..UpstreamSpec::default()
                },
                payment: PaymentSpec {
                    scheme: "exact".into(),
                    network: "base-sepolia".into(),
                    pay_to: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC".into(),
                    max_timeout_seconds: None,
                    settle: SettleTiming::ServeFirst,
                    asset: None,
                    price: PriceSpec {
                        per_request: Some("0.001".into()),
                        ..PriceSpec::default()
                    },
                },
                path: None,
                registration: None,
                listing: None,
                drain_at: None,
                drain_grace_period: None,
                provenance: None,
                description: None,
            },
        )
    }

    fn fields(offer: &ServiceOffer) -> Vec<&'static str> {
        validate_offer(offer)
            .err()
            .map_or_else(Vec::new, |e| e.0.into_iter().map(|f| f.field).collect())
    }

    #[test]
    fn a_good_offer_passes() {
        assert_eq!(validate_offer(&offer()), Ok(()));
        assert_eq!(offer().effective_path(), "/services/echo");
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut o = offer();
        o.metadata.name = "Bad_Name".into();
        assert_eq!(fields(&o), ["metadata.name"]);

        let mut o = offer();
        o.spec.payment.pay_to = "0x123".into();
        assert_eq!(fields(&o), ["spec.payment.payTo"]);

        let mut o = offer();
        o.spec.payment.price.per_hour = Some("1".into());
        let err = validate_offer(&o).unwrap_err().to_string();
        assert!(
            err.contains("several prices given (perRequest, perHour)"),
            "{err}"
        );

        let mut o = offer();
        o.spec.payment.price.per_request = None;
        assert_eq!(fields(&o), ["spec.payment.price"]);

        let mut o = offer();
        o.spec.path = Some("/api/x".into());
        assert_eq!(fields(&o), ["spec.path"]);
        o.spec.path = Some("/services".into());
        assert_eq!(fields(&o), ["spec.path"]);
        o.spec.path = Some("/has space".into());
        assert_eq!(fields(&o), ["spec.path"]);

        let mut o = offer();
        o.spec.payment.network = "nowhere".into();
        assert_eq!(fields(&o), ["spec.payment.network"]);

        let mut o = offer();
        o.spec.upstream = UpstreamSpec::default();
        assert_eq!(fields(&o), ["spec.upstream"]);

        let mut o = offer();
        o.spec.type_ = OfferType::Inference;
        assert_eq!(fields(&o), ["spec.model.name"]);

        let mut o = offer();
        o.metadata.name = "x".repeat(64);
        o.spec.payment.pay_to = "nope".into();
        assert_eq!(
            fields(&o),
            ["metadata.name", "spec.payment.payTo"],
            "all errors at once"
        );
    }
}
