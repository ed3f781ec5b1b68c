//! Property tests: money math and the header codec.

use alloy::primitives::U256;
use obol_x402::header;
use obol_x402::money::{Decimal, format_units, parse_units};
use obol_x402::wire::{DecimalU256, v2};
use proptest::prelude::*;

fn pow10(n: u32) -> u128 {
    10u128.pow(n)
}

proptest! {
    #[test]
    fn decimal_display_parses_back(mantissa in any::<u128>(), scale in 0u8..=38) {
        let d = Decimal::new(U256::from(mantissa), scale).unwrap();
        let printed = d.to_string();
        prop_assert_eq!(printed.parse::<Decimal>().unwrap(), d);
        prop_assert!(!printed.contains('.') || !printed.ends_with('0'), "canonical: {}", printed);
    }

    #[test]
    fn atomic_amounts_survive_formatting(atomic in any::<u128>(), decimals in 0u8..=36) {
        let atomic = U256::from(atomic);
        let text = format_units(atomic, decimals);
        prop_assert_eq!(parse_units(&text, decimals).unwrap(), atomic);
    }

    #[test]
    fn conversion_rounds_half_up(mantissa in any::<u64>(), scale in 0u32..=18, decimals in 0u32..=18) {
        let d = Decimal::new(U256::from(mantissa), scale as u8).unwrap();
        let m = u128::from(mantissa);
        let want = if decimals >= scale {
            m * pow10(decimals - scale)
        } else {
            let div = pow10(scale - decimals);
            let (q, r) = (m / div, m % div);
            q + u128::from(2 * r >= div)
        };
        prop_assert_eq!(d.to_atomic(decimals as u8).unwrap(), U256::from(want));
    }

    #[test]
    fn header_round_trips_any_json_string(text in ".*") {
        let value = serde_json::json!({"x": text});
        let encoded = header::encode(&value).unwrap();
        prop_assert_eq!(header::decode::<serde_json::Value>(&encoded).unwrap(), value);
    }

    #[test]
    fn header_round_trips_requirements(amount in any::<u128>(), timeout in any::<u64>(), legacy in any::<bool>()) {
        let req = v2::PaymentRequirements {
            scheme: "exact".into(),
            network: if legacy { "base".into() } else { "eip155:8453".into() },
            amount: DecimalU256(U256::from(amount)),
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            max_timeout_seconds: timeout,
            extra: None,
        };
        let encoded = header::encode(&req).unwrap();
        prop_assert_eq!(header::decode::<v2::PaymentRequirements>(&encoded).unwrap(), req);
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = header::decode_any(&text);
        let _ = header::from_json_any(&text);
    }

    #[test]
    fn decoding_valid_base64_of_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let _ = header::decode_any(&encoded);
    }
}
