//! Discovery: registered agents from the logs, then the ones whose documents (served by a
//! loopback HTTP server, or inline as data: URIs) advertise x402 services.

use std::time::Duration;

use alloy::primitives::U256;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine as _;
use obol_erc8004::fetch::fetch_all;
use obol_erc8004::{
    DocumentFetcher, Erc8004Error, RegistrationDocument, RegistrationRef, Service, x402_agents,
};
use tokio::net::TcpListener;

use crate::Fixture;

fn seller(registry: &obol_erc8004::AgentRegistry, agent_id: u64) -> RegistrationDocument {
    let mut doc = RegistrationDocument::active("weather", "x402 payment-gated http service");
    doc.services = vec![Service::web("https://seller.example/services/weather")];
    doc.registrations = vec![RegistrationRef::new(registry, agent_id)];
    doc
}

/// Serves `/seller.json`, `/copied.json`, `/tombstone.json`, `/huge.json`, `/broken.json`.
async fn documents(registry: obol_erc8004::AgentRegistry) -> String {
    let good = seller(&registry, 0).to_json_pretty();
    // A document copied from agent 0 by another agent: advertises x402, claims agent 0.
    let copied = good.clone();
    let tombstone = RegistrationDocument::tombstone(
        "default",
        "Agent default (deactivated)",
        None,
        vec![RegistrationRef::new(&registry, 2)],
    )
    .to_json_pretty();
    let huge = format!(
        "{{\"type\":\"{}\",\"pad\":\"{}\"}}",
        obol_erc8004::document::REGISTRATION_TYPE,
        "x".repeat(300 * 1024)
    );
    let app = Router::new()
        .route("/seller.json", get(move || async move { good }))
        .route("/copied.json", get(move || async move { copied }))
        .route("/tombstone.json", get(move || async move { tombstone }))
        .route("/huge.json", get(move || async move { huge }))
        .route(
            "/broken.json",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn discover_lists_agents_and_keeps_the_x402_sellers() {
    let fx = Fixture::start().await;
    let registry = *fx.client(1).registry();
    let base = documents(registry).await;

    // Agent 0: the seller (registered with a stale URI, then moved to its document).
    let seller_client = fx.client(1);
    let id = seller_client
        .register(&format!("{base}/old.json"), &[], None)
        .await
        .unwrap()
        .agent_id;
    assert_eq!(id, U256::ZERO);
    seller_client
        .ensure_registered(Some(id), &format!("{base}/seller.json"), None)
        .await
        .unwrap();
    // Agents 1..: a copier, a tombstone, an oversized document, a failing server, an inline
    // seller document (data: URI), an IPFS URI.
    let inline = base64::engine::general_purpose::STANDARD
        .encode(seller(&registry, 5).to_json_pretty().as_bytes());
    let uris = [
        format!("{base}/copied.json"),
        format!("{base}/tombstone.json"),
        format!("{base}/huge.json"),
        format!("{base}/broken.json"),
        format!("data:application/json;base64,{inline}"),
        "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".to_owned(),
    ];
    for (offset, uri) in uris.iter().enumerate() {
        let agent = fx
            .client(2 + offset)
            .register(uri, &[], None)
            .await
            .unwrap();
        assert_eq!(agent.agent_id, U256::from(offset + 1));
    }

    let agents = seller_client.discover(0, None).await.unwrap();
    assert_eq!(agents.len(), 7);
    assert_eq!(agents[0].agent_id, U256::ZERO);
    assert_eq!(agents[0].owner, fx.signer(1).address());
    assert_eq!(
        agents[0].uri,
        format!("{base}/seller.json"),
        "URIUpdated applied"
    );
    assert_eq!(agents[3].uri, uris[2]);
    // A window starting after the registrations sees nothing; one ending there sees agent 0.
    let head = alloy::providers::Provider::get_block_number(fx.chain.provider())
        .await
        .unwrap();
    assert!(
        seller_client
            .discover(head + 1, None)
            .await
            .unwrap()
            .is_empty()
    );
    let early = seller_client
        .discover(0, Some(agents_block(&agents, 0)))
        .await
        .unwrap();
    assert_eq!(early.len(), 1);
    assert_eq!(
        early[0].uri,
        format!("{base}/old.json"),
        "before the URI update"
    );

    let fetcher = DocumentFetcher::new(Duration::from_secs(2)).unwrap();
    let outcomes = fetch_all(&fetcher, agents.clone()).await;
    assert_eq!(outcomes.len(), 7);
    let huge = outcomes[3].1.as_ref().unwrap_err().to_string();
    assert!(huge.contains("larger than"), "{huge}");
    assert!(
        matches!(outcomes[4].1, Err(Erc8004Error::Fetch { ref reason, .. }) if reason == "HTTP 500")
    );
    assert!(
        outcomes[6]
            .1
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("ipfs")
    );

    let found = x402_agents(&fetcher, &registry, agents).await;
    let summary: Vec<(u64, bool)> = found
        .iter()
        .map(|d| {
            (
                u64::try_from(d.agent.agent_id).unwrap(),
                d.lists_registration,
            )
        })
        .collect();
    assert_eq!(summary, [(0, true), (1, false), (5, true)]);
    assert_eq!(
        found[0].document.endpoints().next(),
        Some(("web", "https://seller.example/services/weather"))
    );
}

fn agents_block(agents: &[obol_erc8004::RegisteredAgent], index: usize) -> u64 {
    agents[index].registered_block
}
