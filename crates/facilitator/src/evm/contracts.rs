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
    }
}
