//! Request paths: `obol_gateway::path::check` and `obol_gateway::proxy::upstream_url`.
//!
//! Input: a mode byte, then the path (UTF-8). Mode bits: bit 0 prefixes the path with the
//! offer's public prefix `/services/foo/`; bit 1 makes the offer an inference offer (chat-path
//! rewriting); bit 2 makes the request a POST.
//!
//! Invariants:
//! - `check` never panics; when it passes, no segment percent-decodes (repeatedly, byte-wise,
//!   an implementation independent of the gateway's) to `.` or `..`, to anything holding `/`
//!   or `\`, or to an ASCII control character, and the path has no `\`;
//! - `upstream_url` for an offer whose upstream is `http://127.0.0.1:9/api/foo` only ever
//!   answers a URL on the same origin whose path is `/api/foo` or below `/api/foo/`, whose
//!   segments again hold no dot segment at any decoding depth, and it answers one for every
//!   path starting with `/` that `check` passes.

#![no_main]

use axum::http::Method;
use libfuzzer_sys::fuzz_target;
use obol_fuzz::{UPSTREAM_BASE, decoded_forms};
use obol_gateway::OfferKind;
use obol_gateway::path::check;
use obol_gateway::proxy::upstream_url;

static HTTP: std::sync::LazyLock<std::sync::Arc<obol_gateway::Offer>> =
    std::sync::LazyLock::new(|| obol_fuzz::offer(OfferKind::Http, UPSTREAM_BASE));
static INFERENCE: std::sync::LazyLock<std::sync::Arc<obol_gateway::Offer>> =
    std::sync::LazyLock::new(|| obol_fuzz::offer(OfferKind::Inference, UPSTREAM_BASE));

/// No segment of `path` hides a dot segment, a separator or a control character.
fn assert_clean(path: &str, what: &str) {
    assert!(!path.contains('\\'), "{what}: backslash in {path:?}");
    for segment in path.split('/') {
        // Ten rounds: more than `check` undoes, so deeper nesting is seen too.
        for form in decoded_forms(segment.as_bytes(), 10) {
            assert!(
                form != b"." && form != b"..",
                "{what}: dot segment in {path:?}"
            );
            if form != segment.as_bytes() {
                assert!(!form.contains(&b'/'), "{what}: encoded slash in {path:?}");
            }
            assert!(
                !form.contains(&b'\\'),
                "{what}: encoded backslash in {path:?}"
            );
            assert!(
                !form.iter().any(|b| b.is_ascii_control()),
                "{what}: control character in {path:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (mode, data) = obol_fuzz::split_mode(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = if mode & 1 == 1 {
        format!("/services/foo/{text}")
    } else {
        text.to_owned()
    };
    let passed = check(&path).is_ok();
    if passed {
        assert_clean(&path, "check");
    }
    let offer = if mode & 2 == 2 { &*INFERENCE } else { &*HTTP };
    let method = if mode & 4 == 4 {
        Method::POST
    } else {
        Method::GET
    };
    match upstream_url(offer, &method, &path, Some("a=1")) {
        Ok(url) => {
            assert!(
                passed,
                "upstream_url accepted a path check refuses: {path:?}"
            );
            assert_eq!(url.scheme(), "http");
            assert_eq!(
                url.host_str(),
                Some("127.0.0.1"),
                "host changed: {path:?} → {url}"
            );
            assert_eq!(url.port(), Some(9), "port changed: {path:?} → {url}");
            assert_eq!(url.query(), Some("a=1"), "query changed: {path:?} → {url}");
            let below = url.path() == "/api/foo" || url.path().starts_with("/api/foo/");
            assert!(below, "left the base: {path:?} → {}", url.path());
            assert_clean(url.path(), "upstream_url");
        }
        // Request paths start with `/`; without one the rest is glued to the base's last
        // segment (`/api/foofoo`) and refused, which is right.
        Err(_) => assert!(
            !passed || !path.starts_with('/'),
            "check passed but upstream_url refused: {path:?}"
        ),
    }
});
