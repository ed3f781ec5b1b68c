//! `obol secret set|list|delete`, and the upstream credential of `sell http|inference`
//! (`--upstream-auth-file`, `--upstream-auth-secret`, `--upstream-auth-header`). Values are
//! read from files or stdin, sent once to the daemon, and never printed.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::Context as _;
use obol_control::offer::{SecretRef, UpstreamAuthSpec};
use obol_control::secrets::{SecretData, SecretValue, is_secret_key};
use obol_control::validate::is_dns_label;
use obol_daemon::AdminClient;
use serde_json::json;

use super::Context;
use super::stack::require_admin;
use crate::cli::{SecretCommand, UpstreamAuthFlags};
use crate::output;

/// The key `--upstream-auth-file` stores the value under.
const FILE_KEY: &str = "token";

pub(crate) async fn run(ctx: &Context, command: SecretCommand) -> anyhow::Result<ExitCode> {
    let client = require_admin(ctx).await?;
    match command {
        SecretCommand::Set {
            name,
            namespace,
            from_file,
        } => {
            let mut data = SecretData::new();
            for pair in &from_file {
                let (key, file) = pair
                    .split_once('=')
                    .with_context(|| format!("--from-file {pair:?} is not KEY=FILE"))?;
                anyhow::ensure!(
                    is_secret_key(key),
                    "--from-file {pair:?}: key {key:?} must be letters, digits, '-', '_' or '.'"
                );
                data.insert(key.to_owned(), read_value(file)?);
            }
            let info = client.put_secret(&namespace, &name, data).await?;
            if ctx.json {
                output::json(&serde_json::to_value(&info)?)?;
            } else {
                println!(
                    "secret {namespace}/{name} set (keys: {})",
                    info.keys.join(", ")
                );
            }
        }
        SecretCommand::List { namespace } => {
            let found = client.secrets(&namespace).await?;
            if ctx.json {
                output::json(&serde_json::to_value(&found)?)?;
            } else if found.is_empty() {
                println!("no secrets in {namespace}");
            } else {
                for info in found {
                    println!(
                        "{}/{}  keys: {}",
                        namespace,
                        info.name,
                        info.keys.join(", ")
                    );
                }
            }
        }
        SecretCommand::Delete { name, namespace } => {
            client.delete_secret(&namespace, &name).await?;
            if ctx.json {
                output::json(&json!({"deleted": format!("{namespace}/{name}")}))?;
            } else {
                println!("secret {namespace}/{name} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A secret value from `file` (`-`: stdin).
fn read_value(file: &str) -> anyhow::Result<SecretValue> {
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the secret from stdin")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
    };
    SecretValue::new(&text).with_context(|| file.to_owned())
}

/// The secret `--upstream-auth-file` creates for offer `name`.
fn own_secret(name: &str) -> String {
    format!("{name}-upstream-auth")
}

/// What the upstream-auth flags of offer `name` ask for: the spec's reference (checked with
/// the offer) and, for `--upstream-auth-file`, the value to store first.
pub(super) struct UpstreamCredential {
    pub(super) spec: UpstreamAuthSpec,
    value: Option<SecretValue>,
}

impl UpstreamCredential {
    /// From the flags; `None` when the offer sends no credential.
    pub(super) fn from_flags(
        name: &str,
        flags: &UpstreamAuthFlags,
    ) -> anyhow::Result<Option<Self>> {
        let header = flags.upstream_auth_header.clone();
        if let Some(file) = &flags.upstream_auth_file {
            let value = read_value(file)?;
            let secret = own_secret(name);
            anyhow::ensure!(
                is_dns_label(&secret),
                "offer name {name:?} is too long for its secret {secret:?} (63 at most); store the key with `obol secret set` and pass --upstream-auth-secret"
            );
            return Ok(Some(Self {
                spec: UpstreamAuthSpec {
                    secret_ref: SecretRef {
                        name: secret,
                        key: FILE_KEY.to_owned(),
                    },
                    header,
                },
                value: Some(value),
            }));
        }
        if let Some(reference) = &flags.upstream_auth_secret {
            let (secret, key) = reference.split_once('/').with_context(|| {
                format!("--upstream-auth-secret {reference:?} is not SECRET/KEY")
            })?;
            return Ok(Some(Self {
                spec: UpstreamAuthSpec {
                    secret_ref: SecretRef {
                        name: secret.to_owned(),
                        key: key.to_owned(),
                    },
                    header,
                },
                value: None,
            }));
        }
        anyhow::ensure!(
            header.is_none(),
            "--upstream-auth-header needs --upstream-auth-file or --upstream-auth-secret"
        );
        Ok(None)
    }

    /// Stores the value (if the flags gave one) in the offer's namespace.
    pub(super) async fn store(&self, client: &AdminClient, namespace: &str) -> anyhow::Result<()> {
        if let Some(value) = &self.value {
            let data = SecretData::from([(FILE_KEY.to_owned(), value.clone())]);
            client
                .put_secret(namespace, &self.spec.secret_ref.name, data)
                .await?;
        }
        Ok(())
    }
}

/// Deletes the secret `--upstream-auth-file` made for the deleted offer `name`, if it used it.
pub(super) async fn forget_own_secret(
    client: &AdminClient,
    namespace: &str,
    name: &str,
    auth: Option<&UpstreamAuthSpec>,
) -> anyhow::Result<()> {
    let secret = own_secret(name);
    if auth.is_some_and(|a| a.secret_ref.name == secret) {
        match client.delete_secret(namespace, &secret).await {
            Err(e) if e.status != Some(404) => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}
