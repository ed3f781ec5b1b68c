//! Wire-format behaviour beyond the spec vectors: leniency where the field demands it,
//! strictness where payments need it, and signing a payment for a requirement.

use std::collections::HashSet;

use alloy::primitives::{U256, address};
use obol_x402::TransferMethod;
use obol_x402::header::{self, Decoded};
use obol_x402::signer::{
    self, BuildError, LocalSigner, ValidityWindow, prepare_payment, sign_payment,
};
use obol_x402::token::{EXACT_PERMIT2_PROXY, TokenRegistry};
use obol_x402::wire::evm::EvmPayload;
use obol_x402::wire::{FieldError, PaymentPayload, PaymentRequired, VerifyRequest, v1, v2};
use serde_json::json;

use crate::vector;

fn requirement(extra: serde_json::Value) -> v2::PaymentRequirements {
    serde_json::from_value(json!({
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "10000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "maxTimeoutSeconds": 60,
        "extra": extra
    }))
    .unwrap()
}

#[test]
fn requirements_read_amount_or_max_amount_required() {
    let v2_from_legacy: v2::PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": "1000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "maxTimeoutSeconds": 300, "resource": "https://x", "description": "d", "mimeType": "", "outputSchema": null
    }))
    .unwrap();
    assert_eq!(v2_from_legacy.amount(), U256::from(1000));
    assert_eq!(v2_from_legacy.chain_id().unwrap(), 84532);
    let out = serde_json::to_value(&v2_from_legacy).unwrap();
    assert_eq!(out["amount"], "1000");
    assert!(out.get("maxAmountRequired").is_none());

    let v1_from_v2: v1::PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": "base", "amount": "7",
        "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "maxTimeoutSeconds": 300
    }))
    .unwrap();
    assert_eq!(v1_from_v2.max_amount_required.get(), U256::from(7));
    let out = serde_json::to_value(&v1_from_v2).unwrap();
    assert_eq!(out["maxAmountRequired"], "7");
    assert_eq!(out["mimeType"], "", "legacy schema wants a string");

    let missing = serde_json::from_value::<v2::PaymentRequirements>(json!({
        "scheme": "exact", "network": "base", "asset": "0x0", "payTo": "0x0", "maxTimeoutSeconds": 1
    }))
    .unwrap_err();
    assert!(
        missing.to_string().contains("maxAmountRequired"),
        "{missing}"
    );
}

