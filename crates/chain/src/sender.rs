//! Sending settlement transactions from one signer.
//!
//! Nonces are assigned locally under a lock held only while the transaction is filled, signed
//! and handed to the node, so many settlements can be in flight at once without colliding; any
//! send error forgets the counter and the next send asks the node again. Receipts are polled on
//! the client's interval (25 ms on a loopback devnet) up to a deadline.

use std::time::{Duration, Instant};

use crate::ChainClient;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::fillers::{ChainIdFiller, GasFiller};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall as _;
use alloy::transports::{RpcError, TransportErrorKind};
use obol_x402::LocalSigner;
use tokio::sync::Mutex;

alloy::sol! {
    interface IERC20Approve {
        function approve(address spender, uint256 amount) external returns (bool);
    }
}

/// Why a transaction was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The node answered and refused it (typically: gas estimation reverted).
    #[error("the node refused the transaction: {message}")]
    Rejected {
        /// The node's message.
        message: String,
        /// The revert data, when the node returned any.
        revert: Vec<u8>,
    },
    /// The node could not be reached or failed.
    #[error("the node could not be reached: {0}")]
    Infra(String),
}

/// Sends transactions from one key with locally assigned nonces.
pub struct Sender {
    address: Address,
    provider: DynProvider,
    poll: Duration,
    next_nonce: Mutex<Option<u64>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender on `client`'s endpoints (writes need an endpoint with `allowWrites`).
    pub fn new(client: &ChainClient, signer: &LocalSigner) -> Self {
        let address = signer.address();
        let rpc = client.rpc_client();
        let poll = rpc.poll_interval();
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .filler(GasFiller::default())
            .filler(ChainIdFiller::new(Some(client.chain_id())))
            .wallet(EthereumWallet::from(signer.as_alloy().clone()))
            .connect_client(rpc)
            .erased();
        Self {
            address,
            provider,
            poll,
            next_nonce: Mutex::new(None),
        }
    }

    /// The address paying gas.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Fills, signs and broadcasts `tx`; returns its hash.
    pub async fn send(&self, tx: TransactionRequest) -> Result<B256, SendError> {
        let mut next = self.next_nonce.lock().await;
        let nonce = match *next {
            Some(nonce) => nonce,
            None => self
                .provider
                .get_transaction_count(self.address)
                .pending()
                .await
                .map_err(|e| classify(&e))?,
        };
        let tx = tx.from(self.address).nonce(nonce);
        match self.provider.send_transaction(tx).await {
            Ok(pending) => {
                *next = Some(nonce + 1);
                Ok(*pending.tx_hash())
            }
            Err(e) => {
                *next = None;
                Err(classify(&e))
            }
        }
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

    /// Polls for the receipt: `Some(status)` once mined, `None` if `timeout` passed first.
    pub async fn wait_receipt(
        &self,
        hash: B256,
        timeout: Duration,
    ) -> Result<Option<bool>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.provider.get_transaction_receipt(hash).await {
                Ok(Some(receipt)) => return Ok(Some(receipt.status())),
                Ok(None) => {}
                // A flaky read is not a failed settlement: keep polling until the deadline.
                Err(e) if Instant::now() + self.poll < deadline => {
                    tracing::debug!(%hash, error = %e, "receipt poll failed, retrying");
                }
                Err(e) => return Err(e.to_string()),
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

fn classify(error: &RpcError<TransportErrorKind>) -> SendError {
    match error {
        RpcError::ErrorResp(payload) => SendError::Rejected {
            message: payload.message.to_string(),
            revert: payload
                .as_revert_data()
                .map(|d| d.to_vec())
                .unwrap_or_default(),
        },
        other => SendError::Infra(other.to_string()),
    }
}
