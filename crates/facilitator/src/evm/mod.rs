//! The embedded EVM facilitator.
//!
//! Verification: [`crate::checks::precheck`] (pure) → code presence (a contract wallet's, the
//! Permit2 proxy's; cached once seen) → one `eth_call` simulating the exact settlement call.
//! Only when the simulation reverts do the chain reads (nonce state, balance, allowance) run, to
//! explain it with a precise reason; with simulation off, the reads are the check. Settlement
//! does the pure checks and code presence again, then sends through a per-signer sender whose gas
//! estimation is the last simulation (a refused send is explained by the same reads) and which
//! assigns nonces locally (so concurrent settles of different payments pipeline instead of
//! colliding), and waits for the receipt up to a timeout (one `eth_sendRawTransactionSync` on a
//! devnet).
//! Settles of the same authorization (its EIP-712 digest) are serialised and remembered in a
//! bounded cache (`settles.rs`): the second caller gets the first one's result, never a second
//! transfer; another authorization with the same nonce is refused, never handed that result.

mod contracts;
mod eip3009;
mod permit2;
mod settles;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider as _;
use alloy::transports::RpcError;
use async_trait::async_trait;
use obol_chain::ChainClient;
use obol_config::time::unix_now as now;
use obol_x402::LocalSigner;
use obol_x402::network;
use obol_x402::wire::{
    SettleRequest, SettleResponse, SupportedKind, SupportedResponse, VerifyRequest, VerifyResponse,
};
use serde_json::{Map, Value};

use crate::checks::{self, Payment, Phase, Transfer};
use crate::reason::{Invalid, Reason};
use crate::{Facilitator, FacilitatorError};
use settles::{Refused, Settles};

pub use obol_chain::{SendError, Sender};

/// Tunables of the embedded facilitator.
#[derive(Debug, Clone)]
pub struct FacilitatorConfig {
    /// How long settle waits for a receipt before answering `settlement_pending`.
    pub receipt_timeout: Duration,
    /// Whether verify simulates the settlement call (`eth_call`).
    pub simulate: bool,
    /// How many keys pay gas per chain: the configured key and `gas_wallets − 1` keys derived
    /// from it ([`GAS_WALLET_PURPOSE`]), each with its own nonce, so settlements do not queue
    /// on one key. Derived keys are topped up by [`EvmFacilitator::fund_gas_wallets`].
    pub gas_wallets: u32,
    /// What [`EvmFacilitator::fund_gas_wallets`] tops a derived key up to, in wei (it sends
    /// when a key holds less than half of it).
    pub gas_wallet_float: U256,
    /// How long a settlement transaction may go unmined before it is signed again with higher
    /// fees ([`Sender::with_replace_after`]); `None`: three block times, at least
    /// [`obol_chain::MIN_REPLACE_AFTER`].
    pub replace_after: Option<Duration>,
}

/// The derivation purpose of gas wallets ([`LocalSigner::derive`]).
pub const GAS_WALLET_PURPOSE: &str = "obol-stack/gas-wallet";

/// The most gas wallets per chain.
pub const MAX_GAS_WALLETS: u32 = 64;

impl Default for FacilitatorConfig {
    fn default() -> Self {
        Self {
            receipt_timeout: Duration::from_secs(30),
            simulate: true,
            gas_wallets: 1,
            // 0.01 ETH: thousands of settlements on an L2.
            gas_wallet_float: U256::from(10_000_000_000_000_000_u64),
            replace_after: None,
        }
    }
}

/// One chain the facilitator settles on.
#[derive(Debug)]
pub struct ChainSetup {
    /// Reads and sends go through this client's endpoints (writes need `--allow-writes`).
    pub client: ChainClient,
    /// The key that pays gas for settlement transactions.
    pub signer: LocalSigner,
}

struct ChainRuntime {
    client: ChainClient,
    /// The configured key first, then the derived gas wallets.
    senders: Vec<Sender>,
    /// Where the next settlement starts looking for an idle sender.
    turn: std::sync::atomic::AtomicUsize,
    /// Addresses where code was seen (contract wallets, the Permit2 proxy): code does not go
    /// away, so each is asked once. Bounded by [`CODE_SEEN_CAPACITY`].
    code_seen: Mutex<HashSet<Address>>,
}

