//! `obol demo`: the whole system on this machine in one command. A devnet (anvil installed
//! with npm when missing), the embedded facilitator and the stack daemon in this process, a
//! deterministic demo model and a JSON service as upstreams; both are sold and published (an
//! ERC-8004 agent on the devnet's registry), a second wallet buys N calls of the model as a
//! pre-signed pool and one quote directly, every payment settles on the devnet, and a receipt
//! table shows the transactions and balance changes.

mod upstream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use obol_buyer::probe::Prober;
use obol_config::stack::{DaemonState, FacilitatorSetting, StackFile};
use obol_config::{Endpoint, NetworksFile, Paths};
use obol_control::offer::{ModelSpec, OfferType, RegistrationSpec, ServiceOffer, ServiceOfferSpec};
use obol_control::purchase::{PurchasePayment, PurchaseRequest, PurchaseRequestSpec};
use obol_control::resource::is_true;
use obol_daemon::{AdminClient, RunOptions};
use obol_devnet::{DEV_KEYS, Devnet, USDC};
use obol_x402::money::format_units;
use obol_x402::primitives::{Address, U256};
use obol_x402::{LocalSigner, TokenRegistry};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::buy::{choose, receipt_of, sign_one};
use super::purchase::{live_counts, sign, wait_ready};
use super::{Context, shutdown_signal};
use crate::cli::DemoArgs;
use crate::output;

/// Dev account that pays the facilitator's gas.
const FACILITATOR_KEY: usize = 9;
/// Dev account the seller is paid to.
const SELLER_KEY: usize = 2;
/// Dev account that buys.
const BUYER_KEY: usize = 1;
/// How long each wait of the demo may take.
const WAIT: Duration = Duration::from_secs(20);

/// The in-process stack daemon.
type DaemonTask = JoinHandle<Result<(), obol_daemon::DaemonError>>;

/// What the demo started; stopped in reverse order.
#[derive(Default)]
struct Started {
    devnet: Option<Devnet>,
    daemon: Option<(tokio::sync::oneshot::Sender<()>, DaemonTask)>,
    dir: Option<tempfile::TempDir>,
}

impl Started {
    async fn stop(mut self) {
        if let Some((stop, task)) = self.daemon.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        drop(self.devnet.take());
        drop(self.dir.take());
    }
}

/// Prints one finished step (human mode).
struct Steps {
    json: bool,
    at: Instant,
}

impl Steps {
    fn done(&mut self, what: &str) {
        if !self.json {
            output::note(&format!(
                "  ✓ {what} ({} ms)",
                self.at.elapsed().as_millis()
            ));
        }
        self.at = Instant::now();
    }
}

fn key(index: usize) -> anyhow::Result<LocalSigner> {
    Ok(LocalSigner::from_private_key_hex(DEV_KEYS[index])?)
}

fn usdc(amount: U256) -> String {
    format!("{} USDC", format_units(amount, 6))
}

