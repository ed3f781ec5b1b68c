//! From a request's payment header to the facilitator request: decode, normalise, match
//! against what the offer asks for, and pair with the server's own copy of the requirement.

use axum::http::HeaderMap;
use obol_x402::header::{self, PAYMENT_SIGNATURE, X_PAYMENT};
use obol_x402::network;
use obol_x402::signature;
use obol_x402::wire::{DecimalU256, PaymentPayload, VerifyRequest, v1, v2};
use serde_json::{Map, Value};

use crate::challenge::PaymentFailure;
use crate::error::GatewayError;
use crate::route::{Offer, PaymentOption};

/// The payment a request carries.
#[derive(Debug, Clone)]
pub struct Presented {
    /// Which header carried it.
    pub header: &'static str,
    /// The decoded payment, `v` normalised to 27/28.
    pub payload: PaymentPayload,
}

/// Reads `X-PAYMENT` (v1 name, checked first like the original) or `PAYMENT-SIGNATURE`.
/// `None` without either; an error when the value does not decode.
pub fn extract(headers: &HeaderMap) -> Option<Result<Presented, GatewayError>> {
    let (name, value) = [X_PAYMENT, PAYMENT_SIGNATURE]
        .into_iter()
        .find_map(|name| headers.get(name).map(|v| (name, v)))?;
    let decoded = value
        .to_str()
        .map_err(|_| GatewayError::invalid_payment_header(format!("{name} is not visible ASCII")))
        .and_then(|text| {
            header::decode::<PaymentPayload>(text.trim())
                .map_err(|e| GatewayError::invalid_payment_header(format!("{name}: {e}")))
        })
        .map(|mut payload| {
            normalize_signature(&mut payload);
            Presented {
                header: name,
                payload,
            }
        });
    Some(decoded)
}

/// A payment sent as JSON rather than in a header (MCP's `_meta["x402/payment"]`, named
/// `carrier`): the object, or a string holding it, decoded and normalised as a header's is.
pub fn from_json(value: Value, carrier: &'static str) -> Result<Presented, GatewayError> {
    let value = match value {
        Value::String(text) => serde_json::from_str(&text)
            .map_err(|e| GatewayError::invalid_payment_header(format!("{carrier}: {e}")))?,
        other => other,
    };
    let mut payload: PaymentPayload = serde_json::from_value(value)
        .map_err(|e| GatewayError::invalid_payment_header(format!("{carrier}: {e}")))?;
    normalize_signature(&mut payload);
    Ok(Presented {
        header: carrier,
        payload,
    })
}

/// Rewrites a 65-byte signature's `v` of 0/1 to 27/28, so verify and settle see the same bytes.
fn normalize_signature(payload: &mut PaymentPayload) {
    let map: &mut Map<String, Value> = match payload {
        PaymentPayload::V1(p) => &mut p.payload,
        PaymentPayload::V2(p) => &mut p.payload,
    };
    let Some(Value::String(text)) = map.get("signature") else {
        return;
    };
    if let Ok(bytes) = signature::from_hex(text) {
        let mut bytes = bytes.to_vec();
        if bytes.len() == 65 && bytes[64] < 2 {
            signature::normalize_v(&mut bytes);
            map.insert(
                "signature".into(),
                Value::String(obol_x402::primitives::Bytes::from(bytes).to_string()),
            );
        }
    }
}

fn same_terms(offered: &v2::PaymentRequirements, accepted: &v2::PaymentRequirements) -> bool {
    offered.scheme == accepted.scheme
        && network::same_network(&offered.network, &accepted.network)
        && offered.amount == accepted.amount
        && offered.asset.eq_ignore_ascii_case(&accepted.asset)
        && offered.pay_to.eq_ignore_ascii_case(&accepted.pay_to)
}

/// Finds the offered option the payment answers, and builds the facilitator request with the
/// server's own requirement (never the client's copy).
pub fn match_payment<'a>(
    offer: &'a Offer,
    presented: &Presented,
    resource_url: &str,
) -> Result<(&'a PaymentOption, VerifyRequest), PaymentFailure> {
    let no_match = |detail: String| PaymentFailure {
        reason: "no_matching_requirement",
        detail,
        hint: Some(
            "sign one of accepts[] exactly as offered (scheme, network, amount, asset, payTo)",
        ),
    };
    match &presented.payload {
        PaymentPayload::V2(payload) => {
            let accepted = &payload.accepted;
            let option = offer
                .options
                .iter()
                .find(|o| same_terms(&o.requirements, accepted))
                .ok_or_else(|| {
                    no_match(format!(
                        "no offered requirement matches {} {} of {} to {} on {}",
                        accepted.scheme,
                        accepted.amount,
                        accepted.asset,
                        accepted.pay_to,
                        accepted.network
                    ))
                })?;
            Ok((
                option,
                VerifyRequest::V2 {
                    payment_payload: payload.clone(),
                    payment_requirements: option.requirements.clone(),
                },
            ))
        }
        PaymentPayload::V1(payload) => {
            // v1 names only scheme and network; the amount is in the signed authorization.
            let value = payload
                .evm_payload()
                .ok()
                .map(|signed| DecimalU256::from(signed.ceiling()));
            let option = offer
                .options
                .iter()
                .find(|o| {
                    o.requirements.scheme == payload.scheme
                        && network::same_network(&o.requirements.network, &payload.network)
                        && value.is_none_or(|v| v == o.requirements.amount)
                })
                .ok_or_else(|| {
                    no_match(format!(
                        "no offered requirement for {} on {}",
                        payload.scheme, payload.network
                    ))
                })?;
            let r = &option.requirements;
            let requirements = v1::PaymentRequirements {
                scheme: r.scheme.clone(),
                network: payload.network.clone(),
                max_amount_required: r.amount,
                asset: r.asset.clone(),
                pay_to: r.pay_to.clone(),
                resource: resource_url.to_owned(),
                description: offer.description.clone(),
                mime_type: offer.mime_type.clone(),
                output_schema: None,
                max_timeout_seconds: r.max_timeout_seconds,
                extra: r.extra.clone(),
            };
            Ok((
                option,
                VerifyRequest::V1 {
                    payment_payload: payload.clone(),
                    payment_requirements: requirements,
                },
            ))
        }
    }
}
