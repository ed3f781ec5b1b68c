//! The `obol buy` and `obol mcp` arguments (split from `cli.rs` by concern).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::PasswordArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum BuyCommand {
    /// Ask a seller what it charges: call it unpaid and print every accepted payment.
    Probe(BuyProbeArgs),
    /// One paid HTTP call: request unpaid, read the 402, check it against --max-amount, sign
    /// one payment, retry with it. The response body goes to stdout, a summary to stderr.
    Pay(BuyPayArgs),
    /// Buy N calls of a seller's model: probe, check the budget and balance, confirm, pre-sign
    /// N authorizations here, and hand them to the stack's buyer proxy, which serves the model
    /// as `paid/<model>` and never sees the key.
    Inference(Box<BuyInferenceArgs>),
    /// Every purchase with its remaining and spent authorizations.
    List,
    /// One purchase: terms, counts and conditions.
    Status {
        /// The purchase's name.
        name: String,
        /// Namespace.
        #[arg(long, default_value = DEFAULT_BUY_NAMESPACE)]
        namespace: String,
    },
    /// Pre-sign N more authorizations for a purchase (same seller terms).
    Refill(BuyRefillArgs),
    /// Find sellers: agents registered on a chain's ERC-8004 Identity Registry whose
    /// registration documents advertise x402 services, with their offers and prices.
    Discover(BuyDiscoverArgs),
    /// Delete a purchase: the proxy stops serving it and drops its unspent authorizations.
    Cancel {
        /// The purchase's name.
        name: String,
        /// Namespace.
        #[arg(long, default_value = DEFAULT_BUY_NAMESPACE)]
        namespace: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

/// Where `obol buy` keeps its purchases.
pub(crate) const DEFAULT_BUY_NAMESPACE: &str = "buy";

/// Where a signing key comes from: a wallet by name (default `default`, or $OBOL_PRIVATE_KEY
/// when set), a raw key file, or a keystore file.
#[derive(Debug, Default, Args)]
pub(crate) struct SignerArgs {
    /// Wallet that signs (default: `default`, or $OBOL_PRIVATE_KEY when set).
    #[arg(long, conflicts_with_all = ["key_file", "keystore"])]
    pub(crate) wallet: Option<String>,
    /// A file holding the signer's raw hex private key.
    #[arg(long, value_name = "FILE", conflicts_with = "keystore")]
    pub(crate) key_file: Option<PathBuf>,
    /// A keystore file (Ethereum v3 JSON) to sign with.
    #[arg(long, value_name = "FILE")]
    pub(crate) keystore: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) password: PasswordArgs,
}

