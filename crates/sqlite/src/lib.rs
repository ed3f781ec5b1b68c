//! SQLite helpers shared by obol-stack's stores.
//!
//! [`GroupCommit`] owns one connection and turns many small durable writes arriving together
//! into one transaction with one commit. Each caller queues its write, then whoever gets the
//! connection next runs every queued write in one `IMMEDIATE` transaction and answers each
//! caller with its own outcome. A caller returns only once the commit carrying its write is
//! done, so durability is exactly that of a commit per write, while calls finishing together
//! share the commit's page writes (and fsync, under `synchronous = FULL`).
//!
//! Used by the gateway's double-serve guard and the buyer's authorization pool.
//!
//! [`migrate()`] brings any of the stores to its schema version (`PRAGMA user_version`) in one
//! `IMMEDIATE` transaction; [`backup()`] copies one online (`obol stack backup`).

mod backup;
mod migrate;

pub use backup::{backup, schema_version};
pub use migrate::{MigrateError, Step, migrate};

use std::sync::mpsc::{SyncSender, TryRecvError, sync_channel};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// Why a queued write was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The write's own statement failed; the rest of its batch was committed without it.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The batch carrying the write could not be committed (nothing of it was written), or it
    /// was abandoned (the committing thread panicked).
    #[error("commit failed: {0}")]
    Commit(String),
}

/// Runs one write inside a batch's transaction.
pub type Apply<W, O> = fn(&Transaction<'_>, &W) -> Result<O, rusqlite::Error>;

/// A write and where its outcome goes.
struct Queued<W, O> {
    write: W,
    done: SyncSender<Result<O, WriteError>>,
}

/// One connection whose writes are group-committed (see the crate documentation).
pub struct GroupCommit<W, O> {
    db: Mutex<Connection>,
    queue: Mutex<Vec<Queued<W, O>>>,
    apply: Apply<W, O>,
    /// Names the store in logs.
    name: &'static str,
}

impl<W, O> std::fmt::Debug for GroupCommit<W, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<W, O> GroupCommit<W, O> {
    /// Wraps `db`; every write is carried out by `apply`. `name` names the store in logs.
    pub fn new(db: Connection, name: &'static str, apply: Apply<W, O>) -> Self {
        Self {
            db: Mutex::new(db),
            queue: Mutex::new(Vec::new()),
            apply,
            name,
        }
    }

    /// The connection, for reads and for work that is not group-committed. Holding it delays
    /// every queued write.
    pub fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many writes wait for the next commit.
    pub fn queued(&self) -> usize {
        self.queue().len()
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Queued<W, O>>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Carries out `write` durably in the next group commit and returns its outcome once the
    /// transaction carrying it is committed. Blocks the calling thread for that long.
    ///
    /// # Errors
    ///
    /// [`WriteError::Sqlite`] when the write's statement fails, [`WriteError::Commit`] when its
    /// batch could not be committed.
    pub fn write(&self, write: W) -> Result<O, WriteError> {
        let (done, outcome) = sync_channel(1);
        self.queue().push(Queued { write, done });
        let mut db = self.db();
        // A batch is drained and answered under the connection's lock, so ours is either
        // answered already or still queued.
        match outcome.try_recv() {
            Ok(written) => return written,
            Err(TryRecvError::Disconnected) => return Err(lost()),
            Err(TryRecvError::Empty) => {}
        }
        let batch = std::mem::take(&mut *self.queue());
        self.commit(&mut db, &batch);
        drop(db);
        outcome.try_recv().unwrap_or_else(|_| Err(lost()))
    }

    /// Runs `batch` in one immediate transaction and answers each write: its own outcome once
    /// committed, or, when the transaction fails, the failure (nothing of the batch written).
    fn commit(&self, db: &mut Connection, batch: &[Queued<W, O>]) {
        let run = |db: &mut Connection| -> Result<Vec<Result<O, WriteError>>, rusqlite::Error> {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcomes = batch
                .iter()
                .map(|queued| (self.apply)(&tx, &queued.write).map_err(WriteError::from))
                .collect();
            tx.commit()?;
            Ok(outcomes)
        };
        match run(db) {
            Ok(outcomes) => {
                for (queued, outcome) in batch.iter().zip(outcomes) {
                    // A caller that is gone (its thread panicked) needs no answer.
                    let _ = queued.done.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(store = self.name, %error, writes = batch.len(), "group commit failed");
                for queued in batch {
                    let _ = queued.done.send(Err(WriteError::Commit(error.to_string())));
                }
            }
        }
    }
}

/// A write whose batch ended without answering it (the committing thread panicked).
fn lost() -> WriteError {
    WriteError::Commit("the batch carrying it was abandoned".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::{Arc, Barrier};

    use rusqlite::params;

    use super::*;

    fn insert(tx: &Transaction<'_>, value: &i64) -> Result<usize, rusqlite::Error> {
        tx.prepare_cached("INSERT INTO t (v) VALUES (?1)")?
            .execute(params![value])
    }

    fn store(path: &std::path::Path) -> Arc<GroupCommit<i64, usize>> {
        let db = Connection::open(path).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.execute_batch("CREATE TABLE IF NOT EXISTS t (v INTEGER PRIMARY KEY)")
            .unwrap();
        Arc::new(GroupCommit::new(db, "test", insert))
    }

    fn count(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn concurrent_writes_are_all_committed_and_answered_each_with_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let store = store(&path);
        let threads = 16;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..50)
                        .map(|j| store.write(i64::try_from(i * 1000 + j).unwrap()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for outcome in handle.join().unwrap() {
                assert_eq!(outcome.unwrap(), 1);
            }
        }
        // Visible to another connection: committed, not just applied.
        assert_eq!(count(&path), 16 * 50);
    }

    #[test]
    fn a_failing_write_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let store = store(&path);
        store.write(7).unwrap();
        // A duplicate primary key: this write's statement fails, the store goes on.
        assert!(matches!(store.write(7), Err(WriteError::Sqlite(_))));
        store.write(8).unwrap();
        assert_eq!(count(&path), 2);
    }

    #[test]
    fn a_batch_that_cannot_commit_answers_every_write_with_the_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let store = store(&path);
        store.db().busy_timeout(std::time::Duration::ZERO).unwrap();
        // Another connection holds the write lock: BEGIN IMMEDIATE fails, nothing is written.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert!(matches!(store.write(1), Err(WriteError::Commit(_))));
        other.execute_batch("ROLLBACK").unwrap();
        store.write(2).unwrap();
        assert_eq!(count(&path), 1);
    }
}
