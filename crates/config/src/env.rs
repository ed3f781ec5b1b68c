//! Every environment variable obol-stack reads. Names live here and nowhere else.

/// Configuration directory (wallets, networks, stack settings).
pub const CONFIG_DIR: &str = "OBOL_CONFIG_DIR";
/// Data directory (the embedded store).
pub const DATA_DIR: &str = "OBOL_DATA_DIR";
/// State directory (PID and log files).
pub const STATE_DIR: &str = "OBOL_STATE_DIR";
/// Password of the wallet keystore being opened (instead of a prompt).
pub const WALLET_PASSWORD: &str = "OBOL_WALLET_PASSWORD";
/// A raw hex private key used instead of a keystore (CI and devnets only).
pub const PRIVATE_KEY: &str = "OBOL_PRIVATE_KEY";
/// The public base URL advertised to buyers.
pub const PUBLIC_URL: &str = "OBOL_PUBLIC_URL";
/// Where the gateway's payment guard keeps its record (overrides `paymentStore` in the stack
/// settings): a `postgres://` URL shared by gateway replicas; unset, the embedded SQLite file.
pub const PAYMENT_STORE: &str = "OBOL_PAYMENT_STORE";
/// Path of the `cloudflared` binary `obol tunnel` runs (else found on `PATH`).
pub const CLOUDFLARED: &str = "OBOL_CLOUDFLARED";
/// Path of the anvil binary.
pub const ANVIL: &str = "OBOL_ANVIL";
/// Project tools directory (where `scripts/install-tools` puts anvil).
pub const TOOLS_DIR: &str = "OBOL_TOOLS_DIR";
/// Path of the Chromium binary used by the storefront browser test.
pub const CHROMIUM: &str = "OBOL_CHROMIUM";
/// Set to skip the storefront browser test where Chromium cannot be installed.
pub const SKIP_BROWSER: &str = "OBOL_SKIP_BROWSER";
/// The namespace every `-n/--namespace` of the CLI defaults to (else the cluster setting's,
/// else `default`).
pub const NAMESPACE: &str = "OBOL_NAMESPACE";
/// Log filter of the daemon (`info`, `debug`, `obol_gateway=debug`, …).
pub const LOG: &str = "OBOL_LOG";
/// Default `--pay-to` of `obol sell` (the original's name).
pub const X402_WALLET: &str = "X402_WALLET";
/// Default `--facilitator-url` of `obol sell pricing` (the original's name).
pub const X402_FACILITATOR_URL: &str = "X402_FACILITATOR_URL";

/// The facilitator used when the settings name none (default [`crate::stack::DEFAULT_FACILITATOR_URL`]).
pub const DEFAULT_FACILITATOR_URL: &str = "OBOL_DEFAULT_FACILITATOR_URL";

/// `User-Agent` of the buyer's outbound calls (default `obol-buyer/<version>`; the original's name).
pub const BUYER_USER_AGENT: &str = "OBOL_BUYER_USER_AGENT";

/// The keystore (v3 JSON) the daemon signs purchases' autoRefill batches with; unset: no
/// autoRefill.
pub const REFILL_KEYSTORE: &str = "OBOL_REFILL_KEYSTORE";

/// The file whose first line is [`REFILL_KEYSTORE`]'s password.
pub const REFILL_PASSWORD_FILE: &str = "OBOL_REFILL_PASSWORD_FILE";

/// Seconds between autoRefill checks of a purchase (default 10).
pub const REFILL_INTERVAL: &str = "OBOL_REFILL_INTERVAL";

/// `(name, meaning)` of every variable, for help texts and docs.
pub const ALL: &[(&str, &str)] = &[
    (
        NAMESPACE,
        "default namespace of the CLI's -n/--namespace (else the cluster setting's, else `default`)",
    ),
    (
        CONFIG_DIR,
        "configuration directory (default: $XDG_CONFIG_HOME/obol or ~/.config/obol)",
    ),
    (
        DATA_DIR,
        "data directory (default: $XDG_DATA_HOME/obol or ~/.local/share/obol)",
    ),
    (
        STATE_DIR,
        "state directory (default: $XDG_STATE_HOME/obol or ~/.local/state/obol)",
    ),
    (
        WALLET_PASSWORD,
        "password for the wallet keystore (instead of a prompt)",
    ),
    (
        PRIVATE_KEY,
        "raw hex private key used instead of a keystore (CI and devnets only)",
    ),
    (PUBLIC_URL, "public base URL buyers reach this stack at"),
    (
        REFILL_KEYSTORE,
        "keystore the daemon signs purchases' autoRefill batches with (off when unset)",
    ),
    (
        REFILL_PASSWORD_FILE,
        "file holding the password of OBOL_REFILL_KEYSTORE",
    ),
    (
        REFILL_INTERVAL,
        "seconds between autoRefill checks (default 10)",
    ),
    (
        DEFAULT_FACILITATOR_URL,
        "facilitator used when stack.json names none (default https://x402.gcp.obol.tech)",
    ),
    (
        BUYER_USER_AGENT,
        "User-Agent of the buyer's calls to sellers (default obol-buyer/<version>)",
    ),
    (
        CLOUDFLARED,
        "path of the cloudflared binary `obol tunnel` runs (default: found on PATH)",
    ),
    (ANVIL, "path of the anvil binary"),
    (
        TOOLS_DIR,
        "directory holding project-installed tools (default: <repo>/.tools)",
    ),
];
