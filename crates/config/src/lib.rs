//! # obol-config — where obol-stack keeps things, and what it reads from the environment
//!
//! | module | what |
//! | --- | --- |
//! | [`env`](mod@env) | every environment variable the stack reads, as documented constants |
//! | [`errors`] | error-chain formatting |
//! | [`paths`] | the config, data and state directories |
//! | [`fs`] | private (0600) atomic file writes and 0700 directories |
//! | [`process`] | processes we started, by pid and start time, signalled through `rustix` (never a reused pid) |
//! | [`networks`] | the per-chain RPC endpoint list (`<config>/networks.json`) |
//! | [`public_url`] | the public base URL buyers reach the stack at |
//! | [`request_path`] | request paths refused because they could leave their prefix once decoded (dot segments, encoded slashes, backslashes) |
//! | [`stack`] | the stack settings file (`<config>/stack.json`) |
//! | [`text`] | untrusted text made safe to print (control and bidi characters escaped) |
//! | [`time`] | RFC 3339 timestamps |

pub mod env;
pub mod errors;
pub mod fs;
pub mod networks;
pub mod paths;
pub mod process;
pub mod public_url;
pub mod request_path;
pub mod stack;
pub mod text;
pub mod time;
pub mod tunnel;

pub use networks::{ChainEndpoints, Endpoint, NetworksFile};
pub use paths::Paths;
pub use public_url::PublicUrl;

/// Why configuration could not be read, resolved or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No home directory and no explicit directory variable.
    #[error("cannot find a home directory; set {0}")]
    NoHome(&'static str),
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid JSON of the expected shape.
    #[error("{path} is not a valid {what} file: {message}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// Which file kind.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A value given by the user is invalid.
    #[error("{0}")]
    Invalid(String),
}
