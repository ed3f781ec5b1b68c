//! Sending settlement transactions from one signer.
//!
//! Gas and EIP-1559 fees are estimated first, without any lock (the estimation is also the last
//! simulation of the call: a transaction that would revert is refused here). Nonces are then
//! assigned locally under a lock held only while the transaction is signed (locally) and handed
//! to the node, so many settlements can be in flight at once without colliding.
//!
//! Every transaction is signed here, so its hash is known before it is sent as raw bytes. That
//! matters because one send can reach the node more than once: the endpoint set fails over to
//! the next endpoint with the same bytes when one does not answer in time, and the retry layer
//! resends on rate limits. The second copy is then refused with "already known" (still pending)
//! or "nonce too low" (already mined), although the transaction went through. So when a send
//! fails, the sender first asks the node for the transaction by hash
//! (`eth_getTransactionByHash`): if the node knows it, pending or mined, the send succeeded.
//! "Already known" is a success as such (the node has these very bytes).
//!
//! Only when the node does not know our transaction and refused it because the nonce is taken
//! ("nonce too low", "replacement transaction underpriced": the key is also used elsewhere, by
//! auto-registration, a Permit2 approval or the user's wallet) does the sender ask the node for
//! the pending nonce and sign once more. Re-signing a transaction that did land would send it
//! twice (a settlement's second `transferWithAuthorization` reverts, and a paid settlement
//! would be reported as failed). Any other send error forgets the counter and the next send
//! asks the node again.
//!
//! [`Sender::send_and_wait`] waits for the receipt. On loopback endpoints (a devnet mines on
//! receipt of a transaction) it sends with `eth_sendRawTransactionSync` (EIP-7966), whose answer
//! is the receipt: one RPC for the whole settlement. A node that answers "method not found"
//! gets the same bytes through `eth_sendRawTransaction` and is never asked the sync method
//! again. Elsewhere (where a block takes seconds and the sync call would hold the nonce lock for
//! that long) receipts are polled adaptively up to a deadline: the first check after
//! [`FIRST_RECEIPT_POLL`], each next one twice as late, never later than the client's interval
//! (25 ms on loopback, the chain's block time elsewhere).
//!
//! Node messages are untrusted text that reaches terminals: [`SendError`] carries them with
//! control characters escaped and truncated ([`MAX_MESSAGE_CHARS`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::ChainClient;
use alloy::eips::Encodable2718 as _;
use alloy::eips::eip1559::Eip1559Estimation;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder as _, TransactionBuilder as _};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolCall as _;
use alloy::transports::{RpcError, TransportErrorKind};
use obol_config::text::printable;
use obol_x402::LocalSigner;
use tokio::sync::Mutex;

mod stuck;

pub use stuck::MAX_REPLACEMENTS;

alloy::sol! {
    interface IERC20Approve {
        function approve(address spender, uint256 amount) external returns (bool);
    }
}

/// The longest node message a [`SendError`] carries (then `…`).
pub const MAX_MESSAGE_CHARS: usize = 300;

/// Why a transaction was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The node answered and refused it (typically: gas estimation reverted).
    #[error("the node refused the transaction: {message}")]
    Rejected {
        /// The node's message: control characters escaped, at most [`MAX_MESSAGE_CHARS`].
        message: String,
        /// The revert data, when the node returned any.
        revert: Vec<u8>,
    },
    /// The node could not be reached or failed (escaped and truncated like `Rejected`).
    #[error("the node could not be reached: {0}")]
    Infra(String),
}

/// What waiting for a receipt found: `Some(status)` once mined, `None` when the deadline passed
/// first, `Err` (the node's message, escaped) when the receipt could not be read.
pub type ReceiptWait = Result<Option<bool>, String>;

