//! # obol-daemon — the embedded stack
//!
//! [`run`] opens the store, starts the controller loops (offers and purchases), builds the
//! facilitator from the stack settings, serves the gateway on the public listener, the buyer
//! proxy and the admin API on loopback listeners, writes `<state>/daemon.json`, and stops
//! everything gracefully when `shutdown` resolves or an admin asks (`POST /v1/shutdown`).
//!
//! The admin API never shares a listener with the gateway, and refuses to listen anywhere but
//! loopback. A `cloudflared` tunnel to the gateway (`tunnel`) runs as the daemon's child; its
//! URL replaces the public URL everywhere it is published while it runs.

mod admin;
pub mod backup;
mod buyer;
pub mod doctor;
mod facilitator;
mod https;
mod public;
mod replica;
mod secrets;
mod sign_in;
mod storefront;
mod tunnel;
mod vanity;

use std::net::SocketAddr;
use std::sync::Arc;

use obol_config::stack::{
    DEFAULT_ADMIN_LISTEN, DEFAULT_BUYER_LISTEN, DEFAULT_GATEWAY_LISTEN, DaemonState, StackFile,
};
use obol_config::{Paths, PublicUrl, env, fs as private_fs};
use obol_control::{SqliteStore, Store};
use obol_gateway::guard::ReplayGuard;
use tokio::net::TcpListener;

pub use admin::{AdminClient, AdminError, AdminKind, Applied, ClusterInfo, StackStatus};
pub use buyer::run_buyer;
pub use facilitator::{FacilitatorSummary, upto_settlers_at};
pub use public::ClusterAccess;
pub use replica::{ReplicaOptions, run_replica};
pub use tunnel::{AgentUriUpdate, TunnelError, TunnelState, TunnelStatus};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// Configuration is missing or invalid.
    #[error(transparent)]
    Config(#[from] obol_config::ConfigError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] obol_control::StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Something else failed at start.
    #[error("{0}")]
    Start(String),
}

/// Options from the command line that override the settings file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--public-url`.
    pub public_url: Option<String>,
    /// Pays the embedded facilitator's gas instead of the configured wallet (`obol demo`).
    pub facilitator_signer: Option<obol_x402::LocalSigner>,
    /// `--tls-cert`/`--tls-key` (overrides the settings' `tls`).
    pub tls: Option<obol_config::stack::TlsSetting>,
}

/// Reads the admin token, creating it (0600) when missing.
pub fn admin_token(paths: &Paths) -> Result<String, DaemonError> {
    let path = paths.admin_token_file();
    if let Some(token) = private_fs::read_optional(&path)?
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
    {
        return Ok(token);
    }
    let token = obol_x402::primitives::B256::random().to_string();
    private_fs::write_private(&path, token.as_bytes())?;
    Ok(token)
}

async fn bind(address: &str) -> Result<(TcpListener, SocketAddr), DaemonError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| DaemonError::Listen {
            address: address.to_owned(),
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| DaemonError::Start(e.to_string()))?;
    Ok((listener, bound))
}

/// The shared payment store's URL: [`env::PAYMENT_STORE`], else the settings' `paymentStore`;
/// none for the embedded SQLite files. Only `postgres://` URLs are accepted.
fn payment_store_url(setting: Option<&str>) -> Result<Option<String>, DaemonError> {
    let url = std::env::var(env::PAYMENT_STORE)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| setting.map(str::to_owned));
    match url {
        Some(url) if !url.starts_with("postgres://") && !url.starts_with("postgresql://") => {
            Err(DaemonError::Start(format!(
                "payment store {}: only postgres:// URLs are supported (or none, for the \
                 embedded SQLite file)",
                redacted(&url)
            )))
        }
        url => Ok(url),
    }
}

/// The payment guard: on the shared PostgreSQL payment store when one is named (gateway
/// replicas), else the SQLite file in the state directory.
async fn payment_guard(paths: &Paths, shared: Option<&str>) -> Result<ReplayGuard, DaemonError> {
    let Some(url) = shared else {
        return ReplayGuard::open(&paths.payments_file())
            .map_err(|e| DaemonError::Start(e.to_string()));
    };
    let shown = redacted(url);
    let guard = ReplayGuard::postgres(url)
        .await
        .map_err(|e| DaemonError::Start(format!("payment store {shown}: {e}")))?;
    tracing::info!(store = %shown, "payment guard on PostgreSQL");
    Ok(guard)
}

/// `url` without its password, for messages and logs.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Chain names → ids, from the networks file as it is now (custom names such as `devnet` may
/// be added while the daemon runs).
fn chain_ids(paths: &Paths) -> obol_control::registration::ChainIdSource {
    let file = paths.networks_file();
    Arc::new(move || {
        let networks = obol_config::NetworksFile::load(&file).unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read the networks file; custom chain names are unknown");
            obol_config::NetworksFile::default()
        });
        obol_control::registration::ChainIds::from_networks(&networks)
    })
}

