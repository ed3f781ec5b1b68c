//! EIP-3009 payments: verify, settle, the failure table, and concurrency.

use std::collections::HashSet;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider as _;
use obol_devnet::{OBOL, USDC};
use obol_facilitator::{Facilitator as _, FacilitatorConfig};
use obol_x402::LocalSigner;
use obol_x402::signer::{ValidityWindow, random_nonce};
use obol_x402::wire::{SettleResponse, VerifyRequest, v1};

use crate::{
    Fixture, IToken, PAY_TO, edited, live, now, pay, payload_of, simple_payment, usdc_requirement,
};

fn pay_to() -> Address {
    PAY_TO.parse().unwrap()
}

#[tokio::test]
async fn verifies_and_settles_with_exact_balance_moves() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(1);
    let requirement = usdc_requirement(10_000);
    let request = simple_payment(&buyer, &requirement);

    let verified = fixture.facilitator.verify(&request).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    assert_eq!(
        verified.payer.as_deref(),
        Some(buyer.address().to_checksum(None).as_str())
    );

    let buyer_before = fixture.balance(USDC, buyer.address()).await;
    let seller_before = fixture.balance(USDC, pay_to()).await;
    let settled = fixture.facilitator.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.transaction.len(), 66, "a 32-byte tx hash");
    assert_eq!(settled.network, "eip155:84532");
    assert_eq!(
        fixture.balance(USDC, buyer.address()).await,
        buyer_before - U256::from(10_000)
    );
    assert_eq!(
        fixture.balance(USDC, pay_to()).await,
        seller_before + U256::from(10_000)
    );
    let nonce = payload_of(&request).evm_payload().unwrap().nonce();
    let token = IToken::new(USDC, fixture.client.provider());
    assert!(
        token
            .authorizationState(buyer.address(), nonce)
            .call()
            .await
            .unwrap()
    );

    // Settling the same payment again returns the first outcome and moves nothing.
    let again = fixture.facilitator.settle(&request).await.unwrap();
    assert_eq!(again, settled);
    assert_eq!(
        fixture.balance(USDC, pay_to()).await,
        seller_before + U256::from(10_000)
    );
    // A fresh verify of it now fails: the nonce is spent.
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_exact_evm_nonce_already_used"
    );
}