/// The most addresses [`ChainRuntime::has_code`] remembers; the set starts over when full.
const CODE_SEEN_CAPACITY: usize = 10_000;

impl ChainRuntime {
    /// The configured key's sender (simulations run from it).
    fn main_sender(&self) -> &Sender {
        &self.senders[0]
    }

    /// The sender that sent transaction `hash` and has not seen it mined, else the main one.
    fn sender_of(&self, hash: B256) -> &Sender {
        self.senders
            .iter()
            .find(|sender| sender.tracks(hash))
            .unwrap_or_else(|| self.main_sender())
    }

    /// A sender for the next settlement: the first one not busy sending, starting after the
    /// previous pick; when all are busy, the next in turn (its nonce lock queues the send).
    fn pick_sender(&self) -> &Sender {
        let n = self.senders.len();
        let start = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        (0..n)
            .map(|i| &self.senders[(start + i) % n])
            .find(|sender| sender.is_idle())
            .unwrap_or(&self.senders[start])
    }

    /// The sender with `address`, if it is one of this chain's.
    fn sender_with(&self, address: Address) -> Option<&Sender> {
        self.senders.iter().find(|s| s.address() == address)
    }

    /// Who sends `payment`'s settlement: for `upto`, the facilitator its witness names (the
    /// proxy accepts no other caller; [`ready`] checked it is ours); else the next idle sender.
    fn settler(&self, payment: &Payment) -> &Sender {
        upto_facilitator(payment)
            .and_then(|address| self.sender_with(address))
            .unwrap_or_else(|| self.pick_sender())
    }

    /// Whether there is code at `address` (one `eth_getCode` until code is seen).
    async fn has_code(&self, address: Address) -> Result<bool, String> {
        let seen = |set: &Mutex<HashSet<Address>>| {
            set.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&address)
        };
        if seen(&self.code_seen) {
            return Ok(true);
        }
        let code = self
            .client
            .provider()
            .get_code_at(address)
            .await
            .map_err(|e| e.to_string())?;
        if code.is_empty() {
            return Ok(false);
        }
        let mut set = self
            .code_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if set.len() >= CODE_SEEN_CAPACITY {
            set.clear();
        }
        set.insert(address);
        Ok(true)
    }
}

/// What a settle produced, remembered per authorization.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "one per remembered payment")]
enum Outcome {
    Done(SettleResponse),
    Pending(B256),
}

/// Verifies and settles `exact` payments on the configured chains.
pub struct EvmFacilitator {
    config: FacilitatorConfig,
    chains: HashMap<u64, ChainRuntime>,
    settles: Settles,
}

impl std::fmt::Debug for EvmFacilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chains: Vec<u64> = self.chains.keys().copied().collect();
        chains.sort_unstable();
        f.debug_struct("EvmFacilitator")
            .field("config", &self.config)
            .field("chains", &chains)
            .finish_non_exhaustive()
    }
}

impl EvmFacilitator {
    /// A facilitator over `chains`.
    pub fn new(
        config: FacilitatorConfig,
        chains: Vec<ChainSetup>,
    ) -> Result<Self, FacilitatorError> {
        if !(1..=MAX_GAS_WALLETS).contains(&config.gas_wallets) {
            return Err(FacilitatorError::Config(format!(
                "gasWallets must be between 1 and {MAX_GAS_WALLETS}, not {}",
                config.gas_wallets
            )));
        }
        let mut runtimes = HashMap::new();
        for setup in chains {
            let chain_id = setup.client.chain_id();
            let sender = |key: &LocalSigner| {
                let sender = Sender::new(&setup.client, key);
                match config.replace_after {
                    Some(after) => sender.with_replace_after(after),
                    None => sender,
                }
            };
            let mut senders = vec![sender(&setup.signer)];
            for index in 1..config.gas_wallets {
                let key = setup
                    .signer
                    .derive(GAS_WALLET_PURPOSE, index)
                    .map_err(|e| FacilitatorError::Config(e.to_string()))?;
                senders.push(sender(&key));
            }
            if runtimes
                .insert(
                    chain_id,
                    ChainRuntime {
                        client: setup.client,
                        senders,
                        turn: std::sync::atomic::AtomicUsize::new(0),
                        code_seen: Mutex::new(HashSet::new()),
                    },
                )
                .is_some()
            {
                return Err(FacilitatorError::Config(format!(
                    "chain {chain_id} configured twice"
                )));
            }
        }
        Ok(Self {
            config,
            chains: runtimes,
            settles: Settles::new(settles::CAPACITY),
        })
    }

