//! Who may use the buyer proxy: agents, never a web page the user happens to open (the
//! `Origin`, `Content-Type` and `Host` rules in [`super`]'s documentation).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{BuyError, BuyerProxy};

/// The `Origin` and `Host` checks in front of every route.
pub(super) async fn guard(
    State(proxy): State<Arc<BuyerProxy>>,
    request: Request,
    next: Next,
) -> Response {
    match proxy.admit(&request) {
        Ok(()) => next.run(request).await,
        Err(error) => {
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                %error,
                "buyer proxy refused a request"
            );
            error.into_response()
        }
    }
}

/// A POST body must be declared `application/json` (parameters such as `charset` allowed).
pub(super) fn require_json(headers: &HeaderMap) -> Result<(), BuyError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_json = declared.as_deref().is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    });
    if is_json {
        Ok(())
    } else {
        Err(BuyError::UnsupportedMediaType(declared.map_or_else(
            || "a body without Content-Type".to_owned(),
            |v| format!("{v:?}"),
        )))
    }
}

/// `localhost` (a trailing dot allowed), `127.0.0.0/8` or `[::1]` (an IPv4-mapped loopback
/// too), with or without a port.
pub(super) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok
            && inside.parse::<Ipv6Addr>().is_ok_and(|ip| {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            });
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| IpAddr::V4(ip).is_loopback())
}

/// A decimal TCP port.
fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LocalHost:8402",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:8402",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:8402",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8402",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8402",
            "0.0.0.0:8402",
            "[::]:8402",
            "[::1",
            "[::1]x",
            "localhost:port",
            "localhost:99999",
            "127.1",
            "::1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn json_content_types() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            require_json(&headers)
        };
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON; charset=utf-8").is_ok());
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            assert!(
                matches!(with(refused), Err(BuyError::UnsupportedMediaType(_))),
                "{refused}"
            );
        }
        assert!(require_json(&HeaderMap::new()).is_err());
    }
}
