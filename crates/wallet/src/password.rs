//! Where a wallet password comes from.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use crate::WalletError;

/// The ways a password can be supplied, in precedence order.
#[derive(Debug, Clone, Default)]
pub struct PasswordSource {
    /// `--password-file`: the first line of this file.
    pub file: Option<PathBuf>,
    /// The value of `OBOL_WALLET_PASSWORD`.
    pub env: Option<String>,
    /// Whether prompting on the terminal is allowed.
    pub prompt: bool,
}

/// Reads the password: the file, else the environment, else a prompt (twice when `confirm`,
/// for a new wallet). With none of them available, the error names all three.
pub fn read_password(source: &PasswordSource, confirm: bool) -> Result<String, WalletError> {
    let password = if let Some(file) = &source.file {
        let text = std::fs::read_to_string(file).map_err(|e| WalletError::Io {
            action: "cannot read password file",
            path: file.display().to_string(),
            source: e,
        })?;
        text.lines().next().unwrap_or_default().to_owned()
    } else if let Some(env) = source.env.as_ref().filter(|v| !v.is_empty()) {
        env.clone()
    } else if source.prompt && std::io::stdin().is_terminal() {
        let first = prompt("Wallet password: ")?;
        if confirm && prompt("Repeat password: ")? != first {
            return Err(WalletError::PasswordMismatch);
        }
        first
    } else {
        return Err(WalletError::NoPassword);
    };
    if password.is_empty() {
        return Err(WalletError::EmptyPassword);
    }
    Ok(password)
}

fn prompt(text: &str) -> Result<String, WalletError> {
    rpassword::prompt_password(text).map_err(|source| WalletError::Io {
        action: "cannot read the password from",
        path: "the terminal".to_owned(),
        source,
    })
}
