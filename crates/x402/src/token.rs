//! Tokens a payment can be made in, with the EIP-712 domain each one signs under, and the
//! canonical contract addresses of the Permit2 route.
//!
//! `extra.name` in a requirement must be the token's **EIP-712 domain name**, not its ticker: a
//! wrong name yields a signature that no facilitator accepts. Base Sepolia USDC signs as `"USDC"`
//! while Base and Ethereum USDC sign as `"USD Coin"` (x402.md §5.2, obol-stack.md §8.1).

use std::fmt;

use alloy::primitives::{Address, address};
use serde::{Deserialize, Serialize};

use crate::network::{self, NetworkError};

/// Uniswap Permit2, at the same address on every EVM chain.
pub const PERMIT2: Address = address!("0x000000000022D473030F116dDEE9F6B43aC78BA3");
/// The x402 exact-scheme Permit2 proxy: the only valid `spender` of an exact Permit2 payment.
pub const EXACT_PERMIT2_PROXY: Address = address!("0x402085c248EeA27D92E8b30b2C58ed07f9E20001");
/// The x402 upto-scheme Permit2 proxy.
pub const UPTO_PERMIT2_PROXY: Address = address!("0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002");
/// Multicall3, at the same address on every EVM chain.
pub const MULTICALL3: Address = address!("0xcA11bde05977b3631167028862bE2a173976CA11");
/// The ERC-6492 universal signature validator used by x402 facilitators.
pub const ERC6492_VALIDATOR: Address = address!("0xdAcD51A54883eb67D95FAEb2BBfdC4a9a6BD2a3B");
/// The 32-byte suffix that marks an ERC-6492 wrapped signature.
pub const ERC6492_MAGIC_SUFFIX: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];
/// The ERC-1271 `isValidSignature` magic return value.
pub const ERC1271_MAGIC_VALUE: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

/// How a token moves under the `exact` scheme (`extra.assetTransferMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMethod {
    /// EIP-3009 `transferWithAuthorization` (USDC and friends). The default when absent.
    #[default]
    Eip3009,
    /// A Permit2 witness transfer through the x402 exact proxy (any ERC-20).
    Permit2,
}

impl TransferMethod {
    /// The wire name: `eip3009` or `permit2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eip3009 => "eip3009",
            Self::Permit2 => "permit2",
        }
    }
}

impl fmt::Display for TransferMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One token on one chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// Ticker, e.g. `USDC`.
    pub symbol: String,
    /// EVM chain id.
    pub chain_id: u64,
    /// Contract address.
    pub address: Address,
    /// Decimals of the atomic unit.
    pub decimals: u8,
    /// How `exact` payments move it.
    pub transfer_method: TransferMethod,
    /// EIP-712 domain name the token signs under (for EIP-3009 and EIP-2612).
    pub eip712_name: String,
    /// EIP-712 domain version.
    pub eip712_version: String,
    /// True when the facilitator may sponsor the Permit2 approval with an EIP-2612 permit.
    #[serde(default)]
    pub eip2612_gas_sponsoring: bool,
}

impl Token {
    /// The `extra` object of a requirement paying in this token:
    /// `{"name", "version", "assetTransferMethod"}`.
    pub fn requirement_extra(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut extra = serde_json::Map::new();
        extra.insert("name".into(), self.eip712_name.clone().into());
        extra.insert("version".into(), self.eip712_version.clone().into());
        extra.insert(
            "assetTransferMethod".into(),
            self.transfer_method.as_str().into(),
        );
        extra
    }

    /// The legacy name of the token's network, or `eip155:<id>` for unknown chains.
    pub fn network_name(&self) -> String {
        network::by_chain_id(self.chain_id)
            .map(|n| n.name.to_owned())
            .unwrap_or_else(|| format!("eip155:{}", self.chain_id))
    }
}

/// Why a token could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The network name did not resolve.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// No token with that symbol is known anywhere.
    #[error("unknown token {symbol:?}; known tokens: {known}")]
    UnknownSymbol {
        /// The symbol as given.
        symbol: String,
        /// Every known symbol, comma separated.
        known: String,
    },
    /// The token exists, but not on that network.
    #[error("{symbol} is not available on {network}; it is available on: {available}")]
    NotOnNetwork {
        /// The symbol as given.
        symbol: String,
        /// The network as given.
        network: String,
        /// The networks that carry it, comma separated.
        available: String,
    },
}

