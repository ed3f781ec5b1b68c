// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {ISignatureTransfer} from "../interfaces/ISignatureTransfer.sol";

/// @title x402BasePermit2Proxy (devnet, constructor-free)
/// @notice Shared logic of the x402 Permit2 proxies: the proxy is the Permit2 `spender`
///         and the payer's signature covers a witness that fixes the destination.
/// @dev Same external interface as the official x402BasePermit2Proxy (events, errors,
///      EIP2612Permit struct, PERMIT2 getter). Differences, all for constructor-free
///      placement with `anvil_setCode`: PERMIT2 is a constant (the canonical Permit2
///      address) instead of a constructor-set immutable, and the reentrancy guard uses
///      transient storage (EIP-1153, as the official contract does), which needs no setup.
abstract contract x402BasePermit2Proxy is ReentrancyGuardTransient {
    /// @notice The canonical Permit2 contract (same address on every EVM chain).
    ISignatureTransfer public constant PERMIT2 = ISignatureTransfer(0x000000000022D473030F116dDEE9F6B43aC78BA3);

    /// @notice Emitted when settle() completes.
    event Settled();

    /// @notice Emitted when settleWithPermit() completes.
    event SettledWithPermit();

    /// @notice The token's EIP-2612 permit() reverted with Error(string).
    event EIP2612PermitFailedWithReason(address indexed token, address indexed owner, string reason);

    /// @notice The token's EIP-2612 permit() reverted with Panic(uint256).
    event EIP2612PermitFailedWithPanic(address indexed token, address indexed owner, uint256 errorCode);

    /// @notice The token's EIP-2612 permit() reverted with a custom error or no data.
    event EIP2612PermitFailedWithData(address indexed token, address indexed owner, bytes data);

    /// @notice Part of the official interface (constructor check); never raised here
    ///         because PERMIT2 is a non-zero constant.
    error InvalidPermit2Address();

    /// @notice The witness destination is the zero address.
    error InvalidDestination();

    /// @notice block.timestamp is before witness.validAfter.
    error PaymentTooEarly();

    /// @notice The owner (payer) is the zero address.
    error InvalidOwner();

    /// @notice The settlement amount is zero.
    error InvalidAmount();

    /// @notice permit2612.value differs from the Permit2 permitted amount.
    error Permit2612AmountMismatch();

    /// @notice EIP-2612 permit parameters (grouped to keep the stack small).
    struct EIP2612Permit {
        uint256 value;
        uint256 deadline;
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    /// @dev Checks the common rules, then pulls `settlementAmount` from `owner` to `to`
    ///      through Permit2 with this contract as spender.
    function _settle(
        ISignatureTransfer.PermitTransferFrom calldata permit,
        uint256 settlementAmount,
        address owner,
        address to,
        uint256 validAfter,
        bytes32 witnessHash,
        string memory witnessTypeString,
        bytes calldata signature
    ) internal {
        if (settlementAmount == 0) revert InvalidAmount();
        if (owner == address(0)) revert InvalidOwner();
        if (to == address(0)) revert InvalidDestination();
        if (block.timestamp < validAfter) revert PaymentTooEarly();

        PERMIT2.permitWitnessTransferFrom(
            permit,
            ISignatureTransfer.SignatureTransferDetails({to: to, requestedAmount: settlementAmount}),
            owner,
            witnessHash,
            witnessTypeString,
            signature
        );
    }

    /// @dev Requires permit2612.value == permittedAmount, then tries the token's EIP-2612
    ///      permit(owner, PERMIT2, ...). A failing permit (front-run, unsupported, ...) is
    ///      reported by an event and does not revert: settlement then relies on an
    ///      existing allowance.
    function _executePermit(address token, address owner, EIP2612Permit calldata permit2612, uint256 permittedAmount)
        internal
    {
        if (permit2612.value != permittedAmount) revert Permit2612AmountMismatch();

        try IERC20Permit(token).permit(
            owner, address(PERMIT2), permit2612.value, permit2612.deadline, permit2612.v, permit2612.r, permit2612.s
        ) {
            // approval granted
        } catch Error(string memory reason) {
            emit EIP2612PermitFailedWithReason(token, owner, reason);
        } catch Panic(uint256 errorCode) {
            emit EIP2612PermitFailedWithPanic(token, owner, errorCode);
        } catch (bytes memory data) {
            emit EIP2612PermitFailedWithData(token, owner, data);
        }
    }
}
