//! Verify throughput of the embedded facilitator on a real devnet, against pure signature
//! recovery measured in the same run.
//!
//! `cargo bench -p obol-facilitator --bench verify [-- N]` (N distinct payloads, default 2000).
//! Prints payloads/s for: recovery only (baseline), embedded verify sequential and with 16 in
//! flight, and the HTTP service with 16 in flight, each with its ratio to the baseline.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use obol_chain::ChainClient;
use obol_devnet::{DEV_KEYS, Devnet, USDC};
use obol_facilitator::evm::ChainSetup;
use obol_facilitator::http::{ClientOptions, RemoteFacilitator, ServerOptions, router, serve};
use obol_facilitator::{EvmFacilitator, Facilitator, FacilitatorConfig};
use obol_x402::LocalSigner;
use obol_x402::signer::{ValidityWindow, prepare_payment, random_nonce};
use obol_x402::wire::{VerifyRequest, v2};

fn requirement() -> v2::PaymentRequirements {
    serde_json::from_value(serde_json::json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1000",
        "asset": USDC.to_checksum(None), "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "maxTimeoutSeconds": 300, "extra": {"name": "USDC", "version": "2"}
    }))
    .unwrap()
}

fn payloads(n: usize) -> Vec<VerifyRequest> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let req = requirement();
    let signers: Vec<LocalSigner> = [0, 1, 3, 4, 5, 6, 7, 8]
        .iter()
        .map(|i| LocalSigner::from_private_key_hex(DEV_KEYS[*i]).unwrap())
        .collect();
    (0..n)
        .map(|i| {
            let signer = &signers[i % signers.len()];
            let from = signer.address();
            let unsigned = prepare_payment(
                &req,
                None,
                from,
                ValidityWindow::for_request(now, 3600),
                random_nonce(),
            )
            .unwrap();
            let signature = signer.sign_digest_sync(&unsigned.digest()).unwrap();
            VerifyRequest::V2 {
                payment_payload: unsigned.finish(&signature),
                payment_requirements: req.clone(),
            }
        })
        .collect()
}

async fn concurrent(
    facilitator: Arc<dyn Facilitator>,
    requests: Arc<Vec<VerifyRequest>>,
    in_flight: usize,
) -> Duration {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (facilitator, requests, next) = (facilitator.clone(), requests.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    break;
                };
                let verdict = facilitator.verify(request).await.unwrap();
                assert!(verdict.is_valid, "{verdict:?}");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed()
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let devnet = Devnet::start().await.unwrap();
    let client = ChainClient::connect("base-sepolia", &devnet.endpoints()).unwrap();
    let signer = LocalSigner::from_private_key_hex(DEV_KEYS[9]).unwrap();
    let facilitator = Arc::new(
        EvmFacilitator::new(
            FacilitatorConfig::default(),
            vec![ChainSetup { client, signer }],
        )
        .unwrap(),
    );
    let requests = Arc::new(payloads(n));

    // Baseline: recover the signer of every payload (what any verifier must do at least).
    let started = Instant::now();
    for request in requests.iter() {
        let VerifyRequest::V2 {
            payment_payload,
            payment_requirements,
        } = request
        else {
            unreachable!()
        };
        let exact = payment_payload.evm_payload().unwrap();
        assert_eq!(
            exact.recover_signer(payment_requirements).unwrap(),
            exact.payer()
        );
    }
    let baseline = rate(n, started.elapsed());

    let sequential = rate(
        n,
        concurrent(facilitator.clone(), requests.clone(), 1).await,
    );
    let parallel = rate(
        n,
        concurrent(facilitator.clone(), requests.clone(), 16).await,
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        listener,
        router(facilitator.clone(), ServerOptions::default()),
        std::future::pending(),
    ));
    let remote: Arc<dyn Facilitator> =
        Arc::new(RemoteFacilitator::new(&url, ClientOptions::default()).unwrap());
    let http = rate(n, concurrent(remote, requests.clone(), 16).await);

    println!("verify throughput, {n} distinct valid EIP-3009 payloads, anvil on loopback, 2 cores");
    println!("{:44} {:>10}  {:>8}", "measure", "payloads/s", "ratio");
    for (name, value) in [
        ("baseline: signature recovery only", baseline),
        ("embedded verify, 1 in flight", sequential),
        ("embedded verify, 16 in flight", parallel),
        ("HTTP /verify (our service), 16 in flight", http),
    ] {
        println!("{name:44} {value:>10.0}  {:>8.3}", value / baseline);
    }
}
