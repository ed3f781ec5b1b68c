//! The buyer side of obol-stack.
//!
//! An agent spends from a bounded pool of pre-signed x402 authorizations: [`presign()`] signs N
//! of them for one seller requirement with a key the spending process never sees, [`pool`]
//! keeps them durably and hands each out at most once, and [`probe`] reads what a seller asks
//! for. [`reconcile`] turns `PurchaseRequest`s into pools and [`proxy`] purchases; the
//! [`proxy`] spends them for agents. The most a pool can lose is N × price. [`seller`] is how
//! the proxy and `obol buy pay` talk to a seller: no redirects, and a pending settlement
//! retried with the same payment. [`spend`] is the durable daily cap of an unattended buyer.

pub mod auths;
mod known_terms;
pub mod metrics;
pub mod pool;
pub mod presign;
pub mod probe;
pub mod proxy;
pub mod reconcile;
pub mod refill;
pub mod seller;
pub mod spend;

pub use pool::{AuthPool, Held, PoolError, PoolExpiry};
pub use presign::{PreSigned, PresignOptions, presign};
pub use probe::{Offered, ProbeError, Prober, payment_header};
pub use proxy::{BuyError, BuyerProxy, Purchase};
pub use reconcile::{Balances, PurchaseReconciler};
pub use refill::Refill;
pub use seller::SellerError;
