//! The pure half of verification: everything that can be decided without a chain.
//!
//! [`precheck`] runs the checks in the reference order — scheme, network, payload shape,
//! requirement terms, time window, amount, token, Permit2 spender, EIP-2612 sponsoring — and
//! then recovers an EOA signature. `exact` and `upto` share every check but the amount: an
//! `upto` requirement's amount is the ceiling at verify and the actual charge at settle
//! ([`Phase`]). What it cannot decide (contract-wallet signatures, balances,
//! used nonces, allowances) is left to the chain stage, with everything that stage needs.

use alloy::primitives::{Address, B256, Bytes, U256};
use obol_x402::network;
use obol_x402::signature::{self, SignatureError};
use obol_x402::token::{EXACT_PERMIT2_PROXY, PERMIT2, TransferMethod, UPTO_PERMIT2_PROXY};
use obol_x402::wire::evm::{
    Eip3009Authorization, EvmPayload, Permit2Authorization, UptoAuthorization,
};
use obol_x402::wire::{FieldError, VerifyRequest, parse_address, v2};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::reason::{Invalid, Reason};

/// Seconds a payment must still be valid for when verified: one block time and a margin.
pub const VALIDITY_BUFFER_SECS: u64 = 6;

/// A payment that passed every pure check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Protocol version of the request.
    pub version: u8,
    /// EVM chain id.
    pub chain_id: u64,
    /// The requirement's network as written (echoed in responses).
    pub network: String,
    /// Token contract.
    pub asset: Address,
    /// Recipient.
    pub pay_to: Address,
    /// Atomic amount: what the transfer moves (`upto`: the ceiling at verify, the actual
    /// charge at settle).
    pub amount: U256,
    /// Payer.
    pub payer: Address,
    /// The authorization nonce (Permit2 nonces as 32 big-endian bytes).
    pub nonce: B256,
    /// `validBefore` / `deadline`.
    pub expires_at: u64,
    /// The EIP-712 digest the signature covers, domain included: it changes with any signed
    /// field (payTo, amount, window, nonce, token, chain), so it names this authorization alone.
    pub digest: B256,
    /// The signature as sent (v normalised to 27/28 for 65-byte signatures).
    pub signature: Bytes,
    /// What the signature proved off-chain.
    pub signer: SignerCheck,
    /// The transfer itself.
    pub transfer: Transfer,
}

impl Payment {
    /// The identity that must never be settled or served twice.
    pub fn identity(&self) -> PaymentIdentity {
        PaymentIdentity {
            chain_id: self.chain_id,
            asset: self.asset,
            payer: self.payer,
            nonce: self.nonce,
        }
    }
}

/// `(chain, asset, payer, nonce)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PaymentIdentity {
    /// EVM chain id.
    pub chain_id: u64,
    /// Token contract.
    pub asset: Address,
    /// Payer.
    pub payer: Address,
    /// Authorization nonce.
    pub nonce: B256,
}

/// The outcome of the off-chain signature check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerCheck {
    /// A 65-byte ECDSA signature recovered to the payer.
    Eoa,
    /// Not provable off-chain (a contract wallet: ERC-1271, or 65 bytes that recover to someone
    /// else); the chain stage must find code at the payer and let simulation decide.
    NeedsChain,
}

/// The transfer a payment authorizes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per request, never stored in bulk"
)]
pub enum Transfer {
    /// EIP-3009 `transferWithAuthorization`.
    Eip3009(Eip3009Authorization),
    /// A Permit2 witness transfer through the x402 exact or upto proxy.
    Permit2 {
        /// The signed witness transfer.
        authorization: Permit2Parts,
        /// An EIP-2612 permit that approves Permit2 in the same transaction.
        sponsor: Option<Eip2612Permit>,
    },
}