#[tokio::test]
async fn every_bad_payment_fails_with_its_reason() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(1);
    let requirement = usdc_requirement(10_000);
    let now = now();

    // Signed by another key than `from`.
    let request = simple_payment(&buyer, &requirement);
    let other = simple_payment(&fixture.buyer(3), &requirement);
    let forged = edited(request, |payload| {
        let signature = payload_of(&other).payload["signature"].clone();
        payload.payload.insert("signature".into(), signature);
    });
    assert_eq!(
        fixture.invalid_reason(&forged).await,
        "invalid_exact_evm_signature"
    );

    // The payment pays someone else than the seller asks.
    let mut elsewhere = requirement.clone();
    elsewhere.pay_to = "0x90F79bf6EB2c4f870365E785982E1f101E93b906".into();
    let request = pay(&buyer, &elsewhere, &requirement, live(), random_nonce());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_exact_evm_recipient_mismatch"
    );

    // The seller asks for OBOL, the payment is in USDC.
    let mut obol = requirement.clone();
    obol.asset = OBOL.to_checksum(None);
    let request = pay(&buyer, &requirement, &obol, live(), random_nonce());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_exact_evm_asset_mismatch"
    );

    // Expires in 5 s (the guard wants 6).
    let window = ValidityWindow {
        valid_after: now - 600,
        valid_before: now + 5,
    };
    let request = pay(&buyer, &requirement, &requirement, window, random_nonce());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_exact_evm_payload_authorization_valid_before"
    );

    // Not valid for another 100 s.
    let window = ValidityWindow {
        valid_after: now + 100,
        valid_before: now + 400,
    };
    let request = pay(&buyer, &requirement, &requirement, window, random_nonce());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_exact_evm_payload_authorization_valid_after"
    );

    // Signs one unit more than the seller asks.
    let request = pay(
        &buyer,
        &usdc_requirement(10_001),
        &requirement,
        live(),
        random_nonce(),
    );
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_exact_evm_authorization_value"
    );

    // A payer without funds.
    let broke = LocalSigner::random();
    let request = simple_payment(&broke, &requirement);
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_exact_evm_insufficient_balance"
    );

    // The high-s twin of a valid signature.
    let request = edited(simple_payment(&buyer, &requirement), |payload| {
        let signature: alloy::primitives::Bytes =
            serde_json::from_value(payload.payload["signature"].clone()).unwrap();
        let mut twin = signature.to_vec();
        let order = U256::from_str_radix(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
            16,
        )
        .unwrap();
        let s = U256::from_be_slice(&twin[32..64]);
        twin[32..64].copy_from_slice(&(order - s).to_be_bytes::<32>());
        twin[64] = if twin[64] == 27 { 28 } else { 27 };
        payload.payload.insert(
            "signature".into(),
            serde_json::to_value(alloy::primitives::Bytes::from(twin)).unwrap(),
        );
    });
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_exact_evm_signature"
    );

    // Signed under the wrong EIP-712 domain name (x402.md V-6): the simulation reverts and the
    // token's on-chain name says why.
    let mut wrong_domain = requirement.clone();
    wrong_domain
        .extra
        .as_mut()
        .unwrap()
        .insert("name".into(), "USD Coin".into());
    let request = simple_payment(&buyer, &wrong_domain);
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_exact_evm_token_name_mismatch"
    );

    // A chain this facilitator does not serve.
    let mut elsewhere = requirement.clone();
    elsewhere.network = "eip155:8453".into();
    let request = simple_payment(&buyer, &elsewhere);
    assert_eq!(fixture.invalid_reason(&request).await, "invalid_network");

    // Settling an invalid payment moves nothing and still names the network (x402.md S-8).
    let seller_before = fixture.balance(USDC, pay_to()).await;
    let settled = fixture.facilitator.settle(&request).await.unwrap();
    assert!(!settled.success);
    assert_eq!(settled.error_reason.as_deref(), Some("invalid_network"));
    assert_eq!(settled.network, "eip155:8453");
    assert_eq!(fixture.balance(USDC, pay_to()).await, seller_before);
}

#[tokio::test]
async fn v1_requests_use_the_legacy_network_name() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(4);
    let requirement = usdc_requirement(2_500);
    let payment = simple_payment(&buyer, &requirement);
    let v1_requirement: v1::PaymentRequirements = serde_json::from_value(serde_json::json!({
        "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": "2500",
        "asset": USDC.to_checksum(None), "payTo": PAY_TO, "resource": "http://localhost/x",
        "description": "", "mimeType": "application/json", "maxTimeoutSeconds": 300,
        "extra": {"name": "USDC", "version": "2"}
    }))
    .unwrap();
    let request = VerifyRequest::V1 {
        payment_payload: v1::PaymentPayload {
            x402_version: Default::default(),
            scheme: "exact".into(),
            network: "base-sepolia".into(),
            payload: payload_of(&payment).payload.clone(),
        },
        payment_requirements: v1_requirement,
    };
    assert!(fixture.facilitator.verify(&request).await.unwrap().is_valid);
    let settled = fixture.facilitator.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.network, "base-sepolia");
}

#[tokio::test]
async fn concurrent_settles_of_one_payment_make_one_transfer() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(5);
    let request = simple_payment(&buyer, &usdc_requirement(7_000));
    let seller_before = fixture.balance(USDC, pay_to()).await;
    let (a, b) = tokio::join!(
        fixture.facilitator.settle(&request),
        fixture.facilitator.settle(&request)
    );
    let (a, b): (SettleResponse, SettleResponse) = (a.unwrap(), b.unwrap());
    assert!(a.success && b.success, "{a:?} {b:?}");
    assert_eq!(
        a.transaction, b.transaction,
        "the same transfer reported to both"
    );
    assert_eq!(
        fixture.balance(USDC, pay_to()).await,
        seller_before + U256::from(7_000)
    );
}

