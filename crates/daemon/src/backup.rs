//! Online copies of the databases a running daemon holds open (`POST /v1/backup`, for `obol
//! stack backup`).
//!
//! The payment guard and the sign-in store lock their files for this process alone, so no other
//! process can read them while the stack runs: the daemon copies each one itself, on the
//! store's own connection, with SQLite's backup API ([`obol_sqlite::backup`]). Each copy is one
//! consistent snapshot; the store's writers wait for it (milliseconds for these sizes). The
//! copies go to a new private directory under the state directory, which the caller reads and
//! removes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use obol_buyer::AuthPool;
use obol_config::{Paths, fs as private_fs};
use obol_control::SqliteStore;
use obol_gateway::guard::ReplayGuard;
use obol_gateway::siwx::Siwx;
use serde::{Deserialize, Serialize};

use crate::DaemonError;

/// One of the stack's SQLite databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// Its file.
    pub path: PathBuf,
    /// What it holds (`resource store`, `payment guard`, …).
    pub kind: &'static str,
    /// The schema version (`PRAGMA user_version`) this program writes; a newer file is
    /// refused.
    pub schema_version: i64,
}

/// The SQLite databases of the stack at `paths`, with the schema version this program writes.
pub fn databases(paths: &Paths) -> Vec<Database> {
    let database = |path, kind, schema_version| Database {
        path,
        kind,
        schema_version,
    };
    vec![
        database(
            paths.store_file(),
            "resource store",
            obol_control::store::SQLITE_SCHEMA_VERSION,
        ),
        database(
            paths.payments_file(),
            "payment guard",
            obol_gateway::guard::SQLITE_SCHEMA_VERSION,
        ),
        database(
            paths.buyer_pool_file(),
            "buyer pool",
            obol_buyer::pool::SCHEMA_VERSION,
        ),
        database(
            paths.gating_file(),
            "sign-in store",
            obol_gateway::siwx::store::SCHEMA_VERSION,
        ),
        database(
            paths.spend_file(),
            "spend ledger",
            obol_buyer::spend::SCHEMA_VERSION,
        ),
    ]
}

/// The copies the daemon made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The private directory holding them (the caller removes it).
    pub dir: PathBuf,
    /// One per database copied.
    pub files: Vec<SnapshotFile>,
    /// What was not copied, and why (the payment guard on PostgreSQL).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One copied database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotFile {
    /// The file name, as in the data directory.
    pub file: String,
    /// The copy's schema version.
    pub schema_version: i64,
}

/// The stores the running daemon holds open.
#[derive(Debug, Clone)]
pub(crate) struct Stores {
    pub(crate) state_dir: PathBuf,
    pub(crate) store: Arc<SqliteStore>,
    pub(crate) store_path: PathBuf,
    pub(crate) guard: Arc<ReplayGuard>,
    pub(crate) guard_path: PathBuf,
    pub(crate) pool: Arc<AuthPool>,
    pub(crate) pool_path: PathBuf,
    pub(crate) siwx: Option<Arc<Siwx>>,
    pub(crate) siwx_path: PathBuf,
}

fn name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

impl Stores {
    /// Copies every store into a new private directory under the state directory. On failure
    /// the directory is removed.
    pub(crate) fn snapshot(&self) -> Result<Snapshot, DaemonError> {
        let dir = self.state_dir.join(format!(
            "backup-{}",
            obol_x402::primitives::B256::random()
                .to_string()
                .get(2..14)
                .unwrap_or("0")
        ));
        private_fs::create_private_dir(&dir)?;
        let copied = self.copy_into(&dir);
        if copied.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let (files, notes) = copied?;
        Ok(Snapshot { dir, files, notes })
    }

    fn copy_into(&self, dir: &Path) -> Result<(Vec<SnapshotFile>, Vec<String>), DaemonError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            DaemonError::Start(format!("backup of the {what}: {e}"))
        };
        let mut files = Vec::new();
        let mut notes = Vec::new();
        let mut done = |path: &Path, schema_version| {
            files.push(SnapshotFile {
                file: name(path),
                schema_version,
            });
        };
        let version = self
            .store
            .backup_to(&dir.join(name(&self.store_path)))
            .map_err(|e| failed("resource store", &e))?;
        done(&self.store_path, version);
        match self
            .guard
            .backup_to(&dir.join(name(&self.guard_path)))
            .map_err(|e| failed("payment guard", &e))?
        {
            Some(version) => done(&self.guard_path, version),
            None => notes.push(
                "the payment guard is on PostgreSQL: its database is not included; back it up \
                 with pg_dump"
                    .to_owned(),
            ),
        }
        let version = self
            .pool
            .backup_to(&dir.join(name(&self.pool_path)))
            .map_err(|e| failed("buyer pool", &e))?;
        done(&self.pool_path, version);
        if let Some(siwx) = &self.siwx {
            match siwx
                .store()
                .backup_to(&dir.join(name(&self.siwx_path)))
                .map_err(|e| failed("sign-in store", &e))?
            {
                Some(version) => done(&self.siwx_path, version),
                None => notes.push(
                    "the sign-in store is on PostgreSQL: its tables are in that database"
                        .to_owned(),
                ),
            }
        }
        Ok((files, notes))
    }
}