/// The tokens the stack can price and pay in. Starts from the built-in table; operators and the
/// devnet add or replace entries with [`TokenRegistry::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRegistry {
    tokens: Vec<Token>,
}

/// USDC addresses and EIP-712 names per chain id.
const USDC: &[(u64, Address, &str)] = &[
    (
        1,
        address!("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
        "USD Coin",
    ),
    (
        8453,
        address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
        "USD Coin",
    ),
    (
        84532,
        address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
        "USDC",
    ),
    (
        137,
        address!("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),
        "USD Coin",
    ),
    (
        80002,
        address!("0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582"),
        "USDC",
    ),
    (
        43114,
        address!("0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E"),
        "USD Coin",
    ),
    (
        43113,
        address!("0x5425890298aed601595a70AB815c96711a31Bc65"),
        "USD Coin",
    ),
    (
        42161,
        address!("0xaf88d065e77c8cC2239327C5EDb3A432268e5831"),
        "USD Coin",
    ),
    (
        421614,
        address!("0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d"),
        "USD Coin",
    ),
    (
        1329,
        address!("0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392"),
        "USDC",
    ),
    (
        1328,
        address!("0x4fCF1784B31630811181f670Aea7A7bEF803eaED"),
        "USDC",
    ),
    (
        42220,
        address!("0xcebA9300f2b948710d2653dD7B07f33A8B32118C"),
        "USDC",
    ),
    (
        3338,
        address!("0xbbA60da06c2c5424f03f7434542280FCAd453d10"),
        "USDC",
    ),
    (
        143,
        address!("0x754704Bc059F8C67012fEd69BC8A327a5aafb603"),
        "USD Coin",
    ),
];

/// OBOL deployments: an 18-decimal ERC-20 with EIP-2612, paid through Permit2.
const OBOL: &[(u64, Address)] = &[
    (1, address!("0x0B010000b7624eb9B3DfBC279673C76E9D29D5F7")),
    (
        84532,
        address!("0x0a09371a8b011d5110656ceBCc70603e53FD2c78"),
    ),
];

impl TokenRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self { tokens: Vec::new() }
    }

    /// The built-in table: USDC on every chain of [`network::NETWORKS`] that has one, and OBOL
    /// on Ethereum and Base Sepolia.
    pub fn builtin() -> Self {
        let usdc = USDC.iter().map(|&(chain_id, address, name)| Token {
            symbol: "USDC".into(),
            chain_id,
            address,
            decimals: 6,
            transfer_method: TransferMethod::Eip3009,
            eip712_name: name.into(),
            eip712_version: "2".into(),
            eip2612_gas_sponsoring: false,
        });
        let obol = OBOL
            .iter()
            .map(|&(chain_id, address)| Self::obol(chain_id, address));
        Self {
            tokens: usdc.chain(obol).collect(),
        }
    }

    /// An OBOL entry at `address` on `chain_id` (for deployments the table does not know).
    pub fn obol(chain_id: u64, address: Address) -> Token {
        Token {
            symbol: "OBOL".into(),
            chain_id,
            address,
            decimals: 18,
            transfer_method: TransferMethod::Permit2,
            eip712_name: "Obol Network".into(),
            eip712_version: "1".into(),
            eip2612_gas_sponsoring: true,
        }
    }

    /// Adds a token, replacing any entry with the same symbol (case-insensitive) on the same
    /// chain. Use it for operator overrides and for devnet deployments.
    pub fn insert(&mut self, token: Token) {
        self.tokens.retain(|t| {
            !(t.chain_id == token.chain_id && t.symbol.eq_ignore_ascii_case(&token.symbol))
        });
        self.tokens.push(token);
    }

    /// Every token, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Token> {
        self.tokens.iter()
    }

    /// The token with `symbol` (case-insensitive) on `network` (any name, alias or CAIP-2 id).
    pub fn resolve(&self, symbol: &str, network: &str) -> Result<&Token, TokenError> {
        let chain_id = network::evm_chain_id(network)?;
        if let Some(token) = self
            .tokens
            .iter()
            .find(|t| t.chain_id == chain_id && t.symbol.eq_ignore_ascii_case(symbol))
        {
            return Ok(token);
        }
        let available = self.networks_for(symbol);
        if available.is_empty() {
            let mut known: Vec<&str> = self.tokens.iter().map(|t| t.symbol.as_str()).collect();
            known.sort_unstable();
            known.dedup();
            return Err(TokenError::UnknownSymbol {
                symbol: symbol.to_owned(),
                known: known.join(", "),
            });
        }
        Err(TokenError::NotOnNetwork {
            symbol: symbol.to_owned(),
            network: network.to_owned(),
            available: available.join(", "),
        })
    }

    /// The token at `address` on `chain_id`.
    pub fn by_address(&self, chain_id: u64, address: Address) -> Option<&Token> {
        self.tokens
            .iter()
            .find(|t| t.chain_id == chain_id && t.address == address)
    }

    /// The tokens on `chain_id`.
    pub fn on_chain(&self, chain_id: u64) -> impl Iterator<Item = &Token> {
        self.tokens.iter().filter(move |t| t.chain_id == chain_id)
    }

    /// The network names that carry `symbol`.
    pub fn networks_for(&self, symbol: &str) -> Vec<String> {
        self.tokens
            .iter()
            .filter(|t| t.symbol.eq_ignore_ascii_case(symbol))
            .map(Token::network_name)
            .collect()
    }
}

