//! `PurchaseRequest`s reconciled against a real gateway: probe, load, serve, refill, refuse,
//! delete.

use std::sync::Arc;

use obol_buyer::reconcile::{PurchaseReconciler, pool_name};
use obol_buyer::{AuthPool, BuyerProxy, auths};
use obol_control::controller::Reconcile as _;
use obol_control::purchase::{PurchasePayment, PurchaseRequest, PurchaseRequestSpec};
use obol_control::reconcile::Action;
use obol_control::resource::{ConditionStatus, condition};
use obol_control::{SqliteStore, Store, StoreExt as _};
use obol_gateway::RouteTable;
use obol_x402::LocalSigner;
use serde_json::{Value, json};

use crate::{CHAT, Seller, route, spawn};

struct Buyer {
    store: Arc<dyn Store>,
    pool: Arc<AuthPool>,
    proxy: Arc<BuyerProxy>,
    reconciler: PurchaseReconciler,
    url: String,
}

impl Buyer {
    async fn start() -> Self {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let pool = AuthPool::in_memory().unwrap();
        let proxy =
            BuyerProxy::new(pool.clone(), None, obol_facilitator::http::metrics_handle()).unwrap();
        let url = spawn(proxy.router()).await;
        let reconciler =
            PurchaseReconciler::new(store.clone(), pool.clone(), proxy.clone(), None).unwrap();
        Self {
            store,
            pool,
            proxy,
            reconciler,
            url,
        }
    }

    async fn reconcile(&self, name: &str) -> PurchaseRequest {
        self.reconciler.reconcile("buy", name).await.unwrap();
        self.get(name).await
    }

    async fn get(&self, name: &str) -> PurchaseRequest {
        self.store
            .get::<PurchaseRequestSpec>("buy", name)
            .await
            .unwrap()
            .unwrap()
    }

    async fn chat(&self, model: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.url))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
    }
}

/// What failed, as `(type, reason, message)`, or `Ready`'s reason.
fn verdict(purchase: &PurchaseRequest) -> (String, String, String) {
    let conditions = &purchase.status.conditions;
    ["Probed", "AuthsSigned", "Configured", "Ready"]
        .iter()
        .filter_map(|t| condition(conditions, t))
        .find(|c| c.status != ConditionStatus::True)
        .or_else(|| condition(conditions, "Ready"))
        .map(|c| (c.type_.clone(), c.reason.clone(), c.message.clone()))
        .unwrap()
}

/// A request for `model` at the seller's chat URL with `count` authorizations from `key`.
async fn request(seller: &Seller, key: usize, count: usize, model: &str) -> PurchaseRequest {
    let signer = LocalSigner::from_private_key_hex(seller.devnet.key(key)).unwrap();
    let (offered, signed) = seller.presigned(&signer, count).await;
    let asked = &offered.accepts[0];
    PurchaseRequest::new(
        "buy",
        model,
        PurchaseRequestSpec {
            endpoint: format!("{}{CHAT}", seller.gateway),
            model: model.into(),
            count: u32::try_from(count).unwrap(),
            pre_signed_auths: auths::to_resource(&signed).unwrap(),
            auto_refill: None,
            payment: PurchasePayment::of(asked),
        },
    )
}

