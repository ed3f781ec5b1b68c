//! Two gateway replicas sharing one payment guard on PostgreSQL (a real server from the test
//! kit; docs/design/kubernetes.md): one payment sent to both at once is served once and settled
//! once, and payments spread over both move exactly their prices on chain.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use obol_gateway::guard::ReplayGuard;
use obol_testkit::postgres::PgServer;
use obol_x402::primitives::U256;

use crate::{Fixture, PAY_TO, challenge_of, paid_get, sign};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_serve_each_payment_once() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.database("guard");
    let fixture = Fixture::start().await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let guard = Arc::new(ReplayGuard::postgres(&url).await.unwrap());
        let (public, _) =
            Fixture::gateway_over(&fixture.routes, &fixture.probe, guard, |_| {}).await;
        replicas.push(public);
    }
    let required = challenge_of(
        &reqwest::get(format!("{}/services/echo/slow", replicas[0]))
            .await
            .unwrap(),
    );

    // One payment, four requests at once, two on each replica (the upstream takes 300 ms).
    let payment = sign(&fixture.buyer(3), &required, 0);
    let (calls, settles) = (
        fixture.log.calls.load(Ordering::SeqCst),
        fixture.probe.settled(),
    );
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..4 {
        let (base, payment) = (replicas[i % 2].clone(), payment.clone());
        racing.spawn(async move {
            paid_get(&base, "/services/echo/slow", &payment)
                .await
                .status()
                .as_u16()
        });
    }
    let mut statuses = racing.join_all().await;
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 402, 402, 402], "one payment, one answer");
    assert_eq!(fixture.log.calls.load(Ordering::SeqCst), calls + 1);
    assert_eq!(fixture.probe.settled(), settles + 1);

    // 16 payments from 6 buyers, spread over both replicas at once: each served, and the
    // chain moved exactly 16 prices to the seller, each buyer's own from each buyer.
    let buyers: Vec<_> = (3..9).map(|i| fixture.buyer(i)).collect();
    let mut before = Vec::new();
    for buyer in &buyers {
        before.push(fixture.usdc(&buyer.address().to_string()).await);
    }
    let seller_before = fixture.usdc(PAY_TO).await;
    let required = challenge_of(
        &reqwest::get(format!("{}/services/echo/echo", replicas[1]))
            .await
            .unwrap(),
    );
    let mut paying = tokio::task::JoinSet::new();
    for i in 0..16 {
        let payment = sign(&buyers[i % buyers.len()], &required, 0);
        let base = replicas[i % 2].clone();
        paying.spawn(async move {
            paid_get(&base, "/services/echo/echo", &payment)
                .await
                .status()
                .as_u16()
        });
    }
    let statuses = paying.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let price = U256::from(1000);
    assert_eq!(
        fixture.usdc(PAY_TO).await,
        seller_before + price * U256::from(16)
    );
    for (i, buyer) in buyers.iter().enumerate() {
        let paid = (0..16).filter(|n| n % buyers.len() == i).count();
        assert_eq!(
            fixture.usdc(&buyer.address().to_string()).await,
            before[i] - price * U256::from(paid),
            "buyer {i}"
        );
    }
}