/// Where npm installs anvil: `$OBOL_TOOLS_DIR`, the checkout's `.tools` when run from the
/// source tree, else `<data>/tools`.
fn tools_dir(paths: &Paths) -> PathBuf {
    if let Some(dir) = std::env::var_os(obol_config::env::TOOLS_DIR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if checkout.join("Cargo.toml").is_file()
        && let Ok(checkout) = checkout.canonicalize()
    {
        return checkout.join(".tools");
    }
    paths.data_dir.join("tools")
}

/// anvil, installed with npm into the tools directory when it is nowhere to be found.
async fn anvil(ctx: &Context) -> anyhow::Result<PathBuf> {
    let missing = match obol_devnet::find_anvil() {
        Ok(path) => return Ok(path),
        Err(e) => e,
    };
    let tools = tools_dir(&ctx.paths);
    let npm = std::process::Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !npm {
        bail!(
            "{missing}\n  the demo installs it with npm when npm is available: install Node.js (npm), or run `npm install --prefix {} {}`",
            tools.display(),
            obol_devnet::ANVIL_NPM_PACKAGE
        );
    }
    output::note(&format!(
        "  … anvil not found: installing {} into {} with npm (once, about 10 s)",
        obol_devnet::ANVIL_NPM_PACKAGE,
        tools.display()
    ));
    Ok(obol_devnet::install_anvil(&tools).await?)
}

async fn wait_offers(client: &AdminClient, names: &[&str], type_: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    for name in names {
        loop {
            let offer = client.get::<ServiceOfferSpec>("demo", name).await?;
            if is_true(&offer.status.conditions, type_) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "offer demo/{name}: {type_} did not become True: {:?}",
                    offer.status.conditions
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

fn offer(
    name: &str,
    type_: OfferType,
    upstream: &str,
    pay_to: Address,
    price: &str,
) -> ServiceOffer {
    let mut spec = ServiceOfferSpec::per_request(
        type_,
        upstream,
        "base-sepolia",
        &pay_to.to_checksum(None),
        price,
    );
    spec.upstream.health_path = Some("/health".into());
    spec.model = (type_ == OfferType::Inference).then(|| ModelSpec {
        name: upstream::MODEL.into(),
        runtime: None,
    });
    spec.registration = Some(RegistrationSpec {
        enabled: true,
        ..RegistrationSpec::default()
    });
    spec.description = Some(match type_ {
        OfferType::Inference => "the demo model: deterministic answers, OpenAI-compatible".into(),
        _ => "demo quotes: one JSON quote per call".into(),
    });
    ServiceOffer::new("demo", name, spec)
}

/// One row of the receipt table.
struct Call {
    service: &'static str,
    price: String,
    status: u16,
    tx: Option<String>,
}

/// The running stack the demo started.
struct Stack {
    paths: Paths,
    dir: PathBuf,
    client: AdminClient,
    gateway: String,
    buyer_proxy: String,
    buyer_address: String,
}

/// What the paid calls produced.
struct Paid {
    calls: Vec<Call>,
    answer: Option<String>,
    quote: Value,
}

/// A stack of its own (in `--dir` or a temporary directory) on loopback ports, settling on
/// `devnet` with the facilitator paid by a dev key, run in this process.
async fn start_stack(
    devnet: &Devnet,
    dir: Option<&PathBuf>,
    started: &mut Started,
) -> anyhow::Result<Stack> {
    let dir = match dir {
        Some(dir) => dir.clone(),
        None => {
            let temp = tempfile::Builder::new().prefix("obol-demo-").tempdir()?;
            let path = temp.path().to_path_buf();
            started.dir = Some(temp);
            path
        }
    };
    let paths = Paths::under(&dir);
    let mut networks = NetworksFile::default();
    networks.add(
        "devnet",
        devnet.chain_id(),
        Endpoint {
            url: devnet.endpoint(),
            allow_writes: true,
        },
    )?;
    networks.save(&paths.networks_file())?;
    let loopback = Some("127.0.0.1:0".to_owned());
    StackFile {
        stack_id: Some("obol-demo".into()),
        gateway_listen: loopback.clone(),
        admin_listen: loopback.clone(),
        buyer_listen: loopback,
        facilitator: Some(FacilitatorSetting::Embedded {
            chains: vec!["devnet".into()],
            wallet: None,
            gas_wallets: None,
        }),
        ..StackFile::default()
    }
    .save(&paths.stack_file())?;
    let token = obol_daemon::admin_token(&paths)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = RunOptions {
        facilitator_signer: Some(key(FACILITATOR_KEY)?),
        ..RunOptions::default()
    };
    let task = tokio::spawn(obol_daemon::run(paths.clone(), options, async move {
        let _ = stopped.await;
    }));
    started.daemon = Some((stop, task));
    let state = wait_for_daemon(&paths, started).await?;
    Ok(Stack {
        client: AdminClient::new(&state.admin, &token),
        gateway: state.gateway_url(),
        buyer_proxy: format!("http://{}", state.buyer),
        buyer_address: state.buyer,
        paths,
        dir,
    })
}

/// Buys `calls` calls of the demo model from `buyer`: probe, pre-sign here, hand the pool to
/// the stack; returns the price of one call.
async fn buy(
    stack: &Stack,
    prober: &Prober,
    buyer: &LocalSigner,
    calls: u32,
) -> anyhow::Result<String> {
    let llm_url = format!("{}/services/demo-llm", stack.gateway);
    let offered = prober.chat(&llm_url).await?;
    let choice = choose(&offered, None, "USDC", &TokenRegistry::builtin())?;
    let requirement = &choice.requirement;
    // Quiet signing: the demo reports its own steps.
    let quiet = Context {
        paths: stack.paths.clone(),
        json: true,
    };
    let auths = sign(
        &quiet,
        buyer,
        requirement,
        Some(&offered.resource),
        calls,
        3600,
    )?;
    let purchase = PurchaseRequest::new(
        "buy",
        "demo",
        PurchaseRequestSpec {
            endpoint: llm_url,
            model: upstream::MODEL.into(),
            count: calls,
            pre_signed_auths: auths,
            auto_refill: None,
            payment: PurchasePayment {
                network: requirement.network.clone(),
                pay_to: requirement.pay_to.clone(),
                price: requirement.amount.to_string(),
                asset: requirement.asset.clone(),
                ..PurchasePayment::default()
            },
        },
    );
    stack.client.apply(&purchase).await?;
    wait_ready(&stack.client, "buy", "demo").await?;
    Ok(choice.price)
}

/// The paid calls: `calls` through the buyer proxy, one more (refused: the pool is empty), and
/// one quote bought directly with a payment signed on the spot.
async fn pay(
    stack: &Stack,
    prober: &Prober,
    buyer: &LocalSigner,
    calls: u32,
    price: &str,
    steps: &mut Steps,
) -> anyhow::Result<Paid> {
    let http = reqwest::Client::builder().timeout(WAIT).build()?;
    let chat = |n: u32| {
        http.post(format!("{}/v1/chat/completions", stack.buyer_proxy))
            .json(&json!({"model": format!("paid/{}", upstream::MODEL),
                          "messages": [{"role": "user", "content": format!("hello #{n}")}]}))
            .send()
    };
    let mut paid = Paid {
        calls: Vec::new(),
        answer: None,
        quote: Value::Null,
    };
    for n in 1..=calls {
        let response = chat(n).await?;
        let status = response.status().as_u16();
        let receipt = receipt_of(response.headers());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 {
            bail!("paid call {n} failed with {status}: {body}");
        }
        paid.answer.get_or_insert_with(|| {
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
        paid.calls.push(Call {
            service: "demo-llm",
            price: price.to_owned(),
            status,
            tx: receipt.map(|r| r.transaction),
        });
    }
    steps.done(&format!(
        "{calls} paid calls of paid/{} through the buyer proxy",
        upstream::MODEL
    ));
    let response = chat(calls + 1).await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let refusal = body["error"]["message"].as_str().unwrap_or_default();
    if status != 402 || !refusal.starts_with("pre-signed auth pool exhausted") {
        bail!("the call after the pool ran out: expected the exhaustion error, got {status}");
    }
    steps.done(&format!(
        "call {} refused by the proxy, nothing paid: {refusal}",
        calls + 1
    ));

    let quotes_url = format!("{}/services/demo-quotes/quote", stack.gateway);
    let offered = prober.get(&quotes_url).await?;
    let choice = choose(&offered, Some("0.01"), "USDC", &TokenRegistry::builtin())?;
    let (name, value) = sign_one(buyer, &offered, &choice.requirement)?;
    let response = http.get(&quotes_url).header(name, value).send().await?;
    let status = response.status().as_u16();
    let receipt = receipt_of(response.headers());
    paid.quote = response.json().await.unwrap_or(Value::Null);
    if status != 200 {
        bail!("the paid quote failed with {status}");
    }
    paid.calls.push(Call {
        service: "demo-quotes",
        price: choice.price,
        status,
        tx: receipt.map(|r| r.transaction),
    });
    steps.done("one quote bought directly, signed on the spot (no pool)");
    Ok(paid)
}

/// Balances of one account before and after.
struct Delta {
    address: Address,
    before: U256,
    after: U256,
}

/// Everything the receipt shows.
struct Receipt {
    devnet: String,
    paid: Paid,
    seller: Delta,
    buyer: Delta,
    /// The registration, as `sell register --json` reports it.
    agent: Value,
    remaining: u64,
    calls: u32,
}

/// The receipt: answers, the table, balance changes, what is left, the agent.
fn report(ctx: &Context, stack: &Stack, receipt: &Receipt) -> anyhow::Result<()> {
    let Receipt {
        devnet,
        paid,
        seller,
        buyer,
        agent,
        remaining,
        calls,
    } = receipt;
    let storefront = format!("{}/", stack.gateway);
    if ctx.json {
        let delta = |d: &Delta| json!({"address": d.address, "before": d.before.to_string(), "after": d.after.to_string()});
        return output::json(&json!({
            "devnet": devnet, "gateway": stack.gateway,
            "buyerProxy": format!("{}/v1", stack.buyer_proxy),
            "storefront": storefront, "dir": stack.dir,
            "calls": paid.calls.iter().map(|c| json!({"service": c.service, "price": c.price, "status": c.status, "transaction": c.tx})).collect::<Vec<_>>(),
            "seller": delta(seller), "buyer": delta(buyer),
            "remainingAuthorizations": remaining, "answer": paid.answer, "quote": paid.quote,
            "agent": agent,
        }));
    }
    println!();
    if let Some(answer) = &paid.answer {
        println!("the model answered: {}", super::buy::clean(answer));
    }
    println!(
        "the quote service answered: {}",
        super::buy::clean(&paid.quote["quote"].to_string())
    );
    println!();
    println!(
        "  {:<4} {:<12} {:<11} settlement transaction",
        "call", "service", "price"
    );
    for (i, call) in paid.calls.iter().enumerate() {
        println!(
            "  {:<4} {:<12} {:<11} {}",
            i + 1,
            call.service,
            call.price,
            call.tx.as_deref().unwrap_or("(no receipt)")
        );
    }
    println!();
    println!(
        "  seller {}  {} → {}  (+{})",
        seller.address,
        usdc(seller.before),
        usdc(seller.after),
        usdc(seller.after.saturating_sub(seller.before))
    );
    println!(
        "  buyer  {}  {} → {}  (−{})",
        buyer.address,
        usdc(buyer.before),
        usdc(buyer.after),
        usdc(buyer.before.saturating_sub(buyer.after))
    );
    println!("  remaining pre-signed authorizations: {remaining} of {calls}");
    println!("  storefront: {storefront}  (also /skill.md, /api/services.json)");
    println!(
        "  ERC-8004 agent {}: {}",
        agent["agentId"],
        agent["agentUri"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// Runs the demo; returns what to print before waiting for Ctrl-C under `--keep`.
async fn run_demo(ctx: &Context, args: &DemoArgs, started: &mut Started) -> anyhow::Result<String> {
    let mut steps = Steps {
        json: ctx.json,
        at: Instant::now(),
    };
    if !ctx.json {
        output::note(
            "obol demo — a devnet, a facilitator, a seller and a buyer, all on this machine",
        );
    }
    let anvil = anvil(ctx).await?;
    steps.done(&format!("anvil at {}", anvil.display()));
    let devnet = Devnet::start_with_anvil(&anvil).await?;
    started.devnet = Some(devnet.clone());
    steps.done(&format!(
        "devnet {} (chain {}, USDC and Permit2 placed, dev wallets funded)",
        devnet.endpoint(),
        devnet.chain_id()
    ));

    let stack = start_stack(&devnet, args.dir.as_ref(), started).await?;
    steps.done(&format!(
        "stack up: gateway {}, buyer proxy {}/v1",
        stack.gateway, stack.buyer_proxy
    ));

    // Sell the demo model and the quote service.
    let upstream = upstream::spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await?)?;
    let seller = key(SELLER_KEY)?.address();
    for (name, type_, price) in [
        ("demo-llm", OfferType::Inference, "0.001"),
        ("demo-quotes", OfferType::Http, "0.002"),
    ] {
        stack
            .client
            .apply(&offer(name, type_, &upstream, seller, price))
            .await?;
    }
    let offers = ["demo-llm", "demo-quotes"];
    wait_offers(&stack.client, &offers, "RoutePublished").await?;
    steps.done(&format!(
        "selling {} at 0.001 USDC/call and demo-quotes at 0.002 USDC/call, paid to {seller}",
        upstream::MODEL
    ));

    // Published: an ERC-8004 agent on the devnet's Identity Registry, whose agentURI is the
    // stack's registration document.
    let on_stack = Context {
        paths: stack.paths.clone(),
        json: true,
    };
    let registered = super::identity::register_on(
        &on_stack,
        &stack.client,
        "devnet",
        &stack.gateway,
        &key(SELLER_KEY)?,
        &super::identity::SpecUpdate::default(),
        super::identity::Effort {
            options: obol_erc8004::ClientOptions::default(),
            search_from: Some(0),
        },
    )
    .await?;
    wait_offers(&stack.client, &offers, "Ready").await?;
    let agent = registered.json();
    steps.done(&format!(
        "published as ERC-8004 agent {} ({}); document at {}",
        agent["agentId"],
        registered.what(),
        agent["agentUri"].as_str().unwrap_or_default()
    ));

    // A second wallet buys N calls of the model: pre-signed here, handed to the proxy.
    let buyer = key(BUYER_KEY)?;
    let prober = Prober::new(None, WAIT)?;
    let price = buy(&stack, &prober, &buyer, args.calls).await?;
    steps.done(&format!(
        "bought {} calls of {} from {} (pre-signed here; the proxy holds no key)",
        args.calls,
        upstream::MODEL,
        buyer.address()
    ));

    let chain = obol_chain::ChainClient::connect("devnet", &devnet.endpoints())?;
    let balance = |owner: Address| {
        let chain = chain.clone();
        async move { chain.token_balance(USDC, owner).await }
    };
    let (seller_before, buyer_before) = (balance(seller).await?, balance(buyer.address()).await?);
    let paid = pay(&stack, &prober, &buyer, args.calls, &price, &mut steps).await?;
    let deltas = (
        Delta {
            address: seller,
            before: seller_before,
            after: balance(seller).await?,
        },
        Delta {
            address: buyer.address(),
            before: buyer_before,
            after: balance(buyer.address()).await?,
        },
    );
    let remaining = live_counts(&stack.buyer_address)
        .await
        .get("buy/demo")
        .map_or(0, |l| l.remaining);
    report(
        ctx,
        &stack,
        &Receipt {
            devnet: devnet.endpoint(),
            paid,
            seller: deltas.0,
            buyer: deltas.1,
            agent,
            remaining,
            calls: args.calls,
        },
    )?;

    let paths = &stack.paths;
    let env = format!(
        "OBOL_CONFIG_DIR={} OBOL_DATA_DIR={} OBOL_STATE_DIR={}",
        paths.config_dir.display(),
        paths.data_dir.display(),
        paths.state_dir.display()
    );
    Ok(format!(
        "\nrunning until Ctrl-C. Try:\n  curl -i {gw}/services/demo-llm/v1/chat/completions -d '{{}}'    # a 402\n  open {gw}/\n  curl {gw}/.well-known/agent-registration.json\n  {env} obol buy list\n  {env} obol sell list\n  {env} obol sell identity show",
        gw = stack.gateway
    ))
}

/// Waits for the daemon to write its state file; reports its error if it stopped instead.
async fn wait_for_daemon(paths: &Paths, started: &mut Started) -> anyhow::Result<DaemonState> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(state) = DaemonState::load(&paths.daemon_state_file())? {
            return Ok(state);
        }
        if let Some((_, task)) = &started.daemon
            && task.is_finished()
            && let Some((_, task)) = started.daemon.take()
        {
            return match task.await {
                Ok(Err(e)) => Err(e).context("the stack daemon stopped"),
                _ => bail!("the stack daemon stopped"),
            };
        }
        if Instant::now() > deadline {
            bail!("the stack daemon did not start within {} s", WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn run(ctx: &Context, args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !(1..=100).contains(&args.calls) {
        bail!("--calls must be between 1 and 100");
    }
    let mut started = Started::default();
    let outcome = tokio::select! {
        outcome = run_demo(ctx, &args, &mut started) => outcome.map(Some),
        () = shutdown_signal() => {
            output::note("interrupted; stopping what the demo started");
            Ok(None)
        }
    };
    if let Ok(Some(hints)) = &outcome
        && args.keep
    {
        output::note(hints);
        shutdown_signal().await;
    }
    started.stop().await;
    Ok(match outcome? {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    })
}
