//! # obol-devnet — a local EVM chain for development and tests
//!
//! [`Anvil::spawn`] finds the anvil binary ([`find_anvil`]: `OBOL_ANVIL`, then `PATH`, then the
//! project tools directory), starts it on `127.0.0.1` with a free port and the chosen chain id,
//! waits until it answers `eth_chainId`, and kills it when the handle is dropped.
//!
//! [`Devnet::start`] goes further: it places our own contracts at the Base Sepolia addresses
//! (EIP-3009 USDC, EIP-2612 OBOL, Permit2, the x402 exact and upto Permit2 proxies, the ERC-8004
//! Identity Registry), so the built-in token registry, the spec's EIP-712 domains and unmodified
//! x402 clients all work against it, and funds the ten dev accounts with both tokens.

#[cfg(feature = "testing")]
pub mod bench;
mod contracts;
#[cfg(feature = "testing")]
pub mod tap;

pub use contracts::{IDENTITY_REGISTRY, OBOL, USDC};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
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
    /// A committed contract artifact is unusable.
    #[error("contract artifact {name}: {reason}")]
    Artifact {
        /// The contract.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A setup call to the devnet failed.
    #[error("devnet setup: {0}")]
    Setup(String),
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

/// Installs [`ANVIL_NPM_PACKAGE`] with npm under `tools` (npm's output goes to this process's
/// stderr) and returns the binary.
pub async fn install_anvil(tools: &Path) -> Result<PathBuf, DevnetError> {
    let spawn_error = |source| DevnetError::Spawn {
        path: PathBuf::from("npm"),
        source,
    };
    std::fs::create_dir_all(tools).map_err(spawn_error)?;
    let status = Command::new("npm")
        .args(["install", "--prefix"])
        .arg(tools)
        .args([
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            ANVIL_NPM_PACKAGE,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .map_err(spawn_error)?;
    if !status.success() {
        return Err(DevnetError::Setup(format!(
            "npm install {ANVIL_NPM_PACKAGE} failed ({status})"
        )));
    }
    anvil_in(tools).ok_or_else(|| DevnetError::AnvilNotFound {
        tools: tools.display().to_string(),
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
        Self::spawn_inner(chain_id, None).await
    }

    /// Starts anvil in its own process group with its output in `log`, so that it outlives
    /// this process (`obol devnet up`). Dropping the handle leaves it running; stop it by its
    /// [`Anvil::pid`].
    pub async fn spawn_detached(chain_id: u64, log: &Path) -> Result<Self, DevnetError> {
        Self::spawn_inner(chain_id, Some(log)).await
    }

    /// Starts the anvil binary at `path` on a free loopback port with `chain_id`.
    pub async fn spawn_at(path: &Path, chain_id: u64) -> Result<Self, DevnetError> {
        Self::spawn_path(path.to_path_buf(), chain_id, None).await
    }

    async fn spawn_inner(chain_id: u64, detached_log: Option<&Path>) -> Result<Self, DevnetError> {
        Self::spawn_path(find_anvil()?, chain_id, detached_log).await
    }

    async fn spawn_path(
        path: PathBuf,
        chain_id: u64,
        detached_log: Option<&Path>,
    ) -> Result<Self, DevnetError> {
        let spawn_error = |source| DevnetError::Spawn {
            path: path.clone(),
            source,
        };
        let mut last_error = None;
        // A freed port can be taken by someone else before anvil binds it: try a few.
        for _ in 0..3 {
            let port = free_port().await.map_err(spawn_error)?;
            let mut command = Command::new(&path);
            command
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--chain-id", &chain_id.to_string(), "--silent"])
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            match detached_log {
                Some(log) => {
                    let file = std::fs::File::create(log).map_err(spawn_error)?;
                    command.stderr(Stdio::from(file)).kill_on_drop(false);
                    #[cfg(unix)]
                    command.process_group(0);
                }
                None => {
                    command.stderr(Stdio::piped()).kill_on_drop(true);
                }
            }
            let child = command.spawn().map_err(spawn_error)?;
            let mut anvil = Self {
                child,
                port,
                chain_id,
            };
            match anvil
                .wait_ready(Duration::from_secs(15), detached_log)
                .await
            {
                Ok(()) => return Ok(anvil),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(DevnetError::NotReady {
            port: 0,
            reason: "no attempt made".into(),
        }))
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn wait_ready(
        &mut self,
        budget: Duration,
        log: Option<&Path>,
    ) -> Result<(), DevnetError> {
        let deadline = Instant::now() + budget;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr).await;
                } else if let Some(log) = log {
                    stderr = std::fs::read_to_string(log).unwrap_or_default();
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

/// Tokens minted to each dev account: 1 000 000 USDC.
pub const USDC_FUNDING: u128 = 1_000_000 * 10u128.pow(6);
/// Tokens minted to each dev account: 1 000 000 OBOL.
pub const OBOL_FUNDING: u128 = 1_000_000 * 10u128.pow(18);

/// A running devnet with our contracts and funded dev accounts.
#[derive(Debug, Clone)]
pub struct Devnet {
    anvil: Arc<Anvil>,
}

impl Devnet {
    /// Starts anvil on chain 84532, places the contracts, and funds every dev account with
    /// [`USDC_FUNDING`] and [`OBOL_FUNDING`].
    pub async fn start() -> Result<Self, DevnetError> {
        Self::ready(Anvil::spawn().await?).await
    }

    /// [`Devnet::start`] with the anvil binary at `path`.
    pub async fn start_with_anvil(path: &Path) -> Result<Self, DevnetError> {
        Self::ready(Anvil::spawn_at(path, DEFAULT_CHAIN_ID).await?).await
    }

    async fn ready(anvil: Anvil) -> Result<Self, DevnetError> {
        install(&anvil.endpoint()).await?;
        Ok(Self {
            anvil: Arc::new(anvil),
        })
    }

    /// The JSON-RPC URL.
    pub fn endpoint(&self) -> String {
        self.anvil.endpoint()
    }

    /// The chain id (84532).
    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// The devnet as a chain with one write-enabled endpoint (for a chain client or a
    /// facilitator).
    pub fn endpoints(&self) -> obol_config::ChainEndpoints {
        obol_config::ChainEndpoints {
            chain_id: self.chain_id(),
            endpoints: vec![obol_config::Endpoint {
                url: self.endpoint(),
                allow_writes: true,
            }],
        }
    }

    /// Dev account `index`'s private key (0 is the token minter).
    pub fn key(&self, index: usize) -> &'static str {
        DEV_KEYS[index % DEV_KEYS.len()]
    }
}

/// Sets the code of `address` and the given storage slots on the anvil at `endpoint` (a test
/// contract, e.g. a contract wallet, without deploying it).
pub async fn set_account(
    endpoint: &str,
    address: alloy::primitives::Address,
    code: alloy::primitives::Bytes,
    storage: &[(alloy::primitives::B256, alloy::primitives::B256)],
) -> Result<(), DevnetError> {
    use alloy::providers::{Provider as _, ProviderBuilder};

    let setup = |e: &dyn std::fmt::Display| DevnetError::Setup(e.to_string());
    let provider = ProviderBuilder::new().connect_http(endpoint.parse().map_err(|e| setup(&e))?);
    provider
        .raw_request::<_, ()>("anvil_setCode".into(), (address, code))
        .await
        .map_err(|e| setup(&format!("anvil_setCode: {e}")))?;
    for (slot, value) in storage {
        provider
            .raw_request::<_, bool>("anvil_setStorageAt".into(), (address, slot, value))
            .await
            .map_err(|e| setup(&format!("anvil_setStorageAt: {e}")))?;
    }
    Ok(())
}

/// Places our contracts on the anvil at `endpoint` and funds every dev account with
/// [`USDC_FUNDING`] and [`OBOL_FUNDING`]. Runs once per fresh chain (`initialize` refuses a
/// second call).
pub async fn install(endpoint: &str) -> Result<(), DevnetError> {
    place(endpoint, &contracts::PLACEMENTS).await
}

/// Places another EIP-3009 stablecoin (our TestUSDC: 6 decimals, EIP-712 `"USDC"` version
/// `"2"`) at `address` and funds every dev account with [`USDC_FUNDING`] of it: a token no
/// built-in table knows, for tests of paying in one.
pub async fn place_stablecoin(
    endpoint: &str,
    address: alloy::primitives::Address,
) -> Result<(), DevnetError> {
    let coin = contracts::Placement {
        address,
        ..contracts::TEST_USDC
    };
    place(endpoint, &[coin]).await
}

/// Sets the code of each placement, then initializes each token and mints its funding to every
/// dev account, and waits until all of it is mined.
async fn place(endpoint: &str, placements: &[contracts::Placement]) -> Result<(), DevnetError> {
    use alloy::network::EthereumWallet;
    use alloy::providers::{Provider as _, ProviderBuilder};
    use alloy::signers::local::PrivateKeySigner;

    let setup = |e: &dyn std::fmt::Display| DevnetError::Setup(e.to_string());
    let minter: PrivateKeySigner = DEV_KEYS[0].parse().map_err(|e| setup(&e))?;
    let url = endpoint.parse().map_err(|e| setup(&e))?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(minter.clone()))
        .connect_http(url);
    for placement in placements {
        let code = placement.runtime_code()?;
        provider
            .raw_request::<_, ()>("anvil_setCode".into(), (placement.address, code))
            .await
            .map_err(|e| setup(&format!("anvil_setCode {}: {e}", placement.name)))?;
    }
    let holders = DEV_KEYS
        .iter()
        .map(|key| key.parse::<PrivateKeySigner>().map(|s| s.address()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup(&e))?;
    let mut last = None;
    for placement in placements {
        let Some(amount) = placement.funding else {
            continue;
        };
        let token = contracts::IDevToken::new(placement.address, &provider);
        let init = token.initialize(minter.address());
        last = Some(init.send().await.map_err(|e| setup(&e))?);
        for holder in &holders {
            let mint = token.mint(*holder, alloy::primitives::U256::from(amount));
            last = Some(mint.send().await.map_err(|e| setup(&e))?);
        }
    }
    // anvil mines each transaction at once; waiting for the last one confirms them all.
    if let Some(pending) = last {
        let receipt = pending.get_receipt().await.map_err(|e| setup(&e))?;
        if !receipt.status() {
            return Err(DevnetError::Setup("funding transaction reverted".into()));
        }
    }
    Ok(())
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

    #[tokio::test]
    async fn devnet_mirrors_base_sepolia_and_funds_the_dev_accounts() {
        use alloy::primitives::{U256, b256};
        use alloy::providers::{Provider as _, ProviderBuilder};
        use alloy::signers::local::PrivateKeySigner;

        alloy::sol! {
            #[sol(rpc)]
            interface IDomain {
                function DOMAIN_SEPARATOR() external view returns (bytes32);
                function balanceOf(address owner) external view returns (uint256);
            }
        }
        let devnet = Devnet::start().await.unwrap();
        assert_eq!(devnet.chain_id(), 84532);
        let provider = ProviderBuilder::new().connect_http(devnet.endpoint().parse().unwrap());
        // The spec's domain separators (x402.md §5.2): the devnet signs exactly like Base Sepolia.
        let usdc = IDomain::new(USDC, &provider);
        assert_eq!(
            usdc.DOMAIN_SEPARATOR().call().await.unwrap(),
            b256!("0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818")
        );
        let permit2 = IDomain::new(obol_x402::token::PERMIT2, &provider);
        assert_eq!(
            permit2.DOMAIN_SEPARATOR().call().await.unwrap(),
            b256!("0x010f27a92fb9a32622f44f001dc4d15706a85b33499cfc2ce9033113ab26592c")
        );
        for key in DEV_KEYS {
            let holder = key.parse::<PrivateKeySigner>().unwrap().address();
            assert_eq!(
                usdc.balanceOf(holder).call().await.unwrap(),
                U256::from(USDC_FUNDING)
            );
            let obol = IDomain::new(OBOL, &provider);
            assert_eq!(
                obol.balanceOf(holder).call().await.unwrap(),
                U256::from(OBOL_FUNDING)
            );
        }
        assert!(
            !provider
                .get_code_at(IDENTITY_REGISTRY)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
