//! `obol_gateway::matching::match_payment`: arbitrary payments against a fixed, realistic offer
//! (USDC EIP-3009 and OBOL Permit2 on Base Sepolia, USDC on Base under its legacy name), then
//! the facilitator's `precheck` on the request the gateway would send.
//!
//! Input: a mode byte, then the data. Modes (mode % 3):
//! - 0: the data is a `PaymentPayload` as JSON (v1 or v2);
//! - 1: structured: the data drives choices among near-miss terms (network spellings, address
//!   case, amounts, schemes) so the matching branches are reached often;
//! - 2: the data is a raw `PAYMENT-SIGNATURE` value, through `matching::extract`.
//!
//! Invariants: nothing panics; a match names one of the offer's options, whose terms the
//! payment states (scheme, network in any naming, amount, asset and payTo ignoring case); the
//! facilitator request carries the server's requirement, never the client's copy; a v2 payment
//! whose `accepted` is exactly an offered requirement always matches; a refusal is
//! `no_matching_requirement`; a precheck that passes agrees with the option on amount, asset
//! and payTo.

#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use obol_facilitator::checks::precheck;
use obol_fuzz::{FIXED_NOW, OBOL_BASE_SEPOLIA, PAY_TO, RESOURCE_URL, USDC_BASE, USDC_BASE_SEPOLIA};
use obol_gateway::matching::{Presented, extract, match_payment};
use obol_gateway::{Offer, OfferKind};
use obol_x402::header::{PAYMENT_SIGNATURE, X_PAYMENT};
use obol_x402::network;
use obol_x402::wire::{ExactEvmPayload, PaymentPayload, VerifyRequest};
use serde_json::{Value, json};

static OFFER: std::sync::LazyLock<std::sync::Arc<Offer>> =
    std::sync::LazyLock::new(|| obol_fuzz::offer(OfferKind::Http, "http://127.0.0.1:9/"));

fn pick<'a>(u: &mut Unstructured<'a>, fixed: &[&str]) -> ArbResult<String> {
    let i = u.choose_index(fixed.len() + 1)?;
    Ok(match fixed.get(i) {
        Some(s) => (*s).to_owned(),
        None => u.arbitrary::<&str>()?.to_owned(),
    })
}

fn case(u: &mut Unstructured<'_>, text: String) -> ArbResult<String> {
    Ok(match u.choose_index(3)? {
        0 => text,
        1 => text.to_lowercase(),
        _ => format!("0x{}", text.trim_start_matches("0x").to_uppercase()),
    })
}

fn amount(u: &mut Unstructured<'_>) -> ArbResult<String> {
    Ok(match u.choose_index(5)? {
        0 => "1000".into(),
        1 => "1000000000000000".into(),
        2 => u.arbitrary::<u128>()?.to_string(),
        3 => {
            "115792089237316195423570985008687907853269984665640564039457584007913129639935".into()
        }
        _ => format!("{}", u.arbitrary::<u16>()?),
    })
}

/// A payment built from near-miss terms.
fn structured(u: &mut Unstructured<'_>) -> ArbResult<Value> {
    let scheme = pick(u, &["exact", "upto", "EXACT"])?;
    let network = pick(
        u,
        &[
            "eip155:84532",
            "base-sepolia",
            "base",
            "eip155:8453",
            "BASE-SEPOLIA",
            "eip155:084532",
            "eip155:84532 ",
            "solana",
        ],
    )?;
    let asset = pick(
        u,
        &[
            USDC_BASE_SEPOLIA,
            OBOL_BASE_SEPOLIA,
            USDC_BASE,
            "0x0000000000000000000000000000000000000000",
        ],
    )?;
    let asset = case(u, asset)?;
    let pay_to = pick(u, &[PAY_TO, "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"])?;
    let pay_to = case(u, pay_to)?;
    let accepted_amount = amount(u)?;
    let signed_amount = if u.arbitrary()? {
        accepted_amount.clone()
    } else {
        amount(u)?
    };
    let extra = match u.choose_index(4)? {
        0 => Value::Null,
        1 => json!({"name": "USDC", "version": "2", "assetTransferMethod": "eip3009"}),
        2 => json!({"name": "Obol Network", "version": "1", "assetTransferMethod": "permit2"}),
        _ => json!({"assetTransferMethod": u.arbitrary::<&str>()?}),
    };
    let from = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
    let signature = match u.choose_index(3)? {
        0 => format!("0x{}", "11".repeat(65)),
        1 => format!("0x{}00", "22".repeat(64)),
        _ => format!("0x{}", "33".repeat(usize::from(u.arbitrary::<u8>()?))),
    };
    let nonce = format!("0x{}", "ab".repeat(32));
    let payload = if u.arbitrary()? {
        json!({"signature": signature, "authorization": {
            "from": from, "to": pay_to, "value": signed_amount,
            "validAfter": (FIXED_NOW - 600).to_string(), "validBefore": (FIXED_NOW + 300).to_string(),
            "nonce": nonce}})
    } else {
        json!({"signature": signature, "permit2Authorization": {
            "from": from, "permitted": {"token": asset, "amount": signed_amount},
            "spender": pick(u, &[PROXY, UPTO_PROXY])?, "nonce": u.arbitrary::<u64>()?.to_string(),
            "deadline": (FIXED_NOW + 300).to_string(),
            "witness": {"to": pay_to, "validAfter": (FIXED_NOW - 600).to_string()}}})
    };
    Ok(if u.arbitrary()? {
        json!({"x402Version": 1, "scheme": scheme, "network": network, "payload": payload})
    } else {
        let mut accepted = json!({"scheme": scheme, "network": network, "amount": accepted_amount,
            "asset": asset, "payTo": pay_to, "maxTimeoutSeconds": u.arbitrary::<u32>()?});
        if !extra.is_null() {
            accepted["extra"] = extra;
        }
        json!({"x402Version": 2, "resource": {"url": RESOURCE_URL}, "accepted": accepted, "payload": payload})
    })
}

