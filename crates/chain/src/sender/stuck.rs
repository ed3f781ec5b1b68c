//! Transactions that do not get mined: replaced with higher fees, and the head of the key's
//! queue re-sent when the node lost it.
//!
//! Every transaction the [`Sender`] hands to the node without seeing it mined is remembered
//! ([`InFlight`]: its nonce, its estimated request and every signed version). While someone
//! waits for a receipt ([`Sender::wait_receipt`]), each version is looked for; once the
//! transaction holding the key's next nonce on chain (the *head*: everything after it waits for
//! it) has gone [`Sender::with_replace_after`]'s delay without a receipt, it is signed again with the same
//! nonce and fees raised by at least 12.5 % (what nodes require of a replacement) or to the
//! node's current estimate, whichever is higher, and sent. Whichever version is mined is the
//! answer, so a settlement's hash follows its replacement. The same step re-sends a head the
//! node dropped (a gap: the node no longer knows any version, and every later nonce waits;
//! anvil, for one, drops a transaction once the base fee passes its fee cap). Transactions
//! behind the head are never replaced: their wait counts from when they become the head.
//!
//! Limits: a transaction is replaced at most [`MAX_REPLACEMENTS`] times, and only while
//! someone waits for a receipt of this key. What is remembered lives in memory: after a restart
//! a pending settlement is waited for by its hash only.

use std::sync::PoisonError;
use std::time::Instant;

use alloy::primitives::B256;
use alloy::providers::Provider as _;
use alloy::rpc::types::TransactionRequest;
use obol_config::text::printable;

use super::{Delivery, MAX_MESSAGE_CHARS, Sender};

/// How many times one transaction is signed again with higher fees before the sender stops
/// trying (it is then left to the node, and its waiters time out as pending).
pub const MAX_REPLACEMENTS: usize = 5;

/// The most transactions remembered per key; the oldest is forgotten beyond it.
const CAPACITY: usize = 4096;

/// A transaction handed to the node and not yet seen mined.
#[derive(Debug)]
pub(super) struct InFlight {
    nonce: u64,
    /// The estimated request (gas, fees), without its nonce.
    tx: TransactionRequest,
    /// Every signed version, the latest last.
    hashes: Vec<B256>,
    /// When the latest version was sent (or last tried).
    sent: Instant,
}

/// `fee` raised by 12.5 %, rounded up: the least a node takes as a replacement.
fn bumped(fee: u128) -> u128 {
    fee.saturating_add(fee.div_ceil(8))
        .max(fee.saturating_add(1))
}

impl Sender {
    /// Remembers `hash` (nonce `nonce`, estimated request `tx`) as sent and not yet mined.
    pub(super) fn track(&self, nonce: u64, tx: TransactionRequest, hash: B256) {
        let mut in_flight = self.in_flight();
        if let Some(known) = in_flight.iter_mut().find(|f| f.nonce == nonce) {
            // The nonce was taken over (re-signed after a clash): the newer transaction counts.
            *known = InFlight {
                nonce,
                tx,
                hashes: vec![hash],
                sent: Instant::now(),
            };
            return;
        }
        if in_flight.len() >= CAPACITY {
            in_flight.remove(0);
        }
        in_flight.push(InFlight {
            nonce,
            tx,
            hashes: vec![hash],
            sent: Instant::now(),
        });
    }

    /// Whether `hash` is a version of a transaction this sender sent and has not seen mined.
    pub fn tracks(&self, hash: B256) -> bool {
        self.in_flight().iter().any(|f| f.hashes.contains(&hash))
    }

    /// Every version of the transaction `hash` belongs to (just `hash` when it is not tracked).
    pub(super) fn versions(&self, hash: B256) -> Vec<B256> {
        self.in_flight()
            .iter()
            .find(|f| f.hashes.contains(&hash))
            .map_or_else(|| vec![hash], |f| f.hashes.clone())
    }

    /// Forgets the transaction `hash` belongs to (mined).
    pub(super) fn mined(&self, hash: B256) {
        self.in_flight().retain(|f| !f.hashes.contains(&hash));
    }

