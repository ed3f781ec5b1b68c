//! x402.md §8.1–8.3: signing vectors, type hashes and wire vectors, byte for byte.

use alloy::primitives::{Address, B256, U256, address, b256, hex, keccak256};
use alloy::sol_types::SolStruct;
use obol_x402::eip712::{self, permit2_domain, token_domain};
use obol_x402::header;
use obol_x402::signature::{self, SignatureError};
use obol_x402::signer::LocalSigner;
use obol_x402::wire::{PaymentPayload, PaymentRequired, SettleResponse, v1, v2};

use crate::vector;

const K0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const K1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const K2: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

const BASE_SEPOLIA_USDC: Address = address!("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
const BASE_USDC: Address = address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
const PAY_TO: Address = address!("0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
const SPEC_NONCE: B256 =
    b256!("0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480");

fn key(hex_key: &str) -> LocalSigner {
    LocalSigner::from_private_key_hex(hex_key).unwrap()
}

fn sign(signer: &LocalSigner, digest: B256) -> String {
    let signature = signer.sign_digest_sync(&digest).unwrap();
    hex::encode_prefixed(signature::to_bytes(&signature))
}

fn transfer(
    from: Address,
    to: Address,
    value: u64,
    valid_after: u64,
    valid_before: u64,
    nonce: B256,
) -> eip712::TransferWithAuthorization {
    eip712::TransferWithAuthorization {
        from,
        to,
        value: U256::from(value),
        validAfter: U256::from(valid_after),
        validBefore: U256::from(valid_before),
        nonce,
    }
}

#[test]
fn keys_map_to_the_known_addresses() {
    assert_eq!(
        key(K0).address(),
        address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
    );
    assert_eq!(
        key(K1).address(),
        address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    );
    assert_eq!(
        key(K2).address(),
        address!("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
    );
}

#[test]
fn t_sig_0_spec_example_recovers_and_rejects_the_wrong_domain() {
    let message = transfer(
        address!("0x857b06519E91e3A54538791bDbb0E22373e36b66"),
        PAY_TO,
        10000,
        1740672089,
        1740672154,
        SPEC_NONCE,
    );
    let domain = token_domain("USDC", "2", 84532, BASE_SEPOLIA_USDC);
    let digest = message.eip712_signing_hash(&domain);
    assert_eq!(
        digest,
        b256!("0xf256992871671abcb27ff92885a7afa46218724e5fc0bac35d050115aa1d22e6")
    );
    let sig = hex::decode("0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c").unwrap();
    assert_eq!(signature::recover(&digest, &sig).unwrap(), message.from);

    let wrong = token_domain("USD Coin", "2", 84532, BASE_SEPOLIA_USDC);
    let recovered = signature::recover(&message.eip712_signing_hash(&wrong), &sig).unwrap();
    assert_eq!(
        recovered,
        address!("0xED07B31Fa76779c7A25BA712fB1bFBECefa2ad7e")
    );
    assert_ne!(recovered, message.from);
}

#[test]
fn t_sig_1_eip3009_go_test_inputs() {
    let signer = key(K0);
    let message = transfer(
        address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
        address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),
        1_000_000,
        0,
        9_999_999_999,
        b256!("0x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"),
    );
    let domain = token_domain("USD Coin", "2", 84532, BASE_SEPOLIA_USDC);
    assert_eq!(
        domain.separator(),
        b256!("0x2f5ab5eec6c6d261a8ad2b303ae4ef05c8509de2250e072c3a2df0ad7f9f068b")
    );
    assert_eq!(
        message.eip712_hash_struct(),
        b256!("0xf21fb2d715b94f6abd32c6cbaee2e714917406f50575c7af84f1860bec8f3e7e")
    );
    let digest = message.eip712_signing_hash(&domain);
    assert_eq!(
        digest,
        b256!("0x8defeddca0623a71142068cab3d3aa28ec60a4d59e9decb067789ec2d56d9a8f")
    );
    assert_eq!(
        sign(&signer, digest),
        "0x765700d410828dbeb72aa797b3b9b46bc0150557707e67a5aa690dd088f775131984e534eab3a2a385c5974f9c8547d8ad519cfbfc092514df9a34bb56c029d71b"
    );
}

#[test]
fn t_sig_2_eip3009_base_sepolia_usdc() {
    let message = transfer(
        address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),
        PAY_TO,
        10000,
        1740672089,
        1740672154,
        SPEC_NONCE,
    );
    let domain = token_domain("USDC", "2", 84532, BASE_SEPOLIA_USDC);
    assert_eq!(
        domain.separator(),
        b256!("0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818")
    );
    assert_eq!(
        message.eip712_hash_struct(),
        b256!("0x026d70b33bf7d281bccc5c18246c18311bff9fc8fbb17ac8b906b3f015a39efb")
    );
    let digest = message.eip712_signing_hash(&domain);
    assert_eq!(
        digest,
        b256!("0x7b608a4b969db6725f5373740b7811350cd1148db1b903276958fa2a718326ba")
    );
    assert_eq!(
        sign(&key(K1), digest),
        "0xeae36c169c193ec4791b48a3d469bd0ff9f9b2edef5c1349bedcd0c501c3cff2006d0788285d4a884321fabe5a8428887c3581a82f1b32eeb2ea1011413746901c"
    );
}

#[test]
fn t_sig_3_eip3009_base_mainnet_usdc() {
    let message = transfer(
        address!("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
        PAY_TO,
        1000,
        1740671489,
        1740672154,
        B256::ZERO,
    );
    let domain = token_domain("USD Coin", "2", 8453, BASE_USDC);
    assert_eq!(
        domain.separator(),
        b256!("0x02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f")
    );
    let digest = message.eip712_signing_hash(&domain);
    assert_eq!(
        digest,
        b256!("0x0e1cafce967fc040ea3c6d4a206dee5b2692430c871a02171dd847d201dba5c8")
    );
    assert_eq!(
        sign(&key(K2), digest),
        "0x965bd1d5f2a85768ae90f313173014a7564759991fc5e441358dcc844d5d7208499621d99a765279d337f785f8d13a5c00de40f5bba58960b4daedae9fecafe41b"
    );
}

#[test]
fn t_sig_4_permit2_exact_witness() {
    let message = eip712::PermitWitnessTransferFrom {
        permitted: eip712::TokenPermissions {
            token: BASE_SEPOLIA_USDC,
            amount: U256::from(10000),
        },
        spender: obol_x402::token::EXACT_PERMIT2_PROXY,
        nonce: "33247007178036348590600198031289925668252061821958005840077069883511451257277"
            .parse()
            .unwrap(),
        deadline: U256::from(1740672154),
        witness: eip712::Witness {
            to: PAY_TO,
            validAfter: U256::from(1740672089),
        },
    };
    let domain = permit2_domain(84532);
    assert_eq!(
        domain.separator(),
        b256!("0x010f27a92fb9a32622f44f001dc4d15706a85b33499cfc2ce9033113ab26592c")
    );
    assert_eq!(
        message.eip712_hash_struct(),
        b256!("0xf9efd2ab5ec37a11f062cfbde5dd2654b11aa7c03eedbac1f9bf0efd67b2d8b4")
    );
    let digest = message.eip712_signing_hash(&domain);
    assert_eq!(
        digest,
        b256!("0x21528e1468aac114016416353e2309329f217dc180b21baa1d81cde941095685")
    );
    assert_eq!(
        sign(&key(K1), digest),
        "0x3786aca99c1c6b5fb899a8981bb38989f17b6f858ca3a64538578f06d5e7a3d743b4646fc4068d368ac9c6d03c4f41bc06098f25d559c7178be11adb1ccc749b1b"
    );
}

#[test]
fn t_sig_5_high_s_twin_is_rejected() {
    let digest = b256!("0x7b608a4b969db6725f5373740b7811350cd1148db1b903276958fa2a718326ba");
    let high_s = hex::decode("0xeae36c169c193ec4791b48a3d469bd0ff9f9b2edef5c1349bedcd0c501c3cff2ff92f877d7a2b577bcde0541a57bd7763e795b3e802d6d4d0ce84e7b8efefab11b").unwrap();
    assert_eq!(
        signature::recover(&digest, &high_s),
        Err(SignatureError::HighS)
    );
    // A raw ecrecover still finds the signer; that is exactly why the check matters.
    let raw = signature::parse_allowing_high_s(&high_s).unwrap();
    assert_eq!(
        raw.recover_address_from_prehash(&digest).unwrap(),
        address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    );
}

/// T-SIG-6's upto values through the builder a buyer uses: the same digest and signature, a
/// payload that reads back as `upto` and recovers to the signer.
#[test]
fn t_sig_6_upto_through_prepare_payment() {
    let signer = key(K1);
    let requirement: v2::PaymentRequirements = serde_json::from_value(serde_json::json!({
        "scheme": "upto", "network": "eip155:84532", "amount": "5000000",
        "asset": BASE_SEPOLIA_USDC, "payTo": PAY_TO, "maxTimeoutSeconds": 65,
        "extra": {"name": "USDC", "version": "2", "assetTransferMethod": "permit2",
                  "facilitatorAddress": "0x90F79bf6EB2c4f870365E785982E1f101E93b906"}
    }))
    .unwrap();
    let window = obol_x402::signer::ValidityWindow {
        valid_after: 1740672089,
        valid_before: 1740672154,
    };
    let nonce = B256::from(U256::from(1).to_be_bytes::<32>());
    let unsigned =
        obol_x402::signer::prepare_payment(&requirement, None, signer.address(), window, nonce)
            .unwrap();
    assert_eq!(
        unsigned.digest(),
        b256!("0x2cb3b90504596f52b44212ea6858346286503781d84efd78f2886006654bc25c")
    );
    let payload = unsigned.sign_with(&signer).unwrap();
    assert_eq!(
        payload.payload["signature"],
        "0x9ca8b73806bdc0fb5b7bcf0adb1ac707e843ce992f638ffea5b9274d18714c5a0f5aefd1b539700c8824912664cf411513089f7f9ab39b34f5c581d895358bab1c"
    );
    let authorization = &payload.payload["permit2Authorization"];
    assert_eq!(
        authorization["spender"],
        "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"
    );
    assert_eq!(
        authorization["witness"]["facilitator"],
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
    );
    assert_eq!(authorization["permitted"]["amount"], "5000000");
    let read = payload.evm_payload().unwrap();
    assert_eq!(read.scheme(), "upto");
    assert_eq!(read.ceiling(), U256::from(5_000_000));
    assert_eq!(read.recover_signer(&requirement).unwrap(), signer.address());
}

#[test]
fn t_sig_6_upto_witness_and_eip2612_permit() {
    let signer = key(K1);
    let upto = eip712::upto::PermitWitnessTransferFrom {
        permitted: eip712::upto::TokenPermissions {
            token: BASE_SEPOLIA_USDC,
            amount: U256::from(5_000_000),
        },
        spender: obol_x402::token::UPTO_PERMIT2_PROXY,
        nonce: U256::from(1),
        deadline: U256::from(1740672154),
        witness: eip712::upto::Witness {
            to: PAY_TO,
            facilitator: address!("0x90F79bf6EB2c4f870365E785982E1f101E93b906"),
            validAfter: U256::from(1740672089),
        },
    };
    let digest = upto.eip712_signing_hash(&permit2_domain(84532));
    assert_eq!(
        digest,
        b256!("0x2cb3b90504596f52b44212ea6858346286503781d84efd78f2886006654bc25c")
    );
    assert_eq!(
        sign(&signer, digest),
        "0x9ca8b73806bdc0fb5b7bcf0adb1ac707e843ce992f638ffea5b9274d18714c5a0f5aefd1b539700c8824912664cf411513089f7f9ab39b34f5c581d895358bab1c"
    );

    let permit = eip712::Permit {
        owner: address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),
        spender: obol_x402::token::PERMIT2,
        value: U256::from(10000),
        nonce: U256::ZERO,
        deadline: U256::from(1740672154),
    };
    let digest = permit.eip712_signing_hash(&token_domain("USDC", "2", 84532, BASE_SEPOLIA_USDC));
    assert_eq!(
        digest,
        b256!("0x9e9ace84db9f61c780f87a508bc00e50153e394ce0b43b96fffcf2fe0d80c671")
    );
    assert_eq!(
        sign(&signer, digest),
        "0x6eb641e214578d6ef33d4cf7f88e5ca5460b142ff1d7ea12a9c3d20ac9b2897a7708dfdb4cccac2201da8469857ff26f0e2906c62b5c3f70315ccd8a6e2030f11b"
    );
}

/// §8.2: every type hash of §3.2 and §3.3.
#[test]
fn t_hash_type_hashes() {
    let zero = eip712::TransferWithAuthorization {
        from: Address::ZERO,
        to: Address::ZERO,
        value: U256::ZERO,
        validAfter: U256::ZERO,
        validBefore: U256::ZERO,
        nonce: B256::ZERO,
    };
    assert_eq!(
        zero.eip712_type_hash(),
        b256!("0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267")
    );
    assert_eq!(
        keccak256(eip712::RECEIVE_WITH_AUTHORIZATION_TYPE),
        b256!("0xd099cc98ef71107a616c4f0f941f04c322d8e254fe26b3c6668db87aae413de8")
    );
    assert_eq!(
        token_domain("USDC", "2", 1, Address::ZERO).type_hash(),
        b256!("0x8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f")
    );
    assert_eq!(
        permit2_domain(1).type_hash(),
        b256!("0x8cad95687ba82c2ce50e74f7b754645e5117c3a5bec8151c0726d5857980a866")
    );
    assert_eq!(
        eip712::PermitWitnessTransferFrom::eip712_encode_type(),
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)"
    );
    assert_eq!(
        keccak256(eip712::PermitWitnessTransferFrom::eip712_encode_type().as_bytes()),
        b256!("0xebc156cd23678a74c94df13d772ef5478420637f0c94bd10d509e1dc98f521c7")
    );
    assert_eq!(
        keccak256(eip712::TokenPermissions::eip712_encode_type().as_bytes()),
        b256!("0x618358ac3db8dc274f0cd8829da7e234bd48cd73c4a740aede1adec9846d06a1")
    );
    assert_eq!(
        keccak256("Witness(address to,uint256 validAfter)"),
        b256!("0xd97b3239a7f32295517bd14cb074edfdd188dfe5eb42f802bb26d4fd1eb12c37")
    );
    assert_eq!(
        keccak256(eip712::Witness::eip712_encode_type().as_bytes()),
        b256!("0xd97b3239a7f32295517bd14cb074edfdd188dfe5eb42f802bb26d4fd1eb12c37")
    );
    assert_eq!(
        keccak256(eip712::upto::Witness::eip712_encode_type().as_bytes()),
        b256!("0xd4171c445a74218b01d4fd8af34ff1106580ea1e36ff837e64484bfaa2253b75")
    );
    assert_eq!(
        keccak256(eip712::upto::PermitWitnessTransferFrom::eip712_encode_type().as_bytes()),
        b256!("0x51dff6974ad4388c499e7fcfe838d2bd767162553a144098ce20ea661d70c2ee")
    );
    assert_eq!(
        keccak256(eip712::Permit::eip712_encode_type().as_bytes()),
        b256!("0x6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9")
    );
}

