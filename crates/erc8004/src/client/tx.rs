//! Transactions: filled (pending nonce, estimated gas plus a margin, EIP-1559 fees, chain id)
//! and signed locally, then sent as raw bytes until mined: a transient failure resends the very
//! same bytes, after looking for our receipt and, for a registration, a matching `Registered`
//! log; "already known" counts as sent, "nonce too low" as a nonce already mined (maybe ours).

use std::time::{Duration, Instant};

use alloy::eips::Encodable2718 as _;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder as _, TransactionBuilder as _};
use alloy::primitives::{Address, B256};
use alloy::providers::Provider as _;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::transports::RpcError;
use obol_chain::sender::{
    says_already_known as is_already_known, says_nonce_used as is_nonce_used,
};

use super::{IdentityClient, Registration, rpc_error};
use crate::{Erc8004Error, printable};

/// Gas estimate margin, in percent.
const GAS_MARGIN_PERCENT: u64 = 20;
/// How long a transaction whose nonce is already used may take to show its receipt before we
/// conclude another transaction took the nonce.
const NONCE_USED_WAIT: Duration = Duration::from_secs(15);

/// How a send went: accepted (or an earlier copy was), or our nonce is already mined.
enum SendOutcome {
    Sent,
    NonceUsed,
}

/// What a registration retry looks for in the logs.
pub(super) struct Lookup<'a> {
    pub(super) owner: Address,
    pub(super) uri: &'a str,
    pub(super) from: u64,
}

/// A sent transaction's fate.
pub(super) enum Mined {
    /// Its receipt.
    Receipt(Box<TransactionReceipt>),
    /// A registration found without a confirmed send.
    Recovered(Registration),
}

impl IdentityClient {
    /// Signs, sends (same bytes on retry) and waits for a mined, successful receipt.
    pub(super) async fn transact(
        &self,
        op: &'static str,
        input: Vec<u8>,
    ) -> Result<B256, Erc8004Error> {
        let (from, wallet) = self.signer.as_ref().ok_or(Erc8004Error::NoSigner { op })?;
        let (tx_hash, raw) = self.sign(op, *from, wallet, input).await?;
        match self.send_until_mined(op, tx_hash, &raw, None).await? {
            Mined::Receipt(receipt) if !receipt.status() => {
                Err(Erc8004Error::Reverted { op, tx_hash })
            }
            Mined::Receipt(_) | Mined::Recovered(_) => Ok(tx_hash),
        }
    }

