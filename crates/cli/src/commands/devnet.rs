//! `obol devnet up|down|status`: a background anvil with our contracts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use obol_chain::ChainClient;
use obol_config::networks::canonical_chain;
use obol_config::{ChainEndpoints, Endpoint, NetworksFile, fs as private_fs};
use obol_devnet::{Anvil, DEFAULT_CHAIN_ID, IDENTITY_REGISTRY, OBOL, USDC};
use obol_x402::token::{EXACT_PERMIT2_PROXY, PERMIT2, UPTO_PERMIT2_PROXY};
use serde::{Deserialize, Serialize};
use serde_json::json;

use obol_config::process::Owned;

use super::Context;
use crate::cli::DevnetCommand;
use crate::output;

/// The chain name the devnet registers under.
const DEVNET: &str = "devnet";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevnetState {
    pid: u32,
    endpoint: String,
    chain_id: u64,
    /// anvil's start (see [`Owned`]); absent in files from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_ticks: Option<u64>,
}

impl DevnetState {
    fn anvil(&self) -> Owned {
        Owned {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }
}

fn state_dir(ctx: &Context) -> PathBuf {
    ctx.paths.state_dir.join("devnet")
}

fn state_file(ctx: &Context) -> PathBuf {
    state_dir(ctx).join("devnet.json")
}

fn read_state(ctx: &Context) -> anyhow::Result<Option<DevnetState>> {
    let path = state_file(ctx);
    match private_fs::read_optional(&path)? {
        None => Ok(None),
        Some(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("{} is damaged", path.display())
            })?))
        }
    }
}

pub(crate) async fn run(ctx: &Context, command: DevnetCommand) -> anyhow::Result<ExitCode> {
    match command {
        DevnetCommand::Up => up(ctx).await,
        DevnetCommand::Down => down(ctx).await,
        DevnetCommand::Status => status(ctx).await,
    }
}

async fn up(ctx: &Context) -> anyhow::Result<ExitCode> {
    if let Some(state) = read_state(ctx)?
        && state.anvil().is_running()
    {
        report(ctx, &state, "already running")?;
        return Ok(ExitCode::SUCCESS);
    }
    private_fs::create_private_dir(&state_dir(ctx))?;
    if !ctx.json {
        output::note("starting anvil and placing the contracts…");
    }
    let anvil = Anvil::spawn_detached(DEFAULT_CHAIN_ID, &state_dir(ctx).join("anvil.log")).await?;
    let pid = anvil.pid().context("anvil exited right after starting")?;
    let state = DevnetState {
        pid,
        endpoint: anvil.endpoint(),
        chain_id: anvil.chain_id(),
        start_ticks: Owned::now(pid).start_ticks,
    };
    if let Err(e) = obol_devnet::install(&state.endpoint).await {
        stop(state.anvil()).await;
        return Err(e.into());
    }
    private_fs::save_json(&state_file(ctx), &state)?;
    let networks_path = ctx.paths.networks_file();
    let mut networks = NetworksFile::load(&networks_path)?;
    networks.remove(DEVNET, None);
    let (name, id) = canonical_chain(DEVNET, Some(state.chain_id))?;
    networks.add(
        &name,
        id,
        Endpoint {
            url: state.endpoint.clone(),
            allow_writes: true,
        },
    )?;
    networks.save(&networks_path)?;
    report(ctx, &state, "started")?;
    Ok(ExitCode::SUCCESS)
}

fn report(ctx: &Context, state: &DevnetState, what: &str) -> anyhow::Result<()> {
    let contracts = [
        ("USDC (EIP-3009, \"USDC\"/\"2\")", USDC),
        ("OBOL (EIP-2612, Permit2)", OBOL),
        ("Permit2", PERMIT2),
        ("x402 exact Permit2 proxy", EXACT_PERMIT2_PROXY),
        ("x402 upto Permit2 proxy", UPTO_PERMIT2_PROXY),
        ("ERC-8004 Identity Registry", IDENTITY_REGISTRY),
    ];
    if ctx.json {
        let contracts: serde_json::Map<String, serde_json::Value> = contracts
            .iter()
            .map(|(name, address)| ((*name).to_owned(), address.to_checksum(None).into()))
            .collect();
        output::json(
            &json!({"status": what, "chain": DEVNET, "chainId": state.chain_id,
            "endpoint": state.endpoint, "pid": state.pid, "contracts": contracts}),
        )?;
    } else {
        println!(
            "devnet {what}: {} (chain {}, pid {})",
            state.endpoint, state.chain_id, state.pid
        );
        for (name, address) in contracts {
            println!("  {:30} {}", name, address.to_checksum(None));
        }
        println!("  The ten anvil dev accounts hold 1,000,000 USDC and 1,000,000 OBOL each.");
        println!("  Registered as chain `{DEVNET}` (read-write); stop it with `obol devnet down`.");
    }
    Ok(())
}

/// Stops anvil: TERM, then KILL after 5 s (neither if the pid is no longer anvil's).
async fn stop(anvil: Owned) {
    anvil.terminate();
    for _ in 0..100 {
        if !anvil.is_running() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anvil.kill();
}

async fn down(ctx: &Context) -> anyhow::Result<ExitCode> {
    let Some(state) = read_state(ctx)? else {
        if ctx.json {
            output::json(&json!({"status": "not running"}))?;
        } else {
            println!("devnet is not running");
        }
        return Ok(ExitCode::SUCCESS);
    };
    if state.anvil().is_running() {
        stop(state.anvil()).await;
    }
    let _ = std::fs::remove_file(state_file(ctx));
    let networks_path = ctx.paths.networks_file();
    let mut networks = NetworksFile::load(&networks_path)?;
    if networks.remove(DEVNET, None) > 0 {
        networks.save(&networks_path)?;
    }
    if ctx.json {
        output::json(&json!({"status": "stopped", "pid": state.pid}))?;
    } else {
        println!("devnet stopped (pid {})", state.pid);
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(ctx: &Context) -> anyhow::Result<ExitCode> {
    let state = read_state(ctx)?.filter(|s| s.anvil().is_running());
    let Some(state) = state else {
        if ctx.json {
            output::json(&json!({"running": false}))?;
        } else {
            println!("devnet is not running; start it with `obol devnet up`");
        }
        return Ok(ExitCode::FAILURE);
    };
    let config = ChainEndpoints {
        chain_id: state.chain_id,
        endpoints: vec![Endpoint {
            url: state.endpoint.clone(),
            allow_writes: true,
        }],
    };
    let head = ChainClient::connect(DEVNET, &config)?.head().await;
    if ctx.json {
        output::json(
            &json!({"running": true, "endpoint": state.endpoint, "chainId": state.chain_id,
            "pid": state.pid, "head": head.as_ref().ok(), "error": head.as_ref().err().map(ToString::to_string)}),
        )?;
    } else {
        match &head {
            Ok(head) => println!(
                "devnet running: {} (chain {}, pid {}), head block {head}",
                state.endpoint, state.chain_id, state.pid
            ),
            Err(e) => println!(
                "devnet process {} is alive but does not answer: {e}",
                state.pid
            ),
        }
    }
    Ok(if head.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
