//! The chain stage of Permit2 payments (`exact` and `upto`): nonce bitmap, balance and allowance
//! (or an EIP-2612 sponsoring permit), the proxy call, and explaining a revert.

use alloy::primitives::{Bytes, U256};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::{SolCall as _, SolError};
use obol_x402::token::PERMIT2;

use super::contracts::{
    EIP2612Permit, ExactWitness, IErc20, IPermit2, IX402ExactPermit2Proxy as Proxy,
    IX402UptoPermit2Proxy as Upto, PermitTransferFrom, TokenPermissions, UptoWitness,
};
use super::{CallFailure, ChainRuntime, call_failure, rpc};
use crate::FacilitatorError;
use crate::checks::{Payment, Transfer};
use crate::reason::{Invalid, Reason};

/// The nonce bitmap, the balance and the allowance (or an EIP-2612 sponsoring permit):
/// `Ok(Err(_))` for an invalid payment, `Err(_)` when the chain could not be asked.
pub(super) async fn reads(
    chain: &ChainRuntime,
    payment: &Payment,
) -> Result<Result<(), Invalid>, FacilitatorError> {
    let Transfer::Permit2 {
        authorization,
        sponsor,
    } = &payment.transfer
    else {
        return Ok(Ok(()));
    };
    let provider = chain.client.provider();
    let token = IErc20::new(payment.asset, provider);
    let permit2 = IPermit2::new(PERMIT2, provider);
    let nonce = authorization.nonce;
    let (word, bit) = (nonce >> 8, nonce & U256::from(0xff));
    let (bitmap_call, balance_call, allowance_call) = (
        permit2.nonceBitmap(payment.payer, word),
        token.balanceOf(payment.payer),
        token.allowance(payment.payer, PERMIT2),
    );
    let (bitmap, balance, allowance) = tokio::join!(
        bitmap_call.call(),
        balance_call.call(),
        allowance_call.call()
    );
    let read = |result: Result<U256, alloy::contract::Error>, what: &str| match result {
        Ok(value) => Ok(Ok(value)),
        Err(e) => match call_failure(&e) {
            CallFailure::Infra(message) => Err(rpc(payment, message)),
            CallFailure::Reverted(message) => Ok(Err(Invalid::new(
                Reason::Permit2SimulationFailed,
                format!("cannot read {what}: {message}"),
            ))),
        },
    };
    let bitmap = match read(bitmap, "the Permit2 nonce bitmap")? {
        Ok(value) => value,
        Err(invalid) => return Ok(Err(invalid)),
    };
    if bitmap & (U256::from(1) << bit) != U256::ZERO {
        return Ok(Err(Invalid::new(
            Reason::Permit2InvalidNonce,
            format!(
                "Permit2 nonce {nonce} of {} was already used",
                payment.payer
            ),
        )));
    }
    let balance = match read(balance, "the token balance")? {
        Ok(value) => value,
        Err(invalid) => return Ok(Err(invalid)),
    };
    if balance < payment.amount {
        return Ok(Err(Invalid::new(
            Reason::Permit2InsufficientBalance,
            format!(
                "{} holds {balance}, less than the {} required",
                payment.payer, payment.amount
            ),
        )));
    }
    let allowance = match read(allowance, "the Permit2 allowance")? {
        Ok(value) => value,
        Err(invalid) => return Ok(Err(invalid)),
    };
    if allowance < payment.amount && sponsor.is_none() {
        return Ok(Err(Invalid::new(
            Reason::Permit2AllowanceRequired,
            format!(
                "{} has approved Permit2 for {allowance}, less than {}; approve Permit2 on the token or attach an eip2612GasSponsoring permit",
                payment.payer, payment.amount
            ),
        )));
    }

    Ok(Ok(()))
}

/// The proxy call: `settleWithPermit` when an EIP-2612 permit is attached, else `settle`; the
/// upto proxy's forms also carry the amount to move (the payment's, at most the ceiling).
pub(super) fn settlement_tx(payment: &Payment) -> TransactionRequest {
    let Transfer::Permit2 {
        authorization: parts,
        sponsor,
    } = &payment.transfer
    else {
        return TransactionRequest::default();
    };
    let signature = payment.signature.clone();
    let owner = payment.payer;
    let permit = PermitTransferFrom {
        permitted: TokenPermissions {
            token: parts.token,
            amount: parts.permitted,
        },
        nonce: parts.nonce,
        deadline: parts.deadline,
    };
    let permit2612 = sponsor.as_ref().map(|p| EIP2612Permit {
        value: p.value,
        deadline: p.deadline,
        r: p.r,
        s: p.s,
        v: p.v,
    });
    let input = match parts.facilitator {
        None => {
            let witness = ExactWitness {
                to: parts.to,
                validAfter: parts.valid_after,
            };
            match permit2612 {
                Some(permit2612) => Proxy::settleWithPermitCall {
                    permit2612,
                    permit,
                    owner,
                    witness,
                    signature,
                }
                .abi_encode(),
                None => Proxy::settleCall {
                    permit,
                    owner,
                    witness,
                    signature,
                }
                .abi_encode(),
            }
        }
        Some(facilitator) => {
            let witness = UptoWitness {
                to: parts.to,
                facilitator,
                validAfter: parts.valid_after,
            };
            let amount = payment.amount;
            match permit2612 {
                Some(permit2612) => Upto::settleWithPermitCall {
                    permit2612,
                    permit,
                    amount,
                    owner,
                    witness,
                    signature,
                }
                .abi_encode(),
                None => Upto::settleCall {
                    permit,
                    amount,
                    owner,
                    witness,
                    signature,
                }
                .abi_encode(),
            }
        }
    };
    TransactionRequest::default()
        .to(parts.proxy())
        .input(Bytes::from(input).into())
}

/// Maps the proxy's and Permit2's revert data (or message) to a reason.
pub(super) fn diagnose(revert: &[u8], message: &str) -> Invalid {
    let selector: [u8; 4] = revert
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_default();
    let reason = match selector {
        s if s == IPermit2::InvalidNonce::SELECTOR => Reason::Permit2InvalidNonce,
        s if s == IPermit2::SignatureExpired::SELECTOR => Reason::Permit2DeadlineExpired,
        s if s == IPermit2::InvalidSignature::SELECTOR
            || s == IPermit2::InvalidSigner::SELECTOR
            || s == IPermit2::InvalidSignatureLength::SELECTOR
            || s == IPermit2::InvalidContractSignature::SELECTOR =>
        {
            Reason::Permit2Signature
        }
        s if s == Proxy::PaymentTooEarly::SELECTOR => Reason::Permit2NotYetValid,
        s if s == Proxy::Permit2612AmountMismatch::SELECTOR => Reason::Permit2612AmountMismatch,
        s if s == Proxy::InvalidAmount::SELECTOR => Reason::Permit2AmountMismatch,
        s if s == Proxy::InvalidDestination::SELECTOR => Reason::Permit2RecipientMismatch,
        s if s == Upto::AmountExceedsPermitted::SELECTOR => Reason::UptoSettlementExceedsAmount,
        s if s == Upto::UnauthorizedFacilitator::SELECTOR => Reason::UptoUnauthorizedFacilitator,
        _ if message.contains("TRANSFER_FROM_FAILED") => Reason::Permit2AllowanceRequired,
        _ => Reason::Permit2SimulationFailed,
    };
    Invalid::new(reason, format!("simulation reverted: {message}"))
}
