//! In a Kubernetes cluster: `obol operator`, the controller ([`obol_operator`]) with its health
//! and metrics listener (stops on SIGTERM/Ctrl-C, releasing the leader lease), and `obol gateway
//! --kubernetes`, a replica of the public gateway over the cluster's offers
//! ([`obol_daemon::run_replica`]).

use std::process::ExitCode;

use anyhow::Context as _;
use obol_operator::{Health, OperatorConfig};

use crate::cli::{GatewayArgs, OperatorArgs};

/// The cluster's client: the kubeconfig given, else in-cluster or the default kubeconfig.
async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("the kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no cluster: not in a pod, and no kubeconfig (give --kubeconfig)")?,
    };
    kube::Client::try_from(config).context("cannot make a Kubernetes client")
}

/// Runs the operator until a stop signal.
pub(crate) async fn operator(args: OperatorArgs) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let client = client(args.kubeconfig.as_deref()).await?;
    let namespace = args
        .lease_namespace
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".to_owned());
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    let health = Health::default();
    let router = obol_operator::router(health.clone(), obol_facilitator::http::metrics_handle());
    let served = tokio::spawn(obol_gateway::server::serve(
        listener,
        router,
        super::shutdown_signal(),
    ));
    eprintln!("operator {identity}: health on http://{bound} (lease {namespace}/obol-operator)");
    let config = OperatorConfig::new(&namespace, &identity);
    obol_operator::run(client, config, health, super::shutdown_signal()).await?;
    served.abort();
    Ok(ExitCode::SUCCESS)
}

/// Runs a gateway replica until a stop signal.
pub(crate) async fn gateway(ctx: &super::Context, args: GatewayArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.kubernetes,
        "`obol gateway` serves a cluster's offers (--kubernetes); on one machine, `obol stack up` \
         serves the gateway"
    );
    super::init_logging();
    let client = client(args.kubeconfig.as_deref()).await?;
    let store = obol_kube::KubeStore::new(client)
        .await
        .context("cannot watch the cluster's offers (are the CRDs installed? obol kube crds)")?;
    let options = obol_daemon::ReplicaOptions {
        listen: args.listen,
        internal_listen: args.internal_listen,
        public_url: args.public_url,
        tls: args.tls.setting(),
    };
    obol_daemon::run_replica(
        ctx.paths.clone(),
        std::sync::Arc::new(store),
        options,
        super::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
