//! How many RPCs a verify and a settle make, counted by a recording proxy in front of anvil.

use obol_chain::ChainClient;
use obol_config::{ChainEndpoints, Endpoint};
use obol_devnet::tap::RpcTap;
use obol_facilitator::{EvmFacilitator, Facilitator as _, FacilitatorConfig, evm::ChainSetup};
use obol_x402::LocalSigner;

use crate::{Fixture, simple_payment, usdc_requirement};

fn sorted(mut methods: Vec<String>) -> Vec<String> {
    methods.sort();
    methods
}

/// Verify on the happy path is the simulation alone; settle is the gas estimation and fees
/// (concurrent), then one `eth_sendRawTransactionSync` that returns the receipt. A failed
/// simulation is explained by the reads, with the same reason as before.
#[tokio::test]
async fn a_verify_is_one_rpc_and_a_settle_two_round_trips() {
    let fixture = Fixture::start().await;
    let tap = RpcTap::start(fixture.devnet.endpoint(), None)
        .await
        .unwrap();
    let endpoints = ChainEndpoints {
        chain_id: fixture.devnet.chain_id(),
        endpoints: vec![Endpoint {
            url: tap.url().to_owned(),
            allow_writes: true,
        }],
    };
    let facilitator = EvmFacilitator::new(
        FacilitatorConfig::default(),
        vec![ChainSetup {
            client: ChainClient::connect("base-sepolia", &endpoints).unwrap(),
            signer: LocalSigner::from_private_key_hex(fixture.devnet.key(8)).unwrap(),
        }],
    )
    .unwrap();

    for round in 0..2 {
        let request = simple_payment(&fixture.buyer(6), &usdc_requirement(1_000));
        let verified = facilitator.verify(&request).await.unwrap();
        assert!(verified.is_valid, "{verified:?}");
        assert_eq!(tap.take_methods(), ["eth_call"]);

        let settled = facilitator.settle(&request).await.unwrap();
        assert!(settled.success, "{settled:?}");
        let mut expected = vec![
            "eth_estimateGas",
            "eth_feeHistory",
            "eth_sendRawTransactionSync",
        ];
        if round == 0 {
            // The sender asks for its nonce once, then counts.
            expected.insert(2, "eth_getTransactionCount");
        }
        assert_eq!(sorted(tap.take_methods()), expected);
    }

    // A payer without the funds: the simulation reverts, and the reads say why.
    let poor = LocalSigner::random();
    let request = simple_payment(&poor, &usdc_requirement(1_000));
    let refused = facilitator.verify(&request).await.unwrap();
    assert!(!refused.is_valid);
    assert_eq!(
        refused.invalid_reason.as_deref(),
        Some("invalid_exact_evm_insufficient_balance"),
        "{refused:?}"
    );
    let methods = tap.take_methods();
    assert_eq!(methods.first().map(String::as_str), Some("eth_call"));
    assert!(
        methods.len() > 1,
        "the reads explain the revert: {methods:?}"
    );
}
