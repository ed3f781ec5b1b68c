//! The x402 upto Permit2 proxy at its canonical address: the facilitator named in the witness
//! settles any amount from 1 up to the ceiling the payer signed, exactly once.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256, address, b256, keccak256};
use alloy::providers::{DynProvider, Provider as _, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::SignerSync as _;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct};
use obol_devnet::{Devnet, OBOL, USDC};
use obol_testkit::now;
use obol_x402::eip712::{self, permit2_domain, token_domain, upto};
use obol_x402::signer::random_nonce;
use obol_x402::token::{PERMIT2, UPTO_PERMIT2_PROXY};

sol! {
    #![sol(all_derives)]

    struct TokenPermissions { address token; uint256 amount; }
    struct PermitTransferFrom { TokenPermissions permitted; uint256 nonce; uint256 deadline; }
    struct Witness { address to; address facilitator; uint256 validAfter; }
    struct EIP2612Permit { uint256 value; uint256 deadline; bytes32 r; bytes32 s; uint8 v; }

    /// The proxy's external ABI as the x402 SDKs call it, and the reverts the tests expect
    /// (`InvalidNonce` is Permit2's, bubbled up through the proxy).
    #[sol(rpc)]
    interface IUptoProxy {
        error UnauthorizedFacilitator();
        error AmountExceedsPermitted();
        error InvalidAmount();
        error InvalidNonce();

        function WITNESS_TYPEHASH() external view returns (bytes32);
        function WITNESS_TYPE_STRING() external view returns (string);
        function PERMIT2() external view returns (address);
        function settle(PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature) external;
        function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature) external;
    }

    #[sol(rpc)]
    interface IToken {
        function balanceOf(address owner) external view returns (uint256);
        function approve(address spender, uint256 amount) external returns (bool);
        function nonces(address owner) external view returns (uint256);
    }
}

use IUptoProxy::IUptoProxyErrors as Revert;

/// The seller: an address no dev account holds, so it starts with nothing.
const PAY_TO: Address = address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
/// The dev account that pays (it approved Permit2 on USDC).
const PAYER: usize = 1;
/// The dev account the payer names as the facilitator.
const FACILITATOR: usize = 9;
/// The ceiling every test signs (USDC atomic units).
const CEILING: u64 = 1000;

/// A devnet with the [`PAYER`] and the [`FACILITATOR`].
struct Fixture {
    devnet: Devnet,
    payer: PrivateKeySigner,
    facilitator: PrivateKeySigner,
}

/// A signed upto authorization: what `settle` takes besides the amount.
struct Authorization {
    owner: Address,
    permit: PermitTransferFrom,
    witness: Witness,
    signature: Bytes,
}

impl Fixture {
    async fn start() -> Self {
        let devnet = Devnet::start().await.unwrap();
        let fixture = Self {
            payer: devnet.key(PAYER).parse().unwrap(),
            facilitator: devnet.key(FACILITATOR).parse().unwrap(),
            devnet,
        };
        let usdc = IToken::new(USDC, fixture.provider(&fixture.payer));
        let approve = usdc.approve(PERMIT2, U256::MAX).send().await.unwrap();
        assert!(approve.get_receipt().await.unwrap().status());
        fixture
    }