    /// The configured key's address on `chain_id` (it funds the derived gas wallets).
    pub fn signer_address(&self, chain_id: u64) -> Option<Address> {
        self.chains
            .get(&chain_id)
            .map(|c| c.main_sender().address())
    }

    /// Every address paying gas on `chain_id`: the configured key, then the derived ones.
    pub fn gas_wallets(&self, chain_id: u64) -> Vec<Address> {
        self.chains.get(&chain_id).map_or_else(Vec::new, |c| {
            c.senders.iter().map(Sender::address).collect()
        })
    }

    /// Tops up every derived gas wallet holding less than half of
    /// [`FacilitatorConfig::gas_wallet_float`] to the float, from the configured key; returns
    /// how many transfers were sent. Idempotent: funded wallets get nothing.
    pub async fn fund_gas_wallets(&self) -> Result<usize, FacilitatorError> {
        let float = self.config.gas_wallet_float;
        let mut sent = 0;
        for (chain_id, chain) in &self.chains {
            let failed = |message: String| FacilitatorError::Rpc {
                chain_id: *chain_id,
                message,
            };
            for wallet in &chain.senders[1..] {
                let balance = chain
                    .client
                    .native_balance(wallet.address())
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if balance >= float / U256::from(2) {
                    continue;
                }
                let top_up = alloy::rpc::types::TransactionRequest::default()
                    .to(wallet.address())
                    .value(float - balance);
                let (hash, mined) = chain
                    .main_sender()
                    .send_and_wait(top_up, self.config.receipt_timeout)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if mined != Ok(Some(true)) {
                    return Err(failed(format!(
                        "the top-up of gas wallet {} ({hash}) was not mined in time",
                        wallet.address()
                    )));
                }
                tracing::info!(chain_id, wallet = %wallet.address(), %hash, "gas wallet topped up");
                sent += 1;
            }
        }
        Ok(sent)
    }

    fn chain(&self, payment: &Payment) -> Result<&ChainRuntime, FacilitatorError> {
        self.chains.get(&payment.chain_id).ok_or_else(|| {
            FacilitatorError::Config(format!(
                "chain {} passed precheck but is not configured",
                payment.chain_id
            ))
        })
    }

    /// Pure checks, then the chain: `Ok(Err(invalid))` for a bad payment.
    async fn check(
        &self,
        request: &VerifyRequest,
        simulate: bool,
    ) -> Result<Result<Payment, Invalid>, FacilitatorError> {
        let supported = |id| self.chains.contains_key(&id);
        let payment = match checks::precheck(request, now(), Phase::Verify, &supported) {
            Ok(payment) => payment,
            Err(invalid) => return Ok(Err(invalid)),
        };
        let chain = self.chain(&payment)?;
        if let Err(invalid) = ready(chain, &payment).await? {
            return Ok(Err(invalid));
        }
        let verdict = if simulate {
            let from = upto_facilitator(&payment).unwrap_or(chain.main_sender().address());
            let call = settlement_tx(&payment).from(from);
            match chain.client.provider().call(call).await {
                Ok(_) => Ok(()),
                Err(RpcError::ErrorResp(payload)) => Err(explain(
                    chain,
                    &payment,
                    request,
                    &payload.message,
                    &payload.as_revert_data().unwrap_or_default(),
                )
                .await?),
                Err(other) => return Err(rpc(&payment, other.to_string())),
            }
        } else {
            reads(chain, &payment).await?
        };
        Ok(verdict.map(|()| payment))
    }

