//! Pools spent against a real gateway: a devnet, the embedded facilitator and a test seller,
//! all on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod proxy;
mod reconcile;
mod seller;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use obol_buyer::{AuthPool, Offered, PoolError, PreSigned, PresignOptions, Prober, presign};
use obol_chain::ChainClient;
use obol_devnet::{Devnet, USDC};
use obol_facilitator::evm::ChainSetup;
use obol_facilitator::{EvmFacilitator, FacilitatorConfig};
use obol_gateway::guard::ReplayGuard;
use obol_gateway::server::{GatewayConfig, app};
use obol_gateway::{Offer, OfferKind, PaymentOption, Route, RouteTable, Routes};
use obol_testkit::accounts::PAY_TO;
use obol_testkit::http::spawn;
use obol_testkit::now;
use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_SIGNATURE};
use obol_x402::pricing::{Price, PriceUnit};
use obol_x402::primitives::{Address, U256};
use obol_x402::token::TokenRegistry;
use obol_x402::wire::v2;

const CHAT: &str = "/services/llm/v1/chat/completions";

/// The seller's model: chat answers 200 unless the prompt says "fail"; `"stream":true` gets
/// three SSE events.
async fn chat(body: String) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if body.contains("fail") {
        (StatusCode::INTERNAL_SERVER_ERROR, "model crashed").into_response()
    } else if body.contains("\"stream\":true") {
        let events = "data: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: [DONE]\n\n";
        ([("content-type", "text/event-stream")], events).into_response()
    } else {
        (
            StatusCode::OK,
            r#"{"choices":[{"message":{"content":"hi"}}]}"#,
        )
            .into_response()
    }
}

/// The devnet's USDC (the Base Sepolia address) on base-sepolia, `amount` atomic units to PAY_TO.
fn requirement(amount: u64) -> v2::PaymentRequirements {
    obol_testkit::x402::requirement("USDC", amount, PAY_TO)
}

fn route(upstream: &str, amount: u64) -> Route {
    let token = TokenRegistry::builtin()
        .resolve("USDC", "base-sepolia")
        .unwrap()
        .clone();
    let price = Price {
        unit: PriceUnit::PerRequest,
        amount: "0.001".parse().unwrap(),
    };
    let option = PaymentOption::exact(requirement(amount), price, &token);
    Route::below_prefix(Offer {
        description: "a paid model".into(),
        ..Offer::at_services(
            "llm",
            OfferKind::Inference,
            upstream.parse().unwrap(),
            vec![option],
        )
    })
}

struct Seller {
    devnet: Devnet,
    client: ChainClient,
    routes: Arc<Routes>,
    upstream: String,
    gateway: String,
    dir: tempfile::TempDir,
}

