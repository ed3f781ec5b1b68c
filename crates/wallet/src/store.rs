//! The keystore directory.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
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
        let signer = PrivateKeySigner::from_slice(key)
            .map_err(|e| WalletError::InvalidKey(e.to_string()))?;
        let keystore = encrypt_v3(key, password.as_bytes(), signer.address(), SCRYPT_LOG_N)?;
        private_fs::create_private_dir(&self.dir)?;
        private_fs::write_private(&target, keystore.to_string().as_bytes())?;
        Ok(WalletInfo {
            name: name.to_owned(),
            address: signer.address().to_checksum(None),
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

/// scrypt's cost for new keystores: N = 2^18, geth's standard (with r = 8, p = 1).
pub(crate) const SCRYPT_LOG_N: u8 = 18;

/// An Ethereum v3 keystore of `key` under `password`: scrypt (N = 2^`log_n`, r = 8, p = 1,
/// 32-byte key, random 32-byte salt), AES-128-CTR (random IV) and the keccak MAC, with the
/// `address` field geth writes. Any v3 reader opens it; it opens with [`decrypt`].
fn encrypt_v3(
    key: &[u8; 32],
    password: &[u8],
    address: Address,
    log_n: u8,
) -> Result<serde_json::Value, WalletError> {
    use aes::cipher::{KeyIvInit as _, StreamCipher as _};
    use rand::RngCore as _;

    let mut rng = rand::thread_rng();
    let (mut salt, mut iv, mut id) = ([0u8; 32], [0u8; 16], [0u8; 16]);
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut iv);
    rng.fill_bytes(&mut id);
    let params = scrypt::Params::new(log_n, 8, 1)
        .map_err(|e| WalletError::InvalidKey(format!("scrypt parameters: {e}")))?;
    let mut derived = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut derived)
        .map_err(|e| WalletError::InvalidKey(format!("scrypt: {e}")))?;
    let mut ciphertext = *key;
    ctr::Ctr128BE::<aes::Aes128>::new(derived[..16].into(), (&iv).into())
        .apply_keystream(&mut ciphertext);
    let mac = alloy::primitives::keccak256([&derived[16..], &ciphertext[..]].concat());
    // A random (version 4) UUID.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex(&id[..4]),
        hex(&id[4..6]),
        hex(&id[6..8]),
        hex(&id[8..10]),
        hex(&id[10..])
    );
    Ok(serde_json::json!({
        "address": hex(address.as_slice()),
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": hex(&iv)},
            "ciphertext": hex(&ciphertext),
            "kdf": "scrypt",
            "kdfparams": {"dklen": 32, "n": 1u64 << log_n, "p": 1, "r": 8, "salt": hex(&salt)},
            "mac": hex(mac.as_slice()),
        },
        "id": uuid,
        "version": 3,
    }))
}

/// Opens the keystore at `path` (called `name` in errors) with `password`, whatever its
/// scrypt cost (older keystores, at 2^13, open too).
pub(crate) fn decrypt(path: &Path, name: &str, password: &str) -> Result<LocalSigner, WalletError> {
    let corrupt = |reason: String| WalletError::Corrupt {
        path: path.display().to_string(),
        reason,
    };
    let key = eth_keystore::decrypt_key(path, password).map_err(|e| match e {
        eth_keystore::KeystoreError::MacMismatch => WalletError::WrongPassword {
            name: name.to_owned(),
        },
        other => corrupt(other.to_string()),
    })?;
    PrivateKeySigner::from_slice(&key)
        .map(LocalSigner::from)
        .map_err(|e| corrupt(e.to_string()))
}
