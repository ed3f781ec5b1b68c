//! One module per command group.

mod backup;
mod buy;
mod cluster;
mod demo;
mod devnet;
mod discover;
mod doctor;
mod facilitator;
mod identity;
mod info;
mod kube;
mod mcp;
mod network;
mod offer_flags;
mod permit2;
mod purchase;
mod secret;
mod sell;
mod service;
mod stack;
mod tokens;
mod tunnel;
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

/// Resolves on Ctrl-C or SIGTERM (containers and service managers stop with TERM).
/// Logs of a long-running command (the daemon, the operator) on stderr, filtered by `OBOL_LOG`
/// (default `info`).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(obol_config::env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .try_init();
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `obol completions SHELL`: the script on stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "obol", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
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
        Command::Devnet(command) => devnet::run(&context()?, command).await,
        Command::Stack(command) => stack::run(&context()?, command).await,
        Command::Sell(command) => sell::run(&context()?, command).await,
        Command::Secret(command) => secret::run(&context()?, command).await,
        Command::Facilitator(command) => facilitator::run(&context()?, command).await,
        Command::Buy(command) => buy::run(&context()?, command).await,
        Command::Demo(args) => demo::run(&context()?, args).await,
        Command::Mcp(args) => mcp::run(context()?, *args).await,
        Command::Kube(command) => kube::run(command, cli.json),
        Command::Operator(args) => cluster::operator(*args).await,
        Command::Gateway(args) => cluster::gateway(&context()?, *args).await,
        Command::Buyer(args) => cluster::buyer(&context()?, *args).await,
        Command::Doctor => doctor::run(&context()?).await,
        Command::Tunnel(command) => tunnel::run(&context()?, command).await,
        Command::Completions { shell } => completions(shell),
    }
}