    /// Whether a remembered transaction is overdue and the last look for a stuck head was long
    /// enough ago (a quarter of [`Sender::with_replace_after`]'s delay): then [`Sender::unstick`]
    /// is worth its RPC.
    pub(super) fn unstick_due(&self) -> bool {
        let overdue = self
            .in_flight()
            .iter()
            .any(|f| f.sent.elapsed() >= self.replace_after);
        let mut last = self
            .last_unstick
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !overdue || last.is_some_and(|at| at.elapsed() < self.replace_after / 4) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// The step described in the module documentation: replaces (or re-sends) the head of this
    /// key's queue when it is overdue. At most one caller runs it at a time; the others skip.
    pub(super) async fn unstick(&self) {
        let Ok(_running) = self.unsticking.try_lock() else {
            return;
        };
        let head = match self
            .provider
            .get_transaction_count(self.address)
            .latest()
            .await
        {
            Ok(nonce) => nonce,
            Err(error) => {
                tracing::debug!(
                    address = %self.address,
                    error = %printable(&error.to_string(), MAX_MESSAGE_CHARS),
                    "could not read the mined nonce to look for a stuck transaction"
                );
                return;
            }
        };
        let due = {
            let mut in_flight = self.in_flight();
            // Below the head, every nonce is mined (by one of our versions or another transaction).
            in_flight.retain(|f| f.nonce >= head);
            // Behind the head, nothing can be mined before it: their wait counts from now.
            let now = Instant::now();
            for queued in in_flight.iter_mut().filter(|f| f.nonce > head) {
                queued.sent = now;
            }
            in_flight
                .iter()
                .find(|f| f.nonce == head)
                .filter(|f| {
                    f.sent.elapsed() >= self.replace_after && f.hashes.len() <= MAX_REPLACEMENTS
                })
                .map(|f| (f.tx.clone(), f.hashes.len()))
        };
        let Some((tx, versions)) = due else { return };
        let tx = self.raised_fees(tx).await;
        let outcome = match self.sign(tx.clone(), head).await {
            Ok((hash, raw)) => match self.deliver(hash, &raw, None).await {
                Delivery::Delivered(_) => Ok(hash),
                Delivery::NonceTaken(e) | Delivery::Failed(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let mut in_flight = self.in_flight();
        let Some(entry) = in_flight.iter_mut().find(|f| f.nonce == head) else {
            return;
        };
        entry.sent = Instant::now();
        match outcome {
            Ok(hash) => {
                tracing::info!(
                    address = %self.address,
                    nonce = head,
                    replaces = %entry.hashes.last().copied().unwrap_or_default(),
                    by = %hash,
                    version = versions + 1,
                    "a transaction was not mined in time; sent again with higher fees"
                );
                entry.tx = tx;
                entry.hashes.push(hash);
            }
            Err(error) => {
                // "Nonce too low": a version was mined meanwhile; the next receipt poll sees it.
                tracing::debug!(address = %self.address, nonce = head, %error, "replacement not sent");
            }
        }
    }

    /// `tx` with both fees raised by 12.5 %, or to the node's estimate when that is higher.
    async fn raised_fees(&self, tx: TransactionRequest) -> TransactionRequest {
        let (old_max, old_tip) = (
            tx.max_fee_per_gas.unwrap_or_default(),
            tx.max_priority_fee_per_gas.unwrap_or_default(),
        );
        let (mut max, mut tip) = (bumped(old_max), bumped(old_tip));
        if let Ok(estimate) = self.provider.estimate_eip1559_fees().await {
            max = max.max(estimate.max_fee_per_gas);
            tip = tip.max(estimate.max_priority_fee_per_gas);
        }
        tx.max_fee_per_gas(max.max(tip))
            .max_priority_fee_per_gas(tip)
    }
}

#[cfg(test)]
mod tests {
    use super::bumped;

    #[test]
    fn a_replacement_pays_at_least_an_eighth_more() {
        assert_eq!(bumped(0), 1);
        assert_eq!(bumped(1), 2);
        assert_eq!(bumped(8), 9);
        assert_eq!(bumped(9), 11);
        assert_eq!(bumped(1_000_000_000), 1_125_000_000);
        assert_eq!(bumped(u128::MAX), u128::MAX);
    }
}
