//! Chain access against a real anvil on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sender;
mod stuck;

use alloy::network::{EthereumWallet, TransactionBuilder as _};
use alloy::primitives::{U256, address};
use alloy::providers::{Provider as _, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use obol_chain::{ChainClient, ChainError};
use obol_config::{ChainEndpoints, Endpoint};
use obol_devnet::{Anvil, DEV_KEYS};

/// A loopback URL nothing listens on (port 1 is privileged and unused here).
const DEAD: &str = "http://127.0.0.1:1/v2/SECRETSECRETSECRET";

pub(crate) fn chain(chain_id: u64, endpoints: &[(&str, bool)]) -> ChainEndpoints {
    ChainEndpoints {
        chain_id,
        endpoints: endpoints
            .iter()
            .map(|(url, allow_writes)| Endpoint {
                url: (*url).to_owned(),
                allow_writes: *allow_writes,
            })
            .collect(),
    }
}

#[tokio::test]
async fn fails_over_from_a_dead_endpoint_to_a_live_one() {
    let anvil = Anvil::spawn().await.unwrap();
    let config = chain(84532, &[(DEAD, false), (&anvil.endpoint(), false)]);
    let client = ChainClient::connect("devnet", &config).unwrap();
    client.check_chain_id().await.unwrap();
    assert_eq!(client.head().await.unwrap(), 0);
    let rich = client
        .native_balance(address!("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"))
        .await
        .unwrap();
    assert_eq!(
        rich,
        U256::from(10_000u64) * U256::from(10u64).pow(U256::from(18))
    );

    let probes = ChainClient::probe_endpoints("devnet", &config).await;
    assert_eq!(probes.len(), 2);
    assert_eq!(probes[0].url, "http://127.0.0.1:1/v2/***");
    assert!(probes[0].error.is_some() && probes[0].chain_id.is_none());
    assert!(probes[1].chain_id_ok && probes[1].head == Some(0) && probes[1].error.is_none());
    assert!(probes[1].latency_ms.is_some());
}

#[tokio::test]
async fn all_endpoints_dead_is_a_redacted_error() {
    let config = chain(84532, &[(DEAD, false), ("http://127.0.0.1:2", false)]);
    let client = ChainClient::connect("base-sepolia", &config).unwrap();
    let err = client.head().await.unwrap_err().to_string();
    assert!(
        err.contains("every RPC endpoint of base-sepolia failed"),
        "{err}"
    );
    assert!(err.contains("http://127.0.0.1:1/v2/***"), "{err}");
    assert!(err.contains("http://127.0.0.1:2"), "{err}");
    assert!(!err.contains("SECRET"), "secret leaked: {err}");
}

#[tokio::test]
async fn wrong_chain_id_is_named() {
    let anvil = Anvil::spawn().await.unwrap();
    let client =
        ChainClient::connect("ethereum", &chain(1, &[(&anvil.endpoint(), false)])).unwrap();
    let err = client.check_chain_id().await.unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::WrongChain {
                expected: 1,
                actual: 84532,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn writes_only_go_through_write_enabled_endpoints() {
    let anvil = Anvil::spawn().await.unwrap();
    let signer: PrivateKeySigner = DEV_KEYS[0].parse().unwrap();
    let to = address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
    let tx = TransactionRequest::default()
        .with_to(to)
        .with_value(U256::from(1));

    let read_only =
        ChainClient::connect("devnet", &chain(84532, &[(&anvil.endpoint(), false)])).unwrap();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer.clone()))
        .connect_client(read_only.rpc_client());
    let err = provider
        .send_transaction(tx.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("eth_sendRawTransaction refused"), "{err}");
    assert!(err.contains("--allow-writes"), "{err}");
    assert_eq!(read_only.head().await.unwrap(), 0, "nothing was mined");

    // A read-only endpoint first, a write-enabled one second: reads may use either, the write
    // goes to the second.
    let config = chain(84532, &[(DEAD, false), (&anvil.endpoint(), true)]);
    let writable = ChainClient::connect("devnet", &config).unwrap();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_client(writable.rpc_client());
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    assert_eq!(writable.head().await.unwrap(), 1);
}

#[tokio::test]
async fn dev_keys_are_the_funded_anvil_accounts() {
    let anvil = Anvil::spawn().await.unwrap();
    let client =
        ChainClient::connect("devnet", &chain(84532, &[(&anvil.endpoint(), false)])).unwrap();
    for key in DEV_KEYS {
        let address = key.parse::<PrivateKeySigner>().unwrap().address();
        assert!(
            client.native_balance(address).await.unwrap() > U256::ZERO,
            "{address}"
        );
    }
}

#[test]
fn no_endpoint_and_bad_urls_are_clear_errors() {
    let err = ChainClient::connect("base", &chain(8453, &[]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "no RPC endpoint configured for base; add one with `obol network add base --endpoint URL`"
    );
    let err = ChainClient::connect(
        "base",
        &chain(8453, &[("ftp://x/SECRETSECRETSECRET", false)]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("use http or https") && !err.contains("SECRET"),
        "{err}"
    );
}
