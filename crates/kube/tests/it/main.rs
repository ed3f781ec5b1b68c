//! The Kubernetes store over the in-memory API server: the Store and reconcile conformance
//! suites (the same tests SqliteStore passes), the exact HTTP calls, Services and Secrets for
//! the reconciler, and the stand-in's own semantics.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod requests;
mod services;
mod stand_in;

use std::sync::Arc;

use obol_control::Store;
use obol_kube::KubeStore;
use obol_kube::testing::InMemoryApi;

/// A fresh in-memory API server and a store on it.
pub(crate) async fn kube_store() -> (Arc<dyn Store>, InMemoryApi) {
    let (store, api) = kube_store_typed().await;
    (Arc::new(store), api)
}

pub(crate) async fn kube_store_typed() -> (KubeStore, InMemoryApi) {
    let api = InMemoryApi::start().await.unwrap();
    let store = KubeStore::new(api.client().unwrap()).await.unwrap();
    (store, api)
}

mod conformance {
    obol_control::store_conformance!(super::kube_store);
}

mod reconcile_conformance {
    obol_control::reconcile_conformance!(super::kube_store);
}
