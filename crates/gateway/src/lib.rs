//! # obol-gateway — the x402 seller gateway
//!
//! | module | what |
//! | --- | --- |
//! | [`path`] | request paths refused before routing: dot segments, encoded slashes, backslashes, at any depth of encoding |
//! | [`route`] | offers, routes (pattern, methods, paid or free), the most-specific-match route table with fail-closed offer prefixes, and the atomically swapped [`route::Routes`] |
//! | [`challenge`] | the 402 answer: v2 body, `PAYMENT-REQUIRED` header, `resource.url` from forwarded headers |
//! | [`error`] | every gateway failure as `{error, reason, detail?, hint?, retriable}` with its status |
//! | [`matching`] | payment header → decoded, normalised payment → the offered option it answers |
//! | [`guard`] | the double-serve guard: in-flight claims, per-payer exposure, and the durable record of settled and pending payments |
//! | [`siwx`] | Sign-In-With-X for `gate: auth` routes: EIP-4361 sign-ins (EOA and ERC-1271), single-use nonces, session tokens |
//! | [`mcp`] | MCP offers: their tools, each free or re-priced, and the x402 MCP binding's names |
//! | [`metering`] | metered (`upto`) inference: a request fitted under the ceiling signed, the usage read from the answer or its stream, the charge |
//! | [`limits`] | per-offer `maxInFlight` and `rps` (burst 2×), kept across route table swaps |
//! | [`proxy`] | the streaming upstream proxy |
//! | [`paygate`] | the tower `Layer`/`Service`: challenge, verify, proxy, settle after success |
//! | [`metrics`] | the original verifier's metric names and labels |
//! | [`server`] | the application: public (paygate, `/healthz`, `/readyz`) and internal (`/metrics`, ForwardAuth `/verify`) routers |

pub mod challenge;
pub mod error;
pub mod guard;
pub mod limits;
pub mod matching;
pub mod mcp;
pub mod metering;
pub mod metrics;
pub mod path;
pub mod paygate;
mod pg;
pub mod proxy;
pub mod route;
pub mod server;
pub mod siwx;
pub mod tls;

pub use error::GatewayError;
pub use route::{
    Discovery, FreeQuota, Gate, Lookup, Methods, Offer, OfferKind, PaymentOption, Route,
    RouteTable, Routes, SettleMode, SignInEndpoint, Vanity,
};
