//! Decoding a client's payment header: `X-PAYMENT` (v1) and `PAYMENT-SIGNATURE` (v2).
//!
//! Input: a mode byte, then the data. Modes (mode % 4):
//! - 0: the data is the raw header value (base64), decoded with `header::decode`;
//! - 1: the data is the JSON inside; the target base64-encodes it first;
//! - 2: the raw value in an `X-PAYMENT` header, through `obol_gateway::matching::extract`;
//! - 3: the JSON, encoded, in a `PAYMENT-SIGNATURE` header, through `extract`.
//!
//! Invariants: nothing panics; a value that decodes re-encodes to a value that decodes to the
//! same version; `extract` agrees with `header::decode` and leaves any 65-byte signature with
//! `v` of 0/1 rewritten (to 27/28).

#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use obol_gateway::matching::extract;
use obol_x402::header::{self, PAYMENT_SIGNATURE, X_PAYMENT};
use obol_x402::wire::PaymentPayload;

fn encoded(json: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(json)
}

fn check_decoded(payload: &PaymentPayload) {
    let again = header::encode(payload).expect("a decoded payment re-encodes");
    let back: PaymentPayload = header::decode(&again).expect("a re-encoded payment decodes");
    assert_eq!(back.version(), payload.version());
}

fn signature_v(payload: &PaymentPayload) -> Option<u8> {
    let map = match payload {
        PaymentPayload::V1(p) => &p.payload,
        PaymentPayload::V2(p) => &p.payload,
    };
    let bytes = obol_x402::signature::from_hex(map.get("signature")?.as_str()?).ok()?;
    (bytes.len() == 65).then(|| bytes[64])
}

fuzz_target!(|data: &[u8]| {
    let (mode, data) = obol_fuzz::split_mode(data);
    let value = match mode % 4 {
        0 | 2 => match std::str::from_utf8(data) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
        _ => encoded(data),
    };
    if mode % 4 < 2 {
        if let Ok(payload) = header::decode::<PaymentPayload>(&value) {
            check_decoded(&payload);
        }
        let _ = header::decode_any(&value);
        return;
    }
    let Ok(header_value) = HeaderValue::from_str(&value) else {
        return;
    };
    let name = if mode % 4 == 2 {
        X_PAYMENT
    } else {
        PAYMENT_SIGNATURE
    };
    let mut headers = HeaderMap::new();
    headers.insert(name, header_value);
    let direct = header::decode::<PaymentPayload>(value.trim());
    match extract(&headers).expect("a payment header is present") {
        Ok(presented) => {
            assert_eq!(presented.header, name);
            let direct = direct.expect("extract accepted what decode refuses");
            assert_eq!(direct.version(), presented.payload.version());
            if let Some(v) = signature_v(&presented.payload) {
                assert!(v >= 2, "v {v} left unnormalised");
            }
            check_decoded(&presented.payload);
        }
        Err(_) => assert!(direct.is_err(), "extract refused what decode accepts"),
    }
});
