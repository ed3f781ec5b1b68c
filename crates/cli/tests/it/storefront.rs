//! The storefront page rendered by a real browser, branded with hostile strings.

use std::path::Path;
use std::time::Duration;

use crate::obol_in;
use crate::stack::{PAY_TO, StackGuard, fetch, gateway, upstream};

/// The storefront page in headless Chromium (Debian's package): it renders every listed offer
/// with its price and probe command; a screenshot is kept under the test's target directory.
#[tokio::test]
async fn the_storefront_renders_in_a_browser() {
    let chromium = match std::env::var("OBOL_CHROMIUM") {
        Ok(path) if !path.is_empty() => path,
        _ if std::env::var_os("OBOL_SKIP_BROWSER").is_some() => return,
        _ => ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chromium is needed (scripts/install-tools installs it); set OBOL_SKIP_BROWSER=1 to skip")
            .to_owned(),
    };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    crate::stack_init(dir, "127.0.0.1:0", &[]);
    assert!(
        obol_in(
            dir,
            &["stack", "up", "--public-url", "https://seller.example"],
            &[],
            None
        )
        .status
        .success()
    );
    let _guard = StackGuard(dir);
    // A bad value is refused naming the field; hostile text is accepted and shown as text.
    let refused = obol_in(
        dir,
        &[
            "sell",
            "info",
            "set",
            "--logo-url",
            "javascript:alert(1)",
            "--theme",
            "neon",
        ],
        &[],
        None,
    );
    assert!(!refused.status.success());
    let says = crate::stderr(&refused);
    assert!(
        says.contains("branding.logoUrl: must be an http(s) URL")
            && says.contains("branding.theme"),
        "{says}"
    );
    let branded = obol_in(
        dir,
        &[
            "sell",
            "info",
            "set",
            "--display-name",
            "<img src=x onerror=alert(1)> Seller & Co",
            "--tagline",
            "APIs \"priced\" per call",
            "--theme",
            "light",
            "--accent-color",
            "#c2410c",
            "--description",
            "We sell <b>weather</b> and market data.",
            "--contact-email",
            "sales@seller.example",
        ],
        &[],
        None,
    );
    assert!(branded.status.success(), "{}", crate::stderr(&branded));
    for (name, price) in [("weather-api", "0.001"), ("market-data", "0.02")] {
        let sell = [
            "sell",
            "http",
            name,
            "--upstream",
            &upstream,
            "--pay-to",
            PAY_TO,
            "--per-request",
            price,
            "--chain",
            "base-sepolia",
            "--no-register",
            "--description",
            "A <b>test</b> offer",
        ];
        assert!(obol_in(dir, &sell, &[], None).status.success());
    }
    for _ in 0..500 {
        let (_, body) = fetch(&format!("{}/api/services.json", gateway(dir))).await;
        if body.contains("market-data") && body.contains("weather-api") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = format!("{}/", gateway(dir));
    let profile = tempfile::tempdir().unwrap();
    let browser = |extra: &[&str]| {
        std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = browser(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    for needle in [
        "weather-api",
        "market-data",
        "0.001 USDC/request",
        "0.02 USDC/request",
        "curl -i -X GET 'https://seller.example/services/weather-api'",
        "Python (x402 SDK)",
    ] {
        assert!(
            dom.contains(needle),
            "{needle} missing from the rendered page"
        );
    }
    assert!(
        dom.contains("A &lt;b&gt;test&lt;/b&gt; offer"),
        "seller text is escaped, not rendered as markup"
    );
    for needle in [
        "&lt;img src=x onerror=alert(1)&gt; Seller &amp; Co",
        "We sell &lt;b&gt;weather&lt;/b&gt; and market data.",
        "mailto:sales@seller.example",
        "button{background:#c2410c}",
    ] {
        assert!(dom.contains(needle), "branding: {needle} missing");
    }
    assert!(
        !dom.contains("<img src=\"x\""),
        "no markup from the branding"
    );
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("storefront.png");
    let _ = std::fs::remove_file(&shot);
    browser(&[
        "--window-size=1100,900",
        &format!("--screenshot={}", shot.display()),
    ]);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture ({} bytes)",
        png.len()
    );
}
