//! Keystores on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use obol_wallet::{PasswordSource, SignerSource, WalletError, WalletStore, read_password};

const K0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const A0: &str = obol_testkit::accounts::DEV_ADDRESSES[0];

#[test]
fn keystore_round_trip_and_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalletStore::at(dir.path().join("wallets"));
    let created = store.create("alice", "correct horse").unwrap();
    assert_eq!(created.name, "alice");
    let signer = store.load("alice", "correct horse").unwrap();
    assert_eq!(signer.address().to_checksum(None), created.address);
    assert_eq!(store.address("alice").unwrap(), signer.address());

    let err = store.load("alice", "wrong").unwrap_err();
    assert!(matches!(err, WalletError::WrongPassword { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "wrong password for wallet \"alice\" (the keystore MAC does not match)"
    );

    // The file is a standard keystore: version 3, scrypt, the geth address field; no plain key.
    let text = std::fs::read_to_string(&created.path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["version"], 3);
    assert_eq!(json["crypto"]["kdf"], "scrypt");
    assert_eq!(
        json["crypto"]["kdfparams"],
        serde_json::json!({"dklen": 32, "n": 262_144, "p": 1, "r": 8, "salt": json["crypto"]["kdfparams"]["salt"]}),
        "geth's standard cost"
    );
    assert_eq!(json["crypto"]["cipher"], "aes-128-ctr");
    let address = json["address"].as_str().unwrap();
    assert_eq!(
        address.trim_start_matches("0x"),
        created.address[2..].to_lowercase()
    );
    #[cfg(unix)]
    {
        use obol_testkit::fs::mode;
        assert_eq!(mode(&created.path), 0o600);
        assert_eq!(mode(&dir.path().join("wallets")), 0o700);
    }
}

/// A keystore written at the old cost (2^13, as eth-keystore writes) still opens.
#[test]
fn older_keystores_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let wallets = dir.path().join("wallets");
    std::fs::create_dir_all(&wallets).unwrap();
    let key = hex_key(K0);
    eth_keystore::encrypt_key(
        &wallets,
        &mut rand::thread_rng(),
        key,
        "pw",
        Some("old.json"),
    )
    .unwrap();
    // eth-keystore leaves out geth's address field; keystores written before had it.
    let path = wallets.join("old.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["crypto"]["kdfparams"]["n"], 8192);
    json["address"] = A0[2..].to_lowercase().into();
    std::fs::write(&path, json.to_string()).unwrap();
    let store = WalletStore::at(&wallets);
    let signer = store.load("old", "pw").unwrap();
    assert_eq!(signer.address().to_checksum(None), A0);
    assert!(matches!(
        store.load("old", "nope").unwrap_err(),
        WalletError::WrongPassword { .. }
    ));
}

fn hex_key(hex: &str) -> Vec<u8> {
    (2..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn import_list_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalletStore::at(dir.path());
    assert!(store.list().unwrap().is_empty());
    let imported = store.import("seller", K0, "pw").unwrap();
    assert_eq!(imported.address, A0);
    store.create("buyer", "pw").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a wallet").unwrap();
    std::fs::write(dir.path().join("broken.json"), "{}").unwrap();
    let names: Vec<String> = store.list().unwrap().into_iter().map(|w| w.name).collect();
    assert_eq!(names, ["buyer", "seller"], "sorted, non-keystores skipped");

    let err = store.import("seller", K0, "pw").unwrap_err();
    assert!(matches!(err, WalletError::Exists { .. }), "{err}");
    assert!(matches!(
        store.create("../evil", "pw"),
        Err(WalletError::InvalidName(_))
    ));
    assert!(matches!(
        store.create("ok", ""),
        Err(WalletError::EmptyPassword)
    ));
    let err = store.import("x", "0x1234", "pw").unwrap_err().to_string();
    assert!(err.starts_with("invalid private key"), "{err}");
    let err = store.load("nobody", "pw").unwrap_err().to_string();
    assert!(err.contains("obol wallet new --name nobody"), "{err}");
    let err = store.load("broken", "pw").unwrap_err().to_string();
    assert!(err.contains("is not a valid keystore"), "{err}");
}

#[test]
fn signer_sources() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalletStore::at(dir.path());
    // The env key wins when set, and no password is asked for.
    let source = SignerSource::resolve(true, Some("ignored"));
    assert_eq!(source, SignerSource::EnvKey);
    let signer = source
        .load(&store, Some(K0), || {
            panic!("no password needed for an env key")
        })
        .unwrap();
    assert_eq!(signer.address().to_checksum(None), A0);
    let err = source
        .load(&store, Some("0xnope"), || Ok(String::new()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("$OBOL_PRIVATE_KEY") && !err.contains("nope"),
        "{err}"
    );

    store.import("default", K0, "pw").unwrap();
    let source = SignerSource::resolve(false, None);
    assert_eq!(source, SignerSource::Keystore("default".into()));
    let signer = source.load(&store, None, || Ok("pw".into())).unwrap();
    assert_eq!(signer.address().to_checksum(None), A0);

    // A keystore file anywhere, and a raw key file (surrounding whitespace ignored).
    let keystore = SignerSource::KeystoreFile(store.path("default"));
    let signer = keystore.load(&store, None, || Ok("pw".into())).unwrap();
    assert_eq!(signer.address().to_checksum(None), A0);
    let wrong = keystore
        .load(&store, None, || Ok("nope".into()))
        .unwrap_err();
    assert!(
        matches!(wrong, WalletError::WrongPassword { .. }),
        "{wrong}"
    );
    let key_file = dir.path().join("key.hex");
    std::fs::write(&key_file, format!("  {K0}\n")).unwrap();
    let signer = SignerSource::KeyFile(key_file.clone())
        .load(&store, None, || panic!("no password for a key file"))
        .unwrap();
    assert_eq!(signer.address().to_checksum(None), A0);
    std::fs::write(&key_file, "0xsecretbutbroken").unwrap();
    let err = SignerSource::KeyFile(key_file)
        .load(&store, None, || Ok(String::new()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("key.hex") && !err.contains("secret"), "{err}");
    let missing = SignerSource::KeyFile(dir.path().join("absent"))
        .load(&store, None, || Ok(String::new()))
        .unwrap_err()
        .to_string();
    assert!(missing.starts_with("cannot read the key file"), "{missing}");
}

#[test]
fn password_sources() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-file\nsecond line ignored\n").unwrap();
    let source = PasswordSource {
        file: Some(file),
        env: Some("from-env".into()),
        prompt: false,
    };
    assert_eq!(read_password(&source, false).unwrap(), "from-file");
    let source = PasswordSource {
        file: None,
        env: Some("from-env".into()),
        prompt: false,
    };
    assert_eq!(read_password(&source, true).unwrap(), "from-env");
    let err = read_password(&PasswordSource::default(), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--password-file") && err.contains("OBOL_WALLET_PASSWORD"),
        "{err}"
    );
}
