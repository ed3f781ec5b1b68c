//! Offers and the route table.
//!
//! The table is built from the published offers and swapped atomically ([`Routes::store`]);
//! requests take a snapshot ([`Routes::load`]) and never wait for a writer.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use axum::http::Method;
use obol_x402::Token;
use obol_x402::pricing::Price;
use obol_x402::wire::v2;
use url::Url;

use crate::proxy::UpstreamAuth;
use crate::siwx::Origin;

use crate::limits::Limits;

/// What kind of upstream an offer sells (decides chat-path normalisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferKind {
    /// An arbitrary HTTP API.
    Http,
    /// An OpenAI-compatible model endpoint.
    Inference,
    /// An agent with an OpenAI-compatible chat endpoint.
    Agent,
    /// MCP tools, each priced on its own, served over streamable HTTP at the offer's path.
    Mcp,
}

/// One way to pay for an offer: a fully built v2 requirement, its price and its token's symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOption {
    /// The requirement as it appears in `accepts` (CAIP-2 network).
    pub requirements: v2::PaymentRequirements,
    /// The price as the seller set it for this option, in its token.
    pub price: Price,
    /// The token symbol, for metrics and human text.
    pub asset_symbol: String,
    /// Whether the token can be approved for Permit2 with an EIP-2612 permit in the same
    /// settlement (advertised as the `eip2612GasSponsoring` extension).
    pub eip2612_gas_sponsoring: bool,
    /// How an `upto` option charges (its requirement's amount is the ceiling); `None` for
    /// `exact`.
    pub metering: Option<crate::metering::Metering>,
}

impl PaymentOption {
    /// An `exact` option: `requirements` (paying in `token`) at `price`, named by the token's
    /// symbol, with its EIP-2612 sponsoring as the token allows.
    pub fn exact(requirements: v2::PaymentRequirements, price: Price, token: &Token) -> Self {
        Self {
            requirements,
            price,
            asset_symbol: token.symbol.clone(),
            eip2612_gas_sponsoring: token.eip2612_gas_sponsoring,
            metering: None,
        }
    }
}

/// When a paid request is settled relative to serving it (x402.md §7.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SettleMode {
    /// Call the upstream, settle only when it answered below 400 (buffered: before the status
    /// is committed; SSE: after the last event). A failed call is never charged.
    #[default]
    ServeFirst,
    /// Settle first and call the upstream only after `success: true` — for expensive or
    /// irreversible work. An upstream failure after the charge is logged as a refund owed.
    SettleFirst,
}

/// A published, payment-gated offer.
#[derive(Clone, PartialEq, Eq)]
pub struct Offer {
    /// The offer's namespace (metrics label).
    pub namespace: String,
    /// The offer's name (metrics label).
    pub name: String,
    /// What it sells.
    pub kind: OfferKind,
    /// Where paid requests go.
    pub upstream: Url,
    /// The public path prefix removed before proxying (e.g. `/services/foo`).
    pub strip_prefix: String,
    /// The seller's credential sent to the upstream (a secret: never printed).
    pub upstream_auth: Option<UpstreamAuth>,
    /// Accepted payments, in preference order (each with its price). Never empty for a
    /// published offer.
    pub options: Vec<PaymentOption>,
    /// Human description for the 402's `resource`.
    pub description: String,
    /// MIME type of the paid response.
    pub mime_type: String,
    /// When payments are settled.
    pub settle: SettleMode,
    /// Concurrency and rate limits over all its requests.
    pub limits: Limits,
    /// Its vanity hostname (`Host` equal to it is served this offer at `/`).
    pub hostname: Option<String>,
    /// What its 402s say about it beyond the price.
    pub discovery: Option<Arc<Discovery>>,
    /// The tools of an [`OfferKind::Mcp`] offer.
    pub mcp: Option<Arc<crate::mcp::Tools>>,
}

