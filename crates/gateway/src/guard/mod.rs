//! The double-serve guard: one payment identity `(chain, asset, payer, nonce)` is served at most
//! once.
//!
//! While a paid request runs, its identity is *claimed*: a concurrent replay of the same header
//! is refused before it reaches the facilitator or the upstream. What happens to the payment is
//! recorded durably before the paid response is released (`settling`, then `settled` or
//! `unsettled`), so a replay after a restart is refused too. Rows are kept until the
//! authorization expires, after which it can no longer be settled by anyone and is pruned. The
//! claims also sum what each payer has authorized and not yet settled (the exposure check).
//!
//! Two stores keep this, behind one API:
//!
//! - [`sqlite`] (the embedded default): claims in the process's memory, the record in an SQLite
//!   file locked by that one process, writes group-committed.
//! - [`postgres`] (gateway replicas, docs/design/kubernetes.md): claims and records are rows
//!   of one PostgreSQL database shared by every replica, a claim taken in one transaction under
//!   a per-payer lock, with a lease so a replica that dies does not hold a payment for ever.

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use obol_facilitator::PaymentIdentity;
use obol_x402::primitives::{Address, B256, U256};

/// Why the guard could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("payment guard store: {0}")]
pub struct GuardError(String);

impl From<rusqlite::Error> for GuardError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// Why a payment may not be served now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The same payment is being served right now.
    InFlight,
    /// The payment was already settled (transaction hash).
    Settled(String),
    /// The payer's nonce is held by an authorization with other terms.
    OtherTerms,
    /// The store cannot be read now (a shared database down): nothing is served unchecked.
    Unavailable(String),
}

/// Whose money a payment moves: verified-but-unsettled amounts are summed per account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Account {
    /// EVM chain id.
    pub chain_id: u64,
    /// Token contract.
    pub asset: Address,
    /// Payer.
    pub payer: Address,
}

impl From<&PaymentIdentity> for Account {
    fn from(id: &PaymentIdentity) -> Self {
        Self {
            chain_id: id.chain_id,
            asset: id.asset,
            payer: id.payer,
        }
    }
}

/// A granted claim.
#[derive(Debug)]
pub struct Claim {
    /// Holds the payment for this request.
    pub ticket: Ticket,
    /// What the same payer had already authorized and not yet settled, before this one.
    pub reserved_before: U256,
    /// `Some(transaction)` when this very payment was taken before and its settlement is
    /// pending or unknown (the transaction is empty when unknown): ask the facilitator again
    /// instead of verifying it as new.
    pub unsettled: Option<String>,
}

/// A payment as the guard recorded it ([`ReplayGuard::receipt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// EVM chain id.
    pub chain_id: u64,
    /// Payer.
    pub payer: Address,
    /// Settled (else its settlement is under way, pending or unknown).
    pub settled: bool,
    /// The transaction (may be empty while unknown).
    pub transaction: String,
    /// What was charged, when the settlement said (a metered payment's actual amount).
    pub amount: Option<U256>,
}

impl Recorded {
    /// A record as both stores read it: chain id, payer bytes, state, transaction, amount.
    fn from_columns(
        chain_id: i64,
        payer: &[u8],
        state: &str,
        transaction: String,
        amount: Option<String>,
    ) -> Self {
        Self {
            chain_id: u64::try_from(chain_id).unwrap_or_default(),
            payer: Address::try_from(payer).unwrap_or_default(),
            settled: state == State::Settled.as_str(),
            transaction,
            amount: amount.and_then(|a| a.parse().ok()),
        }
    }
}

/// Payments taken whose settlement is pending or its outcome unknown ([`ReplayGuard::pending`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// Still settleable (their authorization has not expired).
    pub unsettled: u64,
    /// Expired unsettled: nobody can settle them any more (pruned at the next start).
    pub expired: u64,
    /// The earliest expiry of the settleable ones (unix seconds).
    pub next_expiry: Option<u64>,
}

/// A recorded payment's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A settlement may be under way, is pending or its outcome unknown.
    Unsettled,
    /// Settled.
    Settled,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unsettled => "unsettled",
            Self::Settled => "settled",
        }
    }
}

/// One durable record of a claimed payment.
#[derive(Debug, Clone, Copy)]
struct Record<'a> {
    state: State,
    tx: &'a str,
    /// What was charged, when the receipt said.
    amount: Option<U256>,
    expires_at: u64,
    /// The record ends the claim (the ticket is consumed): a shared store clears the claim and
    /// its reservation in the same write, so the end is seen at once by every replica.
    ends_claim: bool,
}

