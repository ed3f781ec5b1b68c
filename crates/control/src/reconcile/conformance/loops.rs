//! The controller loop over the store's watch: offers reconciled as they change, deletions
//! finished, identity changes re-queueing every offer.

use std::sync::Arc;

use obol_x402::token::TokenRegistry;

use super::conditions::record_identity;
use super::{Harness, eventually, routed};
use crate::offer::RegistrationSpec;
use crate::reconcile::Reconciler;
use crate::store::{Store, StoreExt};

/// Runs the controller with `reconciler` until the returned sender fires.
fn controller(
    store: &Arc<dyn Store>,
    reconciler: Reconciler,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::controller::run(
        store.clone(),
        Arc::new(reconciler),
        async {
            let _ = stopped.await;
        },
    ));
    (stop, task)
}

/// An applied offer gets routed, a deleted one unrouted and its finalizer released, without
/// calling the reconciler by hand.
pub async fn the_controller_loop_follows_the_store(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    let reconciler = Reconciler::new(s.store.clone(), s.routes.clone(), TokenRegistry::builtin());
    let (stop, task) = controller(&s.store, reconciler);
    let routes = s.routes.clone();
    let wait_for = async |path: &str, want: Option<&str>| {
        eventually(&format!("{path} routed to {want:?}"), async || {
            routed(&routes, path).as_deref() == want
        })
        .await;
    };
    s.store.apply(&s.offer("live")).await.unwrap();
    wait_for("/services/live", Some("live")).await;
    assert!(s.routes.is_loaded());
    s.store
        .delete("ServiceOffer", "default", "live")
        .await
        .unwrap();
    wait_for("/services/live", None).await;
    eventually("finalizer released", async || {
        s.stored("default", "live").await.is_none()
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// A ready offer (requeued only every minute) follows its identity's agent id at once: the
/// identity's change re-queues it.
pub async fn an_identity_change_requeues_every_offer(store: Arc<dyn Store>) {
    let s = Harness::new(store).await;
    let reconciler = Reconciler::new(s.store.clone(), s.routes.clone(), TokenRegistry::builtin());
    let mut offer = s.offer("weather");
    offer.spec.registration = Some(RegistrationSpec {
        enabled: true,
        ..RegistrationSpec::default()
    });
    s.store.apply(&offer).await.unwrap();
    let (stop, task) = controller(&s.store, reconciler);
    let wait_for = async |want: Option<&str>| {
        eventually(&format!("agentId {want:?}"), async || {
            let stored = s.stored("default", "weather").await.unwrap();
            stored.status.agent_id.as_deref() == want
        })
        .await;
    };
    // Ready offers are requeued only every minute: the identity event must do it.
    eventually("the offer reconciled", async || {
        let stored = s.stored("default", "weather").await.unwrap();
        stored
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Registered")
    })
    .await;
    record_identity(s.store.as_ref(), &[("base-sepolia", "7")]).await;
    wait_for(Some("7")).await;
    record_identity(s.store.as_ref(), &[]).await;
    wait_for(None).await;
    stop.send(()).unwrap();
    task.await.unwrap();
}
