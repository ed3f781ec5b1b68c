//! HTTPS on the public listener: a buyer trusting a CA made here pays over TLS; a certificate
//! renewed on disk is served to new connections without a restart; a broken renewal keeps the
//! previous certificate in service; a pair that cannot serve is refused at start, naming the
//! file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use obol_gateway::guard::ReplayGuard;
use obol_gateway::server::{GatewayConfig, gateway};
use obol_gateway::tls::{Tls, TlsError, TlsFiles, serve_tls};
use obol_testkit::tls::TestCa;
use obol_x402::primitives::U256;

use crate::{Fixture, PAY_TO, challenge_of, sign};

/// Writes a file the way a renewal tool does: a temporary name, then a rename.
fn replace(path: &Path, text: &str) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// A client that trusts only `ca`.
fn client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .tls_info(true)
        .build()
        .unwrap()
}

/// The certificate a new connection to `url` is served (DER): a new client each time, so no
/// pooled connection or resumed TLS session shows an earlier one.
async fn served_certificate(ca: &TestCa, url: &str) -> Vec<u8> {
    let response = client(ca).get(url).send().await.unwrap();
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the peer certificate")
        .to_vec()
}

#[tokio::test]
async fn a_buyer_pays_over_https_and_a_renewed_certificate_is_served_without_a_restart() {
    let fixture = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let ca = TestCa::new();
    let first = ca.leaf("first");
    std::fs::write(&files.cert, &first.cert_pem).unwrap();
    std::fs::write(&files.key, &first.key_pem).unwrap();

    let tls = Tls::from_files(files.clone()).unwrap();
    let watching = tls.watch(Duration::from_millis(50));
    let guard = Arc::new(ReplayGuard::in_memory().unwrap());
    let served = gateway(
        fixture.routes.clone(),
        fixture.probe.clone(),
        guard,
        GatewayConfig::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let server_tls = tls.clone();
    tokio::spawn(async move {
        serve_tls(listener, &server_tls, served.public, std::future::pending()).await
    });

    let client = client(&ca);
    let url = format!("{base}/services/echo/echo");
    let unpaid = client.get(&url).send().await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let required = challenge_of(&unpaid);
    assert!(
        required.resource.url.starts_with("https://"),
        "the 402 names the HTTPS URL: {}",
        required.resource.url
    );
    let buyer = fixture.buyer(5);
    let before = fixture.usdc(PAY_TO).await;
    let paid = client
        .get(&url)
        .header(
            obol_x402::header::PAYMENT_SIGNATURE,
            sign(&buyer, &required, 0),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    assert_eq!(fixture.usdc(PAY_TO).await, before + U256::from(1000));
    assert_eq!(served_certificate(&ca, &url).await, first.der);

    // Renewed on disk: new connections get the new certificate, without a restart.
    let second = ca.leaf("second");
    replace(&files.key, &second.key_pem);
    replace(&files.cert, &second.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(&ca, &url).await != second.der {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken renewal (a key that is not the certificate's): the previous pair stays.
    replace(&files.cert, &ca.leaf("third").cert_pem);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_certificate(&ca, &url).await, second.der);
    watching.abort();
}

#[test]
fn a_pair_that_cannot_serve_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let ca = TestCa::new();
    let cert = ca.leaf("one").cert_pem;
    let other_key = ca.leaf("two").key_pem;

    let missing = Tls::from_files(files.clone()).unwrap_err();
    assert!(matches!(missing, TlsError::Read { .. }), "{missing}");
    assert!(missing.to_string().contains("cert.pem"), "{missing}");

    std::fs::write(&files.cert, "not a certificate").unwrap();
    std::fs::write(&files.key, &other_key).unwrap();
    let error = Tls::from_files(files.clone()).unwrap_err();
    assert!(matches!(error, TlsError::NoCertificate(_)), "{error}");

    std::fs::write(&files.cert, &cert).unwrap();
    let error = Tls::from_files(files.clone()).unwrap_err();
    assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
    assert!(error.to_string().contains("key.pem"), "{error}");

    std::fs::write(
        &files.key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let error = Tls::from_files(files).unwrap_err();
    assert!(matches!(error, TlsError::NoKey { .. }), "{error}");
}
