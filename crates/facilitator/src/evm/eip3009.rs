//! The chain stage of EIP-3009 payments: nonce state and balance, the settlement call, finding
//! an earlier settlement, and explaining a revert.

use alloy::primitives::{B256, Bytes};
use alloy::providers::Provider as _;
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall as _, SolEvent as _};
use obol_x402::wire::VerifyRequest;

use super::contracts::IEip3009;
use super::{CallFailure, ChainRuntime, call_failure, rpc};
use crate::FacilitatorError;
use crate::checks::{Payment, SignerCheck, Transfer};
use crate::reason::{Invalid, Reason};

/// How far back [`landed`] looks for an authorization's use: about 5.5 hours of Base blocks,
/// far more than any `maxTimeoutSeconds` an authorization is signed for.
pub(super) const LANDED_LOOKBACK_BLOCKS: u64 = 10_000;

/// The transaction that already used this very authorization: `AuthorizationUsed(payer,
/// nonce)` within the last [`LANDED_LOOKBACK_BLOCKS`], in a successful transaction whose
/// `Transfer` moved the amount from the payer to the payee. A facilitator that settled it
/// before a restart forgot it; the chain did not.
pub(super) async fn landed(
    chain: &ChainRuntime,
    payment: &Payment,
) -> Result<Option<B256>, FacilitatorError> {
    let provider = chain.client.provider();
    let failed = |e: &dyn std::fmt::Display| rpc(payment, e.to_string());
    let latest = provider.get_block_number().await.map_err(|e| failed(&e))?;
    let filter = Filter::new()
        .address(payment.asset)
        .event_signature(IEip3009::AuthorizationUsed::SIGNATURE_HASH)
        .topic1(payment.payer.into_word())
        .topic2(payment.nonce)
        .from_block(latest.saturating_sub(LANDED_LOOKBACK_BLOCKS));
    let logs = provider.get_logs(&filter).await.map_err(|e| failed(&e))?;
    let Some(hash) = logs.iter().find_map(|log| log.transaction_hash) else {
        return Ok(None);
    };
    let Some(receipt) = provider
        .get_transaction_receipt(hash)
        .await
        .map_err(|e| failed(&e))?
    else {
        return Ok(None);
    };
    let paid = receipt.status()
        && receipt.inner.logs().iter().any(|log| {
            log.address() == payment.asset
                && log
                    .log_decode::<IEip3009::Transfer>()
                    .is_ok_and(|transfer| {
                        let transfer = transfer.inner.data;
                        transfer.from == payment.payer
                            && transfer.to == payment.pay_to
                            && transfer.value == payment.amount
                    })
        });
    Ok(paid.then_some(hash))
}

/// Whether the chain (its latest block, not a mempool) has the authorization's nonce used.
pub(super) async fn used_on_chain(
    chain: &ChainRuntime,
    payment: &Payment,
) -> Result<bool, FacilitatorError> {
    IEip3009::new(payment.asset, chain.client.provider())
        .authorizationState(payment.payer, payment.nonce)
        .call()
        .await
        .map_err(|e| rpc(payment, e.to_string()))
}

/// The nonce state and the balance: `Ok(Err(_))` for an invalid payment, `Err(_)` when the
/// chain could not be asked.
pub(super) async fn reads(
    chain: &ChainRuntime,
    payment: &Payment,
) -> Result<Result<(), Invalid>, FacilitatorError> {
    let provider = chain.client.provider();
    let token = IEip3009::new(payment.asset, provider);
    let state_call = token.authorizationState(payment.payer, payment.nonce);
    let balance_call = token.balanceOf(payment.payer);
    let (state, balance) = tokio::join!(state_call.call(), balance_call.call());
    match state {
        Ok(true) => {
            return Ok(Err(Invalid::new(
                Reason::NonceAlreadyUsed,
                format!(
                    "authorization nonce {} of {} was already used or canceled",
                    payment.nonce, payment.payer
                ),
            )));
        }
        Ok(false) => {}
        Err(e) => {
            return match call_failure(&e) {
                CallFailure::Infra(message) => Err(rpc(payment, message)),
                CallFailure::Reverted(message) => Ok(Err(Invalid::new(
                    Reason::Eip3009NotSupported,
                    format!(
                        "asset {} does not implement EIP-3009 authorizationState: {message}",
                        payment.asset
                    ),
                ))),
            };
        }
    }
    match balance {
        Ok(balance) if balance < payment.amount => {
            return Ok(Err(Invalid::new(
                Reason::InsufficientBalance,
                format!(
                    "{} holds {balance}, less than the {} required",
                    payment.payer, payment.amount
                ),
            )));
        }
        Ok(_) => {}
        Err(e) => {
            if let CallFailure::Infra(message) = call_failure(&e) {
                return Err(rpc(payment, message));
            }
        }
    }

    Ok(Ok(()))
}