    /// Sends signed bytes until they are accepted (the same bytes on every transient failure,
    /// at most [`ClientOptions::attempts`] times) and waits for the receipt. Before each retry,
    /// and before giving up, it looks for our receipt and, for a registration, for a matching
    /// `Registered` log.
    ///
    /// [`ClientOptions::attempts`]: super::ClientOptions::attempts
    pub(super) async fn send_until_mined(
        &self,
        op: &'static str,
        tx_hash: B256,
        raw: &[u8],
        lookup: Option<Lookup<'_>>,
    ) -> Result<Mined, Erc8004Error> {
        let mut attempt = 1;
        loop {
            match self.send_raw(op, raw).await {
                Ok(SendOutcome::Sent) => {
                    return self
                        .wait_receipt(op, tx_hash, self.options.receipt_timeout)
                        .await
                        .map(|r| Mined::Receipt(Box::new(r)));
                }
                Ok(SendOutcome::NonceUsed) => {
                    let wait = self.options.receipt_timeout.min(NONCE_USED_WAIT);
                    return match self.wait_receipt(op, tx_hash, wait).await {
                        Ok(receipt) => Ok(Mined::Receipt(Box::new(receipt))),
                        Err(Erc8004Error::Timeout { .. }) => {
                            Err(Erc8004Error::NonceTaken { op, tx_hash })
                        }
                        Err(e) => Err(e),
                    };
                }
                Err(error) if error.is_transient() => {
                    if let Some(mined) = self.already_mined(tx_hash, lookup.as_ref()).await {
                        return Ok(mined);
                    }
                    if attempt >= self.options.attempts {
                        return Err(error);
                    }
                    tracing::warn!(%tx_hash, attempt, error = %error, "{op} send failed; retrying the same transaction");
                    tokio::time::sleep(self.options.backoff * attempt).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Our transaction's receipt, else (for a registration) a matching `Registered` log. Read
    /// errors count as "not found": the node is flaky right now.
    async fn already_mined(&self, tx_hash: B256, lookup: Option<&Lookup<'_>>) -> Option<Mined> {
        if let Ok(Some(receipt)) = self.chain.provider().get_transaction_receipt(tx_hash).await {
            return Some(match self.registration_from(&receipt, true) {
                Ok(found) if lookup.is_some() => Mined::Recovered(found),
                _ => Mined::Receipt(Box::new(receipt)),
            });
        }
        let lookup = lookup?;
        match self
            .find_registration(lookup.owner, lookup.uri, lookup.from)
            .await
        {
            Ok(found) => found.map(Mined::Recovered),
            Err(e) => {
                tracing::debug!(error = %e, "recovery scan failed");
                None
            }
        }
    }

    /// Fills (pending nonce, gas + margin, EIP-1559 fees, chain id) and signs a call to the
    /// registry. A call the registry would revert fails here, before anything is sent.
    pub(super) async fn sign(
        &self,
        op: &'static str,
        from: Address,
        wallet: &EthereumWallet,
        input: Vec<u8>,
    ) -> Result<(B256, Vec<u8>), Erc8004Error> {
        let provider = self.chain.provider();
        let mut tx = TransactionRequest::default()
            .with_from(from)
            .with_to(self.registry.address)
            .with_input(input)
            .with_chain_id(self.registry.chain_id);
        let gas = provider
            .estimate_gas(tx.clone())
            .await
            .map_err(|e| rpc_error(op, &e))?;
        let fees = provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| rpc_error(op, &e))?;
        let nonce = provider
            .get_transaction_count(from)
            .pending()
            .await
            .map_err(|e| rpc_error(op, &e))?;
        tx = tx
            .with_nonce(nonce)
            .with_gas_limit(gas.saturating_add(gas * GAS_MARGIN_PERCENT / 100))
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = tx.build(wallet).await.map_err(|e| Erc8004Error::Rpc {
            op,
            message: format!("cannot sign the transaction: {e}"),
            transient: false,
        })?;
        Ok((*envelope.tx_hash(), envelope.encoded_2718()))
    }

    /// One send of signed bytes. "Already known" counts as sent; "nonce too low" means a
    /// transaction with our nonce is mined (maybe ours).
    async fn send_raw(&self, op: &'static str, raw: &[u8]) -> Result<SendOutcome, Erc8004Error> {
        match self.chain.provider().send_raw_transaction(raw).await {
            Ok(_) => Ok(SendOutcome::Sent),
            Err(RpcError::ErrorResp(payload)) if is_already_known(&payload.message) => {
                Ok(SendOutcome::Sent)
            }
            Err(RpcError::ErrorResp(payload)) if is_nonce_used(&payload.message) => {
                Ok(SendOutcome::NonceUsed)
            }
            Err(e) => Err(rpc_error(op, &e)),
        }
    }

    /// Polls for the receipt until `timeout` ([`obol_chain::poll::poll_until`]).
    async fn wait_receipt(
        &self,
        op: &'static str,
        tx_hash: B256,
        timeout: Duration,
    ) -> Result<TransactionReceipt, Erc8004Error> {
        let started = Instant::now();
        let provider = self.chain.provider();
        obol_chain::poll::poll_until(timeout, self.poll, || async move {
            match provider.get_transaction_receipt(tx_hash).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::debug!(%tx_hash, error = %printable(&e.to_string(), 200), "receipt poll failed, retrying");
                    None
                }
            }
        })
        .await
        .ok_or_else(|| Erc8004Error::Timeout {
            op,
            tx_hash,
            waited: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_that_mean_sent() {
        assert!(is_already_known("already known"));
        assert!(is_already_known("transaction already imported"));
        assert!(is_nonce_used("nonce too low"));
        assert!(!is_nonce_used("insufficient funds"));
    }
}
