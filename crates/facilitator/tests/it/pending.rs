//! A broadcast transaction whose receipt does not come in time (x402.md S-5).

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use obol_devnet::USDC;
use obol_facilitator::{Facilitator as _, FacilitatorConfig};

use crate::{Fixture, PAY_TO, simple_payment, usdc_requirement};

#[tokio::test]
async fn unmined_settlement_is_pending_and_reconciled_without_a_second_broadcast() {
    let config = FacilitatorConfig {
        receipt_timeout: Duration::from_millis(400),
        // Not replaced while this test looks at it (`stuck_settlement_…` covers replacement).
        replace_after: Some(Duration::from_secs(60)),
        ..FacilitatorConfig::default()
    };
    let fixture = Fixture::with_config(config).await;
    let provider = fixture.client.provider();
    let request = simple_payment(&fixture.buyer(6), &usdc_requirement(3_000));

    // Stop mining: the settlement goes into the mempool and stays there.
    automine(provider, false).await;
    let first = fixture.facilitator.settle(&request).await.unwrap();
    assert!(!first.success);
    assert_eq!(first.error_reason.as_deref(), Some("settlement_pending"));
    assert_eq!(
        first.transaction.len(),
        66,
        "the pending answer carries the tx hash"
    );

    // Settling again while still unmined: the same hash, nothing new broadcast.
    let second = fixture.facilitator.settle(&request).await.unwrap();
    assert_eq!(second.transaction, first.transaction);
    let pending: serde_json::Value = provider
        .raw_request("txpool_content".into(), ())
        .await
        .unwrap();
    let queued = pending["pending"].as_object().map_or(0, |by_sender| {
        by_sender
            .values()
            .map(|txs| txs.as_object().map_or(0, serde_json::Map::len))
            .sum()
    });
    assert_eq!(queued, 1, "exactly one settlement transaction in the pool");

    // Mine: the next settle call reconciles the same transaction into success.
    let pay_to: Address = PAY_TO.parse().unwrap();
    let before = fixture.balance(USDC, pay_to).await;
    provider
        .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
        .await
        .unwrap();
    let third = fixture.facilitator.settle(&request).await.unwrap();
    assert!(third.success, "{third:?}");
    assert_eq!(third.transaction, first.transaction);
    assert_eq!(
        fixture.balance(USDC, pay_to).await,
        before + U256::from(3_000)
    );
}

