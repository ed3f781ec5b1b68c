//! The public base URL: where buyers elsewhere reach this stack. It appears in `resource.url`
//! of 402 answers, in storefront links and in the ERC-8004 agentURI.
//!
//! A running stack holds it in one [`SharedPublicUrl`]: a tunnel (`obol tunnel up`) replaces
//! it while the stack serves, and every reader (the paygate, the storefront, sign-in, the
//! reconciler) sees the new value on its next request.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use url::Url;

use crate::ConfigError;

/// Where the public URL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--public-url`.
    Flag,
    /// `OBOL_PUBLIC_URL`.
    Env,
    /// `publicUrl` in the stack settings.
    Config,
    /// Nothing set: the local gateway URL, which only this machine can reach.
    LocalDefault,
    /// The URL a running tunnel was given (`obol tunnel up`).
    Tunnel,
}

impl Source {
    /// True for `--public-url` and `OBOL_PUBLIC_URL`: the operator pinned the URL, and a
    /// tunnel's URL is not published.
    pub fn is_pinned(self) -> bool {
        matches!(self, Self::Flag | Self::Env)
    }
}

/// A validated base URL without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    base: String,
    source: Source,
}

impl PublicUrl {
    /// Picks the first of flag, environment and config, else `local_default`.
    pub fn resolve(
        flag: Option<&str>,
        env: Option<&str>,
        config: Option<&str>,
        local_default: &str,
    ) -> Result<Self, ConfigError> {
        let (value, source) = if let Some(v) = non_empty(flag) {
            (v, Source::Flag)
        } else if let Some(v) = non_empty(env) {
            (v, Source::Env)
        } else if let Some(v) = non_empty(config) {
            (v, Source::Config)
        } else {
            (local_default, Source::LocalDefault)
        };
        Ok(Self {
            base: validate(value)?,
            source,
        })
    }

    /// A tunnel's URL (validated like any other).
    pub fn tunnel(url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            base: validate(url)?,
            source: Source::Tunnel,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// Where it came from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// True when nothing was configured and buyers elsewhere cannot reach the stack.
    pub fn is_local_default(&self) -> bool {
        self.source == Source::LocalDefault
    }

    /// `base + path` (`path` starts with `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }
}

/// The stack's public URL as it is now, shared by everything that publishes it; cheap to
/// clone and to read (a lock-free swap). Unset (the default): nothing publishes a URL, and
/// answers derive it from the request's forwarded headers.
#[derive(Clone, Default)]
pub struct SharedPublicUrl(Arc<ArcSwapOption<PublicUrl>>);

impl SharedPublicUrl {
    /// Holding `url`.
    pub fn new(url: PublicUrl) -> Self {
        Self(Arc::new(ArcSwapOption::from_pointee(url)))
    }

    /// The URL now, if set.
    pub fn get(&self) -> Option<Arc<PublicUrl>> {
        self.0.load_full()
    }

    /// The URL now when buyers elsewhere can reach it (set and not the local default).
    pub fn published(&self) -> Option<Arc<PublicUrl>> {
        self.get().filter(|url| !url.is_local_default())
    }

    /// Replaces the URL; true when the base URL changed.
    pub fn replace(&self, url: PublicUrl) -> bool {
        let previous = self.0.swap(Some(Arc::new(url)));
        previous.as_deref().map(PublicUrl::as_str) != self.get().as_deref().map(PublicUrl::as_str)
    }
}

impl fmt::Debug for SharedPublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedPublicUrl").field(&self.get()).finish()
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// Checks `http(s)://host[:port][/path]` with no query, fragment or credentials, and trims the
/// trailing slash.
pub fn validate(value: &str) -> Result<String, ConfigError> {
    let invalid = |why: &str| ConfigError::Invalid(format!("invalid public URL {value:?}: {why}"));
    let url = Url::parse(value).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("a host is required"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a base URL cannot carry a query or a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("a public URL cannot carry credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let local = "http://127.0.0.1:8080";
        let r = PublicUrl::resolve(
            Some("https://flag.example/"),
            Some("https://env.example"),
            Some("https://cfg.example"),
            local,
        )
        .unwrap();
        assert_eq!(
            (r.as_str(), r.source()),
            ("https://flag.example", Source::Flag)
        );
        let r = PublicUrl::resolve(
            None,
            Some("https://env.example"),
            Some("https://cfg.example"),
            local,
        )
        .unwrap();
        assert_eq!(r.source(), Source::Env);
        let r =
            PublicUrl::resolve(Some(" "), None, Some("https://cfg.example/base/"), local).unwrap();
        assert_eq!(
            (r.as_str(), r.source()),
            ("https://cfg.example/base", Source::Config)
        );
        assert_eq!(r.join("/skill.md"), "https://cfg.example/base/skill.md");
        let r = PublicUrl::resolve(None, None, None, local).unwrap();
        assert!(r.is_local_default());
        assert_eq!(r.to_string(), local);
    }

    #[test]
    fn a_shared_url_is_replaced_for_every_clone_and_says_when_it_changed() {
        let unset = SharedPublicUrl::default();
        assert!(unset.get().is_none() && unset.published().is_none());
        let local = PublicUrl::resolve(None, None, None, "http://127.0.0.1:8080").unwrap();
        let shared = SharedPublicUrl::new(local.clone());
        let reader = shared.clone();
        assert_eq!(reader.get().unwrap().as_str(), "http://127.0.0.1:8080");
        assert!(
            reader.published().is_none(),
            "the local default is not published"
        );
        let tunnel = PublicUrl::tunnel("https://a-b-c.trycloudflare.com/").unwrap();
        assert!(shared.replace(tunnel.clone()));
        assert!(!shared.replace(tunnel), "the same URL again is no change");
        let now = reader.published().unwrap();
        assert_eq!(
            (now.as_str(), now.source()),
            ("https://a-b-c.trycloudflare.com", Source::Tunnel)
        );
        assert!(shared.replace(local));
        assert!(reader.published().is_none());
        assert!(Source::Flag.is_pinned() && Source::Env.is_pinned());
        assert!(!Source::Config.is_pinned() && !Source::Tunnel.is_pinned());
        assert!(PublicUrl::tunnel("ftp://x").is_err());
    }

    #[test]
    fn rejects_what_cannot_be_a_base_url() {
        for bad in [
            "ftp://x",
            "not a url",
            "https://x/?a=1",
            "https://x/#f",
            "https://u:p@x",
            "/relative",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