/// Sends transactions from one key with locally assigned nonces.
pub struct Sender {
    address: Address,
    chain_id: u64,
    wallet: EthereumWallet,
    provider: RootProvider,
    poll: Duration,
    /// Whether sends that wait use `eth_sendRawTransactionSync` (cleared for good when the
    /// node does not know the method).
    sync: AtomicBool,
    next_nonce: Mutex<Option<u64>>,
    /// Sent and not yet seen mined (see the `stuck` module).
    in_flight: std::sync::Mutex<Vec<stuck::InFlight>>,
    /// How long a transaction may go without a receipt before it is replaced.
    replace_after: Duration,
    /// Held while a stuck transaction is being replaced.
    unsticking: Mutex<()>,
    /// When the last look for a stuck transaction was made.
    last_unstick: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("address", &self.address)
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

/// What became of one signed transaction handed to the node.
enum Delivery {
    /// The node has it (accepted now, or an earlier copy is pending or mined); with its
    /// receipt's status when the send returned the receipt.
    Delivered(Option<bool>),
    /// The node refused it because another transaction of this key holds the nonce, and it
    /// does not know ours: sign again with a fresh nonce.
    NonceTaken(SendError),
    /// Anything else.
    Failed(SendError),
}

impl Sender {
    /// A sender on `client`'s endpoints (writes need an endpoint with `allowWrites`).
    pub fn new(client: &ChainClient, signer: &LocalSigner) -> Self {
        let rpc = client.rpc_client();
        let poll = rpc.poll_interval();
        Self {
            address: signer.address(),
            chain_id: client.chain_id(),
            wallet: EthereumWallet::from(signer.as_alloy().clone()),
            provider: ProviderBuilder::default().connect_client(rpc),
            poll,
            sync: AtomicBool::new(client.is_local()),
            next_nonce: Mutex::new(None),
            in_flight: std::sync::Mutex::new(Vec::new()),
            replace_after: (poll * 3).max(MIN_REPLACE_AFTER),
            unsticking: Mutex::new(()),
            last_unstick: std::sync::Mutex::new(None),
        }
    }

    /// Replaces a transaction not mined `after` its send (default: three of the client's poll
    /// intervals — the chain's block time — and at least [`MIN_REPLACE_AFTER`]).
    #[must_use]
    pub fn with_replace_after(mut self, after: Duration) -> Self {
        self.replace_after = after;
        self
    }

