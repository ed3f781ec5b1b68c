//! Endpoint URLs that never print their secrets.

use std::fmt;

use url::Url;

use crate::ChainError;

/// Path segments longer than this are treated as secrets (`/v2/<32-char key>`).
const MAX_PLAIN_SEGMENT: usize = 10;

/// A JSON-RPC endpoint URL. `Display` and `Debug` redact credentials, query values and long path
/// segments; [`RpcUrl::expose`] gives the real URL to the transport, and to nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcUrl {
    url: Url,
    redacted: String,
}

impl RpcUrl {
    /// Parses an `http` or `https` URL.
    pub fn parse(text: &str) -> Result<Self, ChainError> {
        let invalid = |reason: String| ChainError::InvalidUrl {
            url: redact(text),
            reason,
        };
        let url = Url::parse(text.trim()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not supported; use http or https",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("a host is required".to_owned()));
        }
        let redacted = redact_url(&url);
        Ok(Self { url, redacted })
    }

    /// The real URL, for the HTTP transport only.
    pub fn expose(&self) -> &Url {
        &self.url
    }

    /// True for loopback hosts (short receipt polling, no TLS needed).
    pub fn is_loopback(&self) -> bool {
        match self.url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        }
    }

    /// Replaces every occurrence of the real URL in `text` (an error message from a lower layer)
    /// with the redacted form.
    pub fn scrub(&self, text: &str) -> String {
        let real = self.url.as_str();
        text.replace(real, &self.redacted).replace(
            real.trim_end_matches('/'),
            self.redacted.trim_end_matches('/'),
        )
    }
}

impl fmt::Display for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for RpcUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RpcUrl({})", self.redacted)
    }
}

/// Redacts a URL given as text; text that is not a URL is hidden entirely.
pub fn redact(text: &str) -> String {
    Url::parse(text.trim()).map_or_else(|_| "<invalid URL>".to_owned(), |u| redact_url(&u))
}

fn redact_url(url: &Url) -> String {
    let mut out = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str("***@");
    }
    match url.host() {
        Some(url::Host::Ipv6(ip)) => out.push_str(&format!("[{ip}]")),
        Some(host) => out.push_str(&host.to_string()),
        None => {}
    }
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    let path: Vec<&str> = url
        .path()
        .split('/')
        .map(|segment| {
            if segment.len() > MAX_PLAIN_SEGMENT {
                "***"
            } else {
                segment
            }
        })
        .collect();
    let path = path.join("/");
    if path != "/" {
        out.push_str(&path);
    }
    if let Some(query) = url.query() {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}=***"),
                None => "***".to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_keys_wherever_they_hide() {
        let table = [
            ("https://host/v2/SECRETSECRETSECRET", "https://host/v2/***"),
            (
                "https://eth-mainnet.g.alchemy.com/v2/abcdefghijklmnopqrstuvwxyz012345",
                "https://eth-mainnet.g.alchemy.com/v2/***",
            ),
            (
                "https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef",
                "https://mainnet.infura.io/v3/***",
            ),
            (
                "https://x.quiknode.pro/0123456789abcdef/",
                "https://x.quiknode.pro/***/",
            ),
            (
                "https://rpc.example/?apikey=SECRET&x=1",
                "https://rpc.example?apikey=***&x=***",
            ),
            (
                "https://user:pass@rpc.example/rpc",
                "https://***@rpc.example/rpc",
            ),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://[::1]:8545/", "http://[::1]:8545"),
            ("https://sepolia.base.org", "https://sepolia.base.org"),
            (
                "http://obol.stack:8080/rpc/evm/84532",
                "http://obol.stack:8080/rpc/evm/84532",
            ),
            ("not a url SECRET", "<invalid URL>"),
        ];
        for (input, want) in table {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn display_and_debug_never_show_the_secret() {
        let url = RpcUrl::parse("https://host/v2/SECRETSECRETSECRET").unwrap();
        assert_eq!(url.to_string(), "https://host/v2/***");
        assert!(!format!("{url:?}").contains("SECRET"));
        assert_eq!(url.expose().path(), "/v2/SECRETSECRETSECRET");
        let scrubbed =
            url.scrub("error sending request for url (https://host/v2/SECRETSECRETSECRET)");
        assert_eq!(
            scrubbed,
            "error sending request for url (https://host/v2/***)"
        );
    }

    #[test]
    fn rejects_non_http_urls_without_echoing_them() {
        let err = RpcUrl::parse("wss://host/v2/SECRETSECRETSECRET")
            .unwrap_err()
            .to_string();
        assert!(err.contains("use http or https"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        assert!(RpcUrl::parse("http://127.0.0.1:1").unwrap().is_loopback());
        assert!(!RpcUrl::parse("https://base.org").unwrap().is_loopback());
    }
}
