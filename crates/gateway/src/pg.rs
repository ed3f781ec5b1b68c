//! PostgreSQL for the stores gateway replicas share (the payment guard, the sign-in store): a
//! small connection pool, and each component's tables created when missing under one advisory
//! lock (replicas starting together do not race), its schema version recorded in
//! `obol_schema` and a newer one refused.

use deadpool_postgres::{Pool, Runtime};
use tokio_postgres::NoTls;

/// The advisory lock taken while a component's tables are created.
const SCHEMA_LOCK: i64 = 0x6f62_6f6c_6775_6172; // "obolguar"

/// Connects to `url` and brings `component`'s tables (`schema`, idempotent DDL) to `version`,
/// then runs `prune` (a statement taking the current unix time as `$1`).
///
/// # Errors
///
/// The database's message, or a schema newer than `version`.
pub(crate) async fn connect(
    url: &str,
    component: &str,
    version: i32,
    schema: &str,
    prune: &str,
) -> Result<Pool, String> {
    let config = deadpool_postgres::Config {
        url: Some(url.to_owned()),
        ..deadpool_postgres::Config::default()
    };
    let pool = config
        .create_pool(Some(Runtime::Tokio1), NoTls)
        .map_err(|e| e.to_string())?;
    let error = |e: tokio_postgres::Error| e.to_string();
    let mut client = pool.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS obol_schema (
             component TEXT PRIMARY KEY,
             version   INTEGER NOT NULL
         );",
    )
    .await
    .map_err(error)?;
    tx.batch_execute(schema).await.map_err(error)?;
    tx.execute(
        "INSERT INTO obol_schema (component, version) VALUES ($1, $2)
         ON CONFLICT (component) DO NOTHING",
        &[&component, &version],
    )
    .await
    .map_err(error)?;
    let stored: i32 = tx
        .query_one(
            "SELECT version FROM obol_schema WHERE component = $1",
            &[&component],
        )
        .await
        .map_err(error)?
        .get(0);
    if stored > version {
        return Err(format!(
            "{component}: schema version {stored} is newer than this program's ({version})"
        ));
    }
    let now = i64::try_from(obol_config::time::unix_now()).unwrap_or(i64::MAX);
    tx.execute(prune, &[&now]).await.map_err(error)?;
    tx.commit().await.map_err(error)?;
    drop(client);
    Ok(pool)
}