    fn in_flight(&self) -> MutexGuard<'_, Vec<stuck::InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The address paying gas.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Whether no send holds this key's nonce lock right now (a hint for spreading sends over
    /// several senders; it may change at once).
    pub fn is_idle(&self) -> bool {
        self.next_nonce.try_lock().is_ok()
    }

    /// Estimates, signs and broadcasts `tx`; returns its hash. A send that fails although the
    /// node knows the transaction (an earlier copy through another endpoint or a retry) is a
    /// success; a nonce taken by another transaction of this key is refreshed from the node
    /// (pending) and the transaction signed and sent once more.
    pub async fn send(&self, tx: TransactionRequest) -> Result<B256, SendError> {
        self.send_with(tx, None).await.map(|(hash, _)| hash)
    }

    /// Like [`Sender::send`], then waits up to `timeout` (from now) for the receipt
    /// ([`Sender::wait_receipt`]): the hash is that of the version mined (a replacement's, when
    /// the first was stuck), or of the latest version sent while none is mined.
    pub async fn send_and_wait(
        &self,
        tx: TransactionRequest,
        timeout: Duration,
    ) -> Result<(B256, ReceiptWait), SendError> {
        let deadline = Instant::now() + timeout;
        let (hash, mined) = self.send_with(tx, Some(deadline)).await?;
        Ok(match mined {
            Some(status) => (hash, Ok(Some(status))),
            None => {
                self.wait_receipt(hash, deadline.saturating_duration_since(Instant::now()))
                    .await
            }
        })
    }

    /// The send itself; with a deadline, the receipt's status when the send returned it.
    async fn send_with(
        &self,
        tx: TransactionRequest,
        deadline: Option<Instant>,
    ) -> Result<(B256, Option<bool>), SendError> {
        let tx = self.estimate(tx).await?;
        let mut next = self.next_nonce.lock().await;
        let mut nonce = match *next {
            Some(nonce) => nonce,
            None => self.pending_nonce().await?,
        };
        let mut retried = false;
        loop {
            let (hash, raw) = match self.sign(tx.clone(), nonce).await {
                Ok(signed) => signed,
                Err(e) => {
                    *next = None;
                    return Err(e);
                }
            };
            match self.deliver(hash, &raw, deadline).await {
                Delivery::Delivered(mined) => {
                    *next = Some(nonce + 1);
                    if mined.is_none() {
                        self.track(nonce, tx, hash);
                    }
                    return Ok((hash, mined));
                }
                Delivery::NonceTaken(_) if !retried => {
                    retried = true;
                    *next = None;
                    let fresh = self.pending_nonce().await?;
                    tracing::debug!(
                        address = %self.address,
                        stale = nonce,
                        fresh,
                        "nonce taken by another transaction from this key; signing again"
                    );
                    nonce = fresh;
                }
                Delivery::NonceTaken(e) | Delivery::Failed(e) => {
                    *next = None;
                    return Err(e);
                }
            }
        }
    }

    /// `tx` from our address with its gas limit and EIP-1559 fees (two concurrent calls; what
    /// the caller set is kept). A call that would revert fails here, as the node's refusal.
    async fn estimate(&self, tx: TransactionRequest) -> Result<TransactionRequest, SendError> {
        let mut tx = tx.from(self.address).with_chain_id(self.chain_id);
        let gas = async {
            match tx.gas {
                Some(gas) => Ok(gas),
                None => self.provider.estimate_gas(tx.clone()).await,
            }
        };
        let fees = async {
            match (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) {
                (Some(max_fee_per_gas), Some(max_priority_fee_per_gas)) => Ok(Eip1559Estimation {
                    max_fee_per_gas,
                    max_priority_fee_per_gas,
                }),
                _ => self.provider.estimate_eip1559_fees().await,
            }
        };
        let (gas, fees) = tokio::try_join!(gas, fees).map_err(|e| classify(&e))?;
        tx.set_gas_limit(gas);
        tx.set_max_fee_per_gas(fees.max_fee_per_gas);
        tx.set_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        Ok(tx)
    }

    /// The estimated `tx` with `nonce`, signed: its hash and its raw bytes.
    async fn sign(&self, tx: TransactionRequest, nonce: u64) -> Result<(B256, Vec<u8>), SendError> {
        match tx.with_nonce(nonce).build(&self.wallet).await {
            Ok(envelope) => Ok((*envelope.tx_hash(), envelope.encoded_2718())),
            Err(e) => Err(SendError::Infra(format!(
                "the transaction could not be signed: {}",
                printable(&e.to_string(), MAX_MESSAGE_CHARS)
            ))),
        }
    }

    /// Sends the signed bytes once (with the receipt when a deadline is given and the node
    /// sends synchronously) and, when that fails, asks the node whether it knows the
    /// transaction anyway.
    async fn deliver(&self, hash: B256, raw: &[u8], deadline: Option<Instant>) -> Delivery {
        if let Some(deadline) = deadline
            && self.sync.load(Ordering::Relaxed)
        {
            // Not longer than a transaction may wait before it is replaced: an unmined one is
            // then looked up (known: pending) and the receipt wait takes over.
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(self.replace_after);
            let call = self.provider.client().request::<_, TransactionReceipt>(
                "eth_sendRawTransactionSync",
                (alloy::hex::encode_prefixed(raw),),
            );
            match tokio::time::timeout(wait, call).await {
                Ok(Ok(receipt)) => return Delivery::Delivered(Some(receipt.status())),
                Ok(Err(error)) if is_unsupported(&error) => {
                    tracing::debug!(
                        chain_id = self.chain_id,
                        "the node has no eth_sendRawTransactionSync; polling receipts instead"
                    );
                    self.sync.store(false, Ordering::Relaxed);
                }
                // A node's timeout (EIP-7966 code 4) or any failure: look the transaction up.
                Ok(Err(error)) => return self.after_failed_send(hash, &error).await,
                Err(_elapsed) => return self.after_failed_send(hash, &RpcError::NullResp).await,
            }
        }
        match self.provider.send_raw_transaction(raw).await {
            Ok(_) => Delivery::Delivered(None),
            Err(error) => self.after_failed_send(hash, &error).await,
        }
    }

    /// A send answered `error`: the transaction may have reached the node anyway.
    async fn after_failed_send(
        &self,
        hash: B256,
        error: &RpcError<TransportErrorKind>,
    ) -> Delivery {
        if is_already_known(error) {
            tracing::debug!(%hash, "the node already has this transaction");
            return Delivery::Delivered(None);
        }
        match self.provider.get_transaction_by_hash(hash).await {
            Ok(Some(_)) => {
                tracing::debug!(
                    %hash,
                    error = %printable(&error.to_string(), MAX_MESSAGE_CHARS),
                    "send failed but the node knows the transaction: an earlier copy got through"
                );
                Delivery::Delivered(None)
            }
            Ok(None) if is_nonce_clash(error) => Delivery::NonceTaken(classify(error)),
            Ok(None) => Delivery::Failed(classify(error)),
            // The node cannot tell: signing again could send the transaction twice.
            Err(lookup) => {
                tracing::debug!(
                    %hash,
                    error = %printable(&lookup.to_string(), MAX_MESSAGE_CHARS),
                    "could not look the transaction up after a failed send"
                );
                Delivery::Failed(classify(error))
            }
        }
    }

    /// The node's pending nonce of our address.
    async fn pending_nonce(&self) -> Result<u64, SendError> {
        self.provider
            .get_transaction_count(self.address)
            .pending()
            .await
            .map_err(|e| classify(&e))
    }

    /// Sends ERC-20 `approve(spender, amount)` on `token`; returns the transaction hash.
    pub async fn approve(
        &self,
        token: Address,
        spender: Address,
        amount: U256,
    ) -> Result<B256, SendError> {
        let call = IERC20Approve::approveCall { spender, amount };
        self.send(
            TransactionRequest::default()
                .to(token)
                .input(call.abi_encode().into()),
        )
        .await
    }

    /// Polls for the receipt of `hash` or of any version that replaced it: the hash mined and
    /// `Some(status)` once mined, the latest version and `None` if `timeout` passed first. While
    /// waiting, a transaction of this key that is stuck is replaced (the `stuck` module).
    pub async fn wait_receipt(&self, hash: B256, timeout: Duration) -> (B256, ReceiptWait) {
        let deadline = Instant::now() + timeout;
        let found = crate::poll::poll_until(timeout, self.poll, || async move {
            let versions = self.versions(hash);
            let mut failure = None;
            for &version in &versions {
                match self.provider.get_transaction_receipt(version).await {
                    Ok(Some(receipt)) => {
                        self.mined(version);
                        return Some((version, Ok(Some(receipt.status()))));
                    }
                    Ok(None) => {}
                    Err(e) => failure = Some(e),
                }
            }
            let latest = versions.last().copied().unwrap_or(hash);
            match failure {
                // A flaky read is not a failed settlement: keep polling until the deadline.
                Some(e) if Instant::now() + self.poll < deadline => {
                    tracing::debug!(%hash, error = %e, "receipt poll failed, retrying");
                }
                Some(e) => {
                    return Some((latest, Err(printable(&e.to_string(), MAX_MESSAGE_CHARS))));
                }
                None => {}
            }
            if Instant::now() < deadline && self.unstick_due() {
                self.unstick().await;
            }
            None
        })
        .await;
        found.unwrap_or_else(|| {
            (
                self.versions(hash).last().copied().unwrap_or(hash),
                Ok(None),
            )
        })
    }
}

/// The least time a transaction goes without a receipt before it is replaced.
pub const MIN_REPLACE_AFTER: Duration = Duration::from_secs(1);

/// The first receipt check after a send: a loopback devnet has usually mined it by then.
pub use crate::poll::FIRST_POLL as FIRST_RECEIPT_POLL;

/// True when the node does not implement the method called ("method not found", -32601).
fn is_unsupported(error: &RpcError<TransportErrorKind>) -> bool {
    matches!(error, RpcError::ErrorResp(payload) if payload.code == -32601)
        || node_message_contains(
            error,
            &["method not found", "does not exist/is not available"],
        )
}

/// True when the node refused a send because the nonce is used, or in use by another
/// transaction of this key (which may still be ours: [`Sender::send`] looks it up first).
fn is_nonce_clash(error: &RpcError<TransportErrorKind>) -> bool {
    node_message_contains(error, NONCE_USED)
        || node_message_contains(
            error,
            &[
                "replacement transaction underpriced",
                "replacement underpriced",
            ],
        )
}

/// What nodes say when a nonce has been used already (lower case).
const NONCE_USED: &[&str] = &["nonce too low", "nonce has already been used"];

/// What nodes say when they already hold these very transaction bytes (lower case).
const ALREADY_KNOWN: &[&str] = &[
    "already known",
    "alreadyknown",
    "known transaction",
    "already imported",
];

/// Whether a node's message says its nonce was used already ("nonce too low", …).
pub fn says_nonce_used(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    NONCE_USED.iter().any(|needle| message.contains(needle))
}

/// Whether a node's message says it already holds this very transaction ("already known", …).
pub fn says_already_known(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ALREADY_KNOWN.iter().any(|needle| message.contains(needle))
}

/// True when the node refused a send because it already has this very transaction (same
/// hash): geth "already known", Besu "known transaction", OpenEthereum "already imported",
/// Nethermind "AlreadyKnown".
fn is_already_known(error: &RpcError<TransportErrorKind>) -> bool {
    node_message_contains(error, ALREADY_KNOWN)
}

/// True when `error` is a node's answer whose message contains one of `needles` (lowercase).
fn node_message_contains(error: &RpcError<TransportErrorKind>, needles: &[&str]) -> bool {
    match error {
        RpcError::ErrorResp(payload) => {
            let message = payload.message.to_ascii_lowercase();
            needles.iter().any(|needle| message.contains(needle))
        }
        _ => false,
    }
}

fn classify(error: &RpcError<TransportErrorKind>) -> SendError {
    match error {
        RpcError::ErrorResp(payload) => SendError::Rejected {
            message: printable(&payload.message, MAX_MESSAGE_CHARS),
            revert: payload
                .as_revert_data()
                .map(|d| d.to_vec())
                .unwrap_or_default(),
        },
        other => SendError::Infra(printable(&other.to_string(), MAX_MESSAGE_CHARS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::rpc::json_rpc::ErrorPayload;

    fn rejected(message: &str) -> RpcError<TransportErrorKind> {
        RpcError::ErrorResp(ErrorPayload {
            code: -32000,
            message: message.to_owned().into(),
            data: None,
        })
    }

    #[test]
    fn node_messages_are_escaped_and_truncated() {
        let SendError::Rejected { message, .. } = classify(&rejected(
            "execution reverted: \u{1b}[2Jgot you\r\n\u{202e}txet",
        )) else {
            panic!("not a rejection");
        };
        assert_eq!(
            message,
            "execution reverted: \\u{1b}[2Jgot you\\r\\n\\u{202e}txet"
        );
        let SendError::Rejected { message, .. } = classify(&rejected(&"x".repeat(5000))) else {
            panic!("not a rejection");
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
        assert_eq!(
            printable("insufficient funds \"quoted\"", 100),
            "insufficient funds \"quoted\""
        );
    }

    #[test]
    fn nonce_clashes_and_known_transactions() {
        for clash in [
            "nonce too low",
            "Nonce too low: next nonce 5, tx nonce 4",
            "nonce has already been used",
            "replacement transaction underpriced",
        ] {
            assert!(is_nonce_clash(&rejected(clash)), "{clash}");
            assert!(!is_already_known(&rejected(clash)), "{clash}");
        }
        // The node has these very bytes: a success, never a reason to sign again.
        for known in [
            "already known",
            "AlreadyKnown",
            "Known transaction",
            "Transaction with the same hash was already imported.",
        ] {
            assert!(is_already_known(&rejected(known)), "{known}");
            assert!(!is_nonce_clash(&rejected(known)), "{known}");
        }
        assert!(!is_nonce_clash(&rejected("insufficient funds for gas")));
        assert!(!is_already_known(&rejected("insufficient funds for gas")));
        assert!(!is_nonce_clash(&RpcError::NullResp));
        assert!(!is_unsupported(&rejected("nonce too low")));
        assert!(is_unsupported(&rejected(
            "the method eth_sendRawTransactionSync does not exist/is not available"
        )));
        assert!(is_unsupported(&RpcError::ErrorResp(ErrorPayload {
            code: -32601,
            message: "unknown".into(),
            data: None,
        })));
        assert!(!is_already_known(&RpcError::NullResp));
    }
}