/// An offer's self-description in its 402s: the x402 Bazaar extension (`extensions.bazaar`)
/// and the resource's `serviceName`, `tags` and `iconUrl`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// `{info: {input, output?}, schema}`.
    pub bazaar: Option<serde_json::Value>,
    /// `resource.serviceName`.
    pub service_name: Option<String>,
    /// `resource.tags`.
    pub tags: Vec<String>,
    /// `resource.iconUrl`.
    pub icon_url: Option<String>,
}

impl Offer {
    /// An offer at `/services/<name>` in the `default` namespace, served first, without
    /// upstream auth, described by its name: what an embedding without the control plane (a
    /// test, a benchmark) starts from; change the rest with struct update syntax.
    pub fn at_services(
        name: &str,
        kind: OfferKind,
        upstream: Url,
        options: Vec<PaymentOption>,
    ) -> Self {
        Self {
            namespace: "default".into(),
            name: name.into(),
            kind,
            upstream,
            strip_prefix: format!("/services/{name}"),
            upstream_auth: None,
            options,
            description: name.into(),
            mime_type: "application/json".into(),
            settle: SettleMode::ServeFirst,
            limits: Limits::default(),
            hostname: None,
            discovery: None,
            mcp: None,
        }
    }
}

impl fmt::Debug for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offer")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("upstream", &self.upstream.as_str())
            .field("strip_prefix", &self.strip_prefix)
            .field("upstream_auth", &self.upstream_auth)
            .field("options", &self.options.len())
            .field("settle", &self.settle)
            .finish_non_exhaustive()
    }
}

/// Who may use a route (the offer's `routes[].gate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Gate {
    /// Paid per request (the default).
    #[default]
    Paid,
    /// Served without payment.
    Free,
    /// Served to signed-in wallets (Sign-In-With-X), without payment.
    Auth,
}

/// A request that came in on an offer's vanity hostname, rewritten to the offer's path by the
/// embedding's host router (a request extension): the origin it was sent to and its path and
/// query as sent. The 402's `resource.url` and sign-ins use them.
#[derive(Debug, Clone)]
pub struct Vanity {
    /// `https://<hostname>`.
    pub origin: Origin,
    /// The path and query the buyer sent.
    pub path_and_query: String,
}

impl Vanity {
    /// The URL the buyer asked for.
    pub fn url(&self) -> String {
        format!("{}{}", self.origin.as_str(), self.path_and_query)
    }
}

/// An offer's sign-in endpoint, below its path (offers with `auth` routes only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInEndpoint {
    /// `GET <offer>/auth/nonce`: a fresh challenge.
    Nonce,
    /// `POST <offer>/auth/verify`: a signed message for a session token.
    Verify,
}

/// The HTTP methods a route answers: a set of the seven methods offers may declare, or every
/// method when none is declared. `GET` also answers `HEAD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Methods(u8);

impl Methods {
    /// The methods a route may declare, in `Allow` order.
    pub const NAMES: [&'static str; 7] =
        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

    /// Every method (no restriction).
    pub const ANY: Self = Self(0);

    /// The set of `names` (upper case, as declared); `Err` names the first unknown one.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut bits = 0;
        for name in names {
            let index = Self::NAMES
                .iter()
                .position(|known| *known == name)
                .ok_or_else(|| name.to_owned())?;
            bits |= 1 << index;
        }
        Ok(Self(bits))
    }

    /// Whether the route answers `method`.
    pub fn allows(self, method: &Method) -> bool {
        if self.0 == 0 {
            return true;
        }
        let bit = |name: &str| {
            Self::NAMES
                .iter()
                .position(|known| *known == name)
                .is_some_and(|index| self.0 & (1 << index) != 0)
        };
        bit(method.as_str()) || (*method == Method::HEAD && bit("GET"))
    }

    /// Whether the two sets share a method.
    pub fn overlaps(self, other: Self) -> bool {
        self.0 == 0 || other.0 == 0 || self.0 & other.0 != 0
    }

    /// The union of two sets (every method if either is unrestricted).
    fn union(self, other: Self) -> Self {
        if self.0 == 0 || other.0 == 0 {
            Self::ANY
        } else {
            Self(self.0 | other.0)
        }
    }

