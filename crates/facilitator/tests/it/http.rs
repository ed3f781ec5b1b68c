//! The HTTP service driven by our remote client, and the client against other facilitators'
//! status conventions.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use obol_devnet::USDC;
use obol_facilitator::http::{ClientOptions, RemoteFacilitator, ServerOptions, router, serve};
use obol_facilitator::{Facilitator, FacilitatorError};
use obol_testkit::http::Fetch as _;
use serde_json::json;

use crate::{Fixture, simple_payment, usdc_requirement};

/// Serves `app` on a free loopback port; returns its base URL.
async fn spawn(app: Router) -> String {
    let (listener, url) = obol_testkit::http::bind().await;
    tokio::spawn(serve(listener, app, std::future::pending()));
    url
}

#[tokio::test]
async fn remote_client_against_our_service() {
    let fixture = Fixture::start().await;
    let options = ServerOptions {
        auth_token: Some("s3cret".into()),
        body_limit: 0,
    };
    let base = spawn(router(fixture.facilitator.clone(), options)).await;
    let client = RemoteFacilitator::new(
        &format!("{base}/"),
        ClientOptions {
            bearer: Some("s3cret".into()),
            ..ClientOptions::default()
        },
    )
    .unwrap();

    let supported = client.supported().await.unwrap();
    let kinds: Vec<(&str, &str)> = supported
        .kinds
        .iter()
        .map(|k| (k.scheme.as_str(), k.network.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("exact", "eip155:84532"),
            ("upto", "eip155:84532"),
            ("exact", "base-sepolia")
        ]
    );
    let signer = fixture
        .facilitator
        .signer_address(84532)
        .unwrap()
        .to_checksum(None);
    // upto buyers sign for the key that settles.
    assert_eq!(
        supported.kinds[1].extra.as_ref().unwrap()["facilitatorAddress"],
        json!(signer)
    );
    assert_eq!(supported.signers["eip155:*"], json!([signer]));

    // A remote facilitator cannot read the chain for its caller.
    let buyer = fixture.buyer(1).address();
    assert_eq!(client.balance(84532, USDC, buyer).await.unwrap(), None);

    let request = simple_payment(&fixture.buyer(1), &usdc_requirement(5_000));
    assert!(client.verify(&request).await.unwrap().is_valid);
    let settled = client.settle(&request).await.unwrap();
    assert!(settled.success, "{settled:?}");

    // An invalid payment is an answer (200 + isValid:false), not an error.
    let verified = client.verify(&request).await.unwrap();
    assert_eq!(
        verified.invalid_reason.as_deref(),
        Some("invalid_exact_evm_nonce_already_used")
    );

    // Without the token: 401.
    let anonymous = RemoteFacilitator::new(&base, ClientOptions::default()).unwrap();
    let err = anonymous.verify(&request).await.unwrap_err();
    assert!(
        matches!(
            err,
            FacilitatorError::Remote {
                status: Some(401),
                retriable: false,
                ..
            }
        ),
        "{err}"
    );

    // Malformed bodies: 400 with an x402-shaped reason; health and metrics are open.
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/verify"))
        .bearer_auth("s3cret")
        .body("{\"x402Version\":9,\"paymentPayload\":{},\"paymentRequirements\":{}}")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["isValid"], false);
    assert_eq!(body["invalidReason"], "invalid_x402_version");
    let response = http
        .post(format!("{base}/settle"))
        .bearer_auth("s3cret")
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errorReason"], "invalid_payload");
    let huge = vec![b'x'; 200 * 1024];
    let response = http
        .post(format!("{base}/verify"))
        .bearer_auth("s3cret")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let health: serde_json::Value = http.get(format!("{base}/healthz")).fetch_json().await;
    assert_eq!(health["status"], "ok");
    let metrics = http.get(format!("{base}/metrics")).fetch_text().await;
    assert!(
        metrics.contains("obol_x402_facilitator_requests_total"),
        "{metrics}"
    );
}

/// A facilitator that answers every POST with a fixed status and body.
async fn canned(status: u16, body: &'static str) -> RemoteFacilitator {
    let app = Router::new().route(
        "/{*path}",
        post(move || async move {
            (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                body,
            )
        }),
    );
    RemoteFacilitator::new(&spawn(app).await, ClientOptions::default()).unwrap()
}

#[tokio::test]
async fn client_tolerates_every_status_convention() {
    let request = simple_payment(&obol_x402::LocalSigner::random(), &usdc_requirement(1));

    // x402-rs: invalid payments are 400 with a body.
    let x402_rs = canned(400, r#"{"isValid":false,"invalidReason":"invalid_signature","invalidReasonDetails":"bad","payer":""}"#).await;
    let verified = x402_rs.verify(&request).await.unwrap();
    assert_eq!(
        verified.invalid_reason.as_deref(),
        Some("invalid_signature")
    );
    // Permit2 allowance: 412 with a body.
    let precondition = canned(
        412,
        r#"{"isValid":false,"invalidReason":"permit2_allowance_required"}"#,
    )
    .await;
    assert!(!precondition.verify(&request).await.unwrap().is_valid);
    // A settle failure as a 500 with a body is still an answer.
    let failed = canned(
        500,
        r#"{"success":false,"errorReason":"unexpected_error","transaction":"","network":""}"#,
    )
    .await;
    assert!(!failed.settle(&request).await.unwrap().success);
    // Gateways in front of a facilitator: 502/503/504 are retriable.
    let down = canned(503, "<html>upstream down</html>").await;
    let err = down.verify(&request).await.unwrap_err();
    assert!(err.retriable(), "{err}");
    // A 500 without an x402 body is not retriable.
    let broken = canned(500, "Internal Server Error").await;
    let err = broken.verify(&request).await.unwrap_err();
    assert!(
        !err.retriable() && err.to_string().contains("HTTP 500"),
        "{err}"
    );
    // A 200 that is not a verify response.
    let nonsense = canned(200, r#"{"hello":"world"}"#).await;
    assert!(nonsense.verify(&request).await.is_err());
    // Nobody listening: retriable.
    let closed = RemoteFacilitator::new("http://127.0.0.1:1", ClientOptions::default()).unwrap();
    let err = closed.verify(&request).await.unwrap_err();
    assert!(
        err.retriable() && err.to_string().contains("unreachable"),
        "{err}"
    );
}
