//! Contract interfaces the facilitator calls.

#![allow(
    clippy::too_many_arguments,
    reason = "generated bindings mirror the ABI"
)]

use alloy::sol;

sol! {
    /// EIP-3009 tokens (USDC FiatToken v2.2 and compatibles).
    #[sol(rpc)]
    interface IEip3009 {
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature) external;
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function balanceOf(address owner) external view returns (uint256);
        function name() external view returns (string);
        function version() external view returns (string);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
        event Transfer(address indexed from, address indexed to, uint256 value);
    }
}

sol! {
    /// ERC-20 reads for Permit2 payments.
    #[sol(rpc)]
    interface IErc20 {
        function balanceOf(address owner) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
    }

    /// Uniswap Permit2 (SignatureTransfer): the nonce bitmap and its custom errors.
    #[sol(rpc)]
    interface IPermit2 {
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
        error InvalidNonce();
        error SignatureExpired(uint256 signatureDeadline);
        error InvalidSignature();
        error InvalidSigner();
        error InvalidSignatureLength();
        error InvalidContractSignature();
    }

    /// Permit2's `{token, amount}`, shared by both x402 proxies' calls.
    struct TokenPermissions { address token; uint256 amount; }
    /// Permit2's `PermitTransferFrom`.
    struct PermitTransferFrom { TokenPermissions permitted; uint256 nonce; uint256 deadline; }
    /// The EIP-2612 permit `settleWithPermit` applies first.
    struct EIP2612Permit { uint256 value; uint256 deadline; bytes32 r; bytes32 s; uint8 v; }
    /// The exact proxy's witness.
    struct ExactWitness { address to; uint256 validAfter; }
    /// The upto proxy's witness.
    struct UptoWitness { address to; address facilitator; uint256 validAfter; }

    /// The x402 exact Permit2 proxy.
    #[sol(rpc)]
    interface IX402ExactPermit2Proxy {
        function settle(PermitTransferFrom permit, address owner, ExactWitness witness, bytes signature) external;
        function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, address owner, ExactWitness witness, bytes signature) external;
        error InvalidAmount();
        error InvalidOwner();
        error InvalidDestination();
        error PaymentTooEarly();
        error Permit2612AmountMismatch();
    }

    /// The x402 upto Permit2 proxy: settles `amount` ≤ the permitted ceiling, only when called
    /// by `witness.facilitator`. Its other errors are the exact proxy's.
    #[sol(rpc)]
    interface IX402UptoPermit2Proxy {
        function settle(PermitTransferFrom permit, uint256 amount, address owner, UptoWitness witness, bytes signature) external;
        function settleWithPermit(EIP2612Permit permit2612, PermitTransferFrom permit, uint256 amount, address owner, UptoWitness witness, bytes signature) external;
        error AmountExceedsPermitted();
        error UnauthorizedFacilitator();
    }
}
