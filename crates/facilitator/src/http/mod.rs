//! The facilitator over HTTP: the service ([`server`]) and a client of any x402 facilitator
//! ([`client`]), wire-compatible with x402-rs and the official SDK facilitators.

pub mod client;
pub mod server;

pub use client::{ClientOptions, RemoteFacilitator};
pub use server::{ServerOptions, metrics_handle, router, serve};
