//! Which network addresses discovery may contact.
//!
//! agentURIs and the service endpoints in documents are anyone's text: fetching them blindly
//! lets a registrant make every buyer's machine send requests to its own loopback services, its
//! router or a cloud metadata endpoint. A [`AddressPolicy::PublicOnly`] fetcher refuses hosts
//! that are IP literals of a non-public kind before connecting, resolves names itself and drops
//! non-public answers ([`PublicOnlyResolver`]), and checks every redirect the same way.
//!
//! Non-public ([`is_public_ip`] is false): loopback, private (RFC 1918), shared (RFC 6598),
//! link-local, unspecified, broadcast, multicast, documentation and benchmarking ranges, IPv6
//! unique-local and site-local, and IPv4-mapped forms of any of these.
//!
//! An HTTP proxy configured in the environment resolves names itself: only IP literals are then
//! checked here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which hosts a fetcher may contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// Any host: for URLs the user typed.
    #[default]
    Any,
    /// Public addresses only: for URLs read from the chain or from documents.
    PublicOnly,
}

/// True when `ip` is a public unicast address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || ip.to_ipv4().is_some_and(|v4| !is_public_v4(v4))) // IPv4-compatible ::a.b.c.d
}

/// The refusal a [`PublicOnlyResolver`] answers with, recognisable in a request error's source
/// chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to no public address")]
pub struct NonPublicHost {
    /// The name looked up.
    pub host: String,
}

/// A DNS resolver that keeps public addresses only; a name with none is a [`NonPublicHost`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| is_public_ip(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(NonPublicHost { host }) as Box<_>);
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// True when `url`'s host is an IP literal that is not public (names are checked when
/// resolved).
pub fn is_non_public_literal(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !is_public_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public_ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) | None => false,
    }
}

/// True when `error` (or anything in its source chain) is a [`NonPublicHost`] refusal.
pub fn is_non_public_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<NonPublicHost>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_non_public_addresses() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "104.16.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public_ip(public.parse().unwrap()), "{public}");
        }
        for private in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
        ] {
            assert!(!is_public_ip(private.parse().unwrap()), "{private}");
        }
    }

    #[test]
    fn literal_hosts() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(is_non_public_literal(&url("http://127.0.0.1:8080/x")));
        assert!(is_non_public_literal(&url("http://[::1]/x")));
        assert!(
            is_non_public_literal(&url("http://0x7f.1/x")),
            "hex forms parse as IPv4"
        );
        assert!(!is_non_public_literal(&url("https://8.8.8.8/")));
        assert!(
            !is_non_public_literal(&url("http://localhost/")),
            "names are the resolver's"
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_loopback_answers() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let Err(error) = PublicOnlyResolver.resolve(name).await else {
            panic!("localhost resolved to a public address");
        };
        assert!(is_non_public_error(error.as_ref()), "{error}");
    }
}
