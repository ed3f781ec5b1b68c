//! The tokens the CLI can pay in: the built-in table plus the ones the user confirmed with
//! `--token-address`, kept in `<config>/tokens.json` so later commands (`buy refill`, `buy list`,
//! `wallet balance`, `obol mcp`) know them too.
//!
//! A confirmed token never takes the name of a token the table has on the same chain: a seller
//! cannot get "USDC" to mean its own contract.

use anyhow::{Context as _, bail};
use obol_buyer::Offered;
use obol_x402::{Token, TokenRegistry, network};
use serde::{Deserialize, Serialize};

use super::Context;
use crate::cli::TokenArgs;
use crate::output;

/// `<config>/tokens.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<Token>,
}

/// The built-in table plus the confirmed tokens.
pub(super) fn registry(ctx: &Context) -> anyhow::Result<TokenRegistry> {
    let path = ctx.paths.tokens_file();
    let file: TokensFile = obol_config::fs::load_json(&path, "confirmed tokens")?;
    let mut registry = TokenRegistry::builtin();
    for token in file.tokens {
        shadows(&registry, &token)
            .map_err(|e| e.context(format!("{} is not usable", path.display())))?;
        registry.insert(token);
    }
    Ok(registry)
}

/// Refuses a token named like another one on its chain.
fn shadows(registry: &TokenRegistry, token: &Token) -> anyhow::Result<()> {
    if let Some(taken) = registry
        .on_chain(token.chain_id)
        .find(|t| t.symbol.eq_ignore_ascii_case(&token.symbol) && t.address != token.address)
    {
        bail!(
            "{} on {} is {}; name the token at {} differently (--token)",
            taken.symbol,
            taken.network_name(),
            taken.address,
            token.address
        );
    }
    Ok(())
}

/// The registry to choose a payment in: with `--token-address`, the seller's option in that
/// asset becomes a known token named `--token` (its EIP-712 domain from the option's `extra`,
/// its decimals read from the chain) and is remembered.
pub(super) async fn confirm(
    ctx: &Context,
    args: &TokenArgs,
    offered: &Offered,
) -> anyhow::Result<TokenRegistry> {
    let mut registry = registry(ctx)?;
    let Some(address) = args.token_address else {
        return Ok(registry);
    };
    let Some(requirement) = offered
        .accepts
        .iter()
        .find(|r| r.asset_address().ok() == Some(address))
    else {
        bail!(
            "the seller asks for no payment in {address} (--token-address); it asks for {}",
            super::buy::clean(&assets(offered))
        );
    };
    let chain_id = network::evm_chain_id(&requirement.network)
        .with_context(|| format!("the seller's network {:?}", requirement.network))?;
    if let Some(known) = registry.by_address(chain_id, address) {
        if !known.symbol.eq_ignore_ascii_case(&args.symbol) {
            bail!(
                "{address} is {} on {}, not {} (--token)",
                known.symbol,
                known.network_name(),
                args.symbol
            );
        }
        return Ok(registry);
    }
    let transfer_method = requirement.transfer_method()?;
    // Permit2 payments sign under Permit2's domain; EIP-3009 ones under the token's.
    let (name, version) = match requirement.eip712_domain() {
        Ok((name, version)) => (name.to_owned(), version.to_owned()),
        Err(_) if transfer_method == obol_x402::TransferMethod::Permit2 => Default::default(),
        Err(e) => bail!("the seller's option in {address}: {e}"),
    };
    let chain = super::permit2::chain_by_id(ctx, chain_id)?.with_context(|| {
        format!(
            "reading the decimals of {address} needs an endpoint for chain {chain_id}: `obol network add`"
        )
    })?;
    let decimals = chain
        .token_decimals(address)
        .await
        .with_context(|| format!("reading decimals() of {address} on chain {chain_id}"))?;
    let token = Token {
        symbol: args.symbol.to_ascii_uppercase(),
        chain_id,
        address,
        decimals,
        transfer_method,
        eip712_name: name,
        eip712_version: version,
        eip2612_gas_sponsoring: false,
    };
    shadows(&registry, &token)?;
    let path = ctx.paths.tokens_file();
    let mut file: TokensFile = obol_config::fs::load_json(&path, "confirmed tokens")?;
    file.tokens.push(token.clone());
    obol_config::fs::save_json(&path, &file)?;
    output::note(&format!(
        "confirmed {} = {address} on {} ({decimals} decimals, {transfer_method}); remembered in {}",
        token.symbol,
        token.network_name(),
        path.display()
    ));
    registry.insert(token);
    Ok(registry)
}

/// `asset on network, …` of every option.
fn assets(offered: &Offered) -> String {
    let listed: Vec<String> = offered
        .accepts
        .iter()
        .map(|r| format!("{} on {}", r.asset, r.network))
        .collect();
    listed.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(dir: &std::path::Path) -> Context {
        Context {
            paths: obol_config::Paths::under(dir),
            json: false,
        }
    }

    fn coin(symbol: &str) -> Token {
        Token {
            symbol: symbol.into(),
            chain_id: 84532,
            address: "0xe0C0000000000000000000000000000000000402"
                .parse()
                .unwrap(),
            decimals: 6,
            transfer_method: obol_x402::TransferMethod::Eip3009,
            eip712_name: "USDC".into(),
            eip712_version: "2".into(),
            eip2612_gas_sponsoring: false,
        }
    }

    fn save(ctx: &Context, tokens: Vec<Token>) {
        obol_config::fs::save_json(&ctx.paths.tokens_file(), &TokensFile { tokens }).unwrap();
    }

    #[test]
    fn confirmed_tokens_join_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        assert_eq!(registry(&ctx).unwrap(), TokenRegistry::builtin(), "no file");
        save(&ctx, vec![coin("EURT")]);
        let registry = registry(&ctx).unwrap();
        let found = registry.resolve("eurt", "base-sepolia").unwrap();
        assert_eq!(found, &coin("EURT"));
        assert_eq!(
            registry.resolve("USDC", "base-sepolia").unwrap().address,
            TokenRegistry::builtin()
                .resolve("USDC", "base-sepolia")
                .unwrap()
                .address,
            "the table's own entries stand"
        );
    }

    #[test]
    fn a_file_naming_another_contract_like_a_table_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        save(&ctx, vec![coin("usdc")]);
        let error = format!("{:#}", registry(&ctx).unwrap_err());
        assert!(error.contains("tokens.json is not usable: USDC on base-sepolia is 0x036CbD53842c5426634e7929541eC2318f3dCF7e; name the token at 0xe0C0000000000000000000000000000000000402 differently"), "{error}");
    }
}
