//! Permit2 payments (OBOL): approval, EIP-2612 gas sponsoring, and the failure table.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::ProviderBuilder;
use alloy::sol_types::SolStruct as _;
use obol_devnet::OBOL;
use obol_facilitator::Facilitator as _;
use obol_x402::LocalSigner;
use obol_x402::eip712::{Permit, token_domain};
use obol_x402::signature;
use obol_x402::token::{PERMIT2, TokenRegistry};
use obol_x402::wire::{VerifyRequest, v2};
use serde_json::json;

use crate::{Fixture, IToken, PAY_TO, edited, now, simple_payment};

const PRICE: u64 = 1_000_000_000_000_000; // 0.001 OBOL

pub(crate) fn obol_requirement() -> v2::PaymentRequirements {
    let registry = TokenRegistry::builtin();
    let token = registry.resolve("OBOL", "base-sepolia").unwrap();
    assert_eq!(
        token.address, OBOL,
        "the devnet OBOL sits at the registry's address"
    );
    obol_testkit::x402::requirement("OBOL", PRICE, PAY_TO)
}

/// `buyer` lets Permit2 move all its `token`.
pub(crate) async fn approve_permit2(fixture: &Fixture, buyer: &LocalSigner, token: Address) {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(buyer.as_alloy().clone()))
        .connect_http(fixture.devnet.endpoint().parse().unwrap());
    IToken::new(token, &provider)
        .approve(PERMIT2, U256::MAX)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
}

/// Attaches an `eip2612GasSponsoring` extension approving Permit2 for `amount`.
fn sponsor(
    request: VerifyRequest,
    buyer: &LocalSigner,
    amount: U256,
    spender: Address,
) -> VerifyRequest {
    let deadline = U256::from(now() + 600);
    let permit = Permit {
        owner: buyer.address(),
        spender,
        value: amount,
        nonce: U256::ZERO,
        deadline,
    };
    let digest = permit.eip712_signing_hash(&token_domain("Obol Network", "1", 84532, OBOL));
    let sig = signature::to_bytes(&buyer.sign_digest_sync(&digest).unwrap());
    let info = json!({
        "from": buyer.address().to_checksum(None), "asset": OBOL.to_checksum(None),
        "spender": spender.to_checksum(None), "amount": amount.to_string(), "nonce": "0",
        "deadline": deadline.to_string(), "signature": sig.to_string(), "version": "1"
    });
    let mut extensions = serde_json::Map::new();
    extensions.insert("eip2612GasSponsoring".into(), json!({"info": info}));
    edited(request, |payload| payload.extensions = Some(extensions))
}

#[tokio::test]
async fn approved_payer_settles_through_the_proxy() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(1);
    let requirement = obol_requirement();
    let request = simple_payment(&buyer, &requirement);

    // P-8: without a Permit2 allowance the payment cannot settle (the seller answers 412).
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "permit2_allowance_required"
    );

    approve_permit2(&fixture, &buyer, OBOL).await;
    let verified = fixture.facilitator.verify(&request).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    let pay_to: Address = PAY_TO.parse().unwrap();
    let (buyer_before, seller_before) = (
        fixture.balance(OBOL, buyer.address()).await,
        fixture.balance(OBOL, pay_to).await,
    );
    let settled = fixture.facilitator.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        fixture.balance(OBOL, buyer.address()).await,
        buyer_before - U256::from(PRICE)
    );
    assert_eq!(
        fixture.balance(OBOL, pay_to).await,
        seller_before + U256::from(PRICE)
    );
    // P-12: the Permit2 nonce is spent.
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "permit2_invalid_nonce"
    );
}

#[tokio::test]
async fn eip2612_sponsoring_needs_no_prior_approval() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(3);
    let requirement = obol_requirement();
    let request = sponsor(
        simple_payment(&buyer, &requirement),
        &buyer,
        U256::from(PRICE),
        PERMIT2,
    );
    let verified = fixture.facilitator.verify(&request).await.unwrap();
    assert!(verified.is_valid, "{verified:?}");
    let pay_to: Address = PAY_TO.parse().unwrap();
    let seller_before = fixture.balance(OBOL, pay_to).await;
    let settled = fixture.facilitator.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(
        fixture.balance(OBOL, pay_to).await,
        seller_before + U256::from(PRICE)
    );

    // P-10: a permit for MaxUint is refused (the deployed proxy requires equality).
    let request = sponsor(
        simple_payment(&buyer, &requirement),
        &buyer,
        U256::MAX,
        PERMIT2,
    );
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "permit2_2612_amount_mismatch"
    );
    // P-11: the permit must approve Permit2.
    let request = sponsor(
        simple_payment(&buyer, &requirement),
        &buyer,
        U256::from(PRICE),
        pay_to,
    );
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "eip2612_spender_not_permit2"
    );
}

#[tokio::test]
async fn permit2_failure_table() {
    let fixture = Fixture::start().await;
    let buyer = fixture.buyer(4);
    approve_permit2(&fixture, &buyer, OBOL).await;
    let requirement = obol_requirement();

    let mutate = |f: &dyn Fn(&mut serde_json::Value)| {
        edited(simple_payment(&buyer, &requirement), |payload| {
            let mut auth = payload.payload["permit2Authorization"].clone();
            f(&mut auth);
            payload.payload.insert("permit2Authorization".into(), auth);
        })
    };
    // P-2: the spender is not the x402 proxy (e.g. the facilitator's own account).
    let facilitator_eoa = fixture
        .facilitator
        .signer_address(84532)
        .unwrap()
        .to_checksum(None);
    let request = mutate(&|a| a["spender"] = facilitator_eoa.clone().into());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_permit2_spender"
    );
    // P-3: the witness pays someone else.
    let request =
        mutate(&|a| a["witness"]["to"] = "0x90F79bf6EB2c4f870365E785982E1f101E93b906".into());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_permit2_recipient_mismatch"
    );
    // P-4: the deadline is less than 6 s away.
    let soon = (now() + 3).to_string();
    let request = mutate(&|a| a["deadline"] = soon.clone().into());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "permit2_deadline_expired"
    );
    // P-5: not valid yet.
    let later = (now() + 120).to_string();
    let request = mutate(&|a| a["witness"]["validAfter"] = later.clone().into());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "permit2_not_yet_valid"
    );
    // P-6: another amount.
    let request = mutate(&|a| a["permitted"]["amount"] = "1".into());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "permit2_amount_mismatch"
    );
    // P-7: another token.
    let usdc = obol_devnet::USDC.to_checksum(None);
    let request = mutate(&|a| a["permitted"]["token"] = usdc.clone().into());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "permit2_token_mismatch"
    );
    // A tampered nonce: the signature no longer covers the message.
    let request = mutate(&|a| a["nonce"] = "12345".into());
    assert_eq!(
        fixture.invalid_reason(&request).await,
        "invalid_permit2_signature"
    );
    // A payer without OBOL.
    let broke = LocalSigner::random();
    assert_eq!(
        fixture
            .invalid_reason(&simple_payment(&broke, &requirement))
            .await,
        "permit2_insufficient_balance"
    );
}