impl Default for TokenRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usdc_domains_per_chain() {
        let registry = TokenRegistry::builtin();
        let table = [
            (
                "base-sepolia",
                "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "USDC",
            ),
            (
                "eip155:84532",
                "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "USDC",
            ),
            (
                "base",
                "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                "USD Coin",
            ),
            (
                "ethereum",
                "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                "USD Coin",
            ),
            (
                "mainnet",
                "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                "USD Coin",
            ),
            (
                "polygon-amoy",
                "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582",
                "USDC",
            ),
            (
                "arbitrum",
                "0xaf88d065e77c8cC2239327C5EDb3A432268e5831",
                "USD Coin",
            ),
        ];
        for (network, address, name) in table {
            let token = registry.resolve("usdc", network).unwrap();
            assert_eq!(
                token.address,
                address.parse::<Address>().unwrap(),
                "{network}"
            );
            assert_eq!(token.eip712_name, name, "{network}");
            assert_eq!(token.eip712_version, "2");
            assert_eq!(token.decimals, 6);
            assert_eq!(token.transfer_method, TransferMethod::Eip3009);
        }
    }

    #[test]
    fn every_usdc_chain_is_a_known_network() {
        for (chain_id, _, _) in USDC {
            assert!(network::by_chain_id(*chain_id).is_some(), "{chain_id}");
        }
    }

    #[test]
    fn obol_is_permit2_with_18_decimals() {
        let registry = TokenRegistry::builtin();
        let obol = registry.resolve("OBOL", "ethereum").unwrap();
        assert_eq!(obol.decimals, 18);
        assert_eq!(obol.transfer_method, TransferMethod::Permit2);
        assert_eq!(
            (obol.eip712_name.as_str(), obol.eip712_version.as_str()),
            ("Obol Network", "1")
        );
        assert!(obol.eip2612_gas_sponsoring);
        let extra = serde_json::Value::Object(obol.requirement_extra());
        assert_eq!(
            extra.to_string(),
            r#"{"name":"Obol Network","version":"1","assetTransferMethod":"permit2"}"#
        );
    }

    #[test]
    fn overrides_replace_the_builtin_entry() {
        let mut registry = TokenRegistry::builtin();
        let custom = address!("0x54AE82bc871a4E3E8E2FE1173Cb864B8563D44D4");
        registry.insert(TokenRegistry::obol(84532, custom));
        assert_eq!(
            registry.resolve("obol", "base-sepolia").unwrap().address,
            custom
        );
        assert_eq!(registry.networks_for("OBOL").len(), 2);
        assert_eq!(registry.by_address(84532, custom).unwrap().symbol, "OBOL");
    }

    #[test]
    fn lookup_errors_say_where_to_look() {
        let registry = TokenRegistry::builtin();
        let err = registry.resolve("OBOL", "base").unwrap_err();
        assert_eq!(
            err.to_string(),
            "OBOL is not available on base; it is available on: ethereum, base-sepolia"
        );
        let err = registry.resolve("DAI", "base").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown token \"DAI\"; known tokens: OBOL, USDC"
        );
        assert!(matches!(
            registry.resolve("USDC", "nowhere"),
            Err(TokenError::Network(_))
        ));
    }

    #[test]
    fn canonical_addresses() {
        assert_eq!(
            PERMIT2.to_checksum(None),
            "0x000000000022D473030F116dDEE9F6B43aC78BA3"
        );
        assert_eq!(
            EXACT_PERMIT2_PROXY.to_checksum(None),
            "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
        );
    }
}
