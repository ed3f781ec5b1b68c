//! The public base URL: where buyers elsewhere reach this stack. It appears in `resource.url`
//! of 402 answers, in storefront links and in the ERC-8004 agentURI.

use std::fmt;

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
