//! Pre-signing: N `exact` authorizations for one seller requirement.
//!
//! Each is valid from `validAfter = 0` until `now + ttl` and carries 32 fresh random bytes as
//! its nonce. Signing is pure CPU, so it is spread over every core.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use obol_x402::LocalSigner;
use obol_x402::primitives::B256;
use obol_x402::signer::{BuildError, ValidityWindow, prepare_payment, random_nonce};
use obol_x402::wire::v2;

/// The shortest lifetime a pre-signed authorization may have.
pub const MIN_TTL_SECS: u64 = 600;

/// The default lifetime: 30 days.
pub const DEFAULT_TTL_SECS: u64 = 30 * 24 * 3600;

/// How many and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresignOptions {
    /// How many authorizations.
    pub count: usize,
    /// Lifetime in seconds; raised to [`MIN_TTL_SECS`] when lower.
    pub ttl_secs: u64,
    /// The current unix time.
    pub now: u64,
}

/// One pre-signed authorization.
#[derive(Debug, Clone, PartialEq)]
pub struct PreSigned {
    /// Its nonce (unique per payer and token).
    pub nonce: B256,
    /// `validBefore` / `deadline`.
    pub valid_before: u64,
    /// The payment, ready for `PAYMENT-SIGNATURE`.
    pub payload: v2::PaymentPayload,
}

/// Signs `options.count` authorizations paying `requirement`. `progress` is called with the
/// number signed so far, from the signing threads.
pub fn presign(
    signer: &LocalSigner,
    requirement: &v2::PaymentRequirements,
    resource: Option<&v2::ResourceInfo>,
    options: PresignOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<PreSigned>, BuildError> {
    let window = ValidityWindow {
        valid_after: 0,
        valid_before: options
            .now
            .saturating_add(options.ttl_secs.max(MIN_TTL_SECS)),
    };
    let sign_one = || -> Result<PreSigned, BuildError> {
        let nonce = random_nonce();
        let unsigned = prepare_payment(
            requirement,
            resource.cloned(),
            signer.address(),
            window,
            nonce,
        )?;
        let signature = signer.sign_digest_sync(&unsigned.digest())?;
        Ok(PreSigned {
            nonce,
            valid_before: window.valid_before,
            payload: unsigned.finish(&signature),
        })
    };
    // Fail fast on an unusable requirement before starting threads.
    if options.count == 0 {
        prepare_payment(requirement, None, signer.address(), window, B256::ZERO)?;
        return Ok(Vec::new());
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(options.count);
    let done = AtomicUsize::new(0);
    let chunk = options.count.div_ceil(threads);
    let results: Vec<Result<Vec<PreSigned>, BuildError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let size = chunk.min(options.count.saturating_sub(t * chunk));
                let (sign_one, done) = (&sign_one, &done);
                scope.spawn(move || {
                    (0..size)
                        .map(|_| {
                            let signed = sign_one()?;
                            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                            Ok(signed)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(options.count);
    for part in results {
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use obol_x402::wire::PaymentPayload;
    use serde_json::json;

    use super::*;

    fn requirement(method: &str) -> v2::PaymentRequirements {
        serde_json::from_value(json!({
            "scheme": "exact", "network": "eip155:84532", "amount": "1000",
            "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 300,
            "extra": {"name": "USDC", "version": "2", "assetTransferMethod": method}
        }))
        .unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn signs_count_distinct_recoverable_authorizations() {
        let signer = LocalSigner::random();
        for method in ["eip3009", "permit2"] {
            let requirement = requirement(method);
            let calls = AtomicUsize::new(0);
            let signed = presign(
                &signer,
                &requirement,
                None,
                PresignOptions {
                    count: 25,
                    ttl_secs: 3600,
                    now: NOW,
                },
                &|_| {
                    calls.fetch_add(1, Ordering::Relaxed);
                },
            )
            .unwrap();
            assert_eq!(signed.len(), 25);
            assert_eq!(calls.load(Ordering::Relaxed), 25, "progress per signature");
            let nonces: HashSet<_> = signed.iter().map(|s| s.nonce).collect();
            assert_eq!(nonces.len(), 25, "fresh nonces");
            for one in &signed {
                assert_eq!(one.valid_before, NOW + 3600);
                let exact = PaymentPayload::V2(one.payload.clone())
                    .evm_payload()
                    .unwrap();
                assert_eq!(exact.payer(), signer.address());
                assert_eq!(exact.nonce(), one.nonce);
                let recovered = exact.recover_signer(&requirement).unwrap();
                assert_eq!(recovered, signer.address(), "{method}");
            }
        }
    }

    #[test]
    fn ttl_has_a_floor_and_bad_requirements_fail_before_signing() {
        let signer = LocalSigner::random();
        let options = PresignOptions {
            count: 1,
            ttl_secs: 5,
            now: NOW,
        };
        let signed = presign(&signer, &requirement("eip3009"), None, options, &|_| {}).unwrap();
        assert_eq!(signed[0].valid_before, NOW + MIN_TTL_SECS);

        let mut bad = requirement("eip3009");
        bad.extra = None;
        for count in [0, 3] {
            let options = PresignOptions { count, ..options };
            assert!(presign(&signer, &bad, None, options, &|_| {}).is_err());
        }
    }
}
