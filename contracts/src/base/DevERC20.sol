// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

/// @title DevERC20
/// @notice Minimal, constructor-free ERC-20 core shared by the devnet test tokens.
/// @dev Nothing here is set at deploy time: name/symbol/decimals come from pure
///      overrides, and the only privileged role (the minter) is set once through
///      `initialize(address)`. That lets the devnet harness drop the runtime
///      bytecode at a fixed address with `anvil_setCode` and then call
///      `initialize`. Errors follow OpenZeppelin 5.x (ERC-6093) so that revert
///      data such as `ERC20InsufficientBalance` is recognised by x402 clients.
abstract contract DevERC20 is IERC20Errors {
    mapping(address account => uint256) private _balances;
    mapping(address account => mapping(address spender => uint256)) private _allowances;
    uint256 private _totalSupply;
    address private _minter;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    /// @notice Emitted once, when `initialize` sets the minter.
    event MinterInitialized(address indexed minter);

    /// @notice `initialize` was called a second time.
    error AlreadyInitialized();
    /// @notice `initialize` was given the zero address.
    error InvalidMinter();
    /// @notice `mint` was called by someone other than the minter.
    error UnauthorizedMinter(address caller);

    // ------------------------------------------------------------------ setup

    /// @notice One-time setup: records the address allowed to mint.
    /// @dev Reverts with `AlreadyInitialized` once a minter is set.
    function initialize(address minter_) external {
        if (_minter != address(0)) revert AlreadyInitialized();
        if (minter_ == address(0)) revert InvalidMinter();
        _minter = minter_;
        emit MinterInitialized(minter_);
    }

    /// @notice The address allowed to mint; zero until `initialize` runs.
    function minter() external view returns (address) {
        return _minter;
    }

    /// @notice Creates `amount` new tokens for `to`. Minter only.
    function mint(address to, uint256 amount) external {
        if (msg.sender != _minter) revert UnauthorizedMinter(msg.sender);
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        _totalSupply += amount;
        unchecked {
            _balances[to] += amount; // cannot overflow: bounded by _totalSupply
        }
        emit Transfer(address(0), to, amount);
    }

    // ---------------------------------------------------------------- ERC-20

    function name() public pure virtual returns (string memory);

    function symbol() public pure virtual returns (string memory);

    function decimals() public pure virtual returns (uint8);

    function totalSupply() external view returns (uint256) {
        return _totalSupply;
    }

    function balanceOf(address account) public view returns (uint256) {
        return _balances[account];
    }

    function allowance(address owner, address spender) public view returns (uint256) {
        return _allowances[owner][spender];
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        _approve(msg.sender, spender, value, true);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        _spendAllowance(from, msg.sender, value);
        _transfer(from, to, value);
        return true;
    }

    // --------------------------------------------------------------- internal

    function _transfer(address from, address to, uint256 value) internal {
        if (from == address(0)) revert ERC20InvalidSender(address(0));
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        uint256 fromBalance = _balances[from];
        if (fromBalance < value) revert ERC20InsufficientBalance(from, fromBalance, value);
        unchecked {
            _balances[from] = fromBalance - value;
            _balances[to] += value; // cannot overflow: bounded by _totalSupply
        }
        emit Transfer(from, to, value);
    }

    function _approve(address owner, address spender, uint256 value, bool emitEvent) internal {
        if (owner == address(0)) revert ERC20InvalidApprover(address(0));
        if (spender == address(0)) revert ERC20InvalidSpender(address(0));
        _allowances[owner][spender] = value;
        if (emitEvent) emit Approval(owner, spender, value);
    }

    /// @dev An allowance of type(uint256).max is treated as infinite (never decreased).
    function _spendAllowance(address owner, address spender, uint256 value) internal {
        uint256 current = _allowances[owner][spender];
        if (current != type(uint256).max) {
            if (current < value) revert ERC20InsufficientAllowance(spender, current, value);
            unchecked {
                _approve(owner, spender, current - value, false);
            }
        }
    }

    /// @dev EIP-712 domain separator with name and version, computed on every call
    ///      from the current chain id and this contract's address (no cached value).
    function _domainSeparatorV4(bytes32 nameHash, bytes32 versionHash) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                nameHash,
                versionHash,
                block.chainid,
                address(this)
            )
        );
    }
}
