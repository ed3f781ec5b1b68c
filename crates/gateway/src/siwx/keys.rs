//! The stack's sign-in key (HMAC-SHA256, 32 random bytes in a 0600 file, made at first start):
//! it issues nonces statelessly and signs session tokens, so neither is stored anywhere.
//! Deleting the file ends every session and voids every nonce not yet used.
//!
//! - nonce: 16 bytes as 32 hex digits (alphanumeric, as EIP-4361 wants) = issue time (u32
//!   seconds) ‖ 4 random bytes ‖ the first 8 bytes of HMAC("obol-siwx-nonce" ‖ the first 8).
//! - session token: `siwx1.<base64url(JSON claims)>.<base64url(HMAC("obol-siwx-session." ‖
//!   the claims part))>`, checked in constant time.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use obol_x402::primitives::Address;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const NONCE_LABEL: &[u8] = b"obol-siwx-nonce";
const SESSION_LABEL: &[u8] = b"obol-siwx-session.";
const TOKEN_PREFIX: &str = "siwx1.";

/// Who signed in: the wallet and the chain it signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The wallet.
    pub wallet: Address,
    /// The EVM chain id of the sign-in.
    pub chain_id: u64,
}

/// A session token's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Address,
    chain: u64,
    aud: String,
    iat: u64,
    exp: u64,
}

/// Why a session token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Not one of ours, altered, or for another offer.
    Invalid,
    /// Ours, but past its end.
    Expired,
}

/// The HMAC key. `Debug` never shows it.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

impl SessionKey {
    /// A fresh random key (tests, or a stack without a config directory).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self(key)
    }

    /// The key in `path` (64 hex digits), created there (0600) when absent.
    pub fn load_or_create(path: &Path) -> Result<Self, obol_config::ConfigError> {
        if let Some(text) = obol_config::fs::read_optional(path)? {
            let mut key = [0u8; 32];
            let text = text.trim();
            let bytes = (0..text.len())
                .step_by(2)
                .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    obol_config::ConfigError::Invalid(format!(
                        "{} is not a sign-in key (64 hex digits); delete it to make a new one (this signs everyone out)",
                        path.display()
                    ))
                })?;
            key.copy_from_slice(&bytes);
            return Ok(Self(key));
        }
        let key = Self::random();
        let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        obol_config::fs::write_private(path, format!("{hex}\n").as_bytes())?;
        Ok(key)
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(label);
        mac.update(data);
        mac
    }

    /// A nonce issued at `now` (unix seconds).
    pub fn nonce(&self, now: u64) -> String {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&u32::try_from(now).unwrap_or(u32::MAX).to_be_bytes());
        rand::thread_rng().fill_bytes(&mut bytes[4..8]);
        let tag = self.mac(NONCE_LABEL, &bytes[..8]).finalize().into_bytes();
        bytes[8..].copy_from_slice(&tag[..8]);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// When `nonce` was issued, if it is one of ours.
    pub fn nonce_issued(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(nonce.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        self.mac(NONCE_LABEL, &bytes[..8])
            .verify_truncated_left(&bytes[8..])
            .ok()?;
        let mut issued = [0u8; 4];
        issued.copy_from_slice(&bytes[..4]);
        Some(u64::from(u32::from_be_bytes(issued)))
    }

    /// A token for `identity` on `audience` (the offer's origin and path), valid `ttl` seconds
    /// from `now`.
    pub fn issue(&self, identity: Identity, audience: &str, now: u64, ttl: u64) -> String {
        let claims = Claims {
            sub: identity.wallet,
            chain: identity.chain_id,
            aud: audience.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl),
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let tag = URL_SAFE_NO_PAD.encode(
            self.mac(SESSION_LABEL, body.as_bytes())
                .finalize()
                .into_bytes(),
        );
        format!("{TOKEN_PREFIX}{body}.{tag}")
    }

    /// The identity and end (unix seconds) of a token of ours for `audience`.
    pub fn verify(
        &self,
        token: &str,
        audience: &str,
        now: u64,
    ) -> Result<(Identity, u64), SessionError> {
        let (body, tag) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(SessionError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| SessionError::Invalid)?;
        self.mac(SESSION_LABEL, body.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| SessionError::Invalid)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(SessionError::Invalid)?;
        if claims.aud != audience {
            return Err(SessionError::Invalid);
        }
        if now >= claims.exp {
            return Err(SessionError::Expired);
        }
        Ok((
            Identity {
                wallet: claims.sub,
                chain_id: claims.chain,
            },
            claims.exp,
        ))
    }
}

/// Whether `value` looks like one of our session tokens (to keep it from the upstream).
pub fn is_session_token(value: &str) -> bool {
    value.starts_with(TOKEN_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALLET: Address =
        obol_x402::primitives::address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

    #[test]
    fn nonces_are_ours_and_carry_their_time() {
        let key = SessionKey::random();
        let nonce = key.nonce(1_800_000_000);
        assert_eq!(nonce.len(), 32);
        assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key.nonce_issued(&nonce), Some(1_800_000_000));
        assert_ne!(key.nonce(1_800_000_000), nonce, "random part");
        assert_eq!(
            SessionKey::random().nonce_issued(&nonce),
            None,
            "another key"
        );
        let mut forged = nonce.clone().into_bytes();
        forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(key.nonce_issued(&String::from_utf8(forged).unwrap()), None);
        for bad in ["", "zz", &"g".repeat(32), &nonce[..30]] {
            assert_eq!(key.nonce_issued(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_bind_wallet_audience_and_time() {
        let key = SessionKey::random();
        let me = Identity {
            wallet: WALLET,
            chain_id: 84532,
        };
        let token = key.issue(me, "https://x/services/a", 1000, 60);
        assert!(is_session_token(&token));
        assert_eq!(
            key.verify(&token, "https://x/services/a", 1059),
            Ok((me, 1060))
        );
        assert_eq!(
            key.verify(&token, "https://x/services/a", 1060),
            Err(SessionError::Expired)
        );
        assert_eq!(
            key.verify(&token, "https://x/services/b", 1000),
            Err(SessionError::Invalid),
            "another offer"
        );
        assert_eq!(
            SessionKey::random().verify(&token, "https://x/services/a", 1000),
            Err(SessionError::Invalid),
            "another key"
        );
        // An altered claim (a longer expiry) breaks the tag.
        let forged = key
            .issue(me, "https://x/services/a", 1000, 999_999)
            .split('.')
            .nth(1)
            .unwrap()
            .to_owned();
        let tag = token.rsplit('.').next().unwrap();
        assert_eq!(
            key.verify(
                &format!("siwx1.{forged}.{tag}"),
                "https://x/services/a",
                1000
            ),
            Err(SessionError::Invalid)
        );
        for bad in ["", "siwx1.", "siwx1.a.b", "Bearer x", "siwx1.!!.!!"] {
            assert_eq!(key.verify(bad, "a", 0), Err(SessionError::Invalid), "{bad}");
        }
    }

    #[test]
    fn the_key_file_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("siwx-session.key");
        let first = SessionKey::load_or_create(&path).unwrap();
        let again = SessionKey::load_or_create(&path).unwrap();
        assert_eq!(first.0, again.0);
        assert_eq!(format!("{first:?}"), "SessionKey(***)");
        std::fs::write(&path, "not hex").unwrap();
        assert!(SessionKey::load_or_create(&path).is_err());
    }
}