    fn provider(&self, sender: &PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(sender.clone()))
            .connect_http(self.devnet.endpoint().parse().unwrap())
            .erased()
    }

    /// `owner` signs a Permit2 witness transfer of at most `ceiling` of `token` to [`PAY_TO`],
    /// settleable by [`Fixture::facilitator`] only.
    fn authorize(&self, owner: &PrivateKeySigner, token: Address, ceiling: u64) -> Authorization {
        let deadline = U256::from(now() + 600);
        let message = upto::PermitWitnessTransferFrom {
            permitted: upto::TokenPermissions {
                token,
                amount: U256::from(ceiling),
            },
            spender: UPTO_PERMIT2_PROXY,
            nonce: U256::from_be_bytes(random_nonce().0),
            deadline,
            witness: upto::Witness {
                to: PAY_TO,
                facilitator: self.facilitator.address(),
                validAfter: U256::ZERO,
            },
        };
        let signature = sign(owner, &message, &permit2_domain(self.devnet.chain_id()));
        Authorization {
            owner: owner.address(),
            permit: PermitTransferFrom {
                permitted: TokenPermissions {
                    token,
                    amount: message.permitted.amount,
                },
                nonce: message.nonce,
                deadline,
            },
            witness: Witness {
                to: message.witness.to,
                facilitator: message.witness.facilitator,
                validAfter: message.witness.validAfter,
            },
            signature: signature.as_bytes().into(),
        }
    }

    /// `sender` settles `amount` of `authorization`: `settle`, or `settleWithPermit` when an
    /// EIP-2612 permit is given. A revert comes back decoded.
    async fn settle(
        &self,
        sender: &PrivateKeySigner,
        authorization: &Authorization,
        amount: u64,
        permit2612: Option<EIP2612Permit>,
    ) -> Result<TransactionReceipt, Revert> {
        let proxy = IUptoProxy::new(UPTO_PERMIT2_PROXY, self.provider(sender));
        let Authorization {
            owner,
            permit,
            witness,
            signature,
        } = authorization;
        let amount = U256::from(amount);
        let sent = match permit2612 {
            None => {
                proxy
                    .settle(
                        permit.clone(),
                        amount,
                        *owner,
                        witness.clone(),
                        signature.clone(),
                    )
                    .send()
                    .await
            }
            Some(permit2612) => {
                proxy
                    .settleWithPermit(
                        permit2612,
                        permit.clone(),
                        amount,
                        *owner,
                        witness.clone(),
                        signature.clone(),
                    )
                    .send()
                    .await
            }
        };
        let pending = sent.map_err(|e| {
            e.as_decoded_interface_error::<Revert>()
                .unwrap_or_else(|| panic!("undecoded revert: {e}"))
        })?;
        let receipt = pending.get_receipt().await.unwrap();
        assert!(receipt.status(), "settlement mined but reverted");
        Ok(receipt)
    }

    /// (payer's balance, payee's balance) of `token`.
    async fn balances(&self, token: Address, payer: Address) -> (U256, U256) {
        let token = IToken::new(token, self.provider(&self.payer));
        (
            token.balanceOf(payer).call().await.unwrap(),
            token.balanceOf(PAY_TO).call().await.unwrap(),
        )
    }
}

fn sign<T: SolStruct>(
    signer: &PrivateKeySigner,
    message: &T,
    domain: &Eip712Domain,
) -> alloy::signers::Signature {
    signer
        .sign_hash_sync(&message.eip712_signing_hash(domain))
        .unwrap()
}

/// `settle` under the ceiling, as the facilitator named in the witness: exactly `amount` moves.
async fn settles(amount: u64) {
    let f = Fixture::start().await;
    let auth = f.authorize(&f.payer, USDC, CEILING);
    let (payer_before, payee_before) = f.balances(USDC, auth.owner).await;
    f.settle(&f.facilitator, &auth, amount, None).await.unwrap();
    let (payer_after, payee_after) = f.balances(USDC, auth.owner).await;
    assert_eq!(payee_after, payee_before + U256::from(amount));
    assert_eq!(payer_after, payer_before - U256::from(amount));
}

/// A settlement sent by dev account `sender` that must revert with `expected`, moving nothing.
async fn refused(sender: usize, amount: u64, expected: Revert) {
    let f = Fixture::start().await;
    let auth = f.authorize(&f.payer, USDC, CEILING);
    let before = f.balances(USDC, auth.owner).await;
    let sender: PrivateKeySigner = f.devnet.key(sender).parse().unwrap();
    let revert = f.settle(&sender, &auth, amount, None).await.unwrap_err();
    assert_eq!(revert, expected);
    assert_eq!(f.balances(USDC, auth.owner).await, before);
}

