//! The Identity Registry's ABI as deployed (`IdentityRegistryUpgradeable` 2.0.0, erc8004.md
//! §1.1), and the EIP-712 `AgentWalletSet` proof a new agent wallet signs.
//!
//! `sol!` names overloads by position: [`IIdentityRegistry::register_0Call`] is `register()`,
//! `register_1Call` is `register(string)`, `register_2Call` is `register(string,(string,bytes)[])`.

use std::borrow::Cow;

use alloy::primitives::{Address, B256, Signature, U256};
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct as _};
use obol_x402::PaymentSigner;

use crate::Erc8004Error;
use crate::registry::AgentRegistry;

sol! {
    /// The ERC-8004 Identity Registry: agents are ERC-721 tokens, `tokenURI` is the agentURI.
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    interface IIdentityRegistry {
        /// One metadata entry: a key and raw bytes.
        struct MetadataEntry {
            string metadataKey;
            bytes metadataValue;
        }

        /// A new agent: `agentId` minted to `owner` with `agentURI` (`""` for `register()`).
        event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
        /// A metadata write (`indexedMetadataKey` is the key's keccak256).
        event MetadataSet(uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue);
        /// `setAgentURI` was called.
        event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);
        /// ERC-721 transfer (a mint comes from the zero address).
        event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

        /// ERC-6093: the token id does not exist.
        error ERC721NonexistentToken(uint256 tokenId);

        function register() external returns (uint256 agentId);
        function register(string agentURI) external returns (uint256 agentId);
        function register(string agentURI, MetadataEntry[] metadata) external returns (uint256 agentId);
        function setAgentURI(uint256 agentId, string newURI) external;
        function tokenURI(uint256 agentId) external view returns (string);
        function getMetadata(uint256 agentId, string metadataKey) external view returns (bytes);
        function setMetadata(uint256 agentId, string metadataKey, bytes metadataValue) external;
        function setAgentWallet(uint256 agentId, address newWallet, uint256 deadline, bytes signature) external;
        function getAgentWallet(uint256 agentId) external view returns (address);
        function unsetAgentWallet(uint256 agentId) external;
        function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool);
        function getVersion() external pure returns (string);
        function ownerOf(uint256 tokenId) external view returns (address);
        function balanceOf(address owner) external view returns (uint256);
    }
}

sol! {
    /// What a new agent wallet signs to accept the role (erc8004.md §1.1): `owner` is the
    /// current `ownerOf(agentId)`, and `deadline` at most 5 minutes ahead of the block time.
    #[derive(Debug, PartialEq, Eq)]
    struct AgentWalletSet {
        uint256 agentId;
        address newWallet;
        address owner;
        uint256 deadline;
    }
}

pub use IIdentityRegistry::MetadataEntry;

/// The reserved metadata key holding the verified payment wallet.
pub const AGENT_WALLET_KEY: &str = "agentWallet";

/// The latest deadline the registry accepts, in seconds after the block time.
pub const MAX_AGENT_WALLET_DEADLINE_SECS: u64 = 300;

/// The registry's EIP-712 domain: `{name: "ERC8004IdentityRegistry", version: "1", chainId,
/// verifyingContract: registry}`.
pub fn agent_wallet_domain(registry: &AgentRegistry) -> Eip712Domain {
    Eip712Domain {
        name: Some(Cow::Borrowed("ERC8004IdentityRegistry")),
        version: Some(Cow::Borrowed("1")),
        chain_id: Some(U256::from(registry.chain_id)),
        verifying_contract: Some(registry.address),
        salt: None,
    }
}

/// The digest `new_wallet` signs to become `agent_id`'s wallet.
pub fn agent_wallet_digest(
    registry: &AgentRegistry,
    agent_id: U256,
    new_wallet: Address,
    owner: Address,
    deadline: u64,
) -> B256 {
    AgentWalletSet {
        agentId: agent_id,
        newWallet: new_wallet,
        owner,
        deadline: U256::from(deadline),
    }
    .eip712_signing_hash(&agent_wallet_domain(registry))
}

/// Signs the `AgentWalletSet` proof with the new wallet's key (`signer.address()` becomes the
/// wallet). The owner or an operator then sends it with `setAgentWallet`.
pub async fn sign_agent_wallet(
    signer: &dyn PaymentSigner,
    registry: &AgentRegistry,
    agent_id: U256,
    owner: Address,
    deadline: u64,
) -> Result<Signature, Erc8004Error> {
    let digest = agent_wallet_digest(registry, agent_id, signer.address(), owner, deadline);
    signer
        .sign_digest(&digest)
        .await
        .map_err(Erc8004Error::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{address, b256, keccak256};
    use alloy::sol_types::{SolCall as _, SolEvent as _};

    #[test]
    fn selectors_and_topics_match_the_spec() {
        assert_eq!(
            IIdentityRegistry::register_0Call::SELECTOR,
            [0x1a, 0xa3, 0xa0, 0x08]
        );
        assert_eq!(
            IIdentityRegistry::register_1Call::SELECTOR,
            [0xf2, 0xc2, 0x98, 0xbe]
        );
        assert_eq!(
            IIdentityRegistry::register_2Call::SELECTOR,
            [0x8e, 0xa4, 0x22, 0x86]
        );
        assert_eq!(
            IIdentityRegistry::setAgentURICall::SELECTOR,
            [0x0a, 0xf2, 0x8b, 0xd3]
        );
        assert_eq!(
            IIdentityRegistry::setAgentWalletCall::SELECTOR,
            [0x2d, 0x1e, 0xf5, 0xae]
        );
        assert_eq!(
            IIdentityRegistry::getAgentWalletCall::SELECTOR,
            [0x00, 0x33, 0x95, 0x09]
        );
        assert_eq!(
            IIdentityRegistry::Registered::SIGNATURE_HASH,
            b256!("0xca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a")
        );
        assert_eq!(
            IIdentityRegistry::MetadataSet::SIGNATURE_HASH,
            b256!("0x2c149ed548c6d2993cd73efe187df6eccabe4538091b33adbd25fafdb8a1468b")
        );
        assert_eq!(
            IIdentityRegistry::URIUpdated::SIGNATURE_HASH,
            b256!("0x3a2c7fffc2cba7582c690e3b82c453ea02a308326a98a3ad7576c606336409fb")
        );
    }

    #[test]
    fn agent_wallet_typehash_matches_the_contract() {
        assert_eq!(
            keccak256(AgentWalletSet::eip712_encode_type().as_bytes()),
            b256!("0x678b53cd718d595370ab070ebf48edfdcd834beac116bf23e625fc7f4d5b7d32")
        );
        let registry = AgentRegistry {
            chain_id: 84532,
            address: address!("0x8004A818BFB912233c491871b3d84c89A494BD9e"),
        };
        let a = agent_wallet_digest(&registry, U256::from(1), Address::ZERO, Address::ZERO, 1);
        let b = agent_wallet_digest(&registry, U256::from(2), Address::ZERO, Address::ZERO, 1);
        assert_ne!(a, b);
    }
}
