//! `cloudflared`'s output: read line by line (a line is cut at [`MAX_LINE`] bytes), kept
//! sanitised in a rotating log file, and searched for the quick tunnel's URL. The output is
//! untrusted: it is never logged or stored raw, and only a URL of the exact quick-tunnel
//! shape is taken from it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use obol_config::text::printable;
use tokio::io::AsyncReadExt as _;

/// The longest line kept; the rest of a longer line is dropped.
pub(crate) const MAX_LINE: usize = 4096;

/// The log file's size at which it is rotated to `<file>.1` (the previous `.1` dropped).
pub(crate) const MAX_LOG_BYTES: u64 = 1 << 20;

/// Sends each line `reader` yields (cut at [`MAX_LINE`], lossily decoded) until it ends or the
/// receiver is gone.
pub(crate) async fn forward_lines(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    tx: tokio::sync::mpsc::Sender<String>,
) {
    let mut chunk = [0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut overflow = false;
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &chunk[..read] {
            if byte == b'\n' {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_owned();
                line.clear();
                overflow = false;
                if tx.send(text).await.is_err() {
                    return;
                }
            } else if line.len() < MAX_LINE {
                line.push(byte);
            } else if !overflow {
                overflow = true;
            }
        }
    }
    if !line.is_empty() {
        let _ = tx.send(String::from_utf8_lossy(&line).into_owned()).await;
    }
}

/// The quick tunnel's URL in `line`: `https://<label>.trycloudflare.com` where the label is
/// lower-case letters, digits and hyphens with at least one hyphen (Cloudflare's
/// `words-words-…` names; `api.trycloudflare.com`, which cloudflared asks for a tunnel, never
/// matches).
pub(crate) fn quick_url(line: &str) -> Option<String> {
    const SUFFIX: &str = ".trycloudflare.com";
    let mut rest = line;
    while let Some(start) = rest.find("https://") {
        let after = &rest[start + "https://".len()..];
        let label_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(after.len());
        let label = &after[..label_len];
        let ends_cleanly = after[label_len..].strip_prefix(SUFFIX).is_some_and(|end| {
            end.chars()
                .next()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        });
        if ends_cleanly
            && (1..=63).contains(&label.len())
            && label.contains('-')
            && !label.starts_with('-')
            && !label.ends_with('-')
        {
            return Some(format!("https://{label}{SUFFIX}"));
        }
        rest = after;
    }
    None
}

/// The tunnel's log: sanitised lines appended, rotated at [`MAX_LOG_BYTES`].
pub(crate) struct TunnelLog {
    path: PathBuf,
    max_bytes: u64,
}

impl TunnelLog {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            max_bytes: MAX_LOG_BYTES,
        }
    }

    #[cfg(test)]
    fn with_limit(path: &Path, max_bytes: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            max_bytes,
        }
    }

    /// Appends `line` (escaped: control characters and bidi marks shown, never interpreted).
    /// A write failure is logged once per call and otherwise ignored: the tunnel keeps running.
    pub(crate) fn append(&self, line: &str) {
        if let Err(error) = self.try_append(&printable(line, MAX_LINE)) {
            tracing::warn!(%error, path = %self.path.display(), "cannot write the tunnel log");
        }
    }

    fn try_append(&self, line: &str) -> std::io::Result<()> {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.max_bytes) {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.path)?;
        writeln!(file, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_quick_tunnel_url_is_taken_from_a_line() {
        let boxed = "2024-05-01T10:00:00Z INF |  https://seasonal-deck-organisms-sf.trycloudflare.com                                 |";
        assert_eq!(
            quick_url(boxed).as_deref(),
            Some("https://seasonal-deck-organisms-sf.trycloudflare.com")
        );
        for not_one in [
            "ERR failed to request quick Tunnel: Post \"https://api.trycloudflare.com/tunnel\": EOF",
            "https://a-b.trycloudflare.com.evil.example",
            "https://a-b.trycloudflare.community",
            "https://-ab.trycloudflare.com",
            "https://Upper-Case.trycloudflare.com",
            "https://a-b.example.com",
            "http://a-b.trycloudflare.com",
            "https://x\u{202e}-y.trycloudflare.com",
            "",
        ] {
            assert_eq!(quick_url(not_one), None, "{not_one:?}");
        }
        assert_eq!(
            quick_url("see https://api.trycloudflare.com then https://one-two.trycloudflare.com/")
                .as_deref(),
            Some("https://one-two.trycloudflare.com")
        );
    }

    #[tokio::test]
    async fn lines_are_split_cut_and_the_last_one_kept() {
        let long = "x".repeat(MAX_LINE + 100);
        let input = format!("first\r\n{long}\nlast without newline");
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        forward_lines(input.as_bytes(), tx).await;
        assert_eq!(rx.recv().await.as_deref(), Some("first"));
        assert_eq!(rx.recv().await.map(|l| l.len()), Some(MAX_LINE));
        assert_eq!(rx.recv().await.as_deref(), Some("last without newline"));
        assert_eq!(rx.recv().await, None);
    }

    #[test]
    fn the_log_is_sanitised_private_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnel.log");
        let log = TunnelLog::with_limit(&path, 64);
        log.append("hello \u{1b}[31mred\u{202e}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "hello \\u{1b}[31mred\\u{202e}\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for i in 0..10 {
            log.append(&format!("line {i} padding padding"));
        }
        let rotated = dir.path().join("tunnel.log.1");
        assert!(rotated.exists());
        assert!(std::fs::metadata(&path).unwrap().len() < 128);
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.ends_with("line 9 padding padding\n"), "{current}");
    }
}
