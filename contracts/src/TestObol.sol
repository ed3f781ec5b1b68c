// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {DevERC20} from "./base/DevERC20.sol";

/// @title TestObol
/// @notice Devnet OBOL: an 18-decimal ERC-20 with EIP-2612 `permit` (no EIP-3009), so
///         x402 pays with it through Permit2 and the x402 exact Permit2 proxy.
/// @dev Constructor-free. EIP-712 domain {name:"Obol Network", version:"1", chainId,
///      verifyingContract}, recomputed on every call. Permit semantics and errors follow
///      OpenZeppelin 5.x ERC20Permit (ERC2612ExpiredSignature / ERC2612InvalidSigner,
///      ECDSA errors from OpenZeppelin's ECDSA library).
contract TestObol is DevERC20 {
    /// @notice keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")
    bytes32 private constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    mapping(address owner => uint256) private _nonces;

    /// @notice EIP-5267 event; declared for interface completeness, never emitted (the domain never changes).
    event EIP712DomainChanged();

    error ERC2612ExpiredSignature(uint256 deadline);
    error ERC2612InvalidSigner(address signer, address owner);

    function name() public pure override returns (string memory) {
        return "Obol Network";
    }

    function symbol() public pure override returns (string memory) {
        return "OBOL";
    }

    function decimals() public pure override returns (uint8) {
        return 18;
    }

    /// @notice EIP-712 domain separator for the current chain and address.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return _domainSeparatorV4(keccak256("Obol Network"), keccak256("1"));
    }

    /// @notice EIP-5267 domain description.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name_,
            string memory version_,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "Obol Network", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// @notice Current EIP-2612 nonce of `owner`.
    function nonces(address owner) external view returns (uint256) {
        return _nonces[owner];
    }

    /// @notice EIP-2612 approval by signature.
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        if (block.timestamp > deadline) revert ERC2612ExpiredSignature(deadline);
        uint256 nonce;
        unchecked {
            nonce = _nonces[owner]++;
        }
        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, owner, spender, value, nonce, deadline));
        bytes32 digest = keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR(), structHash));
        address signer = ECDSA.recover(digest, v, r, s);
        if (signer != owner) revert ERC2612InvalidSigner(signer, owner);
        _approve(owner, spender, value, true);
    }
}