/// The autoRefill signer the operator configured ([`env::REFILL_KEYSTORE`] and
/// [`env::REFILL_PASSWORD_FILE`], both or neither): `None` without.
fn refill(paths: &Paths) -> Result<Option<obol_buyer::Refill>, DaemonError> {
    let keystore = std::env::var_os(env::REFILL_KEYSTORE).filter(|v| !v.is_empty());
    let password = std::env::var_os(env::REFILL_PASSWORD_FILE).filter(|v| !v.is_empty());
    let (keystore, password) = match (keystore, password) {
        (None, None) => return Ok(None),
        (Some(k), Some(p)) => (std::path::PathBuf::from(k), std::path::PathBuf::from(p)),
        _ => {
            return Err(DaemonError::Start(format!(
                "set both {} and {} for autoRefill, or neither",
                env::REFILL_KEYSTORE,
                env::REFILL_PASSWORD_FILE
            )));
        }
    };
    let source = obol_wallet::SignerSource::KeystoreFile(keystore);
    let store = obol_wallet::WalletStore::new(paths);
    let signer = source
        .load(&store, None, || {
            obol_wallet::read_password(
                &obol_wallet::PasswordSource {
                    file: Some(password),
                    env: None,
                    prompt: false,
                },
                false,
            )
        })
        .map_err(|e| DaemonError::Start(format!("the autoRefill key: {e}")))?;
    let ledger = obol_buyer::spend::SpendLedger::open(&paths.spend_file())
        .map_err(|e| DaemonError::Start(e.to_string()))?;
    let interval = std::env::var(env::REFILL_INTERVAL)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .map_or(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs_f64,
        );
    tracing::info!(signer = %signer.address(), "autoRefill enabled");
    Ok(Some(obol_buyer::Refill {
        signer,
        ledger: Arc::new(ledger),
        interval,
        ttl_secs: 7 * 86_400,
    }))
}

/// Token balances read over the chains of the networks file (re-read on each call, so a chain
/// added with `obol network add` counts at once).
struct NetworkBalances {
    file: std::path::PathBuf,
}

#[async_trait::async_trait]
impl obol_buyer::Balances for NetworkBalances {
    async fn balance(
        &self,
        chain_id: u64,
        asset: obol_x402::primitives::Address,
        owner: obol_x402::primitives::Address,
    ) -> Option<obol_x402::primitives::U256> {
        let networks = obol_config::NetworksFile::load(&self.file).ok()?;
        let (name, config) = networks
            .chains
            .iter()
            .find(|(_, config)| config.chain_id == chain_id)?;
        let client = obol_chain::ChainClient::connect(name, config).ok()?;
        client.token_balance(asset, owner).await.ok()
    }
}

