//! Discovery: registered agents from the logs, then the ones whose documents (served by a
//! loopback HTTP server, or inline as data: URIs) advertise x402 services.

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine as _;
use obol_erc8004::fetch::fetch_all;
use obol_erc8004::{
    AddressPolicy, DocumentFetcher, Erc8004Error, RegistrationDocument, RegistrationRef, Service,
    fetch_urls, x402_agents,
};
use tokio::net::TcpListener;

use crate::Fixture;

fn seller(registry: &obol_erc8004::AgentRegistry, agent_id: u64) -> RegistrationDocument {
    let mut doc = RegistrationDocument::active("weather", "x402 payment-gated http service");
    doc.services = vec![Service::web("https://seller.example/services/weather")];
    doc.registrations = vec![RegistrationRef::new(registry, agent_id)];
    doc
}

/// Serves `/seller.json`, `/copied.json`, `/tombstone.json`, `/huge.json`, `/broken.json`,
/// `/slow.json` (answers after a minute) and `/redirect` (to `/seller.json`).
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
        )
        .route(
            "/slow.json",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "{}"
            }),
        )
        .route(
            "/redirect",
            get(|| async { axum::response::Redirect::temporary("/seller.json") }),
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
    let deadline = Instant::now() + Duration::from_secs(10);
    let outcomes = fetch_all(&fetcher, agents.clone(), deadline).await;
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

    let discovery = x402_agents(&fetcher, &registry, agents, deadline).await;
    let unreadable: Vec<u64> = discovery
        .unreadable
        .iter()
        .map(|(a, _)| u64::try_from(a.agent_id).unwrap())
        .collect();
    assert_eq!(unreadable, [3, 4, 6], "huge, broken, ipfs");
    let found = discovery.agents;
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

/// Discovery reads untrusted URIs: a public-only fetcher refuses loopback hosts (IP literals,
/// names resolving there, redirects to them) before any request reaches them.
#[tokio::test]
async fn a_public_only_fetcher_refuses_non_public_hosts() {
    let fx = Fixture::start().await;
    let base = documents(*fx.client(1).registry()).await;
    let port = base.rsplit(':').next().unwrap();
    let timeout = Duration::from_secs(2);
    let public_only = DocumentFetcher::with_policy(timeout, AddressPolicy::PublicOnly).unwrap();
    let any = DocumentFetcher::new(timeout).unwrap();
    assert_eq!(public_only.policy(), AddressPolicy::PublicOnly);
    for uri in [
        format!("{base}/seller.json"),
        format!("http://localhost:{port}/seller.json"),
        format!("http://[::ffff:127.0.0.1]:{port}/seller.json"),
        format!("http://0.0.0.0:{port}/seller.json"),
    ] {
        let err = public_only.fetch(&uri).await.unwrap_err();
        assert!(
            matches!(err, Erc8004Error::NonPublicAddress { .. }),
            "{uri}: {err}"
        );
        assert!(err.to_string().contains("not a public address"), "{err}");
    }
    // The same documents for a fetcher that may (a URL the user typed).
    assert!(any.fetch(&format!("{base}/seller.json")).await.is_ok());
    assert!(any.fetch(&format!("{base}/redirect")).await.is_ok());
    // data: URIs involve no host.
    let inline = base64::engine::general_purpose::STANDARD.encode(
        seller(fx.client(1).registry(), 0)
            .to_json_pretty()
            .as_bytes(),
    );
    assert!(
        public_only
            .fetch(&format!("data:application/json;base64,{inline}"))
            .await
            .is_ok()
    );
}

/// One deadline bounds a whole batch: what is not done by then is reported as timed out, the
/// rest as usual.
#[tokio::test]
async fn a_deadline_bounds_the_batch() {
    let fx = Fixture::start().await;
    let base = documents(*fx.client(1).registry()).await;
    let fetcher = DocumentFetcher::new(Duration::from_secs(30)).unwrap();
    let mut urls = vec![format!("{base}/seller.json")];
    urls.extend((0..10).map(|_| format!("{base}/slow.json")));
    urls.push(format!("{base}/broken.json"));
    let started = Instant::now();
    let outcomes = fetch_urls(
        &fetcher,
        urls.clone(),
        4096,
        started + Duration::from_millis(500),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
    assert_eq!(outcomes.len(), urls.len());
    assert_eq!(outcomes[0].0, urls[0]);
    assert!(outcomes[0].1.is_ok());
    for (_, slow) in &outcomes[1..11] {
        assert!(
            matches!(slow, Err(Erc8004Error::FetchTimedOut { .. })),
            "{slow:?}"
        );
    }
    // Queued behind eight slow requests, the last one never started in time.
    assert!(matches!(
        outcomes[11].1,
        Err(Erc8004Error::FetchTimedOut { .. })
    ));
    // Oversized bodies are refused at the cap given.
    let small = fetch_urls(
        &fetcher,
        vec![format!("{base}/seller.json")],
        10,
        Instant::now() + Duration::from_secs(5),
    )
    .await;
    assert!(
        small[0]
            .1
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("larger than 10 bytes"),
        "{:?}",
        small[0].1
    );
    // A request's own timeout counts as timed out too.
    let impatient = DocumentFetcher::new(Duration::from_millis(200)).unwrap();
    let err = impatient
        .fetch(&format!("{base}/slow.json"))
        .await
        .unwrap_err();
    assert!(matches!(err, Erc8004Error::FetchTimedOut { .. }), "{err}");
}

fn agents_block(agents: &[obol_erc8004::RegisteredAgent], index: usize) -> u64 {
    agents[index].registered_block
}
