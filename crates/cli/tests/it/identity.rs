//! ERC-8004 end to end on the devnet's Identity Registry: `obol sell register` (one NFT however
//! often it runs, `--endpoint` held to the public URL, URI drift fixed in place, a lost record
//! recovered from the chain, `--new-agent` past the balance guard for a wallet owning older
//! agents), `sell identity import|forget|show`, the daemon's
//! `/.well-known/agent-registration.json` (active, then the tombstone), offers turning
//! `Registered` once an id is recorded, `buy discover` (loopback sellers only with
//! `--allow-private`), auto-registration on `sell inference` (a failure is a warning), and `buy
//! inference --expected-agent-id` refusing before anything is signed.

use std::path::Path;
use std::time::Duration;

use obol_erc8004::{Address, IdentityClient, Registries, U256};
use serde_json::{Value, json};

use crate::stack::{DevnetStackGuard, PAY_TO, upstream};
use crate::{assert_contains, devnet_url, json_of, obol_in, refused, stderr, stdout};

/// The seller's signer: owns the agent, is not the payee ([`PAY_TO`] is dev account 2).
const SELLER_KEY: &str = obol_devnet::DEV_KEYS[3];
/// Someone else.
const OTHER_KEY: &str = obol_devnet::DEV_KEYS[4];
const BUYER_KEY: &str = obol_devnet::DEV_KEYS[1];
const REGISTRY: &str = "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e";

fn key(k: &str) -> [(&str, &str); 1] {
    [("OBOL_PRIVATE_KEY", k)]
}

/// Starts the devnet and a stack whose public URL is its own gateway (so the registration
/// document is fetchable), settling on the devnet. Returns the public base URL.
fn start(dir: &Path) -> String {
    let out = obol_in(dir, &["devnet", "up"], &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    crate::stack_up_public(dir)
}

/// A read-only client of the devnet's Identity Registry.
fn registry_client(dir: &Path) -> IdentityClient {
    let file = obol_config::NetworksFile::load(&dir.join("config/networks.json")).unwrap();
    let chain = obol_chain::ChainClient::connect("devnet", file.get("devnet").unwrap()).unwrap();
    IdentityClient::new(chain, Registries::builtin().get(84532).unwrap()).unwrap()
}

/// Points agent `id` (owned by [`SELLER_KEY`]) at `<base>/.well-known/agent-registration.json`
/// behind the CLI's back.
async fn point_elsewhere(dir: &Path, id: u64, base: &str) {
    let signer = obol_x402::LocalSigner::from_private_key_hex(SELLER_KEY).unwrap();
    registry_client(dir)
        .with_signer(&signer)
        .set_agent_uri(
            U256::from(id),
            &format!("{base}/.well-known/agent-registration.json"),
        )
        .await
        .unwrap();
}

/// How many agents `owner` holds, from the registry's logs.
async fn agents_of(dir: &Path, owner: Address) -> usize {
    registry_client(dir)
        .discover(0, None)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.owner == owner)
        .count()
}

fn address_of(private_key: &str) -> Address {
    obol_x402::LocalSigner::from_private_key_hex(private_key)
        .unwrap()
        .address()
}

/// `obol buy discover` over the devnet's whole registry (`--from-block 0`) with `flags`, as
/// JSON when `json`.
fn discover(dir: &Path, json: bool, flags: &[&str]) -> std::process::Output {
    let mut args = if json { vec!["--json"] } else { vec![] };
    args.extend(["buy", "discover", "--chain", "devnet", "--from-block", "0"]);
    args.extend_from_slice(flags);
    obol_in(dir, &args, &[], None)
}

async fn document(public: &str) -> Value {
    obol_testkit::http::get_json(format!("{public}/.well-known/agent-registration.json")).await
}

/// Polls `check` (about 10 s) until it holds.
async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    let (within, every) = (Duration::from_secs(10), Duration::from_millis(50));
    obol_testkit::until(what, within, every, check).await;
}

