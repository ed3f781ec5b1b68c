//! Untrusted text (seller documents, node messages, on-chain strings) made safe to print or log:
//! control characters and bidirectional-override marks are shown escaped, never interpreted, and
//! long text is cut.

/// `text` with control characters and bidi marks escaped (`\n`, `\u{1b}`, `\u{202e}`), at most
/// `max` characters then `…`.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count >= max {
            out.push('…');
            break;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_and_bidi_characters_are_escaped_and_long_text_cut() {
        assert_eq!(printable("a\nb\u{1b}[31m", 100), "a\\nb\\u{1b}[31m");
        assert_eq!(printable("pay\u{202e}lave", 100), "pay\\u{202e}lave");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("plain — text", 100), "plain — text");
    }
}