/// Resolves once `tx` says stop: the one stop signal every task of a process waits on.
fn stopping(tx: &tokio::sync::watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = tx.subscribe();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Runs the stack until `shutdown` resolves (or an admin asks it to stop).
pub async fn run(
    paths: Paths,
    options: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let settings = StackFile::load(&paths.stack_file())?;
    let token = admin_token(&paths)?;

    let admin_address = settings
        .admin_listen
        .clone()
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned());
    let (admin_listener, admin_bound) = bind(&admin_address).await?;
    if !admin_bound.ip().is_loopback() {
        return Err(DaemonError::Start(format!(
            "the admin API must listen on loopback, not {admin_bound}"
        )));
    }
    let gateway_address = settings
        .gateway_listen
        .clone()
        .unwrap_or_else(|| DEFAULT_GATEWAY_LISTEN.to_owned());
    let (gateway_listener, gateway_bound) = bind(&gateway_address).await?;
    let buyer_address = settings
        .buyer_listen
        .clone()
        .unwrap_or_else(|| DEFAULT_BUYER_LISTEN.to_owned());
    let (buyer_listener, buyer_bound) = bind(&buyer_address).await?;
    if !buyer_bound.ip().is_loopback() {
        tracing::warn!(%buyer_bound, "the buyer proxy listens beyond loopback: whoever reaches it spends the pools");
    }

    let tls = https::load(options.tls.as_ref(), settings.tls.as_ref())?;
    let serves_tls = tls.is_some();
    let scheme = if serves_tls { "https" } else { "http" };
    let local_url = format!("{scheme}://{gateway_bound}");
    let public_url = PublicUrl::resolve(
        options.public_url.as_deref(),
        std::env::var(env::PUBLIC_URL).ok().as_deref(),
        settings.public_url.as_deref(),
        &local_url,
    )?;

    // The one place the public URL lives while the stack runs (a tunnel replaces it).
    let live_url = obol_config::public_url::SharedPublicUrl::new(public_url.clone());

    let sqlite_store = Arc::new(SqliteStore::open(&paths.store_file())?);
    let store: Arc<dyn Store> = sqlite_store.clone();
    let public::Public {
        routes,
        secrets,
        facilitator_summary,
        facilitator,
        reconciler,
        guard,
        siwx,
        public: gateway,
        internal,
    } = public::assemble(
        &paths,
        &settings,
        store.clone(),
        (&public_url, &live_url),
        options.facilitator_signer.as_ref(),
        None,
    )
    .await?;

    // One stop signal for every task: the caller's shutdown, or an admin's request.
    let (stop_tx, _) = tokio::sync::watch::channel(false);
    let external = {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
    };

    let buyer::Buyer {
        pool,
        proxy,
        purchases,
    } = buyer::assemble(&paths, store.clone(), buyer_bound.ip().is_loopback())?;
    let doctor_router = doctor::router(doctor::DoctorState {
        facilitator,
        guard: guard.clone(),
        pool: pool.clone(),
    });
    let stores = backup::Stores {
        state_dir: paths.state_dir.clone(),
        store: sqlite_store,
        store_path: paths.store_file(),
        guard: guard.clone(),
        guard_path: paths.payments_file(),
        pool,
        pool_path: paths.buyer_pool_file(),
        siwx: Some(siwx),
        siwx_path: paths.gating_file(),
    };

    let admin_state = admin::AdminState {
        store: store.clone(),
        routes: routes.clone(),
        token: Arc::from(token),
        stop: stop_tx.clone(),
        gateway: gateway_bound.to_string(),
        public_url: live_url.clone(),
        stack_id: settings.stack_id.clone().unwrap_or_default(),
        facilitator: facilitator_summary,
        guard: Some(guard),
        backup: Some(Arc::new(stores)),
    };
    let (publisher, agent_uris) = tunnel::publish::Publisher::new(
        live_url.clone(),
        public_url.clone(),
        tunnel::publish::AgentUris {
            paths: paths.clone(),
            store: store.clone(),
        },
    );
    let agent_uri_task = tokio::spawn(agent_uris);
    let tunnels = tunnel::Tunnels::new(
        paths.clone(),
        tunnel::origin_of(gateway_bound, serves_tls),
        serves_tls,
        publisher,
    );
    let secrets_router = secrets::router(secrets::SecretsState {
        secrets,
        store: store.clone(),
        reconciler: reconciler.clone(),
    });
    let controller = tokio::spawn(obol_control::controller::run(
        store.clone(),
        reconciler,
        stopping(&stop_tx),
    ));
    let purchase_controller = tokio::spawn(obol_control::controller::run(
        store.clone(),
        purchases.clone(),
        stopping(&stop_tx),
    ));
    let buyer_task = tokio::spawn(obol_gateway::server::serve(
        buyer_listener,
        proxy.router(),
        stopping(&stop_tx),
    ));
    let redirect_task = match tls.as_ref().and_then(|(_, s)| s.redirect_listen.as_deref()) {
        Some(address) => {
            let (listener, bound) = bind(address).await?;
            tracing::info!(%bound, "redirecting plain HTTP to HTTPS");
            tokio::spawn(obol_gateway::server::serve(
                listener,
                https::redirect(public_url.as_str()),
                stopping(&stop_tx),
            ))
        }
        None => tokio::spawn(async { Ok(()) }),
    };
    let gateway_task = tokio::spawn(https::serve(
        gateway_listener,
        tls.map(|(tls, _)| tls),
        gateway,
        stopping(&stop_tx),
    ));
    let admin_task = tokio::spawn(obol_gateway::server::serve(
        admin_listener,
        admin::router(
            admin_state,
            purchases
                .admin_router()
                .merge(secrets_router)
                .merge(doctor_router)
                .merge(tunnel::router(tunnels.clone())),
        )
        .merge(internal),
        stopping(&stop_tx),
    ));

    let state = DaemonState {
        pid: std::process::id(),
        gateway: gateway_bound.to_string(),
        admin: admin_bound.to_string(),
        buyer: buyer_bound.to_string(),
        started_at: obol_config::time::now_rfc3339(),
        start_ticks: obol_config::process::start_ticks(std::process::id()),
        tls: serves_tls,
    };
    private_fs::save_json(&paths.daemon_state_file(), &state)?;
    tracing::info!(gateway = %state.gateway, admin = %state.admin, buyer = %state.buyer, public_url = %public_url, "stack running");
    // The tunnel lives with the stack: the one `obol tunnel up` set up starts again.
    match obol_config::tunnel::TunnelSetting::load(&paths.tunnel_file()) {
        Ok(Some(setting)) => {
            if let Err(error) = tunnels.start(setting).await {
                tracing::error!(%error, "the tunnel did not start");
            }
        }
        Ok(None) => {}
        Err(error) => tracing::error!(%error, "the tunnel setting is unreadable; no tunnel"),
    }

    stopping(&stop_tx).await;
    tunnels.stop_child().await;
    agent_uri_task.abort();
    let _ = tokio::join!(
        controller,
        purchase_controller,
        gateway_task,
        redirect_task,
        buyer_task,
        admin_task
    );
    external.abort();
    let _ = std::fs::remove_file(paths.daemon_state_file());
    tracing::info!("stack stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn payment_store_urls_are_shown_without_their_password() {
        assert_eq!(
            redacted("postgres://obol:hunter2@db.internal:5432/guard"),
            "postgres://obol:***@db.internal:5432/guard"
        );
        assert_eq!(
            redacted("postgres://obol@127.0.0.1/guard"),
            "postgres://obol@127.0.0.1/guard"
        );
        assert_eq!(redacted("not a url with hunter2"), "(not a URL)");
    }
}