/// What a store granted for one claim.
#[derive(Debug)]
struct Granted {
    reserved_before: U256,
    unsettled: Option<String>,
    /// Tells this claim from a later one on the same payment (the shared store's lease).
    token: i64,
}

/// A claimed payment, as the stores see it.
#[derive(Debug, Clone, Copy)]
struct Claimed<'a> {
    id: &'a PaymentIdentity,
    digest: B256,
    amount: U256,
    token: i64,
}

/// What the guard keeps, and where: [`sqlite::SqliteStore`] or [`postgres::PgStore`].
#[async_trait]
trait Store: Send + Sync + std::fmt::Debug {
    /// Claims a payment (the record checked, the claim taken, the payer's reservations summed);
    /// the claim lasts at most until `lease_until` (unix seconds).
    async fn claim(
        &self,
        id: &PaymentIdentity,
        digest: B256,
        amount: U256,
        lease_until: u64,
    ) -> Result<Granted, Refusal>;
    /// Ends a claim and its reservation (from a drop: must not wait on I/O). `ended`: a write
    /// of this claim already ended it in the store (a record that ends the claim, or a
    /// forget), so only what the process holds is left to clear.
    fn release(&self, claimed: Claimed<'_>, ended: bool);
    /// Records what happened to a claimed payment.
    async fn record(&self, claimed: Claimed<'_>, record: Record<'_>) -> Result<(), GuardError>;
    /// Forgets the record of a claimed payment and ends the claim: as if never taken.
    async fn forget(&self, claimed: Claimed<'_>) -> Result<(), GuardError>;
    /// The record of the payment with authorization nonce `nonce` (one payer's).
    async fn receipt(&self, nonce: B256) -> Option<Recorded>;
    /// Adds a settled metered call to offer `namespace/name`'s usage.
    async fn add_usage(
        &self,
        namespace: &str,
        name: &str,
        charge: &crate::metering::Charge,
    ) -> Result<(), GuardError>;
    /// Offer `namespace/name`'s metered usage.
    async fn usage(&self, namespace: &str, name: &str) -> Option<crate::metering::MeteredUsage>;
    /// The amount `account` has authorized in claimed payments not yet settled.
    async fn outstanding(&self, account: &Account) -> U256;
    /// The recorded payments whose settlement is pending or unknown, as of `now`.
    async fn pending(&self, now: u64) -> Result<Pending, GuardError>;
    /// Copies the record online into the new file `dest` and returns its schema version;
    /// `None` when the record is not an SQLite file (PostgreSQL: `pg_dump` backs it up).
    fn backup_to(&self, _dest: &std::path::Path) -> Result<Option<i64>, GuardError> {
        Ok(None)
    }
}

/// The schema version of the SQLite record this code writes (`PRAGMA user_version`).
pub const SQLITE_SCHEMA_VERSION: i64 = sqlite::SCHEMA_VERSION;

/// In-flight claims, per-payer exposure, and the durable record of taken payments.
#[derive(Debug)]
pub struct ReplayGuard {
    store: Box<dyn Store>,
}

impl ReplayGuard {
    /// Opens (or creates) the SQLite store at `path`: 0600 in a 0700 directory, whatever the
    /// umask, locked by this process.
    pub fn open(path: &std::path::Path) -> Result<Self, GuardError> {
        Ok(Self {
            store: Box::new(sqlite::SqliteStore::open(path)?),
        })
    }

    /// An SQLite store that lives only in memory (tests, throwaway gateways).
    pub fn in_memory() -> Result<Self, GuardError> {
        Ok(Self {
            store: Box::new(sqlite::SqliteStore::in_memory()?),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`), shared by
    /// every gateway replica, creating its tables when missing.
    pub async fn postgres(url: &str) -> Result<Self, GuardError> {
        Ok(Self {
            store: Box::new(postgres::PgStore::connect(url).await?),
        })
    }

    /// Claims `id` (the payment whose signed terms hash to `digest`, moving `amount`, valid
    /// until `expires_at`) for one request. The returned [`Ticket`] releases the claim and its
    /// reservation when dropped; what it recorded ([`Ticket::settled`], [`Ticket::unsettled`])
    /// stays.
    pub async fn claim(
        self: &Arc<Self>,
        id: PaymentIdentity,
        digest: B256,
        amount: U256,
        expires_at: u64,
    ) -> Result<Claim, Refusal> {
        let granted = self.store.claim(&id, digest, amount, expires_at).await?;
        Ok(Claim {
            ticket: Ticket {
                guard: Arc::clone(self),
                id,
                digest,
                amount,
                token: granted.token,
                ended: false,
            },
            reserved_before: granted.reserved_before,
            unsettled: granted.unsettled,
        })
    }

    /// Adds a settled metered call of offer `namespace/name` to what the offer's calls used
    /// and were charged.
    pub async fn add_usage(
        &self,
        namespace: &str,
        name: &str,
        charge: &crate::metering::Charge,
    ) -> Result<(), GuardError> {
        self.store.add_usage(namespace, name, charge).await
    }

    /// What offer `namespace/name`'s metered calls used and were charged, if it had any.
    pub async fn usage(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<crate::metering::MeteredUsage> {
        self.store.usage(namespace, name).await
    }

    /// What is recorded of the payment with authorization nonce `nonce` (one payer's: a nonce
    /// two payers used is answered for neither).
    pub async fn receipt(&self, nonce: B256) -> Option<Recorded> {
        self.store.receipt(nonce).await
    }

    /// The amount `account` has authorized in payments being served and not yet settled.
    pub async fn outstanding(&self, account: &Account) -> U256 {
        self.store.outstanding(account).await
    }

    /// The recorded payments whose settlement is pending or its outcome unknown (`obol
    /// doctor`): a settlement under way counts too, for the moment it runs.
    pub async fn pending(&self) -> Result<Pending, GuardError> {
        self.store.pending(obol_config::time::unix_now()).await
    }

    /// Copies the record, online and consistent, into the new file `dest` (SQLite's backup
    /// API; the guard's writes wait for the copy) and returns the copy's schema version; `None`
    /// on PostgreSQL, whose database `pg_dump` backs up.
    pub fn backup_to(&self, dest: &std::path::Path) -> Result<Option<i64>, GuardError> {
        self.store.backup_to(dest)
    }
}

/// A claim on one payment for the lifetime of one request.
#[derive(Debug)]
pub struct Ticket {
    guard: Arc<ReplayGuard>,
    id: PaymentIdentity,
    digest: B256,
    amount: U256,
    token: i64,
    /// A write already ended this claim in the store: the drop has nothing to clear there.
    ended: bool,
}

impl Ticket {
    /// The claimed identity.
    pub fn id(&self) -> &PaymentIdentity {
        &self.id
    }

    fn claimed(&self) -> Claimed<'_> {
        Claimed {
            id: &self.id,
            digest: self.digest,
            amount: self.amount,
            token: self.token,
        }
    }

    async fn record(&self, record: Record<'_>) -> Result<(), GuardError> {
        self.guard.store.record(self.claimed(), record).await
    }

    /// Records `record`, which ends the claim, as the ticket's last write.
    async fn finish(mut self, record: Record<'_>) -> Result<(), GuardError> {
        let recorded = self.record(record).await;
        self.ended = recorded.is_ok();
        recorded
    }

    /// Records the settlement durably (before the paid response is released), with what it
    /// charged when the receipt said, then releases the claim: the payment is never served
    /// again.
    pub async fn settled(
        self,
        tx: &str,
        amount: Option<U256>,
        expires_at: u64,
    ) -> Result<(), GuardError> {
        let state = State::Settled;
        self.finish(Record {
            state,
            tx,
            amount,
            expires_at,
            ends_claim: true,
        })
        .await
    }

    /// Records, before the facilitator is asked to settle, that a settlement may be under way:
    /// if the process dies before the answer, the payment comes back after a restart as
    /// `unsettled` (its settlement is asked for again), never as new.
    pub async fn settling(&self, expires_at: u64) -> Result<(), GuardError> {
        let state = State::Unsettled;
        self.record(Record {
            state,
            tx: "",
            amount: None,
            expires_at,
            ends_claim: false,
        })
        .await
    }

    /// Forgets what [`Ticket::settling`] wrote, once the settlement was refused and nothing was
    /// delivered: the payment is free again, as if never taken.
    pub async fn released(mut self) -> Result<(), GuardError> {
        let forgot = self.guard.store.forget(self.claimed()).await;
        self.ended = forgot.is_ok();
        forgot
    }

    /// Records that the settlement is pending (`tx`) or its outcome unknown (`tx` empty): the
    /// payment is never taken as new again, but the same payment, sent again, is settled
    /// (idempotently) and served.
    pub async fn unsettled(self, tx: &str, expires_at: u64) -> Result<(), GuardError> {
        let state = State::Unsettled;
        self.finish(Record {
            state,
            tx,
            amount: None,
            expires_at,
            ends_claim: true,
        })
        .await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.guard.store.release(self.claimed(), self.ended);
    }
}
