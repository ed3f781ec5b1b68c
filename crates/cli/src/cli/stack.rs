//! `obol stack init`'s flags, and where the stack's resources live.

use std::sync::OnceLock;

use clap::{Args, ValueEnum};

use super::TlsArgs;

#[derive(Debug, Args)]
pub(crate) struct StackInitArgs {
    /// Overwrite existing settings.
    #[arg(long, short)]
    pub(crate) force: bool,
    /// Stack id (1-21 lower-case letters, digits, '-'; default: a random name).
    #[arg(long)]
    pub(crate) stack_id: Option<String>,
    /// Gateway listen address.
    #[arg(long)]
    pub(crate) gateway_listen: Option<String>,
    /// Admin API listen address (loopback only).
    #[arg(long)]
    pub(crate) admin_listen: Option<String>,
    /// Buyer proxy listen address (default 127.0.0.1:8402; agents call `paid/<model>` here).
    #[arg(long)]
    pub(crate) buyer_listen: Option<String>,
    /// Public base URL buyers reach the stack at.
    #[arg(long)]
    pub(crate) public_url: Option<String>,
    /// Use a remote facilitator at this URL.
    #[arg(long, conflicts_with = "facilitator_chain")]
    pub(crate) facilitator_url: Option<String>,
    /// Run the embedded facilitator on this chain (repeatable; needs a write-enabled endpoint).
    #[arg(long)]
    pub(crate) facilitator_chain: Vec<String>,
    /// Keys paying the embedded facilitator's gas per chain: the wallet and N−1 keys derived
    /// from it and topped up from it, so settlements do not queue on one nonce.
    #[arg(long, value_name = "N", requires = "facilitator_chain", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) gas_wallets: Option<u32>,
    /// Keep the payment guard's record (which payments were served and settled) in this
    /// PostgreSQL database, `postgres://user[:password]@host[:port]/db`, shared by gateway
    /// replicas (default: an SQLite file in the state directory; `OBOL_PAYMENT_STORE`
    /// overrides it).
    #[arg(long, value_name = "URL")]
    pub(crate) payment_store: Option<String>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    #[command(flatten)]
    pub(crate) backend: BackendArgs,
}

/// Where the stack's resources live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    /// The embedded daemon on this machine (`obol stack up`): SQLite, one process.
    #[default]
    Embedded,
    /// A Kubernetes cluster running `obol operator` and `obol gateway --kubernetes`
    /// (deploy/kubernetes): the CLI reads and writes its resources there.
    Kubernetes,
}

/// `--backend kubernetes` and how to reach the cluster.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct BackendArgs {
    /// Where the stack's resources live.
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    pub(crate) backend: Backend,
    /// The cluster's kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long)]
    pub(crate) context: Option<String>,
    /// The namespace of the resources `obol sell`/`obol buy` create (default `default`).
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    pub(crate) resource_namespace: Option<String>,
    /// Where the operator, gateways and buyer run (default `obol-system`).
    #[arg(long)]
    pub(crate) system_namespace: Option<String>,
    /// The cluster gateway's URL as this machine reaches it (e.g. its Ingress, or
    /// `http://127.0.0.1:8080` through `kubectl port-forward`).
    #[arg(long, value_name = "URL")]
    pub(crate) gateway_url: Option<String>,
    /// The cluster buyer proxy's address as agents reach it (default 127.0.0.1:8402, through
    /// `kubectl port-forward svc/obol-buyer 8402`).
    #[arg(long = "buyer", value_name = "HOST:PORT")]
    pub(crate) buyer_address: Option<String>,
}

impl BackendArgs {
    /// The cluster flags given, which only `--backend kubernetes` takes.
    pub(crate) fn cluster_flags_given(&self) -> bool {
        self.kubeconfig.is_some()
            || self.context.is_some()
            || self.resource_namespace.is_some()
            || self.system_namespace.is_some()
            || self.gateway_url.is_some()
            || self.buyer_address.is_some()
    }

    /// The `kubernetes` setting these flags make (none for the embedded backend).
    pub(crate) fn setting(&self) -> Option<obol_config::stack::KubernetesSetting> {
        (self.backend == Backend::Kubernetes).then(|| obol_config::stack::KubernetesSetting {
            kubeconfig: self
                .kubeconfig
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            context: self.context.clone(),
            namespace: self
                .resource_namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            system_namespace: self
                .system_namespace
                .clone()
                .unwrap_or_else(|| obol_config::stack::DEFAULT_SYSTEM_NAMESPACE.to_owned()),
            gateway_url: self.gateway_url.clone(),
            buyer: self.buyer_address.clone(),
        })
    }
}

/// The namespace every `-n/--namespace` defaults to: `OBOL_NAMESPACE`, else the namespace of
/// a cluster-backed stack's settings, else `default`.
pub(crate) fn default_namespace() -> String {
    static NAMESPACE: OnceLock<String> = OnceLock::new();
    NAMESPACE
        .get_or_init(|| {
            std::env::var(obol_config::env::NAMESPACE)
                .ok()
                .filter(|n| !n.is_empty())
                .or_else(|| {
                    let paths = obol_config::Paths::from_env().ok()?;
                    let settings = obol_config::stack::StackFile::load(&paths.stack_file()).ok()?;
                    Some(settings.kubernetes?.namespace)
                })
                .unwrap_or_else(|| "default".to_owned())
        })
        .clone()
}