/// Signing options shared by `buy inference` and `buy refill`.
#[derive(Debug, Args)]
pub(crate) struct PresignFlags {
    /// Lifetime of each authorization (e.g. 3600, 30m, 12h, 30d; at least 10m).
    #[arg(long, default_value = "30d")]
    pub(crate) ttl: String,
    #[command(flatten)]
    pub(crate) signer: SignerArgs,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BuyInferenceArgs {
    /// The seller: its offer URL, or its stack's base URL when its catalog lists the model.
    pub(crate) seller: String,
    /// The seller's model (default: the only inference offer in the seller's catalog).
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// How many calls to pre-pay (default 50, or as many as --budget allows; at most 1000, 500
    /// for Permit2 tokens).
    #[arg(long)]
    pub(crate) count: Option<u32>,
    /// The most to commit, in --token units (e.g. 0.5 for 50 cents of USDC).
    #[arg(long)]
    pub(crate) budget: Option<String>,
    #[command(flatten)]
    pub(crate) token: TokenArgs,
    /// Buy the seller's metered (`upto`) option: each call signs a ceiling and is charged for
    /// the tokens it used (the pool's budget counts ceilings, the spend what was charged). Pays
    /// through Permit2: a one-time approval of the token, asked for.
    #[arg(long)]
    pub(crate) metered: bool,
    /// The purchase's name (default: the purchase already buying this model from this seller,
    /// which is topped up, else one derived from the model).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Namespace.
    #[arg(long, default_value = DEFAULT_BUY_NAMESPACE)]
    pub(crate) namespace: String,
    /// Replace an existing purchase of that name instead of topping it up.
    #[arg(long)]
    pub(crate) replace: bool,
    /// User-Agent for the probe (default obol-buyer/<version>).
    #[arg(long)]
    pub(crate) user_agent: Option<String>,
    /// Refuse, before signing, unless the seller is this ERC-8004 agent on the pricing chain:
    /// its /.well-known/agent-registration.json lists the id and the offer, and the agent's
    /// on-chain agentURI is that document.
    #[arg(long, value_name = "AGENT_ID")]
    pub(crate) expected_agent_id: Option<u64>,
    #[command(flatten)]
    pub(crate) refill: RefillFlags,
    #[command(flatten)]
    pub(crate) sign: PresignFlags,
}

/// The token a payment is counted in.
#[derive(Debug, Clone, Args)]
pub(crate) struct TokenArgs {
    /// The token amounts are counted in (--max-amount, --budget); options in other tokens are
    /// refused. With --token-address: the name given to that token.
    #[arg(long = "token", default_value = "USDC")]
    pub(crate) symbol: String,
    /// Pay in a token outside the built-in table, at this contract address (you confirm it).
    /// The seller's option names its EIP-712 domain (`extra`); its decimals are read from the
    /// chain (needs an endpoint: `obol network add`). Remembered in <config>/tokens.json for
    /// later commands and `obol mcp --token`.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) token_address: Option<obol_x402::primitives::Address>,
}

/// autoRefill of a new purchase: the daemon signs more with its refill key
/// (OBOL_REFILL_KEYSTORE) when fewer than --refill-below remain.
#[derive(Debug, Default, Args)]
pub(crate) struct RefillFlags {
    /// Turn autoRefill on: refill when fewer than N authorizations remain.
    #[arg(long, value_name = "N", requires = "refill_max_per_day")]
    pub(crate) refill_below: Option<u32>,
    /// How many to sign per refill (default: the purchase's count).
    #[arg(long, value_name = "N", requires = "refill_below")]
    pub(crate) refill_count: Option<u32>,
    /// Stop refilling once this many authorizations were ever signed.
    #[arg(long, value_name = "N", requires = "refill_below")]
    pub(crate) refill_max_total: Option<u32>,
    /// The most refills may sign a UTC day, in token units (required with --refill-below).
    #[arg(long, value_name = "AMOUNT", requires = "refill_below")]
    pub(crate) refill_max_per_day: Option<String>,
}

/// The longest `buy discover --timeout`, in seconds (an hour).
pub(crate) const MAX_DISCOVER_TIMEOUT_SECS: u64 = 3600;

#[derive(Debug, Args)]
pub(crate) struct BuyDiscoverArgs {
    /// Chain whose Identity Registry is read (name, alias or CAIP-2; needs an endpoint:
    /// `obol network add`).
    #[arg(long)]
    pub(crate) chain: String,
    /// First block scanned (default: the last 100000 blocks).
    #[arg(long)]
    pub(crate) from_block: Option<u64>,
    /// Seconds all document and catalog fetches may take together (1 to 3600); agents not
    /// answering by then are listed as timed out.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=MAX_DISCOVER_TIMEOUT_SECS)
    )]
    pub(crate) timeout: u64,
    /// Also fetch documents and catalogs at loopback, private, link-local or unspecified
    /// addresses (needed for sellers on this machine or a LAN, e.g. a local devnet's stacks).
    /// Off by default: agentURIs are anyone's text.
    #[arg(long)]
    pub(crate) allow_private: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BuyRefillArgs {
    /// The purchase's name.
    pub(crate) name: String,
    /// How many authorizations to add.
    #[arg(long)]
    pub(crate) count: u32,
    /// Namespace.
    #[arg(long, default_value = DEFAULT_BUY_NAMESPACE)]
    pub(crate) namespace: String,
    #[command(flatten)]
    pub(crate) sign: PresignFlags,
}

#[derive(Debug, Args)]
pub(crate) struct BuyProbeArgs {
    /// The paid URL.
    pub(crate) url: String,
    /// Probe a chat-completions endpoint with a one-token POST instead of a GET.
    #[arg(long)]
    pub(crate) chat: bool,
    /// User-Agent (default obol-buyer/<version>).
    #[arg(long)]
    pub(crate) user_agent: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BuyPayArgs {
    /// The paid URL.
    pub(crate) url: String,
    /// The most this call may cost, in token units (e.g. 0.01 for one cent of USDC). A seller
    /// asking more, or in a token this build does not know, is refused before anything is signed.
    #[arg(long)]
    pub(crate) max_amount: String,
    #[command(flatten)]
    pub(crate) token: TokenArgs,
    /// Pay the seller's metered (`upto`) option: sign a ceiling (at most --max-amount), be
    /// charged for the tokens used (the receipt says how much). Pays through Permit2: a
    /// one-time approval of the token, asked for.
    #[arg(long)]
    pub(crate) metered: bool,
    /// HTTP method (default GET, or POST with --data).
    #[arg(long, short = 'X')]
    pub(crate) method: Option<String>,
    /// Request body: text, `@FILE`, or `@-` for stdin.
    #[arg(long, short = 'd')]
    pub(crate) data: Option<String>,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub(crate) headers: Vec<String>,
    /// User-Agent (default obol-buyer/<version>; some sellers block library defaults).
    #[arg(long)]
    pub(crate) user_agent: Option<String>,
    #[command(flatten)]
    pub(crate) signer: SignerArgs,
    /// Send the one-time Permit2 approval without asking (paying in a Permit2 token such as
    /// OBOL for the first time); required when stdin is not a terminal.
    #[arg(long, short)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// The most one payment may cost, in --token units.
    #[arg(long, default_value = "0.1")]
    pub(crate) max_per_call: String,
    /// The most all payments may cost per UTC day, in --token units (counted when signed, in
    /// <data>/spend.sqlite, across restarts and processes).
    #[arg(long, default_value = "1")]
    pub(crate) max_per_day: String,
    /// The token the caps are in (built in, or confirmed earlier with `buy pay|inference
    /// --token-address`); sellers asking for another are refused.
    #[arg(long, default_value = "USDC")]
    pub(crate) token: String,
    /// Serve streamable HTTP at `http://ADDR/mcp` instead of stdio: a loopback address only;
    /// requests from web pages (an `Origin`) and foreign `Host`s are refused. Port 0 picks one
    /// (printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub(crate) signer: SignerArgs,
}