    /// The `Allow` header's value: the declared methods (and `HEAD` with `GET`).
    pub fn allow(self) -> String {
        Self::NAMES
            .iter()
            .filter(|name| {
                Method::from_bytes(name.as_bytes()).is_ok_and(|method| self.allows(&method))
            })
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A pattern, the methods and gate that apply to it, and the offer it serves.
#[derive(Debug, Clone)]
pub struct Route {
    /// `services/foo/*` (leading `/` optional): `*` as the last segment matches the prefix
    /// itself and anything below it; `*` elsewhere matches one segment; no `*` is exact.
    pub pattern: String,
    /// The methods it answers.
    pub methods: Methods,
    /// Paid, free or for signed-in wallets.
    pub gate: Gate,
    /// The offer (a route with its own price has its own re-priced copy).
    pub offer: Arc<Offer>,
    /// Free calls per signed-in wallet and day on a paid route.
    pub free_quota: Option<Arc<FreeQuota>>,
}

/// A paid route's free calls: so many per signed-in wallet and UTC day, counted under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeQuota {
    /// Calls per wallet and day.
    pub per_day: u32,
    /// What the calls are counted under: the offer (`namespace/name`) and the route's pattern.
    pub key: (String, String),
}

impl Route {
    /// A paid route for every method.
    pub fn paid(pattern: impl Into<String>, offer: Arc<Offer>) -> Self {
        Self {
            pattern: pattern.into(),
            methods: Methods::ANY,
            gate: Gate::Paid,
            offer,
            free_quota: None,
        }
    }

    /// The route serving `offer` at its public prefix and everything below it (`<prefix>/*`).
    pub fn below_prefix(offer: Offer) -> Self {
        Self::paid(
            format!("{}/*", offer.strip_prefix.trim_end_matches('/')),
            Arc::new(offer),
        )
    }
}

/// What a request resolves to.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A paid route's offer, and its free calls if it has some.
    Paid(Arc<Offer>, Option<Arc<FreeQuota>>),
    /// A free route's offer: served without payment.
    Free(Arc<Offer>),
    /// An auth route's offer: served to signed-in wallets.
    Auth(Arc<Offer>),
    /// One of the sign-in endpoints of an offer with auth routes.
    SignIn(Arc<Offer>, SignInEndpoint),
    /// Routes match the path but none answers the method: these are the methods they answer.
    MethodNotAllowed(Methods),
    /// Under an offer's prefix but no route matches: refuse, never serve free.
    FailClosed,
    /// Not ours.
    NotFound,
}

/// Routes in match order, with the paid prefixes that fail closed.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<(Vec<String>, Route)>,
    paid_prefixes: Vec<String>,
    /// `<offer path>/auth` of the offers with auth routes.
    sign_in: Vec<(String, Arc<Offer>)>,
    /// Vanity hostnames and their offers, sorted by hostname.
    vanity: Vec<(String, Arc<Offer>)>,
}

fn segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, suffix)) => {
            text.len() >= prefix.len() + suffix.len()
                && text.starts_with(prefix)
                && text.ends_with(suffix)
        }
    }
}

fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_last() {
        // `/x/*`: the prefix itself (`/x`, `/x/`) or anything under it.
        Some((last, head)) if last == "*" => {
            path.len() >= head.len() && head.iter().zip(path).all(|(p, s)| glob(p, s))
        }
        _ => pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, s)| glob(p, s)),
    }
}

/// How specific a pattern is: more literal segments first, then exact before a trailing `*`,
/// then more literal characters. The table matches the most specific route (longest match),
/// so nested offers (`/services/x/*` and `/services/x/premium/*`) resolve the same way
/// whatever order they were published in.
fn specificity(pattern: &[String]) -> (usize, bool, usize) {
    let wildcard_tail = pattern.last().is_some_and(|s| s == "*");
    let literal = pattern.iter().filter(|s| !s.contains('*')).count();
    let chars = pattern.iter().map(|s| s.replace('*', "").len()).sum();
    (literal, !wildcard_tail, chars)
}

