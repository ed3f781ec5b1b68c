//! Manifests with fields the stack does not implement are refused where they come in: a JSON
//! body extracted as the daemon's admin API extracts it (`axum::Json<Object<S>>`) is a 4xx that
//! names every such field, and an offer with only implemented fields passes unchanged.

use axum::Router;
use axum::routing::put;
use obol_control::ServiceOffer;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A server that echoes the offer it extracted.
async fn echo() -> String {
    let app = Router::new().route(
        "/offer",
        put(|axum::Json(offer): axum::Json<ServiceOffer>| async move { axum::Json(offer) }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/offer", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn manifest() -> Value {
    json!({
        "apiVersion": "obol.org/v1alpha1",
        "kind": "ServiceOffer",
        "metadata": {"name": "weather", "namespace": "default"},
        "spec": {
            "type": "http",
            "upstream": {"url": "http://127.0.0.1:9000"},
            "payment": {
                "scheme": "exact",
                "network": "base-sepolia",
                "payTo": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
                "price": {"perRequest": "0.001"}
            },
            "path": "/services/weather"
        }
    })
}

#[tokio::test]
async fn the_originals_fields_are_a_422_naming_them() {
    let url = echo().await;
    let client = reqwest::Client::new();
    let ok = client.put(&url).json(&manifest()).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let echoed: Value = ok.json().await.unwrap();
    assert_eq!(echoed["spec"], manifest()["spec"], "applied unchanged");

    let mut original = manifest();
    original["spec"]["async"] = json!({"enabled": true});
    original["spec"]["branding"] = json!({"displayName": "Shop"});
    original["spec"]["payment"]["price"]["perCall"] = json!("1");
    let refused = client.put(&url).json(&original).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    let text = refused.text().await.unwrap();
    for expected in [
        "spec.payment.price.perCall",
        "spec.async is not supported yet",
        "spec.branding is not supported yet",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
}
