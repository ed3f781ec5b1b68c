//! `Facilitator::balance`: the embedded facilitator reads the token on its chains.

use alloy::primitives::U256;
use obol_devnet::{OBOL, USDC};
use obol_facilitator::{Facilitator as _, FacilitatorError};

use crate::{Fixture, simple_payment, usdc_requirement};

#[tokio::test]
async fn balance_reads_the_token_on_configured_chains_only() {
    let fixture = Fixture::start().await;
    let facilitator = &fixture.facilitator;
    let buyer = fixture.buyer(1).address();
    for token in [USDC, OBOL] {
        let read = facilitator.balance(84532, token, buyer).await.unwrap();
        assert_eq!(read, Some(fixture.balance(token, buyer).await));
        assert!(read > Some(U256::ZERO), "the dev accounts are funded");
    }

    // It follows the chain: a settled payment shows at once.
    let before = facilitator.balance(84532, USDC, buyer).await.unwrap();
    let request = simple_payment(&fixture.buyer(1), &usdc_requirement(1_500));
    assert!(facilitator.settle(&request).await.unwrap().success);
    assert_eq!(
        facilitator.balance(84532, USDC, buyer).await.unwrap(),
        before.map(|b| b - U256::from(1_500))
    );

    // A chain it does not have: it cannot tell.
    assert_eq!(facilitator.balance(8453, USDC, buyer).await.unwrap(), None);

    // The chain gone: an error worth retrying, never a made-up balance.
    let Fixture {
        devnet,
        facilitator,
        ..
    } = fixture;
    drop(devnet);
    let error = facilitator.balance(84532, USDC, buyer).await.unwrap_err();
    assert!(
        matches!(
            error,
            FacilitatorError::Rpc {
                chain_id: 84532,
                ..
            }
        ) && error.retriable(),
        "{error}"
    );
}
