//! The keystore directory.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::{LocalSignerError, PrivateKeySigner};
use obol_config::{Paths, fs as private_fs};
use obol_x402::LocalSigner;
use serde::Serialize;

use crate::WalletError;

/// The wallet used when none is named.
pub const DEFAULT_WALLET: &str = "default";

/// A wallet as listed: name, address and file; no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalletInfo {
    /// The wallet name.
    pub name: String,
    /// Its address (EIP-55).
    pub address: String,
    /// Its keystore file.
    pub path: PathBuf,
}

/// Checks a wallet name: `^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$`.
pub fn validate_name(name: &str) -> Result<(), WalletError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(WalletError::InvalidName(name.to_owned()))
    }
}

/// The keystores under `<config>/wallets`.
#[derive(Debug, Clone)]
pub struct WalletStore {
    dir: PathBuf,
}

impl WalletStore {
    /// The store of a stack.
    pub fn new(paths: &Paths) -> Self {
        Self::at(paths.wallets_dir())
    }

    /// A store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The keystore file of `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Creates a wallet with a fresh random key.
    pub fn create(&self, name: &str, password: &str) -> Result<WalletInfo, WalletError> {
        let key = PrivateKeySigner::random();
        self.write(name, &key.to_bytes().0, password)
    }

    /// Stores an existing hex private key under `name`.
    pub fn import(
        &self,
        name: &str,
        private_key_hex: &str,
        password: &str,
    ) -> Result<WalletInfo, WalletError> {
        let signer = LocalSigner::from_private_key_hex(private_key_hex)
            .map_err(|e| WalletError::InvalidKey(e.to_string()))?;
        self.write(name, &signer.as_alloy().to_bytes().0, password)
    }

    fn write(&self, name: &str, key: &[u8; 32], password: &str) -> Result<WalletInfo, WalletError> {
        validate_name(name)?;
        if password.is_empty() {
            return Err(WalletError::EmptyPassword);
        }
        let target = self.path(name);
        if target.exists() {
            return Err(WalletError::Exists {
                name: name.to_owned(),
                path: target.display().to_string(),
            });
        }
        private_fs::create_private_dir(&self.dir)?;
        // Encrypt into a hidden temp file in the private directory, tighten it, then move it in.
        let tmp_name = format!(".{name}.json.tmp-{}", std::process::id());
        let tmp = self.dir.join(&tmp_name);
        let written = PrivateKeySigner::encrypt_keystore(
            &self.dir,
            &mut rand::thread_rng(),
            key,
            password,
            Some(&tmp_name),
        );
        let moved = written
            .map_err(|e| WalletError::Corrupt {
                path: tmp.display().to_string(),
                reason: e.to_string(),
            })
            .and_then(|(signer, _uuid)| {
                restrict(&tmp)?;
                std::fs::rename(&tmp, &target).map_err(|source| WalletError::Io {
                    action: "cannot move keystore into place at",
                    path: target.display().to_string(),
                    source,
                })?;
                Ok(signer.address())
            });
        if moved.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(WalletInfo {
            name: name.to_owned(),
            address: moved?.to_checksum(None),
            path: target,
        })
    }

    /// Every wallet, sorted by name. Files that are not keystores are skipped.
    pub fn list(&self) -> Result<Vec<WalletInfo>, WalletError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(WalletError::Io {
                    action: "cannot list",
                    path: self.dir.display().to_string(),
                    source,
                });
            }
        };
        let mut wallets: Vec<WalletInfo> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let path = entry.path();
                let name = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".json")?
                    .to_owned();
                validate_name(&name).ok()?;
                let address = keystore_address(&path).ok()?;
                Some(WalletInfo {
                    name,
                    address: address.to_checksum(None),
                    path,
                })
            })
            .collect();
        wallets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(wallets)
    }

    /// The address of wallet `name`, read without the password.
    pub fn address(&self, name: &str) -> Result<Address, WalletError> {
        validate_name(name)?;
        keystore_address(&self.existing(name)?)
    }

    /// Decrypts wallet `name`.
    pub fn load(&self, name: &str, password: &str) -> Result<LocalSigner, WalletError> {
        validate_name(name)?;
        let path = self.existing(name)?;
        decrypt(&path, name, password)
    }

    fn existing(&self, name: &str) -> Result<PathBuf, WalletError> {
        let path = self.path(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(WalletError::NotFound {
                name: name.to_owned(),
            })
        }
    }
}

fn keystore_address(path: &Path) -> Result<Address, WalletError> {
    let corrupt = |reason: String| WalletError::Corrupt {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| corrupt(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    let hex = json
        .get("address")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| corrupt("no `address` field".to_owned()))?;
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    format!("0x{hex}")
        .parse()
        .map_err(|e: alloy::primitives::hex::FromHexError| corrupt(e.to_string()))
}

fn restrict(path: &Path) -> Result<(), WalletError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| WalletError::Io {
                action: "cannot restrict permissions of",
                path: path.display().to_string(),
                source,
            },
        )?;
    }
    Ok(())
}

/// Opens the keystore at `path` (called `name` in errors) with `password`.
pub(crate) fn decrypt(path: &Path, name: &str, password: &str) -> Result<LocalSigner, WalletError> {
    PrivateKeySigner::decrypt_keystore(path, password)
        .map(LocalSigner::from)
        .map_err(|e| match e {
            LocalSignerError::EthKeystoreError(eth_keystore::KeystoreError::MacMismatch) => {
                WalletError::WrongPassword {
                    name: name.to_owned(),
                }
            }
            other => WalletError::Corrupt {
                path: path.display().to_string(),
                reason: other.to_string(),
            },
        })
}
