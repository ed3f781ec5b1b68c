//! Writing to the terminal: results to stdout, diagnostics to stderr.

use std::io::Write as _;

/// Prints a JSON value, pretty, on stdout. A closed pipe (`obol … | head`) is not an error.
pub(crate) fn json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Prints a human note on stderr.
pub(crate) fn note(line: &str) {
    eprintln!("{line}");
}

/// Prints an error and its causes on stderr.
pub(crate) fn error(error: &anyhow::Error) {
    eprintln!("error: {error:#}");
}
