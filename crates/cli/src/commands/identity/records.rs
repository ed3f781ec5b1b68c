//! `obol sell identity import|forget|show`: record an agent id the signer controls (checked
//! on-chain), forget one (the NFT stays), and list what is recorded.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use obol_config::networks::chain_key;
use obol_control::registration::agent_uri;
use obol_erc8004::{Erc8004Error, IdentityClient, U256, printable};
use serde_json::{Value, json};

use super::{chain_and_registry, chain_ids, load_identity, recorded, update_identity};
use crate::commands::Context;
use crate::commands::stack::require_admin;
use crate::output;

/// `obol sell identity import`: records an agent the signer controls.
pub(super) async fn import(
    ctx: &Context,
    agent_id: u64,
    chain: &str,
    signer_args: &crate::cli::SignerArgs,
) -> anyhow::Result<ExitCode> {
    let client = require_admin(ctx).await?;
    let (chain_client, registry) = chain_and_registry(ctx, chain)?;
    let chains = chain_ids(ctx)?;
    let identity = load_identity(&client).await?;
    let existing = recorded(&identity, &chains, chain)?;
    let id = U256::from(agent_id);
    if let Some((name, other)) = &existing
        && *other != id
    {
        bail!(
            "{name} already has agent id {other}; forget it first with `obol sell identity forget {name}`"
        );
    }
    let (signer, _) = crate::commands::wallet::load_signer(ctx, signer_args)?;
    let reader = IdentityClient::new(chain_client, registry)?;
    let control = reader
        .verify_control(id, signer.address())
        .await
        .map_err(|e| match e {
            Erc8004Error::UnknownAgent { .. } => {
                anyhow::anyhow!("agent {agent_id} does not exist in {registry}")
            }
            other => other.into(),
        })?;
    if !control.controls() {
        let wallet = control
            .agent_wallet
            .map_or_else(String::new, |w| format!(", agent wallet {w}"));
        bail!(
            "signer {} does not control agent {agent_id} (owner {}{wallet}); sign with its owner or agent wallet",
            signer.address(),
            control.owner
        );
    }
    let uri = reader.agent_uri(id).await?;
    let record_as = existing.map_or_else(|| chain_key(chain), |(name, _)| name);
    update_identity(&client, |identity| {
        Ok(identity
            .status
            .record(&record_as, &agent_id.to_string(), None)?)
    })
    .await?;
    let status = client.status().await?;
    let ours = (!status.public_url_is_default).then(|| agent_uri(&status.public_url));
    let drifted = ours.as_deref().is_some_and(|ours| ours != uri.trim());
    if ctx.json {
        output::json(&json!({
            "agentId": agent_id, "chain": record_as, "agentRegistry": registry.to_string(),
            "owner": control.owner.to_checksum(None), "agentUri": uri,
            "pointsHere": ours.as_deref().map(|ours| ours == uri.trim()),
        }))?;
    } else {
        println!("Imported agent {agent_id} on {record_as} ({registry})");
        println!("  owner:    {}", control.owner);
        println!("  agentURI: {}", printable(&uri, 200));
        if drifted {
            output::note(&format!(
                "note: its agentURI is not this stack's document; point it here with `obol sell register --chain {record_as}`"
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `obol sell identity forget`: drops the recorded agent id of a chain (the NFT stays).
pub(super) async fn forget(ctx: &Context, chain: &str) -> anyhow::Result<ExitCode> {
    let client = require_admin(ctx).await?;
    let mut forgotten = None;
    update_identity(&client, |identity| {
        let key = chain_key(chain);
        let Some(entry) = identity
            .status
            .registrations
            .iter()
            .find(|r| chain_key(&r.chain) == key)
            .cloned()
        else {
            let recorded: Vec<&str> = identity
                .status
                .registrations
                .iter()
                .map(|r| r.chain.as_str())
                .collect();
            bail!(
                "no agent id is recorded for {key} (recorded: {})",
                if recorded.is_empty() {
                    "none".to_owned()
                } else {
                    recorded.join(", ")
                }
            );
        };
        identity.status.remove(&entry.chain);
        forgotten = Some(entry);
        Ok(())
    })
    .await?;
    let entry = forgotten.context("nothing forgotten")?;
    if ctx.json {
        output::json(&json!({"forgotten": {"chain": entry.chain, "agentId": entry.agent_id}}))?;
    } else {
        println!(
            "Forgot agent {} on {}; the NFT stays on-chain (import it again with `obol sell identity import --agent-id {} --chain {}`)",
            entry.agent_id, entry.chain, entry.agent_id, entry.chain
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `obol sell identity show`: the identity and its recorded agent ids.
pub(super) async fn show(ctx: &Context) -> anyhow::Result<ExitCode> {
    let client = require_admin(ctx).await?;
    let identity = load_identity(&client).await?;
    let status = client.status().await?;
    let chains = chain_ids(ctx)?;
    let document = agent_uri(&status.public_url);
    let rows: Vec<Value> = identity
        .status
        .registrations
        .iter()
        .map(|r| {
            json!({
                "chain": r.chain,
                "chainId": chains.chain_id(&r.chain),
                "agentId": r.agent_id,
                "agentRegistry": chains.registry(&r.chain).map(|g| g.to_string()),
                "txHash": r.tx_hash,
            })
        })
        .collect();
    if ctx.json {
        output::json(&json!({
            "namespace": identity.metadata.namespace,
            "name": identity.metadata.name,
            "spec": identity.spec,
            "agentUri": document,
            "publicUrlIsDefault": status.public_url_is_default,
            "registrations": rows,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "AgentIdentity {}/{}",
        identity.metadata.namespace, identity.metadata.name
    );
    println!("  document: {document}");
    if let Some(name) = &identity.spec.name {
        println!("  name:     {name}");
    }
    if identity.status.registrations.is_empty() {
        println!("  no agent ids yet; register with `obol sell register --chain C`");
        return Ok(ExitCode::SUCCESS);
    }
    for (r, row) in identity.status.registrations.iter().zip(&rows) {
        println!(
            "  {:14} agent {:8} {}",
            r.chain,
            r.agent_id,
            row["agentRegistry"]
                .as_str()
                .unwrap_or("(no known registry)")
        );
    }
    Ok(ExitCode::SUCCESS)
}
