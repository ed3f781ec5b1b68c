//! Command-line definitions (clap only; behaviour lives in `commands`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// obol-stack: sell and buy access to models and APIs, paid per request in stablecoins over
/// x402.
#[derive(Debug, Parser)]
#[command(name = "obol", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    /// Print machine-readable JSON instead of human output.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Inspect x402 messages.
    #[command(subcommand)]
    X402(X402Command),
}

#[derive(Debug, Subcommand)]
pub(crate) enum X402Command {
    /// Decode an x402 header (PAYMENT-REQUIRED, PAYMENT-SIGNATURE, X-PAYMENT, PAYMENT-RESPONSE,
    /// X-PAYMENT-RESPONSE) or a v1 402 JSON body, and explain it.
    ///
    /// Prints the decoded message as JSON on stdout and a one-line summary on stderr (network,
    /// amount in token units, payTo, payer, and whether the signature recovers to the payer).
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// The header value, a `Name: value` header line, a file holding either, or `-` for stdin.
    pub(crate) input: String,

    /// Treat INPUT as a path even if it does not look like one.
    #[arg(long)]
    pub(crate) file: bool,
}

impl DecodeArgs {
    /// The path to read, when the input names a file.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        let path = PathBuf::from(&self.input);
        (self.file || (self.input != "-" && path.is_file())).then_some(path)
    }
}