#[tokio::test]
async fn twenty_concurrent_distinct_payments_all_land() {
    let fixture = Fixture::start().await;
    let requirement = usdc_requirement(1_000);
    let requests: Vec<VerifyRequest> = (0..20)
        // Every dev account but 2 (the seller) and 9 (the facilitator's gas payer).
        .map(|i| {
            simple_payment(
                &fixture.buyer([0, 1, 3, 4, 5, 6, 7, 8][i % 8]),
                &requirement,
            )
        })
        .collect();
    let seller_before = fixture.balance(USDC, pay_to()).await;
    let results = futures_join_all(&fixture, &requests).await;
    let hashes: HashSet<String> = results
        .iter()
        .map(|r| {
            assert!(r.success, "{r:?}");
            r.transaction.clone()
        })
        .collect();
    assert_eq!(hashes.len(), 20, "twenty distinct transactions");
    assert_eq!(
        fixture.balance(USDC, pay_to()).await,
        seller_before + U256::from(20_000)
    );
}

async fn futures_join_all(fixture: &Fixture, requests: &[VerifyRequest]) -> Vec<SettleResponse> {
    let futures = requests.iter().map(|r| fixture.facilitator.settle(r));
    obol_testkit::join_all(futures)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Four gas wallets: the derived three are topped up once from the configured key, concurrent
/// settlements spread over the keys, and every payment is still one transfer.
#[tokio::test]
async fn concurrent_settlements_spread_over_derived_gas_wallets() {
    let fixture = Fixture::with_config(FacilitatorConfig {
        gas_wallets: 4,
        ..FacilitatorConfig::default()
    })
    .await;
    let facilitator = &fixture.facilitator;
    let wallets = facilitator.gas_wallets(fixture.devnet.chain_id());
    assert_eq!(wallets.len(), 4);
    assert_eq!(
        Some(wallets[0]),
        facilitator.signer_address(fixture.devnet.chain_id())
    );
    assert_eq!(facilitator.fund_gas_wallets().await.unwrap(), 3);
    assert_eq!(
        facilitator.fund_gas_wallets().await.unwrap(),
        0,
        "funded wallets get nothing"
    );
    let float = FacilitatorConfig::default().gas_wallet_float;
    for wallet in &wallets[1..] {
        assert_eq!(fixture.client.native_balance(*wallet).await.unwrap(), float);
    }
    let supported = facilitator.supported().await.unwrap();
    assert_eq!(supported.signers["eip155:*"].as_array().unwrap().len(), 4);

    let before = fixture.balance(USDC, pay_to()).await;
    let requests: Vec<_> = (0..24)
        .map(|i| simple_payment(&fixture.buyer(3 + i % 4), &usdc_requirement(1_000)))
        .collect();
    let mut senders = HashSet::new();
    let mut hashes = HashSet::new();
    for response in futures_join_all(&fixture, &requests).await {
        assert!(response.success, "{response:?}");
        let hash: B256 = response.transaction.parse().unwrap();
        let tx = fixture
            .client
            .provider()
            .get_transaction_by_hash(hash)
            .await
            .unwrap()
            .unwrap();
        senders.insert(tx.inner.signer());
        hashes.insert(hash);
    }
    assert_eq!(hashes.len(), 24, "one transaction per payment");
    assert!(senders.len() > 1, "settlements spread: {senders:?}");
    assert!(senders.iter().all(|s| wallets.contains(s)));
    assert_eq!(
        fixture.balance(USDC, pay_to()).await - before,
        U256::from(24_000)
    );
}
