//! The buyer reading a seller's 402: `obol_buyer::probe::parse_402`, v2 `PAYMENT-REQUIRED`
//! header or v1 JSON body.
//!
//! Input: a mode byte, then the data. Modes (mode % 3):
//! - 0: the data is the raw `PAYMENT-REQUIRED` header value (base64);
//! - 1: the data is the JSON inside; the target base64-encodes it into the header;
//! - 2: the data is the 402 body, no header (v1 sellers; v2 sellers that omit the header).
//!
//! Invariants: nothing panics; what parses has version 1 or 2, at least one requirement, no
//! repeated requirement, every known network in its CAIP-2 form, and (v1) the probed URL as
//! its resource.

#![no_main]

use libfuzzer_sys::fuzz_target;
use obol_buyer::probe::parse_402;
use obol_x402::header::PAYMENT_REQUIRED;
use obol_x402::network;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

const URL: &str = "https://seller.example/services/foo";

fuzz_target!(|data: &[u8]| {
    let (mode, data) = obol_fuzz::split_mode(data);
    let mut headers = HeaderMap::new();
    let body: &[u8] = match mode % 3 {
        0 => {
            let Ok(value) = HeaderValue::from_bytes(data) else {
                return;
            };
            headers.insert(PAYMENT_REQUIRED, value);
            b"{}"
        }
        1 => {
            use base64::Engine as _;
            let value = base64::engine::general_purpose::STANDARD.encode(data);
            let Ok(value) = HeaderValue::from_str(&value) else {
                return;
            };
            headers.insert(PAYMENT_REQUIRED, value);
            b"{}"
        }
        _ => data,
    };
    let Ok(offered) = parse_402(StatusCode::PAYMENT_REQUIRED, &headers, body, URL) else {
        return;
    };
    assert!(offered.version == 1 || offered.version == 2);
    assert!(!offered.accepts.is_empty());
    for (i, requirement) in offered.accepts.iter().enumerate() {
        assert!(
            !offered.accepts[..i].contains(requirement),
            "requirement listed twice: {requirement:?}"
        );
        if let Ok(known) = network::resolve(&requirement.network) {
            assert_eq!(
                requirement.network, known.caip2,
                "network not in CAIP-2 form"
            );
        }
    }
    if offered.version == 1 {
        assert_eq!(offered.resource.url, URL);
    }
    // The same answer with any other status is "not payment gated", never parsed.
    assert!(parse_402(StatusCode::OK, &headers, body, URL).is_err());
});