const PROXY: &str = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001";
const UPTO_PROXY: &str = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002";

fn presented(payload: PaymentPayload) -> Presented {
    let header = if payload.version() == 1 {
        X_PAYMENT
    } else {
        PAYMENT_SIGNATURE
    };
    Presented { header, payload }
}

fn check(presented: &Presented) {
    let offer = &**OFFER;
    let result = match_payment(offer, presented, RESOURCE_URL);
    if let PaymentPayload::V2(payment) = &presented.payload
        && offer
            .options
            .iter()
            .any(|o| o.requirements == payment.accepted)
    {
        assert!(
            result.is_ok(),
            "an exactly offered requirement did not match"
        );
    }
    let (option, request) = match result {
        Ok(found) => found,
        Err(failure) => {
            assert_eq!(failure.reason, "no_matching_requirement");
            return;
        }
    };
    assert!(
        offer.options.iter().any(|o| std::ptr::eq(o, option)),
        "option not from the offer"
    );
    let offered = &option.requirements;
    match (&presented.payload, &request) {
        (
            PaymentPayload::V2(payment),
            VerifyRequest::V2 {
                payment_payload,
                payment_requirements,
            },
        ) => {
            assert_eq!(payment_payload, payment);
            assert_eq!(
                payment_requirements, offered,
                "the server's own requirement"
            );
            let accepted = &payment.accepted;
            assert_eq!(accepted.scheme, offered.scheme);
            assert!(network::same_network(&accepted.network, &offered.network));
            assert_eq!(accepted.amount, offered.amount);
            assert!(accepted.asset.eq_ignore_ascii_case(&offered.asset));
            assert!(accepted.pay_to.eq_ignore_ascii_case(&offered.pay_to));
        }
        (
            PaymentPayload::V1(payment),
            VerifyRequest::V1 {
                payment_payload,
                payment_requirements,
            },
        ) => {
            assert_eq!(payment_payload, payment);
            assert_eq!(payment.scheme, offered.scheme);
            assert!(network::same_network(&payment.network, &offered.network));
            assert_eq!(payment_requirements.max_amount_required, offered.amount);
            assert_eq!(payment_requirements.asset, offered.asset);
            assert_eq!(payment_requirements.pay_to, offered.pay_to);
            assert_eq!(payment_requirements.resource, RESOURCE_URL);
            if let Ok(exact) = payment.exact_evm() {
                let value = match exact {
                    ExactEvmPayload::Eip3009 { authorization, .. } => authorization.value,
                    ExactEvmPayload::Permit2 { authorization, .. } => {
                        authorization.permitted.amount
                    }
                };
                assert_eq!(
                    value, offered.amount,
                    "v1 signed amount differs from the option"
                );
            }
        }
        _ => panic!("the request's version differs from the payment's"),
    }
    if let Ok(payment) = precheck(&request, FIXED_NOW, &obol_fuzz::supports_chain) {
        assert_eq!(payment.amount, offered.amount.get());
        assert_eq!(Ok(payment.asset), offered.asset_address());
        assert_eq!(Ok(payment.pay_to), offered.pay_to_address());
    }
}

fuzz_target!(|data: &[u8]| {
    let (mode, data) = obol_fuzz::split_mode(data);
    match mode % 3 {
        0 => {
            if let Ok(payload) = serde_json::from_slice::<PaymentPayload>(data) {
                check(&presented(payload));
            }
        }
        1 => {
            let mut u = Unstructured::new(data);
            let Ok(value) = structured(&mut u) else {
                return;
            };
            if let Ok(payload) = serde_json::from_value::<PaymentPayload>(value) {
                check(&presented(payload));
            }
        }
        _ => {
            let Ok(value) = HeaderValue::from_bytes(data) else {
                return;
            };
            let mut headers = HeaderMap::new();
            headers.insert(PAYMENT_SIGNATURE, value);
            if let Some(Ok(presented)) = extract(&headers) {
                check(&presented);
            }
        }
    }
});
