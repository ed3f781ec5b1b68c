//! The x402 HTTP headers and their codec: standard base64 (RFC 4648, `+/`, `=` padding) of
//! compact UTF-8 JSON.
//!
//! Decoding is strict and bounded: values above [`MAX_HEADER_LEN`] are refused before any work,
//! URL-safe base64 and whitespace are refused (x402.md T-B64-5), and every error says where the
//! value went wrong.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::wire::{PaymentPayload, PaymentRequired, SettleResponse};

/// v2: the 402 answer (`PaymentRequired`).
pub const PAYMENT_REQUIRED: &str = "PAYMENT-REQUIRED";
/// v2: the client's payment (`PaymentPayload`).
pub const PAYMENT_SIGNATURE: &str = "PAYMENT-SIGNATURE";
/// v2: the settlement receipt (`SettleResponse`).
pub const PAYMENT_RESPONSE: &str = "PAYMENT-RESPONSE";
/// v1: the client's payment.
pub const X_PAYMENT: &str = "X-PAYMENT";
/// v1: the settlement receipt.
pub const X_PAYMENT_RESPONSE: &str = "X-PAYMENT-RESPONSE";

/// The largest header value accepted, in bytes of base64. x402.md §7.6 asks for at least
/// 16 KB; ERC-6492 signatures and extensions make payloads grow, so we allow twice that.
pub const MAX_HEADER_LEN: usize = 32 * 1024;

/// Why a header value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The value is empty.
    #[error("empty header value")]
    Empty,
    /// The value is longer than [`MAX_HEADER_LEN`].
    #[error("header value is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is not standard base64.
    #[error("invalid base64: {0}")]
    Base64(String),
    /// The decoded bytes are not UTF-8.
    #[error("decoded header is not UTF-8 (invalid byte at offset {offset})")]
    Utf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The decoded text is not JSON.
    #[error("decoded header is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not the expected message.
    #[error("decoded header is not a valid x402 message: {0}")]
    Message(String),
    /// The JSON object is none of the x402 messages.
    #[error(
        "decoded JSON is not an x402 message (expected `accepts`, `payload` or `success`; found keys: {0})"
    )]
    Unrecognized(String),
    /// A value could not be encoded.
    #[error("could not encode header: {0}")]
    Encode(String),
}

/// Encodes a message as a header value: compact JSON, standard base64.
pub fn encode<T: Serialize + ?Sized>(message: &T) -> Result<String, HeaderError> {
    let json = serde_json::to_vec(message).map_err(|e| HeaderError::Encode(e.to_string()))?;
    Ok(STANDARD.encode(json))
}

/// Decodes a header value into the JSON text it carries.
pub fn decode_to_json(value: &str) -> Result<String, HeaderError> {
    if value.is_empty() {
        return Err(HeaderError::Empty);
    }
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLarge {
            len: value.len(),
            max: MAX_HEADER_LEN,
        });
    }
    let bytes = STANDARD
        .decode(value)
        .map_err(|e| base64_error(value, &e))?;
    String::from_utf8(bytes).map_err(|e| HeaderError::Utf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Decodes a header value into a message.
pub fn decode<T: DeserializeOwned>(value: &str) -> Result<T, HeaderError> {
    from_json(&decode_to_json(value)?)
}

/// Parses JSON text (a decoded header, or a v1 402 body) into a message.
pub fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, HeaderError> {
    serde_json::from_str(json).map_err(|e| json_error(&e))
}

fn json_error(e: &serde_json::Error) -> HeaderError {
    match e.classify() {
        serde_json::error::Category::Data => HeaderError::Message(e.to_string()),
        _ => HeaderError::Json(e.to_string()),
    }
}

fn base64_error(value: &str, error: &base64::DecodeError) -> HeaderError {
    use base64::DecodeError as E;
    let describe = |offset: usize, byte: u8| {
        let what = match byte {
            b'-' | b'_' => format!(
                "{:?} at offset {offset} belongs to the URL-safe alphabet; x402 headers use standard base64 (+ and /)",
                char::from(byte)
            ),
            b' ' | b'\t' | b'\r' | b'\n' => {
                format!("whitespace at offset {offset} is not allowed inside a header value")
            }
            _ if byte.is_ascii_graphic() => {
                format!(
                    "{:?} at offset {offset} is not a base64 character",
                    char::from(byte)
                )
            }
            _ => format!("byte 0x{byte:02x} at offset {offset} is not a base64 character"),
        };
        HeaderError::Base64(what)
    };
    match *error {
        E::InvalidByte(offset, byte) => describe(offset, byte),
        E::InvalidLastSymbol(offset, byte) => HeaderError::Base64(format!(
            "last symbol {:?} at offset {offset} has non-zero trailing bits (not canonical base64)",
            char::from(byte)
        )),
        E::InvalidLength(len) => HeaderError::Base64(format!(
            "length {len} is not valid for padded base64 (input is {} characters)",
            value.len()
        )),
        E::InvalidPadding => HeaderError::Base64("missing or misplaced '=' padding".to_owned()),
    }
}

/// Any x402 message, told apart by its shape.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived message values, never stored in bulk"
)]
pub enum Decoded {
    /// A 402 answer (`accepts`).
    PaymentRequired(PaymentRequired),
    /// A payment (`payload`).
    PaymentPayload(PaymentPayload),
    /// A settlement receipt (`success`).
    Settlement(SettleResponse),
}