#[tokio::test]
async fn a_request_is_probed_loaded_served_refilled_and_deleted() {
    let seller = Seller::start().await;
    let buyer = Buyer::start().await;
    let mut wanted = request(&seller, 6, 3, "m1").await;
    buyer.store.apply(&wanted).await.unwrap();

    let ready = buyer.reconcile("m1").await;
    assert_eq!(
        verdict(&ready),
        (
            "Ready".into(),
            "Reconciled".into(),
            "served by the buyer proxy as paid/m1".into()
        )
    );
    assert_eq!(ready.status.public_model.as_deref(), Some("paid/m1"));
    assert_eq!((ready.status.remaining, ready.status.total_signed), (3, 3));
    assert_eq!(
        ready.status.probed_price.as_deref(),
        Some("1000"),
        "probed at reconcile time"
    );
    assert!(
        ready
            .metadata
            .finalizers
            .iter()
            .any(|f| f.contains("purchase"))
    );

    // Served: one paid call, then the counts move.
    let answer = buyer.chat("paid/m1").await;
    assert_eq!(answer.status(), 200);
    let counted = buyer.reconcile("m1").await;
    assert_eq!((counted.status.remaining, counted.status.spent), (2, 1));

    // Reconciling again adds nothing; a refill adds only the new authorizations.
    let refill = request(&seller, 6, 2, "m1").await;
    wanted
        .spec
        .pre_signed_auths
        .extend(refill.spec.pre_signed_auths);
    buyer.store.apply(&wanted).await.unwrap();
    let refilled = buyer.reconcile("m1").await;
    assert_eq!(
        (
            refilled.status.remaining,
            refilled.status.spent,
            refilled.status.total_signed
        ),
        (4, 1, 5)
    );
    let configured = condition(&refilled.status.conditions, "Configured").unwrap();
    assert_eq!(configured.message, "Wrote 5 auths to pool buy/m1 (2 new)");

    // The seller raises its price, then the spec changes: the new generation's probe fails,
    // but the pool loaded before is still served (its calls are refused as changed terms, not
    // as an unknown model).
    seller
        .routes
        .store(RouteTable::new(vec![route(&seller.upstream, 2000)]));
    wanted.spec.count += 1;
    buyer.store.apply(&wanted).await.unwrap();
    let (kind, reason, message) = verdict(&buyer.reconcile("m1").await);
    assert_eq!(
        (kind.as_str(), reason.as_str()),
        ("Probed", "PricingMismatch")
    );
    assert!(message.contains("but endpoint wants 2000"), "{message}");
    assert!(buyer.proxy.serves("buy/m1"));
    let refused = buyer.chat("paid/m1").await;
    assert_eq!(refused.status(), 402);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "payment_terms_changed", "{body}");

    // An edit moving the purchase to another endpoint takes effect only once that endpoint
    // checks out: meanwhile calls still go where the loaded pool pays.
    wanted.spec.endpoint = format!("{}/v1/chat/completions", seller.upstream);
    buyer.store.apply(&wanted).await.unwrap();
    assert_eq!(verdict(&buyer.reconcile("m1").await).1, "NotPaymentGated");
    let still: Value = buyer.chat("paid/m1").await.json().await.unwrap();
    assert_eq!(still["error"]["type"], "payment_terms_changed", "{still}");
    wanted.spec.endpoint = format!("{}{CHAT}", seller.gateway);
    buyer.store.apply(&wanted).await.unwrap();
    seller
        .routes
        .store(RouteTable::new(vec![route(&seller.upstream, 1000)]));

    // Deleted with a call under way (an authorization held): the proxy stops serving it at
    // once, the deletion waits for the call, then the pool is emptied.
    let asked = seller.probe().await.accepts[0].clone();
    let in_flight = buyer
        .pool
        .take("buy/m1", &asked, obol_config::time::unix_now())
        .unwrap();
    buyer
        .store
        .delete("PurchaseRequest", "buy", "m1")
        .await
        .unwrap();
    assert_eq!(
        buyer.reconciler.reconcile("buy", "m1").await.unwrap(),
        Action::Requeue(obol_buyer::reconcile::DRAIN_REQUEUE),
        "draining"
    );
    assert!(!buyer.proxy.serves(&pool_name("buy", "m1")));
    assert_eq!(buyer.chat("paid/m1").await.status(), 404, "no new calls");
    assert!(
        buyer
            .store
            .get::<PurchaseRequestSpec>("buy", "m1")
            .await
            .unwrap()
            .is_some(),
        "kept while a call is under way"
    );
    in_flight.release();
    assert_eq!(
        buyer.reconciler.reconcile("buy", "m1").await.unwrap(),
        Action::Done
    );
    assert!(
        buyer
            .store
            .get::<PurchaseRequestSpec>("buy", "m1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(!buyer.proxy.serves(&pool_name("buy", "m1")));
    assert_eq!(buyer.pool.counts("buy/m1").unwrap().available, 0);
    assert_eq!(buyer.chat("paid/m1").await.status(), 404);
}

#[tokio::test]
async fn wrong_prices_unpaid_endpoints_bad_auths_and_taken_models_are_refused() {
    let seller = Seller::start().await;
    let buyer = Buyer::start().await;

    // The request claims a price the seller does not ask.
    let mut cheap = request(&seller, 7, 1, "cheap").await;
    cheap.spec.payment.price = "999".into();
    buyer.store.apply(&cheap).await.unwrap();
    let (kind, reason, message) = verdict(&buyer.reconcile("cheap").await);
    assert_eq!(
        (kind.as_str(), reason.as_str()),
        ("Probed", "PricingMismatch")
    );
    assert!(message.starts_with("spec.price=999"), "{message}");
    assert!(message.contains("but endpoint wants 1000"), "{message}");

    // An endpoint that is not payment gated.
    let mut free = request(&seller, 7, 1, "free").await;
    free.spec.endpoint = format!("{}/v1/chat/completions", seller.upstream);
    buyer.store.apply(&free).await.unwrap();
    let (kind, reason, message) = verdict(&buyer.reconcile("free").await);
    assert_eq!(
        (kind.as_str(), reason.as_str(), message.as_str()),
        (
            "Probed",
            "NotPaymentGated",
            "not payment gated: expected 402, got 200"
        )
    );

    // An authorization whose flattened fields were edited after signing.
    let mut edited = request(&seller, 7, 2, "edited").await;
    edited.spec.pre_signed_auths[1].value = "1".into();
    buyer.store.apply(&edited).await.unwrap();
    let (kind, reason, message) = verdict(&buyer.reconcile("edited").await);
    assert_eq!(
        (kind.as_str(), reason.as_str()),
        ("AuthsSigned", "InvalidAuths")
    );
    assert!(
        message.starts_with("pre-signed authorization 1: value"),
        "{message}"
    );

    // An authorization without its payment.
    let mut bare = request(&seller, 7, 1, "bare").await;
    bare.spec.pre_signed_auths[0].payment = None;
    buyer.store.apply(&bare).await.unwrap();
    assert_eq!(verdict(&buyer.reconcile("bare").await).1, "InvalidAuths");

    // No authorizations at all.
    let mut empty = request(&seller, 7, 1, "empty").await;
    empty.spec.pre_signed_auths.clear();
    buyer.store.apply(&empty).await.unwrap();
    assert_eq!(verdict(&buyer.reconcile("empty").await).1, "NoAuths");

    // Two requests for one model: the older one keeps `paid/<model>`.
    buyer
        .store
        .apply(&request(&seller, 7, 1, "first").await)
        .await
        .unwrap();
    assert_eq!(verdict(&buyer.reconcile("first").await).1, "Reconciled");
    let mut second = request(&seller, 8, 1, "second").await;
    second.spec.model = "first".into();
    buyer.store.apply(&second).await.unwrap();
    let (kind, reason, message) = verdict(&buyer.reconcile("second").await);
    assert_eq!(
        (kind.as_str(), reason.as_str()),
        ("Configured", "ModelConflict")
    );
    assert!(message.contains("buy/first"), "{message}");
    assert!(buyer.proxy.serves("buy/first"));
    assert!(!buyer.proxy.serves("buy/second"));

    // Nothing refused was ever loaded into the pool.
    for name in ["cheap", "free", "edited", "bare", "empty", "second"] {
        assert_eq!(
            buyer
                .pool
                .counts(&pool_name("buy", name))
                .unwrap()
                .available,
            0,
            "{name}"
        );
    }
}

#[tokio::test]
async fn admin_reload_and_remove_change_what_the_proxy_serves() {
    let seller = Seller::start().await;
    let buyer = Buyer::start().await;
    buyer
        .store
        .apply(&request(&seller, 8, 1, "admin").await)
        .await
        .unwrap();
    buyer.reconcile("admin").await;
    let reconciler = Arc::new(
        PurchaseReconciler::new(
            buyer.store.clone(),
            buyer.pool.clone(),
            buyer.proxy.clone(),
            None,
        )
        .unwrap(),
    );
    let admin = spawn(reconciler.admin_router()).await;
    let post = |path: &str, body: Value| {
        let url = format!("{admin}{path}");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(
        post("/admin/remove", json!({"name": "buy/admin"})).await,
        (200, json!({"status": "removed", "name": "buy/admin"}))
    );
    assert_eq!(buyer.chat("paid/admin").await.status(), 404);
    assert_eq!(
        post("/admin/remove", json!({"name": "buy/admin"})).await.0,
        404
    );
    assert_eq!(post("/admin/remove", json!({"nope": 1})).await.0, 400);
    assert_eq!(
        post("/admin/remove?name=buy%2Fadmin", json!({})).await.0,
        404,
        "the query form names the same purchase (already removed)"
    );
    assert_eq!(
        post("/admin/reload", json!({})).await,
        (200, json!({"purchases": 1}))
    );
    assert!(buyer.proxy.serves("buy/admin"));
}