impl RouteTable {
    /// A table of `routes`, matched most specific first (ties keep the given order).
    pub fn new(routes: Vec<Route>) -> Self {
        let mut paid_prefixes: Vec<String> = routes
            .iter()
            .flat_map(|route| {
                let pattern = format!("/{}", route.pattern.trim_start_matches('/'));
                let wildcard = pattern.strip_suffix("/*").map(|p| format!("{p}/"));
                let strip = (!route.offer.strip_prefix.is_empty())
                    .then(|| format!("{}/", route.offer.strip_prefix.trim_end_matches('/')));
                wildcard.into_iter().chain(strip)
            })
            .collect();
        paid_prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        paid_prefixes.dedup();
        let mut sign_in: Vec<(String, Arc<Offer>)> = routes
            .iter()
            .filter(|route| route.gate == Gate::Auth)
            .map(|route| {
                let prefix = route.offer.strip_prefix.trim_end_matches('/');
                (format!("{prefix}/auth"), route.offer.clone())
            })
            .collect();
        sign_in.sort_by(|a, b| a.0.cmp(&b.0));
        sign_in.dedup_by(|a, b| a.0 == b.0);
        let mut vanity: Vec<(String, Arc<Offer>)> = routes
            .iter()
            .filter_map(|route| {
                let host = route.offer.hostname.as_ref()?;
                Some((host.to_ascii_lowercase(), route.offer.clone()))
            })
            .collect();
        // Stable: with two claims on a host (the reconciler publishes one), the first wins.
        vanity.sort_by(|a, b| a.0.cmp(&b.0));
        vanity.dedup_by(|a, b| a.0 == b.0);
        let mut routes: Vec<(Vec<String>, Route)> = routes
            .into_iter()
            .map(|route| (segments(&route.pattern), route))
            .collect();
        routes.sort_by_key(|(pattern, _)| std::cmp::Reverse(specificity(pattern)));
        Self {
            routes,
            paid_prefixes,
            sign_in,
            vanity,
        }
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True without routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|(_, route)| route)
    }

    /// Resolves a request (`path` without its query): the most specific route whose pattern
    /// matches the path and whose methods include `method`.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup {
        if !self.sign_in.is_empty()
            && let Some(found) = self.sign_in_endpoint(path)
        {
            return found;
        }
        let mut path_segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // `/x/` has an empty last segment; it means the same as `/x`.
        if path_segments.len() > 1 && path_segments.last().is_some_and(|s| s.is_empty()) {
            path_segments.pop();
        }
        let mut refused = None;
        for (pattern, route) in &self.routes {
            if !matches(pattern, &path_segments) {
                continue;
            }
            if route.methods.allows(method) {
                return match route.gate {
                    Gate::Paid => Lookup::Paid(route.offer.clone(), route.free_quota.clone()),
                    Gate::Free => Lookup::Free(route.offer.clone()),
                    Gate::Auth => Lookup::Auth(route.offer.clone()),
                };
            }
            refused = Some(refused.map_or(route.methods, |m: Methods| m.union(route.methods)));
        }
        if let Some(methods) = refused {
            return Lookup::MethodNotAllowed(methods);
        }
        let with_slash = format!("/{}/", path.trim_start_matches('/').trim_end_matches('/'));
        if self
            .paid_prefixes
            .iter()
            .any(|prefix| with_slash.starts_with(prefix.as_str()))
        {
            Lookup::FailClosed
        } else {
            Lookup::NotFound
        }
    }
}

impl RouteTable {
    /// The offer whose vanity hostname is `host` (lower case, without a port).
    pub fn vanity(&self, host: &str) -> Option<&Arc<Offer>> {
        let index = self
            .vanity
            .binary_search_by(|(name, _)| name.as_str().cmp(host))
            .ok()?;
        Some(&self.vanity[index].1)
    }

    /// `<offer>/auth/nonce|verify` of an offer with auth routes.
    fn sign_in_endpoint(&self, path: &str) -> Option<Lookup> {
        let (base, endpoint) = if let Some(base) = path.strip_suffix("/nonce") {
            (base, SignInEndpoint::Nonce)
        } else {
            (path.strip_suffix("/verify")?, SignInEndpoint::Verify)
        };
        let index = self
            .sign_in
            .binary_search_by(|(prefix, _)| prefix.as_str().cmp(base))
            .ok()?;
        Some(Lookup::SignIn(self.sign_in[index].1.clone(), endpoint))
    }
}

