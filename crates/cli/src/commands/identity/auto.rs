//! Auto-registration: `sell http|inference` run the register flow after applying an offer
//! when they can do it without asking anything (registration enabled, a public URL, a signer
//! without a prompt, a write-enabled endpoint); a failure there is a warning, the offer keeps
//! serving.

use obol_config::networks::chain_key;
use obol_config::{NetworksFile, env};
use obol_control::ServiceOffer;
use obol_daemon::AdminClient;
use obol_erc8004::ClientOptions;
use obol_x402::LocalSigner;
use serde_json::{Value, json};

use super::register::{Effort, OlderAgents, SpecUpdate, register_on};
use crate::commands::Context;
use crate::output;

/// What [`auto_register`] did.
pub(in crate::commands) enum AutoRegistration {
    /// Not attempted, and why (with the command that would do it).
    Skipped(String),
    /// Done.
    Done(Box<RegisteredSummary>),
    /// Attempted and failed: a warning, the offer keeps serving.
    Failed(String),
}

/// The part of a registration `sell http|inference` reports.
pub(in crate::commands) struct RegisteredSummary {
    line: String,
    json: Value,
    warnings: Vec<String>,
}

impl AutoRegistration {
    /// The `registration` member of `sell http --json`.
    pub(in crate::commands) fn json(&self) -> Value {
        match self {
            Self::Skipped(reason) => json!({"status": "skipped", "reason": reason}),
            Self::Done(done) => {
                let mut value = done.json.clone();
                value["status"] = json!("registered");
                value
            }
            Self::Failed(error) => json!({"status": "failed", "error": error}),
        }
    }

    /// Human lines: a summary on stdout, warnings on stderr.
    pub(in crate::commands) fn print(&self) {
        match self {
            Self::Skipped(reason) => println!("  ERC-8004: not registered: {reason}"),
            Self::Done(done) => {
                println!("  ERC-8004: {}", done.line);
                for warning in &done.warnings {
                    output::note(&format!("warning: {warning}"));
                }
            }
            Self::Failed(error) => output::note(&format!(
                "warning: ERC-8004 registration failed: {error}; the offer serves paid traffic \
                 meanwhile (Registered: AwaitingExternalRegistration)"
            )),
        }
    }
}

/// A signer available without asking anything: `OBOL_PRIVATE_KEY`, or the default wallet with
/// `OBOL_WALLET_PASSWORD`.
fn signer_without_prompt(ctx: &Context) -> Result<Option<LocalSigner>, String> {
    obol_wallet::signer_without_prompt(&ctx.paths).map_err(|e| e.to_string())
}

/// Registers the stack on `offer`'s chain after `sell http|inference` applied it, when that
/// needs no question: registration enabled, a public URL, a signer without a prompt, a
/// write-enabled endpoint for the chain. Never fails the command.
pub(in crate::commands) async fn auto_register(
    ctx: &Context,
    client: &AdminClient,
    offer: &ServiceOffer,
) -> Option<AutoRegistration> {
    if !offer.spec.registration.as_ref().is_some_and(|r| r.enabled) {
        return None;
    }
    let chain = chain_key(&offer.spec.payment.network);
    let by_hand = format!("register with `obol sell register --chain {chain}`");
    let status = match client.status().await {
        Ok(status) => status,
        Err(e) => return Some(AutoRegistration::Failed(e.to_string())),
    };
    if status.public_url_is_default {
        return Some(AutoRegistration::Skipped(format!(
            "no public URL is set; set one (`obol stack up --public-url https://…`), then {by_hand}"
        )));
    }
    let writable = NetworksFile::load(&ctx.paths.networks_file())
        .ok()
        .and_then(|file| file.get(&chain).cloned())
        .is_some_and(|c| c.endpoints.iter().any(|e| e.allow_writes));
    if !writable {
        return Some(AutoRegistration::Skipped(format!(
            "no write-enabled RPC endpoint for {chain} (`obol network add {chain} --endpoint URL --allow-writes`); then {by_hand}"
        )));
    }
    let signer = match signer_without_prompt(ctx) {
        Ok(Some(signer)) => signer,
        Ok(None) => {
            return Some(AutoRegistration::Skipped(format!(
                "no signer available without a prompt (set {} or {}); {by_hand}",
                env::PRIVATE_KEY,
                env::WALLET_PASSWORD
            )));
        }
        Err(e) => return Some(AutoRegistration::Failed(e)),
    };
    let base = status.public_url.trim_end_matches('/').to_owned();
    let registered = register_on(
        ctx,
        client,
        &chain,
        &base,
        &signer,
        &SpecUpdate::default(),
        Effort {
            options: ClientOptions::brief(),
            search_from: None,
        },
    )
    .await;
    Some(match registered {
        Ok(r) => AutoRegistration::Done(Box::new(RegisteredSummary {
            line: format!("agent {} on {}: {}", r.agent_id, r.chain, r.what()),
            json: r.json(),
            warnings: r.warnings,
        })),
        Err(e) => AutoRegistration::Failed(auto_failure(&e, &chain)),
    })
}

/// Auto-registration's warning for a failed registration on `chain`: what went wrong and the
/// command to run.
fn auto_failure(error: &anyhow::Error, chain: &str) -> String {
    if error.is::<OlderAgents>() {
        // Retrying as is would be refused every time: the explanation names the commands
        // (`--new-agent`, `--search-from-block`, `sell identity import`).
        format!("{error:#}")
    } else {
        format!("{error:#}; retry with `obol sell register --chain {chain}`")
    }
}

#[cfg(test)]
mod tests {
    use obol_erc8004::{Erc8004Error, U256};

    use super::*;
    use crate::commands::identity::register::explain;

    /// The balance guard's refusal names the ways past it, `--new-agent` among them, on the
    /// command line and in auto-registration's warning (which then offers no plain retry).
    #[test]
    fn older_agents_are_explained_with_the_commands_to_run() {
        let refusal = Erc8004Error::UnsearchedAgents {
            op: "register",
            owner: obol_erc8004::Address::ZERO,
            held: U256::from(2),
            seen: 0,
            from_block: 500,
        };
        let explained = explain(refusal, "base", None);
        assert!(explained.is::<OlderAgents>());
        let text = explained.to_string();
        for command in [
            "`obol sell identity import --agent-id N --chain base`",
            "`obol sell register --chain base --search-from-block B`",
            "`obol sell register --chain base --new-agent`",
        ] {
            assert!(text.contains(command), "{command}: {text}");
        }
        assert!(
            text.contains("Only blocks from 500 were searched"),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains("  "), "{text}");
        let warning = auto_failure(&explained, "base");
        assert_eq!(warning, text);
        assert!(!warning.contains("retry with"), "{warning}");

        let other = explain(
            Erc8004Error::Rpc {
                op: "register",
                message: "boom".to_owned(),
                transient: true,
            },
            "base",
            None,
        );
        assert!(!other.is::<OlderAgents>());
        assert!(
            auto_failure(&other, "base")
                .ends_with("; retry with `obol sell register --chain base`")
        );
    }
}