/// What a Permit2 payment of either scheme signed: the parts the checks, the chain reads and
/// the proxy call use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit2Parts {
    /// Token.
    pub token: Address,
    /// Permitted amount: the price (`exact`) or the ceiling (`upto`).
    pub permitted: U256,
    /// The proxy the payer signed for.
    pub spender: Address,
    /// Unordered Permit2 nonce.
    pub nonce: U256,
    /// Unix deadline.
    pub deadline: U256,
    /// Recipient (`witness.to`).
    pub to: Address,
    /// `witness.validAfter`.
    pub valid_after: U256,
    /// `upto` only: the one address the upto proxy lets settle (`witness.facilitator`).
    pub facilitator: Option<Address>,
}

impl Permit2Parts {
    /// The proxy this scheme must pay through.
    pub fn proxy(&self) -> Address {
        match self.facilitator {
            Some(_) => UPTO_PERMIT2_PROXY,
            None => EXACT_PERMIT2_PROXY,
        }
    }
}

impl From<&Permit2Authorization> for Permit2Parts {
    fn from(a: &Permit2Authorization) -> Self {
        Self {
            token: a.permitted.token,
            permitted: a.permitted.amount.get(),
            spender: a.spender,
            nonce: a.nonce.get(),
            deadline: a.deadline.get(),
            to: a.witness.to,
            valid_after: a.witness.valid_after.get(),
            facilitator: None,
        }
    }
}

impl From<&UptoAuthorization> for Permit2Parts {
    fn from(a: &UptoAuthorization) -> Self {
        Self {
            token: a.permitted.token,
            permitted: a.permitted.amount.get(),
            spender: a.spender,
            nonce: a.nonce.get(),
            deadline: a.deadline.get(),
            to: a.witness.to,
            valid_after: a.witness.valid_after.get(),
            facilitator: Some(a.witness.facilitator),
        }
    }
}

/// Which call a payment is checked for: an `upto` requirement's amount is the ceiling at
/// verify and the actual charge (at most the ceiling) at settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `/verify`.
    Verify,
    /// `/settle`.
    Settle,
}

/// The `eip2612GasSponsoring` extension's permit, checked and split for the proxy call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip2612Permit {
    /// Approved amount (must equal the Permit2 amount).
    pub value: U256,
    /// Permit deadline.
    pub deadline: U256,
    /// The token's EIP-2612 nonce the permit was signed for.
    pub nonce: U256,
    /// Signature `v` (27/28).
    pub v: u8,
    /// Signature `r`.
    pub r: B256,
    /// Signature `s`.
    pub s: B256,
}

fn invalid(reason: Reason, message: impl Into<String>) -> Invalid {
    Invalid::new(reason, message)
}

fn field(reason: Reason) -> impl Fn(FieldError) -> Invalid {
    move |e| invalid(reason, e.to_string())
}

