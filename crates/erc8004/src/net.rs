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
//! unique-local and site-local, and every IPv6 address that embeds an IPv4 address of these
//! kinds and may be delivered to it: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
//! (`::a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`, RFC 2765), NAT64 (`64:ff9b::a.b.c.d`,
//! RFC 6052; and the local-use `64:ff9b:1::/48`, RFC 8215, where the IPv4 address sits wherever
//! the operator's prefix length puts it: every possible position is checked), 6to4
//! (`2002:AABB:CCDD::/48`) and Teredo (server and client addresses).
//!
//! A public-only fetcher does not use an HTTP proxy from the environment (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY`): a proxy resolves names itself, so none of the checks above would
//! apply to them, and the proxy could reach the internal names.

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

/// True when `ip` is a public unicast address (and, for IPv6 forms that embed an IPv4
/// address, that address is public too).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
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

/// True when `ip` is inside the machine or its networks: loopback, private, link-local or
/// shared (CGNAT) space.
fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    if ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
    // documentation
    {
        return false;
    }
    match embedded_ipv4(ip) {
        Embedded::None => true,
        Embedded::One(v4) => is_public_v4(v4),
        Embedded::LocalNat64 { last, others } => {
            is_public_v4(last) && !others.into_iter().any(is_internal_v4)
        }
        Embedded::Teredo { server, client } => is_public_v4(server) && is_public_v4(client),
    }
}

/// The IPv4 address(es) an IPv6 address carries and may be delivered to.
#[derive(Debug, PartialEq, Eq)]
enum Embedded {
    /// A plain IPv6 address.
    None,
    /// IPv4-mapped, IPv4-compatible, IPv4-translated, well-known NAT64 or 6to4.
    One(Ipv4Addr),
    /// Local-use NAT64 (`64:ff9b:1::/48`): the IPv4 address is in the last 32 bits with a /96
    /// prefix (the usual layout), or at the /48, /56 or /64 positions of RFC 6052 §2.2.
    LocalNat64 {
        /// The /96 layout's address.
        last: Ipv4Addr,
        /// The /48, /56 and /64 layouts' addresses.
        others: [Ipv4Addr; 3],
    },
    /// Teredo (`2001::/32`): the server's address, and the client's (stored inverted).
    Teredo {
        /// The Teredo server.
        server: Ipv4Addr,
        /// The client's public address.
        client: Ipv4Addr,
    },
}

fn embedded_ipv4(ip: Ipv6Addr) -> Embedded {
    let o = ip.octets();
    let s = ip.segments();
    let v4 = |a: u8, b: u8, c: u8, d: u8| Ipv4Addr::new(a, b, c, d);
    let last = v4(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible; `::` and `::1` are handled before).
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Embedded::One(last),
        // ::ffff:0:a.b.c.d (IPv4-translated).
        [0, 0, 0, 0, 0xffff, 0, _, _] => Embedded::One(last),
        // 64:ff9b::/96 (NAT64 well-known prefix).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Embedded::One(last),
        // 64:ff9b:1::/48 (NAT64 local-use prefix).
        [0x64, 0xff9b, 1, ..] => Embedded::LocalNat64 {
            last,
            others: [
                v4(o[6], o[7], o[9], o[10]),
                v4(o[7], o[9], o[10], o[11]),
                v4(o[9], o[10], o[11], o[12]),
            ],
        },
        // 2002:AABB:CCDD::/48 (6to4).
        [0x2002, ..] => Embedded::One(v4(o[2], o[3], o[4], o[5])),
        // 2001:0::/32 (Teredo).
        [0x2001, 0, ..] => Embedded::Teredo {
            server: v4(o[4], o[5], o[6], o[7]),
            client: v4(!o[12], !o[13], !o[14], !o[15]),
        },
        _ => Embedded::None,
    }
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

    /// IPv6 forms that carry an IPv4 address are as public as that address.
    #[test]
    fn embedded_ipv4_addresses() {
        for public in [
            "::ffff:0:808:808",          // IPv4-translated 8.8.8.8
            "64:ff9b::808:808",          // NAT64 8.8.8.8
            "64:ff9b::1.1.1.1",          // NAT64, dotted
            "64:ff9b:1::808:808",        // local-use NAT64 with the usual /96 layout
            "64:ff9b:1:abcd::808:808",   // …under a longer operator prefix
            "2002:808:808::1",           // 6to4 of 8.8.8.8
            "2001:0:808:808::f7f7:f7f7", // Teredo: server and client 8.8.8.8
        ] {
            assert!(is_public_ip(public.parse().unwrap()), "{public}");
        }
        for private in [
            "::ffff:0:7f00:1",           // IPv4-translated 127.0.0.1
            "::ffff:0:169.254.169.254",  // IPv4-translated metadata endpoint
            "::ffff:0:a00:1",            // IPv4-translated 10.0.0.1
            "64:ff9b::7f00:1",           // NAT64 127.0.0.1
            "64:ff9b::10.0.0.1",         // NAT64, dotted
            "64:ff9b::a9fe:a9fe",        // NAT64 169.254.169.254
            "64:ff9b::c0a8:101",         // NAT64 192.168.1.1
            "64:ff9b::6440:1",           // NAT64 100.64.0.1
            "64:ff9b:1::a00:1",          // local-use NAT64 /96: 10.0.0.1
            "64:ff9b:1::7f00:1",         // local-use NAT64 /96: 127.0.0.1
            "64:ff9b:1:a00:0:100::",     // local-use NAT64 /48 layout: 10.0.0.1
            "64:ff9b:1:c0:a8:1::",       // local-use NAT64 /56 layout: 192.168.0.1
            "64:ff9b:1:0:7f:0:100:0",    // local-use NAT64 /64 layout: 127.0.0.1
            "2002:7f00:1::1",            // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::",          // 6to4 of 169.254.169.254
            "2001:0:7f00:1::f7f7:f7f7",  // Teredo server 127.0.0.1
            "2001:0:808:808::f5ff:fffe", // Teredo client 10.0.0.1
        ] {
            assert!(!is_public_ip(private.parse().unwrap()), "{private}");
        }
        assert_eq!(
            embedded_ipv4("64:ff9b:1:a00:0:100::".parse().unwrap()),
            Embedded::LocalNat64 {
                last: Ipv4Addr::UNSPECIFIED,
                others: [
                    Ipv4Addr::new(10, 0, 0, 1),
                    Ipv4Addr::new(0, 0, 1, 0),
                    Ipv4Addr::new(0, 1, 0, 0),
                ],
            }
        );
        assert_eq!(
            embedded_ipv4("64:ff9b::a9fe:a9fe".parse().unwrap()),
            Embedded::One(Ipv4Addr::new(169, 254, 169, 254))
        );
        assert_eq!(
            embedded_ipv4("2606:4700::1111".parse().unwrap()),
            Embedded::None
        );
        // Literal hosts in URLs go through the same check.
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(is_non_public_literal(&url(
            "http://[64:ff9b::7f00:1]:8080/"
        )));
        assert!(is_non_public_literal(&url("http://[::ffff:0:a00:1]/")));
        assert!(!is_non_public_literal(&url("http://[64:ff9b::808:808]/")));
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
