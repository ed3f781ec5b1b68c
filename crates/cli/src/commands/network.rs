//! `obol network …`: RPC endpoints per chain in `<config>/networks.json`.

use std::process::ExitCode;

use anyhow::Context as _;
use obol_chain::{ChainClient, RpcUrl, redact};
use obol_config::networks::{AddOutcome, canonical_chain, chain_key};
use obol_config::{ChainEndpoints, Endpoint, NetworksFile};
use serde_json::json;

use super::Context;
use crate::cli::NetworkCommand;
use crate::output;

pub(crate) async fn run(ctx: &Context, command: NetworkCommand) -> anyhow::Result<ExitCode> {
    let path = ctx.paths.networks_file();
    let mut file = NetworksFile::load(&path)?;
    match command {
        NetworkCommand::List => list(ctx, &file),
        NetworkCommand::Add {
            chain,
            endpoint,
            allow_writes,
            chain_id,
            no_check,
        } => {
            let (name, id) = canonical_chain(&chain, chain_id)?;
            let url = RpcUrl::parse(&endpoint)?;
            let entry = Endpoint {
                url: endpoint.trim().to_owned(),
                allow_writes,
            };
            if !no_check {
                let single = ChainEndpoints {
                    chain_id: id,
                    endpoints: vec![entry.clone()],
                };
                ChainClient::connect(&name, &single)?
                    .check_chain_id()
                    .await
                    .with_context(|| {
                        format!(
                            "endpoint {url} failed the check (pass --no-check to save it anyway)"
                        )
                    })?;
            }
            let outcome = file.add(&name, id, entry)?;
            file.save(&path)?;
            let mode = if allow_writes {
                "read-write"
            } else {
                "read-only"
            };
            if ctx.json {
                output::json(
                    &json!({"chain": name, "chainId": id, "url": url.to_string(),
                    "allowWrites": allow_writes, "outcome": format!("{outcome:?}").to_lowercase()}),
                )?;
            } else {
                let verb = match outcome {
                    AddOutcome::Added => "Added",
                    AddOutcome::Updated => "Updated",
                };
                println!("{verb} {url} for {name} (chain {id}, {mode})");
            }
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Remove { chain, endpoint } => {
            let removed = file.remove(&chain, endpoint.as_deref());
            if removed == 0 {
                let what = endpoint
                    .as_deref()
                    .map_or_else(String::new, |u| format!(" {}", redact(u)));
                anyhow::bail!("no endpoint{what} configured for {}", chain_key(&chain));
            }
            file.save(&path)?;
            if ctx.json {
                output::json(&json!({"chain": chain_key(&chain), "removed": removed}))?;
            } else {
                let plural = if removed == 1 { "" } else { "s" };
                println!(
                    "Removed {removed} endpoint{plural} from {}",
                    chain_key(&chain)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Status { chain } => status(ctx, &file, chain.as_deref()).await,
    }
}

/// A client for a configured chain, or an error saying how to configure it.
pub(crate) fn client(ctx: &Context, chain: &str) -> anyhow::Result<ChainClient> {
    let file = NetworksFile::load(&ctx.paths.networks_file())?;
    let key = chain_key(chain);
    let Some(config) = file.get(chain) else {
        // Unknown names get the registry's list; known ones the "add an endpoint" hint.
        canonical_chain(chain, None)
            .map_err(|e| anyhow::anyhow!("{e}{}", configured_hint(&file)))?;
        return Err(obol_chain::ChainError::NoEndpoint { chain: key }.into());
    };
    Ok(ChainClient::connect(&key, config)?)
}

fn configured_hint(file: &NetworksFile) -> String {
    if file.chains.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = file.chains.keys().map(String::as_str).collect();
        format!(" (configured chains: {})", names.join(", "))
    }
}

fn list(ctx: &Context, file: &NetworksFile) -> anyhow::Result<ExitCode> {
    if ctx.json {
        let chains: Vec<_> = file
            .chains
            .iter()
            .map(|(name, chain)| {
                json!({"name": name, "chainId": chain.chain_id, "endpoints": chain.endpoints.iter()
                    .map(|e| json!({"url": redact(&e.url), "allowWrites": e.allow_writes}))
                    .collect::<Vec<_>>()})
            })
            .collect();
        output::json(&json!({"chains": chains}))?;
        return Ok(ExitCode::SUCCESS);
    }
    if file.chains.is_empty() {
        println!(
            "No RPC endpoints configured. Add one with `obol network add <chain> --endpoint URL [--allow-writes]`."
        );
    }
    for (name, chain) in &file.chains {
        let plural = if chain.endpoints.len() == 1 { "" } else { "s" };
        println!(
            "{name} (chain {}): {} endpoint{plural}",
            chain.chain_id,
            chain.endpoints.len()
        );
        for endpoint in &chain.endpoints {
            let mode = if endpoint.allow_writes {
                "read-write"
            } else {
                "read-only"
            };
            println!("  {}  {mode}", redact(&endpoint.url));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(
    ctx: &Context,
    file: &NetworksFile,
    only: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let selected: Vec<(&String, &ChainEndpoints)> = match only {
        Some(chain) => {
            let key = chain_key(chain);
            let entry = file
                .chains
                .get_key_value(&key)
                .ok_or_else(|| obol_chain::ChainError::NoEndpoint { chain: key.clone() })?;
            vec![entry]
        }
        None => file.chains.iter().collect(),
    };
    let mut report = Vec::new();
    let mut healthy = true;
    for (name, chain) in selected {
        let probes = ChainClient::probe_endpoints(name, chain).await;
        healthy &= probes.iter().any(|p| p.error.is_none());
        report.push((name, chain.chain_id, probes));
    }
    if ctx.json {
        let chains: Vec<_> = report
            .iter()
            .map(|(name, id, probes)| json!({"name": name, "chainId": id, "endpoints": probes}))
            .collect();
        output::json(&json!({"chains": chains}))?;
    } else {
        if report.is_empty() {
            println!(
                "No RPC endpoints configured. Add one with `obol network add <chain> --endpoint URL`."
            );
        }
        for (name, id, probes) in &report {
            println!("{name} (chain {id})");
            for probe in probes {
                match (&probe.error, probe.head, probe.latency_ms) {
                    (None, Some(head), Some(ms)) => {
                        println!("  ✓ {}  head {head}  {ms} ms", probe.url);
                    }
                    (error, _, _) => println!(
                        "  ✗ {}  {}",
                        probe.url,
                        error.as_deref().unwrap_or("no answer")
                    ),
                }
            }
        }
    }
    // A chain with no working endpoint makes the command fail, for scripts and health checks.
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
