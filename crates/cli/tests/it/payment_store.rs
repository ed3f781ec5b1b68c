//! The payment guard on PostgreSQL (`stack init --payment-store`, `OBOL_PAYMENT_STORE`): a
//! stack whose database is down refuses to start and says which store (never its password);
//! one on a real PostgreSQL server records a paid call's settlement there.

use obol_testkit::postgres::PgServer;

use crate::stack::{DevnetStackGuard, gateway, sell_echo, upstream, wait_ready};
use crate::{obol_in, stderr, stdout};

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_guard_keeps_its_record_in_postgresql() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.database("guard");
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    let _guard = DevnetStackGuard::up(dir);
    let init = |store: &str| {
        let extra = ["--facilitator-chain", "devnet", "--payment-store", store];
        crate::stack_init(dir, "127.0.0.1:0", &extra);
    };
    let up = || {
        obol_in(
            dir,
            &["stack", "up"],
            &[("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[9])],
            None,
        )
    };

    // A database that does not answer: the stack does not start, and says which store.
    init("postgres://obol:hunter2@127.0.0.1:9/none");
    let out = up();
    assert!(!out.status.success(), "started without its payment store");
    let said = stderr(&out);
    assert!(
        said.contains("payment store postgres://obol:***@127.0.0.1:9/none"),
        "{said}"
    );
    assert!(
        !said.contains("hunter2"),
        "the password is never shown: {said}"
    );

    init(&url);
    let out = up();
    assert!(out.status.success(), "stack up: {}", stderr(&out));
    let sell = sell_echo(&upstream, "0.001");
    assert!(obol_in(dir, &sell, &[], None).status.success());
    wait_ready(dir).await;
    let paid = format!("{}/services/echo/items", gateway(dir));
    let buyer = [("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[6])];
    let out = obol_in(
        dir,
        &["buy", "pay", &paid, "--max-amount", "0.01"],
        &buyer,
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"ok\":true}");
    let tx = stderr(&out)
        .split_whitespace()
        .find(|w| w.starts_with("0x") && w.len() == 66)
        .map(str::to_owned)
        .expect("the settlement's transaction");
    assert_eq!(
        server.query("guard", "SELECT state || ' ' || tx FROM guard_payments"),
        format!("settled {tx}"),
        "the settlement is recorded in PostgreSQL"
    );
}
