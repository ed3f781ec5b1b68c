// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {x402BasePermit2Proxy} from "./base/x402BasePermit2Proxy.sol";
import {ISignatureTransfer} from "./interfaces/ISignatureTransfer.sol";

/// @title x402ExactPermit2Proxy (devnet, constructor-free)
/// @notice x402 `exact` payments through Permit2: always moves the full permitted amount
///         from the payer to `witness.to`, the destination the payer signed.
/// @dev Same external ABI as the official x402ExactPermit2Proxy (canonical address
///      0x402085c248EeA27D92E8b30b2C58ed07f9E20001). No constructor, no storage setup.
contract x402ExactPermit2Proxy is x402BasePermit2Proxy {
    /// @notice Remainder of the Permit2 witness type string (appended to Permit2's stub).
    /// @dev Referenced struct types are in alphabetical order (TokenPermissions < Witness).
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)";

    /// @notice keccak256("Witness(address to,uint256 validAfter)")
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,uint256 validAfter)");

    /// @notice What the payer signs on top of the Permit2 permit.
    /// @param to Destination of the funds
    /// @param validAfter Earliest settlement time (the upper bound is Permit2's deadline)
    struct Witness {
        address to;
        uint256 validAfter;
    }

    /// @notice Settles a payment when the payer has already approved Permit2 on the token.
    function settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _settle(
            permit,
            permit.permitted.amount,
            owner,
            witness.to,
            witness.validAfter,
            _hashWitness(witness),
            WITNESS_TYPE_STRING,
            signature
        );
        emit Settled();
    }

    /// @notice Applies the payer's EIP-2612 permit (token approval of Permit2 for exactly the
    ///         permitted amount), then settles as `settle` does. Succeeds even if the permit
    ///         call fails, provided an allowance already exists.
    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        ISignatureTransfer.PermitTransferFrom calldata permit,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _executePermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _settle(
            permit,
            permit.permitted.amount,
            owner,
            witness.to,
            witness.validAfter,
            _hashWitness(witness),
            WITNESS_TYPE_STRING,
            signature
        );
        emit SettledWithPermit();
    }

    function _hashWitness(Witness calldata witness) private pure returns (bytes32) {
        return keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.validAfter));
    }
}
