// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {x402BasePermit2Proxy} from "./base/x402BasePermit2Proxy.sol";
import {ISignatureTransfer} from "./interfaces/ISignatureTransfer.sol";

/// @title x402UptoPermit2Proxy (devnet, constructor-free)
/// @notice x402 `upto` payments through Permit2: the payer signs a ceiling
///         (`permit.permitted.amount`); the facilitator the payer named in the witness settles
///         any amount from 1 up to that ceiling, to `witness.to`, once.
/// @dev Same external ABI as the official x402UptoPermit2Proxy (canonical address
///      0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002). No constructor, no storage setup.
contract x402UptoPermit2Proxy is x402BasePermit2Proxy {
    /// @notice Remainder of the Permit2 witness type string (appended to Permit2's stub).
    /// @dev Referenced struct types are in alphabetical order (TokenPermissions < Witness).
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";

    /// @notice keccak256("Witness(address to,address facilitator,uint256 validAfter)")
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    /// @notice msg.sender is not the facilitator the payer named in the witness.
    error UnauthorizedFacilitator();

    /// @notice The settlement amount is above the ceiling the payer signed.
    error AmountExceedsPermitted();

    /// @notice What the payer signs on top of the Permit2 permit.
    /// @param to Destination of the funds
    /// @param facilitator The only address allowed to settle (it chooses the amount)
    /// @param validAfter Earliest settlement time (the upper bound is Permit2's deadline)
    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    /// @notice Settles `amount` (at most the permitted ceiling) when the payer has already
    ///         approved Permit2 on the token.
    function settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _checkUpto(permit, amount, witness);
        _pull(permit, amount, owner, witness, signature);
        emit Settled();
    }

    /// @notice Applies the payer's EIP-2612 permit (token approval of Permit2 for exactly the
    ///         permitted ceiling), then settles `amount` as `settle` does. Succeeds even if the
    ///         permit call fails, provided an allowance already exists.
    function settleWithPermit(
        EIP2612Permit calldata permit2612,
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external nonReentrant {
        _checkUpto(permit, amount, witness);
        _executePermit(permit.permitted.token, owner, permit2612, permit.permitted.amount);
        _pull(permit, amount, owner, witness, signature);
        emit SettledWithPermit();
    }

    /// @dev The upto rules, before anything else: only the named facilitator, at most the ceiling.
    function _checkUpto(ISignatureTransfer.PermitTransferFrom calldata permit, uint256 amount, Witness calldata witness)
        private
        view
    {
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
    }

    /// @dev The base rules and Permit2's, moving exactly `amount` from `owner` to `witness.to`.
    function _pull(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) private {
        _settle(
            permit,
            amount,
            owner,
            witness.to,
            witness.validAfter,
            _hashWitness(witness),
            WITNESS_TYPE_STRING,
            signature
        );
    }

    function _hashWitness(Witness calldata witness) private pure returns (bytes32) {
        return keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter));
    }
}
