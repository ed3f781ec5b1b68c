//! The `obol tunnel` arguments (split from `cli.rs` by concern).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TunnelModeArg {
    /// An account-less `*.trycloudflare.com` URL (a new one each time cloudflared starts).
    Quick,
    /// A tunnel of your Cloudflare account at a stable hostname (DNS mode).
    Named,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TunnelCommand {
    /// Expose the gateway (only the gateway: never the admin API or metrics) through a
    /// cloudflared tunnel the daemon runs and restarts; its URL becomes the public URL (unless
    /// --public-url or OBOL_PUBLIC_URL pin one). Needs cloudflared installed.
    Up {
        /// Quick (`*.trycloudflare.com`) or named (your account, a stable hostname).
        #[arg(long, value_enum, default_value = "quick")]
        mode: TunnelModeArg,
        /// Named mode: the file holding the tunnel token (never put on a command line).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Named mode: the hostname routed to the tunnel; the public URL becomes https://H.
        #[arg(long, value_name = "H")]
        hostname: Option<String>,
    },
    /// Stop the tunnel and forget it; the public URL goes back to the configured one.
    Down,
    /// Mode, URL, pid, restarts, the last error and the agentURI updates.
    Status,
    /// The last lines of cloudflared's output (`<state>/tunnel.log`).
    Logs {
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
}
