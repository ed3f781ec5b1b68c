//! Request paths the gateway refuses before any route lookup: the one check shared with the
//! buyer's proxy, [`obol_config::request_path`]. What passes is served under the offer's
//! prefix exactly as written.

pub use obol_config::request_path::{PathError, check};
