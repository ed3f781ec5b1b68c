//! End-to-end tests of the `obol` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Checks a whole output against its snapshot in `tests/it/snapshots/` (insta; `cargo insta
/// review` updates them, and under `CI=true` a missing or different one fails). Each
/// `literal => name` pair (a temporary path, a URL with a free port) is written as `[name]`.
/// Insta ignores trailing whitespace, so the output's end is checked here: one newline.
macro_rules! assert_output_snapshot {
    ($name:expr, $output:expr $(, $literal:expr => $redacted:expr)* $(,)?) => {{
        let output: &str = &$output;
        assert_eq!(&output[output.trim_end().len()..], "\n", "{output:?} ends in one newline");
        #[allow(unused_mut)]
        let mut settings = insta::Settings::clone_current();
        $(settings.add_filter(&regex::escape($literal), concat!("[", $redacted, "]"));)*
        settings.bind(|| insta::assert_snapshot!($name, output));
    }};
}

mod backup;
mod buy;
mod cluster;
mod cluster_cli;
mod consistency;
mod decode;
mod demo;
mod devnet;
mod discovery;
mod doctor;
mod flows;
mod hostname;
mod identity;
mod interop;
mod manifest;
mod mcp;
mod metered;
mod network;
mod operator;
mod payment_store;
mod secrets;
mod shared_facilitator;
mod sign_in;
mod snippets;
mod stack;
mod storefront;
mod tls;
mod token_address;
mod tunnel;
mod upto_interop;
mod wallet;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `obol` with `args`, feeding `stdin`.
pub fn obol(args: &[&str], stdin: Option<&str>) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_obol")).args(args), stdin)
}

/// Runs `obol` with its config under `root` and extra environment variables. Variables that
/// would leak in from the caller's environment are cleared.
pub fn obol_in(root: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_obol"));
    command
        .args(args)
        .env("OBOL_CONFIG_DIR", root.join("config"))
        .env("OBOL_DATA_DIR", root.join("data"))
        .env("OBOL_STATE_DIR", root.join("state"))
        // Tests never reach a public network: a stack without a facilitator setting talks to
        // a closed loopback port instead of the public default.
        .env("OBOL_DEFAULT_FACILITATOR_URL", "http://127.0.0.1:9")
        .env_remove("OBOL_PRIVATE_KEY")
        .env_remove("OBOL_WALLET_PASSWORD")
        .envs(env.iter().copied());
    run(&mut command, stdin)
}

/// `obol stack init` on loopback ports the OS picks (`gateway` pins the gateway's), with the
/// embedded facilitator on the devnet when `facilitator` is set, then [`start_stack`].
pub fn stack_up(dir: &Path, gateway: Option<&str>, facilitator: bool) {
    init_and_start(dir, gateway.unwrap_or("127.0.0.1:0"), None, facilitator);
}

/// [`stack_up`] with the facilitator on a fixed gateway port whose URL is also the public URL
/// (so what the stack publishes, e.g. its registration document, is fetchable); returns it.
pub fn stack_up_public(dir: &Path) -> String {
    let port = obol_testkit::http::free_port();
    let public = format!("http://127.0.0.1:{port}");
    init_and_start(dir, &format!("127.0.0.1:{port}"), Some(&public), true);
    public
}

fn init_and_start(dir: &Path, gateway: &str, public: Option<&str>, facilitator: bool) {
    let mut extra = Vec::new();
    if let Some(public) = public {
        extra.extend(["--public-url", public]);
    }
    if facilitator {
        extra.extend(["--facilitator-chain", "devnet"]);
    }
    stack_init(dir, gateway, &extra);
    start_stack(dir);
}

/// `obol stack init --force` with the gateway on `gateway`, the admin API and the buyer proxy
/// on free loopback ports, and `extra` flags.
pub fn stack_init(dir: &Path, gateway: &str, extra: &[&str]) {
    let mut init = vec![
        "stack",
        "init",
        "--force",
        "--gateway-listen",
        gateway,
        "--admin-listen",
        "127.0.0.1:0",
        "--buyer-listen",
        "127.0.0.1:0",
    ];
    init.extend_from_slice(extra);
    let out = obol_in(dir, &init, &[], None);
    assert!(out.status.success(), "stack init: {}", stderr(&out));
}

/// `obol stack up`, dev key 9 paying the embedded facilitator's gas.
pub fn start_stack(dir: &Path) {
    start_stack_with(dir, &[]);
}

/// [`start_stack`] with more environment for the daemon.
pub fn start_stack_with(dir: &Path, env: &[(&str, &str)]) {
    let mut all = vec![("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[9])];
    all.extend_from_slice(env);
    let out = obol_in(dir, &["stack", "up"], &all, None);
    assert!(out.status.success(), "stack up: {}", stderr(&out));
}

/// `obol facilitator serve`'s stderr, line by line.
pub type StderrLines = std::io::Lines<std::io::BufReader<std::process::ChildStderr>>;

/// Starts `obol facilitator serve` on the devnet of `dir` (gas from dev account 9, a free
/// loopback port): the process, its first stderr line (the banner), and the lines after it.
pub fn facilitator_serve(dir: &Path) -> (std::process::Child, String, StderrLines) {
    use std::io::{BufRead as _, BufReader};
    let mut server = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args([
            "facilitator",
            "serve",
            "--chain",
            "devnet",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("OBOL_CONFIG_DIR", dir.join("config"))
        .env("OBOL_STATE_DIR", dir.join("state"))
        .env("OBOL_PRIVATE_KEY", obol_devnet::DEV_KEYS[9])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let banner = lines.next().unwrap().unwrap();
    (server, banner, lines)
}

/// Fails the test, with the run's output, unless it succeeded.
pub fn succeeded(out: &Output) {
    assert!(out.status.success(), "{}\n{}", stdout(out), stderr(out));
}

/// The document an `obol --json …` run printed; a failed run fails the test with its output.
pub fn json_of(out: &Output) -> serde_json::Value {
    succeeded(out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The devnet's RPC URL, from the networks file `devnet up` wrote.
pub fn devnet_url(dir: &Path) -> String {
    let file = obol_config::NetworksFile::load(&dir.join("config/networks.json")).unwrap();
    file.get("devnet").unwrap().endpoints[0].url.clone()
}

/// `token` (atomic units) held on `chain` by the wallet of `key`.
pub fn balance(dir: &Path, chain: &str, key: &str, token: &str) -> u128 {
    let out = obol_in(
        dir,
        &[
            "--json", "wallet", "balance", "--chain", chain, "--token", token,
        ],
        &[("OBOL_PRIVATE_KEY", key)],
        None,
    );
    json_of(&out)["token"]["atomic"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn run(command: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// Path of a spec header vector shipped by the x402 crate.
pub fn vector_path(name: &str) -> String {
    format!(
        "{}/../x402/tests/vectors/{name}.b64",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The header vector's value.
pub fn vector(name: &str) -> String {
    std::fs::read_to_string(vector_path(name))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn version() {
    let out = obol(&["--version"], None);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("obol {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// Fails the test unless `text` (a run's stdout or stderr) contains `wanted`, showing the text.
#[track_caller]
pub fn assert_contains(text: &str, wanted: &str) {
    assert!(text.contains(wanted), "{text}");
}

/// Fails the test unless the run failed with status 1 and said `reason` on stderr.
#[track_caller]
pub fn refused(out: &Output, reason: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stdout(out));
    assert_contains(&stderr(out), reason);
}
