//! x402 for tests: requirements in the built-in tokens, a 402's challenge, and a signed
//! `PAYMENT-SIGNATURE` for it.

use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_REQUIRED, PAYMENT_RESPONSE};
use obol_x402::primitives::B256;
use obol_x402::signer::{ValidityWindow, prepare_payment, random_nonce};
use obol_x402::token::TokenRegistry;
use obol_x402::wire::{VerifyRequest, v2};
use serde_json::json;

/// An `exact` requirement of `amount` atomic units of the built-in token `symbol` on Base
/// Sepolia (where the devnet places the tokens), paying `pay_to`, five minutes to settle, with
/// the token's `extra` (EIP-712 domain, transfer method).
///
/// # Panics
///
/// When `symbol` is not a built-in token on Base Sepolia.
pub fn requirement(
    symbol: &str,
    amount: impl std::fmt::Display,
    pay_to: &str,
) -> v2::PaymentRequirements {
    let registry = TokenRegistry::builtin();
    let token = registry
        .resolve(symbol, "base-sepolia")
        .expect("a built-in token");
    serde_json::from_value(json!({
        "scheme": "exact", "network": "eip155:84532", "amount": amount.to_string(),
        "asset": token.address.to_checksum(None), "payTo": pay_to, "maxTimeoutSeconds": 300,
        "extra": token.requirement_extra()
    }))
    .expect("a valid requirement")
}

/// The `PaymentRequired` a 402 (or a sign-in 401) carries in its `PAYMENT-REQUIRED` header.
///
/// # Panics
///
/// When the header is missing or does not decode.
pub fn challenge_of(response: &reqwest::Response) -> v2::PaymentRequired {
    let value = response.headers()[PAYMENT_REQUIRED]
        .to_str()
        .expect("an ASCII header");
    header::decode(value).expect("a v2 PaymentRequired")
}

/// Fails the test unless `response` is a 200 carrying the settlement receipt
/// (`PAYMENT-RESPONSE`): a paid call, served and settled.
///
/// # Panics
///
/// When it is not.
pub fn assert_paid(response: &reqwest::Response) {
    assert_eq!(response.status(), 200, "a paid call is served");
    assert!(
        response.headers().contains_key(PAYMENT_RESPONSE),
        "a paid call carries its receipt"
    );
}

/// A window valid now: from the clock-skew tolerance ago for five minutes.
pub fn live() -> ValidityWindow {
    ValidityWindow::for_request(crate::now(), 300)
}

/// `requirement` signed by `buyer` (for `resource`, when given) over `window` with `nonce`.
///
/// # Panics
///
/// When the requirement cannot be signed.
pub fn signed(
    buyer: &LocalSigner,
    requirement: &v2::PaymentRequirements,
    resource: Option<v2::ResourceInfo>,
    window: ValidityWindow,
    nonce: B256,
) -> v2::PaymentPayload {
    prepare_payment(requirement, resource, buyer.address(), window, nonce)
        .expect("a payment to sign")
        .sign_with(buyer)
        .expect("a signature")
}

/// What a seller asks its facilitator to verify or settle: `requirement` paid by `buyer`,
/// signed now ([`live`]) with a fresh nonce.
pub fn payment(buyer: &LocalSigner, requirement: &v2::PaymentRequirements) -> VerifyRequest {
    VerifyRequest::V2 {
        payment_payload: signed(buyer, requirement, None, live(), random_nonce()),
        payment_requirements: requirement.clone(),
    }
}

/// `accepts[index]` of `required` signed by `buyer` for `required.resource` over `window` with
/// `nonce`: the `PAYMENT-SIGNATURE` header value.
///
/// # Panics
///
/// When there is no such option or it cannot be signed.
pub fn pay(
    buyer: &LocalSigner,
    required: &v2::PaymentRequired,
    index: usize,
    window: ValidityWindow,
    nonce: B256,
) -> String {
    let resource = Some(required.resource.clone());
    let payload = signed(buyer, &required.accepts[index], resource, window, nonce);
    header::encode(&payload).expect("an encodable payment")
}
