//! Property tests of the money math ([hardening]): decimal strings ↔ [`Decimal`] ↔ atomic
//! units, and the per-request amounts of the three price models, against independent reference
//! computations (digit strings, `u128`, and 1024-bit integers that cannot overflow).
//!
//! `properties.rs` holds the older round trips; these add canonical forms, exactness, the
//! nearest-with-ties-up characterisation over the full 256-bit range (a 1024-bit reference), monotonicity, and "never
//! panics" on huge or absurd input.

use alloy::primitives::{U256, Uint};
use obol_x402::money::{Decimal, MAX_SCALE, MoneyError, format_units, parse_units};
use obol_x402::pricing::{Price, PriceUnit, PricingError};
use proptest::prelude::*;

/// A plain decimal string: `int` digits, optionally `.` and `frac` digits.
fn text(int: &str, frac: &str) -> String {
    if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

/// The canonical form, computed on the digit strings alone: no leading zeros in the integer
/// part (one `0` at least), no trailing fractional zeros, no `.` without digits after it.
fn canonical(int: &str, frac: &str) -> String {
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let frac = frac.trim_end_matches('0');
    text(int, frac)
}

/// Wide enough for every reference computation here: 2^256 · 10^77 · 2^64 · 2 < 2^1024.
type U1024 = Uint<1024, 16>;

fn wide(x: U256) -> U1024 {
    U1024::from(x)
}

fn pow10(n: u8) -> U1024 {
    U1024::from(10u8).pow(U1024::from(n))
}

/// Any 256-bit value, weighted towards the edges.
fn any_u256() -> impl Strategy<Value = U256> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(U256::from_be_bytes),
        any::<u64>().prop_map(U256::from),
        Just(U256::MAX),
        Just(U256::ZERO),
        (0usize..256).prop_map(|bit| U256::from(1u8) << bit),
    ]
}

/// A decimal from its mantissa and scale (any scale a `Decimal` may have).
fn any_decimal() -> impl Strategy<Value = Decimal> {
    (any_u256(), 0..=MAX_SCALE).prop_map(|(m, s)| Decimal::new(m, s).unwrap())
}

/// `a ≤ b`, exactly, at a common scale.
fn le(a: &Decimal, b: &Decimal) -> bool {
    let scale = a.scale().max(b.scale());
    wide(a.mantissa()) * pow10(scale - a.scale()) <= wide(b.mantissa()) * pow10(scale - b.scale())
}

/// `(N, D)` with `value × 10^decimals × num / den = N / D`.
fn ratio(value: &Decimal, decimals: u8, num: u64, den: u64) -> (U1024, U1024) {
    (
        wide(value.mantissa()) * pow10(decimals) * U1024::from(num),
        pow10(value.scale()) * U1024::from(den),
    )
}

/// Whether `atomic` is `value × 10^decimals × num / den` rounded to the nearest integer, ties
/// up: `|2·atomic·D − 2·N| ≤ D`, with equality only when `atomic·D ≥ N`.
fn is_nearest_ties_up(value: &Decimal, decimals: u8, num: u64, den: u64, atomic: U256) -> bool {
    let (n, d) = ratio(value, decimals, num, den);
    let scaled = wide(atomic) * d;
    let two = U1024::from(2u8);
    if scaled >= n {
        (scaled - n) * two <= d
    } else {
        (n - scaled) * two < d
    }
}

/// Whether `value × 10^decimals × num / den`, rounded half up, exceeds `U256::MAX`.
fn rounded_overflows(value: &Decimal, decimals: u8, num: u64, den: u64) -> bool {
    let (n, d) = ratio(value, decimals, num, den);
    let two = U1024::from(2u8);
    (two * n + d) / (two * d) > wide(U256::MAX)
}