    async fn settle_once(
        &self,
        request: &SettleRequest,
        payment: &Payment,
    ) -> Result<Outcome, FacilitatorError> {
        let chain = self.chain(payment)?;
        if upto_facilitator(payment).is_some() && payment.amount.is_zero() {
            // Nothing to move: no transaction (the proxy refuses 0), and the answer is
            // remembered, so this authorization settles nothing else here.
            return Ok(Outcome::Done(settled(payment, "")));
        }
        if let Err(invalid) = ready(chain, payment).await? {
            return Ok(Outcome::Done(failure(
                payment,
                invalid.reason,
                &invalid.message,
                "",
            )));
        }
        let tx = settlement_tx(payment);
        let (hash, wait) = match chain
            .settler(payment)
            .send_and_wait(tx, self.config.receipt_timeout)
            .await
        {
            Ok(sent) => sent,
            Err(SendError::Rejected { message, revert }) => {
                // The node refused the transaction (its gas estimation reverted): explain it.
                let invalid = explain(chain, payment, request, &message, &revert).await?;
                if let Some(hash) = self.landed_before(payment, &invalid).await? {
                    return Ok(Outcome::Done(charged(payment, hash)));
                }
                if invalid.reason == Reason::NonceAlreadyUsed
                    && matches!(payment.transfer, Transfer::Eip3009(_))
                    && !eip3009::used_on_chain(chain, payment).await?
                {
                    // The chain has the nonce free, yet the node refuses it as used: a
                    // transaction using it waits in a mempool (this very settlement, sent by a
                    // process that died). Not an answer to remember: once it is mined, the next
                    // ask finds its transfer.
                    return Err(FacilitatorError::Rpc {
                        chain_id: payment.chain_id,
                        message: "the authorization's nonce is taken by a transaction not yet mined; ask again".into(),
                    });
                }
                return Ok(Outcome::Done(failure(
                    payment,
                    invalid.reason,
                    &invalid.message,
                    "",
                )));
            }
            Err(SendError::Infra(message)) => {
                return Err(FacilitatorError::Rpc {
                    chain_id: payment.chain_id,
                    message,
                });
            }
        };
        receipt_outcome(payment, hash, wait)
    }

    /// For a payment whose nonce the chain says is used: the transaction that settled this
    /// very authorization, when one is found (EIP-3009: see [`eip3009::landed`]). Settling is
    /// then idempotent across restarts: the answer is the earlier success, not a refusal.
    async fn landed_before(
        &self,
        payment: &Payment,
        invalid: &Invalid,
    ) -> Result<Option<B256>, FacilitatorError> {
        if invalid.reason != Reason::NonceAlreadyUsed
            || !matches!(payment.transfer, Transfer::Eip3009(_))
        {
            return Ok(None);
        }
        eip3009::landed(self.chain(payment)?, payment).await
    }

    async fn await_receipt(
        &self,
        chain: &ChainRuntime,
        payment: &Payment,
        hash: B256,
    ) -> Result<Outcome, FacilitatorError> {
        // The sender that sent it follows its replacements; after a restart none knows it.
        let (hash, wait) = chain
            .sender_of(hash)
            .wait_receipt(hash, self.config.receipt_timeout)
            .await;
        receipt_outcome(payment, hash, wait)
    }
}

/// What a settlement transaction's receipt (or its absence) means for the payment.
fn receipt_outcome(
    payment: &Payment,
    hash: B256,
    wait: obol_chain::ReceiptWait,
) -> Result<Outcome, FacilitatorError> {
    match wait {
        Ok(Some(true)) => Ok(Outcome::Done(charged(payment, hash))),
        Ok(Some(false)) => Ok(Outcome::Done(failure(
            payment,
            Reason::TransactionFailed,
            "the settlement transaction reverted on-chain",
            &hash.to_string(),
        ))),
        Ok(None) => Ok(Outcome::Pending(hash)),
        Err(message) => Err(FacilitatorError::Rpc {
            chain_id: payment.chain_id,
            message,
        }),
    }
}

