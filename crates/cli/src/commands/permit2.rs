//! Paying in a Permit2 token (e.g. OBOL) needs, once per token, an ERC-20 approval that lets
//! the Permit2 contract move the payer's tokens; every payment after that is a signature only.

use std::time::Duration;

use anyhow::{Context as _, bail};
use obol_chain::{ChainClient, Sender};
use obol_config::NetworksFile;
use obol_x402::primitives::{B256, U256};
use obol_x402::token::{PERMIT2, TransferMethod};
use obol_x402::{LocalSigner, Token};

use super::Context;

/// How long the approval may take to be mined.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The configured chain with this id, if any.
pub(super) fn chain_by_id(ctx: &Context, chain_id: u64) -> anyhow::Result<Option<ChainClient>> {
    let file = NetworksFile::load(&ctx.paths.networks_file())?;
    file.chains
        .iter()
        .find(|(_, c)| c.chain_id == chain_id)
        .map(|(name, endpoints)| ChainClient::connect(name, endpoints))
        .transpose()
        .map_err(Into::into)
}

/// A pending approval: `signer` must let Permit2 move `token` before paying.
pub(super) struct Approval {
    client: ChainClient,
    token: Token,
}

impl Approval {
    /// What will happen, for the summary.
    pub(super) fn describe(&self, signer: &LocalSigner) -> String {
        format!(
            "one approval transaction first: Permit2 may then move {}'s {} (gas paid by it)",
            signer.address(),
            self.token.symbol
        )
    }

    /// Sends `approve(Permit2, max)` and waits until it is mined.
    pub(super) async fn send(&self, signer: &LocalSigner) -> anyhow::Result<B256> {
        let sender = Sender::new(&self.client, signer);
        let hash = sender
            .approve(self.token.address, PERMIT2, U256::MAX)
            .await
            .with_context(|| format!("approving Permit2 for {}", self.token.symbol))?;
        let (hash, mined) = sender.wait_receipt(hash, RECEIPT_TIMEOUT).await;
        match mined {
            Ok(Some(true)) => Ok(hash),
            Ok(Some(false)) => bail!("the Permit2 approval {hash} reverted"),
            Ok(None) => bail!(
                "the Permit2 approval {hash} was not mined within {} s",
                RECEIPT_TIMEOUT.as_secs()
            ),
            Err(e) => bail!("waiting for the Permit2 approval {hash}: {e}"),
        }
    }
}

/// Whether paying `needed` of `token` from `signer` needs an approval first (`None` for
/// EIP-3009 tokens and for enough allowance). A Permit2 token on a chain without a configured
/// RPC endpoint is refused: nothing could be paid.
pub(super) async fn needed(
    ctx: &Context,
    token: &Token,
    signer: &LocalSigner,
    needed: U256,
) -> anyhow::Result<Option<Approval>> {
    if token.transfer_method != TransferMethod::Permit2 {
        return Ok(None);
    }
    let client = chain_by_id(ctx, token.chain_id)?.with_context(|| {
        format!(
            "paying in {} goes through Permit2, which needs a one-time approval sent from {}; add a write-enabled RPC endpoint for chain {} (`obol network add <chain> --endpoint URL --allow-writes`)",
            token.symbol,
            signer.address(),
            token.chain_id
        )
    })?;
    let allowance = client
        .token_allowance(token.address, signer.address(), PERMIT2)
        .await?;
    Ok((allowance < needed).then(|| Approval {
        client,
        token: token.clone(),
    }))
}
