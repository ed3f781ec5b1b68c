//! # obol-control — the control plane
//!
//! | module | what |
//! | --- | --- |
//! | [`resource`] | the Kubernetes-shaped envelope (`Object`, `ObjectMeta`) and conditions |
//! | [`offer`] | `ServiceOffer` (obol-stack.md §3.1) |
//! | [`mcp`] | `type: mcp` offers: `spec.mcp.tools`, their checks, the gateway's tool table |
//! | [`purchase`] | `PurchaseRequest` (§3.3): a buyer's pre-signed pool |
//! | [`identity`] | `AgentIdentity` (§3.4): ERC-8004 agent ids per chain |
//! | [`registration`] | the ERC-8004 registration document (§6.5): active from the publishable offers, or the tombstone |
//! | [`discovery`] | an offer's self-description (`spec.discovery`) as the x402 Bazaar extension, inference defaults |
//! | [`validate`] | offer validation with errors naming field and rule |
//! | `strict` | specs refuse the JSON fields they would drop (unknown, or not supported yet) |
//! | [`store`] | the `Store` trait, typed helpers and the embedded SQLite store |
//! | [`crd`] | Kubernetes CRDs generated from the resource types (`obol kube crds`) |
//! | [`controller`] | the loop: reconcile at start, on every store change, and on requeue |
//! | [`reconcile`] | the `ServiceOffer` reconciler: conditions, reasons, requeues, route publication; a Service upstream's Service looked up in a `ServiceDirectory`; with `testing`, its conformance suite (`reconcile_conformance!`) |
//! | [`snippets`] | copy-and-run code for the storefront: `curl`, `obol buy pay`, Python with the x402 SDK |
//! | [`storefront`] | `/api/services.json`, `/skill.md`, `/openapi.json` and the HTML storefront |
//! | [`secrets`] | values offers refer to by name (an upstream's API key): the `SecretSource` trait and private files |
//! | [`openapi`] | `/openapi.json`: OpenAPI 3.1, one operation per route and method, `x-payment-info` at the 402s' prices |
//! | [`wellknown`] | `/.well-known/x402` (the original's shape), `/.well-known/x402.json` (the x402 draft), `/llms.txt`, the `_x402` DNS record |
//! | [`routes`] | published offers → the gateway's route table (prices, tokens, requirements) |

pub mod controller;
pub mod crd;
pub mod discovery;
pub mod identity;
pub mod mcp;
pub mod offer;
pub mod openapi;
pub mod purchase;
pub mod reconcile;
pub mod registration;
pub mod resource;
pub mod routes;
pub mod secrets;
pub mod snippets;
pub mod store;
pub mod storefront;
mod strict;
pub mod validate;
pub mod wellknown;

pub use offer::{ServiceOffer, ServiceOfferSpec, ServiceOfferStatus};
pub use resource::{Condition, ConditionStatus, Object, ObjectMeta, Spec};
pub use store::{SqliteStore, Store, StoreError, StoreExt};
