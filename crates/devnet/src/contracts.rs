//! Our devnet contracts (Solidity in `contracts/src`, artifacts committed in
//! `contracts/artifacts`), placed at the Base Sepolia addresses with `anvil_setCode`.

use alloy::primitives::{Address, Bytes, address};
use alloy::sol;
use obol_x402::token::{EXACT_PERMIT2_PROXY, PERMIT2, UPTO_PERMIT2_PROXY};

use crate::DevnetError;

sol! {
    /// The one-time setup and minting of the devnet tokens.
    #[sol(rpc)]
    interface IDevToken {
        function initialize(address minter) external;
        function mint(address to, uint256 amount) external;
        function balanceOf(address owner) external view returns (uint256);
        function approve(address spender, uint256 amount) external returns (bool);
    }
}

/// Base Sepolia USDC's address, where the devnet's EIP-3009 stablecoin lives.
pub const USDC: Address = address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
/// Base Sepolia OBOL's address (the token registry's default), where the devnet OBOL lives.
pub const OBOL: Address = address!("0x0a09371a8b011d5110656ceBCc70603e53FD2c78");
/// The ERC-8004 Identity Registry's testnet address.
pub const IDENTITY_REGISTRY: Address = address!("0x8004A818BFB912233c491871b3d84c89A494BD9e");

/// A contract of ours: its name, where it goes, and — for a token — what `initialize(minter)`
/// then mints to every dev account.
pub(crate) struct Placement {
    pub(crate) name: &'static str,
    pub(crate) address: Address,
    pub(crate) artifact: &'static str,
    pub(crate) funding: Option<u128>,
}

/// The devnet's EIP-3009 stablecoin.
pub(crate) const TEST_USDC: Placement = Placement {
    name: "TestUSDC",
    address: USDC,
    artifact: include_str!("../../../contracts/artifacts/TestUSDC.json"),
    funding: Some(crate::USDC_FUNDING),
};

/// Every devnet contract, in placement order.
pub(crate) const PLACEMENTS: [Placement; 6] = [
    TEST_USDC,
    Placement {
        name: "TestObol",
        address: OBOL,
        artifact: include_str!("../../../contracts/artifacts/TestObol.json"),
        funding: Some(crate::OBOL_FUNDING),
    },
    Placement {
        name: "Permit2",
        address: PERMIT2,
        artifact: include_str!("../../../contracts/artifacts/Permit2.json"),
        funding: None,
    },
    Placement {
        name: "X402ExactPermit2Proxy",
        address: EXACT_PERMIT2_PROXY,
        artifact: include_str!("../../../contracts/artifacts/X402ExactPermit2Proxy.json"),
        funding: None,
    },
    Placement {
        name: "X402UptoPermit2Proxy",
        address: UPTO_PERMIT2_PROXY,
        artifact: include_str!("../../../contracts/artifacts/X402UptoPermit2Proxy.json"),
        funding: None,
    },
    Placement {
        name: "IdentityRegistry",
        address: IDENTITY_REGISTRY,
        artifact: include_str!("../../../contracts/artifacts/IdentityRegistry.json"),
        funding: None,
    },
];

impl Placement {
    /// The runtime bytecode from the artifact.
    pub(crate) fn runtime_code(&self) -> Result<Bytes, DevnetError> {
        let bad = |reason: String| DevnetError::Artifact {
            name: self.name,
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_str(self.artifact).map_err(|e| bad(e.to_string()))?;
        let hex = json
            .get("deployedBytecode")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("no deployedBytecode".to_owned()))?;
        hex.parse::<Bytes>().map_err(|e| bad(e.to_string()))
    }
}
