//! In a Kubernetes cluster: `obol operator`, the controller ([`obol_operator`]) with its health
//! and metrics listener (stops on SIGTERM/Ctrl-C, releasing the leader lease), and `obol gateway
//! --kubernetes`, a replica of the public gateway over the cluster's offers
//! ([`obol_daemon::run_replica`]).

use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use obol_config::stack::{KubernetesSetting, StackFile};
use obol_control::ServiceOfferSpec;
use obol_control::identity::AgentIdentitySpec;
use obol_control::purchase::PurchaseRequestSpec;
use obol_daemon::ClusterInfo;
use obol_operator::{Health, OperatorConfig};
use serde_json::json;

use crate::output;

use crate::cli::{BuyerArgs, GatewayArgs, OperatorArgs};

/// The cluster's configuration: the kubeconfig given (and its context), else in-cluster or
/// the default kubeconfig.
async fn config(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Config> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..kube::config::KubeConfigOptions::default()
    };
    match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("the kubeconfig {}", path.display()))
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("the default kubeconfig ($KUBECONFIG or ~/.kube/config)"),
        None => kube::Config::infer()
            .await
            .context("no cluster: not in a pod, and no kubeconfig (give --kubeconfig)"),
    }
}

/// The cluster's client (see [`config`]) and its API server's URL.
async fn client_at(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> anyhow::Result<(kube::Client, String)> {
    let config = config(kubeconfig, context).await?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("cannot make a Kubernetes client")?;
    Ok((client, server))
}

/// The cluster's client (see [`config`]).
async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    Ok(client_at(kubeconfig, None).await?.0)
}

/// The store of the cluster `kubeconfig` (or the pod's) names, watched.
async fn watched_store(
    kubeconfig: Option<&std::path::Path>,
) -> anyhow::Result<obol_kube::KubeStore> {
    obol_kube::KubeStore::new(client(kubeconfig).await?)
        .await
        .context("cannot watch the cluster's resources (are the CRDs installed? obol kube crds)")
}

/// The store of the cluster `setting` names, watched (the CRDs must be installed), and the
/// cluster's API server URL.
pub(crate) async fn store(
    setting: &KubernetesSetting,
) -> anyhow::Result<(obol_kube::KubeStore, String)> {
    let (client, server) =
        client_at(setting.kubeconfig.as_deref(), setting.context.as_deref()).await?;
    let store = obol_kube::KubeStore::new(client).await.with_context(|| {
        format!(
            "cannot read the obol.org resources of the cluster at {server}: is it reachable, and \
             are the CRDs installed (`kubectl apply -k deploy/kubernetes/base/crds`)?"
        )
    })?;
    Ok((store, server))
}

/// A client working on the resources of the cluster the stack's settings name.
pub(crate) async fn admin_client(
    settings: &StackFile,
    setting: &KubernetesSetting,
) -> anyhow::Result<obol_daemon::AdminClient> {
    let (store, server) = store(setting).await?;
    let secrets = obol_kube::KubeSecrets::new(store.client().clone());
    Ok(obol_daemon::AdminClient::over_store(
        Arc::new(store),
        Arc::new(secrets),
        cluster_info(settings, setting, &server),
    ))
}

fn cluster_info(settings: &StackFile, setting: &KubernetesSetting, server: &str) -> ClusterInfo {
    ClusterInfo {
        stack_id: settings.stack_id.clone().unwrap_or_default(),
        describe: format!("the cluster at {server} (namespace {})", setting.namespace),
        gateway: setting.gateway_url.clone().unwrap_or_default(),
        public_url: settings.public_url.clone(),
    }
}

/// The buyer proxy's address on a cluster-backed stack (a port-forward's by default).
pub(crate) fn buyer_address(setting: &KubernetesSetting) -> String {
    setting
        .buyer
        .clone()
        .unwrap_or_else(|| DEFAULT_BUYER_FORWARD.to_owned())
}

/// `kubectl -n obol-system port-forward svc/obol-buyer 8402`.
const DEFAULT_BUYER_FORWARD: &str = "127.0.0.1:8402";

