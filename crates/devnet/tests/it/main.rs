//! Our devnet contracts on a real anvil (no Foundry): what the x402 facilitators rely on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    missing_debug_implementations
)]

mod upto;

/// The test kit names the dev accounts by address; they are the addresses of these keys.
#[test]
fn the_test_kits_addresses_are_the_dev_keys() {
    for (key, address) in obol_devnet::DEV_KEYS
        .iter()
        .zip(obol_testkit::accounts::DEV_ADDRESSES)
    {
        let signer = obol_x402::LocalSigner::from_private_key_hex(key).unwrap();
        assert_eq!(signer.address().to_checksum(None), address);
    }
}
