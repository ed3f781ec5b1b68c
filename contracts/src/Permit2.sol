// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ISignatureTransfer} from "./interfaces/ISignatureTransfer.sol";

interface IERC1271Wallet {
    function isValidSignature(bytes32 hash, bytes memory signature) external view returns (bytes4 magicValue);
}

/// @title Permit2 (SignatureTransfer only)
/// @notice Devnet re-implementation of Uniswap Permit2's signature-based transfers, for
///         the canonical address 0x000000000022D473030F116dDEE9F6B43aC78BA3.
/// @dev Written from the public interface; behaviour follows Permit2's SignatureTransfer:
///      - EIP-712 domain {name:"Permit2", chainId, verifyingContract} (no version),
///        recomputed on every call (constructor-free);
///      - spender = msg.sender is part of the signed struct;
///      - unordered bitmap nonces (`nonceBitmap`, `invalidateUnorderedNonces`);
///      - witness type hash = keccak256(stub ++ witnessTypeString);
///      - signatures: 65-byte (r,s,v), 64-byte EIP-2098 (r,vs), or ERC-1271 when the
///        owner has code;
///      - tokens move with the token's own `transferFrom(owner, to, amount)`, so the owner
///        must have approved this contract on the token.
///      AllowanceTransfer (approve/permit/transferFrom/lockdown on Permit2 itself) is not
///      implemented.
contract Permit2 is ISignatureTransfer {
    /// @notice The signature's deadline has passed.
    error SignatureExpired(uint256 signatureDeadline);
    /// @notice The unordered nonce was already used or invalidated.
    error InvalidNonce();
    /// @notice An EOA signature that is neither 64 nor 65 bytes.
    error InvalidSignatureLength();
    /// @notice ecrecover returned the zero address.
    error InvalidSignature();
    /// @notice The recovered signer is not the owner.
    error InvalidSigner();
    /// @notice The owner contract rejected the signature (ERC-1271).
    error InvalidContractSignature();

    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)");
    bytes32 private constant _HASHED_NAME = keccak256("Permit2");

    bytes32 private constant _TOKEN_PERMISSIONS_TYPEHASH = keccak256("TokenPermissions(address token,uint256 amount)");
    bytes32 private constant _PERMIT_TRANSFER_FROM_TYPEHASH = keccak256(
        "PermitTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline)TokenPermissions(address token,uint256 amount)"
    );
    bytes32 private constant _PERMIT_BATCH_TRANSFER_FROM_TYPEHASH = keccak256(
        "PermitBatchTransferFrom(TokenPermissions[] permitted,address spender,uint256 nonce,uint256 deadline)TokenPermissions(address token,uint256 amount)"
    );
    string private constant _PERMIT_TRANSFER_FROM_WITNESS_TYPEHASH_STUB =
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,";
    string private constant _PERMIT_BATCH_WITNESS_TRANSFER_FROM_TYPEHASH_STUB =
        "PermitBatchWitnessTransferFrom(TokenPermissions[] permitted,address spender,uint256 nonce,uint256 deadline,";

    bytes32 private constant _UPPER_BIT_MASK = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;

    /// @inheritdoc ISignatureTransfer
    mapping(address => mapping(uint256 => uint256)) public nonceBitmap;

    /// @notice EIP-712 domain separator for the current chain and address.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _HASHED_NAME, block.chainid, address(this)));
    }

    // ---------------------------------------------------------- single token

    /// @inheritdoc ISignatureTransfer
    function permitTransferFrom(
        PermitTransferFrom memory permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(
                _PERMIT_TRANSFER_FROM_TYPEHASH, _hashTokenPermissions(permit.permitted), msg.sender, permit.nonce, permit.deadline
            )
        );
        _permitTransferFrom(permit, transferDetails, owner, structHash, signature);
    }

    /// @inheritdoc ISignatureTransfer
    function permitWitnessTransferFrom(
        PermitTransferFrom memory permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external {
        bytes32 typeHash = keccak256(abi.encodePacked(_PERMIT_TRANSFER_FROM_WITNESS_TYPEHASH_STUB, witnessTypeString));
        bytes32 structHash = keccak256(
            abi.encode(typeHash, _hashTokenPermissions(permit.permitted), msg.sender, permit.nonce, permit.deadline, witness)
        );
        _permitTransferFrom(permit, transferDetails, owner, structHash, signature);
    }

    function _permitTransferFrom(
        PermitTransferFrom memory permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 structHash,
        bytes calldata signature
    ) private {
        uint256 requestedAmount = transferDetails.requestedAmount;
        if (block.timestamp > permit.deadline) revert SignatureExpired(permit.deadline);
        if (requestedAmount > permit.permitted.amount) revert InvalidAmount(permit.permitted.amount);
        _useUnorderedNonce(owner, permit.nonce);
        _verify(signature, _hashTypedData(structHash), owner);
        _safeTransferFrom(permit.permitted.token, owner, transferDetails.to, requestedAmount);
    }

    // ----------------------------------------------------------------- batch

    /// @inheritdoc ISignatureTransfer
    function permitTransferFrom(
        PermitBatchTransferFrom memory permit,
        SignatureTransferDetails[] calldata transferDetails,
        address owner,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(
                _PERMIT_BATCH_TRANSFER_FROM_TYPEHASH,
                _hashTokenPermissionsArray(permit.permitted),
                msg.sender,
                permit.nonce,
                permit.deadline
            )
        );
        _permitBatchTransferFrom(permit, transferDetails, owner, structHash, signature);
    }

    /// @inheritdoc ISignatureTransfer
    function permitWitnessTransferFrom(
        PermitBatchTransferFrom memory permit,
        SignatureTransferDetails[] calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external {
        bytes32 typeHash =
            keccak256(abi.encodePacked(_PERMIT_BATCH_WITNESS_TRANSFER_FROM_TYPEHASH_STUB, witnessTypeString));
        bytes32 structHash = keccak256(
            abi.encode(
                typeHash, _hashTokenPermissionsArray(permit.permitted), msg.sender, permit.nonce, permit.deadline, witness
            )
        );
        _permitBatchTransferFrom(permit, transferDetails, owner, structHash, signature);
    }

    function _permitBatchTransferFrom(
        PermitBatchTransferFrom memory permit,
        SignatureTransferDetails[] calldata transferDetails,
        address owner,
        bytes32 structHash,
        bytes calldata signature
    ) private {
        uint256 count = permit.permitted.length;
        if (block.timestamp > permit.deadline) revert SignatureExpired(permit.deadline);
        if (count != transferDetails.length) revert LengthMismatch();
        _useUnorderedNonce(owner, permit.nonce);
        _verify(signature, _hashTypedData(structHash), owner);
        for (uint256 i = 0; i < count; ++i) {
            TokenPermissions memory permitted = permit.permitted[i];
            uint256 requestedAmount = transferDetails[i].requestedAmount;
            if (requestedAmount > permitted.amount) revert InvalidAmount(permitted.amount);
            if (requestedAmount != 0) {
                _safeTransferFrom(permitted.token, owner, transferDetails[i].to, requestedAmount);
            }
        }
    }

    // ---------------------------------------------------------------- nonces

    /// @inheritdoc ISignatureTransfer
    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external {
        nonceBitmap[msg.sender][wordPos] |= mask;
        emit UnorderedNonceInvalidation(msg.sender, wordPos, mask);
    }

    /// @dev Bit `nonce & 0xff` of word `nonce >> 8` marks the nonce as spent.
    function _useUnorderedNonce(address from, uint256 nonce) private {
        uint256 wordPos = uint248(nonce >> 8);
        uint256 bit = 1 << uint8(nonce);
        uint256 word = nonceBitmap[from][wordPos];
        if (word & bit != 0) revert InvalidNonce();
        nonceBitmap[from][wordPos] = word | bit;
    }

    // --------------------------------------------------------------- hashing

    function _hashTypedData(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR(), structHash));
    }

    function _hashTokenPermissions(TokenPermissions memory permitted) private pure returns (bytes32) {
        return keccak256(abi.encode(_TOKEN_PERMISSIONS_TYPEHASH, permitted.token, permitted.amount));
    }

    function _hashTokenPermissionsArray(TokenPermissions[] memory permitted) private pure returns (bytes32) {
        bytes32[] memory hashes = new bytes32[](permitted.length);
        for (uint256 i = 0; i < permitted.length; ++i) {
            hashes[i] = _hashTokenPermissions(permitted[i]);
        }
        return keccak256(abi.encodePacked(hashes));
    }

    // ------------------------------------------------------------ signatures

    function _verify(bytes calldata signature, bytes32 hash, address claimedSigner) private view {
        if (claimedSigner.code.length == 0) {
            bytes32 r;
            bytes32 s;
            uint8 v;
            if (signature.length == 65) {
                r = bytes32(signature[0:32]);
                s = bytes32(signature[32:64]);
                v = uint8(signature[64]);
            } else if (signature.length == 64) {
                // EIP-2098 compact form: vs = (v - 27) << 255 | s
                r = bytes32(signature[0:32]);
                bytes32 vs = bytes32(signature[32:64]);
                s = vs & _UPPER_BIT_MASK;
                v = uint8(uint256(vs >> 255)) + 27;
            } else {
                revert InvalidSignatureLength();
            }
            address signer = ecrecover(hash, v, r, s);
            if (signer == address(0)) revert InvalidSignature();
            if (signer != claimedSigner) revert InvalidSigner();
        } else {
            bytes4 magicValue = IERC1271Wallet(claimedSigner).isValidSignature(hash, signature);
            if (magicValue != IERC1271Wallet.isValidSignature.selector) revert InvalidContractSignature();
        }
    }

    // ---------------------------------------------------------------- tokens

    /// @dev Like solmate's SafeTransferLib: accepts tokens that return nothing or `true`;
    ///      any revert or `false` becomes "TRANSFER_FROM_FAILED".
    function _safeTransferFrom(address token, address from, address to, uint256 amount) private {
        (bool success, bytes memory data) = token.call(abi.encodeWithSelector(0x23b872dd, from, to, amount));
        require(
            success && (data.length == 0 || (data.length >= 32 && abi.decode(data, (uint256)) == 1)),
            "TRANSFER_FROM_FAILED"
        );
    }
}
