//! Request paths that could leave their prefix once decoded.
//!
//! A router matches the raw path, while an upstream (or a URL library on the way to it) may
//! decode and collapse it: `/services/foo/%2e%2e/%2e%2e/admin` matches `foo` at the gateway
//! and reaches `/admin` behind it. So a path whose segments decode (once or more: `%252e`) to
//! `.` or `..`, or to anything holding `/`, `\` or a control character, is refused outright.
//! The seller's gateway checks every request with it; the buyer's proxy its `/upstream` paths.

/// How many rounds of percent-decoding are undone when looking for a hidden segment
/// (`%25252e` is three); deeper nesting is refused as suspicious.
const MAX_DECODE_ROUNDS: usize = 4;

/// Why a request path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `.` or `..` segment, literal or percent-encoded.
    #[error("the path has a dot segment (. or ..), literal or percent-encoded")]
    DotSegment,
    /// An encoded `/` inside a segment.
    #[error("the path has an encoded slash (%2F) inside a segment")]
    EncodedSlash,
    /// A backslash, literal or encoded.
    #[error("the path has a backslash, literal or percent-encoded")]
    Backslash,
    /// A NUL or another control character, after decoding.
    #[error("the path has a control character, after decoding")]
    Control,
    /// Percent-encoding nested deeper than anyone legitimately sends.
    #[error("the path is percent-encoded too many times over")]
    NestedEncoding,
}

/// Refuses a request path (no query) that could leave its route after decoding.
pub fn check(path: &str) -> Result<(), PathError> {
    path.split('/').try_for_each(check_segment)
}

fn check_segment(raw: &str) -> Result<(), PathError> {
    let mut segment = std::borrow::Cow::Borrowed(raw);
    for round in 0..=MAX_DECODE_ROUNDS {
        if segment.contains('\\') {
            return Err(PathError::Backslash);
        }
        if round > 0 && segment.contains('/') {
            return Err(PathError::EncodedSlash);
        }
        if segment.chars().any(char::is_control) {
            return Err(PathError::Control);
        }
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
        let Some(decoded) = decode_once(&segment) else {
            return Ok(());
        };
        segment = std::borrow::Cow::Owned(decoded);
    }
    Err(PathError::NestedEncoding)
}

/// One round of percent-decoding (invalid UTF-8 replaced); `None` when nothing was encoded.
fn decode_once(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
            changed = true;
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    changed.then(|| String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_escape_form() {
        for (path, want) in [
            ("/services/foo/../admin", PathError::DotSegment),
            ("/services/foo/./x", PathError::DotSegment),
            ("/services/foo/%2e%2e/%2e%2e/admin", PathError::DotSegment),
            ("/services/foo/%2E%2e/admin", PathError::DotSegment),
            ("/services/foo/.%2E/admin", PathError::DotSegment),
            ("/services/foo/%252e%252e/admin", PathError::DotSegment),
            ("/services/foo/%25252e%25252e/admin", PathError::DotSegment),
            ("/services/foo/..%2fadmin", PathError::EncodedSlash),
            ("/services/foo/a%2Fb", PathError::EncodedSlash),
            ("/services/foo/a%252fb", PathError::EncodedSlash),
            ("/services/foo/..\\admin", PathError::Backslash),
            ("/services/foo/%5c..", PathError::Backslash),
            ("/services/foo/%255C", PathError::Backslash),
            ("/services/foo/a%00", PathError::Control),
            ("/services/foo/a%0d%0aX", PathError::Control),
            ("/services/foo/%2525252525", PathError::NestedEncoding),
        ] {
            assert_eq!(check(path), Err(want), "{path}");
        }
    }

    #[test]
    fn keeps_ordinary_paths() {
        for path in [
            "/",
            "/services/foo",
            "/services/foo/",
            "/services/foo/v1/chat/completions",
            "/services/foo/a.b/c..d/...",
            "/services/foo/100%25",
            "/services/foo/caf%C3%A9",
            "/services/foo/%zz",
            "/services/foo//double",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }
}
