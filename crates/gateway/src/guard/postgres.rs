//! The shared guard store: one PostgreSQL database for every gateway replica
//! (docs/design/kubernetes.md, "Money invariants across replicas").
//!
//! A payment is one row of `guard_payments`. Its durable `state` (`claimed` while only a claim
//! exists, `unsettled`, `settled`) is independent of its live claim (`claim_token`,
//! `claimed_until`, `reserved`): a claim is taken in one transaction under a per-payer advisory
//! lock (so two replicas cannot both reserve the last of a payer's balance, nor both claim one
//! payment), and lasts until it is released or its lease ends (the authorization's expiry: a
//! replica that dies stops holding the payment when it could no longer be settled anyway).
//! Amounts are `NUMERIC(78, 0)` (any uint256), passed as text.
//!
//! Round trips are the cost on the paid path: every statement is prepared once per connection
//! (not parsed and planned again per call), the claim's lock and its look at the payment and
//! the payer's reservations go out together (4 round trips with `BEGIN` and `COMMIT`), and a
//! claim its last record already ended is not released again (docs/performance.md).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use obol_config::time::unix_now;
use obol_facilitator::PaymentIdentity;
use obol_x402::primitives::{B256, U256};
use sha2::Digest as _;
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use super::{
    Account, Claimed, Granted, GuardError, Pending, Record, Recorded, Refusal, State, Store,
};

/// The schema this program writes; a database marked newer is refused.
const SCHEMA_VERSION: i32 = 1;

/// Tables, created when missing ([`crate::pg::connect`]).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS guard_payments (
    chain_id      BIGINT        NOT NULL,
    asset         BYTEA         NOT NULL,
    payer         BYTEA         NOT NULL,
    nonce         BYTEA         NOT NULL,
    state         TEXT          NOT NULL,
    tx            TEXT          NOT NULL DEFAULT '',
    amount        TEXT,
    digest        BYTEA,
    claim_token   BIGINT,
    claimed_until BIGINT,
    reserved      NUMERIC(78,0) NOT NULL DEFAULT 0,
    expires_at    BIGINT        NOT NULL,
    settled_at    BIGINT        NOT NULL,
    PRIMARY KEY (chain_id, asset, payer, nonce)
);
CREATE INDEX IF NOT EXISTS guard_payments_nonce ON guard_payments (nonce);
CREATE INDEX IF NOT EXISTS guard_payments_expiry ON guard_payments (expires_at);
CREATE INDEX IF NOT EXISTS guard_payments_claims ON guard_payments (chain_id, asset, payer)
    WHERE claim_token IS NOT NULL;
CREATE TABLE IF NOT EXISTS guard_metered_usage (
    namespace         TEXT          NOT NULL,
    name              TEXT          NOT NULL,
    requests          BIGINT        NOT NULL,
    prompt_tokens     BIGINT        NOT NULL,
    completion_tokens BIGINT        NOT NULL,
    charged           NUMERIC(78,0) NOT NULL,
    PRIMARY KEY (namespace, name)
);
";

/// The text of [`RESERVED`], which [`LOOK`] embeds.
macro_rules! reserved {
    () => {
        "SELECT SUM(reserved)::text FROM guard_payments
         WHERE chain_id = $1 AND asset = $2 AND payer = $3
           AND claim_token IS NOT NULL AND claimed_until >= $4"
    };
}

/// What one payer's live claims reserve: chain id, asset, payer, now.
const RESERVED: &str = reserved!();

/// A claim's look, under the payer's lock: the payment's row (state, transaction, digest,
/// whether a live claim holds it; all null when there is none) and the payer's reservations.
/// Chain id, asset, payer, now, nonce.
const LOOK: &str = concat!(
    "SELECT p.state, p.tx, p.digest, p.claim_token IS NOT NULL AND p.claimed_until >= $4, (",
    reserved!(),
    ") FROM (SELECT 1) AS one LEFT JOIN guard_payments p
         ON p.chain_id = $1 AND p.asset = $2 AND p.payer = $3 AND p.nonce = $5"
);

/// What a claim found under the payer's lock ([`LOOK`]).
struct Found {
    /// The payment's state, `None` when it has no row.
    state: Option<String>,
    /// Its settlement transaction (empty while unknown).
    tx: String,
    /// The digest of the terms it was recorded with.
    digest: Option<Vec<u8>>,
    /// A live claim holds it.
    live: bool,
    /// What the payer's live claims reserve.
    reserved: Option<String>,
}

impl From<&tokio_postgres::Row> for Found {
    fn from(row: &tokio_postgres::Row) -> Self {
        Self {
            state: row.get(0),
            tx: row.get::<_, Option<String>>(1).unwrap_or_default(),
            digest: row.get(2),
            live: row.get::<_, Option<bool>>(3) == Some(true),
            reserved: row.get(4),
        }
    }
}