/// Decodes a vector, checks it against the JSON the spec shows, and re-encodes it byte for
/// byte through our typed model.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(name: &str, json: &str) -> T {
    let header_value = vector(name);
    assert_eq!(
        header::decode_to_json(&header_value).unwrap(),
        json,
        "{name}"
    );
    let message: T = header::decode(&header_value).unwrap();
    assert_eq!(
        header::encode(&message).unwrap(),
        header_value,
        "{name} re-encodes"
    );
    message
}

#[test]
fn t_b64_1_payment_required() {
    let json = r#"{"x402Version":2,"error":"PAYMENT-SIGNATURE header is required","resource":{"url":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json"},"accepts":[{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}]}"#;
    assert_eq!(vector("v2-payment-required").len(), 584);
    let required: PaymentRequired = round_trip("v2-payment-required", json);
    let PaymentRequired::V2(required) = required else {
        panic!("expected v2")
    };
    assert_eq!(required.accepts[0].amount(), U256::from(10000));
    assert_eq!(required.accepts[0].eip712_domain().unwrap(), ("USDC", "2"));
    let _typed: v2::PaymentRequired = header::decode(&vector("v2-payment-required")).unwrap();
}

#[test]
fn t_b64_2_payment_signature_decodes_and_verifies() {
    let header_value = vector("v2-payment-signature");
    assert_eq!(header_value.len(), 1088);
    // x402.md §8.3 says this vector ends `…NDgwIn19fQ==`; that is the v1 X-PAYMENT's ending
    // (checked in t_b64_3). The v2 value closes one more object.
    assert!(header_value.ends_with("MCJ9fX0="));
    let json = header::decode_to_json(&header_value).unwrap();
    let payload: PaymentPayload = round_trip("v2-payment-signature", &json);
    let PaymentPayload::V2(payload) = payload else {
        panic!("expected v2")
    };
    let exact = payload.evm_payload().unwrap();
    assert_eq!(
        exact.payer(),
        address!("0x857b06519E91e3A54538791bDbb0E22373e36b66")
    );
    assert_eq!(exact.nonce(), SPEC_NONCE);
    // Full decode → verify path: the signature recovers to `from` under the accepted domain.
    assert_eq!(
        exact.recover_signer(&payload.accepted).unwrap(),
        exact.payer()
    );
}

