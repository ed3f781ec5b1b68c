//! One module per command group.

mod network;
mod wallet;
mod x402;

use std::process::ExitCode;

use obol_config::Paths;

use crate::cli::{Cli, Command, X402Command};

/// What every command may need: where the stack lives and how to print.
pub(crate) struct Context {
    pub(crate) paths: Paths,
    pub(crate) json: bool,
}

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let context = || -> anyhow::Result<Context> {
        Ok(Context {
            paths: Paths::from_env()?,
            json: cli.json,
        })
    };
    match cli.command {
        Command::X402(X402Command::Decode(args)) => x402::decode(&args, cli.json),
        Command::Wallet(command) => wallet::run(&context()?, command).await,
        Command::Network(command) => network::run(&context()?, command).await,
    }
}
