//! # obol-wallet — keys for signing payments and transactions
//!
//! Keys live in standard Ethereum v3 JSON keystores (scrypt-encrypted, with the `address`
//! field geth writes) under `<config>/wallets/<name>.json`, mode 0600. [`SignerSource`] decides
//! where a signer comes from: a raw key in `OBOL_PRIVATE_KEY` (CI and devnets), or a keystore.
//! A key is never printed, logged, or put in an error message.

mod password;
mod store;

pub use password::{PasswordSource, read_password};
pub use store::{DEFAULT_WALLET, WalletInfo, WalletStore, validate_name};

use obol_config::env;
use obol_x402::LocalSigner;

/// Why a wallet operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// The wallet name is not allowed.
    #[error(
        "invalid wallet name {0:?}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit"
    )]
    InvalidName(String),
    /// No keystore with that name.
    #[error(
        "no wallet named {name:?}; create one with `obol wallet new --name {name}` or import a key with `obol wallet import --name {name} --private-key-file F`"
    )]
    NotFound {
        /// The name.
        name: String,
    },
    /// A keystore with that name exists.
    #[error("wallet {name:?} already exists at {path}; pick another --name")]
    Exists {
        /// The name.
        name: String,
        /// Its file.
        path: String,
    },
    /// The password does not open the keystore.
    #[error("wrong password for wallet {name:?} (the keystore MAC does not match)")]
    WrongPassword {
        /// The name.
        name: String,
    },
    /// No password was available.
    #[error("a wallet password is needed: pass --password-file FILE, set {var}, or run in a terminal to be prompted", var = env::WALLET_PASSWORD)]
    NoPassword,
    /// Two prompted passwords differed.
    #[error("the passwords do not match")]
    PasswordMismatch,
    /// The password is empty.
    #[error("the wallet password must not be empty")]
    EmptyPassword,
    /// The private key text is invalid.
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// A keystore file is damaged.
    #[error("{path} is not a valid keystore: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error(transparent)]
    Config(#[from] obol_config::ConfigError),
    /// A lower-level I/O failure.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where a signer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerSource {
    /// A raw key from `OBOL_PRIVATE_KEY`.
    EnvKey,
    /// A keystore, by wallet name.
    Keystore(String),
    /// A file holding a raw hex key (`--key-file`).
    KeyFile(std::path::PathBuf),
    /// A keystore file anywhere (`--keystore`).
    KeystoreFile(std::path::PathBuf),
}

impl std::fmt::Display for SignerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EnvKey => write!(f, "raw key from ${}", env::PRIVATE_KEY),
            Self::Keystore(name) => write!(f, "wallet {name:?}"),
            Self::KeyFile(path) => write!(f, "key file {}", path.display()),
            Self::KeystoreFile(path) => write!(f, "keystore {}", path.display()),
        }
    }
}

impl SignerSource {
    /// `OBOL_PRIVATE_KEY` when set (and non-empty), otherwise the keystore `name` (or the
    /// default wallet).
    pub fn resolve(env_key_present: bool, name: Option<&str>) -> Self {
        if env_key_present {
            Self::EnvKey
        } else {
            Self::Keystore(name.unwrap_or(DEFAULT_WALLET).to_owned())
        }
    }

    /// Loads the signer. `env_key` is the value of `OBOL_PRIVATE_KEY`; `password` is asked for
    /// only when a keystore must be opened.
    pub fn load(
        &self,
        store: &WalletStore,
        env_key: Option<&str>,
        password: impl FnOnce() -> Result<String, WalletError>,
    ) -> Result<LocalSigner, WalletError> {
        match self {
            Self::EnvKey => LocalSigner::from_private_key_hex(env_key.unwrap_or_default())
                .map_err(|e| WalletError::InvalidKey(format!("${}: {e}", env::PRIVATE_KEY))),
            Self::Keystore(name) => store.load(name, &password()?),
            Self::KeyFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| WalletError::Io {
                    action: "cannot read the key file",
                    path: path.display().to_string(),
                    source,
                })?;
                LocalSigner::from_private_key_hex(text.trim())
                    .map_err(|e| WalletError::InvalidKey(format!("{}: {e}", path.display())))
            }
            Self::KeystoreFile(path) => {
                store::decrypt(path, &path.display().to_string(), &password()?)
            }
        }
    }
}

/// A signer available without asking anything: `OBOL_PRIVATE_KEY`, or the default wallet with
/// `OBOL_WALLET_PASSWORD`; `None` when neither is there (a prompt would be needed).
pub fn signer_without_prompt(
    paths: &obol_config::Paths,
) -> Result<Option<LocalSigner>, WalletError> {
    let env_key = std::env::var(env::PRIVATE_KEY)
        .ok()
        .filter(|k| !k.is_empty());
    let store = WalletStore::new(paths);
    let source = SignerSource::resolve(env_key.is_some(), None);
    if source == SignerSource::EnvKey {
        return source
            .load(&store, env_key.as_deref(), || Ok(String::new()))
            .map(Some);
    }
    let password = PasswordSource {
        file: None,
        env: std::env::var(env::WALLET_PASSWORD).ok(),
        prompt: false,
    };
    if password.env.as_deref().is_none_or(str::is_empty) || !store.path(DEFAULT_WALLET).exists() {
        return Ok(None);
    }
    source
        .load(&store, None, || read_password(&password, false))
        .map(Some)
}
