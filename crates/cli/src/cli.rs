//! Command-line definitions (clap only; behaviour lives in `commands`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod buy;
mod stack;
mod tunnel;

pub(crate) use buy::*;
pub(crate) use stack::*;
pub(crate) use tunnel::*;

/// obol-stack: sell and buy access to models and APIs, paid per request in stablecoins over
/// x402.
#[derive(Debug, Parser)]
#[command(name = "obol", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    /// Print machine-readable JSON instead of human output.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Keys for signing payments and transactions (encrypted keystores).
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// Chain RPC endpoints.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Inspect x402 messages.
    #[command(subcommand)]
    X402(X402Command),
    /// The embedded stack: daemon lifecycle.
    #[command(subcommand)]
    Stack(StackCommand),
    /// Sell access to an API or a model.
    #[command(subcommand)]
    Sell(SellCommand),
    /// Secrets offers refer to (an upstream's API key): values go in, never come out.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// A local EVM chain with our contracts (USDC, OBOL, Permit2, the x402 proxy, ERC-8004).
    #[command(subcommand)]
    Devnet(DevnetCommand),
    /// The x402 facilitator: verifies and settles payments on-chain.
    #[command(subcommand)]
    Facilitator(FacilitatorCommand),
    /// Buy from x402 sellers.
    #[command(subcommand)]
    Buy(BuyCommand),
    /// An MCP server on stdio for buying agents: probe, pay, call paid MCP tools, list
    /// purchases — with this wallet's key kept here and every payment under caps the agent
    /// cannot raise.
    Mcp(Box<McpArgs>),
    /// Kubernetes: what the stack needs in a cluster.
    #[command(subcommand)]
    Kube(KubeCommand),
    /// The Kubernetes controller: reconciles the cluster's ServiceOffers while this replica
    /// holds the leader lease; serves /healthz, /readyz and /metrics.
    Operator(Box<OperatorArgs>),
    /// A replica of the public gateway over a cluster's offers (`--kubernetes`), sharing the
    /// payment guard with the other replicas through the PostgreSQL `paymentStore`.
    Gateway(Box<GatewayArgs>),
    /// The buyer of a cluster's purchases (`--kubernetes`): the PurchaseRequest reconciler and
    /// the buyer proxy spending their pools (one replica: a pool has one spender).
    Buyer(Box<BuyerArgs>),
    /// A cloudflared tunnel to the gateway, run by the daemon: `up`, `down`, `status`, `logs`.
    #[command(subcommand)]
    Tunnel(TunnelCommand),
    /// The whole system on this machine: a devnet, the facilitator and a stack; sells and
    /// publishes a demo model and a JSON service, buys from a second wallet, pays, and prints
    /// the receipts.
    Demo(DemoArgs),
    /// Check the stack and explain what is wrong, each failed check with its fix: settings
    /// and file permissions, the daemon and its listeners, the TLS certificate, each chain's
    /// RPC, clock skew, write access and settlement gas, the facilitator's networks, each
    /// offer's upstream, the public URL from outside, the ERC-8004 agentURI, pending
    /// settlements and buyer pool expiries. Exits 1 when a check fails.
    Doctor,
    /// Shell completions on stdout: `obol completions bash > /etc/bash_completion.d/obol`,
    /// `obol completions zsh > "${fpath[1]}/_obol"`, `obol completions fish >
    /// ~/.config/fish/completions/obol.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Leave everything running to explore (Ctrl-C stops it).
    #[arg(long)]
    pub(crate) keep: bool,
    /// How many calls of the demo model to buy and make (1-100).
    #[arg(long, default_value_t = 5)]
    pub(crate) calls: u32,
    /// Keep the demo stack's files here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DevnetCommand {
    /// Start anvil in the background, place the contracts, fund the dev accounts, and register
    /// it as the `devnet` chain (read-write).
    Up,
    /// Stop the devnet and forget the `devnet` chain.
    Down,
    /// Whether the devnet runs, its endpoint and head block.
    Status,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FacilitatorCommand {
    /// Serve /verify, /settle, /supported, /healthz and /metrics until interrupted.
    Serve(FacilitatorServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct FacilitatorServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4040")]
    pub(crate) listen: std::net::SocketAddr,
    /// Chains to settle on (repeatable); each needs an endpoint added with --allow-writes.
    #[arg(long = "chain", required = true)]
    pub(crate) chains: Vec<String>,
    /// The key that pays settlement gas.
    #[command(flatten)]
    pub(crate) signer: SignerArgs,
    /// Require `Authorization: Bearer <token>`, the token read from this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) auth_token_file: Option<PathBuf>,
    /// Seconds to wait for a settlement receipt before answering `settlement_pending`.
    #[arg(long, default_value_t = 30)]
    pub(crate) receipt_timeout: u64,
    /// Keys paying gas per chain: the signer and N−1 keys derived from it, topped up from it at
    /// start, so settlements do not queue on one nonce.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) gas_wallets: u32,
}

#[derive(Debug, Subcommand)]
pub(crate) enum X402Command {
    /// Decode an x402 header (PAYMENT-REQUIRED, PAYMENT-SIGNATURE, X-PAYMENT, PAYMENT-RESPONSE,
    /// X-PAYMENT-RESPONSE) or a v1 402 JSON body, and explain it.
    ///
    /// Prints the decoded message as JSON on stdout and a one-line summary on stderr (network,
    /// amount in token units, payTo, payer, and whether the signature recovers to the payer).
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// The header value, a `Name: value` header line, a file holding either, or `-` for stdin.
    pub(crate) input: String,

    /// Treat INPUT as a path even if it does not look like one.
    #[arg(long)]
    pub(crate) file: bool,
}

impl DecodeArgs {
    /// The path to read, when the input names a file.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        let path = PathBuf::from(&self.input);
        (self.file || (self.input != "-" && path.is_file())).then_some(path)
    }
}

