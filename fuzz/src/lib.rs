//! Fixtures shared by the fuzz targets and the seed generator (`examples/gen_corpus.rs`).
//!
//! Every target reads its first input byte as a *mode* (see [`split_mode`]) so that one target
//! can reach the code both through the raw wire form (base64 headers) and through a form the
//! fuzzer mutates more usefully (the JSON inside, encoded by the target itself).

use std::sync::Arc;

use obol_gateway::{Offer, OfferKind, PaymentOption, SettleMode};
use obol_x402::pricing::{Price, PriceUnit};
use obol_x402::wire::v2;

/// The seller's address in every fixture.
pub const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// USDC on Base Sepolia (EIP-3009).
pub const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// OBOL on Base Sepolia (Permit2, EIP-2612 sponsoring).
pub const OBOL_BASE_SEPOLIA: &str = "0x0a09371a8b011d5110656ceBCc70603e53FD2c78";
/// USDC on Base mainnet.
pub const USDC_BASE: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
/// The fixed "now" of the facilitator target; the generated seeds are valid around it.
pub const FIXED_NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
/// The resource URL the matching target passes along.
pub const RESOURCE_URL: &str = "https://seller.example/services/foo/v1/data";
/// The upstream base of the path target's offer.
pub const UPSTREAM_BASE: &str = "http://127.0.0.1:9/api/foo";
/// The public prefix of the fixture offer.
pub const STRIP_PREFIX: &str = "/services/foo";

/// Chains the fuzzed facilitator settles on: Base Sepolia and Base.
pub fn supports_chain(chain_id: u64) -> bool {
    matches!(chain_id, 84532 | 8453)
}

fn requirement(
    network: &str,
    amount: &str,
    asset: &str,
    extra: serde_json::Value,
) -> v2::PaymentRequirements {
    serde_json::from_value(serde_json::json!({
        "scheme": "exact", "network": network, "amount": amount, "asset": asset,
        "payTo": PAY_TO, "maxTimeoutSeconds": 300, "extra": extra,
    }))
    .expect("fixture requirement")
}

/// The options of the fixture offer: 0.001 USDC on Base Sepolia (EIP-3009), 0.001 OBOL on Base
/// Sepolia (Permit2, sponsored approval), and 0.001 USDC on Base written with its legacy name.
pub fn options() -> Vec<PaymentOption> {
    vec![
        PaymentOption {
            requirements: requirement(
                "eip155:84532",
                "1000",
                USDC_BASE_SEPOLIA,
                serde_json::json!({"name": "USDC", "version": "2", "assetTransferMethod": "eip3009"}),
            ),
            asset_symbol: "USDC".into(),
            eip2612_gas_sponsoring: false,
        },
        PaymentOption {
            requirements: requirement(
                "eip155:84532",
                "1000000000000000",
                OBOL_BASE_SEPOLIA,
                serde_json::json!({"name": "Obol Network", "version": "1", "assetTransferMethod": "permit2"}),
            ),
            asset_symbol: "OBOL".into(),
            eip2612_gas_sponsoring: true,
        },
        PaymentOption {
            requirements: requirement(
                "base",
                "1000",
                USDC_BASE,
                serde_json::json!({"name": "USD Coin", "version": "2"}),
            ),
            asset_symbol: "USDC".into(),
            eip2612_gas_sponsoring: false,
        },
    ]
}

/// A realistic published offer (as `crates/gateway/src/route.rs` tests build them).
pub fn offer(kind: OfferKind, upstream: &str) -> Arc<Offer> {
    Arc::new(Offer {
        namespace: "default".into(),
        name: "foo".into(),
        kind,
        upstream: upstream.parse().expect("fixture upstream"),
        strip_prefix: STRIP_PREFIX.into(),
        upstream_auth: Some("Bearer upstream-secret".into()),
        price: Price {
            unit: PriceUnit::PerRequest,
            amount: "0.001".parse().expect("fixture price"),
        },
        options: options(),
        description: "fuzz fixture".into(),
        mime_type: "application/json".into(),
        settle: SettleMode::ServeFirst,
    })
}

/// Splits off the mode byte: `(mode, rest)`; an empty input is mode 0 with no data.
pub fn split_mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((mode, rest)) => (*mode, rest),
        None => (0, data),
    }
}

/// Every form a path segment takes while percent-decoding it byte-wise until nothing changes
/// (at most `rounds` rounds), the raw segment first. Independent of `obol_gateway::path`.
pub fn decoded_forms(segment: &[u8], rounds: usize) -> Vec<Vec<u8>> {
    let mut forms = vec![segment.to_vec()];
    for _ in 0..rounds {
        let last = forms.last().expect("at least the raw form");
        let next = percent_decode(last);
        if &next == last {
            break;
        }
        forms.push(next);
    }
    forms
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}
