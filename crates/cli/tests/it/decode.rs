//! `obol x402 decode` on the spec's example headers and on bad input.

use base64::Engine as _;
use serde_json::Value;

use crate::{obol, stderr, vector, vector_path};

fn stdout_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

const PAYER: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

#[test]
fn decodes_every_spec_header() {
    // Each header's one-line summary on stderr: snapshots `decode__<vector>`.
    let vectors = [
        "v2-payment-required",
        "v2-payment-signature",
        "v1-x-payment",
        "v2-payment-response-success",
        "v2-payment-response-failure",
        "v1-x-payment-response-failure",
    ];
    for name in vectors {
        let value = vector(name);
        let out = obol(&["x402", "decode", &value], None);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_output_snapshot!(name, stderr(&out));
        // stdout is exactly the decoded JSON.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&value)
            .unwrap();
        let want: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(stdout_json(&out), want, "{name}");
    }
}

#[test]
fn reads_files_stdin_and_header_lines() {
    let from_file = obol(
        &["x402", "decode", &vector_path("v2-payment-signature")],
        None,
    );
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    let from_stdin = obol(
        &["x402", "decode", "-"],
        Some(&format!("{}\n", vector("v2-payment-signature"))),
    );
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    let line = format!("Payment-Signature: {}", vector("v2-payment-signature"));
    let from_line = obol(&["x402", "decode", &line], None);
    assert!(from_line.status.success(), "{}", stderr(&from_line));
    assert_eq!(from_file.stdout, from_stdin.stdout);
    assert_eq!(from_file.stdout, from_line.stdout);
}

#[test]
fn json_mode_is_one_document() {
    let line = format!("PAYMENT-SIGNATURE: {}", vector("v2-payment-signature"));
    let out = obol(&["--json", "x402", "decode", &line], None);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "nothing on stderr in --json mode");
    let doc = stdout_json(&out);
    assert_eq!(doc["kind"], "payment-payload");
    assert_eq!(doc["header"], "PAYMENT-SIGNATURE");
    assert_eq!(doc["signature"]["status"], "valid");
    assert_eq!(doc["signature"]["recovered"], PAYER);
    assert_eq!(doc["message"]["accepted"]["payTo"], PAY_TO);
    assert!(doc["summary"].as_str().unwrap().contains("0.01 USDC"));
}

#[test]
fn a_tampered_payment_is_flagged() {
    let json = base64::engine::general_purpose::STANDARD
        .decode(vector("v2-payment-signature"))
        .unwrap();
    let mut value: Value = serde_json::from_slice(&json).unwrap();
    // The buyer signed 10000; claim 20000 in both places: the signature no longer matches.
    value["payload"]["authorization"]["value"] = "20000".into();
    value["accepted"]["amount"] = "20000".into();
    let tampered = base64::engine::general_purpose::STANDARD.encode(value.to_string());
    let out = obol(&["--json", "x402", "decode", &tampered], None);
    assert!(out.status.success());
    let doc = stdout_json(&out);
    assert_eq!(doc["signature"]["status"], "invalid");
    assert_ne!(doc["signature"]["recovered"], PAYER);

    // Only the signed value changed: the mismatch with `accepted` is called out.
    value["accepted"]["amount"] = "10000".into();
    let mismatched = base64::engine::general_purpose::STANDARD.encode(value.to_string());
    let out = obol(&["x402", "decode", &mismatched], None);
    let summary = stderr(&out);
    assert!(summary.contains("signature INVALID"), "{summary}");
    assert!(
        summary.contains("WARNING signs 20000 atomic units, but accepted.amount is 10000"),
        "{summary}"
    );
}

#[test]
fn bad_input_fails_with_a_precise_error() {
    let cases = [
        ("eyJh-In0=", "URL-safe alphabet"),
        (
            "eyJhIjox",
            "not valid JSON: EOF while parsing an object at line 1 column 6",
        ),
        ("e30=", "not an x402 message"),
        ("%%%", "not a base64 character"),
        (
            "{\"x402Version\":7,\"accepts\":[]}",
            "unsupported x402Version 7",
        ),
    ];
    for (input, needle) in cases {
        let out = obol(&["x402", "decode", input], None);
        assert_eq!(out.status.code(), Some(1), "{input}");
        assert!(out.stdout.is_empty(), "{input}");
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(needle), "{input}: {err}");
    }
    let out = obol(&["x402", "decode", "--file", "/definitely/not/here"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot open /definitely/not/here"));
}
