//! The transaction [`Sender`] against anvil: locally assigned nonces survive another process
//! using the same key.

use alloy::network::{EthereumWallet, TransactionBuilder as _};
use alloy::primitives::{U256, address};
use alloy::providers::{Provider as _, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use obol_chain::{ChainClient, Sender};
use obol_devnet::{Anvil, DEV_KEYS};
use obol_x402::LocalSigner;
use std::time::Duration;

use crate::chain;

/// A transfer of `wei` to dev account 1.
fn transfer(wei: u64) -> TransactionRequest {
    TransactionRequest::default()
        .with_to(address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"))
        .with_value(U256::from(wei))
}

#[tokio::test]
async fn a_nonce_used_behind_the_senders_back_is_refreshed() {
    let anvil = Anvil::spawn().await.unwrap();
    let client =
        ChainClient::connect("devnet", &chain(84532, &[(&anvil.endpoint(), true)])).unwrap();
    let signer = LocalSigner::from_private_key_hex(DEV_KEYS[0]).unwrap();
    let sender = Sender::new(&client, &signer);
    let mined = |hash| {
        let sender = &sender;
        async move {
            sender
                .wait_receipt(hash, Duration::from_secs(10))
                .await
                .unwrap()
        }
    };

    // The sender now counts nonce 1 as next.
    let first = sender.send(transfer(1)).await.unwrap();
    assert_eq!(mined(first).await, Some(true));

    // Another process (the user's wallet, say) sends from the same key: nonce 1 is taken.
    let key: PrivateKeySigner = DEV_KEYS[0].parse().unwrap();
    let wallet = ProviderBuilder::new()
        .wallet(EthereumWallet::from(key))
        .connect_client(client.rpc_client());
    let theirs = wallet
        .send_transaction(transfer(2))
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(theirs.status());

    // The next send meets "nonce too low", asks the node, and goes through with nonce 2.
    let second = sender.send(transfer(3)).await.unwrap();
    assert_eq!(mined(second).await, Some(true));
    let tx = client
        .provider()
        .get_transaction_by_hash(second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alloy::consensus::Transaction::nonce(&tx), 2);
    // And the counter moves on from there.
    let third = sender.send(transfer(4)).await.unwrap();
    assert_eq!(mined(third).await, Some(true));
    assert_eq!(
        client
            .provider()
            .get_transaction_count(signer.address())
            .await
            .unwrap(),
        4
    );
}

#[tokio::test]
async fn a_refused_transaction_is_an_escaped_rejection() {
    let anvil = Anvil::spawn().await.unwrap();
    let client =
        ChainClient::connect("devnet", &chain(84532, &[(&anvil.endpoint(), true)])).unwrap();
    // A key with no ether: the node refuses, and the sender reports it (once, no retry).
    let poor = LocalSigner::from_private_key_hex(
        "0x0000000000000000000000000000000000000000000000000000000000000042",
    )
    .unwrap();
    let err = Sender::new(&client, &poor)
        .send(transfer(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, obol_chain::SendError::Rejected { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'), "{err}");
}
