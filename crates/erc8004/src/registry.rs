//! Where the Identity Registry lives on each chain (erc8004.md §1.5).
//!
//! The registries are CREATE2 vanity deployments: one address on every testnet, another on
//! every mainnet. [`Registries::builtin`] knows both classes; [`Registries::with_override`]
//! points a chain elsewhere (a private deployment, a fork). The devnet places its registry at
//! the testnet address on chain 84532, so the built-in table already covers it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use alloy::primitives::{Address, address};

use crate::Erc8004Error;

/// The Identity Registry on every testnet.
pub const TESTNET_IDENTITY_REGISTRY: Address =
    address!("0x8004A818BFB912233c491871b3d84c89A494BD9e");

/// The Identity Registry on every mainnet.
pub const MAINNET_IDENTITY_REGISTRY: Address =
    address!("0x8004A169FB4a3325136EB29fA0ceB6D2e539a432");

/// Testnets with the registry at [`TESTNET_IDENTITY_REGISTRY`] (the README of 2026-08; chains
/// listed without an id are left out).
pub const TESTNET_CHAIN_IDS: [u64; 21] = [
    11_155_111,  // Ethereum Sepolia
    84_532,      // Base Sepolia
    421_614,     // Arbitrum Sepolia
    11_155_420,  // Optimism Sepolia
    80_002,      // Polygon Amoy
    43_113,      // Avalanche Fuji
    97,          // BSC testnet
    10_143,      // Monad testnet
    534_351,     // Scroll Sepolia
    11_142_220,  // Celo Sepolia
    167_013,     // Taiko Hoodi
    6_343,       // MegaETH testnet
    59_141,      // Linea Sepolia
    1_952,       // XLayer testnet
    11_124,      // Abstract testnet
    5_003,       // Mantle Sepolia
    1_946,       // Soneium Minato
    59_902,      // Metis Sepolia
    296,         // Hedera testnet
    324_705_682, // SKALE Base Sepolia
    5_042_002,   // Arc testnet
];

/// Mainnets with the registry at [`MAINNET_IDENTITY_REGISTRY`].
pub const MAINNET_CHAIN_IDS: [u64; 21] = [
    1,             // Ethereum
    8_453,         // Base
    42_161,        // Arbitrum
    10,            // Optimism
    137,           // Polygon
    43_114,        // Avalanche
    56,            // BSC
    143,           // Monad
    534_352,       // Scroll
    100,           // Gnosis
    42_220,        // Celo
    167_000,       // Taiko
    59_144,        // Linea
    4_326,         // MegaETH
    196,           // XLayer
    2_741,         // Abstract
    5_000,         // Mantle
    1_868,         // Soneium
    2_345,         // GOAT
    1_088,         // Metis
    1_187_947_933, // SKALE Base
];

/// One Identity Registry: a chain and a contract. Displays (and parses) as the spec's
/// `agentRegistry` string, `eip155:<chainId>:<address>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgentRegistry {
    /// The EVM chain id.
    pub chain_id: u64,
    /// The registry contract.
    pub address: Address,
}

impl AgentRegistry {
    /// A registry at `address` on `chain_id`.
    pub fn new(chain_id: u64, address: Address) -> Self {
        Self { chain_id, address }
    }
}

impl fmt::Display for AgentRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "eip155:{}:{}",
            self.chain_id,
            self.address.to_checksum(None)
        )
    }
}

impl FromStr for AgentRegistry {
    type Err = Erc8004Error;

    /// Parses `eip155:<chainId>:<address>` (the address in any case).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || Erc8004Error::InvalidRegistry {
            input: crate::printable(text, 80),
        };
        let mut parts = text.trim().splitn(3, ':');
        let (Some("eip155"), Some(chain), Some(address)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let chain_id = chain
            .parse::<u64>()
            .ok()
            .filter(|id| chain == id.to_string())
            .ok_or_else(invalid)?;
        let address = address.parse::<Address>().map_err(|_| invalid())?;
        Ok(Self { chain_id, address })
    }
}

