//! End-to-end tests of the `obol` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod decode;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

/// Runs `obol` with `args`, feeding `stdin`.
pub fn obol(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(args)
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