#[test]
fn t_b64_3_v1_x_payment() {
    let header_value = vector("v1-x-payment");
    assert_eq!(header_value.len(), 648);
    assert!(header_value.ends_with("NDgwIn19fQ=="));
    let json = header::decode_to_json(&header_value).unwrap();
    assert!(
        json.starts_with(
            r#"{"x402Version":1,"scheme":"exact","network":"base-sepolia","payload":{"#
        )
    );
    let payload: PaymentPayload = round_trip("v1-x-payment", &json);
    let PaymentPayload::V1(v1_payload) = &payload else {
        panic!("expected v1")
    };
    assert_eq!(payload.scheme_and_network(), ("exact", "base-sepolia"));
    // A v1 payload carries no domain; the requirement it answers does. The same signature
    // verifies under the Base Sepolia USDC domain with the chain id mapped from the name.
    let requirement: v1::PaymentRequirements = serde_json::from_value(serde_json::json!({
        "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": "10000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "resource": "https://api.example.com/premium-data", "description": "",
        "mimeType": "application/json", "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"}
    }))
    .unwrap();
    let exact = v1_payload.evm_payload().unwrap();
    assert_eq!(
        exact.recover_signer(&requirement.to_v2()).unwrap(),
        exact.payer()
    );
}

#[test]
fn t_b64_4_payment_responses() {
    let success: SettleResponse = round_trip(
        "v2-payment-response-success",
        r#"{"success":true,"transaction":"0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef","network":"eip155:84532","payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#,
    );
    assert!(success.success);
    assert_eq!(vector("v2-payment-response-success").len(), 236);
    let failure: SettleResponse = round_trip(
        "v2-payment-response-failure",
        r#"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532","payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#,
    );
    assert_eq!(failure.error_reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(vector("v2-payment-response-failure").len(), 196);
    for name in [
        "v1-x-payment-response-success",
        "v1-x-payment-response-failure",
    ] {
        let json = header::decode_to_json(&vector(name)).unwrap();
        let receipt: SettleResponse = round_trip(name, &json);
        assert_eq!(receipt.network, "base-sepolia");
    }
}

#[test]
fn t_b64_5_url_safe_and_whitespace_are_rejected() {
    let good = vector("v2-payment-signature");
    // The spec vectors contain no '+' or '/', so swap some characters in to make the alphabets
    // differ, then express the same bytes in the URL-safe alphabet.
    let with_plus = header::encode(&serde_json::json!({"k": "~~~???>>>"})).unwrap();
    assert!(
        with_plus.contains('+') || with_plus.contains('/'),
        "{with_plus}"
    );
    let url_safe = with_plus.replace('+', "-").replace('/', "_");
    let err = header::decode_to_json(&url_safe).unwrap_err().to_string();
    assert!(err.contains("URL-safe"), "{err}");

    let mut spaced = good.clone();
    spaced.insert(100, ' ');
    assert!(header::decode::<PaymentPayload>(&spaced).is_err());
    let wrapped = format!("{}\n{}", &good[..76], &good[76..]);
    assert!(header::decode::<PaymentPayload>(&wrapped).is_err());
}
