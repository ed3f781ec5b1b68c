//! A client of any x402 facilitator (ours, x402-rs, the TS reference, CDP).
//!
//! It tolerates every status convention of x402.md §4.2: a 200 with `isValid:false`, and 400 /
//! 412 / 500 answers whose body is a verify or settle response, are answers; 502–504 and
//! transport failures are retriable errors; anything else is a non-retriable error with a
//! sanitised excerpt of the body.

use std::time::Duration;

use async_trait::async_trait;
use obol_x402::wire::{
    SettleRequest, SettleResponse, SupportedResponse, VerifyRequest, VerifyResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::{Facilitator, FacilitatorError};

/// Timeouts and credentials of a [`RemoteFacilitator`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
    /// Budget of `/verify` (default 5 s).
    pub verify_timeout: Duration,
    /// Budget of `/settle` (default 60 s: a block and a margin on slow chains).
    pub settle_timeout: Duration,
    /// Budget of `/supported` (default 10 s).
    pub supported_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            bearer: None,
            verify_timeout: Duration::from_secs(5),
            settle_timeout: Duration::from_secs(60),
            supported_timeout: Duration::from_secs(10),
        }
    }
}

/// Hosts allowed over plain `http`: this machine, and the container-host aliases.
const PLAIN_HTTP_HOSTS: [&str; 5] = [
    "localhost",
    "127.0.0.1",
    "[::1]",
    "host.docker.internal",
    "host.k3d.internal",
];

/// A facilitator reached over HTTP.
#[derive(Clone)]
pub struct RemoteFacilitator {
    base: Url,
    http: reqwest::Client,
    options: ClientOptions,
}

impl std::fmt::Debug for RemoteFacilitator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFacilitator")
            .field("base", &self.base.as_str())
            .field("bearer", &self.options.bearer.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl RemoteFacilitator {
    /// A client of the facilitator at `base` (e.g. `https://x402.example/facilitator`).
    /// `https` is required, except for loopback and container-host aliases.
    pub fn new(base: &str, options: ClientOptions) -> Result<Self, FacilitatorError> {
        let config =
            |why: String| FacilitatorError::Config(format!("facilitator URL {base:?}: {why}"));
        let mut url = Url::parse(base.trim()).map_err(|e| config(e.to_string()))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        match url.scheme() {
            "https" => {}
            "http" if PLAIN_HTTP_HOSTS.contains(&host.as_str()) || host.starts_with("127.") => {}
            "http" => return Err(config("https is required except for localhost".into())),
            other => return Err(config(format!("unsupported scheme {other:?}"))),
        }
        // A trailing slash is stripped; paths join as `<base>/verify`.
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{trimmed}/"));
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "obol-facilitator-client/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| config(e.to_string()))?;
        Ok(Self {
            base: url,
            http,
            options,
        })
    }

    fn error(&self, status: Option<u16>, message: String, retriable: bool) -> FacilitatorError {
        FacilitatorError::Remote {
            url: self.base.as_str().trim_end_matches('/').to_owned(),
            status,
            message,
            retriable,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
        timeout: Duration,
        answer_key: &str,
    ) -> Result<T, FacilitatorError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| self.error(None, e.to_string(), false))?;
        let mut request = match body {
            Some(body) => self.http.post(url).json(body),
            None => self.http.get(url),
        }
        .timeout(timeout);
        if let Some(token) = &self.options.bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                format!("no answer within {timeout:?}")
            } else {
                format!("unreachable: {}", obol_config::errors::chain(&e))
            };
            self.error(None, what, true)
        })?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.error(Some(status), format!("reading the answer: {e}"), true))?;
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let is_answer = parsed.as_ref().is_some_and(|v| v.get(answer_key).is_some());
        match (status, parsed) {
            (200..=299 | 400 | 412 | 500, Some(parsed))
                if is_answer || (200..300).contains(&status) =>
            {
                serde_json::from_value(parsed)
                    .map_err(|e| self.error(Some(status), format!("unexpected answer: {e}"), false))
            }
            // Not JSON at all: the parser's own message (the only path that parses twice).
            (200..=299, None) => serde_json::from_slice(&bytes)
                .map_err(|e| self.error(Some(status), format!("unexpected answer: {e}"), false)),
            (502..=504, _) => Err(self.error(
                Some(status),
                format!("HTTP {status}: {}", excerpt(&bytes)),
                true,
            )),
            _ => Err(self.error(
                Some(status),
                format!("HTTP {status}: {}", excerpt(&bytes)),
                false,
            )),
        }
    }
}

/// A short, single-line, printable excerpt of an untrusted body.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if clean.trim().is_empty() {
        "(empty body)".to_owned()
    } else {
        clean
    }
}

#[async_trait]
impl Facilitator for RemoteFacilitator {
    async fn verify(&self, request: &VerifyRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.call(
            "verify",
            Some(request),
            self.options.verify_timeout,
            "isValid",
        )
        .await
    }

    async fn settle(&self, request: &SettleRequest) -> Result<SettleResponse, FacilitatorError> {
        self.call(
            "settle",
            Some(request),
            self.options.settle_timeout,
            "success",
        )
        .await
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        self.call(
            "supported",
            None::<&()>,
            self.options.supported_timeout,
            "kinds",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_except_locally() {
        for ok in [
            "https://facilitator.example",
            "https://facilitator.example/x402/",
            "http://127.0.0.1:4040",
            "http://localhost:4040/",
            "http://host.k3d.internal:8404",
        ] {
            assert!(
                RemoteFacilitator::new(ok, ClientOptions::default()).is_ok(),
                "{ok}"
            );
        }
        for bad in ["http://facilitator.example", "ftp://x", "not a url"] {
            assert!(
                RemoteFacilitator::new(bad, ClientOptions::default()).is_err(),
                "{bad}"
            );
        }
        let client =
            RemoteFacilitator::new("https://f.example/base/", ClientOptions::default()).unwrap();
        assert_eq!(
            client.base.join("verify").unwrap().as_str(),
            "https://f.example/base/verify"
        );
    }

    #[test]
    fn excerpts_are_single_line_and_bounded() {
        assert_eq!(excerpt(b"a\nb\r\x1b[31m"), "a b  [31m");
        assert_eq!(excerpt(&[b'x'; 1000]).len(), 200);
        assert_eq!(excerpt(b""), "(empty body)");
    }
}