/// Runs every check that needs no chain, for `phase`. `supports_chain` says whether this
/// facilitator has the chain; `now` is the current unix time.
pub fn precheck(
    request: &VerifyRequest,
    now: u64,
    phase: Phase,
    supports_chain: &dyn Fn(u64) -> bool,
) -> Result<Payment, Invalid> {
    let payload = request.payload();
    let requirements = request.requirements_v2();
    let (scheme, payload_network) = payload.scheme_and_network();

    if scheme != requirements.scheme || !matches!(scheme, "exact" | "upto") {
        return Err(invalid(
            Reason::Scheme,
            format!(
                "only the exact and upto schemes are supported, alike in payment and requirement (payment {scheme:?}, requirement {:?})",
                requirements.scheme
            ),
        ));
    }
    if !network::same_network(payload_network, &requirements.network) {
        return Err(invalid(
            Reason::NetworkMismatch,
            format!(
                "payment is for {payload_network}, requirement for {}",
                requirements.network
            ),
        ));
    }
    let chain_id = requirements
        .chain_id()
        .map_err(field(Reason::InvalidNetwork))?;
    if !supports_chain(chain_id) {
        return Err(invalid(
            Reason::InvalidNetwork,
            format!(
                "this facilitator does not settle on chain {chain_id} ({})",
                requirements.network
            ),
        ));
    }
    let exact = payload
        .evm_payload()
        .map_err(field(Reason::InvalidPayload))?;
    if exact.scheme() != scheme {
        return Err(invalid(
            Reason::Scheme,
            format!(
                "the payment is {scheme} but carries an {} payload",
                exact.scheme()
            ),
        ));
    }
    // upto is always Permit2, whatever `extra.assetTransferMethod` says.
    let method = match scheme {
        "upto" => TransferMethod::Permit2,
        _ => requirements
            .transfer_method()
            .map_err(field(Reason::InvalidPayload))?,
    };
    if method != exact.transfer_method() {
        return Err(invalid(
            Reason::InvalidPayload,
            format!(
                "the requirement asks for {method} but the payment carries a {} payload",
                exact.transfer_method()
            ),
        ));
    }
    let asset = requirements
        .asset_address()
        .map_err(field(Reason::InvalidPayload))?;
    let pay_to = requirements
        .pay_to_address()
        .map_err(field(Reason::InvalidPayload))?;
    let amount = requirements.amount();
    let terms = Terms {
        asset,
        pay_to,
        amount,
    };
    if let Some(accepted) = accepted(request) {
        // `accepted` echoes the offer: for upto, the ceiling the payer permitted (at settle the
        // requirement's amount is the charge instead).
        let offered = match scheme {
            "upto" => exact.ceiling(),
            _ => amount,
        };
        check_accepted(accepted, &requirements, offered)?;
    }

    let (transfer, expires_at) = match &exact {
        EvmPayload::Eip3009 { authorization, .. } => {
            requirements
                .eip712_domain()
                .map_err(field(Reason::MissingEip712Domain))?;
            check_eip3009(authorization, pay_to, amount, now)?;
            (
                Transfer::Eip3009(authorization.clone()),
                authorization.valid_before.as_u64_saturating(),
            )
        }
        EvmPayload::Permit2 { authorization, .. } => {
            let parts = Permit2Parts::from(authorization);
            check_permit2(&parts, &terms, phase)?;
            permit2_transfer(request, parts, authorization.from, now)?
        }
        EvmPayload::Upto { authorization, .. } => {
            let parts = Permit2Parts::from(authorization);
            check_permit2(&parts, &terms, phase)?;
            permit2_transfer(request, parts, authorization.from, now)?
        }
    };

    let mut signature = exact.signature().to_vec();
    signature::normalize_v(&mut signature);
    let digest = exact
        .signing_hash(&requirements)
        .map_err(field(Reason::InvalidPayload))?;
    let payer = exact.payer();
    let signer = check_signature(&signature, &digest, payer, method)?;

    Ok(Payment {
        version: request.version(),
        chain_id,
        network: requirements.network,
        asset,
        pay_to,
        amount,
        payer,
        nonce: exact.nonce(),
        expires_at,
        digest,
        signature: signature.into(),
        signer,
        transfer,
    })
}

fn accepted(request: &VerifyRequest) -> Option<&v2::PaymentRequirements> {
    match request {
        VerifyRequest::V2 {
            payment_payload, ..
        } => Some(&payment_payload.accepted),
        VerifyRequest::V1 { .. } => None,
    }
}

/// The client's `accepted` must name the same asset and recipient as the server's copy, and the
/// amount offered (`offered`).
fn check_accepted(
    accepted: &v2::PaymentRequirements,
    requirements: &v2::PaymentRequirements,
    offered: U256,
) -> Result<(), Invalid> {
    if !accepted.asset.eq_ignore_ascii_case(&requirements.asset) {
        return Err(invalid(
            Reason::AssetMismatch,
            format!(
                "accepted.asset {} is not the required asset {}",
                accepted.asset, requirements.asset
            ),
        ));
    }
    if !accepted.pay_to.eq_ignore_ascii_case(&requirements.pay_to) {
        return Err(invalid(
            Reason::RecipientMismatch,
            format!(
                "accepted.payTo {} is not the required payTo {}",
                accepted.pay_to, requirements.pay_to
            ),
        ));
    }
    if accepted.amount() != offered {
        return Err(invalid(
            Reason::Value,
            format!(
                "accepted.amount {} is not the offered amount {offered}",
                accepted.amount
            ),
        ));
    }
    Ok(())
}

