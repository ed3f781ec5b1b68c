//! The `SIGN-IN-WITH-X` payload (the x402 `sign-in-with-x` extension's client half, the field
//! names of `@x402/extensions`' schema) and the EIP-4361 text it stands for. The text is built
//! from the fields exactly as `@signinwithethereum/siwe` `prepareMessage()` builds it (that is
//! what the client signed), then parsed back with the `siwe` crate, which checks the EIP-4361
//! grammar (authority, EIP-55 address, URIs, RFC 3339 times, nonce length): a payload is usable
//! only when its text round-trips unchanged.

use std::fmt::Write as _;

use serde::Deserialize;

use super::SiwxError;

/// What a client sends in `SIGN-IN-WITH-X` (base64 of this JSON). Unknown fields are ignored,
/// as the SDK's schema does.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiwxPayload {
    /// The origin's host (with port when not the default).
    pub domain: String,
    /// The signing wallet (EIP-55).
    pub address: String,
    /// Optional human statement.
    #[serde(default)]
    pub statement: Option<String>,
    /// The resource URI signed for.
    pub uri: String,
    /// `1`.
    pub version: String,
    /// CAIP-2, `eip155:<id>`.
    pub chain_id: String,
    /// `eip191` (EVM) or `ed25519` (Solana, not accepted here).
    #[serde(rename = "type")]
    pub type_: String,
    /// The server's nonce.
    pub nonce: String,
    /// RFC 3339.
    pub issued_at: String,
    /// RFC 3339.
    #[serde(default)]
    pub expiration_time: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub not_before: Option<String>,
    /// Free-form request id.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Resource URIs.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// `eip191`, `eip1271`, `eip6492` or `siws`; informative only (we try both EOA and
    /// contract-wallet verification).
    #[serde(default)]
    pub signature_scheme: Option<String>,
    /// Hex signature.
    pub signature: String,
}

/// The numeric id of a CAIP-2 `eip155:<id>` chain.
pub fn evm_chain_id(caip2: &str) -> Result<u64, SiwxError> {
    caip2
        .strip_prefix("eip155:")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            SiwxError::unauthorized("invalid_siwx_chain_id", "chainId must be eip155:<number>")
        })
}

impl SiwxPayload {
    /// The EIP-4361 text the client signed, checked by the grammar.
    pub fn message(&self) -> Result<(String, siwe::Message), SiwxError> {
        if self.type_ != "eip191" {
            return Err(SiwxError::unauthorized(
                "invalid_siwx_unsupported_chain",
                "only EVM (eip191) sign-in is accepted",
            ));
        }
        let chain_id = evm_chain_id(&self.chain_id)?;
        let mut text = format!(
            "{} wants you to sign in with your Ethereum account:\n{}\n\n",
            self.domain, self.address
        );
        if let Some(statement) = &self.statement {
            text.push_str(statement);
            text.push('\n');
        }
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "\nURI: {}\nVersion: {}\nChain ID: {chain_id}\nNonce: {}\nIssued At: {}",
            self.uri, self.version, self.nonce, self.issued_at
        );
        for (tag, value) in [
            ("Expiration Time", &self.expiration_time),
            ("Not Before", &self.not_before),
            ("Request ID", &self.request_id),
        ] {
            if let Some(value) = value {
                let _ = write!(text, "\n{tag}: {value}");
            }
        }
        if let Some(resources) = self.resources.as_ref().filter(|r| !r.is_empty()) {
            text.push_str("\nResources:");
            for resource in resources {
                let _ = write!(text, "\n- {resource}");
            }
        }
        let message = parse(&text)?;
        Ok((text, message))
    }
}

/// An EIP-4361 text, parsed; refused unless it is in the canonical form its own fields print
/// (so that what is checked is exactly what was signed).
pub fn parse(text: &str) -> Result<siwe::Message, SiwxError> {
    let message: siwe::Message = text.parse().map_err(|e: siwe::ParseError| {
        SiwxError::bad_request(format!("not an EIP-4361 message: {e}"))
    })?;
    if message.to_string() != text {
        return Err(SiwxError::bad_request(
            "the EIP-4361 message is not in canonical form",
        ));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> SiwxPayload {
        serde_json::from_value(serde_json::json!({
            "domain": "api.example.com",
            "address": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            "uri": "https://api.example.com/services/x/data",
            "version": "1",
            "chainId": "eip155:84532",
            "type": "eip191",
            "nonce": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "issuedAt": "2026-12-05T12:00:00.000Z",
            "signature": "0x00",
            "somethingNew": true
        }))
        .unwrap()
    }

    /// `@signinwithethereum/siwe` 4.2.1 `prepareMessage()` for the same fields (run in
    /// `.tools/interop/node`): without a statement the address is followed by three newlines.
    #[test]
    fn the_text_is_the_sdks_byte_for_byte() {
        let (text, message) = payload().message().unwrap();
        assert_eq!(
            text,
            "api.example.com wants you to sign in with your Ethereum account:\n\
             0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\n\n\
             URI: https://api.example.com/services/x/data\nVersion: 1\nChain ID: 84532\n\
             Nonce: a1b2c3d4e5f60718293a4b5c6d7e8f90\nIssued At: 2026-12-05T12:00:00.000Z"
        );
        assert_eq!(message.chain_id, 84532);

        let mut full = payload();
        full.statement = Some("Sign in to x".into());
        full.expiration_time = Some("2026-12-05T12:10:00.000Z".into());
        full.not_before = Some("2026-12-05T11:59:00.000Z".into());
        full.request_id = Some("req-1".into());
        full.resources = Some(vec!["https://api.example.com/services/x/data".into()]);
        let (text, _) = full.message().unwrap();
        assert_eq!(
            text,
            "api.example.com wants you to sign in with your Ethereum account:\n\
             0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\nSign in to x\n\n\
             URI: https://api.example.com/services/x/data\nVersion: 1\nChain ID: 84532\n\
             Nonce: a1b2c3d4e5f60718293a4b5c6d7e8f90\nIssued At: 2026-12-05T12:00:00.000Z\n\
             Expiration Time: 2026-12-05T12:10:00.000Z\nNot Before: 2026-12-05T11:59:00.000Z\n\
             Request ID: req-1\nResources:\n- https://api.example.com/services/x/data"
        );
    }

    #[test]
    fn payloads_outside_the_grammar_are_refused() {
        let refused = |change: fn(&mut SiwxPayload), reason: &str| {
            let mut p = payload();
            change(&mut p);
            let error = p.message().unwrap_err();
            assert_eq!(error.reason, reason, "{error:?}");
        };
        refused(|p| p.chain_id = "eip155:x".into(), "invalid_siwx_chain_id");
        refused(
            |p| p.chain_id = "solana:abc".into(),
            "invalid_siwx_chain_id",
        );
        refused(
            |p| p.type_ = "ed25519".into(),
            "invalid_siwx_unsupported_chain",
        );
        refused(
            |p| p.address = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".into(),
            "invalid_siwx_header",
        );
        refused(|p| p.issued_at = "yesterday".into(), "invalid_siwx_header");
        refused(|p| p.version = "2".into(), "invalid_siwx_header");
        refused(|p| p.nonce = "short".into(), "invalid_siwx_header");
        refused(
            |p| p.statement = Some("two\nlines".into()),
            "invalid_siwx_header",
        );
        refused(
            |p| p.domain = "api.example.com\nURI: x".into(),
            "invalid_siwx_header",
        );
    }
}
