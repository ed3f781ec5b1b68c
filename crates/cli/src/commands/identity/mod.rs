//! `obol sell register` and `obol sell identity import|forget|show`: the stack's ERC-8004 agent
//! ids, one per chain, kept in the `AgentIdentity` `x402/default` (status) through the admin API.
//!
//! The daemon never signs: these commands do, with the operator's key, and record what the chain
//! says. Registration never mints twice (obol-erc8004 recovers a mined registration by owner and
//! URI before sending, and `ensure_registered` updates a drifted agentURI instead of minting).
//! `sell http|inference` run the same flow when they can do it without asking anything
//! ([`auto_register`]); a failure there is a warning, the offer keeps serving.
//!
//! | module | what |
//! | --- | --- |
//! | this one | `sell identity` dispatch; helpers shared by the commands (load, update and read the stored identity, the chain's client and registry) |
//! | `register` | `sell register`: the register flow (ensure the agent, record its id, write the `x402` metadata), its checks and explanations |
//! | `auto` | auto-registration after `sell http\|inference` ([`auto_register`]), with a signer found without a prompt |
//! | `records` | `sell identity import\|forget\|show`: the recorded agent ids |

mod auto;
mod records;
mod register;

pub(super) use auto::{AutoRegistration, auto_register};
pub(super) use register::{Effort, SpecUpdate, agent_id_json, register, register_on};

use std::process::ExitCode;

use anyhow::Context as _;
use obol_config::NetworksFile;
use obol_config::networks::chain_key;
use obol_control::identity::{
    AgentIdentity, AgentIdentitySpec, DEFAULT_IDENTITY, default_identity,
};
use obol_control::registration::ChainIds;
use obol_daemon::AdminClient;
use obol_erc8004::{AgentRegistry, Registries, U256, printable};

use super::Context;
use crate::cli::IdentityCommand;

/// `obol sell identity …`.
pub(super) async fn identity(ctx: &Context, command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::Import {
            agent_id,
            chain,
            signer,
        } => records::import(ctx, agent_id, &chain, &signer).await,
        IdentityCommand::Forget { chain } => records::forget(ctx, &chain).await,
        IdentityCommand::Show => records::show(ctx).await,
    }
}

/// The canonical identity, or an empty one when none is stored yet.
async fn load_identity(client: &AdminClient) -> anyhow::Result<AgentIdentity> {
    match client
        .get::<AgentIdentitySpec>(DEFAULT_IDENTITY.0, DEFAULT_IDENTITY.1)
        .await
    {
        Ok(identity) => Ok(identity),
        Err(e) if e.is_not_found() => Ok(default_identity()),
        Err(e) => Err(e.into()),
    }
}

fn chain_ids(ctx: &Context) -> anyhow::Result<ChainIds> {
    Ok(ChainIds::from_networks(&NetworksFile::load(
        &ctx.paths.networks_file(),
    )?))
}

/// The chain's client and its Identity Registry.
fn chain_and_registry(
    ctx: &Context,
    chain: &str,
) -> anyhow::Result<(obol_chain::ChainClient, AgentRegistry)> {
    let client = super::network::client(ctx, chain)?;
    let registry = Registries::builtin()
        .get(client.chain_id())
        .with_context(|| {
            format!(
                "no ERC-8004 Identity Registry is known on {} (chain id {})",
                chain_key(chain),
                client.chain_id()
            )
        })?;
    Ok((client, registry))
}

/// The recorded entry for `chain` (same name, else same chain id) as `(name, id)`.
fn recorded(
    identity: &AgentIdentity,
    chains: &ChainIds,
    chain: &str,
) -> anyhow::Result<Option<(String, U256)>> {
    chains
        .registration_for(&identity.status, chain)
        .map(|r| {
            let id = U256::from_str_radix(r.agent_id.trim(), 10).map_err(|_| {
                anyhow::anyhow!(
                    "the agent id recorded for {} is not a number ({:?}); forget it with `obol sell identity forget {}`",
                    r.chain,
                    printable(&r.agent_id, 40),
                    r.chain
                )
            })?;
            Ok((r.chain.clone(), id))
        })
        .transpose()
}

/// Re-reads the identity, applies `change`, and stores it.
async fn update_identity(
    client: &AdminClient,
    change: impl FnOnce(&mut AgentIdentity) -> anyhow::Result<()>,
) -> anyhow::Result<AgentIdentity> {
    let mut identity = load_identity(client).await?;
    change(&mut identity)?;
    Ok(client.apply(&identity).await?.object)
}
