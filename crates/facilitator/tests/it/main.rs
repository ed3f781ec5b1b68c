//! The embedded facilitator against a real devnet (anvil + our contracts).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    missing_debug_implementations
)]

mod balance;
mod eip3009;
mod http;
mod pending;
mod permit2;
mod rpcs;
mod same_nonce;
mod upto;

use alloy::primitives::{Address, B256, U256};
use alloy::sol;
use obol_chain::ChainClient;
use obol_devnet::{Devnet, USDC};
use obol_facilitator::{EvmFacilitator, Facilitator as _, FacilitatorConfig, evm::ChainSetup};
use obol_x402::LocalSigner;
use obol_x402::signer::ValidityWindow;
use obol_x402::wire::{VerifyRequest, v2};

sol! {
    #[sol(rpc)]
    interface IToken {
        function balanceOf(address owner) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function approve(address spender, uint256 amount) external returns (bool);
    }
}

/// The seller's payTo in every test (dev account 2).
pub use obol_testkit::accounts::PAY_TO;
pub use obol_testkit::now;

/// A devnet, a client on it, and a facilitator paying gas from dev account 9.
pub struct Fixture {
    pub devnet: Devnet,
    pub client: ChainClient,
    pub facilitator: std::sync::Arc<EvmFacilitator>,
}

impl Fixture {
    pub async fn start() -> Self {
        Self::with_config(FacilitatorConfig::default()).await
    }

    pub async fn with_config(config: FacilitatorConfig) -> Self {
        let devnet = Devnet::start().await.unwrap();
        let client = ChainClient::connect("base-sepolia", &devnet.endpoints()).unwrap();
        let signer = LocalSigner::from_private_key_hex(devnet.key(9)).unwrap();
        let facilitator = EvmFacilitator::new(
            config,
            vec![ChainSetup {
                client: client.clone(),
                signer,
            }],
        )
        .unwrap();
        let facilitator = std::sync::Arc::new(facilitator);
        Self {
            devnet,
            client,
            facilitator,
        }
    }

    /// Dev account `index` as a payment signer.
    pub fn buyer(&self, index: usize) -> LocalSigner {
        LocalSigner::from_private_key_hex(self.devnet.key(index)).unwrap()
    }

    /// Why the facilitator finds `request` invalid (it must).
    pub async fn invalid_reason(&self, request: &VerifyRequest) -> String {
        let response = self.facilitator.verify(request).await.unwrap();
        assert!(!response.is_valid, "expected invalid, got {response:?}");
        response.invalid_reason.unwrap()
    }

    pub async fn balance(&self, token: Address, owner: Address) -> U256 {
        self.client.token_balance(token, owner).await.unwrap()
    }
}

/// A USDC requirement of `amount` atomic units paying [`PAY_TO`].
pub fn usdc_requirement(amount: u64) -> v2::PaymentRequirements {
    let requirement = obol_testkit::x402::requirement("USDC", amount, PAY_TO);
    assert_eq!(
        requirement.asset,
        USDC.to_checksum(None),
        "the devnet's USDC"
    );
    requirement
}

pub use obol_testkit::x402::{live, payment as simple_payment};

/// Signs `requirement` with `signer` over `window` and pairs it with the server's copy
/// `server` (usually the same requirement).
pub fn pay(
    signer: &LocalSigner,
    requirement: &v2::PaymentRequirements,
    server: &v2::PaymentRequirements,
    window: ValidityWindow,
    nonce: B256,
) -> VerifyRequest {
    VerifyRequest::V2 {
        payment_payload: obol_testkit::x402::signed(signer, requirement, None, window, nonce),
        payment_requirements: server.clone(),
    }
}

/// The signed payload of a v2 `request`.
pub fn payload_of(request: &VerifyRequest) -> &v2::PaymentPayload {
    let VerifyRequest::V2 {
        payment_payload, ..
    } = request
    else {
        unreachable!("a v2 request")
    };
    payment_payload
}

/// A v2 `request` with its payload changed by `edit`.
pub fn edited(
    mut request: VerifyRequest,
    edit: impl FnOnce(&mut v2::PaymentPayload),
) -> VerifyRequest {
    let VerifyRequest::V2 {
        payment_payload, ..
    } = &mut request
    else {
        unreachable!("a v2 request")
    };
    edit(payment_payload);
    request
}
