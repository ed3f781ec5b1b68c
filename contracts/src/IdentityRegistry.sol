// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {ERC721Utils} from "@openzeppelin/contracts/token/ERC721/utils/ERC721Utils.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @title IdentityRegistry (ERC-8004, devnet, constructor-free)
/// @notice ERC-8004 Identity Registry: every agent is an ERC-721 token ("AgentIdentity",
///         "AGENT"); tokenURI is the agentURI; agents carry key/value metadata and a
///         verified payment wallet (reserved metadata key "agentWallet").
/// @dev Written from the public interface of the reference IdentityRegistryUpgradeable
///      (getVersion() "2.0.0"): same functions, events, revert strings and EIP-712
///      AgentWalletSet signature. Differences: it is not a UUPS proxy and has no owner
///      (no initialize/upgradeToAndCall/owner functions), because nothing needs setting
///      up: name, symbol and the EIP-712 domain {name:"ERC8004IdentityRegistry",
///      version:"1"} are constants and the domain separator is recomputed per call.
///      Agent ids start at 0.
contract IdentityRegistry is IERC721Errors {
    struct MetadataEntry {
        string metadataKey;
        bytes metadataValue;
    }

    // ---------------------------------------------------------------- events

    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
    event Approval(address indexed owner, address indexed approved, uint256 indexed tokenId);
    event ApprovalForAll(address indexed owner, address indexed operator, bool approved);
    /// @notice ERC-4906: emitted whenever an agentURI is written.
    event MetadataUpdate(uint256 _tokenId);
    /// @notice ERC-4906; declared for interface completeness, never emitted.
    event BatchMetadataUpdate(uint256 _fromTokenId, uint256 _toTokenId);
    /// @notice ERC-5267; declared for interface completeness, never emitted.
    event EIP712DomainChanged();

    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    event MetadataSet(
        uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue
    );
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);

    // ------------------------------------------------------------- constants

    bytes32 private constant AGENT_WALLET_SET_TYPEHASH =
        keccak256("AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)");
    uint256 private constant MAX_DEADLINE_DELAY = 5 minutes;
    string private constant AGENT_WALLET_KEY = "agentWallet";
    bytes32 private constant RESERVED_AGENT_WALLET_KEY_HASH = keccak256("agentWallet");
    bytes32 private constant HASHED_NAME = keccak256("ERC8004IdentityRegistry");
    bytes32 private constant HASHED_VERSION = keccak256("1");

    // --------------------------------------------------------------- storage

    uint256 private _lastId;
    mapping(uint256 tokenId => address) private _owners;
    mapping(address owner => uint256) private _balances;
    mapping(uint256 tokenId => address) private _tokenApprovals;
    mapping(address owner => mapping(address operator => bool)) private _operatorApprovals;
    mapping(uint256 tokenId => string) private _tokenURIs;
    mapping(uint256 agentId => mapping(string metadataKey => bytes metadataValue)) private _metadata;

    // ---------------------------------------------------------- registration

    function register() external returns (uint256 agentId) {
        agentId = _lastId++;
        _safeMint(msg.sender, agentId);
        emit Registered(agentId, "", msg.sender);
        _writeMetadata(agentId, AGENT_WALLET_KEY, abi.encodePacked(msg.sender));
    }

    function register(string memory agentURI) external returns (uint256 agentId) {
        agentId = _lastId++;
        _safeMint(msg.sender, agentId);
        _setTokenURI(agentId, agentURI);
        emit Registered(agentId, agentURI, msg.sender);
        _writeMetadata(agentId, AGENT_WALLET_KEY, abi.encodePacked(msg.sender));
    }

    function register(string memory agentURI, MetadataEntry[] memory metadata) external returns (uint256 agentId) {
        agentId = _lastId++;
        _safeMint(msg.sender, agentId);
        _setTokenURI(agentId, agentURI);
        emit Registered(agentId, agentURI, msg.sender);
        _writeMetadata(agentId, AGENT_WALLET_KEY, abi.encodePacked(msg.sender));
        for (uint256 i = 0; i < metadata.length; ++i) {
            require(keccak256(bytes(metadata[i].metadataKey)) != RESERVED_AGENT_WALLET_KEY_HASH, "reserved key");
            _writeMetadata(agentId, metadata[i].metadataKey, metadata[i].metadataValue);
        }
    }

    // ------------------------------------------------------------- agentURI

    function setAgentURI(uint256 agentId, string calldata newURI) external {
        address owner = ownerOf(agentId);
        require(_isAuthorized(owner, msg.sender, agentId), "Not authorized");
        _setTokenURI(agentId, newURI);
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    /// @notice The agentURI (ERC-721 metadata URI). Reverts for an unknown agent.
    function tokenURI(uint256 tokenId) external view returns (string memory) {
        _requireOwned(tokenId);
        return _tokenURIs[tokenId];
    }

    // -------------------------------------------------------------- metadata

    function getMetadata(uint256 agentId, string memory metadataKey) external view returns (bytes memory) {
        return _metadata[agentId][metadataKey];
    }

    function setMetadata(uint256 agentId, string memory metadataKey, bytes memory metadataValue) external {
        require(_isAuthorized(_owners[agentId], msg.sender, agentId), "Not authorized");
        require(keccak256(bytes(metadataKey)) != RESERVED_AGENT_WALLET_KEY_HASH, "reserved key");
        _writeMetadata(agentId, metadataKey, metadataValue);
    }

    // ----------------------------------------------------------- agentWallet

    /// @notice The verified payment wallet, or the zero address when unset.
    function getAgentWallet(uint256 agentId) external view returns (address) {
        bytes memory stored = _metadata[agentId][AGENT_WALLET_KEY];
        if (stored.length < 20) return address(0);
        return address(bytes20(stored));
    }

    /// @notice Sets the agent's wallet. The new wallet proves control by signing the EIP-712
    ///         message AgentWalletSet(agentId, newWallet, owner, deadline) (ECDSA, or ERC-1271
    ///         for contract wallets); the owner, an operator or the approved address sends it.
    function setAgentWallet(uint256 agentId, address newWallet, uint256 deadline, bytes calldata signature) external {
        address owner = ownerOf(agentId);
        require(_isAuthorized(owner, msg.sender, agentId), "Not authorized");
        require(newWallet != address(0), "bad wallet");
        require(block.timestamp <= deadline, "expired");
        require(deadline <= block.timestamp + MAX_DEADLINE_DELAY, "deadline too far");

        bytes32 digest = keccak256(
            abi.encodePacked(
                hex"1901",
                _domainSeparator(),
                keccak256(abi.encode(AGENT_WALLET_SET_TYPEHASH, agentId, newWallet, owner, deadline))
            )
        );
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || recovered != newWallet) {
            require(SignatureChecker.isValidERC1271SignatureNow(newWallet, digest, signature), "invalid wallet sig");
        }
        _writeMetadata(agentId, AGENT_WALLET_KEY, abi.encodePacked(newWallet));
    }

    function unsetAgentWallet(uint256 agentId) external {
        address owner = ownerOf(agentId);
        require(_isAuthorized(owner, msg.sender, agentId), "Not authorized");
        _writeMetadata(agentId, AGENT_WALLET_KEY, "");
    }

    /// @notice True if `spender` is the owner, an operator of the owner, or the approved
    ///         address of `agentId`. Reverts for an unknown agent.
    function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool) {
        address owner = ownerOf(agentId);
        return _isAuthorized(owner, spender, agentId);
    }

    function getVersion() external pure returns (string memory) {
        return "2.0.0";
    }

    // --------------------------------------------------------------- EIP-712

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
        return (hex"0f", "ERC8004IdentityRegistry", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    function _domainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                HASHED_NAME,
                HASHED_VERSION,
                block.chainid,
                address(this)
            )
        );
    }

    // ---------------------------------------------------------------- ERC-721

    function name() external pure returns (string memory) {
        return "AgentIdentity";
    }

    function symbol() external pure returns (string memory) {
        return "AGENT";
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 // ERC-165
            || interfaceId == 0x80ac58cd // ERC-721
            || interfaceId == 0x5b5e139f // ERC-721 Metadata
            || interfaceId == 0x49064906; // ERC-4906
    }

    function balanceOf(address owner) external view returns (uint256) {
        if (owner == address(0)) revert ERC721InvalidOwner(address(0));
        return _balances[owner];
    }

    function ownerOf(uint256 tokenId) public view returns (address) {
        return _requireOwned(tokenId);
    }

    function approve(address to, uint256 tokenId) external {
        address owner = _requireOwned(tokenId);
        if (msg.sender != owner && !_operatorApprovals[owner][msg.sender]) revert ERC721InvalidApprover(msg.sender);
        _tokenApprovals[tokenId] = to;
        emit Approval(owner, to, tokenId);
    }

    function getApproved(uint256 tokenId) public view returns (address) {
        _requireOwned(tokenId);
        return _tokenApprovals[tokenId];
    }

    function setApprovalForAll(address operator, bool approved) external {
        if (operator == address(0)) revert ERC721InvalidOperator(operator);
        _operatorApprovals[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function isApprovedForAll(address owner, address operator) public view returns (bool) {
        return _operatorApprovals[owner][operator];
    }

    function transferFrom(address from, address to, uint256 tokenId) public {
        if (to == address(0)) revert ERC721InvalidReceiver(address(0));
        address previousOwner = _update(to, tokenId, msg.sender);
        if (previousOwner != from) revert ERC721IncorrectOwner(from, tokenId, previousOwner);
    }

    function safeTransferFrom(address from, address to, uint256 tokenId) external {
        safeTransferFrom(from, to, tokenId, "");
    }

    function safeTransferFrom(address from, address to, uint256 tokenId, bytes memory data) public {
        transferFrom(from, to, tokenId);
        ERC721Utils.checkOnERC721Received(msg.sender, from, to, tokenId, data);
    }

    // ---------------------------------------------------------------- internal

    function _requireOwned(uint256 tokenId) private view returns (address owner) {
        owner = _owners[tokenId];
        if (owner == address(0)) revert ERC721NonexistentToken(tokenId);
    }

    function _isAuthorized(address owner, address spender, uint256 tokenId) private view returns (bool) {
        return spender != address(0)
            && (owner == spender || _operatorApprovals[owner][spender] || _tokenApprovals[tokenId] == spender);
    }

    /// @dev Moves/mints `tokenId` to `to`. If `auth` is non-zero it must be allowed to move
    ///      the token. A transfer between two holders clears the agentWallet first.
    function _update(address to, uint256 tokenId, address auth) private returns (address from) {
        from = _owners[tokenId];
        if (auth != address(0) && !_isAuthorized(from, auth, tokenId)) {
            if (from == address(0)) revert ERC721NonexistentToken(tokenId);
            revert ERC721InsufficientApproval(auth, tokenId);
        }
        if (from != address(0) && to != address(0)) {
            _writeMetadata(tokenId, AGENT_WALLET_KEY, "");
        }
        if (from != address(0)) {
            delete _tokenApprovals[tokenId];
            unchecked {
                _balances[from] -= 1;
            }
        }
        if (to != address(0)) {
            unchecked {
                _balances[to] += 1;
            }
        }
        _owners[tokenId] = to;
        emit Transfer(from, to, tokenId);
    }

    function _safeMint(address to, uint256 tokenId) private {
        if (to == address(0)) revert ERC721InvalidReceiver(address(0));
        address previousOwner = _update(to, tokenId, address(0));
        if (previousOwner != address(0)) revert ERC721InvalidSender(address(0));
        ERC721Utils.checkOnERC721Received(msg.sender, address(0), to, tokenId, "");
    }

    function _setTokenURI(uint256 tokenId, string memory uri) private {
        _tokenURIs[tokenId] = uri;
        emit MetadataUpdate(tokenId);
    }

    function _writeMetadata(uint256 agentId, string memory key, bytes memory value) private {
        _metadata[agentId][key] = value;
        emit MetadataSet(agentId, key, key, value);
    }
}
