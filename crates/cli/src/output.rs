//! Writing to the terminal: results to stdout, diagnostics to stderr.

use std::io::{IsTerminal as _, Write as _};

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

/// Asks `question` on the terminal; `yes` (`--yes`) answers it. Without a terminal only `yes`
/// proceeds: a script never hangs on a prompt.
pub(crate) fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("stdin is not a terminal: pass --yes to proceed without confirmation");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