/// The live route table: readers take snapshots, the reconciler swaps whole tables.
#[derive(Debug, Default)]
pub struct Routes {
    table: ArcSwap<RouteTable>,
    loaded: AtomicBool,
}

impl Routes {
    /// An empty table, not yet loaded (`/readyz` answers 503 until the first store).
    pub fn new() -> Self {
        Self::default()
    }

    /// The current table.
    pub fn load(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Replaces the table atomically and marks the routes loaded.
    pub fn store(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
        self.loaded.store(true, Ordering::Release);
    }

    /// Whether a table was stored at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal offer for table tests.
    pub(crate) fn offer(name: &str, strip_prefix: &str) -> Arc<Offer> {
        Arc::new(Offer {
            namespace: "default".into(),
            name: name.into(),
            kind: OfferKind::Http,
            upstream: "http://127.0.0.1:9/".parse().unwrap(),
            strip_prefix: strip_prefix.into(),
            upstream_auth: Some(UpstreamAuth::new("Authorization", "secret").unwrap()),
            options: Vec::new(),
            description: String::new(),
            mime_type: "application/json".into(),
            settle: SettleMode::ServeFirst,
            limits: Limits::default(),
            hostname: None,
            discovery: None,
            mcp: None,
        })
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            Route::paid("services/foo/*", offer("foo", "/services/foo")),
            Route::paid("/services/bar/v1/*/info", offer("bar", "/services/bar")),
            Route::paid("/exact", offer("exact", "")),
            Route::paid("/files/*.json", offer("json", "")),
        ])
    }

    fn name(lookup: Lookup) -> String {
        match lookup {
            Lookup::Paid(offer, _) => offer.name.clone(),
            Lookup::Free(offer) => format!("free {}", offer.name),
            Lookup::Auth(offer) => format!("auth {}", offer.name),
            Lookup::SignIn(offer, endpoint) => format!("sign-in {} {endpoint:?}", offer.name),
            Lookup::MethodNotAllowed(methods) => format!("405 {}", methods.allow()),
            Lookup::FailClosed => "FAIL-CLOSED".into(),
            Lookup::NotFound => "-".into(),
        }
    }

    fn get(table: &RouteTable, path: &str) -> String {
        name(table.lookup(&Method::GET, path))
    }

    #[test]
    fn prefix_semantics() {
        let table = table();
        for (path, want) in [
            ("/services/foo", "foo"),
            ("/services/foo/", "foo"),
            ("/services/foo/v1/chat/completions", "foo"),
            ("/services/foobar", "-"),
            ("/services/bar/v1/x/info", "bar"),
            ("/services/bar/v1/x/y/info", "FAIL-CLOSED"),
            ("/services/bar/other", "FAIL-CLOSED"),
            ("/exact", "exact"),
            ("/exact/more", "-"),
            ("/files/a.json", "json"),
            ("/files/a.txt", "-"),
            ("/", "-"),
            ("/skill.md", "-"),
        ] {
            assert_eq!(get(&table, path), want, "{path}");
        }
    }

    #[test]
    fn nested_offers_resolve_to_the_longest_match_in_any_order() {
        let outer = || Route::paid("/services/x/*", offer("outer", "/services/x"));
        let inner = || {
            Route::paid(
                "/services/x/premium/*",
                offer("inner", "/services/x/premium"),
            )
        };
        for table in [
            RouteTable::new(vec![outer(), inner()]),
            RouteTable::new(vec![inner(), outer()]),
        ] {
            for (path, want) in [
                ("/services/x", "outer"),
                ("/services/x/basic", "outer"),
                ("/services/x/premium", "inner"),
                ("/services/x/premium/", "inner"),
                ("/services/x/premium/v1/chat", "inner"),
                ("/services/x/premiumplus", "outer"),
            ] {
                assert_eq!(get(&table, path), want, "{path}");
            }
        }
    }

    /// One offer's declared routes: gates, methods, most specific first, exhaustive.
    fn declared() -> RouteTable {
        let api = offer("api", "/services/api");
        let route = |pattern: &str, methods: &[&str], gate: Gate| Route {
            pattern: pattern.into(),
            methods: Methods::parse(methods.iter().copied()).unwrap(),
            gate,
            offer: api.clone(),
            free_quota: None,
        };
        RouteTable::new(vec![
            route("/services/api/me", &["GET"], Gate::Auth),
            route("/services/api/*", &["GET"], Gate::Free),
            route("/services/api/submit", &["POST"], Gate::Paid),
            route("/services/api/premium/*", &[], Gate::Paid),
            route("/services/api/docs/*", &["GET"], Gate::Free),
            route("/services/api/docs/private", &["GET"], Gate::Paid),
        ])
    }

    #[test]
    fn declared_routes_pick_the_most_specific_match_for_the_method() {
        let table = declared();
        for (method, path, want) in [
            (Method::GET, "/services/api", "free api"),
            (Method::HEAD, "/services/api/anything", "free api"),
            (Method::POST, "/services/api/submit", "api"),
            (Method::GET, "/services/api/submit", "free api"),
            (Method::DELETE, "/services/api/premium/x", "api"),
            (Method::GET, "/services/api/premium", "api"),
            (Method::GET, "/services/api/docs/private", "api"),
            (Method::GET, "/services/api/docs/public", "free api"),
            (Method::POST, "/services/api/other", "405 GET, HEAD"),
            (Method::PUT, "/services/api/submit", "405 GET, HEAD, POST"),
            (Method::GET, "/services/apix", "-"),
            (Method::GET, "/services/api/me", "auth api"),
            (Method::GET, "/services/api/auth/nonce", "sign-in api Nonce"),
            (
                Method::POST,
                "/services/api/auth/verify",
                "sign-in api Verify",
            ),
            (Method::GET, "/services/api/auth/other", "free api"),
            (Method::GET, "/services/api/x/auth/nonce", "free api"),
        ] {
            assert_eq!(name(table.lookup(&method, path)), want, "{method} {path}");
        }
    }

    #[test]
    fn a_path_under_an_offer_that_no_declared_route_covers_fails_closed() {
        let api = offer("api", "/services/api");
        let table = RouteTable::new(vec![Route {
            pattern: "/services/api/v1/*".into(),
            methods: Methods::ANY,
            gate: Gate::Free,
            offer: api,
            free_quota: None,
        }]);
        assert_eq!(get(&table, "/services/api/v1/x"), "free api");
        assert_eq!(get(&table, "/services/api/v2/x"), "FAIL-CLOSED");
        assert_eq!(get(&table, "/services/api"), "FAIL-CLOSED");
    }

    #[test]
    fn methods_parse_and_answer_like_http() {
        assert_eq!(Methods::parse(["GET", "FETCH"]), Err("FETCH".to_owned()));
        assert_eq!(Methods::parse(["get"]), Err("get".to_owned()));
        let get = Methods::parse(["GET"]).unwrap();
        assert!(get.allows(&Method::HEAD) && !get.allows(&Method::POST));
        assert!(Methods::ANY.allows(&Method::PATCH));
        assert!(get.overlaps(Methods::ANY) && !get.overlaps(Methods::parse(["POST"]).unwrap()));
        assert_eq!(
            Methods::ANY.allow(),
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        );
    }

    #[test]
    fn swaps_are_atomic_snapshots() {
        let routes = Routes::new();
        assert!(!routes.is_loaded());
        let before = routes.load();
        routes.store(table());
        assert!(routes.is_loaded());
        assert!(
            before.is_empty(),
            "an old snapshot stays valid and unchanged"
        );
        assert_eq!(routes.load().len(), 4);
    }

    #[test]
    fn debug_hides_the_upstream_secret() {
        let text = format!("{:?}", offer("foo", "/services/foo"));
        assert!(!text.contains("secret") && text.contains("***"), "{text}");
    }
}
