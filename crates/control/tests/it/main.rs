//! The control plane's store and validation.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod crd;
mod deploy;
mod manifests;
mod reconcile;
mod store;