/// The settlement call of `payment`.
fn settlement_tx(payment: &Payment) -> alloy::rpc::types::TransactionRequest {
    match &payment.transfer {
        Transfer::Eip3009(_) => eip3009::settlement_tx(payment),
        Transfer::Permit2 { .. } => permit2::settlement_tx(payment),
    }
}

/// The facilitator an `upto` payment's witness names; `None` for `exact`.
fn upto_facilitator(payment: &Payment) -> Option<Address> {
    match &payment.transfer {
        Transfer::Permit2 { authorization, .. } => authorization.facilitator,
        Transfer::Eip3009(_) => None,
    }
}

/// What must hold before any call is made: code at a contract wallet whose signature could
/// not be checked off-chain, an `upto` witness naming one of our keys, and the scheme's
/// Permit2 proxy deployed.
async fn ready(
    chain: &ChainRuntime,
    payment: &Payment,
) -> Result<Result<(), Invalid>, FacilitatorError> {
    match &payment.transfer {
        Transfer::Eip3009(_) => contract_wallet(chain, payment, Reason::Signature).await,
        Transfer::Permit2 { authorization, .. } => {
            if let Err(invalid) = contract_wallet(chain, payment, Reason::Permit2Signature).await? {
                return Ok(Err(invalid));
            }
            if let Some(named) = authorization.facilitator
                && chain.sender_with(named).is_none()
            {
                return Ok(Err(Invalid::new(
                    Reason::UptoFacilitatorMismatch,
                    format!(
                        "the payment names facilitator {named}, not an address of this facilitator (its /supported extra.facilitatorAddress is {})",
                        chain.main_sender().address()
                    ),
                )));
            }
            let proxy = authorization.proxy();
            if chain.has_code(proxy).await.map_err(|e| rpc(payment, e))? {
                return Ok(Ok(()));
            }
            Ok(Err(Invalid::new(
                Reason::Permit2ProxyNotDeployed,
                format!(
                    "no x402 Permit2 proxy at {proxy} on chain {}",
                    payment.chain_id
                ),
            )))
        }
    }
}

/// The chain reads that decide a payment without simulating it: nonce state and balance
/// (EIP-3009); nonce bitmap, balance and allowance (Permit2).
async fn reads(
    chain: &ChainRuntime,
    payment: &Payment,
) -> Result<Result<(), Invalid>, FacilitatorError> {
    match &payment.transfer {
        Transfer::Eip3009(_) => eip3009::reads(chain, payment).await,
        Transfer::Permit2 { .. } => permit2::reads(chain, payment).await,
    }
}

/// Why the chain refused `payment` (a reverted simulation or a refused send): the reads first,
/// then the node's message and revert data.
async fn explain(
    chain: &ChainRuntime,
    payment: &Payment,
    request: &VerifyRequest,
    message: &str,
    revert: &[u8],
) -> Result<Invalid, FacilitatorError> {
    if let Err(invalid) = reads(chain, payment).await? {
        return Ok(invalid);
    }
    Ok(match &payment.transfer {
        Transfer::Eip3009(_) => eip3009::diagnose(chain, payment, request, message).await?,
        Transfer::Permit2 { .. } => permit2::diagnose(revert, message),
    })
}

/// How a contract call failed.
enum CallFailure {
    /// The node executed it and it reverted (or returned nothing decodable).
    Reverted(String),
    /// The node could not be asked.
    Infra(String),
}

fn call_failure(error: &alloy::contract::Error) -> CallFailure {
    match error {
        alloy::contract::Error::TransportError(RpcError::ErrorResp(payload)) => {
            CallFailure::Reverted(payload.message.to_string())
        }
        alloy::contract::Error::TransportError(other) => CallFailure::Infra(other.to_string()),
        other => CallFailure::Reverted(other.to_string()),
    }
}

