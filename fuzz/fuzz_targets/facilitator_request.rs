//! The facilitator's request bodies: `POST /verify` and `POST /settle` (both a
//! `VerifyRequest`), parsed as the HTTP service parses them (`serde_json::from_slice`), then the
//! pure checks (`obol_facilitator::checks::precheck`) on what parses.
//!
//! Input: the body, as is (no mode byte).
//!
//! Invariants: nothing panics; a parsed request serialises to a body that parses back to the
//! same version; a payment that passes `precheck` is on a supported chain, states the
//! requirement's amount, asset and payTo, is still valid past the buffer, and carries a 65-byte
//! signature with `v` of 27/28 or a longer contract-wallet one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use obol_facilitator::checks::{VALIDITY_BUFFER_SECS, precheck};
use obol_fuzz::{FIXED_NOW, supports_chain};
use obol_x402::wire::VerifyRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<VerifyRequest>(data) else {
        return;
    };
    let body = serde_json::to_vec(&request).expect("a parsed request serialises");
    let again: VerifyRequest = serde_json::from_slice(&body).expect("a serialised request parses");
    assert_eq!(again.version(), request.version());

    let Ok(payment) = precheck(&request, FIXED_NOW, &supports_chain) else {
        return;
    };
    let requirements = request.requirements_v2();
    assert!(supports_chain(payment.chain_id));
    assert_eq!(payment.version, request.version());
    assert_eq!(payment.amount, requirements.amount());
    assert_eq!(Ok(payment.asset), requirements.asset_address());
    assert_eq!(Ok(payment.pay_to), requirements.pay_to_address());
    assert!(payment.expires_at >= FIXED_NOW + VALIDITY_BUFFER_SECS);
    let signature = &payment.signature;
    if signature.len() == 65 {
        assert!(
            signature[64] == 27 || signature[64] == 28,
            "v {}",
            signature[64]
        );
    }
});