impl Seller {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let devnet = Devnet::start().await.unwrap();
        let client = ChainClient::connect("base-sepolia", &devnet.endpoints()).unwrap();
        let facilitator = EvmFacilitator::new(
            FacilitatorConfig::default(),
            vec![ChainSetup {
                client: client.clone(),
                signer: LocalSigner::from_private_key_hex(devnet.key(9)).unwrap(),
            }],
        )
        .unwrap();
        let upstream = spawn(Router::new().route("/v1/chat/completions", post(chat))).await;
        let routes = Arc::new(Routes::new());
        routes.store(RouteTable::new(vec![route(&upstream, 1000)]));
        let guard = Arc::new(ReplayGuard::open(&dir.path().join("guard.sqlite")).unwrap());
        let router = app(
            routes.clone(),
            Arc::new(facilitator),
            guard,
            GatewayConfig::default(),
        )
        .unwrap();
        let gateway = spawn(router).await;
        Self {
            devnet,
            client,
            routes,
            upstream,
            gateway,
            dir,
        }
    }

    async fn usdc(&self, owner: Address) -> U256 {
        self.client.token_balance(USDC, owner).await.unwrap()
    }

    async fn probe(&self) -> Offered {
        Prober::new(None, Duration::from_secs(5))
            .unwrap()
            .chat(&format!("{}{CHAT}", self.gateway))
            .await
            .unwrap()
    }

    /// Probes and pre-signs `count` authorizations (valid for an hour) by `buyer`.
    async fn presigned(&self, buyer: &LocalSigner, count: usize) -> (Offered, Vec<PreSigned>) {
        let offered = self.probe().await;
        assert_eq!(
            offered.accepts.len(),
            1,
            "CAIP-2 and legacy listings fold into one"
        );
        let signed = presign(
            buyer,
            &offered.accepts[0],
            Some(&offered.resource),
            PresignOptions {
                count,
                ttl_secs: 3600,
                now: now(),
            },
            &|_| {},
        )
        .unwrap();
        (offered, signed)
    }

    /// Probes, pre-signs `count` with devnet key `buyer`, and fills a pool file.
    async fn buy(&self, buyer: &LocalSigner, count: usize) -> Arc<AuthPool> {
        let (_, signed) = self.presigned(buyer, count).await;
        let pool = AuthPool::open(&self.pool_path()).unwrap();
        assert_eq!(pool.add("llm", &signed).unwrap(), count);
        pool
    }

    fn pool_path(&self) -> std::path::PathBuf {
        self.dir.path().join("auths.sqlite")
    }

    /// One paid chat call with the pool's next authorization; confirms it on success.
    async fn call(&self, pool: &Arc<AuthPool>, prompt: &str) -> Result<u16, PoolError> {
        let asked = self.probe().await.accepts.remove(0);
        let held = pool.take("llm", &asked, now())?;
        let response = reqwest::Client::new()
            .post(format!("{}{CHAT}", self.gateway))
            .header(PAYMENT_SIGNATURE, header::encode(held.payload()).unwrap())
            .body(format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"{prompt}"}}]}}"#
            ))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status < 400 {
            held.confirm()?;
        }
        Ok(status)
    }
}

#[tokio::test]
async fn a_pool_of_five_pays_exactly_five_times() {
    let seller = Seller::start().await;
    let buyer = LocalSigner::from_private_key_hex(seller.devnet.key(3)).unwrap();
    let pool = seller.buy(&buyer, 5).await;
    let (seller_before, buyer_before) = (
        seller.usdc(PAY_TO.parse().unwrap()).await,
        seller.usdc(buyer.address()).await,
    );
    for _ in 0..5 {
        assert_eq!(seller.call(&pool, "hello").await.unwrap(), 200);
    }
    let error = seller.call(&pool, "hello").await.unwrap_err();
    assert!(
        error.to_string().contains("pre-signed auth pool exhausted"),
        "{error}"
    );
    let price = U256::from(5 * 1000);
    assert_eq!(
        seller.usdc(PAY_TO.parse().unwrap()).await,
        seller_before + price
    );
    assert_eq!(seller.usdc(buyer.address()).await, buyer_before - price);
}

#[tokio::test]
async fn a_seller_failure_releases_the_authorization_for_the_next_call() {
    let seller = Seller::start().await;
    let buyer = LocalSigner::from_private_key_hex(seller.devnet.key(4)).unwrap();
    let pool = seller.buy(&buyer, 1).await;
    let before = seller.usdc(buyer.address()).await;
    assert_eq!(seller.call(&pool, "fail").await.unwrap(), 500);
    assert_eq!(seller.usdc(buyer.address()).await, before, "not charged");
    assert_eq!(pool.counts("llm").unwrap().available, 1, "released");
    assert_eq!(seller.call(&pool, "hello").await.unwrap(), 200);
    assert_eq!(
        seller.usdc(buyer.address()).await,
        before - U256::from(1000)
    );
}

