//! `obol stack backup|restore`, `install-service`, `completions`.
//!
//! A backup taken while paid calls are served restores into a fresh directory as a stack that
//! serves the same offers, refuses a payment it served before the backup and keeps the buyer
//! pool's count. Restore refuses a running stack, a damaged file, a newer schema and existing
//! state (without --force); an older schema is migrated at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use obol_x402::signer::{ValidityWindow, random_nonce};
use obol_x402::wire::v2;
use serde_json::Value;

use crate::buy::{MODEL, chat};
use crate::stack::{DevnetStackGuard, StackGuard, gateway, sell_echo, upstream, wait_offer_ready};
use crate::{assert_contains, json_of, obol_in, refused, start_stack, stderr, stdout, succeeded};

const BUYER_KEY: &str = obol_devnet::DEV_KEYS[1];

/// The paths inside a backup tar, its manifest first.
fn tar_paths(file: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(file).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The manifest of a backup.
fn manifest(file: &Path) -> Value {
    let mut archive = tar::Archive::new(std::fs::File::open(file).unwrap());
    let mut first = archive.entries().unwrap().next().unwrap().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut first, &mut text).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn backup(dir: &Path, file: &Path, keys: bool) -> Value {
    let mut args = vec!["--json", "stack", "backup", file.to_str().unwrap()];
    if keys {
        args.push("--include-keys");
    }
    json_of(&obol_in(dir, &args, &[], None))
}

fn restore(dir: &Path, file: &Path, force: bool) -> std::process::Output {
    let mut args = vec!["stack", "restore", file.to_str().unwrap()];
    if force {
        args.push("--force");
    }
    obol_in(dir, &args, &[], None)
}

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[cfg(unix)]
use obol_testkit::fs::mode;

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_checks_the_stack_the_hashes_the_versions_and_the_keys() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    crate::stack_up(dir, None, false);
    let guard = StackGuard(dir);
    succeeded(&obol_in(dir, &sell_echo(&upstream, "0.001"), &[], None));
    wait_offer_ready(dir, "echo").await;
    succeeded(&obol_in(
        dir,
        &["wallet", "new"],
        &[("OBOL_WALLET_PASSWORD", "correct horse")],
        None,
    ));

    // Without keys: databases and settings, no keystore; 0600.
    let plain = dir.join("plain.tar");
    let written = backup(dir, &plain, false);
    let paths = tar_paths(&plain);
    assert_eq!(paths[0], "obol-backup.json");
    for expected in [
        "data/store.sqlite",
        "data/payments.sqlite",
        "data/buyer-auths.sqlite",
        "data/gating.sqlite",
        "config/stack.json",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected}: {paths:?}");
    }
    assert!(
        !paths.iter().any(|p| p.starts_with("config/wallets")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.contains("admin.token")),
        "{paths:?}"
    );
    let notes = written["manifest"]["notes"].to_string();
    assert!(notes.contains("1 keystore(s)"), "{notes}");
    #[cfg(unix)]
    assert_eq!(mode(&plain), 0o600);
    let listed = manifest(&plain);
    assert_eq!(listed["format"], 1);
    let store = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "data/store.sqlite")
        .unwrap();
    assert_eq!(store["kind"], "resource store");
    assert_eq!(store["schemaVersion"], 1);
    assert_eq!(store["sha256"].as_str().unwrap().len(), 64);

    // With keys: the keystore, as it is (still encrypted).
    let keyed = dir.join("keyed.tar");
    backup(dir, &keyed, true);
    let keystores: Vec<String> = tar_paths(&keyed)
        .into_iter()
        .filter(|p| p.starts_with("config/wallets/"))
        .collect();
    assert_eq!(keystores.len(), 1, "{keystores:?}");

    // Refused over a running stack.
    refused(
        &restore(dir, &plain, true),
        "stop it first: obol stack down",
    );
    drop(guard);

    // Into a fresh directory: restored, private; a second time refused without --force.
    let fresh = tempfile::tempdir().unwrap();
    let target = fresh.path();
    succeeded(&restore(target, &keyed, false));
    assert!(target.join("data/store.sqlite").exists());
    assert_eq!(
        std::fs::read(target.join("config/stack.json")).unwrap(),
        std::fs::read(dir.join("config/stack.json")).unwrap()
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&target.join("data/store.sqlite")), 0o600);
        assert_eq!(mode(&target.join("data")), 0o700);
        assert_eq!(mode(&target.join("config/wallets")), 0o700);
    }
    refused(
        &restore(target, &plain, false),
        "pass --force to replace it",
    );
    succeeded(&restore(target, &plain, true));

    // A damaged file: refused, nothing written.
    let tampered = dir.join("tampered.tar");
    let mut bytes = std::fs::read(&plain).unwrap();
    let offset = {
        let mut archive = tar::Archive::new(std::fs::File::open(&plain).unwrap());
        let entry = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap() == Path::new("config/stack.json"))
            .unwrap();
        usize::try_from(entry.raw_file_position()).unwrap()
    };
    bytes[offset + 2] ^= 0x20;
    std::fs::write(&tampered, bytes).unwrap();
    let empty = tempfile::tempdir().unwrap();
    refused(
        &restore(empty.path(), &tampered, false),
        "config/stack.json: its sha256 does not match the manifest",
    );
    assert!(!empty.path().join("config/stack.json").exists());
    assert!(!empty.path().join("data/store.sqlite").exists());

    // An older payment guard (version 1, as the first releases wrote it) restores and is
    // migrated at start.
    let guard_file = dir.join("data/payments.sqlite");
    assert_eq!(user_version(&guard_file), 4);
    rusqlite::Connection::open(&guard_file)
        .unwrap()
        .execute_batch(
            "DROP TABLE metered_usage; DROP INDEX settled_payments_nonce;
             ALTER TABLE settled_payments DROP COLUMN amount; PRAGMA user_version = 1;",
        )
        .unwrap();
    let older = dir.join("older.tar");
    backup(dir, &older, false);
    let old = tempfile::tempdir().unwrap();
    succeeded(&restore(old.path(), &older, false));
    assert_eq!(user_version(&old.path().join("data/payments.sqlite")), 1);
    start_stack(old.path());
    let old_guard = StackGuard(old.path());
    wait_offer_ready(old.path(), "echo").await;
    drop(old_guard);
    assert_eq!(user_version(&old.path().join("data/payments.sqlite")), 4);

    // A newer store than this obol knows: refused, naming both versions.
    rusqlite::Connection::open(dir.join("data/store.sqlite"))
        .unwrap()
        .execute_batch("PRAGMA user_version = 7;")
        .unwrap();
    let newer = dir.join("newer.tar");
    backup(dir, &newer, false);
    let out = restore(tempfile::tempdir().unwrap().path(), &newer, false);
    refused(
        &out,
        "resource store (data/store.sqlite) has schema version 7",
    );
    assert_contains(&stderr(&out), "knows up to version 1");
}

