//! Writes the committed seed corpora under `fuzz/corpus/<target>/`: real headers and bodies,
//! signed with the crates' own signer (a fixed well-known test key, fixed nonces, a window
//! around `FIXED_NOW`), the spec's example headers, and the gateway's own 402.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus` (normal build, no fuzzing
//! flags). Deterministic: RFC 6979 signatures, so reruns write the same bytes.

use std::path::{Path, PathBuf};

use obol_fuzz::{FIXED_NOW, OBOL_BASE_SEPOLIA, RESOURCE_URL, options};
use obol_gateway::OfferKind;
use obol_gateway::challenge::payment_required;
use obol_x402::LocalSigner;
use obol_x402::header;
use obol_x402::primitives::B256;
use obol_x402::signer::{ValidityWindow, prepare_exact};
use obol_x402::wire::{PaymentPayload, VerifyRequest, X402Version, v1, v2};
use serde_json::json;

/// Anvil's first development key (public knowledge; never holds real funds).
const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const PERMIT2: &str = "0x000000000022D473030F116dDEE9F6B43aC78BA3";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn vector(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/x402/tests/vectors")
        .join(format!("{name}.b64"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn write(target: &str, name: &str, mode: Option<u8>, data: &[u8]) {
    let dir = root().join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.extend(mode);
    bytes.extend_from_slice(data);
    std::fs::write(dir.join(name), bytes).expect("corpus file");
}

fn sign(requirements: &v2::PaymentRequirements, nonce: u8) -> v2::PaymentPayload {
    let signer = LocalSigner::from_private_key_hex(KEY).expect("test key");
    let unsigned = prepare_exact(
        requirements,
        Some(v2::ResourceInfo::new(RESOURCE_URL)),
        signer.address(),
        ValidityWindow::for_request(FIXED_NOW, requirements.max_timeout_seconds),
        B256::repeat_byte(nonce),
    )
    .expect("prepare");
    let signature = signer.sign_digest_sync(&unsigned.digest()).expect("sign");
    unsigned.finish(&signature)
}

/// The same payment with its signature's `v` written as 0/1 (what some wallets send).
fn with_raw_v(payment: &v2::PaymentPayload) -> v2::PaymentPayload {
    let mut payment = payment.clone();
    let text = payment.payload["signature"]
        .as_str()
        .expect("signature")
        .to_owned();
    let mut bytes = obol_x402::signature::from_hex(&text).expect("hex").to_vec();
    bytes[64] -= 27;
    payment.payload.insert(
        "signature".into(),
        obol_x402::primitives::Bytes::from(bytes).to_string().into(),
    );
    payment
}

fn as_v1(payment: &v2::PaymentPayload, network: &str) -> v1::PaymentPayload {
    v1::PaymentPayload {
        x402_version: X402Version,
        scheme: payment.accepted.scheme.clone(),
        network: network.into(),
        payload: payment.payload.clone(),
    }
}

fn v1_requirements(r: &v2::PaymentRequirements, network: &str) -> v1::PaymentRequirements {
    v1::PaymentRequirements {
        scheme: r.scheme.clone(),
        network: network.into(),
        max_amount_required: r.amount,
        asset: r.asset.clone(),
        pay_to: r.pay_to.clone(),
        resource: RESOURCE_URL.into(),
        description: "fuzz fixture".into(),
        mime_type: "application/json".into(),
        output_schema: None,
        max_timeout_seconds: r.max_timeout_seconds,
        extra: r.extra.clone(),
    }
}

fn enc(value: &impl serde::Serialize) -> String {
    header::encode(value).expect("encode")
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

fn main() {
    let options = options();
    let usdc = &options[0].requirements;
    let obol = &options[1].requirements;
    let legacy = &options[2].requirements;

    let usdc_payment = sign(usdc, 0x11);
    let mut obol_payment = sign(obol, 0x22);
    let legacy_payment = sign(legacy, 0x33);

    // OBOL pays through Permit2 with the approval sponsored by an EIP-2612 permit.
    let signer = LocalSigner::from_private_key_hex(KEY).expect("test key");
    let permit_signature = signer
        .sign_digest_sync(&B256::repeat_byte(0x44))
        .expect("sign");
    obol_payment.extensions = Some(
        json!({"eip2612GasSponsoring": {"info": {
            "from": signer.address().to_checksum(None), "asset": OBOL_BASE_SEPOLIA,
            "spender": PERMIT2, "amount": obol.amount.to_string(), "nonce": "0",
            "deadline": (FIXED_NOW + 3600).to_string(),
            "signature": obol_x402::signature::to_bytes(&permit_signature).to_string(),
            "version": "1"}}})
        .as_object()
        .cloned()
        .expect("object"),
    );
    let v1_payment = as_v1(&usdc_payment, "base-sepolia");
    let v1_raw_v = as_v1(&with_raw_v(&usdc_payment), "base-sepolia");

    // payment_header: 0 raw header, 1 JSON, 2 raw in X-PAYMENT via extract, 3 JSON in
    // PAYMENT-SIGNATURE via extract.
    let t = "payment_header";
    write(
        t,
        "spec-v2-payment-signature",
        Some(0),
        vector("v2-payment-signature").as_bytes(),
    );
    write(
        t,
        "spec-v1-x-payment",
        Some(0),
        vector("v1-x-payment").as_bytes(),
    );
    write(t, "v2-usdc-eip3009", Some(0), enc(&usdc_payment).as_bytes());
    write(
        t,
        "v2-obol-permit2-sponsored.json",
        Some(1),
        &json(&obol_payment),
    );
    write(t, "v1-usdc-raw-v", Some(2), enc(&v1_raw_v).as_bytes());
    write(
        t,
        "v2-usdc-raw-v.json",
        Some(3),
        &json(&with_raw_v(&usdc_payment)),
    );
    write(t, "not-base64", Some(0), b"eyJ4NDAy-_");

    // payment_required: 0 raw PAYMENT-REQUIRED, 1 its JSON, 2 a 402 body.
    let t = "payment_required";
    let offer = obol_fuzz::offer(OfferKind::Http, "http://127.0.0.1:9/");
    let required = payment_required(&offer, RESOURCE_URL.into(), None);
    write(
        t,
        "spec-v2-payment-required",
        Some(0),
        vector("v2-payment-required").as_bytes(),
    );
    write(t, "gateway-v2-header", Some(0), enc(&required).as_bytes());
    write(t, "gateway-v2.json", Some(1), &json(&required));
    write(t, "gateway-v2-body.json", Some(2), &json(&required));
    let v1_body = v1::PaymentRequired {
        x402_version: X402Version,
        error: "X-PAYMENT header is required".into(),
        accepts: vec![
            v1_requirements(usdc, "base-sepolia"),
            v1_requirements(legacy, "base"),
        ],
    };
    write(t, "v1-body.json", Some(2), &json(&v1_body));

    // requirement_matching: 0 JSON payment, 1 structured bytes, 2 raw PAYMENT-SIGNATURE.
    let t = "requirement_matching";
    write(t, "v2-usdc.json", Some(0), &json(&usdc_payment));
    write(t, "v2-obol-sponsored.json", Some(0), &json(&obol_payment));
    write(t, "v2-base-legacy.json", Some(0), &json(&legacy_payment));
    write(t, "v1-base-sepolia.json", Some(0), &json(&v1_payment));
    write(
        t,
        "v1-base-legacy.json",
        Some(0),
        &json(&as_v1(&legacy_payment, "base")),
    );
    write(t, "structured-zeros", Some(1), &[0; 64]);
    write(
        t,
        "structured-mixed",
        Some(1),
        &(0u8..96).map(|i| i.wrapping_mul(37)).collect::<Vec<_>>(),
    );
    write(t, "v2-usdc-header", Some(2), enc(&usdc_payment).as_bytes());

    // path_normalisation: mode bit 0 prefixes /services/foo/, bit 1 inference, bit 2 POST.
    let t = "path_normalisation";
    for (name, mode, path) in [
        ("plain", 0u8, "/services/foo/v1/data"),
        ("chat-post", 6, "/services/foo/chat/completions"),
        ("root-post", 6, "/services/foo"),
        ("dotdot-encoded", 0, "/services/foo/%2e%2e/%2E%2e/admin"),
        ("dotdot-double", 1, "%252e%252e/admin"),
        ("dot-mixed", 1, ".%2E/x"),
        ("slash-encoded", 1, "a%2Fb/..%252f"),
        ("backslash", 1, "..\\admin%5c"),
        ("utf8", 1, "caf%C3%A9/100%25/%zz//x"),
        ("deep", 1, "%2525252e"),
    ] {
        write(t, name, Some(mode), path.as_bytes());
    }

    // facilitator_request: /verify and /settle bodies.
    let t = "facilitator_request";
    let spec: PaymentPayload = header::decode(&vector("v2-payment-signature")).expect("vector");
    let PaymentPayload::V2(spec) = spec else {
        panic!("a v2 vector")
    };
    let bodies = [
        (
            "verify-v2-usdc.json",
            VerifyRequest::V2 {
                payment_payload: usdc_payment.clone(),
                payment_requirements: usdc.clone(),
            },
        ),
        (
            "settle-v2-obol-sponsored.json",
            VerifyRequest::V2 {
                payment_payload: obol_payment.clone(),
                payment_requirements: obol.clone(),
            },
        ),
        (
            "verify-v1-usdc-raw-v.json",
            VerifyRequest::V1 {
                payment_payload: v1_raw_v,
                payment_requirements: v1_requirements(usdc, "base-sepolia"),
            },
        ),
        (
            "verify-v2-spec.json",
            VerifyRequest::V2 {
                payment_requirements: spec.accepted.clone(),
                payment_payload: spec,
            },
        ),
    ];
    for (name, body) in bodies {
        write(t, name, None, &json(&body));
    }
    write(
        t,
        "version-mismatch.json",
        None,
        br#"{"x402Version":2,"paymentPayload":{"x402Version":1},"paymentRequirements":{}}"#,
    );
    println!("corpus written under {}", root().display());
}
