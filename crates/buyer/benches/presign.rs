//! Pre-signing throughput: `presign` (every core) against signing the same authorizations one
//! by one on this thread, measured in the same run. Target: 1000 in under 0.5 s.
//!
//! `cargo bench -p obol-buyer --bench presign [-- COUNT]`

#![allow(clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use obol_buyer::{PresignOptions, presign};
use obol_x402::LocalSigner;
use obol_x402::signer::{ValidityWindow, prepare_payment, random_nonce};
use obol_x402::wire::v2;

fn requirement(method: &str) -> v2::PaymentRequirements {
    serde_json::from_value(serde_json::json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 300,
        "extra": {"name": "USDC", "version": "2", "assetTransferMethod": method}
    }))
    .expect("a valid requirement")
}

fn sequential(
    signer: &LocalSigner,
    requirement: &v2::PaymentRequirements,
    count: usize,
) -> Duration {
    let started = Instant::now();
    let window = ValidityWindow {
        valid_after: 0,
        valid_before: 1_900_000_000,
    };
    for _ in 0..count {
        let unsigned = prepare_payment(requirement, None, signer.address(), window, random_nonce())
            .expect("prepare");
        let signature = signer.sign_digest_sync(&unsigned.digest()).expect("sign");
        std::hint::black_box(unsigned.finish(&signature));
    }
    started.elapsed()
}

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let signer = LocalSigner::random();
    for method in ["eip3009", "permit2"] {
        let requirement = requirement(method);
        let baseline = sequential(&signer, &requirement, count);
        let started = Instant::now();
        let signed = presign(
            &signer,
            &requirement,
            None,
            PresignOptions {
                count,
                ttl_secs: 30 * 24 * 3600,
                now: 1_800_000_000,
            },
            &|_| {},
        )
        .expect("presign");
        let ours = started.elapsed();
        assert_eq!(signed.len(), count);
        println!(
            "{method}: {count} authorizations — presign {:.1} ms ({:.0}/s), one thread {:.1} ms ({:.0}/s), speed-up {:.2}×",
            ours.as_secs_f64() * 1e3,
            count as f64 / ours.as_secs_f64(),
            baseline.as_secs_f64() * 1e3,
            count as f64 / baseline.as_secs_f64(),
            baseline.as_secs_f64() / ours.as_secs_f64(),
        );
    }
}
