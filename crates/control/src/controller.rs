//! The controller loop: reconciles every object of one kind at start, then each one the store
//! reports changed, and each one whose requeue time came, until shutdown. The daemon runs one
//! loop per kind ([`Reconcile::kind`]): offers and purchases. A change to a kind the reconciler
//! also reads ([`Reconcile::also_watch`], e.g. the `AgentIdentity` offers take their agent id
//! from) re-queues every object of its kind.
//!
//! Keys are queued without duplicates; a failed reconcile is retried with exponential backoff
//! (1 s doubling to 5 min) so a broken store does not spin.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::reconcile::Action;
use crate::store::Store;

/// First retry delay after a failed reconcile.
pub const ERROR_BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);

type Key = (String, String);

/// A level-triggered reconciler of one kind, driven by [`run`].
#[async_trait::async_trait]
pub trait Reconcile: Send + Sync {
    /// Why a reconcile failed (retried with backoff).
    type Error: std::fmt::Display + Send;

    /// The kind it reconciles.
    fn kind(&self) -> &'static str;

    /// Other kinds whose changes affect every object of [`Reconcile::kind`]: any event on them
    /// re-queues all of its objects.
    fn also_watch(&self) -> &'static [&'static str] {
        &[]
    }

    /// Runs once before the first reconcile (e.g. publishing what the store already holds).
    async fn start(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Brings one object's world in line with its spec.
    async fn reconcile(&self, namespace: &str, name: &str) -> Result<Action, Self::Error>;
}

/// Queues every stored object of `kind` not already queued.
async fn queue_all(store: &dyn Store, kind: &str, ready: &mut Vec<Key>, queued: &mut HashSet<Key>) {
    match store.list_raw(kind, None).await {
        Ok(objects) => {
            for o in objects {
                let key = (o.metadata.namespace, o.metadata.name);
                if queued.insert(key.clone()) {
                    ready.push(key);
                }
            }
        }
        Err(error) => tracing::error!(%error, kind, "cannot list"),
    }
}

/// Runs `reconciler` over `store` until `shutdown` resolves.
pub async fn run<R: Reconcile + ?Sized>(
    store: Arc<dyn Store>,
    reconciler: Arc<R>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let kind = reconciler.kind();
    let mut events = store.watch();
    // One timer per key: a reconcile's answer replaces whatever was scheduled before it.
    let mut due: BTreeMap<Instant, Vec<Key>> = BTreeMap::new();
    let mut scheduled: std::collections::HashMap<Key, Instant> = std::collections::HashMap::new();
    let mut failures: std::collections::HashMap<Key, u32> = std::collections::HashMap::new();
    let mut ready: Vec<Key> = Vec::new();
    let mut queued: HashSet<Key> = HashSet::new();
    queue_all(store.as_ref(), kind, &mut ready, &mut queued).await;
    if let Err(error) = reconciler.start().await {
        tracing::error!(%error, kind, "cannot start the reconciler");
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
                    tracing::warn!(kind, %namespace, %name, %error, ?delay, "reconcile failed; retrying");
                    Some(delay)
                }
            };
            if let Some(at) = scheduled.remove(&key)
                && let Some(keys) = due.get_mut(&at)
            {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    due.remove(&at);
                }
            }
            if let Some(delay) = next {
                let at = Instant::now() + delay;
                due.entry(at).or_default().push(key.clone());
                scheduled.insert(key, at);
            }
        }
        let next_due = due.keys().next().copied();
        tokio::select! {
            () = &mut shutdown => return,
            event = events.recv() => match event {
                Ok(event) if event.key().kind == kind => {
                    let key = (event.key().namespace.clone(), event.key().name.clone());
                    if queued.insert(key.clone()) {
                        ready.push(key);
                    }
                }
                Ok(event) if reconciler.also_watch().contains(&event.key().kind.as_str()) => {
                    queue_all(store.as_ref(), kind, &mut ready, &mut queued).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // Missed events: fall back to reconciling everything.
                    queue_all(store.as_ref(), kind, &mut ready, &mut queued).await;
                }
                Err(RecvError::Closed) => return,
            },
            () = sleep_until(next_due) => {
                let now = Instant::now();
                let later = due.split_off(&(now + Duration::from_nanos(1)));
                for (_, keys) in std::mem::replace(&mut due, later) {
                    for key in keys {
                        scheduled.remove(&key);
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
