//! `upto` payments (USDC through Permit2 and the upto proxy): the ceiling is verified, the
//! actual amount settled exactly, zero sends nothing, and every way to take more is refused.

use alloy::primitives::{Address, U256};
use obol_devnet::USDC;
use obol_facilitator::Facilitator as _;
use obol_x402::signer::random_nonce;
use obol_x402::wire::{SettleResponse, VerifyRequest, v2};
use serde_json::json;

use crate::permit2::approve_permit2;
use crate::{Fixture, PAY_TO, live, pay, payload_of, simple_payment, usdc_requirement};

const CEILING: u64 = 1_000;

/// An upto USDC requirement with a `CEILING` ceiling, to be settled by `facilitator`.
fn upto_requirement(facilitator: Address) -> v2::PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "upto", "network": "eip155:84532", "amount": CEILING.to_string(),
        "asset": USDC.to_checksum(None), "payTo": PAY_TO, "maxTimeoutSeconds": 300,
        "extra": {"name": "USDC", "version": "2", "assetTransferMethod": "permit2",
                  "facilitatorAddress": facilitator.to_checksum(None)}
    }))
    .unwrap()
}

/// The same payment with the server's requirement asking `amount` (what a seller sends to
/// `/settle` once it knows the actual charge).
fn charging(request: &VerifyRequest, amount: u64) -> VerifyRequest {
    let VerifyRequest::V2 {
        payment_payload,
        payment_requirements,
    } = request.clone()
    else {
        unreachable!()
    };
    let mut payment_requirements = payment_requirements;
    payment_requirements.amount = U256::from(amount).into();
    VerifyRequest::V2 {
        payment_payload,
        payment_requirements,
    }
}

/// The facilitator's upto settler, as `/supported` advertises it.
async fn settler(fixture: &Fixture) -> Address {
    let supported = fixture.facilitator.supported().await.unwrap();
    let upto = supported
        .kinds
        .iter()
        .find(|k| k.scheme == "upto")
        .expect("upto is supported");
    upto.extra.as_ref().unwrap()["facilitatorAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

struct Balances {
    buyer: U256,
    seller: U256,
}

async fn balances(fixture: &Fixture, buyer: Address) -> Balances {
    Balances {
        buyer: fixture.balance(USDC, buyer).await,
        seller: fixture.balance(USDC, PAY_TO.parse().unwrap()).await,
    }
}

fn refused(settled: &SettleResponse, reason: &str) {
    assert!(!settled.success, "{settled:?}");
    assert_eq!(settled.error_reason.as_deref(), Some(reason), "{settled:?}");
    assert_eq!(settled.transaction, "", "nothing sent");
}

#[tokio::test]
async fn the_actual_amount_settles_exactly_once_and_zero_sends_nothing() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(5);
    approve_permit2(&fixture, &buyer, USDC).await;
    let requirement = upto_requirement(settler(&fixture).await);
    let request = simple_payment(&buyer, &requirement);

    let verified = fixture.facilitator.verify(&request).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    let before = balances(&fixture, buyer.address()).await;
    let settled = fixture
        .facilitator
        .settle(&charging(&request, 400))
        .await
        .unwrap();
    assert!(settled.success, "{settled:?}");
    assert!(settled.transaction.starts_with("0x"), "{settled:?}");
    assert_eq!(settled.amount.map(|a| a.get()), Some(U256::from(400)));
    let after = balances(&fixture, buyer.address()).await;
    assert_eq!(after.buyer, before.buyer - U256::from(400));
    assert_eq!(after.seller, before.seller + U256::from(400));

    // One settlement per authorization: asking again (for more, even) answers the first.
    let again = fixture
        .facilitator
        .settle(&charging(&request, 900))
        .await
        .unwrap();
    assert_eq!(again.transaction, settled.transaction);
    assert_eq!(again.amount.map(|a| a.get()), Some(U256::from(400)));
    assert_eq!(balances(&fixture, buyer.address()).await.buyer, after.buyer);

    // Nothing used: success, no transaction, amount 0 — and the authorization is done here.
    let unused = simple_payment(&buyer, &requirement);
    let zero = fixture
        .facilitator
        .settle(&charging(&unused, 0))
        .await
        .unwrap();
    assert!(zero.success, "{zero:?}");
    assert_eq!(zero.transaction, "");
    assert_eq!(zero.amount.map(|a| a.get()), Some(U256::ZERO));
    let later = fixture
        .facilitator
        .settle(&charging(&unused, 300))
        .await
        .unwrap();
    assert_eq!(later.transaction, "", "{later:?}");
    assert_eq!(balances(&fixture, buyer.address()).await.buyer, after.buyer);

    // The whole ceiling.
    let full = simple_payment(&buyer, &requirement);
    let settled = fixture.facilitator.settle(&full).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        balances(&fixture, buyer.address()).await.buyer,
        after.buyer - U256::from(CEILING)
    );
}

