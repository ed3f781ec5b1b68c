//! The storefront's snippets work as shown: the Python one (official x402 SDK) and the
//! `obol buy pay` one, copied from the page and run unchanged but for the key, pay an offer on a
//! devnet stack and get its answer.

use std::process::Command;

use serde_json::json;

use crate::interop::{python_sdk, repo};
use crate::stack::{DevnetStackGuard, PAY_TO, gateway, sell_from_json, upstream};
use crate::{obol_in, stderr, stdout, succeeded};

/// The text of the first `<pre class="{class}"><code>…</code></pre>` on `page`, unescaped.
fn snippet(page: &str, class: &str) -> String {
    let start = format!("<pre class=\"{class}\"><code>");
    let from = page
        .find(&start)
        .unwrap_or_else(|| panic!("no {class} snippet"))
        + start.len();
    let to = from + page[from..].find("</code></pre>").unwrap();
    page[from..to]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

// Multi-threaded: the upstream must answer while a worker blocks on a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_snippets_pay_as_shown() {
    let Some(python) = python_sdk() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    succeeded(&obol_in(dir, &["devnet", "up"], &[], None));
    let _guard = DevnetStackGuard(dir);
    crate::stack_up(dir, None, true);
    let spec = json!({
        "upstream": {"url": upstream},
        "payment": {"network": "base-sepolia", "payTo": PAY_TO, "price": {"perRequest": "0.001"}},
        "discovery": {"input": {"queryParams": {"properties": {"city": {"type": "string"}}}, "example": {"city": "Oslo"}}}
    });
    sell_from_json(dir, "weather", &spec).await;
    let page = obol_testkit::http::get_text(format!("{}/", gateway(dir))).await;

    let script = dir.join("pay.py");
    std::fs::write(&script, snippet(&page, "python")).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .env("PRIVATE_KEY", obol_devnet::DEV_KEYS[2])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "200 {\"ok\":true}\n");

    let obol = snippet(&page, "obol");
    assert!(obol.starts_with("obol buy pay '"), "{obol}");
    let command = obol.replacen("obol", env!("CARGO_BIN_EXE_obol"), 1);
    let out = Command::new("sh")
        .args(["-c", &command])
        .env("OBOL_CONFIG_DIR", dir.join("config"))
        .env("OBOL_DATA_DIR", dir.join("data"))
        .env("OBOL_STATE_DIR", dir.join("state"))
        .env("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[3])
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {}", stderr(&out));
    assert_eq!(stdout(&out), "{\"ok\":true}");
    assert!(
        stderr(&out).starts_with("paid 0.001 USDC"),
        "{}",
        stderr(&out)
    );
}