/// Where a wallet password comes from when a keystore is written or opened.
#[derive(Debug, Default, Args)]
pub(crate) struct PasswordArgs {
    /// Read the wallet password from the first line of this file (else $OBOL_WALLET_PASSWORD,
    /// else a prompt).
    #[arg(long, value_name = "FILE")]
    pub(crate) password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WalletCommand {
    /// Create a wallet with a fresh random key.
    New {
        /// Wallet name.
        #[arg(long, default_value = obol_wallet::DEFAULT_WALLET)]
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Import an existing private key into an encrypted keystore.
    Import {
        /// Wallet name.
        #[arg(long, default_value = obol_wallet::DEFAULT_WALLET)]
        name: String,
        /// File holding the hex private key, or `-` for stdin (default: stdin, or a prompt in a
        /// terminal).
        #[arg(long, value_name = "FILE")]
        private_key_file: Option<PathBuf>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List wallets and their addresses.
    List,
    /// Print a wallet's address (no password needed).
    Address {
        /// Wallet name (default: `default`, or the key in $OBOL_PRIVATE_KEY when set).
        name: Option<String>,
    },
    /// Show a wallet's native and token balance on a chain.
    Balance {
        /// Wallet name (default: `default`, or the key in $OBOL_PRIVATE_KEY when set).
        name: Option<String>,
        /// Chain name, alias or CAIP-2 id (must have an endpoint: `obol network add`).
        #[arg(long)]
        chain: String,
        /// Token symbol (default: USDC where the chain has it).
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NetworkCommand {
    /// List configured chains and their endpoints (URLs redacted).
    List,
    /// Add an RPC endpoint to a chain. Endpoints are read-only unless --allow-writes.
    Add {
        /// Chain name, alias or CAIP-2 id (`base`, `base-sepolia`, `eip155:8453`, or a custom
        /// name with --chain-id).
        chain: String,
        /// The JSON-RPC URL (http or https). It may embed an API key; it is never printed.
        #[arg(long)]
        endpoint: String,
        /// Allow sending transactions through this endpoint.
        #[arg(long)]
        allow_writes: bool,
        /// Chain id, required for chains the registry does not know.
        #[arg(long)]
        chain_id: Option<u64>,
        /// Save without checking that the endpoint answers with the right chain id.
        #[arg(long)]
        no_check: bool,
    },
    /// Remove one endpoint, or every endpoint of a chain.
    Remove {
        /// Chain name, alias or CAIP-2 id.
        chain: String,
        /// Only this endpoint URL.
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Check every endpoint: chain id, head block, latency.
    Status {
        /// Only this chain.
        chain: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum StackCommand {
    /// Create the stack's settings (stack id, listeners, admin token).
    Init(Box<StackInitArgs>),
    /// Start the daemon in the background (idempotent).
    Up {
        /// Run in the foreground (containers, service managers).
        #[arg(long)]
        foreground: bool,
        /// Public base URL buyers reach the stack at (overrides the settings and OBOL_PUBLIC_URL).
        #[arg(long)]
        public_url: Option<String>,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Stop the daemon.
    Down,
    /// The daemon's state, listeners and offers.
    Status,
    /// Delete the settings (and with --force the data: offers, settled payments).
    Purge {
        /// Also delete the data directory.
        #[arg(long)]
        force: bool,
    },
    /// Write a backup: an online, consistent copy of every database (while the stack runs and
    /// serves), the settings and the network endpoints, in one tar with a manifest (0600).
    Backup {
        /// The tar file to write (replaced atomically).
        file: PathBuf,
        /// Also include the wallets' keystores (still encrypted) and the offers' secrets (plain
        /// text, as they are kept): keep such a backup as safe as the keys themselves.
        #[arg(long)]
        include_keys: bool,
    },
    /// Restore a backup into this stack's directories (the stack must be stopped).
    Restore {
        /// The tar file `obol stack backup` wrote.
        file: PathBuf,
        /// Replace existing settings and databases.
        #[arg(long)]
        force: bool,
    },
    /// Write a systemd unit running `obol stack up --foreground` with restart on failure and
    /// sandboxing; prints the `systemctl` commands that enable it (it does not run them).
    InstallService {
        /// A user unit (~/.config/systemd/user) instead of a system one (/etc/systemd/system).
        #[arg(long)]
        user: bool,
        /// Only print the unit.
        #[arg(long)]
        print: bool,
        /// Replace an existing unit that differs.
        #[arg(long)]
        force: bool,
    },
    /// Remove the unit `install-service` wrote (stop and disable it first with `systemctl`).
    UninstallService {
        /// The user unit.
        #[arg(long)]
        user: bool,
    },
}

/// HTTPS on the public listener.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct TlsArgs {
    /// Serve the gateway over HTTPS with this PEM certificate chain (re-read when it changes:
    /// a renewal needs no restart).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// Also listen for plain HTTP here, answering every request with a redirect to HTTPS.
    #[arg(long, value_name = "ADDR", requires = "tls_cert")]
    pub(crate) http_redirect: Option<String>,
}

impl TlsArgs {
    /// The setting these flags make (none without a certificate).
    pub(crate) fn setting(&self) -> Option<obol_config::stack::TlsSetting> {
        let (cert, key) = (self.tls_cert.as_ref()?, self.tls_key.as_ref()?);
        let absolute =
            |p: &std::path::PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        Some(obol_config::stack::TlsSetting {
            cert_file: absolute(cert),
            key_file: absolute(key),
            redirect_listen: self.http_redirect.clone(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum SellCommand {
    /// Sell an HTTP API: create or update a ServiceOffer.
    Http(Box<SellHttpArgs>),
    /// Sell an OpenAI-compatible model (Ollama, vLLM, …): create or update an inference offer.
    Inference(Box<SellInferenceArgs>),
    /// Sell MCP tools, priced per call: create or update an mcp offer served over streamable
    /// HTTP at its path, each tool's arguments POSTed as JSON to `<upstream>/<tool>`.
    Mcp(Box<SellMcpArgs>),
    /// Change an offer's price, recipient or chain.
    Update(Box<SellUpdateArgs>),
    /// Stop selling an offer (drains it at once; re-run `sell http`/`sell inference` to resume).
    Stop {
        /// Offer name.
        name: String,
        /// Namespace.
        #[arg(long, short, default_value_t = default_namespace())]
        namespace: String,
    },
    /// Set stack-wide defaults: payTo, chain, and the facilitator.
    Pricing {
        /// Default recipient for new offers.
        #[arg(long, visible_aliases = ["wallet", "recipient"])]
        pay_to: Option<String>,
        /// Default chain for new offers.
        #[arg(long)]
        chain: Option<String>,
        /// Use a remote facilitator at this URL.
        #[arg(
            long,
            env = "X402_FACILITATOR_URL",
            conflicts_with = "facilitator_chain"
        )]
        facilitator_url: Option<String>,
        /// Run the embedded facilitator on this chain (repeatable).
        #[arg(long)]
        facilitator_chain: Vec<String>,
    },
    /// Probe an offer through the gateway, unpaid: expect 402.
    Test {
        /// Offer name.
        name: String,
        /// Namespace.
        #[arg(long, short, default_value_t = default_namespace())]
        namespace: String,
        /// Path below the offer's prefix.
        #[arg(long, default_value = "/")]
        path: String,
    },
    /// List offers.
    List,
    /// One offer's conditions, or the stack's payment configuration.
    Status {
        /// Offer name (none: every offer).
        name: Option<String>,
        /// Namespace.
        #[arg(long, short, default_value_t = default_namespace())]
        namespace: String,
    },
    /// Delete an offer.
    Delete {
        /// Offer name.
        name: String,
        /// Namespace.
        #[arg(long, short, default_value_t = default_namespace())]
        namespace: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y', alias = "force")]
        yes: bool,
    },
    /// The storefront's branding: name, tagline, logo, theme, colours, description, contact.
    #[command(subcommand)]
    Info(InfoCommand),
    /// Register the stack as an ERC-8004 agent on a chain, or point its existing agent at this
    /// stack's registration document again, and record the agent id (never mints twice).
    Register(Box<SellRegisterArgs>),
    /// The stack's ERC-8004 agent ids, one per chain.
    #[command(subcommand)]
    Identity(IdentityCommand),
}

#[derive(Debug, Args)]
pub(crate) struct SellRegisterArgs {
    /// Chain to register on (name, alias or CAIP-2, or a custom name like `devnet`; needs an
    /// endpoint added with --allow-writes). Default: `obol sell pricing --chain`.
    #[arg(long)]
    pub(crate) chain: Option<String>,
    /// Public base URL the agentURI points under; must be the stack's public URL (the
    /// document lists the offers there). To change it, restart with `obol stack up
    /// --public-url URL`.
    #[arg(long)]
    pub(crate) endpoint: Option<String>,
    /// First block searched for an earlier registration by this signer (default: the last
    /// 10000 blocks; 0 searches the whole chain).
    #[arg(long, value_name = "BLOCK")]
    pub(crate) search_from_block: Option<u64>,
    /// Mint even though this wallet owns agents older than the searched range; use when none
    /// of them is this stack. A registration of this stack inside the range is still reused.
    #[arg(long)]
    pub(crate) new_agent: bool,
    /// Agent name in the registration document (default: the oldest registered offer's).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Agent description (default: the oldest registered offer's).
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// Agent image URL (default: <public URL>/agent-icon.png).
    #[arg(long)]
    pub(crate) image: Option<String>,
    /// The key that owns the agent and pays the gas.
    #[command(flatten)]
    pub(crate) signer: SignerArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum InfoCommand {
    /// Change the branding (an empty value clears a field); the running stack shows it at once.
    Set(Box<BrandingArgs>),
    /// The branding.
    Show,
}

/// `obol sell info set` (the original's `branding` fields).
#[derive(Debug, Args)]
pub(crate) struct BrandingArgs {
    /// The stack's name (at most 64 characters).
    #[arg(long)]
    pub(crate) display_name: Option<String>,
    /// One line under the name (at most 160).
    #[arg(long)]
    pub(crate) tagline: Option<String>,
    /// Logo image (http(s) URL).
    #[arg(long)]
    pub(crate) logo_url: Option<String>,
    /// `light`, `dark` or `obol`.
    #[arg(long)]
    pub(crate) theme: Option<String>,
    /// Accent colour, `#rgb` or `#rrggbb`.
    #[arg(long)]
    pub(crate) accent_color: Option<String>,
    /// Favicon (http(s) URL).
    #[arg(long)]
    pub(crate) favicon_url: Option<String>,
    /// Open Graph image for link previews (http(s) URL).
    #[arg(long)]
    pub(crate) og_image_url: Option<String>,
    /// A paragraph about the stack (at most 2000 characters).
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// Where buyers reach you.
    #[arg(long)]
    pub(crate) contact_email: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Record an agent registered elsewhere; the signer must control it (owner, agent wallet or
    /// approved operator).
    Import {
        /// The agent id (ERC-721 token id).
        #[arg(long)]
        agent_id: u64,
        /// The chain it is registered on.
        #[arg(long)]
        chain: String,
        /// The key that controls the agent.
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Forget a chain's agent id (the NFT stays on-chain; register or import again later).
    Forget {
        /// The chain, as recorded.
        chain: String,
    },
    /// The recorded agent ids and the registration document's URL.
    Show,
}

/// Payment flags shared by `sell http` and `sell inference`.
#[derive(Debug, Args)]
pub(crate) struct PaymentFlags {
    /// Recipient of payments (default: `obol sell pricing --pay-to`).
    #[arg(long, visible_aliases = ["wallet", "recipient"], env = "X402_WALLET")]
    pub(crate) pay_to: Option<String>,
    /// Chain, name, alias or CAIP-2 (default: `obol sell pricing --chain`, else base).
    #[arg(long)]
    pub(crate) chain: Option<String>,
    /// Token symbol.
    #[arg(long, default_value = "USDC")]
    pub(crate) token: String,
    /// Price per request in token units (alias --price).
    #[arg(long, visible_alias = "price")]
    pub(crate) per_request: Option<String>,
    /// Price per million tokens.
    #[arg(long)]
    pub(crate) per_mtok: Option<String>,
    /// Payment validity in seconds.
    #[arg(long, default_value_t = 300)]
    pub(crate) max_timeout: u64,
    /// Settle each payment before calling the upstream (for expensive or irreversible work; a
    /// failed call is then charged and logged as a refund owed). Default: serve, then settle.
    #[arg(long)]
    pub(crate) settle_first: bool,
    /// A route below the offer's path (repeatable; declaring routes makes them the whole
    /// table, anything else is refused): `path=/submit,methods=POST,price=0.5,gate=paid,
    /// summary=…,freeQuota=N`. Methods are separated by `|`; gate is `paid` (default), `free`
    /// or `auth` (wallets signed in with Sign-In-With-X).
    #[arg(
        long = "route",
        value_name = "path=…,methods=…,gate=…,price=…,summary=…"
    )]
    pub(crate) routes: Vec<String>,
    /// Another way to pay (repeatable), after the one the flags above describe:
    /// `token=OBOL,chain=ethereum,price=0.5[,payTo=0x…]` (keys left out are the flags' values;
    /// the price is in the same unit as theirs).
    #[arg(long = "payment", value_name = "token=…,chain=…,price=…,payTo=…")]
    pub(crate) payments: Vec<String>,
    /// Free calls per signed-in wallet (Sign-In-With-X) and day on each paid route without a
    /// `freeQuota=` of its own; the 402 then carries the sign-in challenge.
    #[arg(long, value_name = "N")]
    pub(crate) free_quota: Option<u32>,
    /// A vanity hostname for the offer: requests with this `Host` get its page at `/` and its
    /// API below (point the name's DNS at the stack, with TLS in front).
    #[arg(long, value_name = "HOST")]
    pub(crate) hostname: Option<String>,
    /// Requests served at once (one more gets 429).
    #[arg(long, value_name = "N")]
    pub(crate) max_in_flight: Option<u32>,
    /// Requests per second, bursts of twice as many (more get 429 with Retry-After).
    #[arg(long, value_name = "N")]
    pub(crate) rps: Option<u32>,
    /// Do not publish in the ERC-8004 registration.
    #[arg(long)]
    pub(crate) no_register: bool,
    #[command(flatten)]
    pub(crate) register: RegisterFlags,
}

/// How the offer appears in the ERC-8004 registration (each conflicts with --no-register).
#[derive(Debug, Args)]
pub(crate) struct RegisterFlags {
    /// Deprecated: registration is on by default.
    #[arg(long, hide = true, conflicts_with = "no_register")]
    pub(crate) register: bool,
    /// Name in the registration (default: the offer's name).
    #[arg(long, conflicts_with = "no_register")]
    pub(crate) register_name: Option<String>,
    /// Description (default "Obol Stack service <name>").
    #[arg(long, conflicts_with = "no_register")]
    pub(crate) register_description: Option<String>,
    /// Image URL.
    #[arg(long, conflicts_with = "no_register")]
    pub(crate) register_image: Option<String>,
    /// OASF skills (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', conflicts_with = "no_register")]
    pub(crate) register_skills: Vec<String>,
    /// OASF domains (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', conflicts_with = "no_register")]
    pub(crate) register_domains: Vec<String>,
    /// Extra metadata `KEY=VALUE` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", conflicts_with = "no_register")]
    pub(crate) register_metadata: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KubeCommand {
    /// The CustomResourceDefinitions (ServiceOffer, PurchaseRequest, AgentIdentity), generated
    /// from the resource types: one YAML stream on stdout (`--json`: a `List`), or one file per
    /// CRD plus kustomization.yaml in DIR.
    Crds {
        /// Write the files here instead (created if missing).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct OperatorArgs {
    /// The cluster's kubeconfig (default: in-cluster, else $KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The namespace of the leader lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long)]
    pub(crate) lease_namespace: Option<String>,
    /// This replica's name among the candidates (default: $POD_NAME, else host and pid).
    #[arg(long)]
    pub(crate) identity: Option<String>,
    /// Where /healthz, /readyz and /metrics listen.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub(crate) listen: String,
    /// The facilitator the gateways use: its `/supported` names who settles metered (`upto`)
    /// payments, which offers' `status.metered` lists (none: metered offers list `exact` only).
    #[arg(long, value_name = "URL")]
    pub(crate) facilitator_url: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Serve the offers of the Kubernetes cluster (the only mode: on one machine, `obol stack
    /// up` serves the gateway).
    #[arg(long)]
    pub(crate) kubernetes: bool,
    /// The cluster's kubeconfig (default: in-cluster, else $KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Where buyers reach the gateway.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub(crate) listen: String,
    /// Where /metrics and ForwardAuth listen (keep it off the public Service).
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub(crate) internal_listen: String,
    /// Public base URL buyers reach the gateway at (overrides the settings and OBOL_PUBLIC_URL).
    #[arg(long)]
    pub(crate) public_url: Option<String>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BuyerArgs {
    /// Serve the purchases of the Kubernetes cluster (the only mode: on one machine, `obol
    /// stack up` runs the buyer proxy).
    #[arg(long)]
    pub(crate) kubernetes: bool,
    /// The cluster's kubeconfig (default: in-cluster, else $KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Where agents reach the buyer proxy (only agents you trust: it spends the pools).
    #[arg(long, default_value = "0.0.0.0:8402")]
    pub(crate) listen: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Create or replace a secret from files (never from the command line, where other users
    /// and shell history see it).
    Set {
        /// Secret name (a DNS label).
        name: String,
        /// Namespace.
        #[arg(long, short, default_value_t = default_namespace())]
        namespace: String,
        /// `KEY=FILE` (repeatable; FILE `-` is stdin): the key's value is the file's text,
        /// surrounding white space dropped.
        #[arg(long = "from-file", value_name = "KEY=FILE", required = true)]
        from_file: Vec<String>,
    },
    /// The secrets of a namespace: names and keys, never values.
    List {
        /// Namespace.
        #[arg(long, short, default_value_t = default_namespace())]
        namespace: String,
    },
    /// Delete a secret (offers using it stop being served until it is set again).
    Delete {
        /// Secret name.
        name: String,
        /// Namespace.
        #[arg(long, short, default_value_t = default_namespace())]
        namespace: String,
    },
}

/// The seller's own credential for the upstream (`sell http` and `sell inference`).
#[derive(Debug, Args)]
pub(crate) struct UpstreamAuthFlags {
    /// Send the key in FILE (`-`: stdin) to the upstream with every request, as `Authorization:
    /// Bearer <key>` (a value with its own scheme, `Basic …`, as it is) or the header
    /// --upstream-auth-header names. Stored as secret `<name>-upstream-auth`, never in the offer.
    #[arg(long, value_name = "FILE")]
    pub(crate) upstream_auth_file: Option<String>,
    /// Use key KEY of an existing secret instead (`obol secret set`).
    #[arg(long, value_name = "SECRET/KEY", conflicts_with = "upstream_auth_file")]
    pub(crate) upstream_auth_secret: Option<String>,
    /// The header the key is sent as (default Authorization), e.g. X-Api-Key.
    #[arg(long, value_name = "NAME")]
    pub(crate) upstream_auth_header: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SellHttpArgs {
    /// Offer name (a DNS label).
    pub(crate) name: String,
    /// Namespace.
    #[arg(long, short, default_value_t = default_namespace())]
    pub(crate) namespace: String,
    /// Upstream URL paid requests are proxied to.
    #[arg(long, required_unless_present = "from_json")]
    pub(crate) upstream: Option<String>,
    /// Health path probed on the upstream.
    #[arg(long, default_value = "/health")]
    pub(crate) health_path: String,
    #[command(flatten)]
    pub(crate) upstream_auth: UpstreamAuthFlags,
    #[command(flatten)]
    pub(crate) payment: PaymentFlags,
    /// Take the whole spec from a JSON file (`-` for stdin): a ServiceOffer spec, or a
    /// ServiceOffer with `spec`. Other flags are ignored.
    #[arg(long, value_name = "FILE")]
    pub(crate) from_json: Option<String>,
    /// Price per hour (charged as 5 minutes per request; see docs/pricing.md).
    #[arg(long)]
    pub(crate) per_hour: Option<String>,
    /// Public path (default /services/<name>).
    #[arg(long)]
    pub(crate) path: Option<String>,
    /// Catalog description.
    #[arg(long)]
    pub(crate) description: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SellMcpArgs {
    /// Offer name (a DNS label).
    pub(crate) name: String,
    /// Namespace.
    #[arg(long, short, default_value_t = default_namespace())]
    pub(crate) namespace: String,
    /// Where tool calls go: each tool's JSON arguments are POSTed to `<upstream>/<tool>` (with
    /// `--mcp-server`: the MCP server's endpoint).
    #[arg(long)]
    pub(crate) upstream: String,
    /// A tool (repeatable): `NAME` (at the offer's price), `NAME:PRICE` (its own price per
    /// call) or `NAME:free`. With `--mcp-server`, the prices of those not at the offer's.
    #[arg(
        long = "tool",
        value_name = "NAME[:PRICE|:free]",
        required_unless_present = "mcp_server"
    )]
    pub(crate) tools: Vec<String>,
    /// The upstream is a streamable-HTTP MCP server: sell every tool it has (at the offer's
    /// price unless a `--tool` says otherwise), calling it by name.
    #[arg(long)]
    pub(crate) mcp_server: bool,
    /// Health path probed on the upstream.
    #[arg(long, default_value = "/health")]
    pub(crate) health_path: String,
    #[command(flatten)]
    pub(crate) upstream_auth: UpstreamAuthFlags,
    #[command(flatten)]
    pub(crate) payment: PaymentFlags,
    /// Public path of the MCP endpoint (default /services/<name>).
    #[arg(long)]
    pub(crate) path: Option<String>,
    /// What the tools are for (the MCP server's instructions, the catalog).
    #[arg(long)]
    pub(crate) description: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SellInferenceArgs {
    /// Offer name (a DNS label).
    pub(crate) name: String,
    /// Namespace.
    #[arg(long, short, default_value_t = default_namespace())]
    pub(crate) namespace: String,
    /// Model name as the upstream knows it.
    #[arg(long)]
    pub(crate) model: String,
    /// The model server (OpenAI-compatible; a hosted API's base URL such as
    /// `https://api.example/v1` works too, with --upstream-auth-file); without a price flag the
    /// price is 0.001 per request.
    #[arg(long, default_value = "http://localhost:11434")]
    pub(crate) upstream: String,
    /// Health path probed on the upstream (Ollama answers `/`; a hosted API, e.g. `/models`).
    #[arg(long, default_value = "/")]
    pub(crate) health_path: String,
    #[command(flatten)]
    pub(crate) upstream_auth: UpstreamAuthFlags,
    #[command(flatten)]
    pub(crate) payment: PaymentFlags,
}

#[derive(Debug, Args)]
pub(crate) struct SellUpdateArgs {
    /// Offer name.
    pub(crate) name: String,
    /// Namespace.
    #[arg(long, short, default_value_t = default_namespace())]
    pub(crate) namespace: String,
    /// New recipient.
    #[arg(long, visible_aliases = ["wallet", "recipient"])]
    pub(crate) pay_to: Option<String>,
    /// New chain.
    #[arg(long)]
    pub(crate) chain: Option<String>,
    /// New price per request (alias --price).
    #[arg(long, visible_alias = "price")]
    pub(crate) per_request: Option<String>,
    /// New price per million tokens.
    #[arg(long)]
    pub(crate) per_mtok: Option<String>,
    /// New price per hour.
    #[arg(long)]
    pub(crate) per_hour: Option<String>,
}