impl Decoded {
    /// A short name of the message kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PaymentRequired(_) => "payment-required",
            Self::PaymentPayload(_) => "payment-payload",
            Self::Settlement(_) => "settlement-response",
        }
    }

    /// The message as JSON.
    pub fn to_json(&self) -> Value {
        let value = match self {
            Self::PaymentRequired(m) => serde_json::to_value(m),
            Self::PaymentPayload(m) => serde_json::to_value(m),
            Self::Settlement(m) => serde_json::to_value(m),
        };
        value.unwrap_or(Value::Null)
    }
}

/// Decodes any x402 header value (`PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE`, `X-PAYMENT`,
/// `PAYMENT-RESPONSE`, `X-PAYMENT-RESPONSE`) without being told which it is.
pub fn decode_any(value: &str) -> Result<Decoded, HeaderError> {
    from_json_any(&decode_to_json(value)?)
}

/// Parses any x402 message from JSON text (e.g. a v1 402 body).
pub fn from_json_any(json: &str) -> Result<Decoded, HeaderError> {
    let value: Value = serde_json::from_str(json).map_err(|e| json_error(&e))?;
    let Value::Object(object) = &value else {
        return Err(HeaderError::Message("expected a JSON object".to_owned()));
    };
    let parsed = if object.contains_key("accepts") {
        serde_json::from_value(value).map(Decoded::PaymentRequired)
    } else if object.contains_key("payload") {
        serde_json::from_value(value).map(Decoded::PaymentPayload)
    } else if object.contains_key("success") {
        serde_json::from_value(value).map(Decoded::Settlement)
    } else {
        let keys: Vec<String> = object.keys().take(12).map(|k| format!("{k:?}")).collect();
        return Err(HeaderError::Unrecognized(keys.join(", ")));
    };
    parsed.map_err(|e| json_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_at_the_problem() {
        assert_eq!(decode_to_json(""), Err(HeaderError::Empty));
        let big = "A".repeat(MAX_HEADER_LEN + 4);
        assert!(matches!(
            decode_to_json(&big),
            Err(HeaderError::TooLarge { .. })
        ));

        let err = decode_to_json("eyJh-In0=").unwrap_err().to_string();
        assert!(err.contains("URL-safe"), "{err}");
        let err = decode_to_json("eyJh In0=").unwrap_err().to_string();
        assert!(err.contains("whitespace at offset 4"), "{err}");
        let err = decode_to_json("eyJhIjo").unwrap_err().to_string();
        assert!(err.contains("base64"), "{err}");
        // "/w==" decodes to 0xff, which is not UTF-8.
        assert_eq!(decode_to_json("/w=="), Err(HeaderError::Utf8 { offset: 0 }));
        // "e30" unpadded `{}`.
        assert!(decode_to_json("e30").is_err(), "padding is required");
    }

    #[test]
    fn json_and_message_errors_differ() {
        let not_json = STANDARD.encode("{\"a\":");
        assert!(matches!(
            decode::<Value>(&not_json),
            Err(HeaderError::Json(_))
        ));
        let wrong = STANDARD.encode(r#"{"x402Version":3,"accepts":[]}"#);
        let err = decode::<PaymentRequired>(&wrong).unwrap_err();
        assert!(
            err.to_string().contains("unsupported x402Version 3"),
            "{err}"
        );
        let unknown = STANDARD.encode(r#"{"hello":1}"#);
        let err = decode_any(&unknown).unwrap_err().to_string();
        assert!(err.contains("\"hello\""), "{err}");
        assert!(matches!(
            decode_any(&STANDARD.encode("[1]")),
            Err(HeaderError::Message(_))
        ));
    }
}
