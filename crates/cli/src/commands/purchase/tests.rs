//! The purchase commands' pure parts: names, counts, lifetimes, room.

use super::buying::{call_count, name_for};
use super::*;

#[test]
fn names_come_from_models() {
    assert_eq!(name_for("Qwen3:0.6B"), "qwen3-0-6b");
    assert_eq!(name_for("--"), "purchase");
    assert_eq!(name_for("meta/llama-3"), "meta-llama-3");
}

#[test]
fn counts_follow_count_budget_or_default() {
    let tokens = TokenRegistry::builtin();
    let usdc = tokens
        .resolve("USDC", "base-sepolia")
        .expect("base-sepolia USDC is built in");
    let price = U256::from(1000u64); // 0.001 USDC
    assert_eq!(call_count(None, None, price, usdc).unwrap(), DEFAULT_COUNT);
    assert_eq!(call_count(Some(5), None, price, usdc).unwrap(), 5);
    assert_eq!(call_count(None, Some("0.0055"), price, usdc).unwrap(), 5);
    assert_eq!(call_count(Some(5), Some("0.005"), price, usdc).unwrap(), 5);
    assert!(
        call_count(Some(6), Some("0.005"), price, usdc)
            .unwrap_err()
            .to_string()
            .contains("over --budget")
    );
    assert!(
        call_count(None, Some("0.0001"), price, usdc)
            .unwrap_err()
            .to_string()
            .contains("does not cover one call")
    );
    assert!(call_count(Some(0), None, price, usdc).is_err());
    assert_eq!(call_count(None, Some("1000"), price, usdc).unwrap(), 1000);
    assert!(
        call_count(Some(1001), None, price, usdc)
            .unwrap_err()
            .to_string()
            .contains("between 1 and 1000 for USDC")
    );
    let obol = TokenRegistry::builtin();
    let obol = obol.resolve("OBOL", "base-sepolia").unwrap();
    assert_eq!(call_count(None, Some("1000000"), price, obol).unwrap(), 500);
    assert!(check_room(9_999, 1).is_ok());
    assert!(
        check_room(9_999, 2)
            .unwrap_err()
            .to_string()
            .contains("holds at most 10000")
    );
}

#[test]
fn ttl_accepts_seconds_and_durations_above_the_floor() {
    assert_eq!(ttl_secs("3600").unwrap(), 3600);
    assert_eq!(ttl_secs("30d").unwrap(), 2_592_000);
    assert!(ttl_secs("5m").is_err());
    assert!(ttl_secs("soon").is_err());
}