/// The node lost a pending settlement (evicted from its pool): the next ask for it waits on the
/// sender that sent it, which signs it again with higher fees; the answer is the replacement's
/// hash and the payment is charged once.
#[tokio::test]
async fn a_stuck_settlement_is_replaced_and_answered_with_the_replacement() {
    let config = FacilitatorConfig {
        receipt_timeout: Duration::from_millis(300),
        replace_after: Some(Duration::from_millis(500)),
        ..FacilitatorConfig::default()
    };
    let fixture = Fixture::with_config(config).await;
    let provider = fixture.client.provider();
    let request = simple_payment(&fixture.buyer(7), &usdc_requirement(3_000));
    let pay_to: Address = PAY_TO.parse().unwrap();
    let before = fixture.balance(USDC, pay_to).await;
    automine(provider, false).await;
    let pending = fixture.facilitator.settle(&request).await.unwrap();
    assert_eq!(pending.error_reason.as_deref(), Some("settlement_pending"));
    let lost: alloy::primitives::B256 = pending.transaction.parse().unwrap();
    provider
        .raw_request::<_, serde_json::Value>("anvil_dropTransaction".into(), (lost,))
        .await
        .unwrap();
    automine(provider, true).await;

    // Asked again until the answer comes (each ask waits 300 ms; the replacement goes at 500).
    let mut answer = fixture.facilitator.settle(&request).await.unwrap();
    for _ in 0..20 {
        if answer.success {
            break;
        }
        assert_eq!(answer.error_reason.as_deref(), Some("settlement_pending"));
        answer = fixture.facilitator.settle(&request).await.unwrap();
    }
    assert!(answer.success, "{answer:?}");
    assert_ne!(
        answer.transaction, pending.transaction,
        "the replacement's hash"
    );
    let receipt = provider
        .get_transaction_receipt(answer.transaction.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    assert_eq!(
        fixture.balance(USDC, pay_to).await,
        before + U256::from(3_000),
        "charged once"
    );
}

/// A second facilitator on the fixture's chain and gas key: the same service after a restart,
/// remembering nothing.
fn restarted(fixture: &Fixture, config: FacilitatorConfig) -> obol_facilitator::EvmFacilitator {
    let signer = obol_x402::LocalSigner::from_private_key_hex(fixture.devnet.key(9)).unwrap();
    obol_facilitator::EvmFacilitator::new(
        config,
        vec![obol_facilitator::evm::ChainSetup {
            client: fixture.client.clone(),
            signer,
        }],
    )
    .unwrap()
}

/// A payment by dev account `buyer` whose settlement the fixture's facilitator broadcast and
/// left unmined (answered `settlement_pending`), with the seller's balance before it.
struct LeftPending {
    fixture: Fixture,
    config: FacilitatorConfig,
    request: obol_x402::wire::VerifyRequest,
    pending: obol_x402::wire::SettleResponse,
    before: U256,
}

async fn left_pending(buyer: usize) -> LeftPending {
    let config = FacilitatorConfig {
        receipt_timeout: Duration::from_millis(400),
        ..FacilitatorConfig::default()
    };
    let fixture = Fixture::with_config(config.clone()).await;
    let request = simple_payment(&fixture.buyer(buyer), &usdc_requirement(3_000));
    let before = fixture.balance(USDC, PAY_TO.parse().unwrap()).await;
    automine(fixture.client.provider(), false).await;
    let pending = fixture.facilitator.settle(&request).await.unwrap();
    assert_eq!(pending.error_reason.as_deref(), Some("settlement_pending"));
    LeftPending {
        fixture,
        config,
        request,
        pending,
        before,
    }
}

impl LeftPending {
    /// Mines what waits, then a block per transaction again.
    async fn resume_mining(&self) {
        let provider = self.fixture.client.provider();
        provider
            .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
            .await
            .unwrap();
        automine(provider, true).await;
    }

    /// The payment settled, charged once.
    async fn assert_charged_once(&self, answer: &obol_x402::wire::SettleResponse) {
        assert!(answer.success, "{answer:?}");
        assert_eq!(
            self.fixture.balance(USDC, PAY_TO.parse().unwrap()).await,
            self.before + U256::from(3_000),
            "charged once"
        );
    }
}

#[tokio::test]
async fn a_restarted_facilitator_answers_an_authorization_it_settled_with_its_transaction() {
    let left = left_pending(5).await;
    left.resume_mining().await;
    // A new process (nothing remembered) is asked again: the chain says the nonce is used,
    // by this very authorization, so the answer is that success — not a refusal.
    let again = restarted(&left.fixture, left.config.clone())
        .settle(&left.request)
        .await
        .unwrap();
    left.assert_charged_once(&again).await;
    assert_eq!(again.transaction, left.pending.transaction);
}

#[tokio::test]
async fn a_restarted_facilitator_asked_while_its_settlement_waits_in_the_mempool_never_refuses() {
    let left = left_pending(7).await;
    // A new process is asked while that transaction still waits: no final refusal.
    let restarted = restarted(&left.fixture, left.config.clone());
    match restarted.settle(&left.request).await {
        Err(error) => assert!(error.retriable(), "{error}"),
        Ok(answer) => assert!(
            answer.success || answer.error_reason.as_deref() == Some("settlement_pending"),
            "{answer:?}"
        ),
    }
    left.resume_mining().await;
    let again = restarted.settle(&left.request).await.unwrap();
    left.assert_charged_once(&again).await;
}

/// Turns anvil's mining on each transaction on or off.
async fn automine(provider: &impl alloy::providers::Provider, on: bool) {
    provider
        .raw_request::<_, ()>("evm_setAutomine".into(), (on,))
        .await
        .unwrap();
}
