//! Networks: legacy x402 v1 names and their aliases ↔ CAIP-2 ids.
//!
//! x402 v1 names networks (`base-sepolia`), v2 uses CAIP-2 (`eip155:84532`), and people type
//! aliases (`mainnet`, `base-mainnet`). Every comparison in the stack goes through
//! [`same_network`] or [`normalize`]: missing that equivalence made every paid route of the
//! original 404 once (obol-stack.md §10.1).

use std::fmt;

/// One known network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    /// The canonical legacy (x402 v1) name, e.g. `base-sepolia`.
    pub name: &'static str,
    /// The CAIP-2 id, e.g. `eip155:84532`.
    pub caip2: &'static str,
    /// The EVM chain id, for `eip155` networks.
    pub chain_id: Option<u64>,
    /// Other names people use for it.
    pub aliases: &'static [&'static str],
    /// A human name, e.g. `Base Sepolia`.
    pub display_name: &'static str,
    /// True for test networks.
    pub testnet: bool,
    /// Block explorer base URL, where one is well known.
    pub explorer: Option<&'static str>,
}

impl Network {
    /// The EVM chain id, or an error for non-EVM networks.
    pub fn evm_chain_id(&self) -> Result<u64, NetworkError> {
        self.chain_id.ok_or_else(|| NetworkError::NotEvm {
            network: self.name.to_owned(),
        })
    }

    /// Every name this network answers to: its name, its CAIP-2 id and its aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        [self.name, self.caip2]
            .into_iter()
            .chain(self.aliases.iter().copied())
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.caip2)
    }
}

/// Why a network name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The name is neither a known legacy name, an alias, nor a known CAIP-2 id.
    #[error("unknown network {input:?}; known networks: {}", known_names().join(", "))]
    Unknown {
        /// The name as given.
        input: String,
    },
    /// The string is not of the CAIP-2 form `namespace:reference`.
    #[error(
        "invalid CAIP-2 network id {input:?}: expected `namespace:reference`, e.g. eip155:8453"
    )]
    InvalidCaip2 {
        /// The id as given.
        input: String,
    },
    /// An EVM chain id was needed but the network is not an EVM chain.
    #[error("network {network} is not an EVM (eip155) network")]
    NotEvm {
        /// The network's name.
        network: String,
    },
}

macro_rules! net {
    ($name:literal, $id:literal, $display:literal, $testnet:literal, [$($alias:literal),*], $explorer:expr) => {
        Network {
            name: $name,
            caip2: concat!("eip155:", $id),
            chain_id: Some($id),
            aliases: &[$($alias),*],
            display_name: $display,
            testnet: $testnet,
            explorer: $explorer,
        }
    };
}