fn check_window(
    valid_after: U256,
    valid_before: U256,
    now: u64,
    (early, late): (Reason, Reason),
) -> Result<(), Invalid> {
    let min_before = U256::from(now.saturating_add(VALIDITY_BUFFER_SECS));
    if valid_before < min_before {
        return Err(invalid(
            late,
            format!(
                "expires at {valid_before}, less than {VALIDITY_BUFFER_SECS} s after now ({now})"
            ),
        ));
    }
    if valid_after > U256::from(now) {
        return Err(invalid(
            early,
            format!("not valid before {valid_after}; now is {now}"),
        ));
    }
    Ok(())
}

fn check_eip3009(
    auth: &Eip3009Authorization,
    pay_to: Address,
    amount: U256,
    now: u64,
) -> Result<(), Invalid> {
    if auth.to != pay_to {
        return Err(invalid(
            Reason::RecipientMismatch,
            format!(
                "authorization pays {}, the requirement's payTo is {pay_to}",
                auth.to
            ),
        ));
    }
    check_window(
        auth.valid_after.get(),
        auth.valid_before.get(),
        now,
        (Reason::ValidAfter, Reason::ValidBefore),
    )?;
    if auth.value.get() != amount {
        return Err(invalid(
            Reason::Value,
            format!(
                "authorization value {} is not the required amount {amount}",
                auth.value
            ),
        ));
    }
    Ok(())
}

/// A Permit2 transfer of either scheme (its terms checked), its window checked and its
/// sponsoring permit read.
fn permit2_transfer(
    request: &VerifyRequest,
    parts: Permit2Parts,
    from: Address,
    now: u64,
) -> Result<(Transfer, u64), Invalid> {
    check_window(
        parts.valid_after,
        parts.deadline,
        now,
        (Reason::Permit2NotYetValid, Reason::Permit2DeadlineExpired),
    )?;
    let sponsor = sponsoring(request, &parts, from, now)?;
    let expires_at = u64::try_from(parts.deadline).unwrap_or(u64::MAX);
    Ok((
        Transfer::Permit2 {
            authorization: parts,
            sponsor,
        },
        expires_at,
    ))
}

/// What the requirement asks for.
struct Terms {
    asset: Address,
    pay_to: Address,
    amount: U256,
}

/// Spender, recipient, amount and token of a Permit2 transfer: `exact` moves exactly the
/// required amount; `upto` permits the required amount at verify and settles at most it.
fn check_permit2(parts: &Permit2Parts, terms: &Terms, phase: Phase) -> Result<(), Invalid> {
    let Terms {
        asset,
        pay_to,
        amount,
    } = *terms;
    let proxy = parts.proxy();
    if parts.spender != proxy {
        let scheme = if parts.facilitator.is_some() {
            "upto"
        } else {
            "exact"
        };
        return Err(invalid(
            Reason::Permit2Spender,
            format!(
                "spender {} is not the x402 {scheme} Permit2 proxy {proxy}",
                parts.spender
            ),
        ));
    }
    if parts.to != pay_to {
        return Err(invalid(
            Reason::Permit2RecipientMismatch,
            format!(
                "witness pays {}, the requirement's payTo is {pay_to}",
                parts.to
            ),
        ));
    }
    let settling_upto = parts.facilitator.is_some() && phase == Phase::Settle;
    if settling_upto && amount > parts.permitted {
        return Err(invalid(
            Reason::UptoSettlementExceedsAmount,
            format!(
                "settling {amount} exceeds the {} the payer permitted",
                parts.permitted
            ),
        ));
    }
    if !settling_upto && parts.permitted != amount {
        return Err(invalid(
            Reason::Permit2AmountMismatch,
            format!(
                "permitted amount {} is not the required amount {amount}",
                parts.permitted
            ),
        ));
    }
    if parts.token != asset {
        return Err(invalid(
            Reason::Permit2TokenMismatch,
            format!("permitted token {} is not the asset {asset}", parts.token),
        ));
    }
    Ok(())
}