/// Takes one payer's lock until the transaction ends ([`account_lock`]).
const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// A row's state while only a claim exists.
const CLAIMED: &str = "claimed";

/// The shared store.
#[derive(Debug)]
pub(super) struct PgStore {
    pool: Pool,
    /// Claims of this replica being released in the background: a claim of the same payment
    /// here waits for them, so this replica reads its own releases.
    releasing: Arc<Mutex<HashSet<PaymentIdentity>>>,
    /// A per-process random base for claim tokens.
    tokens: std::sync::atomic::AtomicI64,
}

fn error(e: impl std::fmt::Display) -> GuardError {
    GuardError(e.to_string())
}

/// `sql` prepared on `client`'s connection, once: later calls take it from the connection's
/// cache instead of a round trip and a parse and plan on the server each time.
async fn prepared(client: &impl GenericClient, sql: &str) -> Result<Statement, GuardError> {
    client.prepare_cached(sql).await.map_err(error)
}

/// Runs `sql` (prepared once per connection) with `params`.
async fn execute(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, GuardError> {
    let statement = prepared(client, sql).await?;
    client.execute(&statement, params).await.map_err(error)
}

fn now() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

fn seconds(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

/// A payment's primary key: chain id, asset, payer, nonce.
fn key(id: &PaymentIdentity) -> (i64, &[u8], &[u8], &[u8]) {
    (
        i64::try_from(id.chain_id).unwrap_or(i64::MAX),
        id.asset.as_slice(),
        id.payer.as_slice(),
        id.nonce.as_slice(),
    )
}

/// The advisory lock of one payer's account.
fn account_lock(id: &PaymentIdentity) -> i64 {
    let mut bytes = Vec::with_capacity(48);
    bytes.extend_from_slice(&id.chain_id.to_be_bytes());
    bytes.extend_from_slice(id.asset.as_slice());
    bytes.extend_from_slice(id.payer.as_slice());
    let hash = sha2::Sha256::digest(&bytes);
    let mut head = [0u8; 8];
    head.copy_from_slice(&hash[..8]);
    i64::from_be_bytes(head)
}

fn parse_amount(text: Option<String>) -> U256 {
    text.and_then(|t| t.parse().ok()).unwrap_or_default()
}

impl PgStore {
    /// Connects (a small pool), creates the tables when missing, refuses a newer schema and
    /// prunes what expired.
    pub(super) async fn connect(url: &str) -> Result<Self, GuardError> {
        let pool = crate::pg::connect(
            url,
            "payment guard",
            SCHEMA_VERSION,
            SCHEMA,
            "DELETE FROM guard_payments WHERE expires_at < $1",
        )
        .await
        .map_err(GuardError)?;
        Ok(Self {
            pool,
            releasing: Arc::default(),
            tokens: std::sync::atomic::AtomicI64::new(random_base()),
        })
    }

    /// Waits (a little) while this replica still releases an earlier claim of `id`.
    async fn settle_releases(&self, id: &PaymentIdentity) {
        for _ in 0..1000 {
            let pending = self
                .releasing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(id);
            if !pending {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    async fn try_claim(
        &self,
        id: &PaymentIdentity,
        digest: B256,
        amount: U256,
        lease_until: u64,
    ) -> Result<Result<Granted, Refusal>, GuardError> {
        let mut client = self.pool.get().await.map_err(error)?;
        let tx = client.transaction().await.map_err(error)?;
        let (lock, look) = (prepared(&tx, LOCK).await?, prepared(&tx, LOOK).await?);
        let (chain_id, asset, payer, nonce) = key(id);
        let now = now();
        // Sent together: the look runs after the lock is held (its own snapshot, so it sees
        // every claim committed before), one round trip for both.
        let lock_key = account_lock(id);
        let lock_params: [&(dyn ToSql + Sync); 1] = [&lock_key];
        let look_params: [&(dyn ToSql + Sync); 5] = [&chain_id, &asset, &payer, &now, &nonce];
        let (_, row) = tokio::try_join!(
            tx.execute(&lock, &lock_params),
            tx.query_one(&look, &look_params),
        )
        .map_err(error)?;
        let found = Found::from(&row);
        let mut unsettled = None;
        if let Some(state) = found.state {
            if state == State::Settled.as_str() {
                return Ok(Err(Refusal::Settled(found.tx)));
            }
            let recorded = state != CLAIMED;
            if recorded && found.digest.as_deref() != Some(digest.as_slice()) {
                return Ok(Err(Refusal::OtherTerms));
            }
            if found.live {
                return Ok(Err(Refusal::InFlight));
            }
            if recorded {
                unsettled = Some(found.tx);
            }
        }
        let token = self
            .tokens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lease = seconds(lease_until);
        execute(
            &tx,
            "INSERT INTO guard_payments (chain_id, asset, payer, nonce, state, digest,
                 claim_token, claimed_until, reserved, expires_at, settled_at)
             VALUES ($1, $2, $3, $4, 'claimed', $5, $6, $7, CAST($8::text AS NUMERIC), $7, $9)
             ON CONFLICT (chain_id, asset, payer, nonce) DO UPDATE SET
                 claim_token = excluded.claim_token, claimed_until = excluded.claimed_until,
                 reserved = excluded.reserved,
                 digest = CASE WHEN guard_payments.state = 'claimed' THEN excluded.digest
                               ELSE guard_payments.digest END,
                 expires_at = GREATEST(guard_payments.expires_at, excluded.expires_at)",
            &[
                &chain_id,
                &asset,
                &payer,
                &nonce,
                &digest.as_slice(),
                &token,
                &lease,
                &amount.to_string(),
                &now,
            ],
        )
        .await?;
        tx.commit().await.map_err(error)?;
        Ok(Ok(Granted {
            reserved_before: parse_amount(found.reserved),
            unsettled,
            token,
        }))
    }
}

/// A random 64-bit start for this process's claim tokens (distinct across replicas).
fn random_base() -> i64 {
    use rand::RngCore as _;
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    i64::from_ne_bytes(bytes)
}

/// Ends the claim `token` of `id`: the row goes when only the claim made it, else the claim
/// and its reservation are cleared.
async fn release(pool: &Pool, id: &PaymentIdentity, token: i64) -> Result<(), GuardError> {
    let client = pool.get().await.map_err(error)?;
    let delete = prepared(
        &client,
        "DELETE FROM guard_payments
         WHERE chain_id = $1 AND asset = $2 AND payer = $3 AND nonce = $4
           AND claim_token = $5 AND state = 'claimed'",
    )
    .await?;
    let clear = prepared(
        &client,
        "UPDATE guard_payments SET claim_token = NULL, claimed_until = NULL, reserved = 0
         WHERE chain_id = $1 AND asset = $2 AND payer = $3 AND nonce = $4
           AND claim_token = $5",
    )
    .await?;
    let (chain_id, asset, payer, nonce) = key(id);
    let params: [&(dyn ToSql + Sync); 5] = [&chain_id, &asset, &payer, &nonce, &token];
    // Sent together, run in this order: one round trip.
    tokio::try_join!(
        client.execute(&delete, &params),
        client.execute(&clear, &params)
    )
    .map_err(error)?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn claim(
        &self,
        id: &PaymentIdentity,
        digest: B256,
        amount: U256,
        lease_until: u64,
    ) -> Result<Granted, Refusal> {
        self.settle_releases(id).await;
        match self.try_claim(id, digest, amount, lease_until).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, "payment guard database unavailable; refusing the payment");
                Err(Refusal::Unavailable(e.to_string()))
            }
        }
    }

    fn release(&self, claimed: Claimed<'_>, ended: bool) {
        if ended {
            // The record that ended the claim cleared it in the same write (or forget deleted
            // the row): nothing is left to clear.
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (a process ending): the claim lapses with its lease.
            return;
        };
        let id = *claimed.id;
        self.releasing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        let (pool, releasing, token) = (self.pool.clone(), self.releasing.clone(), claimed.token);
        runtime.spawn(async move {
            if let Err(e) = release(&pool, &id, token).await {
                tracing::warn!(error = %e, "could not release a payment claim; it lapses with its lease");
            }
            releasing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }

    async fn record(&self, claimed: Claimed<'_>, record: Record<'_>) -> Result<(), GuardError> {
        let id = claimed.id;
        let client = self.pool.get().await.map_err(error)?;
        let (chain_id, asset, payer, nonce) = key(id);
        execute(
            &client,
            "INSERT INTO guard_payments (chain_id, asset, payer, nonce, state, tx, amount,
                     digest, expires_at, settled_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (chain_id, asset, payer, nonce) DO UPDATE SET
                     state = excluded.state, tx = excluded.tx, amount = excluded.amount,
                     digest = excluded.digest, expires_at = excluded.expires_at,
                     settled_at = excluded.settled_at,
                     claim_token = CASE WHEN $11 AND guard_payments.claim_token = $12
                                        THEN NULL ELSE guard_payments.claim_token END,
                     claimed_until = CASE WHEN $11 AND guard_payments.claim_token = $12
                                          THEN NULL ELSE guard_payments.claimed_until END,
                     reserved = CASE WHEN $11 AND guard_payments.claim_token = $12
                                     THEN 0 ELSE guard_payments.reserved END",
            &[
                &chain_id,
                &asset,
                &payer,
                &nonce,
                &record.state.as_str(),
                &record.tx,
                &record.amount.map(|a| a.to_string()),
                &claimed.digest.as_slice(),
                &seconds(record.expires_at),
                &now(),
                &record.ends_claim,
                &claimed.token,
            ],
        )
        .await?;
        Ok(())
    }

    async fn forget(&self, claimed: Claimed<'_>) -> Result<(), GuardError> {
        // The row is this claim's: it goes, and the ticket's release then finds nothing.
        let id = claimed.id;
        let client = self.pool.get().await.map_err(error)?;
        let (chain_id, asset, payer, nonce) = key(id);
        execute(
            &client,
            "DELETE FROM guard_payments
                 WHERE chain_id = $1 AND asset = $2 AND payer = $3 AND nonce = $4
                   AND claim_token = $5",
            &[&chain_id, &asset, &payer, &nonce, &claimed.token],
        )
        .await?;
        Ok(())
    }

    async fn receipt(&self, nonce: B256) -> Option<Recorded> {
        let client = self.pool.get().await.ok()?;
        let statement = prepared(
            &client,
            "SELECT chain_id, payer, state, tx, amount FROM guard_payments
             WHERE nonce = $1 AND state <> 'claimed' LIMIT 2",
        )
        .await
        .ok()?;
        let rows = client.query(&statement, &[&nonce.as_slice()]).await.ok()?;
        let [row] = rows.as_slice() else {
            return None;
        };
        let payer: Vec<u8> = row.get(1);
        let state: String = row.get(2);
        Some(Recorded::from_columns(
            row.get(0),
            &payer,
            &state,
            row.get(3),
            row.get(4),
        ))
    }

    async fn add_usage(
        &self,
        namespace: &str,
        name: &str,
        charge: &crate::metering::Charge,
    ) -> Result<(), GuardError> {
        let usage = charge.usage.unwrap_or_default();
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let client = self.pool.get().await.map_err(error)?;
        execute(
            &client,
            "INSERT INTO guard_metered_usage
                     (namespace, name, requests, prompt_tokens, completion_tokens, charged)
                 VALUES ($1, $2, 1, $3, $4, CAST($5::text AS NUMERIC))
                 ON CONFLICT (namespace, name) DO UPDATE SET
                     requests = guard_metered_usage.requests + 1,
                     prompt_tokens = guard_metered_usage.prompt_tokens + excluded.prompt_tokens,
                     completion_tokens =
                         guard_metered_usage.completion_tokens + excluded.completion_tokens,
                     charged = guard_metered_usage.charged + excluded.charged",
            &[
                &namespace,
                &name,
                &count(usage.prompt_tokens),
                &count(usage.completion_tokens),
                &charge.amount.to_string(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn usage(&self, namespace: &str, name: &str) -> Option<crate::metering::MeteredUsage> {
        let client = self.pool.get().await.ok()?;
        let statement = prepared(
            &client,
            "SELECT requests, prompt_tokens, completion_tokens, charged::text
             FROM guard_metered_usage WHERE namespace = $1 AND name = $2",
        )
        .await
        .ok()?;
        let row = client
            .query_opt(&statement, &[&namespace, &name])
            .await
            .ok()??;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Some(crate::metering::MeteredUsage {
            requests: count(row.get(0)),
            prompt_tokens: count(row.get(1)),
            completion_tokens: count(row.get(2)),
            charged: parse_amount(row.get(3)),
        })
    }

    async fn outstanding(&self, account: &Account) -> U256 {
        let Ok(client) = self.pool.get().await else {
            return U256::ZERO;
        };
        let Ok(statement) = prepared(&client, RESERVED).await else {
            return U256::ZERO;
        };
        let chain_id = i64::try_from(account.chain_id).unwrap_or(i64::MAX);
        client
            .query_one(
                &statement,
                &[
                    &chain_id,
                    &account.asset.as_slice(),
                    &account.payer.as_slice(),
                    &now(),
                ],
            )
            .await
            .map_or(U256::ZERO, |row| parse_amount(row.get(0)))
    }

    async fn pending(&self, now: u64) -> Result<Pending, GuardError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let client = self.pool.get().await.map_err(error)?;
        let statement = prepared(
            &client,
            "SELECT COUNT(*) FILTER (WHERE expires_at >= $1),
                    COUNT(*) FILTER (WHERE expires_at < $1),
                    MIN(expires_at) FILTER (WHERE expires_at >= $1)
             FROM guard_payments WHERE state = 'unsettled'",
        )
        .await?;
        let row = client.query_one(&statement, &[&now]).await.map_err(error)?;
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok(Pending {
            unsettled: count(row.get(0)),
            expired: count(row.get(1)),
            next_expiry: row.get::<_, Option<i64>>(2).map(count),
        })
    }
}