#[tokio::test]
async fn a_crash_mid_call_never_reuses_and_a_price_change_is_refused() {
    let seller = Seller::start().await;
    let buyer = LocalSigner::from_private_key_hex(seller.devnet.key(5)).unwrap();
    let pool = seller.buy(&buyer, 2).await;
    let asked = seller.probe().await.accepts.remove(0);
    std::mem::forget(pool.take("llm", &asked, now()).unwrap()); // the process dies here
    drop(pool);
    let pool = AuthPool::open(&seller.pool_path()).unwrap();
    let counts = pool.counts("llm").unwrap();
    assert_eq!((counts.burned, counts.available), (1, 1));

    // The seller doubles its price: the remaining authorization is not spent.
    seller
        .routes
        .store(RouteTable::new(vec![route(&seller.upstream, 2000)]));
    let before = seller.usdc(buyer.address()).await;
    match seller.call(&pool, "hello").await.unwrap_err() {
        PoolError::Mismatch {
            term,
            asked,
            signed,
        } => {
            assert_eq!(
                (term, asked.as_str(), signed.as_str()),
                ("amount", "2000", "1000")
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(pool.counts("llm").unwrap().available, 1, "kept for later");
    assert_eq!(seller.usdc(buyer.address()).await, before);
}

#[tokio::test]
async fn probes_name_themselves_and_classify_unpaid_answers() {
    // A seller that only answers 402 to obol-buyer (as WAF-fronted sellers may) and 200 to anyone else.
    async fn picky(headers: axum::http::HeaderMap) -> (StatusCode, String) {
        let agent = headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if agent.starts_with("obol-buyer/") || agent == "custom-agent/1" {
            let body =
                serde_json::json!({"x402Version": 2, "resource": {"url": "u"}, "accepts": []});
            (StatusCode::PAYMENT_REQUIRED, body.to_string())
        } else {
            (StatusCode::OK, "free".into())
        }
    }
    let url = spawn(Router::new().route("/x", axum::routing::get(picky))).await;
    let url = format!("{url}/x");
    for agent in [None, Some("custom-agent/1")] {
        let prober = Prober::new(agent, Duration::from_secs(5)).unwrap();
        let error = prober.get(&url).await.unwrap_err();
        assert!(
            error.to_string().contains("lists no accepted payment"),
            "{error}"
        );
    }
    let error = Prober::new(Some("curl/8"), Duration::from_secs(5))
        .unwrap()
        .get(&url)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "not payment gated: expected 402, got 200"
    );
    let error = Prober::new(None, Duration::from_secs(5))
        .unwrap()
        .get("http://127.0.0.1:9/nothing")
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("probe failed"), "{error}");
}

#[tokio::test]
async fn rows_signed_for_other_terms_do_not_block_the_matching_ones() {
    let seller = Seller::start().await;
    let buyer = LocalSigner::from_private_key_hex(seller.devnet.key(6)).unwrap();
    // Older rows signed when the seller asked 2000, then a refill at today's 1000.
    let (offered, current) = seller.presigned(&buyer, 2).await;
    let mut dearer = offered.accepts[0].clone();
    dearer.amount = "2000".parse().unwrap();
    let stale = presign(
        &buyer,
        &dearer,
        Some(&offered.resource),
        PresignOptions {
            count: 2,
            ttl_secs: 3600,
            now: now(),
        },
        &|_| {},
    )
    .unwrap();
    let pool = AuthPool::open(&seller.pool_path()).unwrap();
    assert_eq!(pool.add("llm", &stale).unwrap(), 2);
    assert_eq!(pool.add("llm", &current).unwrap(), 2);

    let before = seller.usdc(buyer.address()).await;
    for _ in 0..2 {
        assert_eq!(seller.call(&pool, "hello").await.unwrap(), 200);
    }
    assert_eq!(
        seller.usdc(buyer.address()).await,
        before - U256::from(2000),
        "two calls at today's price"
    );
    // Only the stale rows are left: refused, naming the price they were signed for.
    match seller.call(&pool, "hello").await.unwrap_err() {
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
    let counts = pool.counts("llm").unwrap();
    assert_eq!((counts.available, counts.spent), (2, 2));
}