/// Reads the 402 of `url` and signs its first option as the buyer: a `PAYMENT-SIGNATURE`.
pub(crate) async fn sign(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 402);
    let required = obol_testkit::x402::challenge_of(&response);
    let buyer = LocalSigner::from_private_key_hex(BUYER_KEY).unwrap();
    let window = ValidityWindow::for_request(obol_testkit::now(), 300);
    obol_testkit::x402::pay(&buyer, &required, 0, window, random_nonce())
}

/// GETs `url` with `payment`: the status, and the refusal's reason on a 402.
pub(crate) async fn pay_with(url: &str, payment: &str) -> (u16, Option<String>) {
    let response = reqwest::Client::new()
        .get(url)
        .header(PAYMENT_SIGNATURE, payment)
        .send()
        .await
        .unwrap();
    let reason = response.headers().get(PAYMENT_REQUIRED).map(|value| {
        let required: v2::PaymentRequired = header::decode(value.to_str().unwrap()).unwrap();
        required.extensions.unwrap()["paymentFailure"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    (response.status().as_u16(), reason)
}

fn remaining(dir: &Path) -> u64 {
    let list = json_of(&obol_in(dir, &["--json", "buy", "list"], &[], None));
    list[0]["remaining"].as_u64().unwrap()
}

/// Paid calls (`obol buy pay`) in a loop on another thread until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    paid: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(dir: PathBuf, url: String) -> Self {
        let (stop, paid) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (stopping, counting) = (stop.clone(), paid.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let out = obol_in(
                    &dir,
                    &["buy", "pay", &url, "--max-amount", "0.01"],
                    &[("OBOL_PRIVATE_KEY", BUYER_KEY)],
                    None,
                );
                assert!(out.status.success(), "{}", stderr(&out));
                counting.fetch_add(1, Ordering::Relaxed);
            }
        });
        Self {
            stop,
            paid,
            thread: Some(thread),
        }
    }

    fn paid(&self) -> usize {
        self.paid.load(Ordering::Relaxed)
    }

    async fn wait_for(&self, calls: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.paid() < calls {
            assert!(
                Instant::now() < deadline,
                "paid calls stalled at {}",
                self.paid()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.paid()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_paid_load_restores_offers_used_payments_and_pools() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    succeeded(&obol_in(dir, &["devnet", "up"], &[], None));
    let _devnet = DevnetStackGuard(dir);
    // A fixed gateway port: the pool's seller URL must answer after the restore too.
    let listen = format!("127.0.0.1:{}", obol_testkit::http::free_port());
    crate::stack_up(dir, Some(&listen), true);
    succeeded(&obol_in(dir, &sell_echo(&upstream, "0.001"), &[], None));
    let llm = crate::stack::sell_llm(&upstream, "llm", MODEL, "0.001");
    succeeded(&obol_in(dir, &llm, &[], None));
    wait_offer_ready(dir, "echo").await;
    wait_offer_ready(dir, "llm").await;
    let seller = gateway(dir);
    let url = format!("{seller}/services/echo/items");

    // A pool of 5 calls, 2 spent; one payment served with a header kept for a replay.
    let bought = json_of(&obol_in(
        dir,
        &[
            "--json",
            "buy",
            "inference",
            &seller,
            "--count",
            "5",
            "--yes",
        ],
        &[("OBOL_PRIVATE_KEY", BUYER_KEY)],
        None,
    ));
    assert_eq!(bought["remaining"], 5);
    for _ in 0..2 {
        assert_eq!(chat(dir).await.0, 200);
    }
    assert_eq!(remaining(dir), 3);
    let used = sign(&url).await;
    assert_eq!(pay_with(&url, &used).await, (200, None));
    assert_eq!(
        pay_with(&url, &used).await,
        (402, Some("payment_already_used".to_owned()))
    );

    // Paid calls running while the backup is taken.
    let load = Load::start(dir.to_path_buf(), url.clone());
    load.wait_for(1).await;
    // Backups one after another until two more calls were paid meanwhile; the last is kept.
    let file = dir.join("backup.tar");
    let before = load.paid();
    let (mut backups, mut written, mut took) = (0, Value::Null, Duration::ZERO);
    while backups == 0 || load.paid() < before + 2 {
        let started = Instant::now();
        written = backup(dir, &file, false);
        took = started.elapsed();
        backups += 1;
    }
    let paid = load.stop();
    eprintln!(
        "backup under load: {} bytes, {} files, {} ms (the command: {} ms); {backups} backups \
         while {paid} calls were paid",
        written["bytes"],
        written["manifest"]["files"].as_array().unwrap().len(),
        written["elapsedMs"],
        took.as_millis()
    );
    succeeded(&obol_in(dir, &["stack", "down"], &[], None));

    // Restored into a fresh directory and started.
    let fresh = tempfile::tempdir().unwrap();
    let target = fresh.path();
    let out = restore(target, &file, false);
    succeeded(&out);
    start_stack(target);
    let _restored = StackGuard(target);
    wait_offer_ready(target, "echo").await;
    wait_offer_ready(target, "llm").await;
    assert_eq!(gateway(target), seller);
    refused(
        &restore(target, &file, true),
        "stop it first: obol stack down",
    );

    // The payment served before the backup is still refused; a new one is served.
    assert_eq!(
        pay_with(&url, &used).await,
        (402, Some("payment_already_used".to_owned()))
    );
    let fresh_payment = sign(&url).await;
    assert_eq!(pay_with(&url, &fresh_payment).await, (200, None));
    // The pool kept its count, and spends on.
    assert_eq!(remaining(target), 3);
    assert_eq!(chat(target).await.0, 200);
    assert_eq!(remaining(target), 2);
}

#[test]
fn the_service_unit_is_exact_and_never_replaced_silently() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let home = dir.join("home");
    let env = [("HOME", home.to_str().unwrap()), ("XDG_CONFIG_HOME", "")];
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_obol")).unwrap();
    let (exe, dir_text) = (exe.to_str().unwrap(), dir.to_str().unwrap());

    // --print: the unit only, nothing written. (The snapshots name this test's executable and
    // directory [EXE] and [DIR].)
    let out = obol_in(dir, &["stack", "install-service", "--print"], &env, None);
    succeeded(&out);
    assert_output_snapshot!("system_unit", stdout(&out), exe => "EXE", dir_text => "DIR");
    let out = obol_in(
        dir,
        &["stack", "install-service", "--user", "--print"],
        &env,
        None,
    );
    let user_unit = stdout(&out);
    assert_output_snapshot!("user_unit", user_unit, exe => "EXE", dir_text => "DIR");
    let path = home.join(".config/systemd/user/obol-stack.service");
    assert!(!path.exists());

    // Written, with the commands to enable it (not run).
    let out = obol_in(dir, &["stack", "install-service", "--user"], &env, None);
    succeeded(&out);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), user_unit);
    assert_contains(
        &stdout(&out),
        "systemctl --user enable --now obol-stack.service",
    );
    assert_contains(&stdout(&out), "does not run systemctl");
    let again = json_of(&obol_in(
        dir,
        &["--json", "stack", "install-service", "--user"],
        &env,
        None,
    ));
    assert_eq!(again["status"], "unchanged");

    // A different unit is kept unless --force.
    std::fs::write(&path, "[Service]\nExecStart=/bin/true\n").unwrap();
    refused(
        &obol_in(dir, &["stack", "install-service", "--user"], &env, None),
        "exists and differs; pass --force",
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "[Service]\nExecStart=/bin/true\n"
    );
    let forced = json_of(&obol_in(
        dir,
        &["--json", "stack", "install-service", "--user", "--force"],
        &env,
        None,
    ));
    assert_eq!(forced["status"], "replaced");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), user_unit);

    // Enabled: uninstall says to disable it first; then removes it.
    let wants = path.with_file_name("default.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&path, wants.join("obol-stack.service")).unwrap();
        refused(
            &obol_in(dir, &["stack", "uninstall-service", "--user"], &env, None),
            "systemctl --user disable --now obol-stack.service",
        );
        std::fs::remove_file(wants.join("obol-stack.service")).unwrap();
    }
    let removed = json_of(&obol_in(
        dir,
        &["--json", "stack", "uninstall-service", "--user"],
        &env,
        None,
    ));
    assert_eq!(removed["status"], "removed");
    assert!(!path.exists());
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = crate::obol(&["completions", shell], None);
        succeeded(&out);
        let script = stdout(&out);
        for word in ["stack", "sell", "buy", "install-service", "backup"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = crate::obol(&["completions", "tcsh"], None);
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "invalid value");
}
