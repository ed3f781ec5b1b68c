//! Pre-signed authorizations as a `PurchaseRequest` carries them (obol-stack.md §3.3
//! `spec.preSignedAuths[]`): the full v2 payload plus its flattened fields.

use obol_control::purchase::PreSignedAuth;
use obol_x402::TransferMethod;
use obol_x402::primitives::{B256, U256};
use obol_x402::wire::v2;
use serde_json::Value;

use crate::presign::PreSigned;

/// Why a stored authorization cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("pre-signed authorization {index}: {reason}")]
pub struct AuthError {
    /// Its position in `preSignedAuths`.
    pub index: usize,
    /// What is wrong.
    pub reason: String,
}

/// The signed fields of a payload, flattened as the resource stores them.
struct Flat {
    signature: String,
    from: String,
    to: String,
    value: String,
    valid_after: String,
    valid_before: String,
    nonce: String,
}

fn flatten(payload: &v2::PaymentPayload) -> Result<Flat, String> {
    let signed = payload.evm_payload().map_err(|e| format!("payload: {e}"))?;
    // EIP-3009 nonces are 32 bytes in hex; Permit2 nonces are decimal uint256s.
    let nonce = match signed.transfer_method() {
        TransferMethod::Eip3009 => signed.nonce().to_string(),
        TransferMethod::Permit2 => U256::from_be_bytes(signed.nonce().0).to_string(),
    };
    Ok(Flat {
        signature: signed.signature().to_string(),
        from: signed.payer().to_checksum(None),
        to: signed.recipient().to_checksum(None),
        value: signed.ceiling().to_string(),
        valid_after: signed.valid_after().to_string(),
        valid_before: signed.expires_at().to_string(),
        nonce,
    })
}

/// The resource form of freshly signed authorizations.
pub fn to_resource(auths: &[PreSigned]) -> Result<Vec<PreSignedAuth>, AuthError> {
    auths
        .iter()
        .enumerate()
        .map(|(index, auth)| {
            let fail = |reason: String| AuthError { index, reason };
            let payment = match serde_json::to_value(&auth.payload) {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Err(fail("payment is not an object".into())),
                Err(e) => return Err(fail(e.to_string())),
            };
            let flat = flatten(&auth.payload).map_err(fail)?;
            Ok(PreSignedAuth {
                id: auth.nonce.to_string(),
                payment: Some(payment),
                signature: flat.signature,
                from: flat.from,
                to: flat.to,
                value: flat.value,
                valid_after: flat.valid_after,
                valid_before: flat.valid_before,
                nonce: flat.nonce,
            })
        })
        .collect()
}

/// Reads a resource's authorizations back into pool entries. Every one must carry its full
/// payment, and the flattened fields must agree with what was signed.
pub fn from_resource(auths: &[PreSignedAuth]) -> Result<Vec<PreSigned>, AuthError> {
    auths
        .iter()
        .enumerate()
        .map(|(index, auth)| {
            let fail = |reason: String| AuthError { index, reason };
            let map = auth
                .payment
                .clone()
                .ok_or_else(|| fail("has no `payment` (the full x402 v2 payload)".into()))?;
            let payload: v2::PaymentPayload = serde_json::from_value(Value::Object(map))
                .map_err(|e| fail(format!("payment: {e}")))?;
            let flat = flatten(&payload).map_err(&fail)?;
            for (field, stored, signed) in [
                ("from", &auth.from, &flat.from),
                ("to", &auth.to, &flat.to),
                ("value", &auth.value, &flat.value),
                ("validBefore", &auth.valid_before, &flat.valid_before),
                ("nonce", &auth.nonce, &flat.nonce),
            ] {
                if !stored.eq_ignore_ascii_case(signed) {
                    return Err(fail(format!(
                        "{field} {stored:?} differs from the signed payment's {signed:?}"
                    )));
                }
            }
            let valid_before = flat
                .valid_before
                .parse::<u64>()
                .map_err(|_| fail("validBefore is not a unix time".into()))?;
            let nonce = flat
                .nonce
                .parse::<B256>()
                .or_else(|_| flat.nonce.parse::<U256>().map(B256::from))
                .map_err(|_| fail("nonce is neither 32 hex bytes nor a uint256".into()))?;
            Ok(PreSigned {
                nonce,
                valid_before,
                payload,
            })
        })
        .collect()
}
