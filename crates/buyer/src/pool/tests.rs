//! Unit tests of the pool: hand-out order, holds ending, terms matching, removal and the
//! migration of a version 0 database.

use obol_x402::LocalSigner;
use serde_json::json;

use super::*;
use crate::presign::{PresignOptions, presign};

const NOW: u64 = 1_800_000_000;

fn requirement() -> v2::PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "maxTimeoutSeconds": 300,
        "extra": {"name": "USDC", "version": "2", "assetTransferMethod": "eip3009"}
    }))
    .unwrap()
}

fn filled(count: usize, ttl_secs: u64) -> (Arc<AuthPool>, Vec<PreSigned>) {
    let pool = AuthPool::in_memory().unwrap();
    let signed = presign(
        &LocalSigner::random(),
        &requirement(),
        None,
        PresignOptions {
            count,
            ttl_secs,
            now: NOW,
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(pool.add("p", &signed).unwrap(), count);
    assert_eq!(
        pool.add("p", &signed).unwrap(),
        0,
        "same nonces are not added twice"
    );
    (pool, signed)
}

/// `count` authorizations signed by a fresh key for `requirement()` edited by `edit`.
fn signed_for(count: usize, edit: &serde_json::Value) -> Vec<PreSigned> {
    let mut value = serde_json::to_value(requirement()).unwrap();
    for (k, v) in edit.as_object().unwrap() {
        value[k] = v.clone();
    }
    let asked: v2::PaymentRequirements = serde_json::from_value(value).unwrap();
    presign(
        &LocalSigner::random(),
        &asked,
        None,
        PresignOptions {
            count,
            ttl_secs: 3600,
            now: NOW,
        },
        &|_| {},
    )
    .unwrap()
}

#[test]
fn take_confirm_release_and_exhaustion() {
    let (pool, signed) = filled(3, 3600);
    let first = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(first.payload(), &signed[0].payload, "oldest first");
    let second = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(second.payload(), &signed[1].payload, "never the held one");
    drop(first);
    let again = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(again.payload(), &signed[0].payload, "released to the head");
    again.confirm().unwrap();
    second.confirm().unwrap();
    let last = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(last.payload(), &signed[2].payload);
    last.confirm().unwrap();
    let error = pool.take("p", &requirement(), NOW).unwrap_err();
    assert!(
        error.to_string().contains("pre-signed auth pool exhausted"),
        "{error}"
    );
    let counts = pool.counts("p").unwrap();
    assert_eq!((counts.available, counts.spent), (0, 3));
}

#[test]
fn a_sent_authorization_is_burned_unless_released() {
    let (pool, signed) = filled(2, 3600);
    let mut held = pool.take("p", &requirement(), NOW).unwrap();
    held.sent();
    drop(held); // the call was cancelled after the seller got the header
    let mut next = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(
        next.payload(),
        &signed[1].payload,
        "the sent one never comes back"
    );
    next.sent();
    next.release(); // the seller clearly did not take it
    let counts = pool.counts("p").unwrap();
    assert_eq!((counts.available, counts.burned), (1, 1));
}

#[test]
fn a_pending_settlement_is_spent_however_the_hold_ends() {
    let (pool, _) = filled(2, 3600);
    let mut held = pool.take("p", &requirement(), NOW).unwrap();
    held.sent();
    held.pending();
    drop(held); // the agent left while the seller was settling
    let counts = pool.counts("p").unwrap();
    assert_eq!(
        (counts.available, counts.spent, counts.burned),
        (1, 1, 0),
        "counted as paid: the transfer may land"
    );
}

#[test]
fn changed_terms_are_refused_and_nothing_is_lost() {
    let (pool, _) = filled(1, 3600);
    let mut asked = requirement();
    asked.amount = "2000".parse().unwrap();
    let error = pool.take("p", &asked, NOW).unwrap_err();
    assert!(
        matches!(&error, PoolError::Mismatch { term: "amount", .. }),
        "{error}"
    );
    for (term, edit) in [
        (
            "payTo",
            json!({"payTo": "0x0000000000000000000000000000000000000001"}),
        ),
        (
            "asset",
            json!({"asset": "0x0000000000000000000000000000000000000002"}),
        ),
        ("network", json!({"network": "eip155:8453"})),
        ("scheme", json!({"scheme": "upto"})),
        (
            "extra",
            json!({"extra": {"name": "USDC", "version": "2", "assetTransferMethod": "permit2"}}),
        ),
    ] {
        let mut value = serde_json::to_value(requirement()).unwrap();
        for (k, v) in edit.as_object().unwrap() {
            value[k] = v.clone();
        }
        let asked: v2::PaymentRequirements = serde_json::from_value(value).unwrap();
        match pool.take("p", &asked, NOW).unwrap_err() {
            PoolError::Mismatch { term: got, .. } => assert_eq!(got, term),
            other => panic!("{other}"),
        }
    }
    // Legacy network name and lower-case addresses are the same terms.
    let mut same = requirement();
    same.network = "base-sepolia".into();
    same.pay_to = same.pay_to.to_lowercase();
    pool.take("p", &same, NOW).unwrap().confirm().unwrap();
}

#[test]
fn nearly_expired_authorizations_are_skipped() {
    // maxTimeoutSeconds 300: a gateway admits 270 s of remaining validity or more.
    let (pool, _) = filled(1, 600);
    let late = NOW + 600 - 270 + 1;
    assert!(matches!(
        pool.take("p", &requirement(), late),
        Err(PoolError::Exhausted { .. })
    ));
    assert!(pool.take("p", &requirement(), late - 1).is_ok());
    // Short windows fall back to the pool's own margin.
    let (pool, _) = filled(1, 600);
    let mut quick = requirement();
    quick.max_timeout_seconds = 5;
    let late = NOW + 600 - EXPIRY_MARGIN_SECS + 1;
    assert!(pool.take("p", &quick, late).is_err());
    assert!(pool.take("p", &quick, late - 1).is_ok());
}

#[test]
fn expiries_are_counted_per_pool_over_what_is_left() {
    let (pool, signed) = filled(3, 600);
    let later = signed_for(2, &json!({}));
    pool.add("q", &later).unwrap();
    pool.take("p", &requirement(), NOW)
        .unwrap()
        .confirm()
        .unwrap();
    let expiry = |pool: &str, available, expiring, next| PoolExpiry {
        pool: pool.to_owned(),
        available,
        expiring,
        next_expiry: Some(next),
    };
    let (p_ends, q_ends) = (signed[0].valid_before, later[0].valid_before);
    assert!(p_ends < q_ends);
    assert_eq!(
        pool.expiring(p_ends + 1).unwrap(),
        [expiry("p", 2, 2, p_ends), expiry("q", 2, 0, q_ends)]
    );
    assert_eq!(
        pool.expiring(NOW).unwrap(),
        [expiry("p", 2, 0, p_ends), expiry("q", 2, 0, q_ends)]
    );
    pool.remove("q").unwrap();
    assert_eq!(pool.expiring(NOW).unwrap(), [expiry("p", 2, 0, p_ends)]);
}

#[test]
#[cfg(unix)]
fn the_database_holding_signed_authorizations_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pool = AuthPool::open(&data.join("auths.sqlite")).unwrap();
    let (_, signed) = filled(1, 600);
    pool.add("p", &signed).unwrap();
    let files = ["auths.sqlite", "auths.sqlite-wal", "auths.sqlite-shm"];
    obol_testkit::fs::assert_private(&data, &files);
}

#[test]
fn concurrent_takes_never_share_and_a_crash_burns_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auths.sqlite");
    let pool = AuthPool::open(&path).unwrap();
    let signed = signed_for(40, &serde_json::json!({}));
    pool.add("p", &signed).unwrap();
    let nonces: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                scope.spawn(move || {
                    (0..5)
                        .map(|_| {
                            let held = pool.take("p", &requirement(), NOW).unwrap();
                            let nonce = held.payload().payload["authorization"]["nonce"]
                                .as_str()
                                .unwrap()
                                .to_owned();
                            std::mem::forget(held); // a crash: never confirmed nor released
                            nonce
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let distinct: std::collections::HashSet<_> = nonces.iter().collect();
    assert_eq!(distinct.len(), 40, "40 takes, 40 different authorizations");
    drop(pool);
    let reopened = AuthPool::open(&path).unwrap();
    assert_eq!(reopened.counts("p").unwrap().burned, 40);
    assert!(matches!(
        reopened.take("p", &requirement(), NOW),
        Err(PoolError::Exhausted { .. })
    ));
}

#[test]
fn rows_for_other_terms_never_block_matching_ones() {
    let pool = AuthPool::in_memory().unwrap();
    let dearer = signed_for(2, &json!({"amount": "2000"}));
    let elsewhere = signed_for(
        1,
        &json!({"payTo": "0x0000000000000000000000000000000000000001"}),
    );
    // Same terms, another spelling: legacy network name, lower-case addresses, extra reordered.
    let matching = signed_for(
        2,
        &json!({
            "network": "base-sepolia",
            "payTo": "0x209693bc6afc0c5328ba36faf03c514ef312287c",
            "extra": {"assetTransferMethod": "eip3009", "version": "2", "name": "USDC"}
        }),
    );
    for batch in [&dearer, &elsewhere, &matching] {
        pool.add("p", batch).unwrap();
    }
    let first = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(
        first.payload(),
        &matching[0].payload,
        "the oldest matching row"
    );
    let second = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(second.payload(), &matching[1].payload);
    first.confirm().unwrap();
    second.confirm().unwrap();

    // Only rows for other terms are left: the oldest says which term differs.
    match pool.take("p", &requirement(), NOW).unwrap_err() {
        PoolError::Mismatch {
            term,
            asked,
            signed,
        } => assert_eq!(
            (term, asked.as_str(), signed.as_str()),
            ("amount", "1000", "2000")
        ),
        other => panic!("{other}"),
    }
    let error = pool.take("p", &requirement(), NOW).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the seller's terms changed: amount is 1000, the pool signed 2000; not paying"
    );
    // The dearer rows still pay a seller asking that price.
    let mut dearer_ask = requirement();
    dearer_ask.amount = "2000".parse().unwrap();
    let held = pool.take("p", &dearer_ask, NOW).unwrap();
    assert_eq!(held.payload(), &dearer[0].payload);
    drop(held);
    let counts = pool.counts("p").unwrap();
    assert_eq!((counts.available, counts.spent), (3, 2));

    // An empty pool is exhausted, whatever is asked.
    let empty = AuthPool::in_memory().unwrap();
    assert!(matches!(
        empty.take("p", &requirement(), NOW),
        Err(PoolError::Exhausted { .. })
    ));
    // Rows of another pool are not this pool's.
    assert!(matches!(
        pool.take("q", &requirement(), NOW),
        Err(PoolError::Exhausted { .. })
    ));
}

#[test]
fn a_removed_pool_gives_nothing_back() {
    let (pool, signed) = filled(3, 3600);
    pool.take("p", &requirement(), NOW)
        .unwrap()
        .confirm()
        .unwrap();
    assert_eq!(pool.remove("p").unwrap(), 2, "two unspent rows dropped");
    assert_eq!(pool.counts("p").unwrap(), PoolCounts::default());
    assert!(matches!(
        pool.take("p", &requirement(), NOW),
        Err(PoolError::Exhausted { .. })
    ));
    // The same authorizations, spent or dropped, in the recreated pool or another one.
    assert_eq!(pool.add("p", &signed).unwrap(), 0);
    assert_eq!(pool.add("other", &signed).unwrap(), 0);
    assert_eq!(pool.counts("p").unwrap(), PoolCounts::default());
    assert_eq!(pool.counts("other").unwrap(), PoolCounts::default());
    // A nonce seen in one pool is never inserted into another.
    let fresh = signed_for(1, &json!({}));
    assert_eq!(pool.add("a", &fresh).unwrap(), 1);
    assert_eq!(pool.add("b", &fresh).unwrap(), 0);
    assert_eq!(pool.remove("nothing").unwrap(), 0);
}

#[test]
fn a_hold_ending_after_its_pool_was_removed_stays_unusable() {
    let (pool, _) = filled(2, 3600);
    let released = pool.take("p", &requirement(), NOW).unwrap();
    let confirmed = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(pool.remove("p").unwrap(), 0, "both rows are held");
    assert_eq!(pool.counts("p").unwrap(), PoolCounts::default());

    // The pool is recreated with new authorizations before the holds end.
    let renewed = signed_for(1, &json!({}));
    assert_eq!(pool.add("p", &renewed).unwrap(), 1);
    drop(released); // never sent: would go back to the queue, but its pool is gone
    confirmed.confirm().unwrap();
    let counts = pool.counts("p").unwrap();
    assert_eq!(
        (counts.available, counts.held, counts.spent, counts.burned),
        (1, 0, 0, 0),
        "only the recreated pool's own row"
    );
    let held = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(held.payload(), &renewed[0].payload);
    held.confirm().unwrap();
    assert!(matches!(
        pool.take("p", &requirement(), NOW),
        Err(PoolError::Exhausted { .. })
    ));
    assert_eq!(pool.counts("p").unwrap().spent, 1);
}

/// The table as every database written before schema version 1 has it.
const SCHEMA_V0: &str = "
    CREATE TABLE IF NOT EXISTS presigned_auths (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pool TEXT NOT NULL,
        nonce TEXT NOT NULL,
        valid_before INTEGER NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'available'
            CHECK (state IN ('available', 'held', 'spent', 'burned')),
        UNIQUE (pool, nonce)
    );
    CREATE INDEX IF NOT EXISTS presigned_auths_take ON presigned_auths (pool, state, id);
";

#[test]
fn a_version_0_database_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auths.sqlite");
    let dearer = signed_for(1, &json!({"amount": "2000"}));
    let matching = signed_for(4, &json!({}));
    {
        let db = Connection::open(&path).unwrap();
        db.execute_batch(SCHEMA_V0).unwrap();
        let mut insert = db
            .prepare(
                "INSERT INTO presigned_auths (pool, nonce, valid_before, payload, state)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .unwrap();
        let rows = [
            ("p", &dearer[0], "available"),
            ("p", &matching[0], "spent"),
            ("p", &matching[1], "held"),
            ("p", &matching[2], "available"),
            ("p", &matching[3], "available"),
            // matching[0] again, in a pool recreated under another name: already spent.
            ("q", &matching[0], "available"),
        ];
        for (pool, auth, state) in rows {
            insert
                .execute(params![
                    pool,
                    auth.nonce.to_string(),
                    i64::try_from(auth.valid_before).unwrap(),
                    serde_json::to_string(&auth.payload).unwrap(),
                    state
                ])
                .unwrap();
        }
        // A row whose payload cannot be read: it could never be matched.
        insert
            .execute(params![
                "p",
                "0xunreadable",
                4_102_444_800_i64,
                "{not json",
                "available"
            ])
            .unwrap();
    }
    let pool = AuthPool::open(&path).unwrap();
    let version: i64 = pool
        .db()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let counts = pool.counts("p").unwrap();
    assert_eq!(
        (counts.available, counts.held, counts.spent, counts.burned),
        (3, 0, 1, 2),
        "the held row and the unreadable one burned at open"
    );
    assert_eq!(
        pool.counts("q").unwrap(),
        PoolCounts::default(),
        "a spent nonce never comes back"
    );
    // Terms were computed from the stored payloads: the older, dearer row is passed over.
    let held = pool.take("p", &requirement(), NOW).unwrap();
    assert_eq!(held.payload(), &matching[2].payload);
    held.confirm().unwrap();
    assert_eq!(pool.add("q", &matching).unwrap(), 0, "nonces now unique");
    drop(pool);

    // Opening again is a no-op; a newer schema is refused.
    let pool = AuthPool::open(&path).unwrap();
    assert_eq!(pool.counts("p").unwrap().available, 2);
    pool.db()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(pool);
    assert!(matches!(
        AuthPool::open(&path),
        Err(PoolError::Schema { found }) if found == SCHEMA_VERSION + 1
    ));
}

#[test]
fn terms_keys_ignore_spelling_and_see_every_term() {
    let key = terms_key(&requirement()).unwrap();
    let mut same = requirement();
    same.network = "BASE-SEPOLIA".into();
    same.asset = same.asset.to_uppercase().replace("0X", "0x");
    same.max_timeout_seconds = 60;
    assert_eq!(terms_key(&same).unwrap(), key);
    // Any EVM chain id counts (as validation accepts it), in either naming; a non-EVM network
    // has no key.
    let mut unlisted = requirement();
    unlisted.network = "eip155:999999999".into();
    assert!(terms_key(&unlisted).is_some());
    assert_ne!(terms_key(&unlisted), Some(key.clone()));
    let mut solana = requirement();
    solana.network = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".into();
    assert_eq!(terms_key(&solana), None);
    let mut no_extra = requirement();
    no_extra.extra = None;
    assert_ne!(terms_key(&no_extra).unwrap(), key);
    assert!(can_sign(&requirement(), &no_extra).is_err());
}

/// Frames in the write-ahead log of `pool`'s database since it was last truncated.
fn wal_frames(pool: &AuthPool) -> i64 {
    pool.db()
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
        .unwrap()
}

#[test]
fn spent_marks_queued_together_share_one_durable_commit() {
    const CALLS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auths.sqlite");
    let pool = AuthPool::open(&path).unwrap();
    let signed = signed_for(CALLS + 1, &serde_json::json!({}));
    pool.add("p", &signed).unwrap();
    let held: Vec<Held> = (0..CALLS)
        .map(|_| pool.take("p", &requirement(), NOW).unwrap())
        .collect();
    pool.db()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    assert_eq!(wal_frames(&pool), 0);

    // While another write holds the connection, every confirm queues; the next holder commits
    // them all in one transaction.
    let busy = pool.db();
    let confirmed = std::thread::scope(|scope| {
        let handles: Vec<_> = held
            .into_iter()
            .map(|held| scope.spawn(move || held.confirm()))
            .collect();
        while pool.store.queued() < CALLS {
            std::thread::yield_now();
        }
        drop(busy);
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(confirmed.iter().all(Result::is_ok), "{confirmed:?}");
    // One commit per mark would append at least one table page and one index page each.
    let frames = wal_frames(&pool);
    assert!(
        frames < i64::try_from(CALLS).unwrap(),
        "{CALLS} spent marks took {frames} WAL frames: not one commit"
    );
    // Durable and visible to another connection, the untouched row still available.
    let other = AuthPool::open(&path).unwrap();
    let counts = other.counts("p").unwrap();
    assert_eq!(
        (counts.spent, counts.available, counts.held),
        (u64::try_from(CALLS).unwrap(), 1, 0)
    );
}