/// `extensions.eip2612GasSponsoring.info` of a v2 payment, checked against the Permit2 transfer.
fn sponsoring(
    request: &VerifyRequest,
    parts: &Permit2Parts,
    from: Address,
    now: u64,
) -> Result<Option<Eip2612Permit>, Invalid> {
    let VerifyRequest::V2 {
        payment_payload, ..
    } = request
    else {
        return Ok(None);
    };
    let Some(info) = payment_payload
        .extensions
        .as_ref()
        .and_then(|e| e.get("eip2612GasSponsoring"))
        .and_then(|e| e.get("info"))
    else {
        return Ok(None);
    };
    parse_sponsoring(info, parts, from, now).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SponsoringInfo {
    from: String,
    asset: String,
    spender: String,
    amount: obol_x402::wire::DecimalU256,
    nonce: obol_x402::wire::DecimalU256,
    deadline: obol_x402::wire::DecimalU256,
    signature: Bytes,
}

fn parse_sponsoring(
    info: &Value,
    parts: &Permit2Parts,
    from: Address,
    now: u64,
) -> Result<Eip2612Permit, Invalid> {
    let bad = |why: String| invalid(Reason::InvalidEip2612Extension, why);
    let info: SponsoringInfo =
        serde_json::from_value(info.clone()).map_err(|e| bad(e.to_string()))?;
    let address = |text: &str| parse_address(text).map_err(bad);
    if address(&info.from)? != from {
        return Err(invalid(
            Reason::Eip2612FromMismatch,
            format!("permit owner {} is not the payer {from}", info.from),
        ));
    }
    if address(&info.asset)? != parts.token {
        return Err(invalid(
            Reason::Eip2612AssetMismatch,
            format!(
                "permit asset {} is not the token {}",
                info.asset, parts.token
            ),
        ));
    }
    if address(&info.spender)? != PERMIT2 {
        return Err(invalid(
            Reason::Eip2612SpenderNotPermit2,
            format!("permit spender {} is not Permit2", info.spender),
        ));
    }
    if info.deadline.get() < U256::from(now.saturating_add(VALIDITY_BUFFER_SECS)) {
        return Err(invalid(
            Reason::Eip2612DeadlineExpired,
            format!("permit deadline {} has passed", info.deadline),
        ));
    }
    if info.amount.get() != parts.permitted {
        return Err(invalid(
            Reason::Permit2612AmountMismatch,
            format!(
                "the EIP-2612 permit approves {} but the payment permits {}; the x402 proxy requires them equal",
                info.amount, parts.permitted
            ),
        ));
    }
    let mut sig = info.signature.to_vec();
    signature::normalize_v(&mut sig);
    let parsed = signature::parse(&sig).map_err(|e| bad(format!("permit signature: {e}")))?;
    Ok(Eip2612Permit {
        value: info.amount.get(),
        deadline: info.deadline.get(),
        nonce: info.nonce.get(),
        v: 27 + u8::from(parsed.v()),
        r: parsed.r().into(),
        s: parsed.s().into(),
    })
}

fn check_signature(
    signature: &[u8],
    digest: &B256,
    payer: Address,
    method: TransferMethod,
) -> Result<SignerCheck, Invalid> {
    let reason = match method {
        TransferMethod::Eip3009 => Reason::Signature,
        TransferMethod::Permit2 => Reason::Permit2Signature,
    };
    if signature.len() != 65 {
        return Ok(SignerCheck::NeedsChain);
    }
    match signature::recover(digest, signature) {
        Ok(recovered) if recovered == payer => Ok(SignerCheck::Eoa),
        // Could still be a contract wallet whose ERC-1271 accepts an owner's ECDSA signature.
        Ok(_) => Ok(SignerCheck::NeedsChain),
        Err(e @ (SignatureError::HighS | SignatureError::InvalidV { .. })) => {
            Err(invalid(reason, e.to_string()))
        }
        Err(e) => Err(invalid(reason, e.to_string())),
    }
}

/// Extension maps are passed through unchanged; this keeps the type nameable for callers.
pub type Extensions = Map<String, Value>;
