//! # obol-devnet — a local EVM chain for development and tests
//!
//! [`Anvil::spawn`] finds the anvil binary ([`find_anvil`]: `OBOL_ANVIL`, then `PATH`, then the
//! project tools directory), starts it on `127.0.0.1` with a free port and the chosen chain id,
//! waits until it answers `eth_chainId`, and kills it when the handle is dropped.
//!
//! Contract deployment and token funding arrive with the facilitator work; this crate starts
//! with what every chain test needs: a real node on loopback.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use obol_config::env;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// The npm package and version `scripts/install-tools` installs.
pub const ANVIL_NPM_PACKAGE: &str = "@foundry-rs/anvil-linux-amd64@1.7.1";

/// Base Sepolia's chain id, the devnet default (tokens and registries mirror Base Sepolia).
pub const DEFAULT_CHAIN_ID: u64 = 84532;

/// The ten well-known anvil development keys (mnemonic `test test … junk`), each funded with
/// 10 000 ETH at genesis. Public knowledge: never use them on a real chain.
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// Why the devnet could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevnetError {
    /// No anvil binary was found.
    #[error(
        "anvil not found (looked at ${var}, on PATH and in {tools}); install it with `scripts/install-tools` (npm package {pkg}) or point {var} at a binary",
        var = env::ANVIL,
        pkg = ANVIL_NPM_PACKAGE
    )]
    AnvilNotFound {
        /// The tools directories searched, for the message.
        tools: String,
    },
    /// anvil could not be started.
    #[error("cannot start {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// anvil exited or did not answer in time.
    #[error("anvil did not become ready on port {port}: {reason}")]
    NotReady {
        /// The port it was given.
        port: u16,
        /// What happened.
        reason: String,
    },
}

/// Where to look for anvil: `$OBOL_ANVIL`, then `PATH`, then `<tools>/node_modules/@foundry-rs/
/// anvil-*/bin/anvil` in `$OBOL_TOOLS_DIR` or any `.tools` directory above the current one.
pub fn find_anvil() -> Result<PathBuf, DevnetError> {
    if let Some(path) = std::env::var_os(env::ANVIL).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    if let Some(paths) = std::env::var_os("PATH")
        && let Some(found) = std::env::split_paths(&paths)
            .map(|dir| dir.join("anvil"))
            .find(|p| p.is_file())
    {
        return Ok(found);
    }
    let tool_dirs = tool_dirs();
    tool_dirs
        .iter()
        .find_map(|dir| anvil_in(dir))
        .ok_or_else(|| DevnetError::AnvilNotFound {
            tools: tool_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn tool_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os(env::TOOLS_DIR)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.extend(
            cwd.ancestors()
                .map(|dir| dir.join(".tools"))
                .filter(|d| d.is_dir()),
        );
    }
    dirs
}

fn anvil_in(tools: &Path) -> Option<PathBuf> {
    let scope = tools.join("node_modules/@foundry-rs");
    std::fs::read_dir(scope)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin/anvil"))
        .find(|p| p.is_file())
}

/// A running anvil, killed when dropped.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
    chain_id: u64,
}

impl Anvil {
    /// Starts anvil with [`DEFAULT_CHAIN_ID`].
    pub async fn spawn() -> Result<Self, DevnetError> {
        Self::spawn_with_chain_id(DEFAULT_CHAIN_ID).await
    }

    /// Starts anvil on a free loopback port with `chain_id`, and waits until it answers.
    pub async fn spawn_with_chain_id(chain_id: u64) -> Result<Self, DevnetError> {
        let path = find_anvil()?;
        let mut last_error = None;
        // A freed port can be taken by someone else before anvil binds it: try a few.
        for _ in 0..3 {
            let port = free_port().await.map_err(|source| DevnetError::Spawn {
                path: path.clone(),
                source,
            })?;
            let child = Command::new(&path)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--chain-id", &chain_id.to_string(), "--silent"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| DevnetError::Spawn {
                    path: path.clone(),
                    source,
                })?;
            let mut anvil = Self {
                child,
                port,
                chain_id,
            };
            match anvil.wait_ready(Duration::from_secs(15)).await {
                Ok(()) => return Ok(anvil),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(DevnetError::NotReady {
            port: 0,
            reason: "no attempt made".into(),
        }))
    }

    async fn wait_ready(&mut self, budget: Duration) -> Result<(), DevnetError> {
        let deadline = Instant::now() + budget;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr).await;
                }
                return Err(DevnetError::NotReady {
                    port: self.port,
                    reason: format!("exited with {status}: {}", stderr.trim()),
                });
            }
            if chain_id_of(self.port).await == Some(self.chain_id) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DevnetError::NotReady {
                    port: self.port,
                    reason: format!("no answer to eth_chainId within {budget:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The JSON-RPC URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }
}

async fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

/// Asks a loopback JSON-RPC server for its chain id with a bare HTTP/1.1 request (no client
/// library needed to know whether the node is up).
async fn chain_id_of(port: u16) -> Option<u64> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()??;
    let hex = response
        .split("\"result\":\"0x")
        .nth(1)?
        .split('"')
        .next()?;
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawns_answers_and_dies_on_drop() {
        let anvil = Anvil::spawn_with_chain_id(31337).await.unwrap();
        assert_eq!(chain_id_of(anvil.port()).await, Some(31337));
        assert!(anvil.endpoint().starts_with("http://127.0.0.1:"));
        let port = anvil.port();
        drop(anvil);
        // The process is killed; the port stops answering.
        let mut gone = false;
        for _ in 0..100 {
            if chain_id_of(port).await.is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "anvil still answering after drop");
    }
}
