//! `obol wallet …` in a throwaway config directory.

use crate::{assert_contains, obol_in, stderr, stdout};

const K0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const A0: &str = obol_testkit::accounts::DEV_ADDRESSES[0];
const PASSWORD: (&str, &str) = ("OBOL_WALLET_PASSWORD", "hunter2");

#[test]
fn new_import_list_address() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();

    let out = obol_in(dir, &["wallet", "list"], &[], None);
    assert_eq!(
        stdout(&out),
        "No wallets yet; create one with `obol wallet new` or `obol wallet import`.\n"
    );

    let out = obol_in(
        dir,
        &["wallet", "new", "--name", "alice"],
        &[PASSWORD],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("Created wallet alice: 0x"),
        "{}",
        stdout(&out)
    );

    // The key comes on stdin; it never appears in any output.
    let out = obol_in(
        dir,
        &["--json", "wallet", "import", "--name", "seller"],
        &[PASSWORD],
        Some(&format!("{K0}\n")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let imported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["address"], A0);
    assert!(!stdout(&out).contains(&K0[2..]) && !stderr(&out).contains(&K0[2..]));

    let out = obol_in(dir, &["wallet", "list"], &[], None);
    let listing = stdout(&out);
    assert!(
        listing.starts_with("NAME    ADDRESS\nalice   0x"),
        "{listing}"
    );
    assert!(listing.ends_with(&format!("seller  {A0}\n")), "{listing}");

    let out = obol_in(dir, &["wallet", "address", "seller"], &[], None);
    assert_eq!(
        stdout(&out),
        format!("{A0}\n"),
        "no password needed for the address"
    );

    // A raw env key stands in for the default wallet.
    let out = obol_in(
        dir,
        &["wallet", "address"],
        &[("OBOL_PRIVATE_KEY", K0)],
        None,
    );
    assert_eq!(stdout(&out), format!("{A0}\n"));
}

#[test]
fn refusals_are_clear() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    // No password source and no terminal.
    let out = obol_in(dir, &["wallet", "new"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert_contains(
        &stderr(&out),
        "--password-file FILE, set OBOL_WALLET_PASSWORD",
    );

    let out = obol_in(dir, &["wallet", "new", "--name", "a"], &[PASSWORD], None);
    assert!(out.status.success());
    let out = obol_in(dir, &["wallet", "new", "--name", "a"], &[PASSWORD], None);
    assert_contains(&stderr(&out), "wallet \"a\" already exists");

    let out = obol_in(
        dir,
        &["wallet", "import", "--name", "b"],
        &[PASSWORD],
        Some("0xnot-a-key\n"),
    );
    let err = stderr(&out);
    assert!(
        err.contains("invalid private key") && !err.contains("not-a-key"),
        "{err}"
    );

    let out = obol_in(dir, &["wallet", "address", "ghost"], &[], None);
    assert_contains(&stderr(&out), "no wallet named \"ghost\"");

    let out = obol_in(dir, &["wallet", "new", "--name", "../x"], &[PASSWORD], None);
    assert_contains(&stderr(&out), "invalid wallet name");
}

#[test]
fn password_file_is_read() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let password_file = dir.join("pw.txt");
    std::fs::write(&password_file, "from-file\n").unwrap();
    let path = password_file.to_str().unwrap();
    let out = obol_in(
        dir,
        &["wallet", "import", "--password-file", path],
        &[],
        Some(K0),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&format!("Imported wallet default: {A0}")));
}
