//! Stack settings kept in `<config>/stack.json`, and the running daemon's state in
//! `<state>/daemon.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, fs};

/// Default gateway listener (paid traffic, storefront).
pub const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener (loopback only, bearer token).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
/// Default buyer proxy listener (loopback: whoever reaches it spends the pools).
pub const DEFAULT_BUYER_LISTEN: &str = "127.0.0.1:8402";
/// The longest stack id (k3d caps cluster names at 32 characters with an 11-character prefix).
pub const MAX_STACK_ID: usize = 21;

/// The facilitator a stack uses when its settings name none (the original's default, an
/// x402-rs deployment run by Obol).
pub const DEFAULT_FACILITATOR_URL: &str = "https://x402.gcp.obol.tech";

/// The chains [`DEFAULT_FACILITATOR_URL`] settles on: Ethereum, Base, Base Sepolia.
pub const DEFAULT_FACILITATOR_CHAINS: [u64; 3] = [1, 8453, 84532];

/// Which facilitator the gateway verifies and settles with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FacilitatorSetting {
    /// A remote facilitator by URL.
    Url(String),
    /// The embedded facilitator on these chains, paying gas from a wallet (or
    /// `OBOL_PRIVATE_KEY`).
    Embedded {
        /// Chain names (each needs a write-enabled endpoint).
        chains: Vec<String>,
        /// Wallet name (default `default`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wallet: Option<String>,
        /// Keys paying settlement gas per chain: the wallet and keys derived from it, topped
        /// up from it at start (default 1: the wallet alone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gas_wallets: Option<u32>,
    },
}

/// The stack settings file. Unknown keys are refused: the file is small and fully typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackFile {
    /// The stack's id (at most [`MAX_STACK_ID`] characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<String>,
    /// The public base URL (see [`crate::PublicUrl`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Gateway listen address (default [`DEFAULT_GATEWAY_LISTEN`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_listen: Option<String>,
    /// Admin API listen address (default [`DEFAULT_ADMIN_LISTEN`]; must be loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// Buyer proxy listen address (default [`DEFAULT_BUYER_LISTEN`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_listen: Option<String>,
    /// The facilitator (none: [`DEFAULT_FACILITATOR_URL`] for [`DEFAULT_FACILITATOR_CHAINS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facilitator: Option<FacilitatorSetting>,
    /// `payTo` used by `obol sell` when `--pay-to` is not given (`obol sell pricing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pay_to: Option<String>,
    /// Chain used by `obol sell` when `--chain` is not given (`obol sell pricing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_chain: Option<String>,
}

impl StackFile {
    /// Reads the file; a missing file is the default.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        fs::load_json(path, "stack settings")
    }

    /// Writes the file (0600, atomically).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        fs::save_json(path, self)
    }
}

/// Checks a stack id: 1–21 of lower-case letters, digits and `-`, not starting or ending with
/// `-`.
pub fn validate_stack_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_STACK_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "invalid stack id {id:?}: use 1-{MAX_STACK_ID} lower-case letters, digits and '-'"
        )))
    }
}

/// What a running daemon writes so the CLI can find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonState {
    /// Process id.
    pub pid: u32,
    /// Bound gateway address.
    pub gateway: String,
    /// Bound admin address.
    pub admin: String,
    /// Bound buyer proxy address.
    #[serde(default)]
    pub buyer: String,
    /// RFC 3339 start time.
    pub started_at: String,
}

impl DaemonState {
    /// Reads the state file, if any.
    pub fn load(path: &Path) -> Result<Option<Self>, ConfigError> {
        match fs::read_optional(path)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    what: "daemon state",
                    message: e.to_string(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_ids() {
        assert!(validate_stack_id("peaceful-starling").is_ok());
        assert!(validate_stack_id(&"a".repeat(21)).is_ok());
        for bad in ["", "-a", "a-", "Upper", "post490-buy-external-bob", "a_b"] {
            assert!(validate_stack_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn facilitator_setting_shapes() {
        let file: StackFile =
            serde_json::from_str(r#"{"facilitator":{"url":"https://f.example"}}"#).unwrap();
        assert_eq!(
            file.facilitator,
            Some(FacilitatorSetting::Url("https://f.example".into()))
        );
        let file: StackFile =
            serde_json::from_str(r#"{"facilitator":{"embedded":{"chains":["devnet"]}}}"#).unwrap();
        assert_eq!(
            file.facilitator,
            Some(FacilitatorSetting::Embedded {
                chains: vec!["devnet".into()],
                wallet: None,
                gas_wallets: None,
            })
        );
    }
}