/// The `transferWithAuthorization` call: the `(v, r, s)` overload for EOA signatures, the
/// `bytes` overload (ERC-1271) otherwise.
pub(super) fn settlement_tx(payment: &Payment) -> TransactionRequest {
    let Transfer::Eip3009(auth) = &payment.transfer else {
        return TransactionRequest::default();
    };
    let signature = &payment.signature;
    let input: Vec<u8> = if payment.signer == SignerCheck::Eoa && signature.len() == 65 {
        IEip3009::transferWithAuthorization_0Call {
            from: auth.from,
            to: auth.to,
            value: auth.value.get(),
            validAfter: auth.valid_after.get(),
            validBefore: auth.valid_before.get(),
            nonce: auth.nonce,
            v: signature[64],
            r: B256::from_slice(&signature[..32]),
            s: B256::from_slice(&signature[32..64]),
        }
        .abi_encode()
    } else {
        IEip3009::transferWithAuthorization_1Call {
            from: auth.from,
            to: auth.to,
            value: auth.value.get(),
            validAfter: auth.valid_after.get(),
            validBefore: auth.valid_before.get(),
            nonce: auth.nonce,
            signature: signature.clone(),
        }
        .abi_encode()
    };
    TransactionRequest::default()
        .to(payment.asset)
        .input(Bytes::from(input).into())
}

/// Turns a revert message into a reason, reading the token's EIP-712 name and version when the
/// message alone does not tell.
pub(super) async fn diagnose(
    chain: &ChainRuntime,
    payment: &Payment,
    request: &VerifyRequest,
    message: &str,
) -> Result<Invalid, FacilitatorError> {
    let lower = message.to_ascii_lowercase();
    let by_message = [
        ("used or canceled", Reason::NonceAlreadyUsed),
        ("not yet valid", Reason::ValidAfter),
        ("authorization is expired", Reason::ValidBefore),
        ("invalid signature", Reason::Signature),
        ("ecrecover", Reason::Signature),
        // ERC20InsufficientBalance(address,uint256,uint256)
        ("e450d38c", Reason::InsufficientBalance),
        ("exceeds balance", Reason::InsufficientBalance),
    ];
    if let Some((_, reason)) = by_message.iter().find(|(needle, _)| lower.contains(needle)) {
        // A signature failure is often a wrong domain: say which part differs, if any does.
        if *reason != Reason::Signature {
            return Ok(Invalid::new(
                *reason,
                format!("simulation reverted: {message}"),
            ));
        }
    }
    let requirements = request.requirements_v2();
    if let Ok((name, version)) = requirements.eip712_domain() {
        let token = IEip3009::new(payment.asset, chain.client.provider());
        let (name_call, version_call) = (token.name(), token.version());
        let (on_chain_name, on_chain_version) = tokio::join!(name_call.call(), version_call.call());
        if let Ok(actual) = on_chain_name
            && actual != name
        {
            return Ok(Invalid::new(
                Reason::TokenNameMismatch,
                format!("extra.name is {name:?} but the token's EIP-712 name is {actual:?}"),
            ));
        }
        if let Ok(actual) = on_chain_version
            && actual != version
        {
            return Ok(Invalid::new(
                Reason::TokenVersionMismatch,
                format!(
                    "extra.version is {version:?} but the token's EIP-712 version is {actual:?}"
                ),
            ));
        }
    }
    let reason = if lower.contains("invalid signature") || lower.contains("ecrecover") {
        Reason::Signature
    } else {
        Reason::SimulationFailed
    };
    Ok(Invalid::new(
        reason,
        format!("simulation reverted: {message}"),
    ))
}