fn rpc(payment: &Payment, message: String) -> FacilitatorError {
    FacilitatorError::Rpc {
        chain_id: payment.chain_id,
        message,
    }
}

/// For signatures not proven off-chain: there must be a contract at the payer (ERC-1271),
/// otherwise the signature is simply wrong (65 bytes) or belongs to an undeployed wallet.
async fn contract_wallet(
    chain: &ChainRuntime,
    payment: &Payment,
    bad_signature: Reason,
) -> Result<Result<(), Invalid>, FacilitatorError> {
    if payment.signer != checks::SignerCheck::NeedsChain {
        return Ok(Ok(()));
    }
    if chain
        .has_code(payment.payer)
        .await
        .map_err(|e| rpc(payment, e))?
    {
        return Ok(Ok(()));
    }
    Ok(Err(if payment.signature.len() == 65 {
        Invalid::new(
            bad_signature,
            "the signature does not recover to the payer, and the payer is not a contract wallet",
        )
    } else if payment
        .signature
        .ends_with(&obol_x402::token::ERC6492_MAGIC_SUFFIX)
    {
        Invalid::new(
            Reason::UndeployedSmartWallet,
            "ERC-6492 signatures of undeployed wallets are not supported; deploy the wallet first",
        )
    } else {
        Invalid::new(
            Reason::UndeployedSmartWallet,
            "a contract-wallet signature, but there is no contract at the payer",
        )
    }))
}

/// A successful settlement of `payment` in transaction `hash`.
fn charged(payment: &Payment, hash: B256) -> SettleResponse {
    settled(payment, &hash.to_string())
}

/// A successful settlement of `payment` (`transaction` empty when nothing was sent); `upto`
/// answers carry the amount moved.
fn settled(payment: &Payment, transaction: &str) -> SettleResponse {
    SettleResponse {
        success: true,
        transaction: transaction.to_owned(),
        network: payment.network.clone(),
        payer: Some(payment.payer.to_checksum(None)),
        amount: upto_facilitator(payment).map(|_| payment.amount.into()),
        ..SettleResponse::default()
    }
}

fn failure(payment: &Payment, reason: Reason, message: &str, transaction: &str) -> SettleResponse {
    SettleResponse {
        success: false,
        error_reason: Some(reason.as_str().to_owned()),
        error_message: Some(message.to_owned()),
        transaction: transaction.to_owned(),
        network: payment.network.clone(),
        payer: Some(payment.payer.to_checksum(None)),
        ..SettleResponse::default()
    }
}

fn pending(payment: &Payment, hash: B256) -> SettleResponse {
    failure(
        payment,
        Reason::SettlementPending,
        "the transaction was broadcast but no receipt was seen in time; do not sign again",
        &hash.to_string(),
    )
}

/// Another authorization already holds this payer's nonce: this one can never settle.
fn nonce_claimed(payment: &Payment) -> SettleResponse {
    let reason = match payment.transfer {
        Transfer::Eip3009(_) => Reason::NonceAlreadyUsed,
        Transfer::Permit2 { .. } => Reason::Permit2InvalidNonce,
    };
    let message = format!(
        "nonce {} of {} belongs to another authorization, settled or being settled; sign a new payment",
        payment.nonce, payment.payer
    );
    failure(payment, reason, &message, "")
}

fn invalid_settle(request: &SettleRequest, invalid: &Invalid) -> SettleResponse {
    SettleResponse {
        success: false,
        error_reason: Some(invalid.reason.as_str().to_owned()),
        error_message: Some(invalid.message.clone()),
        transaction: String::new(),
        network: request.requirements_v2().network,
        payer: request
            .evm_payload()
            .ok()
            .map(|p| p.payer().to_checksum(None)),
        ..SettleResponse::default()
    }
}

