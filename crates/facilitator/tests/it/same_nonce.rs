//! One nonce, two authorizations with other terms (another payTo and amount): the second never
//! gets the first one's receipt — after the first settled, while it is pending, or racing it.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use obol_devnet::{OBOL, USDC};
use obol_facilitator::{Facilitator as _, FacilitatorConfig};
use obol_x402::signer::random_nonce;
use obol_x402::wire::{SettleResponse, VerifyRequest, v2};

use crate::permit2::{approve_permit2, obol_requirement};
use crate::{Fixture, PAY_TO, live, pay, usdc_requirement};

/// Seller B's payTo (dev account 3).
const OTHER_PAY_TO: &str = obol_testkit::accounts::DEV_ADDRESSES[3];

const EIP3009_REFUSAL: &str = "invalid_exact_evm_nonce_already_used";

/// Two authorizations by dev account `buyer` with one fresh nonce: `to_a` as it is, and the
/// same paying [`OTHER_PAY_TO`] 1 000 units more.
fn two_terms(
    fixture: &Fixture,
    buyer: usize,
    to_a: &v2::PaymentRequirements,
) -> (VerifyRequest, VerifyRequest) {
    let signer = fixture.buyer(buyer);
    let mut to_b = to_a.clone();
    to_b.pay_to = OTHER_PAY_TO.into();
    to_b.amount = (to_a.amount() + U256::from(1_000)).into();
    let nonce = random_nonce();
    (
        pay(&signer, to_a, to_a, live(), nonce),
        pay(&signer, &to_b, &to_b, live(), nonce),
    )
}

fn sellers() -> (Address, Address) {
    (PAY_TO.parse().unwrap(), OTHER_PAY_TO.parse().unwrap())
}

/// A refusal with `reason`, carrying no transaction at all.
fn assert_refusal(response: &SettleResponse, reason: &str) {
    assert!(!response.success, "{response:?}");
    assert_eq!(
        response.error_reason.as_deref(),
        Some(reason),
        "{response:?}"
    );
    assert_eq!(response.transaction, "", "no one else's transaction");
}

#[tokio::test]
async fn same_nonce_other_terms_after_settlement_is_refused_not_handed_the_receipt() {
    let fixture = Fixture::start().await;
    let (a, b) = two_terms(&fixture, 1, &usdc_requirement(4_000));
    let b_before = fixture.balance(USDC, sellers().1).await;

    let settled = fixture.facilitator.settle(&a).await.unwrap();
    assert!(settled.success, "{settled:?}");
    let refused = fixture.facilitator.settle(&b).await.unwrap();
    assert_refusal(&refused, EIP3009_REFUSAL);
    assert_eq!(fixture.balance(USDC, sellers().1).await, b_before);

    // The first authorization still gets its own receipt.
    assert_eq!(fixture.facilitator.settle(&a).await.unwrap(), settled);
}

#[tokio::test]
async fn same_nonce_other_terms_while_pending_is_refused_at_once() {
    let config = FacilitatorConfig {
        receipt_timeout: Duration::from_millis(400),
        ..FacilitatorConfig::default()
    };
    let fixture = Fixture::with_config(config).await;
    let provider = fixture.client.provider();
    let (a, b) = two_terms(&fixture, 4, &usdc_requirement(4_000));
    let (a_seller, b_seller) = sellers();
    let (a_before, b_before) = (
        fixture.balance(USDC, a_seller).await,
        fixture.balance(USDC, b_seller).await,
    );

    provider
        .raw_request::<_, ()>("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let pending = fixture.facilitator.settle(&a).await.unwrap();
    assert_eq!(pending.error_reason.as_deref(), Some("settlement_pending"));
    let refused = fixture.facilitator.settle(&b).await.unwrap();
    assert_refusal(&refused, EIP3009_REFUSAL);

    provider
        .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
        .await
        .unwrap();
    let settled = fixture.facilitator.settle(&a).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.transaction, pending.transaction);
    assert_refusal(
        &fixture.facilitator.settle(&b).await.unwrap(),
        EIP3009_REFUSAL,
    );
    assert_eq!(
        fixture.balance(USDC, a_seller).await,
        a_before + U256::from(4_000)
    );
    assert_eq!(fixture.balance(USDC, b_seller).await, b_before);
}

#[tokio::test]
async fn same_nonce_other_terms_racing_settle_once_and_the_other_is_refused() {
    let fixture = Fixture::start().await;
    let (a, b) = two_terms(&fixture, 5, &usdc_requirement(4_000));
    let (a_seller, b_seller) = sellers();
    let (a_before, b_before) = (
        fixture.balance(USDC, a_seller).await,
        fixture.balance(USDC, b_seller).await,
    );

    let (first, second) = tokio::join!(
        fixture.facilitator.settle(&a),
        fixture.facilitator.settle(&b)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    let (winner, loser, paid) = if first.success {
        (first, second, (4_000, 0))
    } else {
        (second, first, (0, 5_000))
    };
    assert!(winner.success, "{winner:?}");
    assert_refusal(&loser, EIP3009_REFUSAL);
    assert_eq!(
        fixture.balance(USDC, a_seller).await,
        a_before + U256::from(paid.0)
    );
    assert_eq!(
        fixture.balance(USDC, b_seller).await,
        b_before + U256::from(paid.1)
    );
}

#[tokio::test]
async fn same_permit2_nonce_other_terms_is_refused_not_handed_the_receipt() {
    let fixture = Fixture::start().await;
    approve_permit2(&fixture, &fixture.buyer(6), obol_devnet::OBOL).await;
    let (a, b) = two_terms(&fixture, 6, &obol_requirement());
    let b_before = fixture.balance(OBOL, sellers().1).await;

    let settled = fixture.facilitator.settle(&a).await.unwrap();
    assert!(settled.success, "{settled:?}");
    let refused = fixture.facilitator.settle(&b).await.unwrap();
    assert_refusal(&refused, "permit2_invalid_nonce");
    assert_eq!(fixture.balance(OBOL, sellers().1).await, b_before);
}
