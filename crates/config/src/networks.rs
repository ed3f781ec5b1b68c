//! RPC endpoints per chain, kept in `<config>/networks.json`.
//!
//! Chains are keyed by their canonical name from the x402 network registry (`base-sepolia`,
//! `ethereum`, …), so every alias and CAIP-2 id finds the same entry. Names the registry does
//! not know (`devnet`) are allowed with an explicit chain id.

use std::collections::BTreeMap;
use std::path::Path;

use obol_x402::network;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, fs};

/// The networks file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworksFile {
    /// Endpoints per canonical chain name.
    #[serde(default)]
    pub chains: BTreeMap<String, ChainEndpoints>,
}

/// The endpoints of one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainEndpoints {
    /// The EVM chain id every endpoint must answer with.
    pub chain_id: u64,
    /// Endpoints in the order they are tried.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// One JSON-RPC endpoint. Its URL may embed an API key: show it only through a redacting type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The HTTP(S) URL.
    pub url: String,
    /// Whether transactions may be sent through it.
    #[serde(default)]
    pub allow_writes: bool,
}

/// What [`NetworksFile::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// A new endpoint was appended.
    Added,
    /// The endpoint existed; its write flag was updated.
    Updated,
}

/// The canonical name and chain id for a chain given by name, alias or CAIP-2 id. Unknown names
/// need `chain_id`; a known name with a different `chain_id` is refused.
pub fn canonical_chain(name: &str, chain_id: Option<u64>) -> Result<(String, u64), ConfigError> {
    match network::resolve(name) {
        Ok(known) => {
            let id = known
                .evm_chain_id()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            match chain_id {
                Some(given) if given != id => Err(ConfigError::Invalid(format!(
                    "{} has chain id {id}, not {given}",
                    known.name
                ))),
                _ => Ok((known.name.to_owned(), id)),
            }
        }
        Err(unknown) => {
            let id = chain_id
                .or_else(|| network::evm_chain_id(name).ok())
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "{unknown}; to name a custom chain, also pass its chain id (--chain-id)"
                    ))
                })?;
            let custom = name.trim().to_ascii_lowercase();
            let valid = !custom.is_empty()
                && custom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b':');
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "invalid chain name {name:?}: use letters, digits, '-' and '_'"
                )));
            }
            Ok((custom, id))
        }
    }
}

/// The key a chain is stored under: the canonical registry name, else the lower-cased name.
pub fn chain_key(name: &str) -> String {
    network::resolve(name).map_or_else(|_| name.trim().to_ascii_lowercase(), |n| n.name.to_owned())
}

impl NetworksFile {
    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        fs::load_json(path, "networks")
    }

    /// Writes the file (0600, atomically).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        fs::save_json(path, self)
    }

    /// The endpoints of a chain given by any of its names.
    pub fn get(&self, chain: &str) -> Option<&ChainEndpoints> {
        self.chains.get(&chain_key(chain))
    }

    /// Adds an endpoint to a chain (canonical name and id from [`canonical_chain`]). An
    /// existing URL keeps its place and gets the new write flag.
    pub fn add(
        &mut self,
        chain: &str,
        chain_id: u64,
        endpoint: Endpoint,
    ) -> Result<AddOutcome, ConfigError> {
        let entry = self
            .chains
            .entry(chain.to_owned())
            .or_insert_with(|| ChainEndpoints {
                chain_id,
                endpoints: Vec::new(),
            });
        if entry.chain_id != chain_id {
            return Err(ConfigError::Invalid(format!(
                "{chain} is configured with chain id {}, not {chain_id}",
                entry.chain_id
            )));
        }
        if let Some(existing) = entry.endpoints.iter_mut().find(|e| e.url == endpoint.url) {
            existing.allow_writes = endpoint.allow_writes;
            return Ok(AddOutcome::Updated);
        }
        entry.endpoints.push(endpoint);
        Ok(AddOutcome::Added)
    }

    /// Removes one endpoint (`Some(url)`) or the whole chain (`None`); returns how many
    /// endpoints were removed. A chain left without endpoints is dropped.
    pub fn remove(&mut self, chain: &str, url: Option<&str>) -> usize {
        let key = chain_key(chain);
        let Some(entry) = self.chains.get_mut(&key) else {
            return 0;
        };
        let before = entry.endpoints.len();
        match url {
            Some(url) => entry.endpoints.retain(|e| e.url != url),
            None => entry.endpoints.clear(),
        }
        let removed = before - entry.endpoints.len();
        if entry.endpoints.is_empty() {
            self.chains.remove(&key);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, allow_writes: bool) -> Endpoint {
        Endpoint {
            url: url.to_owned(),
            allow_writes,
        }
    }

    #[test]
    fn canonical_names() {
        assert_eq!(
            canonical_chain("eip155:84532", None).unwrap(),
            ("base-sepolia".into(), 84532)
        );
        assert_eq!(
            canonical_chain("mainnet", Some(1)).unwrap(),
            ("ethereum".into(), 1)
        );
        assert_eq!(
            canonical_chain("devnet", Some(31337)).unwrap(),
            ("devnet".into(), 31337)
        );
        assert_eq!(
            canonical_chain("eip155:31337", None).unwrap(),
            ("eip155:31337".into(), 31337)
        );
        let err = canonical_chain("base", Some(1)).unwrap_err().to_string();
        assert_eq!(err, "base has chain id 8453, not 1");
        let err = canonical_chain("devnet", None).unwrap_err().to_string();
        assert!(
            err.contains("--chain-id") && err.contains("known networks"),
            "{err}"
        );
        assert!(canonical_chain("my chain", Some(5)).is_err());
    }

    #[test]
    fn add_remove_and_lookup_by_alias() {
        let mut file = NetworksFile::default();
        let (name, id) = canonical_chain("base-mainnet", None).unwrap();
        assert_eq!(
            file.add(&name, id, endpoint("https://a", false)).unwrap(),
            AddOutcome::Added
        );
        assert_eq!(
            file.add(&name, id, endpoint("https://b", false)).unwrap(),
            AddOutcome::Added
        );
        assert_eq!(
            file.add(&name, id, endpoint("https://a", true)).unwrap(),
            AddOutcome::Updated
        );
        let chain = file.get("eip155:8453").unwrap();
        assert_eq!(
            chain.endpoints,
            vec![endpoint("https://a", true), endpoint("https://b", false)]
        );
        assert!(file.add(&name, 1, endpoint("https://c", false)).is_err());
        assert_eq!(file.remove("base", Some("https://a")), 1);
        assert_eq!(file.remove("base", Some("https://zzz")), 0);
        assert_eq!(file.remove("base", None), 1);
        assert!(file.get("base").is_none(), "empty chains are dropped");
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("networks.json");
        assert_eq!(NetworksFile::load(&path).unwrap(), NetworksFile::default());
        let mut file = NetworksFile::default();
        file.add("devnet", 84532, endpoint("http://127.0.0.1:8545", true))
            .unwrap();
        file.save(&path).unwrap();
        assert_eq!(NetworksFile::load(&path).unwrap(), file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"allowWrites\": true"), "{text}");
        std::fs::write(&path, "{not json").unwrap();
        let err = NetworksFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("is not a valid networks file"), "{err}");
    }
}