/// Every network the stack knows by name (x402.md §5.1, obol-stack.md §8.1).
pub static NETWORKS: &[Network] = &[
    net!(
        "ethereum",
        1,
        "Ethereum",
        false,
        ["mainnet", "ethereum-mainnet", "eth"],
        Some("https://etherscan.io")
    ),
    net!(
        "sepolia",
        11155111,
        "Sepolia",
        true,
        ["ethereum-sepolia"],
        Some("https://sepolia.etherscan.io")
    ),
    net!("hoodi", 560048, "Hoodi", true, [], None),
    net!(
        "base",
        8453,
        "Base",
        false,
        ["base-mainnet"],
        Some("https://basescan.org")
    ),
    net!(
        "base-sepolia",
        84532,
        "Base Sepolia",
        true,
        [],
        Some("https://sepolia.basescan.org")
    ),
    net!(
        "polygon",
        137,
        "Polygon",
        false,
        ["polygon-mainnet"],
        Some("https://polygonscan.com")
    ),
    net!("polygon-amoy", 80002, "Polygon Amoy", true, [], None),
    net!(
        "avalanche",
        43114,
        "Avalanche C-Chain",
        false,
        ["avalanche-mainnet"],
        None
    ),
    net!("avalanche-fuji", 43113, "Avalanche Fuji", true, [], None),
    net!(
        "arbitrum-one",
        42161,
        "Arbitrum One",
        false,
        ["arbitrum", "arbitrum-mainnet"],
        Some("https://arbiscan.io")
    ),
    net!(
        "arbitrum-sepolia",
        421614,
        "Arbitrum Sepolia",
        true,
        [],
        None
    ),
    net!("sei", 1329, "Sei", false, [], None),
    net!("sei-testnet", 1328, "Sei Testnet", true, [], None),
    net!("abstract", 2741, "Abstract", false, [], None),
    net!(
        "abstract-testnet",
        11124,
        "Abstract Testnet",
        true,
        [],
        None
    ),
    net!("iotex", 4689, "IoTeX", false, [], None),
    net!("peaq", 3338, "peaq", false, [], None),
    net!("story", 1514, "Story", false, [], None),
    net!("educhain", 41923, "EDU Chain", false, [], None),
    net!(
        "skale-base-sepolia",
        324705682,
        "SKALE Base Sepolia",
        true,
        [],
        None
    ),
    net!("megaeth", 4326, "MegaETH", false, [], None),
    net!("monad", 143, "Monad", false, [], None),
    net!("stable", 988, "Stable", false, [], None),
    net!("stable-testnet", 2201, "Stable Testnet", true, [], None),
    net!("celo", 42220, "Celo", false, [], None),
    net!("celo-sepolia", 11142220, "Celo Sepolia", true, [], None),
    net!("xdc", 50, "XDC", false, [], None),
    net!("xrpl-evm", 1440000, "XRPL EVM", false, [], None),
    net!("radius", 723487, "Radius", false, [], None),
    net!("radius-testnet", 72344, "Radius Testnet", true, [], None),
    Network {
        name: "solana",
        caip2: "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
        chain_id: None,
        aliases: &[],
        display_name: "Solana",
        testnet: false,
        explorer: None,
    },
    Network {
        name: "solana-devnet",
        caip2: "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
        chain_id: None,
        aliases: &[],
        display_name: "Solana Devnet",
        testnet: true,
        explorer: None,
    },
];

/// The canonical names of every known network, in table order.
pub fn known_names() -> Vec<&'static str> {
    NETWORKS.iter().map(|n| n.name).collect()
}

/// Resolves a legacy name, an alias or a CAIP-2 id (case-insensitive, surrounding whitespace
/// ignored) to a known network.
pub fn resolve(input: &str) -> Result<&'static Network, NetworkError> {
    let wanted = input.trim();
    NETWORKS
        .iter()
        .find(|n| n.names().any(|name| name.eq_ignore_ascii_case(wanted)))
        .ok_or_else(|| NetworkError::Unknown {
            input: input.to_owned(),
        })
}

/// The known network with this EVM chain id.
pub fn by_chain_id(chain_id: u64) -> Option<&'static Network> {
    NETWORKS.iter().find(|n| n.chain_id == Some(chain_id))
}

/// A parsed CAIP-2 id: `namespace:reference`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caip2 {
    /// The namespace, e.g. `eip155`.
    pub namespace: String,
    /// The reference, e.g. `8453`.
    pub reference: String,
}

impl Caip2 {
    /// Parses `namespace:reference` (CAIP-2: namespace `[-a-z0-9]{3,8}`, reference
    /// `[-_a-zA-Z0-9]{1,32}`).
    pub fn parse(input: &str) -> Result<Self, NetworkError> {
        let invalid = || NetworkError::InvalidCaip2 {
            input: input.to_owned(),
        };
        let (namespace, reference) = input.split_once(':').ok_or_else(invalid)?;
        let ns_ok = (3..=8).contains(&namespace.len())
            && namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ref_ok = (1..=32).contains(&reference.len())
            && reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !(ns_ok && ref_ok) {
            return Err(invalid());
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            reference: reference.to_owned(),
        })
    }

    /// The EVM chain id of an `eip155:<id>` network.
    pub fn eip155_chain_id(&self) -> Option<u64> {
        (self.namespace == "eip155")
            .then(|| self.reference.parse().ok())
            .flatten()
            .filter(|id: &u64| self.reference == id.to_string())
    }
}

impl fmt::Display for Caip2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.reference)
    }
}

/// The CAIP-2 form of a network name: known names and aliases map to their id, a well-formed
/// CAIP-2 id passes through, anything else comes back unchanged (trimmed).
pub fn normalize(input: &str) -> String {
    match resolve(input) {
        Ok(network) => network.caip2.to_owned(),
        Err(_) => input.trim().to_owned(),
    }
}