/// `obol stack init --backend kubernetes`: reads the cluster's resources once (the API server
/// answers, the CRDs are installed), then writes the settings.
pub(crate) async fn init(
    ctx: &super::Context,
    settings: &StackFile,
    setting: &KubernetesSetting,
    path: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let (store, server) = store(setting).await?;
    let offers = obol_control::StoreExt::list::<ServiceOfferSpec>(&store, None)
        .await?
        .len();
    settings.save(path)?;
    let stack_id = settings.stack_id.clone().unwrap_or_default();
    if ctx.json {
        output::json(&json!({
            "status": "initialised", "stackId": stack_id, "path": path,
            "backend": "kubernetes", "server": server, "namespace": setting.namespace,
            "offers": offers,
        }))?;
    } else {
        println!(
            "stack {stack_id} initialised on the cluster at {server}: {}",
            path.display()
        );
        println!(
            "  resources in namespace {} ({offers} offers in the cluster)",
            setting.namespace
        );
        println!("  `obol sell …`, `obol buy …` and `obol stack status` now work on the cluster");
    }
    Ok(ExitCode::SUCCESS)
}

/// `obol stack status` of a cluster-backed stack: where, what is Ready, who leads.
pub(crate) async fn status(
    ctx: &super::Context,
    settings: &StackFile,
    setting: &KubernetesSetting,
) -> anyhow::Result<ExitCode> {
    let (store, server) = store(setting).await?;
    let kube_client = store.client().clone();
    let store: Arc<dyn obol_control::Store> = Arc::new(store);
    let offers = count::<ServiceOfferSpec>(store.as_ref(), |o| ready(&o.status.conditions)).await?;
    let purchases =
        count::<PurchaseRequestSpec>(store.as_ref(), |o| ready(&o.status.conditions)).await?;
    let identities =
        count::<AgentIdentitySpec>(store.as_ref(), |o| ready(&o.status.conditions)).await?;
    let leases: kube::Api<Lease> = kube::Api::namespaced(kube_client, &setting.system_namespace);
    let leader = leases
        .get_opt(obol_operator::DEFAULT_LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|lease| lease.spec?.holder_identity)
        .filter(|holder| !holder.is_empty());
    let info = cluster_info(settings, setting, &server);
    let buyer = buyer_address(setting);
    if ctx.json {
        output::json(&json!({
            "status": "cluster", "stackId": info.stack_id, "backend": "kubernetes",
            "server": server, "namespace": setting.namespace,
            "systemNamespace": setting.system_namespace,
            "offers": counts(offers), "purchases": counts(purchases),
            "identities": counts(identities),
            "operatorLeader": leader, "gateway": setting.gateway_url,
            "buyer": format!("http://{buyer}"), "publicUrl": settings.public_url,
        }))?;
    } else {
        println!("stack {} on {}", info.stack_id, info.describe);
        let line = |(total, ready): (usize, usize)| format!("{total} ({ready} ready)");
        println!("  offers:      {}", line(offers));
        println!("  purchases:   {}", line(purchases));
        println!("  identities:  {}", identities.0);
        match &leader {
            Some(holder) => println!(
                "  operator:    {holder} leads (Lease {}/{})",
                setting.system_namespace,
                obol_operator::DEFAULT_LEASE_NAME
            ),
            None => println!(
                "  operator:    no leader (is `obol operator` running in {}?)",
                setting.system_namespace
            ),
        }
        if let Some(gateway) = &setting.gateway_url {
            println!("  gateway:     {gateway}");
        }
        println!("  buyer:       http://{buyer}/v1 (model paid/<model>)");
        if let Some(url) = &settings.public_url {
            println!("  public URL:  {url}");
        }
    }
    Ok(if leader.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn counts((total, ready): (usize, usize)) -> serde_json::Value {
    json!({"total": total, "ready": ready})
}

fn ready(conditions: &[obol_control::resource::Condition]) -> bool {
    obol_control::resource::is_true(conditions, "Ready")
}

/// How many objects of a kind there are, and how many are `ready`.
async fn count<S: obol_control::Spec>(
    store: &dyn obol_control::Store,
    ready: impl Fn(&obol_control::Object<S>) -> bool,
) -> anyhow::Result<(usize, usize)> {
    let objects = obol_control::StoreExt::list::<S>(store, None).await?;
    let ready = objects.iter().filter(|o| ready(o)).count();
    Ok((objects.len(), ready))
}

/// How long the operator waits for the facilitator's `/supported` at start.
const SETTLERS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

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
    let mut config = OperatorConfig::new(&namespace, &identity);
    if let Some(url) = &args.facilitator_url {
        config.settlers = obol_daemon::upto_settlers_at(url, SETTLERS_PATIENCE).await?;
        eprintln!(
            "operator {identity}: upto settlers on {} chain(s) from {url}",
            config.settlers.len()
        );
    }
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
    let store = watched_store(args.kubeconfig.as_deref()).await?;
    // Original offers name a Service and a Secret: reached and read in the cluster.
    let cluster = obol_daemon::ClusterAccess {
        secrets: Arc::new(obol_kube::KubeSecrets::new(store.client().clone())),
        upstreams: obol_control::reconcile::UpstreamResolution::Cluster {
            domain: obol_control::offer::DEFAULT_CLUSTER_DOMAIN.to_owned(),
        },
    };
    let options = obol_daemon::ReplicaOptions {
        listen: args.listen,
        internal_listen: args.internal_listen,
        public_url: args.public_url,
        tls: args.tls.setting(),
    };
    obol_daemon::run_replica(
        ctx.paths.clone(),
        Arc::new(store),
        cluster,
        options,
        super::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the buyer of the cluster's purchases until a stop signal.
pub(crate) async fn buyer(ctx: &super::Context, args: BuyerArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.kubernetes,
        "`obol buyer` serves a cluster's purchases (--kubernetes); on one machine, `obol stack \
         up` runs the buyer proxy"
    );
    super::init_logging();
    let store = watched_store(args.kubeconfig.as_deref()).await?;
    obol_daemon::run_buyer(
        ctx.paths.clone(),
        Arc::new(store),
        &args.listen,
        super::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// The ConfigMap holding the gateways' `stack.json` (deploy/kubernetes/base/settings.yaml).
const SETTINGS_CONFIG_MAP: &str = "obol-stack-settings";

/// Sets (or, with `None`, removes) the storefront's branding in the gateways' settings: the
/// `stack.json` of the ConfigMap `obol-stack-settings` in the system namespace, its other
/// settings kept. Read, changed and replaced at the version read (again on a conflict).
pub(crate) async fn set_branding(
    setting: &KubernetesSetting,
    branding: Option<&obol_config::stack::Branding>,
) -> anyhow::Result<()> {
    let (client, _) = client_at(setting.kubeconfig.as_deref(), setting.context.as_deref()).await?;
    let maps: kube::Api<ConfigMap> = kube::Api::namespaced(client, &setting.system_namespace);
    let where_ = format!(
        "the ConfigMap {}/{SETTINGS_CONFIG_MAP}",
        setting.system_namespace
    );
    for _ in 0..3 {
        let mut map = maps
            .get_opt(SETTINGS_CONFIG_MAP)
            .await
            .with_context(|| format!("cannot read {where_}"))?
            .with_context(|| format!("{where_} is missing: apply deploy/kubernetes first"))?;
        let data = map.data.get_or_insert_with(Default::default);
        let mut settings: serde_json::Map<String, serde_json::Value> = match data.get("stack.json")
        {
            Some(text) => serde_json::from_str(text)
                .with_context(|| format!("the stack.json of {where_} is not a JSON object"))?,
            None => serde_json::Map::new(),
        };
        match branding {
            Some(branding) => settings.insert("branding".into(), serde_json::to_value(branding)?),
            None => settings.remove("branding"),
        };
        data.insert(
            "stack.json".into(),
            serde_json::to_string_pretty(&settings)? + "\n",
        );
        match maps
            .replace(SETTINGS_CONFIG_MAP, &kube::api::PostParams::default(), &map)
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot replace {where_}")),
        }
    }
    anyhow::bail!("{where_} kept changing under us; try again")
}