#[test]
fn integers_must_be_strings() {
    // V-24: JSON numbers where the wire wants strings are malformed.
    for bad in [
        json!(10000),
        json!("0x2710"),
        json!("-1"),
        json!(""),
        json!("1e4"),
    ] {
        let mut value =
            serde_json::to_value(requirement(json!({"name": "USDC", "version": "2"}))).unwrap();
        value["amount"] = bad.clone();
        assert!(
            serde_json::from_value::<v2::PaymentRequirements>(value).is_err(),
            "{bad} accepted"
        );
    }
    let payload = json!({
        "signature": "0x00",
        "authorization": {"from": "0x857b06519E91e3A54538791bDbb0E22373e36b66", "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "value": 10000, "validAfter": "0", "validBefore": "1", "nonce": format!("0x{}", "00".repeat(32))}
    });
    let err = EvmPayload::from_map(payload.as_object().unwrap()).unwrap_err();
    assert!(err.to_string().contains("string"), "{err}");
}

#[test]
fn resource_may_be_a_bare_url() {
    let mut value: serde_json::Value =
        serde_json::from_str(&header::decode_to_json(&vector("v2-payment-signature")).unwrap())
            .unwrap();
    value["resource"] = json!("https://seller.example/services/x");
    let payload: v2::PaymentPayload = serde_json::from_value(value).unwrap();
    assert_eq!(
        payload.resource.unwrap().url,
        "https://seller.example/services/x"
    );
}

#[test]
fn unknown_versions_and_mismatches_are_refused() {
    let err = serde_json::from_value::<PaymentPayload>(json!({"x402Version": 3, "payload": {}}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported x402Version 3"), "{err}");
    let err = serde_json::from_value::<PaymentRequired>(json!({"accepts": []}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("x402Version"), "{err}");

    let v2_payload: serde_json::Value =
        serde_json::from_str(&header::decode_to_json(&vector("v2-payment-signature")).unwrap())
            .unwrap();
    let v1_payload: serde_json::Value =
        serde_json::from_str(&header::decode_to_json(&vector("v1-x-payment")).unwrap()).unwrap();
    let requirements = v2_payload["accepted"].clone();
    let ok: VerifyRequest = serde_json::from_value(json!({
        "x402Version": 2, "paymentPayload": v2_payload, "paymentRequirements": requirements
    }))
    .unwrap();
    assert_eq!(ok.version(), 2);
    let round = serde_json::to_value(&ok).unwrap();
    assert_eq!(round["x402Version"], 2);
    assert_eq!(round["paymentRequirements"]["amount"], "10000");

    // V-20: a v2 body carrying a v1 payload.
    let err = serde_json::from_value::<VerifyRequest>(json!({
        "x402Version": 2, "paymentPayload": v1_payload, "paymentRequirements": requirements
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn unknown_fields_are_ignored_and_extra_is_kept_in_order() {
    let json = r#"{"x402Version":2,"resource":{"url":"u","future":1},"accepts":[{"scheme":"exact","network":"base","amount":"1","asset":"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":300,"extra":{"version":"2","name":"USD Coin","agentModel":"m"},"newField":true}],"extensions":{"bazaar":{"info":{}}}}"#;
    let decoded: v2::PaymentRequired = header::from_json(json).unwrap();
    let out = serde_json::to_string(&decoded).unwrap();
    assert!(
        out.contains(r#""extra":{"version":"2","name":"USD Coin","agentModel":"m"}"#),
        "{out}"
    );
    assert!(
        out.contains(r#""extensions":{"bazaar":{"info":{}}}"#),
        "{out}"
    );
    assert!(!out.contains("newField"));
}

#[test]
fn same_terms_normalises_network_and_address_case() {
    let offered = requirement(json!({"name": "USDC", "version": "2"}));
    let mut accepted = offered.clone();
    accepted.network = "base-sepolia".into();
    accepted.pay_to = accepted.pay_to.to_lowercase();
    accepted.asset = accepted.asset.to_uppercase().replace("0X", "0x");
    assert!(offered.same_terms(&accepted));
    for mutate in [
        |r: &mut v2::PaymentRequirements| r.amount = U256::from(10001).into(),
        |r: &mut v2::PaymentRequirements| r.network = "base".into(),
        |r: &mut v2::PaymentRequirements| {
            r.pay_to = "0x0000000000000000000000000000000000000001".into()
        },
        |r: &mut v2::PaymentRequirements| r.max_timeout_seconds = 61,
        |r: &mut v2::PaymentRequirements| r.extra = None,
        |r: &mut v2::PaymentRequirements| r.scheme = "upto".into(),
    ] {
        let mut other = offered.clone();
        mutate(&mut other);
        assert!(!offered.same_terms(&other), "{other:?}");
    }
}

#[tokio::test]
async fn signs_eip3009_for_a_requirement() {
    let signer = LocalSigner::random();
    let req = requirement(json!({"name": "USDC", "version": "2"}));
    let window = ValidityWindow::for_request(1_800_000_000, req.max_timeout_seconds);
    assert_eq!(window.valid_after, 1_800_000_000 - 600, "C-4");
    assert_eq!(window.valid_before, 1_800_000_060, "C-4");
    let payload = sign_payment(&signer, &req, None, window, signer::random_nonce())
        .await
        .unwrap();
    assert_eq!(
        payload.accepted, req,
        "C-1: accepted echoes the requirement"
    );
    let exact = payload.evm_payload().unwrap();
    assert_eq!(exact.transfer_method(), TransferMethod::Eip3009);
    assert_eq!(exact.recover_signer(&req).unwrap(), signer.address());
    let EvmPayload::Eip3009 {
        authorization,
        signature,
    } = &exact
    else {
        unreachable!()
    };
    assert_eq!(signature.len(), 65);
    assert!(matches!(signature[64], 27 | 28));
    assert_eq!(authorization.to, req.pay_to_address().unwrap());
    assert_eq!(authorization.value.get(), U256::from(10000));

    // The header round-trips and decodes as a payment.
    let encoded = header::encode(&payload).unwrap();
    assert!(matches!(
        header::decode_any(&encoded).unwrap(),
        Decoded::PaymentPayload(PaymentPayload::V2(_))
    ));
}

#[tokio::test]
async fn signs_permit2_for_obol() {
    let signer = LocalSigner::random();
    let obol = TokenRegistry::builtin()
        .resolve("OBOL", "base-sepolia")
        .unwrap()
        .clone();
    let req: v2::PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1000000000000000",
        "asset": obol.address.to_checksum(None), "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "maxTimeoutSeconds": 300, "extra": obol.requirement_extra()
    }))
    .unwrap();
    let window = ValidityWindow::for_request(1_800_000_000, 300);
    let payload = sign_payment(&signer, &req, None, window, signer::random_nonce())
        .await
        .unwrap();
    let exact = payload.evm_payload().unwrap();
    let EvmPayload::Permit2 { authorization, .. } = &exact else {
        panic!("expected permit2, got {exact:?}")
    };
    assert_eq!(authorization.spender, EXACT_PERMIT2_PROXY);
    assert_eq!(authorization.permitted.token, obol.address);
    assert_eq!(authorization.deadline.get(), U256::from(1_800_000_300));
    assert_eq!(
        authorization.witness.valid_after.get(),
        U256::from(1_800_000_000 - 600)
    );
    assert_eq!(exact.recover_signer(&req).unwrap(), signer.address());
    let wire = serde_json::to_value(&payload.payload).unwrap();
    assert!(
        wire["permit2Authorization"]["nonce"].is_string(),
        "Permit2 nonces are decimal strings"
    );
}

#[test]
fn refuses_to_sign_what_cannot_settle() {
    let from = address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
    let window = ValidityWindow::for_request(1_800_000_000, 60);
    // C-5: no EIP-712 domain.
    let err = prepare_payment(
        &requirement(json!({})),
        None,
        from,
        window,
        signer::random_nonce(),
    )
    .unwrap_err();
    assert_eq!(err, BuildError::Field(FieldError::MissingEip712Domain));
    // upto names the facilitator that may settle it; other schemes are not signed.
    let mut upto = requirement(json!({"name": "USDC", "version": "2"}));
    upto.scheme = "upto".into();
    assert!(matches!(
        prepare_payment(&upto, None, from, window, signer::random_nonce()),
        Err(BuildError::Field(FieldError::Address {
            field: "extra.facilitatorAddress",
            ..
        }))
    ));
    upto.scheme = "deferred".into();
    assert!(matches!(
        prepare_payment(&upto, None, from, window, signer::random_nonce()),
        Err(BuildError::Scheme(_))
    ));
    let weird =
        requirement(json!({"name": "USDC", "version": "2", "assetTransferMethod": "erc7710"}));
    assert!(matches!(
        prepare_payment(&weird, None, from, window, signer::random_nonce()),
        Err(BuildError::Field(FieldError::TransferMethod(_)))
    ));
    let empty = ValidityWindow {
        valid_after: 5,
        valid_before: 5,
    };
    assert!(matches!(
        prepare_payment(
            &requirement(json!({"name": "USDC", "version": "2"})),
            None,
            from,
            empty,
            signer::random_nonce()
        ),
        Err(BuildError::Window { .. })
    ));
    let mut unknown_chain = requirement(json!({"name": "USDC", "version": "2"}));
    unknown_chain.network = "nowhere".into();
    assert!(matches!(
        prepare_payment(&unknown_chain, None, from, window, signer::random_nonce()),
        Err(BuildError::Field(FieldError::Network(_)))
    ));
}

#[test]
fn nonces_are_unique() {
    // C-3: 10 000 samples, no repeats.
    let nonces: HashSet<_> = (0..10_000).map(|_| signer::random_nonce()).collect();
    assert_eq!(nonces.len(), 10_000);
}

#[test]
fn keys_are_validated_and_never_echoed() {
    for bad in ["", "0x12", "zz", &"f".repeat(64), &"0".repeat(64)] {
        let err = LocalSigner::from_private_key_hex(bad)
            .unwrap_err()
            .to_string();
        assert!(
            !bad.is_empty() && !err.contains(bad) || bad.is_empty(),
            "{err}"
        );
    }
    let signer = LocalSigner::from_private_key_hex(
        "  ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n",
    )
    .unwrap();
    let debug = format!("{signer:?}");
    assert!(debug.contains("0xf39F"), "{debug}");
    assert!(!debug.contains("ac0974"), "{debug}");
}
