//! `obol wallet …`: keystores under `<config>/wallets`.

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use obol_config::env;
use obol_wallet::{PasswordSource, SignerSource, WalletStore, read_password};
use obol_x402::money::format_units;
use obol_x402::primitives::Address;
use obol_x402::{LocalSigner, TokenRegistry};
use serde_json::json;

use super::{Context, network};
use crate::cli::{PasswordArgs, SignerArgs, WalletCommand};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: WalletCommand) -> anyhow::Result<ExitCode> {
    let store = WalletStore::new(&ctx.paths);
    match command {
        WalletCommand::New { name, password } => {
            obol_wallet::validate_name(&name)?;
            let password = read_password(&password_source(&password), true)?;
            let info = store.create(&name, &password)?;
            report_written(ctx, "Created", &info)
        }
        WalletCommand::Import {
            name,
            private_key_file,
            password,
        } => {
            obol_wallet::validate_name(&name)?;
            let key = read_private_key(private_key_file.as_deref())?;
            let password = read_password(&password_source(&password), true)?;
            let info = store.import(&name, &key, &password)?;
            report_written(ctx, "Imported", &info)
        }
        WalletCommand::List => list(ctx, &store),
        WalletCommand::Address { name } => {
            let (address, source) = address_of(&store, name.as_deref())?;
            if ctx.json {
                output::json(
                    &json!({"address": address.to_checksum(None), "source": source.to_string()}),
                )?;
            } else {
                println!("{}", address.to_checksum(None));
            }
            Ok(ExitCode::SUCCESS)
        }
        WalletCommand::Balance { name, chain, token } => {
            let (address, _) = address_of(&store, name.as_deref())?;
            balance(ctx, address, &chain, token.as_deref()).await
        }
    }
}

/// The signer of `--key-file`, `--keystore` or `--wallet` (else $OBOL_PRIVATE_KEY when set,
/// else the default wallet), and where it came from.
pub(crate) fn load_signer(
    ctx: &Context,
    args: &SignerArgs,
) -> anyhow::Result<(LocalSigner, SignerSource)> {
    let env_key = std::env::var(env::PRIVATE_KEY)
        .ok()
        .filter(|k| !k.is_empty());
    let password = &args.password;
    let source = match (&args.key_file, &args.keystore) {
        (Some(file), _) => SignerSource::KeyFile(file.clone()),
        (None, Some(file)) => SignerSource::KeystoreFile(file.clone()),
        (None, None) => SignerSource::resolve(
            env_key.is_some() && args.wallet.is_none(),
            args.wallet.as_deref(),
        ),
    };
    let store = WalletStore::new(&ctx.paths);
    let signer = source.load(&store, env_key.as_deref(), || {
        read_password(&password_source(password), false)
    })?;
    Ok((signer, source))
}

pub(crate) fn password_source(args: &PasswordArgs) -> PasswordSource {
    PasswordSource {
        file: args.password_file.clone(),
        env: std::env::var(env::WALLET_PASSWORD).ok(),
        prompt: true,
    }
}

fn read_private_key(file: Option<&Path>) -> anyhow::Result<String> {
    let text = match file {
        Some(path) if path != Path::new("-") => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        _ if file.is_none() && std::io::stdin().is_terminal() => {
            rpassword::prompt_password("Private key (hex): ").context("cannot read the key")?
        }
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut text)
                .context("cannot read the private key from stdin")?;
            text
        }
    };
    Ok(text.trim().to_owned())
}

fn report_written(
    ctx: &Context,
    verb: &str,
    info: &obol_wallet::WalletInfo,
) -> anyhow::Result<ExitCode> {
    if ctx.json {
        output::json(&serde_json::to_value(info)?)?;
    } else {
        println!("{verb} wallet {}: {}", info.name, info.address);
        println!("  keystore: {}", info.path.display());
        println!("  Back up this file and its password: the key cannot be recovered without both.");
    }
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Context, store: &WalletStore) -> anyhow::Result<ExitCode> {
    let wallets = store.list()?;
    if ctx.json {
        output::json(&serde_json::to_value(&wallets)?)?;
    } else if wallets.is_empty() {
        println!("No wallets yet; create one with `obol wallet new` or `obol wallet import`.");
    } else {
        let width = wallets
            .iter()
            .map(|w| w.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!("{:width$}  ADDRESS", "NAME");
        for wallet in wallets {
            println!("{:width$}  {}", wallet.name, wallet.address);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The address of the named wallet, or of the env key when it is set and no name is given.
fn address_of(store: &WalletStore, name: Option<&str>) -> anyhow::Result<(Address, SignerSource)> {
    let env_key = std::env::var(env::PRIVATE_KEY)
        .ok()
        .filter(|k| !k.is_empty());
    let source = SignerSource::resolve(env_key.is_some() && name.is_none(), name);
    let address = match &source {
        SignerSource::EnvKey => {
            LocalSigner::from_private_key_hex(env_key.as_deref().unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("${}: {e}", env::PRIVATE_KEY))?
                .address()
        }
        SignerSource::Keystore(name) => store.address(name)?,
        other => anyhow::bail!("{other} is not a named wallet"),
    };
    Ok((address, source))
}

async fn balance(
    ctx: &Context,
    address: Address,
    chain: &str,
    token: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let client = network::client(ctx, chain)?;
    let native = client.native_balance(address).await?;
    let registry = super::tokens::registry(ctx)?;
    let symbol = token.unwrap_or("USDC");
    let token_info = registry
        .on_chain(client.chain_id())
        .find(|t| t.symbol.eq_ignore_ascii_case(symbol));
    let token_balance = match (token_info, token) {
        (Some(info), requested) => {
            let read = client
                .token_balance(info.address, address)
                .await
                .with_context(|| {
                    format!(
                        "cannot read the {} balance from its contract {} on {}",
                        info.symbol,
                        info.address.to_checksum(None),
                        client.name()
                    )
                });
            match read {
                Ok(amount) => Some((info, amount)),
                // Asked for: an error. Implied (USDC by default): the native balance still
                // stands, with a note.
                Err(e) if requested.is_some() => return Err(e),
                Err(e) => {
                    output::note(&format!("note: {e:#}"));
                    None
                }
            }
        }
        (None, Some(symbol)) => anyhow::bail!(
            "no token {symbol:?} known on {} (chain {}); known there: {}",
            client.name(),
            client.chain_id(),
            known_symbols(&registry, client.chain_id())
        ),
        (None, None) => None,
    };
    if ctx.json {
        let token_json = token_balance.as_ref().map(|(info, amount)| {
            json!({"symbol": info.symbol, "address": info.address.to_checksum(None),
                   "atomic": amount.to_string(), "formatted": format_units(*amount, info.decimals)})
        });
        output::json(&json!({
            "address": address.to_checksum(None),
            "chain": client.name(),
            "chainId": client.chain_id(),
            "native": {"atomic": native.to_string(), "formatted": format_units(native, 18)},
            "token": token_json,
        }))?;
    } else {
        let mut line = format!(
            "{} on {} (chain {}): {} ETH",
            address.to_checksum(None),
            client.name(),
            client.chain_id(),
            format_units(native, 18)
        );
        if let Some((info, amount)) = token_balance {
            line.push_str(&format!(
                ", {} {}",
                format_units(amount, info.decimals),
                info.symbol
            ));
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn known_symbols(registry: &TokenRegistry, chain_id: u64) -> String {
    let symbols: Vec<&str> = registry
        .on_chain(chain_id)
        .map(|t| t.symbol.as_str())
        .collect();
    if symbols.is_empty() {
        "none".to_owned()
    } else {
        symbols.join(", ")
    }
}