#[tokio::test]
async fn taking_more_than_signed_is_refused() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(6);
    approve_permit2(&fixture, &buyer, USDC).await;
    let ours = settler(&fixture).await;
    let requirement = upto_requirement(ours);
    let request = simple_payment(&buyer, &requirement);
    let before = balances(&fixture, buyer.address()).await;

    // Above the ceiling: refused before anything is sent, and the authorization is still good.
    let over = fixture
        .facilitator
        .settle(&charging(&request, CEILING + 1))
        .await
        .unwrap();
    refused(&over, "invalid_upto_evm_payload_settlement_exceeds_amount");
    let settled = fixture
        .facilitator
        .settle(&charging(&request, 500))
        .await
        .unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        balances(&fixture, buyer.address()).await.buyer,
        before.buyer - U256::from(500)
    );

    // At verify the requirement's amount is the ceiling the payer must have signed.
    let verified = fixture
        .facilitator
        .verify(&charging(&simple_payment(&buyer, &requirement), 900))
        .await
        .unwrap();
    assert_eq!(
        verified.invalid_reason.as_deref(),
        Some("permit2_amount_mismatch")
    );

    // A witness naming someone else's key: this facilitator cannot settle it.
    let stranger = fixture.buyer(8).address();
    let elsewhere = simple_payment(&buyer, &upto_requirement(stranger));
    let verified = fixture.facilitator.verify(&elsewhere).await.unwrap();
    assert_eq!(
        verified.invalid_reason.as_deref(),
        Some("upto_facilitator_mismatch"),
        "{verified:?}"
    );
    refused(
        &fixture.facilitator.settle(&elsewhere).await.unwrap(),
        "upto_facilitator_mismatch",
    );

    // An upto payment offered for an exact requirement, and the reverse.
    let payment = simple_payment(&buyer, &requirement);
    let mut exact = usdc_requirement(CEILING);
    exact.scheme = "exact".into();
    let crossed = VerifyRequest::V2 {
        payment_payload: payload_of(&payment).clone(),
        payment_requirements: exact.clone(),
    };
    let verified = fixture.facilitator.verify(&crossed).await.unwrap();
    assert_eq!(
        verified.invalid_reason.as_deref(),
        Some("invalid_exact_evm_scheme")
    );
    let mut exact_as_upto = pay(&buyer, &exact, &exact, live(), random_nonce());
    if let VerifyRequest::V2 {
        payment_payload,
        payment_requirements,
    } = &mut exact_as_upto
    {
        payment_payload.accepted.scheme = "upto".into();
        payment_requirements.scheme = "upto".into();
    }
    let verified = fixture.facilitator.verify(&exact_as_upto).await.unwrap();
    assert_eq!(
        verified.invalid_reason.as_deref(),
        Some("invalid_exact_evm_scheme"),
        "{verified:?}"
    );
    assert_eq!(
        balances(&fixture, buyer.address()).await.buyer,
        before.buyer - U256::from(500),
        "only the one settlement moved money"
    );
}
