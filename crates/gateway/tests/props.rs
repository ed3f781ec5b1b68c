//! Property tests of request-path normalisation ([hardening]): `obol_gateway::path::check` and
//! `obol_gateway::proxy::upstream_url`.
//!
//! - Any path built from safe segments (unreserved and sub-delim characters, dots that do not
//!   make a whole `.`/`..` segment, and percent-escapes of harmless characters in either case)
//!   passes, and `upstream_url` maps it under the offer's upstream base, on the same origin,
//!   unchanged.
//! - Any path with a dot segment — literal, or with each dot percent-encoded up to three times
//!   over (`.`, `%2e`, `%252e`, `%25252e`, hex in either case) — is refused as a dot segment,
//!   and `upstream_url` refuses it too.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use axum::http::Method;
use obol_gateway::path::{PathError, check};
use obol_gateway::proxy::upstream_url;
use obol_gateway::{Offer, OfferKind, SettleMode};
use proptest::prelude::*;

const PREFIX: &str = "/services/foo";
const BASE: &str = "http://127.0.0.1:9/api/foo";

fn offer(kind: OfferKind) -> Arc<Offer> {
    Arc::new(Offer {
        namespace: "default".into(),
        name: "foo".into(),
        kind,
        upstream: BASE.parse().unwrap(),
        strip_prefix: PREFIX.into(),
        upstream_auth: None,
        options: Vec::new(),
        description: String::new(),
        mime_type: "application/json".into(),
        settle: SettleMode::ServeFirst,
        limits: Default::default(),
        hostname: None,
        discovery: None,
        mcp: None,
    })
}

/// Printable ASCII that is harmless once decoded: not `.`, `/`, `\` or `%`.
fn harmless_byte() -> impl Strategy<Value = u8> {
    (0x20u8..0x7f).prop_filter("harmful once decoded", |b| !b".%/\\".contains(b))
}

/// One piece of a safe segment.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9_~!$&'()*+,;=:@-]{1,6}",
        1 => Just(".".to_owned()),
        1 => (harmless_byte(), any::<bool>()).prop_map(|(b, upper)| {
            if upper { format!("%{b:02X}") } else { format!("%{b:02x}") }
        }),
        1 => Just("caf%C3%A9".to_owned()),
    ]
}

/// The segment as one round of percent-decoding leaves it (escapes of harmless bytes only).
fn decoded(segment: &str) -> String {
    let mut out = String::new();
    let mut rest = segment;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        out.push(char::from(
            u8::from_str_radix(&rest[i + 1..i + 3], 16).unwrap(),
        ));
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}

/// A segment that is not `.` or `..`, literally or once decoded.
fn safe_segment() -> impl Strategy<Value = String> {
    proptest::collection::vec(piece(), 1..4)
        .prop_map(|pieces| pieces.concat())
        .prop_filter("a dot segment", |s| {
            let d = decoded(s);
            d != "." && d != ".."
        })
}

fn safe_segments(max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(safe_segment(), 0..max)
}

/// `.` percent-encoded `depth` times: `.`, `%2e`, `%252e`, `%25252e` (hex case per `upper`).
fn encoded_dot(depth: usize, upper: bool) -> String {
    match depth {
        0 => ".".to_owned(),
        _ => format!(
            "%{}{}",
            "25".repeat(depth - 1),
            if upper { "2E" } else { "2e" }
        ),
    }
}

/// `.` or `..`, each dot encoded to its own depth in 0..=3.
fn dot_segment() -> impl Strategy<Value = String> {
    proptest::collection::vec((0usize..=3, any::<bool>()), 1..=2).prop_map(|dots| {
        dots.into_iter()
            .map(|(depth, upper)| encoded_dot(depth, upper))
            .collect()
    })
}

proptest! {
    #[test]
    fn safe_paths_pass_and_stay_under_the_base(
        segments in safe_segments(6),
        trailing_slash in any::<bool>(),
        under_prefix in any::<bool>(),
        query in proptest::option::of("[a-z0-9=&]{0,12}"),
    ) {
        let mut rest = segments.iter().map(|s| format!("/{s}")).collect::<String>();
        if trailing_slash {
            rest.push('/');
        }
        let path = if under_prefix { format!("{PREFIX}{rest}") } else { rest.clone() };
        prop_assert_eq!(check(&path), Ok(()), "{}", path);

        let url = upstream_url(&offer(OfferKind::Http), &Method::GET, &path, query.as_deref()).unwrap();
        prop_assert_eq!(url.scheme(), "http");
        prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
        prop_assert_eq!(url.port(), Some(9));
        prop_assert_eq!(url.query(), query.as_deref());
        // The path below the prefix (or the whole path when it is not under it), verbatim.
        let below = if under_prefix { rest } else { path.clone() };
        let want = if below.is_empty() { "/api/foo/".to_owned() } else { format!("/api/foo{below}") };
        prop_assert_eq!(url.path(), want.as_str(), "{}", path);
    }

    #[test]
    fn chat_rewrites_stay_under_the_base(segments in safe_segments(4), post in any::<bool>()) {
        let path = format!("{PREFIX}{}", segments.iter().map(|s| format!("/{s}")).collect::<String>());
        let method = if post { Method::POST } else { Method::GET };
        let url = upstream_url(&offer(OfferKind::Inference), &method, &path, None).unwrap();
        prop_assert!(url.path().starts_with("/api/foo/"), "{} → {}", path, url.path());
        prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
    }

    #[test]
    fn dot_segments_are_refused_at_any_depth(
        before in safe_segments(4),
        dots in dot_segment(),
        after in safe_segments(3),
        trailing_slash in any::<bool>(),
    ) {
        let mut path = PREFIX.to_owned();
        for segment in before.iter().chain([&dots]).chain(&after) {
            path.push('/');
            path.push_str(segment);
        }
        if trailing_slash {
            path.push('/');
        }
        prop_assert_eq!(check(&path), Err(PathError::DotSegment), "{}", path);
        prop_assert!(upstream_url(&offer(OfferKind::Http), &Method::GET, &path, None).is_err(), "{}", path);
        prop_assert!(upstream_url(&offer(OfferKind::Inference), &Method::POST, &path, None).is_err(), "{}", path);
    }
}
