//! # obol-gateway — the x402 seller gateway
//!
//! | module | what |
//! | --- | --- |
//! | [`route`] | offers, the first-match route table with fail-closed paid prefixes, and the atomically swapped [`route::Routes`] |
//! | [`challenge`] | the 402 answer: v2 body, `PAYMENT-REQUIRED` header, `resource.url` from forwarded headers |
//! | [`error`] | every gateway failure as `{error, reason, detail?, hint?, retriable}` with its status |

pub mod challenge;
pub mod error;
pub mod route;

pub use error::GatewayError;
pub use route::{Lookup, Offer, OfferKind, PaymentOption, Route, RouteTable, Routes};