/// The offer's `Registered` condition `(status, reason)` and `status.agentId`.
fn registered(dir: &Path, name: &str) -> (String, String, Option<String>) {
    let offer = json_of(&obol_in(
        dir,
        &["--json", "sell", "status", name],
        &[],
        None,
    ));
    let condition = offer["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Registered")
        .cloned()
        .unwrap_or(Value::Null);
    (
        condition["status"].as_str().unwrap_or_default().to_owned(),
        condition["reason"].as_str().unwrap_or_default().to_owned(),
        offer["status"]["agentId"].as_str().map(str::to_owned),
    )
}

async fn wait_registered(dir: &Path, name: &str, want: (&str, &str, Option<&str>)) {
    eventually(&format!("{name} Registered = {want:?}"), || async {
        let (status, reason, id) = registered(dir, name);
        (status.as_str(), reason.as_str(), id.as_deref()) == want
    })
    .await;
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_import_forget_discover_and_tombstone() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    let _guard = DevnetStackGuard(dir);
    let public = start(dir);
    let seller = address_of(SELLER_KEY);

    // Registration is on by default; without a write endpoint for base-sepolia (the devnet is
    // named `devnet`) the offer is sold unregistered, with the command that would register it.
    let sell = [
        "sell",
        "http",
        "weather",
        "--upstream",
        &upstream,
        "--pay-to",
        PAY_TO,
        "--per-request",
        "0.001",
        "--chain",
        "base-sepolia",
    ];
    let out = obol_in(dir, &sell, &key(SELLER_KEY), None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(
        &stdout(&out),
        "ERC-8004: not registered: no write-enabled RPC endpoint for base-sepolia",
    );
    wait_registered(
        dir,
        "weather",
        ("False", "AwaitingExternalRegistration", None),
    )
    .await;
    let services: Value = obol_testkit::http::get_json(format!("{public}/api/services.json")).await;
    assert_eq!(services["services"][0]["registrationPending"], true);
    let doc = document(&public).await;
    assert_eq!(doc["active"], true);
    assert_eq!(doc["registrations"], json!([]));
    assert_eq!(
        doc["services"],
        json!([{"name": "web", "endpoint": format!("{public}/services/weather")}])
    );

    // No signer: refused with the fix, nothing minted.
    let out = obol_in(dir, &["sell", "register", "--chain", "devnet"], &[], None);
    refused(&out, "wallet");
    assert_eq!(agents_of(dir, seller).await, 0);

    // Registered: the id is recorded, listed in the document, and the offer turns Registered.
    let register = [
        "--json",
        "sell",
        "register",
        "--chain",
        "devnet",
        "--name",
        "Weather Agent",
    ];
    let first = json_of(&obol_in(dir, &register, &key(SELLER_KEY), None));
    assert_eq!(first["outcome"], "registered");
    assert_eq!(first["chain"], "devnet");
    assert_eq!(first["agentRegistry"], REGISTRY);
    assert_eq!(
        first["agentUri"],
        format!("{public}/.well-known/agent-registration.json")
    );
    assert_eq!(first["metadataWritten"], true);
    assert_eq!(
        first["notes"][0].as_str().unwrap(),
        format!(
            "the agent is owned by {seller}, payments go to {PAY_TO}: a hot signer and a cold payee is fine"
        )
    );
    let id = first["agentId"].as_u64().unwrap();
    let id_text = id.to_string();
    let tx = first["txHash"].as_str().unwrap().to_owned();
    assert_eq!(agents_of(dir, seller).await, 1);
    let reader = registry_client(dir);
    assert_eq!(
        reader.agent_uri(U256::from(id)).await.unwrap(),
        format!("{public}/.well-known/agent-registration.json")
    );
    assert_eq!(
        reader
            .get_metadata(U256::from(id), "x402")
            .await
            .unwrap()
            .as_ref(),
        br#"{"x402":true}"#
    );
    wait_registered(dir, "weather", ("True", "Active", Some(&id_text))).await;
    let status = stdout(&obol_in(dir, &["sell", "status", "weather"], &[], None));
    assert!(
        status.contains(&format!("  Agent ID: {id} (ERC-8004)\n")),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "✓ Registered        Active                       Registered as ERC-8004 agent {id} on devnet"
        )),
        "{status}"
    );
    let doc = document(&public).await;
    assert_eq!(doc["name"], "Weather Agent");
    assert_eq!(
        doc["registrations"],
        json!([{"agentId": id, "agentRegistry": REGISTRY}])
    );
    let shown = json_of(&obol_in(
        dir,
        &["--json", "sell", "identity", "show"],
        &[],
        None,
    ));
    assert_eq!(
        shown["registrations"],
        json!([{"chain": "devnet", "chainId": 84532, "agentId": id_text, "agentRegistry": REGISTRY, "txHash": tx}])
    );
    assert_eq!(shown["spec"]["name"], "Weather Agent");

    // A rerun changes nothing: same id, still one NFT; the human output names the id.
    let out = obol_in(
        dir,
        &["sell", "register", "--chain", "devnet"],
        &key(SELLER_KEY),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("Agent ID: {id}\n")),
        "{}",
        stdout(&out)
    );
    assert_contains(
        &stdout(&out),
        "unchanged: the agent already points at this stack",
    );
    assert_eq!(agents_of(dir, seller).await, 1);

    // --endpoint must be the stack's public URL (the document lists the offers there).
    let out = obol_in(
        dir,
        &[
            "sell",
            "register",
            "--chain",
            "devnet",
            "--endpoint",
            "https://moved.example",
        ],
        &key(SELLER_KEY),
        None,
    );
    refused(
        &out,
        &format!(
            "--endpoint https://moved.example is not the stack's public URL {public}: the registration document lists the offers under the public URL"
        ),
    );
    assert_contains(
        &stderr(&out),
        "restart the stack with `obol stack up --public-url https://moved.example`",
    );
    let same = json_of(&obol_in(
        dir,
        &[
            "--json",
            "sell",
            "register",
            "--chain",
            "devnet",
            "--endpoint",
            &format!("{public}/"),
        ],
        &key(SELLER_KEY),
        None,
    ));
    assert_eq!(same["outcome"], "unchanged");

    // URI drift (the agent moved elsewhere, e.g. by an old stack): setAgentURI back, same agent.
    point_elsewhere(dir, id, "https://moved.example").await;
    let back = json_of(&obol_in(
        dir,
        &["--json", "sell", "register", "--chain", "devnet"],
        &key(SELLER_KEY),
        None,
    ));
    assert_eq!(
        (back["outcome"].as_str(), back["agentId"].as_u64()),
        (Some("uriUpdated"), Some(id))
    );
    assert_eq!(
        back["previousUri"],
        "https://moved.example/.well-known/agent-registration.json"
    );
    assert_eq!(
        reader.agent_uri(U256::from(id)).await.unwrap(),
        format!("{public}/.well-known/agent-registration.json")
    );
    assert_eq!(agents_of(dir, seller).await, 1, "no second NFT");

    // Import rules: another id for a recorded chain, a signer that does not control the agent,
    // an agent that does not exist.
    let import = |agent: &str, k: &str| {
        obol_in(
            dir,
            &[
                "sell",
                "identity",
                "import",
                "--agent-id",
                agent,
                "--chain",
                "devnet",
            ],
            &key(k),
            None,
        )
    };
    refused(
        &import(&(id + 1).to_string(), SELLER_KEY),
        &format!("devnet already has agent id {id}; forget it first"),
    );

    // Forget: the offer waits again; forgetting twice is an error.
    let out = obol_in(dir, &["sell", "identity", "forget", "devnet"], &[], None);
    assert!(
        stdout(&out).starts_with(&format!(
            "Forgot agent {id} on devnet; the NFT stays on-chain"
        )),
        "{}",
        stdout(&out)
    );
    wait_registered(
        dir,
        "weather",
        ("False", "AwaitingExternalRegistration", None),
    )
    .await;
    refused(
        &obol_in(dir, &["sell", "identity", "forget", "devnet"], &[], None),
        "no agent id is recorded for devnet (recorded: none)",
    );
    refused(
        &import(&id_text, OTHER_KEY),
        &format!(
            "signer {} does not control agent {id} (owner {seller}",
            address_of(OTHER_KEY)
        ),
    );
    refused(
        &import("4242", SELLER_KEY),
        "agent 4242 does not exist in eip155:84532:",
    );
    let out = import(&id_text, SELLER_KEY);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("Imported agent {id} on devnet ({REGISTRY})")),
        "{}",
        stdout(&out)
    );
    wait_registered(dir, "weather", ("True", "Active", Some(&id_text))).await;

    // A lost record (a crash after the registration was mined): registering again finds the
    // mined agent by owner and URI instead of minting.
    assert!(
        obol_in(dir, &["sell", "identity", "forget", "devnet"], &[], None)
            .status
            .success()
    );
    let recovered = json_of(&obol_in(
        dir,
        &["--json", "sell", "register", "--chain", "devnet"],
        &key(SELLER_KEY),
        None,
    ));
    assert_eq!(
        (recovered["outcome"].as_str(), recovered["agentId"].as_u64()),
        (Some("recovered"), Some(id))
    );
    assert_eq!(agents_of(dir, seller).await, 1, "still one NFT");
    wait_registered(dir, "weather", ("True", "Active", Some(&id_text))).await;

    // Discovery contacts public addresses only by default: this loopback seller is listed as
    // skipped, with the flag that includes it.
    let found = json_of(&discover(dir, true, &[]));
    assert!(
        found["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["agentId"] != id),
        "{found}"
    );
    let skipped = found["skipped"].as_array().unwrap();
    let ours = skipped.iter().find(|a| a["agentId"] == id).unwrap();
    assert_eq!(ours["reason"], "nonPublic", "{found}");
    assert_eq!(found["allowPrivate"], false);
    assert_eq!(found["timeoutSecs"], 30);
    let out = discover(dir, false, &[]);
    assert_contains(
        &stdout(&out),
        &format!(
            "agent {id} — skipped: {public}/.well-known/agent-registration.json is not a public address (--allow-private to fetch it)"
        ),
    );

    // With --allow-private: the registry's logs → the document → the catalog's terms.
    let found = json_of(&discover(dir, true, &["--allow-private"]));
    assert_eq!(found["skipped"], json!([]), "{found}");
    let agents = found["agents"].as_array().unwrap();
    let ours = agents.iter().find(|a| a["agentId"] == id).unwrap();
    assert_eq!(ours["name"], "Weather Agent");
    assert_eq!(ours["listsRegistration"], true);
    assert_eq!(ours["owner"], seller.to_checksum(None));
    assert_eq!(
        ours["offers"][0]["endpoint"],
        format!("{public}/services/weather")
    );
    assert_eq!(ours["offers"][0]["price"], "0.001 USDC/request");
    assert_eq!(ours["offers"][0]["catalog"], "listed");
    // An agent's `discover` (obol mcp) finds the same.
    let by_agent = crate::mcp::one_tool_call(
        dir,
        obol_devnet::DEV_KEYS[7],
        "discover",
        json!({"chain": "devnet", "fromBlock": 0, "allowPrivate": true}),
    )
    .await;
    assert_eq!(by_agent["agents"], found["agents"], "{by_agent}");
    let out = discover(dir, false, &["--allow-private"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(
        &stdout(&out),
        &format!("agent {id} — Weather Agent (owner {seller})"),
    );
    assert_contains(
        &stdout(&out),
        &format!(
            "  offer: {public}/services/weather — price 0.001 USDC/request, network base-sepolia"
        ),
    );

    // The last offer deleted: the tombstone keeps the registration; discovery skips it.
    let out = obol_in(dir, &["sell", "delete", "weather", "--yes"], &[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("the tombstone", || async {
        document(&public).await["active"] == false
    })
    .await;
    let doc = document(&public).await;
    assert_eq!(doc["x402Support"], false);
    assert_eq!(doc["services"], json!([]));
    assert_eq!(doc["description"], "Agent Weather Agent (deactivated)");
    assert_eq!(
        doc["registrations"],
        json!([{"agentId": id, "agentRegistry": REGISTRY}])
    );
    let found = json_of(&discover(dir, true, &["--allow-private"]));
    assert!(
        found["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["agentId"] != id),
        "{found}"
    );
    assert_eq!(
        found["skipped"],
        json!([]),
        "a tombstone is read, not skipped"
    );

    // An agent whose document never answers is reported as timed out, by the --timeout
    // deadline (each request alone would wait 10 s).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_uri = format!(
        "http://{}/.well-known/agent-registration.json",
        silent.local_addr().unwrap()
    );
    let other = obol_x402::LocalSigner::from_private_key_hex(OTHER_KEY).unwrap();
    let silent_id = registry_client(dir)
        .with_signer(&other)
        .register(&silent_uri, &[], None)
        .await
        .unwrap()
        .agent_id;
    let started = std::time::Instant::now();
    let out = discover(dir, false, &["--allow-private", "--timeout", "2"]);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(
        &stdout(&out),
        &format!("agent {silent_id} — timed out: {silent_uri} did not answer within --timeout 2 s"),
    );
    drop(silent);

    // A wallet that already owns an agent older than the searched range (the silent one) is
    // refused by default, with the ways past it; --new-agent mints for this stack anyway.
    assert!(
        obol_in(dir, &["sell", "identity", "forget", "devnet"], &[], None)
            .status
            .success()
    );
    let other = address_of(OTHER_KEY);
    assert_eq!(agents_of(dir, other).await, 1);
    let after = (registry_client(dir).chain().head().await.unwrap() + 1).to_string();
    let guarded = [
        "sell",
        "register",
        "--chain",
        "devnet",
        "--search-from-block",
        &after,
    ];
    let out = obol_in(dir, &guarded, &key(OTHER_KEY), None);
    refused(
        &out,
        &format!("{other} holds 1 agent(s) in the registry but registered only 0 since block"),
    );
    for way in [
        "`obol sell identity import --agent-id N --chain devnet`",
        "`obol sell register --chain devnet --search-from-block B`",
        "`obol sell register --chain devnet --new-agent`",
    ] {
        assert!(stderr(&out).contains(way), "{way}: {}", stderr(&out));
    }
    assert_eq!(agents_of(dir, other).await, 1, "nothing minted");
    let mut new_agent = vec!["--json"];
    new_agent.extend_from_slice(&guarded);
    new_agent.push("--new-agent");
    let minted = json_of(&obol_in(dir, &new_agent, &key(OTHER_KEY), None));
    assert_eq!(minted["outcome"], "registered", "{minted}");
    let minted_id = minted["agentId"].as_u64().unwrap();
    assert!(
        U256::from(minted_id) != silent_id && minted_id != id,
        "{minted}"
    );
    assert_eq!(agents_of(dir, other).await, 2);
    // Once recorded, a plain rerun (no flag) leaves it as is.
    let again = json_of(&obol_in(
        dir,
        &["--json", "sell", "register", "--chain", "devnet"],
        &key(OTHER_KEY),
        None,
    ));
    assert_eq!(
        (again["outcome"].as_str(), again["agentId"].as_u64()),
        (Some("unchanged"), Some(minted_id))
    );
    assert_eq!(agents_of(dir, other).await, 2);
}

// Multi-threaded: the upstream must answer while a worker blocks on the `obol` child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_registration_and_the_expected_agent_id() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let upstream = upstream().await;
    let _guard = DevnetStackGuard(dir);
    let public = start(dir);
    let sell = [
        "--json",
        "sell",
        "inference",
        "llm",
        "--model",
        "qwen3:0.6b",
        "--upstream",
        &upstream,
        "--pay-to",
        PAY_TO,
        "--chain",
        "base-sepolia",
    ];

    // base-sepolia's only endpoint is dead: the registration fails, the offer is sold anyway.
    let dead = format!("127.0.0.1:{}", obol_testkit::http::free_port());
    let add = |url: &str| {
        let out = obol_in(
            dir,
            &[
                "network",
                "add",
                "base-sepolia",
                "--endpoint",
                url,
                "--allow-writes",
                "--no-check",
            ],
            &[],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    };
    add(&format!("http://{dead}"));
    let out = obol_in(dir, &sell[1..], &key(SELLER_KEY), None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stderr(&out), "warning: ERC-8004 registration failed: ");
    assert_contains(
        &stderr(&out),
        "retry with `obol sell register --chain base-sepolia`",
    );
    wait_registered(dir, "llm", ("False", "AwaitingExternalRegistration", None)).await;
    let unpaid = reqwest::Client::new()
        .post(format!("{public}/services/llm/v1/chat/completions"))
        .json(&json!({"model": "qwen3:0.6b", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status().as_u16(), 402, "sold while unregistered");

    // base-sepolia now reaches the devnet (chain 84532): sell again, registered on the way.
    assert!(
        obol_in(dir, &["network", "remove", "base-sepolia"], &[], None)
            .status
            .success()
    );
    add(&devnet_url(dir));
    let sold = json_of(&obol_in(dir, &sell, &key(SELLER_KEY), None));
    let registration = &sold["registration"];
    assert_eq!(registration["status"], "registered", "{sold}");
    assert_eq!(registration["outcome"], "registered");
    assert_eq!(registration["chain"], "base-sepolia");
    let id = registration["agentId"].as_u64().unwrap();
    let id_text = id.to_string();
    wait_registered(dir, "llm", ("True", "Active", Some(&id_text))).await;
    let again = json_of(&obol_in(dir, &sell, &key(SELLER_KEY), None));
    assert_eq!(again["registration"]["outcome"], "unchanged");

    // `obol buy inference` of one call from the stack, expecting agent `expected`.
    let buy = |json: bool, expected: &str| {
        let mut args = if json { vec!["--json"] } else { vec![] };
        args.extend(["buy", "inference", &public, "--count", "1", "--yes"]);
        args.extend(["--expected-agent-id", expected]);
        obol_in(dir, &args, &key(BUYER_KEY), None)
    };
    let bought = || json_of(&obol_in(dir, &["--json", "buy", "list"], &[], None));
    let wrong = (id + 1).to_string();
    let out = buy(false, &wrong);
    refused(
        &out,
        &format!(
            "refusing to buy: {public}/.well-known/agent-registration.json does not list agent {wrong} in {REGISTRY} (it lists {id} in {REGISTRY}) (--expected-agent-id {wrong})"
        ),
    );
    assert!(!stderr(&out).contains("signed"), "{}", stderr(&out));
    assert_eq!(bought(), json!([]), "nothing signed, nothing bought");

    // The document claims the agent, but the agent points elsewhere on-chain: refused.
    point_elsewhere(dir, id, "https://elsewhere.example").await;
    refused(
        &buy(false, &id_text),
        &format!(
            "refusing to buy: agent {id}'s agentURI is \"https://elsewhere.example/.well-known/agent-registration.json\", not {public}/.well-known/agent-registration.json"
        ),
    );
    assert_eq!(bought(), json!([]));
    let back = json_of(&obol_in(
        dir,
        &["--json", "sell", "register", "--chain", "base-sepolia"],
        &key(SELLER_KEY),
        None,
    ));
    assert_eq!(back["outcome"], "uriUpdated");

    // The right agent: checked, then bought.
    let out = buy(true, &id_text);
    let purchase = json_of(&out);
    assert_eq!(purchase["status"], "bought");
    assert_eq!(purchase["remaining"], 1);
    let out = buy(false, &id_text);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        &format!("identity: the seller is ERC-8004 agent {id} in {REGISTRY} ✓"),
    );
}
