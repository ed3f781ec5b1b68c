//! The controller loop: reconciles every offer at start, then each offer the store reports
//! changed, and each offer whose requeue time came, until shutdown.
//!
//! Keys are queued without duplicates; a failed reconcile is retried with exponential backoff
//! (1 s doubling to 5 min) so a broken store does not spin.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::offer::ServiceOfferSpec;
use crate::reconcile::{Action, Reconciler};
use crate::resource::Spec;
use crate::store::{Store, StoreExt};

/// First retry delay after a failed reconcile.
pub const ERROR_BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);

type Key = (String, String);

/// Runs `reconciler` over `store` until `shutdown` resolves.
pub async fn run(
    store: Arc<dyn Store>,
    reconciler: Arc<Reconciler>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let mut events = store.watch();
    let mut due: BTreeMap<Instant, Vec<Key>> = BTreeMap::new();
    let mut failures: std::collections::HashMap<Key, u32> = std::collections::HashMap::new();
    let mut ready: Vec<Key> = Vec::new();
    let mut queued: HashSet<Key> = HashSet::new();
    match store.list::<ServiceOfferSpec>(None).await {
        Ok(offers) => {
            for o in offers {
                let key = (o.metadata.namespace, o.metadata.name);
                if queued.insert(key.clone()) {
                    ready.push(key);
                }
            }
        }
        Err(error) => tracing::error!(%error, "cannot list offers at start"),
    }
    if let Err(error) = reconciler.publish_routes().await {
        tracing::error!(%error, "cannot publish the initial routes");
    }
    tokio::pin!(shutdown);
    loop {
        while let Some(key) = ready.pop() {
            queued.remove(&key);
            let (namespace, name) = (&key.0, &key.1);
            let next = match reconciler.reconcile(namespace, name).await {
                Ok(Action::Done) => {
                    failures.remove(&key);
                    None
                }
                Ok(Action::Requeue(delay)) => {
                    failures.remove(&key);
                    Some(delay)
                }
                Err(error) => {
                    let attempt = failures.entry(key.clone()).or_insert(0);
                    *attempt += 1;
                    let delay = ERROR_BACKOFF_START
                        .saturating_mul(2u32.saturating_pow(*attempt - 1))
                        .min(ERROR_BACKOFF_MAX);
                    tracing::warn!(%namespace, %name, %error, ?delay, "reconcile failed; retrying");
                    Some(delay)
                }
            };
            if let Some(delay) = next {
                due.entry(Instant::now() + delay).or_default().push(key);
            }
        }
        let next_due = due.keys().next().copied();
        tokio::select! {
            () = &mut shutdown => return,
            event = events.recv() => match event {
                Ok(event) if event.key().kind == <ServiceOfferSpec as Spec>::KIND => {
                    let key = (event.key().namespace.clone(), event.key().name.clone());
                    if queued.insert(key.clone()) {
                        ready.push(key);
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // Missed events: fall back to reconciling everything.
                    if let Ok(offers) = store.list::<ServiceOfferSpec>(None).await {
                        for o in offers {
                            let key = (o.metadata.namespace, o.metadata.name);
                            if queued.insert(key.clone()) {
                                ready.push(key);
                            }
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            },
            () = sleep_until(next_due) => {
                let now = Instant::now();
                let later = due.split_off(&(now + Duration::from_nanos(1)));
                for (_, keys) in std::mem::replace(&mut due, later) {
                    for key in keys {
                        if queued.insert(key.clone()) {
                            ready.push(key);
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
