//! Transactions that are not mined: the [`Sender`] replaces the head of its queue with higher
//! fees, or sends it again when the node dropped it, and the waiter gets the version mined.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use obol_chain::{ChainClient, MAX_REPLACEMENTS, Sender};
use obol_devnet::Anvil;
use obol_x402::LocalSigner;

use crate::sender::{
    RECIPIENT, dev_sender, node, nonce_of, pending_nonce, tapped, transfer, tx_nonce,
};

/// A sender of dev account 0 on a fresh anvil whose blocks are mined only on request, that
/// replaces a transaction 300 ms after its send.
async fn manual_chain() -> (Anvil, ChainClient, LocalSigner, Sender) {
    let anvil = Anvil::spawn().await.unwrap();
    let (client, signer, sender) = dev_sender(&anvil.endpoint());
    node(&client, "evm_setAutomine", (false,)).await;
    let sender = sender.with_replace_after(Duration::from_millis(300));
    (anvil, client, signer, sender)
}

async fn balance(client: &ChainClient, address: Address) -> U256 {
    client.provider().get_balance(address).await.unwrap()
}

/// Fees rise past what a pending transaction pays: it cannot be mined (anvil drops it from its
/// pool). The waiter's sender signs it again (same nonce, fees at least the node's estimate);
/// the replacement is mined and is the answer, and the transfer happens once.
#[tokio::test]
async fn an_underpriced_transaction_is_replaced_and_the_replacement_answers() {
    let (_anvil, client, signer, sender) = manual_chain().await;
    let before = balance(&client, RECIPIENT).await;
    let first = sender.send(transfer(1)).await.unwrap();
    // The next block's base fee is far above the transaction's fee cap: mined without it.
    node(
        &client,
        "anvil_setNextBlockBaseFeePerGas",
        ("0x174876e800",),
    )
    .await; // 100 gwei
    node(&client, "evm_mine", ()).await;
    assert_eq!(nonce_of(&client, signer.address()).await, 0, "not mined");
    node(&client, "evm_setAutomine", (true,)).await;

    let (mined, status) = sender.wait_receipt(first, Duration::from_secs(10)).await;
    assert_eq!(status, Ok(Some(true)));
    assert_ne!(mined, first, "the replacement was mined");
    assert!(!sender.tracks(mined), "forgotten once mined");
    assert_eq!(tx_nonce(&client, mined).await, 0);
    assert!(
        client
            .provider()
            .get_transaction_receipt(first)
            .await
            .unwrap()
            .is_none(),
        "the stuck version is gone"
    );
    assert_eq!(nonce_of(&client, signer.address()).await, 1);
    assert_eq!(balance(&client, RECIPIENT).await, before + U256::from(1));
}

/// The node lost the head of the key's queue (evicted, restarted): every later transaction
/// waits for a nonce nobody will send. Waiting for one of them sends the lost head again, and
/// both are mined, each once.
#[tokio::test]
async fn a_lost_head_of_the_queue_is_sent_again() {
    let (_anvil, client, signer, sender) = manual_chain().await;
    let before = balance(&client, RECIPIENT).await;
    let head = sender.send(transfer(1)).await.unwrap();
    let behind = sender.send(transfer(2)).await.unwrap();
    node(&client, "anvil_dropTransaction", (head,)).await;
    node(&client, "evm_setAutomine", (true,)).await;
    node(&client, "evm_mine", ()).await;
    assert_eq!(
        nonce_of(&client, signer.address()).await,
        0,
        "a gap: nothing mined"
    );

    let (mined, status) = sender.wait_receipt(behind, Duration::from_secs(10)).await;
    assert_eq!(status, Ok(Some(true)));
    assert_eq!(
        tx_nonce(&client, mined).await,
        1,
        "a version of the one waited for"
    );
    assert_eq!(nonce_of(&client, signer.address()).await, 2);
    assert_eq!(balance(&client, RECIPIENT).await, before + U256::from(3));
}

/// A transaction is replaced at most [`MAX_REPLACEMENTS`] times: a chain that never mines it
/// leaves the waiter with "pending" and the latest version, not an endless fee auction.
#[tokio::test]
async fn replacements_are_bounded_and_a_waiter_times_out_as_pending() {
    let anvil = Anvil::spawn().await.unwrap();
    let (tap, client, signer, sender) = tapped(&anvil, None).await;
    node(&client, "evm_setAutomine", (false,)).await;
    let sender = sender.with_replace_after(Duration::from_millis(20));
    let first = sender.send(transfer(1)).await.unwrap();
    let (latest, status) = sender.wait_receipt(first, Duration::from_secs(2)).await;
    assert_eq!(status, Ok(None), "nothing is mined without blocks");
    assert_ne!(latest, first, "replaced while waiting");
    assert!(sender.tracks(first) && sender.tracks(latest));
    assert_eq!(
        tap.sends(),
        1 + MAX_REPLACEMENTS,
        "the first send and its replacements"
    );
    assert_eq!(pending_nonce(&client, signer.address()).await, 1);
    // Once a block comes, the version in the pool (the latest) is mined and answers.
    node(&client, "evm_mine", ()).await;
    let (mined, status) = sender.wait_receipt(first, Duration::from_secs(5)).await;
    assert_eq!((mined, status), (latest, Ok(Some(true))));
    assert!(!sender.tracks(first));
}
