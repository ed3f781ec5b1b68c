//! `obol facilitator serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use obol_facilitator::evm::ChainSetup;
use obol_facilitator::http::{ServerOptions, router, serve};
use obol_facilitator::{EvmFacilitator, FacilitatorConfig};
use tokio::net::TcpListener;

use super::{Context, network};
use crate::cli::{FacilitatorCommand, FacilitatorServeArgs};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: FacilitatorCommand) -> anyhow::Result<ExitCode> {
    match command {
        FacilitatorCommand::Serve(args) => serve_command(ctx, args).await,
    }
}

async fn serve_command(ctx: &Context, args: FacilitatorServeArgs) -> anyhow::Result<ExitCode> {
    let (signer, source) = super::wallet::load_signer(ctx, &args.signer)?;

    let networks = obol_config::NetworksFile::load(&ctx.paths.networks_file())?;
    let mut chains = Vec::new();
    let mut names = Vec::new();
    for chain in &args.chains {
        let client = network::client(ctx, chain)?;
        let writable = networks
            .get(chain)
            .is_some_and(|c| c.endpoints.iter().any(|e| e.allow_writes));
        if !writable {
            anyhow::bail!(
                "{} has no write-enabled endpoint, so settlements could not be sent; add one with `obol network add {} --endpoint URL --allow-writes`",
                client.name(),
                client.name()
            );
        }
        client
            .check_chain_id()
            .await
            .with_context(|| format!("checking {}", client.name()))?;
        names.push(format!("{} ({})", client.name(), client.chain_id()));
        chains.push(ChainSetup {
            client,
            signer: signer.clone(),
        });
    }
    let config = FacilitatorConfig {
        receipt_timeout: Duration::from_secs(args.receipt_timeout),
        gas_wallets: args.gas_wallets,
        ..FacilitatorConfig::default()
    };
    let facilitator = Arc::new(EvmFacilitator::new(config, chains)?);
    let topped_up = facilitator
        .fund_gas_wallets()
        .await
        .context("topping up the gas wallets")?;
    if topped_up > 0 {
        output::note(&format!(
            "topped up {topped_up} gas wallet(s) from the signer"
        ));
    }
    let auth_token = match &args.auth_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .to_owned(),
        )
        .filter(|t| !t.is_empty()),
        None => None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    output::note(&format!(
        "facilitator listening on http://{address} — chains: {}; gas paid by {} ({source}){}",
        names.join(", "),
        signer.address().to_checksum(None),
        if auth_token.is_some() {
            "; bearer auth on"
        } else {
            ""
        }
    ));
    let app = router(
        facilitator,
        ServerOptions {
            auth_token,
            body_limit: 0,
        },
    );
    serve(listener, app, super::shutdown_signal()).await?;
    output::note("facilitator stopped");
    Ok(ExitCode::SUCCESS)
}
