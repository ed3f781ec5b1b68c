//! Sign-In-With-X on `auth` routes, as a hostile client would try it: no credential, a
//! signed challenge, replays, foreign domains and URIs, stale and expired messages, other
//! signers, forged identity headers, garbage headers and tokens; sessions by cookie and
//! `Bearer`, `/auth/nonce` and `/auth/verify`, a restart with the same key and with a new one,
//! and a contract wallet (ERC-1271) on the devnet.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use obol_chain::ChainClient;
use obol_gateway::siwx::{ContractWallets, GatingStore, SessionKey, Siwx, SiwxPayload};
use obol_gateway::{Gate, Methods, OfferKind, Route, RouteTable};
use obol_testkit::http::Fetch as _;
use obol_x402::LocalSigner;
use obol_x402::primitives::{Address, B256, Bytes, eip191_hash_message};
use serde_json::{Value, json};

use crate::{Fixture, now, offer};

const ORIGIN: &str = "https://api.example.test";

/// Contract wallets answered by the devnet.
struct Devnet(ChainClient);

#[async_trait::async_trait]
impl ContractWallets for Devnet {
    async fn is_valid_signature(
        &self,
        chain_id: u64,
        wallet: Address,
        hash: B256,
        signature: Bytes,
    ) -> Result<Option<bool>, String> {
        if chain_id != self.0.chain_id() {
            return Ok(None);
        }
        self.0
            .is_valid_signature(wallet, hash, signature)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

struct Setup {
    fixture: Fixture,
    gateway: String,
    key_path: std::path::PathBuf,
}

impl Setup {
    /// The fixture's upstream sold as `members`: `/services/members/*` for signed-in wallets,
    /// `/services/members/v1/*` free; a gateway signing in at [`ORIGIN`].
    async fn start() -> Self {
        let fixture = Fixture::start().await;
        let members = offer(
            "members",
            &fixture.upstream,
            OfferKind::Http,
            "USDC",
            "1000",
        )
        .offer;
        let route = |pattern: &str, gate| Route {
            pattern: pattern.into(),
            methods: Methods::ANY,
            gate,
            offer: members.clone(),
            free_quota: None,
        };
        fixture.routes.store(RouteTable::new(vec![
            route("/services/members/*", Gate::Auth),
            route("/services/members/echo", Gate::Auth),
            route("/services/members/v1/*", Gate::Free),
        ]));
        let key_path = fixture.dir.path().join("siwx-session.key");
        let gateway = Self::gateway(&fixture, &key_path).await;
        Self {
            fixture,
            gateway,
            key_path,
        }
    }

    /// A gateway over the fixture's routes whose sign-in key is in `key_path`.
    async fn gateway(fixture: &Fixture, key_path: &std::path::Path) -> String {
        let siwx = Siwx::new(
            SessionKey::load_or_create(key_path).unwrap(),
            GatingStore::in_memory().unwrap(),
            &ORIGIN.parse().unwrap(),
        )
        .with_contract_wallets(Arc::new(Devnet(fixture.client.clone())));
        let guard = fixture.guard_after_a_crash();
        Fixture::gateway_with(&fixture.routes, &fixture.probe, &guard, |config| {
            config.paygate.siwx = Some(Arc::new(siwx));
        })
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/services/members{path}", self.gateway)
    }

    /// The challenge of an unauthenticated GET of `path`.
    async fn challenge(&self, path: &str) -> Value {
        let response = reqwest::get(self.url(path)).await.unwrap();
        assert_eq!(response.status(), 401);
        self.challenge_of(&response)
    }

    /// The sign-in challenge's `info` in a 402 or 401.
    fn challenge_of(&self, response: &reqwest::Response) -> Value {
        let required = crate::challenge_of(response);
        required.extensions.unwrap()["sign-in-with-x"]["info"].clone()
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }
}

/// A payload answering challenge `info`, signed by `signer`, after `edit`.
fn signed(info: &Value, signer: &LocalSigner, edit: impl FnOnce(&mut Value)) -> SiwxPayload {
    let mut fields = info.clone();
    fields["address"] = signer.address().to_checksum(None).into();
    fields["chainId"] = "eip155:84532".into();
    fields["type"] = "eip191".into();
    fields["signature"] = "0x".into();
    edit(&mut fields);
    let mut payload: SiwxPayload = serde_json::from_value(fields).unwrap();
    let (text, _) = payload.message().unwrap();
    let signature = signer
        .sign_digest_sync(&eip191_hash_message(text.as_bytes()))
        .unwrap();
    payload.signature = format!("0x{}", hex(&signature.as_bytes()));
    payload
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(payload: &SiwxPayload) -> String {
    let json = json!({
        "domain": payload.domain, "address": payload.address, "uri": payload.uri,
        "version": payload.version, "chainId": payload.chain_id, "type": payload.type_,
        "nonce": payload.nonce, "issuedAt": payload.issued_at,
        "expirationTime": payload.expiration_time, "resources": payload.resources,
        "signature": payload.signature,
    });
    base64::engine::general_purpose::STANDARD.encode(json.to_string())
}

async fn reason(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_signed_in_wallet_gets_through_once_per_nonce_and_keeps_a_session() {
    let s = Setup::start().await;
    let buyer = s.fixture.buyer(0);
    let calls = || s.fixture.log.calls.load(Ordering::SeqCst);

    // No credential: the challenge, bound to the public origin, never the Host.
    let response = s.get("/echo", &[("host", "evil.test")]).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "SIWX domain=\"api.example.test\", window=\"600\""
    );
    let required = crate::challenge_of(&response);
    assert!(required.accepts.is_empty());
    let extension = &required.extensions.as_ref().unwrap()["sign-in-with-x"];
    assert_eq!(extension["info"]["domain"], "api.example.test");
    assert_eq!(
        extension["info"]["uri"],
        format!("{ORIGIN}/services/members/echo")
    );
    assert_eq!(
        extension["supportedChains"],
        json!([{"chainId": "eip155:84532", "type": "eip191"}])
    );
    assert_eq!(reason(response).await.1, "sign_in_required");
    assert_eq!(calls(), 0);

    // Signed: through, as that wallet, whatever identity the client claims.
    let info = s.challenge("/echo").await;
    let header = encode(&signed(&info, &buyer, |_| {}));
    let response = s
        .get(
            "/echo",
            &[
                ("sign-in-with-x", &header),
                (
                    "x-verified-wallet",
                    "0x000000000000000000000000000000000000dEaD",
                ),
                (
                    "x-payment-payer",
                    "0x000000000000000000000000000000000000dEaD",
                ),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with("obol_siwx=siwx1.")
            && cookie.contains(
                "; Path=/services/members; HttpOnly; SameSite=Lax; Max-Age=86400; Secure"
            ),
        "{cookie}"
    );
    let seen: Value = response.json().await.unwrap();
    let seen = &seen["headers"];
    assert_eq!(seen["x-verified-wallet"], buyer.address().to_checksum(None));
    assert!(seen.get("x-payment-payer").is_none(), "{seen}");
    assert!(seen.get("sign-in-with-x").is_none(), "{seen}");
    assert_eq!(calls(), 1);

    // The same header again: the nonce is spent.
    let replay = s.get("/echo", &[("sign-in-with-x", &header)]).await;
    assert_eq!(reason(replay).await, (401, "invalid_siwx_nonce".into()));

    // The session: by cookie and by Bearer, never passed on.
    let token = cookie
        .trim_start_matches("obol_siwx=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for (name, value) in [
        ("cookie", format!("theme=dark; obol_siwx={token}")),
        ("authorization", format!("Bearer {token}")),
    ] {
        let response = s.get("/echo", &[(name, &value)]).await;
        assert_eq!(response.status(), 200, "{name}");
        assert!(!response.headers().contains_key("set-cookie"));
        let seen: Value = response.json().await.unwrap();
        let seen = &seen["headers"];
        assert_eq!(seen["x-verified-wallet"], buyer.address().to_checksum(None));
        assert_eq!(
            seen["authorization"], "Bearer upstream-secret",
            "the seller's own"
        );
        assert!(!seen.to_string().contains(&token), "{seen}");
    }
    // A free route of the offer tells the upstream a session's wallet, and serves without one.
    let free = s
        .get(
            "/v1/chat/completions",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    let seen: Value = free.json().await.unwrap();
    assert_eq!(
        seen["headers"]["x-verified-wallet"],
        buyer.address().to_checksum(None)
    );
    let free = s
        .get(
            "/v1/chat/completions",
            &[("authorization", "Bearer siwx1.forged.token")],
        )
        .await;
    assert_eq!(free.status(), 200);
    let seen: Value = free.json().await.unwrap();
    assert!(seen["headers"].get("x-verified-wallet").is_none());

    // Garbage sessions are refused with a challenge.
    for bad in ["Bearer siwx1.forged.token", "Bearer siwx1."] {
        let response = s.get("/echo", &[("authorization", bad)]).await;
        assert_eq!(
            reason(response).await,
            (401, "session_invalid".into()),
            "{bad}"
        );
    }

    // A restart with the same key keeps the session; a new key ends it.
    let again = Setup::gateway(&s.fixture, &s.key_path).await;
    let response = reqwest::Client::new()
        .get(format!("{again}/services/members/echo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    std::fs::remove_file(&s.key_path).unwrap();
    let rekeyed = Setup::gateway(&s.fixture, &s.key_path).await;
    let response = reqwest::Client::new()
        .get(format!("{rekeyed}/services/members/echo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(reason(response).await, (401, "session_invalid".into()));
}

#[tokio::test]
async fn refused_sign_ins_say_why_and_never_reach_the_upstream() {
    let s = Setup::start().await;
    let buyer = s.fixture.buyer(0);
    let info = s.challenge("/echo").await;
    let old = obol_config::time::rfc3339(now() - 660);
    let cases: Vec<(SiwxPayload, u16, &str)> = vec![
        (
            signed(&info, &buyer, |f| f["domain"] = "evil.test".into()),
            401,
            "invalid_siwx_domain_mismatch",
        ),
        (
            signed(&info, &buyer, |f| {
                f["uri"] = "https://evil.test/services/members/echo".into()
            }),
            401,
            "invalid_siwx_uri_mismatch",
        ),
        (
            signed(&info, &buyer, |f| f["issuedAt"] = old.clone().into()),
            401,
            "invalid_siwx_issued_at_too_old",
        ),
        (
            signed(&info, &buyer, |f| {
                f["issuedAt"] = obol_config::time::rfc3339(now() + 120).into()
            }),
            401,
            "invalid_siwx_issued_at_in_future",
        ),
        (
            signed(&info, &buyer, |f| {
                f["expirationTime"] = obol_config::time::rfc3339(now() - 1).into()
            }),
            401,
            "invalid_siwx_expired",
        ),
        (
            signed(&info, &buyer, |f| {
                f["nonce"] = "0123456789abcdef0123456789abcdef".into()
            }),
            401,
            "invalid_siwx_nonce",
        ),
        (
            signed(&info, &buyer, |f| f["chainId"] = "eip155:1".into()),
            401,
            "invalid_siwx_unsupported_chain",
        ),
        (
            {
                // Signed by one wallet, claimed by another (an EOA: no contract to ask).
                let mut p = signed(&info, &s.fixture.buyer(1), |_| {});
                p.address = buyer.address().to_checksum(None);
                p
            },
            401,
            "invalid_siwx_signature",
        ),
        (
            {
                let mut p = signed(&info, &buyer, |_| {});
                p.signature = "not hex".into();
                p
            },
            401,
            "invalid_siwx_malformed_signature",
        ),
    ];
    for (payload, status, expected) in cases {
        let response = s
            .get("/echo", &[("sign-in-with-x", &encode(&payload))])
            .await;
        assert_eq!(
            reason(response).await,
            (status, expected.into()),
            "{expected}"
        );
    }
    for (header, expected) in [
        ("!!!", "invalid_siwx_header"),
        ("e30=", "invalid_siwx_header"),
        (
            &*base64::engine::general_purpose::STANDARD.encode(b"{\"domain\": 7}"),
            "invalid_siwx_header",
        ),
    ] {
        let response = s.get("/echo", &[("sign-in-with-x", header)]).await;
        assert_eq!(reason(response).await, (400, expected.into()), "{header}");
    }
    let response = s
        .get("/echo", &[("authorization", "SIWX not.base64!")])
        .await;
    assert_eq!(reason(response).await, (400, "invalid_siwx_header".into()));
    assert_eq!(s.fixture.log.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn auth_endpoints_issue_sessions_and_contract_wallets_sign_in() {
    let s = Setup::start().await;
    let buyer = s.fixture.buyer(0);
    let client = reqwest::Client::new();

    // GET /auth/nonce: a challenge for the offer; POST /auth/verify: a session for its text.
    let info: Value = client.get(s.url("/auth/nonce")).fetch_json().await;
    assert_eq!(info["info"]["uri"], format!("{ORIGIN}/services/members"));
    let payload = signed(&info["info"], &buyer, |_| {});
    let (text, _) = payload.message().unwrap();
    let verify = |body: Value| client.post(s.url("/auth/verify")).json(&body).send();
    let answer = verify(json!({"message": text, "signature": payload.signature}))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let session: Value = answer.json().await.unwrap();
    assert_eq!(session["wallet"], buyer.address().to_checksum(None));
    let token = session["sessionToken"].as_str().unwrap();
    let response = s
        .get("/echo", &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(response.status(), 200);
    let replay = verify(json!({"message": text, "signature": payload.signature}))
        .await
        .unwrap();
    assert_eq!(reason(replay).await, (401, "invalid_siwx_nonce".into()));
    let bad = verify(json!({"message": "hello", "signature": "0x00"}))
        .await
        .unwrap();
    assert_eq!(reason(bad).await, (400, "invalid_siwx_header".into()));
    let wrong_method = client.get(s.url("/auth/verify")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);

    // A contract wallet (it approves exactly one message hash, as a Safe's signed messages
    // do) signs in with a signature no key made; the same wallet approving another message
    // is refused.
    let wallet: Address = "0x00000000000000000000000000000000C0FFEE01"
        .parse()
        .unwrap();
    // isValidSignature(hash, _) = hash == sload(0) ? 0x1626ba7e : 0xffffffff
    let code: Bytes = "0x6004356000541460\
        1a57\
        63ffffffff60e01b60005260206000f3\
        5b631626ba7e60e01b60005260206000f3"
        .parse()
        .unwrap();
    let endpoint = s.fixture.devnet.endpoint();
    let approve = |hash: B256| {
        let (endpoint, code) = (endpoint.clone(), code.clone());
        async move { obol_devnet::set_account(&endpoint, wallet, code, &[(B256::ZERO, hash)]).await }
    };
    for approved in [false, true] {
        let info = s.challenge("/echo").await;
        let mut payload = signed(&info, &buyer, |_| {});
        payload.address = wallet.to_checksum(None);
        payload.signature = "0x01".into();
        let (text, _) = payload.message().unwrap();
        let hash = eip191_hash_message(text.as_bytes());
        approve(if approved { hash } else { B256::repeat_byte(7) })
            .await
            .unwrap();
        let response = s
            .get("/echo", &[("sign-in-with-x", &encode(&payload))])
            .await;
        if approved {
            assert_eq!(response.status(), 200);
            let seen: Value = response.json().await.unwrap();
            assert_eq!(
                seen["headers"]["x-verified-wallet"],
                wallet.to_checksum(None)
            );
        } else {
            assert_eq!(
                reason(response).await,
                (401, "invalid_siwx_signature".into())
            );
        }
    }
}

#[tokio::test]
async fn a_paid_route_gives_signed_in_wallets_their_free_calls_then_charges() {
    let s = Setup::start().await;
    let quota = offer(
        "quota",
        &s.fixture.upstream,
        OfferKind::Http,
        "USDC",
        "1000",
    )
    .offer;
    s.fixture.routes.store(RouteTable::new(vec![Route {
        pattern: "/services/quota/*".into(),
        methods: Methods::ANY,
        gate: Gate::Paid,
        offer: quota,
        free_quota: Some(Arc::new(obol_gateway::FreeQuota {
            per_day: 2,
            key: ("default/quota".into(), "/services/quota/*".into()),
        })),
    }]));
    let url = |path: &str| format!("{}/services/quota{path}", s.gateway);
    let get = |path: &str, headers: Vec<(&'static str, String)>| {
        let mut request = reqwest::Client::new().get(url(path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let verifies = || s.fixture.probe.verified();
    let buyer = s.fixture.buyer(2);

    // Unsigned: a 402 that offers the sign-in.
    let unpaid = get("/echo", vec![]).await.unwrap();
    assert_eq!(unpaid.status(), 402);
    let required = crate::challenge_of(&unpaid);
    assert_eq!(required.accepts.len(), 1);
    let info = required.extensions.as_ref().unwrap()["sign-in-with-x"]["info"].clone();
    assert_eq!(info["uri"], format!("{ORIGIN}/services/quota/echo"));

    // A failed call is given back; then two free calls, the second on the session.
    let failed = get(
        "/fail",
        vec![("sign-in-with-x", encode(&signed(&info, &buyer, |_| {})))],
    )
    .await
    .unwrap();
    assert_eq!(failed.status(), 500);
    let info = s.challenge_of(&get("/echo", vec![]).await.unwrap());
    let first = get(
        "/echo",
        vec![("sign-in-with-x", encode(&signed(&info, &buyer, |_| {})))],
    )
    .await
    .unwrap();
    assert_eq!(first.status(), 200);
    assert!(!first.headers().contains_key("payment-response"));
    let cookie = first.headers()["set-cookie"].to_str().unwrap();
    let session = cookie.split(';').next().unwrap().to_owned();
    let seen: Value = first.json().await.unwrap();
    assert_eq!(
        seen["headers"]["x-verified-wallet"],
        buyer.address().to_checksum(None)
    );
    assert!(seen["headers"].get("x-payment-payer").is_none());
    let second = get("/echo", vec![("cookie", session.clone())])
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(verifies(), 0, "nothing was paid");

    // Used up: the 402 says so, and a payment is served as usual.
    let third = get("/echo", vec![("cookie", session.clone())])
        .await
        .unwrap();
    assert_eq!(third.status(), 402);
    let required = crate::challenge_of(&third);
    let extensions = required.extensions.as_ref().unwrap();
    assert_eq!(
        extensions["paymentFailure"]["reason"],
        "free_quota_exhausted"
    );
    assert!(extensions.contains_key("sign-in-with-x"));
    let payment = crate::sign(&buyer, &required, 0);
    let paid = get(
        "/echo",
        vec![
            ("cookie", session),
            (obol_x402::header::PAYMENT_SIGNATURE, payment),
        ],
    )
    .await
    .unwrap();
    obol_testkit::x402::assert_paid(&paid);
    assert_eq!(verifies(), 1);

    // Another wallet has its own calls; a bad credential is refused, never charged.
    let other = s.fixture.buyer(3);
    let info = s.challenge_of(&get("/echo", vec![]).await.unwrap());
    let theirs = get(
        "/echo",
        vec![("sign-in-with-x", encode(&signed(&info, &other, |_| {})))],
    )
    .await
    .unwrap();
    assert_eq!(theirs.status(), 200);
    let forged = get(
        "/echo",
        vec![("authorization", "Bearer siwx1.forged.token".into())],
    )
    .await
    .unwrap();
    assert_eq!(reason(forged).await, (401, "session_invalid".into()));
    assert_eq!(verifies(), 1);
}