#[async_trait]
impl Facilitator for EvmFacilitator {
    async fn verify(&self, request: &VerifyRequest) -> Result<VerifyResponse, FacilitatorError> {
        Ok(match self.check(request, self.config.simulate).await? {
            Ok(payment) => VerifyResponse {
                is_valid: true,
                payer: Some(payment.payer.to_checksum(None)),
                ..VerifyResponse::default()
            },
            Err(invalid) => VerifyResponse {
                is_valid: false,
                invalid_reason: Some(invalid.reason.as_str().to_owned()),
                invalid_message: Some(invalid.message),
                payer: request
                    .payload()
                    .evm_payload()
                    .ok()
                    .map(|p| p.payer().to_checksum(None)),
                ..VerifyResponse::default()
            },
        })
    }

    async fn settle(&self, request: &SettleRequest) -> Result<SettleResponse, FacilitatorError> {
        // Identify the payment first (pure), so concurrent settles of it queue on one slot.
        let supported = |id| self.chains.contains_key(&id);
        let payment = match checks::precheck(request, now(), Phase::Settle, &supported) {
            Ok(payment) => payment,
            Err(invalid) => return Ok(invalid_settle(request, &invalid)),
        };
        let claim = match self.settles.claim(
            payment.identity(),
            payment.digest,
            payment.expires_at,
            now(),
        ) {
            Ok(claim) => claim,
            Err(Refused::Claimed) => return Ok(nonce_claimed(&payment)),
            Err(Refused::Full) => {
                return Err(FacilitatorError::Busy(format!(
                    "all {} remembered settlements are in flight or pending",
                    settles::CAPACITY
                )));
            }
        };
        let mut outcome = claim.slot().lock().await;
        let result = match outcome.clone() {
            Some(Outcome::Done(response)) => Outcome::Done(response),
            Some(Outcome::Pending(hash)) => {
                let chain = self.chain(&payment)?;
                self.await_receipt(chain, &payment, hash).await?
            }
            // No re-verification against the chain: the send's gas estimation is the same
            // call, and a refusal is explained by the same reads.
            None => self.settle_once(request, &payment).await?,
        };
        *outcome = Some(result.clone());
        Ok(match result {
            Outcome::Done(response) => response,
            Outcome::Pending(hash) => pending(&payment, hash),
        })
    }

    fn reads_balances(&self) -> bool {
        true
    }

    async fn balance(
        &self,
        chain_id: u64,
        asset: Address,
        owner: Address,
    ) -> Result<Option<U256>, FacilitatorError> {
        let Some(chain) = self.chains.get(&chain_id) else {
            return Ok(None);
        };
        match chain.client.token_balance(asset, owner).await {
            Ok(balance) => Ok(Some(balance)),
            Err(error) => Err(FacilitatorError::Rpc {
                chain_id,
                message: error.to_string(),
            }),
        }
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        let mut chain_ids: Vec<u64> = self.chains.keys().copied().collect();
        chain_ids.sort_unstable();
        let mut kinds = Vec::new();
        for id in &chain_ids {
            kinds.push(SupportedKind {
                x402_version: 2,
                scheme: "exact".into(),
                network: format!("eip155:{id}"),
                extra: None,
            });
            // upto: the buyer signs for the one key that may settle it.
            let settler = self.chains[id].main_sender().address().to_checksum(None);
            let mut extra = Map::new();
            extra.insert("facilitatorAddress".into(), Value::from(settler));
            kinds.push(SupportedKind {
                x402_version: 2,
                scheme: "upto".into(),
                network: format!("eip155:{id}"),
                extra: Some(extra),
            });
            if let Some(known) = network::by_chain_id(*id) {
                kinds.push(SupportedKind {
                    x402_version: 1,
                    scheme: "exact".into(),
                    network: known.name.into(),
                    extra: None,
                });
            }
        }
        let mut signers: Vec<String> = self
            .chains
            .values()
            .flat_map(|c| c.senders.iter().map(|s| s.address().to_checksum(None)))
            .collect();
        signers.sort();
        signers.dedup();
        let mut signer_map = Map::new();
        signer_map.insert("eip155:*".into(), Value::from(signers));
        Ok(SupportedResponse {
            kinds,
            extensions: vec!["eip2612GasSponsoring".to_owned()],
            signers: signer_map,
        })
    }
}