/// Registry addresses per chain id: the built-in CREATE2 table plus overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registries {
    builtin: bool,
    overrides: BTreeMap<u64, Address>,
}

impl Registries {
    /// The testnet and mainnet deployments of erc8004.md §1.5.
    pub fn builtin() -> Self {
        Self {
            builtin: true,
            overrides: BTreeMap::new(),
        }
    }

    /// No chain at all; only overrides count.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Points `chain_id` at `address` (replaces the built-in entry, if any).
    #[must_use]
    pub fn with_override(mut self, chain_id: u64, address: Address) -> Self {
        self.overrides.insert(chain_id, address);
        self
    }

    /// The registry on `chain_id`, if one is known.
    pub fn get(&self, chain_id: u64) -> Option<AgentRegistry> {
        let address = self.overrides.get(&chain_id).copied().or_else(|| {
            if !self.builtin {
                None
            } else if TESTNET_CHAIN_IDS.contains(&chain_id) {
                Some(TESTNET_IDENTITY_REGISTRY)
            } else if MAINNET_CHAIN_IDS.contains(&chain_id) {
                Some(MAINNET_IDENTITY_REGISTRY)
            } else {
                None
            }
        })?;
        Some(AgentRegistry { chain_id, address })
    }

    /// Like [`Registries::get`], with an error naming the chain.
    pub fn require(&self, chain_id: u64) -> Result<AgentRegistry, Erc8004Error> {
        self.get(chain_id)
            .ok_or(Erc8004Error::NoRegistry { chain_id })
    }

    /// The registry of a chain given by name, alias or CAIP-2 id (`base-sepolia`, `base`,
    /// `eip155:84532`), through the x402 network table. Custom chain names (`devnet`) need their
    /// chain id: use [`Registries::get`].
    pub fn for_network(&self, network: &str) -> Option<AgentRegistry> {
        obol_x402::network::evm_chain_id(network)
            .ok()
            .and_then(|id| self.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_overrides() {
        let registries = Registries::builtin();
        assert_eq!(
            registries.get(84532).map(|r| r.address),
            Some(TESTNET_IDENTITY_REGISTRY)
        );
        assert_eq!(
            registries.get(8453).map(|r| r.address),
            Some(MAINNET_IDENTITY_REGISTRY)
        );
        assert_eq!(
            registries.for_network("ethereum").map(|r| r.address),
            Some(MAINNET_IDENTITY_REGISTRY)
        );
        assert_eq!(registries.get(31337), None);
        assert!(matches!(
            registries.require(31337),
            Err(Erc8004Error::NoRegistry { chain_id: 31337 })
        ));
        let local = Address::repeat_byte(7);
        let registries = registries
            .with_override(31337, local)
            .with_override(8453, local);
        assert_eq!(registries.get(31337).map(|r| r.address), Some(local));
        assert_eq!(registries.get(8453).map(|r| r.address), Some(local));
        assert_eq!(Registries::empty().get(84532), None);
    }

    #[test]
    fn caip10_round_trip() {
        let registry = Registries::builtin().for_network("base-sepolia").unwrap();
        let text = registry.to_string();
        assert_eq!(
            text,
            "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"
        );
        assert_eq!(text.parse::<AgentRegistry>().unwrap(), registry);
        assert_eq!(
            "eip155:84532:0x8004a818bfb912233c491871b3d84c89a494bd9e"
                .parse::<AgentRegistry>()
                .unwrap(),
            registry
        );
        for bad in [
            "",
            "eip155:84532",
            "solana:1:0x8004A818BFB912233c491871b3d84c89A494BD9e",
            "eip155:084532:0x8004A818BFB912233c491871b3d84c89A494BD9e",
            "eip155:84532:0x1234",
        ] {
            assert!(bad.parse::<AgentRegistry>().is_err(), "{bad}");
        }
    }
}