/// The legacy (v1) name of a network: `eip155:84532` → `base-sepolia`; an unknown one comes
/// back unchanged.
pub fn legacy_name(input: &str) -> String {
    resolve(input).map_or_else(|_| input.to_owned(), |n| n.name.to_owned())
}

/// True when two names denote the same network (`base` ≡ `eip155:8453` ≡ `base-mainnet`).
pub fn same_network(a: &str, b: &str) -> bool {
    normalize(a).eq_ignore_ascii_case(&normalize(b))
}

/// The EVM chain id of a legacy name, alias, or any `eip155:<id>` CAIP-2 id (known or not).
pub fn evm_chain_id(input: &str) -> Result<u64, NetworkError> {
    match resolve(input) {
        Ok(network) => network.evm_chain_id(),
        Err(unknown) => Caip2::parse(input.trim())
            .ok()
            .and_then(|id| id.eip155_chain_id())
            .ok_or(unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_aliases_and_caip2() {
        let table = [
            ("base", "eip155:8453"),
            ("Base", "eip155:8453"),
            ("base-mainnet", "eip155:8453"),
            ("eip155:8453", "eip155:8453"),
            ("base-sepolia", "eip155:84532"),
            (" eip155:84532 ", "eip155:84532"),
            ("ethereum", "eip155:1"),
            ("mainnet", "eip155:1"),
            ("ethereum-mainnet", "eip155:1"),
            ("sepolia", "eip155:11155111"),
            ("arbitrum", "eip155:42161"),
            ("polygon-amoy", "eip155:80002"),
            ("avalanche-fuji", "eip155:43113"),
            ("skale-base-sepolia", "eip155:324705682"),
            ("solana", "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"),
        ];
        for (input, caip2) in table {
            assert_eq!(resolve(input).unwrap().caip2, caip2, "{input}");
        }
    }

    #[test]
    fn every_caip2_and_name_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for network in NETWORKS {
            for name in network.names() {
                assert!(seen.insert(name.to_ascii_lowercase()), "duplicate {name}");
            }
            if let Some(id) = network.chain_id {
                assert_eq!(network.caip2, format!("eip155:{id}"));
            }
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = resolve("base-goerli").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("unknown network \"base-goerli\"; known networks: ethereum, "),
            "{msg}"
        );
        assert!(msg.contains("base-sepolia"), "{msg}");
    }

    #[test]
    fn normalizes_and_compares() {
        assert_eq!(normalize("base"), "eip155:8453");
        assert_eq!(normalize("eip155:999999"), "eip155:999999");
        assert_eq!(normalize("not-a-chain"), "not-a-chain");
        assert!(same_network("base", "eip155:8453"));
        assert!(same_network("mainnet", "ethereum"));
        assert!(!same_network("base", "base-sepolia"));
        assert!(same_network("eip155:999999", "EIP155:999999"));
    }

    #[test]
    fn evm_chain_ids() {
        assert_eq!(evm_chain_id("base-sepolia").unwrap(), 84532);
        assert_eq!(evm_chain_id("eip155:31337").unwrap(), 31337);
        assert!(matches!(
            evm_chain_id("solana"),
            Err(NetworkError::NotEvm { .. })
        ));
        assert!(matches!(
            evm_chain_id("eip155:01"),
            Err(NetworkError::Unknown { .. })
        ));
        assert!(matches!(
            evm_chain_id("nope"),
            Err(NetworkError::Unknown { .. })
        ));
        assert_eq!(by_chain_id(8453).unwrap().name, "base");
    }

    #[test]
    fn caip2_syntax() {
        assert!(Caip2::parse("eip155:1").is_ok());
        assert!(Caip2::parse("ach:us").is_ok());
        assert!(Caip2::parse("ab:1").is_err(), "namespace needs 3..8 chars");
        for bad in [
            "eip155",
            ":1",
            "eip155:",
            "EIP155:1",
            "eip155:1:2",
            "eip155:a b",
        ] {
            assert!(Caip2::parse(bad).is_err(), "{bad}");
        }
    }
}