proptest! {
    /// Any plain decimal string parses, prints in its canonical form, and that form parses to
    /// the same value.
    #[test]
    fn decimal_strings_print_canonically(int in "[0-9]{1,40}", frac in "[0-9]{0,37}") {
        let input = text(&int, &frac);
        let parsed: Decimal = input.parse().unwrap();
        let printed = parsed.to_string();
        prop_assert_eq!(&printed, &canonical(&int, &frac));
        prop_assert_eq!(printed.parse::<Decimal>().unwrap(), parsed);
        // Serde uses the same text.
        let json = serde_json::to_string(&parsed).unwrap();
        prop_assert_eq!(json, format!("\"{printed}\""));
    }

    /// An amount with at most `decimals` fractional digits converts exactly (no rounding), to
    /// the integer its digits spell, and formats back to its canonical text.
    #[test]
    fn amounts_within_the_decimals_convert_exactly(
        int in "[0-9]{1,18}",
        (decimals, frac) in (0u8..=18).prop_flat_map(|d| (Just(d), proptest::string::string_regex(&format!("[0-9]{{0,{d}}}")).unwrap())),
    ) {
        let input = text(&int, &frac);
        let padded = format!("{int}{frac:0<width$}", width = usize::from(decimals));
        let want: u128 = padded.parse().unwrap();
        let atomic = parse_units(&input, decimals).unwrap();
        prop_assert_eq!(atomic, U256::from(want));
        let decimal: Decimal = input.parse().unwrap();
        prop_assert_eq!(Decimal::from_atomic(atomic, decimals).unwrap(), decimal);
        prop_assert_eq!(format_units(atomic, decimals), canonical(&int, &frac));
    }

    /// More fractional digits than the token has round to the nearest atomic unit, ties up,
    /// across the whole 256-bit range; the result is `Overflow` exactly when the rounded value
    /// does not fit in 256 bits.
    #[test]
    fn conversion_is_nearest_ties_up_or_overflow(value in any_decimal(), decimals in 0..=MAX_SCALE) {
        match value.to_atomic(decimals) {
            Ok(atomic) => {
                prop_assert!(is_nearest_ties_up(&value, decimals, 1, 1, atomic), "{} → {}", value, atomic);
                prop_assert!(!rounded_overflows(&value, decimals, 1, 1));
            }
            Err(MoneyError::Overflow { .. }) => {
                prop_assert!(rounded_overflows(&value, decimals, 1, 1), "{} refused", value);
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    /// The same for a scaled conversion (what the price models use), over the full range.
    #[test]
    fn scaled_conversion_is_nearest_ties_up_or_overflow(
        value in any_decimal(),
        (decimals, num) in (0..=MAX_SCALE, prop_oneof![Just(1000u64), Just(5), any::<u64>()]),
        den in prop_oneof![Just(1_000_000u64), Just(60), 1..=u64::MAX],
    ) {
        match value.to_atomic_scaled(decimals, num, den) {
            Ok(atomic) => {
                prop_assert!(is_nearest_ties_up(&value, decimals, num, den, atomic), "{} × 10^{} × {}/{} → {}", value, decimals, num, den, atomic);
            }
            Err(MoneyError::Overflow { .. }) => {
                prop_assert!(rounded_overflows(&value, decimals, num, den), "{} × 10^{} × {}/{} refused", value, decimals, num, den);
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    /// `a ≤ b` ⇒ `atomic(a) ≤ atomic(b)` for every token, rounding included.
    #[test]
    fn conversion_is_monotonic(
        a in (any::<u64>(), 0u8..=30),
        b in (any::<u64>(), 0u8..=30),
        decimals in 0u8..=30,
    ) {
        let a = Decimal::new(U256::from(a.0), a.1).unwrap();
        let b = Decimal::new(U256::from(b.0), b.1).unwrap();
        let (lo, hi) = if le(&a, &b) { (a, b) } else { (b, a) };
        prop_assert!(lo.to_atomic(decimals).unwrap() <= hi.to_atomic(decimals).unwrap());
    }

    /// Nothing panics on huge or absurd input: long digit strings, any mantissa and scale, any
    /// decimals (valid ones are at most 77), any ratio including a zero denominator.
    #[test]
    fn huge_input_never_panics(
        int in "[0-9]{1,120}",
        frac in "[0-9]{0,100}",
        value in any_decimal(),
        decimals in any::<u8>(),
        num in any::<u64>(),
        den in any::<u64>(),
    ) {
        match text(&int, &frac).parse::<Decimal>() {
            Ok(parsed) => { let _ = parsed.to_atomic(decimals); }
            Err(MoneyError::Overflow { .. } | MoneyError::TooPrecise { .. }) => {}
            Err(other) => prop_assert!(false, "digits refused as {other}"),
        }
        let _ = parse_units(&text(&int, &frac), decimals);
        let _ = format_units(value.mantissa(), decimals);
        let _ = Decimal::from_atomic(value.mantissa(), decimals);
        let _ = Decimal::new(value.mantissa(), decimals);
        let scaled = value.to_atomic_scaled(decimals, num, den);
        if decimals > MAX_SCALE {
            prop_assert!(matches!(scaled, Err(MoneyError::Decimals { .. })), "decimals {} accepted", decimals);
        } else if den == 0 {
            prop_assert!(scaled.is_err());
        }
        for unit in [PriceUnit::PerRequest, PriceUnit::PerMTok, PriceUnit::PerHour] {
            let _ = Price { unit, amount: value }.per_request_atomic(decimals);
        }
    }

    /// The three price models against their definitions, each rounded once: perRequest is the
    /// price; perMTok is the price of 1000 tokens, i.e. the price / 1000; perHour is five
    /// minutes, i.e. the price / 12. Zero is refused, dust that rounds to zero is refused, and
    /// nothing else is.
    #[test]
    fn per_request_amounts_match_their_definitions(
        mantissa in any::<u64>(),
        scale in 0u8..=30,
        decimals in 0u8..=30,
    ) {
        let amount = Decimal::new(U256::from(mantissa), scale).unwrap();
        for (unit, num, den) in [
            (PriceUnit::PerRequest, 1u64, 1u64),
            (PriceUnit::PerMTok, 1, 1000),
            (PriceUnit::PerHour, 1, 12),
        ] {
            let result = Price { unit, amount }.per_request_atomic(decimals);
            if amount.is_zero() {
                prop_assert!(matches!(result, Err(PricingError::Zero { .. })), "zero accepted");
                continue;
            }
            match result {
                Ok(atomic) => {
                    prop_assert!(!atomic.is_zero());
                    prop_assert!(is_nearest_ties_up(&amount, decimals, num, den, atomic), "{} {}", amount, unit);
                }
                Err(PricingError::RoundsToZero { .. }) => {
                    prop_assert!(is_nearest_ties_up(&amount, decimals, num, den, U256::ZERO), "{} {}", amount, unit);
                }
                Err(other) => prop_assert!(false, "{} {}: {}", amount, unit, other),
            }
        }
        // perMTok is exactly the price of one thousandth, rounded once.
        if !amount.is_zero() && scale + 3 <= MAX_SCALE {
            let thousandth = Decimal::new(U256::from(mantissa), scale + 3).unwrap();
            let direct = thousandth.to_atomic(decimals).unwrap();
            match (Price { unit: PriceUnit::PerMTok, amount }).per_request_atomic(decimals) {
                Ok(atomic) => prop_assert_eq!(atomic, direct),
                Err(_) => prop_assert!(direct.is_zero()),
            }
        }
    }

    /// A higher price never costs less per request, in every model.
    #[test]
    fn per_request_amounts_are_monotonic(
        a in (1u64.., 0u8..=24),
        b in (1u64.., 0u8..=24),
        decimals in 0u8..=24,
    ) {
        let a = Decimal::new(U256::from(a.0), a.1).unwrap();
        let b = Decimal::new(U256::from(b.0), b.1).unwrap();
        let (lo, hi) = if le(&a, &b) { (a, b) } else { (b, a) };
        for unit in [PriceUnit::PerRequest, PriceUnit::PerMTok, PriceUnit::PerHour] {
            let low = Price { unit, amount: lo }.per_request_atomic(decimals).unwrap_or(U256::ZERO);
            let high = Price { unit, amount: hi }.per_request_atomic(decimals).unwrap_or(U256::ZERO);
            prop_assert!(low <= high, "{} {} costs more than {}", lo, unit, hi);
        }
    }

    /// `from_fields` takes exactly one price and parses it as a `Decimal` would; its label
    /// prints the canonical amount, which parses back.
    #[test]
    fn one_price_field_is_picked_and_labelled(
        int in "[0-9]{1,12}",
        frac in "[0-9]{0,12}",
        which in 0usize..3,
        extra in proptest::option::of(0usize..3),
    ) {
        let value = text(&int, &frac);
        let mut fields = [None, None, None];
        fields[which] = Some(value.as_str());
        let units = [PriceUnit::PerRequest, PriceUnit::PerMTok, PriceUnit::PerHour];
        match extra {
            Some(other) if other != which => {
                fields[other] = Some("1");
                prop_assert!(matches!(
                    Price::from_fields(fields[0], fields[1], fields[2]),
                    Err(PricingError::Ambiguous(_))
                ), "two prices accepted");
            }
            _ => {
                let price = Price::from_fields(fields[0], fields[1], fields[2]).unwrap();
                prop_assert_eq!(price.unit, units[which]);
                prop_assert_eq!(price.amount, value.parse::<Decimal>().unwrap());
                let label = price.label("USDC");
                let want = format!("{} USDC{}", canonical(&int, &frac), units[which].suffix());
                prop_assert_eq!(&label, &want);
                let printed = label.split(' ').next().unwrap();
                prop_assert_eq!(printed.parse::<Decimal>().unwrap(), price.amount);
            }
        }
    }
}

/// Found by `scaled_conversion_is_nearest_ties_up_or_overflow` over the full range:
/// `to_atomic_scaled` computed `mantissa × 10^decimals × numerator` in 512 bits and the
/// product wrapped, so a price with many significant digits on a token with 75–77 decimals
/// (perMTok from 75, perHour at 77) got a wrong per-request amount (~8.3·10^70 instead of
/// `U256::MAX / 1000` ≈ 1.2·10^74). With an arbitrary public `numerator` it wrapped from 58
/// decimals on. Fixed with a 640-bit intermediate (256 + 256 + 64 bits).
#[test]
fn scaled_conversion_of_huge_values_does_not_wrap() {
    // U256::MAX at scale 77: 1.1579…, 77 fractional digits, on a 77-decimal token.
    let price = "1.15792089237316195423570985008687907853269984665640564039457584007913129639935";
    let amount: Decimal = price.parse().unwrap();
    let per_mtok = Price {
        unit: PriceUnit::PerMTok,
        amount,
    }
    .per_request_atomic(MAX_SCALE);
    // price × 10^77 × 1000 / 10^6 = U256::MAX / 1000 = …639.935 → rounds up.
    assert_eq!(
        per_mtok,
        Ok(U256::MAX / U256::from(1000u16) + U256::from(1u8))
    );
    let per_hour = Price {
        unit: PriceUnit::PerHour,
        amount,
    }
    .per_request_atomic(MAX_SCALE);
    assert!(
        per_hour
            .as_ref()
            .is_ok_and(|atomic| is_nearest_ties_up(&amount, MAX_SCALE, 5, 60, *atomic)),
        "{per_hour:?}"
    );
    let value = Decimal::new(U256::MAX, 58).unwrap();
    let scaled = value.to_atomic_scaled(58, 11_579_208_923_731_619_543, 1_000_000);
    assert!(
        matches!(scaled, Err(MoneyError::Overflow { .. })),
        "{scaled:?}"
    );
}