#[tokio::test]
async fn witness_type_is_the_one_the_payer_signs() {
    let f = Fixture::start().await;
    let proxy = IUptoProxy::new(UPTO_PERMIT2_PROXY, f.provider(&f.payer));
    let typehash = proxy.WITNESS_TYPEHASH().call().await.unwrap();
    assert_eq!(
        typehash,
        b256!("0xd4171c445a74218b01d4fd8af34ff1106580ea1e36ff837e64484bfaa2253b75")
    );
    assert_eq!(
        typehash,
        keccak256(upto::Witness::eip712_encode_type().as_bytes())
    );
    let type_string = proxy.WITNESS_TYPE_STRING().call().await.unwrap();
    assert_eq!(
        type_string,
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)"
    );
    // Permit2 prepends its stub: the result is the type our payers sign.
    assert_eq!(
        format!(
            "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,{type_string}"
        ),
        upto::PermitWitnessTransferFrom::eip712_encode_type()
    );
    assert_eq!(proxy.PERMIT2().call().await.unwrap(), PERMIT2);
}

#[tokio::test]
async fn settles_less_than_the_ceiling() {
    settles(400).await;
}

#[tokio::test]
async fn settles_the_full_ceiling() {
    settles(CEILING).await;
}

#[tokio::test]
async fn above_the_ceiling_is_refused() {
    refused(
        FACILITATOR,
        CEILING + 1,
        Revert::AmountExceedsPermitted(IUptoProxy::AmountExceedsPermitted {}),
    )
    .await;
}

#[tokio::test]
async fn only_the_named_facilitator_settles() {
    refused(
        8,
        400,
        Revert::UnauthorizedFacilitator(IUptoProxy::UnauthorizedFacilitator {}),
    )
    .await;
}

/// A zero charge cannot be settled on chain: the facilitator answers it without a transaction.
#[tokio::test]
async fn zero_is_refused() {
    refused(
        FACILITATOR,
        0,
        Revert::InvalidAmount(IUptoProxy::InvalidAmount {}),
    )
    .await;
}

/// One authorization, one settlement, whatever amount was settled the first time.
#[tokio::test]
async fn a_settled_authorization_does_not_replay() {
    let f = Fixture::start().await;
    let auth = f.authorize(&f.payer, USDC, CEILING);
    f.settle(&f.facilitator, &auth, 400, None).await.unwrap();
    let after_first = f.balances(USDC, auth.owner).await;
    let revert = f
        .settle(&f.facilitator, &auth, 400, None)
        .await
        .unwrap_err();
    assert_eq!(revert, Revert::InvalidNonce(IUptoProxy::InvalidNonce {}));
    assert_eq!(f.balances(USDC, auth.owner).await, after_first);
}

/// A payer that never approved Permit2 pays in OBOL through its EIP-2612 permit for the ceiling.
#[tokio::test]
async fn settle_with_permit_needs_no_prior_approval() {
    let f = Fixture::start().await;
    let payer: PrivateKeySigner = f.devnet.key(3).parse().unwrap();
    let ceiling = 10u64.pow(18);
    let amount = ceiling / 4;
    let auth = f.authorize(&payer, OBOL, ceiling);
    let obol = IToken::new(OBOL, f.provider(&payer));
    let permit = eip712::Permit {
        owner: payer.address(),
        spender: PERMIT2,
        value: U256::from(ceiling),
        nonce: obol.nonces(payer.address()).call().await.unwrap(),
        deadline: auth.permit.deadline,
    };
    let domain = token_domain("Obol Network", "1", f.devnet.chain_id(), OBOL);
    let signature = sign(&payer, &permit, &domain);
    let permit2612 = EIP2612Permit {
        value: permit.value,
        deadline: permit.deadline,
        r: B256::from(signature.r()),
        s: B256::from(signature.s()),
        v: 27 + u8::from(signature.v()),
    };
    let before = f.balances(OBOL, payer.address()).await;
    f.settle(&f.facilitator, &auth, amount, Some(permit2612))
        .await
        .unwrap();
    let (payer_after, payee_after) = f.balances(OBOL, payer.address()).await;
    assert_eq!(payee_after, before.1 + U256::from(amount));
    assert_eq!(payer_after, before.0 - U256::from(amount));
}
