//! One module per command group.

mod x402;

use std::process::ExitCode;

use crate::cli::{Cli, Command, X402Command};

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::X402(X402Command::Decode(args)) => x402::decode(&args, cli.json),
    }
}
