//! One `obol facilitator serve` shared by two sellers. A buyer signs two authorizations with
//! the same nonce — one for seller A, one (another payTo and amount) for seller B — and both
//! pass verification before either settles. A is paid and served; B must be refused, never
//! handed A's receipt, and B's balance must not move.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;

use axum::Router;
use obol_gateway::guard::ReplayGuard;
use obol_gateway::server::{GatewayConfig, app};
use obol_gateway::{Offer, OfferKind, PaymentOption, Route, RouteTable, Routes};
use obol_testkit::http::spawn;
use obol_x402::LocalSigner;
use obol_x402::header::{self, PAYMENT_RESPONSE, PAYMENT_SIGNATURE};
use obol_x402::pricing::{Price, PriceUnit};
use obol_x402::primitives::B256;
use obol_x402::signer::{ValidityWindow, random_nonce};
use obol_x402::token::TokenRegistry;
use obol_x402::wire::SettleResponse;
use serde_json::json;
use tokio::sync::{Notify, mpsc};

use crate::{balance, facilitator_serve, obol_in, succeeded};

const BUYER: &str = obol_devnet::DEV_KEYS[1];
const SELLER_A: &str = obol_devnet::DEV_KEYS[2];
const SELLER_B: &str = obol_devnet::DEV_KEYS[3];

/// The facilitator process and the devnet, stopped when the test ends, pass or fail.
struct Running<'a> {
    dir: &'a Path,
    facilitator: Option<Child>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.facilitator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        obol_in(self.dir, &["devnet", "down"], &[], None);
    }
}

fn address(key: &str) -> String {
    LocalSigner::from_private_key_hex(key)
        .unwrap()
        .address()
        .to_checksum(None)
}

/// An upstream that answers at once, or — with `hold` — says it was reached and answers only
/// once released.
async fn upstream(hold: Option<(mpsc::UnboundedSender<()>, Arc<Notify>)>) -> String {
    spawn(Router::new().fallback(move || {
        let hold = hold.clone();
        async move {
            if let Some((reached, release)) = hold {
                let _ = reached.send(());
                release.notified().await;
            }
            axum::Json(json!({"served": true}))
        }
    }))
    .await
}

/// A seller's gateway selling `services/item` at `amount` USDC units to `pay_to`, verifying
/// and settling through the facilitator at `facilitator`.
async fn seller(facilitator: &str, upstream: &str, pay_to: &str, amount: u64) -> String {
    let token = TokenRegistry::builtin()
        .resolve("USDC", "base-sepolia")
        .unwrap()
        .clone();
    let requirements = obol_testkit::x402::requirement("USDC", amount, pay_to);
    let price = Price {
        unit: PriceUnit::PerRequest,
        amount: "0.001".parse().unwrap(),
    };
    let option = PaymentOption::exact(requirements, price, &token);
    let offer = Offer {
        description: "an item".into(),
        ..Offer::at_services(
            "item",
            OfferKind::Http,
            upstream.parse().unwrap(),
            vec![option],
        )
    };
    let routes = Arc::new(Routes::new());
    routes.store(RouteTable::new(vec![Route::below_prefix(offer)]));
    let remote =
        obol_facilitator::http::RemoteFacilitator::new(facilitator, Default::default()).unwrap();
    let guard = Arc::new(ReplayGuard::in_memory().unwrap());
    spawn(app(routes, Arc::new(remote), guard, GatewayConfig::default()).unwrap()).await
}

/// Reads `gateway`'s 402 and signs its first option with `nonce`: a `PAYMENT-SIGNATURE`.
async fn sign(gateway: &str, buyer: &LocalSigner, nonce: B256) -> String {
    let response = reqwest::get(format!("{gateway}/services/item"))
        .await
        .unwrap();
    assert_eq!(response.status(), 402);
    let required = obol_testkit::x402::challenge_of(&response);
    let window = ValidityWindow::for_request(obol_testkit::now(), 300);
    obol_testkit::x402::pay(buyer, &required, 0, window, nonce)
}

async fn paid_get(gateway: &str, payment: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{gateway}/services/item"))
        .header(PAYMENT_SIGNATURE, payment)
        .send()
        .await
        .unwrap()
}

fn receipt(response: &reqwest::Response) -> Option<SettleResponse> {
    response
        .headers()
        .get(PAYMENT_RESPONSE)
        .map(|value| header::decode(value.to_str().unwrap()).unwrap())
}

// Multi-threaded: the gateways must answer while a worker blocks on an `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nonce_for_two_sellers_pays_one_and_refuses_the_other() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    succeeded(&obol_in(dir, &["devnet", "up"], &[], None));
    let mut running = Running {
        dir,
        facilitator: None,
    };
    let (server, banner, _) = facilitator_serve(dir);
    running.facilitator = Some(server);
    let facilitator = banner.split_whitespace().nth(3).unwrap().to_owned();
    assert!(facilitator.starts_with("http://127.0.0.1:"), "{banner}");

    // Seller A answers at once; seller B's upstream holds B's request until A has settled.
    let (reached, mut b_reached) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let a_gateway = seller(
        &facilitator,
        &upstream(None).await,
        &address(SELLER_A),
        1_000,
    )
    .await;
    let b_gateway = seller(
        &facilitator,
        &upstream(Some((reached, release.clone()))).await,
        &address(SELLER_B),
        2_000,
    )
    .await;

    let before = [BUYER, SELLER_A, SELLER_B].map(|key| balance(dir, "devnet", key, "USDC"));
    let buyer = LocalSigner::from_private_key_hex(BUYER).unwrap();
    let nonce = random_nonce();
    let (for_a, for_b) = (
        sign(&a_gateway, &buyer, nonce).await,
        sign(&b_gateway, &buyer, nonce).await,
    );

    // B is verified (the nonce is still unused on-chain) and waits at its upstream …
    let b_call = tokio::spawn(async move { paid_get(&b_gateway, &for_b).await });
    b_reached.recv().await.unwrap();
    // … while A is verified, served and settled.
    let a_response = paid_get(&a_gateway, &for_a).await;
    assert_eq!(a_response.status(), 200);
    let a_receipt = receipt(&a_response).unwrap();
    assert!(a_receipt.success, "{a_receipt:?}");

    // B's upstream answers; its settlement must be refused, with no receipt of A's transfer.
    release.notify_one();
    let b_response = b_call.await.unwrap();
    let b_status = b_response.status();
    let b_receipt = receipt(&b_response);
    let b_body = b_response.text().await.unwrap();
    assert_eq!(b_status, 402, "{b_receipt:?} {b_body}");
    assert!(!b_body.contains("\"served\""), "B's content withheld");
    if let Some(b_receipt) = &b_receipt {
        assert!(!b_receipt.success, "{b_receipt:?}");
        assert_eq!(
            b_receipt.error_reason.as_deref(),
            Some("invalid_exact_evm_nonce_already_used")
        );
        assert_ne!(b_receipt.transaction, a_receipt.transaction);
    }
    assert!(
        !b_body.contains(&a_receipt.transaction),
        "A's transaction never named to B: {b_body}"
    );

    let after = [BUYER, SELLER_A, SELLER_B].map(|key| balance(dir, "devnet", key, "USDC"));
    assert_eq!(after[0], before[0] - 1_000, "the buyer paid once");
    assert_eq!(after[1], before[1] + 1_000, "seller A was paid");
    assert_eq!(after[2], before[2], "seller B's balance unchanged");
}
