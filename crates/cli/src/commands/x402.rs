//! `obol x402 decode`: turn an opaque x402 header into something a person can check.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use obol_config::time::rfc3339;
use obol_x402::header::{self, Decoded};
use obol_x402::money::format_units;
use obol_x402::network;
use obol_x402::primitives::{Address, U256};
use obol_x402::token::{EXACT_PERMIT2_PROXY, TokenRegistry, UPTO_PERMIT2_PROXY};
use obol_x402::wire::evm::EvmPayload;
use obol_x402::wire::{PaymentPayload, PaymentRequired, SettleResponse, parse_address, v2};
use serde::Serialize;
use serde_json::json;

use crate::cli::DecodeArgs;
use crate::output;

/// Inputs larger than this are refused before decoding (a header is capped far below it).
const MAX_INPUT_BYTES: u64 = 1024 * 1024;

const HEADER_NAMES: [&str; 5] = [
    header::PAYMENT_REQUIRED,
    header::PAYMENT_SIGNATURE,
    header::PAYMENT_RESPONSE,
    header::X_PAYMENT,
    header::X_PAYMENT_RESPONSE,
];

pub(crate) fn decode(args: &DecodeArgs, json: bool) -> anyhow::Result<ExitCode> {
    let raw = read_input(args)?;
    let (header_name, value) = split_header_line(raw.trim());
    let decoded = if value.starts_with('{') {
        header::from_json_any(value)
    } else {
        header::decode_any(value)
    }
    .context("the input is not an x402 header or message")?;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let explained = explain(&decoded, &TokenRegistry::builtin(), now);
    if json {
        output::json(&json!({
            "kind": decoded.kind(),
            "header": header_name,
            "summary": explained.summary,
            "signature": explained.signature,
            "message": decoded.to_json(),
        }))?;
    } else {
        output::note(&explained.summary);
        output::json(&decoded.to_json())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(args: &DecodeArgs) -> anyhow::Result<String> {
    let mut text = String::new();
    if let Some(path) = args.path() {
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.take(MAX_INPUT_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {} as text", path.display()))?;
    } else if args.input == "-" {
        std::io::stdin()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_string(&mut text)
            .context("cannot read stdin as text")?;
    } else {
        return Ok(args.input.clone());
    }
    if text.len() as u64 > MAX_INPUT_BYTES {
        anyhow::bail!("input is larger than {MAX_INPUT_BYTES} bytes");
    }
    Ok(text)
}

/// Splits `PAYMENT-SIGNATURE: eyJ…` into the header name and its value; other input is all
/// value.
fn split_header_line(input: &str) -> (Option<&'static str>, &str) {
    if let Some((name, value)) = input.split_once(':')
        && let Some(known) = HEADER_NAMES
            .iter()
            .find(|known| known.eq_ignore_ascii_case(name.trim()))
    {
        return (Some(known), value.trim());
    }
    (None, input)
}

/// A one-line explanation and, for payments, the signature check.
struct Explained {
    summary: String,
    signature: Option<SignatureCheck>,
}

#[derive(Debug, Serialize)]
struct SignatureCheck {
    /// `valid`, `invalid` or `unchecked`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl SignatureCheck {
    fn text(&self) -> String {
        match (self.status, &self.detail) {
            ("valid", None) => "signature ok".to_owned(),
            ("valid", Some(detail)) => format!("signature ok ({detail})"),
            ("invalid", detail) => format!(
                "signature INVALID: {}",
                detail.as_deref().unwrap_or("does not recover to the payer")
            ),
            (_, detail) => format!(
                "signature not checked: {}",
                detail.as_deref().unwrap_or("unknown")
            ),
        }
    }
}

fn explain(decoded: &Decoded, tokens: &TokenRegistry, now: u64) -> Explained {
    match decoded {
        Decoded::PaymentRequired(required) => Explained {
            summary: explain_required(required, tokens),
            signature: None,
        },
        Decoded::PaymentPayload(payload) => explain_payload(payload, tokens, now),
        Decoded::Settlement(settlement) => Explained {
            summary: explain_settlement(settlement),
            signature: None,
        },
    }
}

fn network_text(name: &str) -> String {
    match network::resolve(name) {
        Ok(known) => known.to_string(),
        Err(_) => format!("{name} (unknown network)"),
    }
}

fn amount_text(tokens: &TokenRegistry, network: &str, asset: &str, atomic: U256) -> String {
    let token = network::evm_chain_id(network)
        .ok()
        .zip(parse_address(asset).ok())
        .and_then(|(chain_id, address)| tokens.by_address(chain_id, address));
    match token {
        Some(token) => format!("{} {}", format_units(atomic, token.decimals), token.symbol),
        None => format!("{atomic} atomic units of {asset}"),
    }
}

fn option_text(tokens: &TokenRegistry, req: &v2::PaymentRequirements) -> String {
    let method = req
        .transfer_method()
        .map_or_else(|e| e.to_string(), |m| m.to_string());
    format!(
        "{} on {} via {}/{method}, payTo {}, valid {} s",
        amount_text(tokens, &req.network, &req.asset, req.amount()),
        network_text(&req.network),
        req.scheme,
        req.pay_to,
        req.max_timeout_seconds
    )
}

fn explain_required(required: &PaymentRequired, tokens: &TokenRegistry) -> String {
    let (version, url, error) = match required {
        PaymentRequired::V1(r) => (
            1,
            r.accepts.first().map_or("", |a| a.resource.as_str()),
            Some(r.error.as_str()).filter(|e| !e.is_empty()),
        ),
        PaymentRequired::V2(r) => (2, r.resource.url.as_str(), r.error.as_deref()),
    };
    let options = required.accepts_v2();
    let mut line = format!("402 payment required (x402 v{version}) for {url}: ");
    if options.is_empty() {
        line.push_str("no payment options (a buyer cannot pay this)");
    }
    for (i, option) in options.iter().enumerate() {
        if i > 0 {
            line.push_str("; ");
        }
        line.push_str(&format!(
            "option {}: {}",
            i + 1,
            option_text(tokens, option)
        ));
    }
    if let Some(error) = error {
        line.push_str(&format!(" — {error:?}"));
    }
    line
}

fn explain_payload(payload: &PaymentPayload, tokens: &TokenRegistry, now: u64) -> Explained {
    let (scheme, network) = payload.scheme_and_network();
    let exact = match payload.evm_payload() {
        Ok(exact) => exact,
        Err(e) => {
            return Explained {
                summary: format!(
                    "payment (x402 v{}, {scheme}) on {}: {e}",
                    payload.version(),
                    network_text(network)
                ),
                signature: None,
            };
        }
    };
    // The requirement the signature is checked against: v2 carries it in `accepted`; v1 does
    // not, so assume the chain's USDC (the only token v1 `exact` pays in).
    let requirement = match payload {
        PaymentPayload::V2(p) => Some((p.accepted.clone(), None)),
        PaymentPayload::V1(p) => assumed_v1_requirement(tokens, &p.network, &exact),
    };
    let asset = requirement
        .as_ref()
        .map_or("", |(req, _)| req.asset.as_str());
    let (amount, pay_to, expires, mut notes) = payment_terms(&exact, tokens, network, asset);
    let signature = match &requirement {
        Some((req, assumption)) => check_signature(&exact, req, assumption.clone()),
        None => SignatureCheck {
            status: "unchecked",
            recovered: None,
            detail: Some("no known token domain for this v1 network".to_owned()),
        },
    };
    if let Some((req, _)) = &requirement {
        notes.extend(mismatches(&exact, req));
    }
    let expiry = if expires <= now {
        format!("expired at {}", rfc3339(expires))
    } else {
        format!("valid until {}", rfc3339(expires))
    };
    let mut summary = format!(
        "payment (x402 v{}, {scheme}/{}): {amount} on {} from {} to {pay_to}, {expiry}, {}",
        payload.version(),
        exact.transfer_method(),
        network_text(network),
        exact.payer(),
        signature.text()
    );
    for note in notes {
        summary.push_str(&format!("; {note}"));
    }
    Explained {
        summary,
        signature: Some(signature),
    }
}

/// `(amount text, recipient, expiry, notes)` of a payment; `asset` is the EIP-3009 token (a
/// Permit2 payload names its own). An `upto` amount is the ceiling.
fn payment_terms(
    signed: &EvmPayload,
    tokens: &TokenRegistry,
    network: &str,
    asset: &str,
) -> (String, Address, u64, Vec<String>) {
    let mut notes = Vec::new();
    let (token, proxy) = match signed {
        EvmPayload::Eip3009 { .. } => (asset.to_owned(), None),
        EvmPayload::Permit2 { authorization, .. } => (
            authorization.permitted.token.to_string(),
            Some((authorization.spender, EXACT_PERMIT2_PROXY, "exact")),
        ),
        EvmPayload::Upto { authorization, .. } => {
            notes.push(format!(
                "upto: at most this; only {} may settle it",
                authorization.witness.facilitator
            ));
            (
                authorization.permitted.token.to_string(),
                Some((authorization.spender, UPTO_PERMIT2_PROXY, "upto")),
            )
        }
    };
    if let Some((spender, expected, scheme)) = proxy
        && spender != expected
    {
        notes.push(format!(
            "WARNING spender {spender} is not the x402 {scheme} Permit2 proxy"
        ));
    }
    (
        amount_text(tokens, network, &token, signed.ceiling()),
        signed.recipient(),
        u64::try_from(signed.expires_at()).unwrap_or(u64::MAX),
        notes,
    )
}

fn assumed_v1_requirement(
    tokens: &TokenRegistry,
    network: &str,
    exact: &EvmPayload,
) -> Option<(v2::PaymentRequirements, Option<String>)> {
    let chain_id = network::evm_chain_id(network).ok()?;
    let usdc = tokens.on_chain(chain_id).find(|t| t.symbol == "USDC")?;
    let EvmPayload::Eip3009 { authorization, .. } = exact else {
        return None;
    };
    let requirement = v2::PaymentRequirements {
        scheme: "exact".to_owned(),
        network: network.to_owned(),
        amount: authorization.value,
        asset: usdc.address.to_checksum(None),
        pay_to: authorization.to.to_checksum(None),
        max_timeout_seconds: 0,
        extra: Some(usdc.requirement_extra()),
    };
    let assumption = format!(
        "checked against the {} USDC domain {:?}/{:?}",
        usdc.network_name(),
        usdc.eip712_name,
        usdc.eip712_version
    );
    Some((requirement, Some(assumption)))
}

fn check_signature(
    exact: &EvmPayload,
    requirement: &v2::PaymentRequirements,
    assumption: Option<String>,
) -> SignatureCheck {
    if exact.signature().len() != 65 {
        return SignatureCheck {
            status: "unchecked",
            recovered: None,
            detail: Some(format!(
                "{}-byte contract-wallet signature (ERC-1271/6492) needs an on-chain check",
                exact.signature().len()
            )),
        };
    }
    match exact.recover_signer(requirement) {
        Ok(recovered) if recovered == exact.payer() => SignatureCheck {
            status: "valid",
            recovered: Some(recovered.to_checksum(None)),
            detail: assumption,
        },
        Ok(recovered) => SignatureCheck {
            status: "invalid",
            recovered: Some(recovered.to_checksum(None)),
            detail: Some(format!(
                "recovers to {recovered}, not the payer (wrong EIP-712 domain name/version, chain or token?)"
            )),
        },
        Err(e) => SignatureCheck {
            status: "invalid",
            recovered: None,
            detail: Some(e.to_string()),
        },
    }
}

/// Differences between what a payment signs and the requirement it claims to accept.
fn mismatches(exact: &EvmPayload, accepted: &v2::PaymentRequirements) -> Vec<String> {
    let (to, amount) = (exact.recipient(), exact.ceiling());
    let mut notes = Vec::new();
    if accepted.pay_to_address().is_ok_and(|p| p != to) {
        notes.push(format!(
            "WARNING pays {to}, but accepted.payTo is {}",
            accepted.pay_to
        ));
    }
    if amount != accepted.amount() {
        notes.push(format!(
            "WARNING signs {amount} atomic units, but accepted.amount is {}",
            accepted.amount
        ));
    }
    notes
}

fn explain_settlement(settlement: &SettleResponse) -> String {
    let network = if settlement.network.is_empty() {
        "an unnamed network".to_owned()
    } else {
        network_text(&settlement.network)
    };
    let payer = settlement
        .payer
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| format!(", payer {p}"))
        .unwrap_or_default();
    let reason = settlement
        .error_reason
        .as_deref()
        .unwrap_or("no reason given");
    let message = settlement
        .error_message
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    if settlement.success {
        format!(
            "settlement succeeded on {network}: tx {}{payer}",
            settlement.transaction
        )
    } else if reason == "settlement_pending" {
        format!(
            "settlement pending on {network}: tx {} broadcast, receipt not yet observed{payer}",
            settlement.transaction
        )
    } else {
        format!("settlement FAILED on {network}: {reason}{message}{payer}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_header_lines() {
        assert_eq!(
            split_header_line("payment-signature: abc"),
            (Some("PAYMENT-SIGNATURE"), "abc")
        );
        assert_eq!(split_header_line("abc"), (None, "abc"));
        assert_eq!(split_header_line("{\"a\":1}"), (None, "{\"a\":1}"));
    }
}
