//! The transaction [`Sender`] against anvil: locally assigned nonces survive another process
//! using the same key, and a transaction that reaches the node twice (failover, retries) is
//! sent once.

use alloy::eips::Encodable2718 as _;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder as _, TransactionBuilder as _};
use alloy::primitives::{Address, B256, U256, address};
use alloy::providers::{Provider as _, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use obol_chain::{ChainClient, Sender};
use obol_devnet::tap::{Fault, RpcTap};
use obol_devnet::{Anvil, DEV_KEYS};
use obol_x402::LocalSigner;
use std::time::Duration;

use crate::chain;

/// Dev account 1: where [`transfer`] sends.
pub(crate) const RECIPIENT: Address = address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");

/// A transfer of `wei` to dev account 1.
pub(crate) fn transfer(wei: u64) -> TransactionRequest {
    TransactionRequest::default()
        .with_to(RECIPIENT)
        .with_value(U256::from(wei))
}

/// A client of the node at `endpoint` (writes allowed) and a sender of dev account 0 on it.
pub(crate) fn dev_sender(endpoint: &str) -> (ChainClient, LocalSigner, Sender) {
    let client = ChainClient::connect("devnet", &chain(84532, &[(endpoint, true)])).unwrap();
    let signer = LocalSigner::from_private_key_hex(DEV_KEYS[0]).unwrap();
    let sender = Sender::new(&client, &signer);
    (client, signer, sender)
}

/// The nonce of transaction `hash`.
pub(crate) async fn tx_nonce(client: &ChainClient, hash: B256) -> u64 {
    let tx = client
        .provider()
        .get_transaction_by_hash(hash)
        .await
        .unwrap()
        .unwrap();
    alloy::consensus::Transaction::nonce(&tx)
}

#[tokio::test]
async fn a_nonce_used_behind_the_senders_back_is_refreshed() {
    let anvil = Anvil::spawn().await.unwrap();
    let (client, signer, sender) = dev_sender(&anvil.endpoint());

    // The sender now counts nonce 1 as next.
    let first = sender.send(transfer(1)).await.unwrap();
    assert_eq!(receipt(&sender, first).await, Some(true));

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
    assert_eq!(receipt(&sender, second).await, Some(true));
    assert_eq!(tx_nonce(&client, second).await, 2);
    // And the counter moves on from there.
    let third = sender.send(transfer(4)).await.unwrap();
    assert_eq!(receipt(&sender, third).await, Some(true));
    assert_eq!(
        client
            .provider()
            .get_transaction_count(signer.address())
            .await
            .unwrap(),
        4
    );
}

/// A transfer with its gas and fees fixed, so the [`Sender`] fills nothing but the chain id and
/// signs exactly what [`signed_copy`] signs.
fn fixed_transfer(wei: u64) -> TransactionRequest {
    transfer(wei)
        .with_gas_limit(21_000)
        .with_max_fee_per_gas(10_000_000_000)
        .with_max_priority_fee_per_gas(1_000_000_000)
}

/// `tx` from dev account 0 with `nonce`, signed outside the sender: the bytes the sender will
/// produce for the same request and nonce (signatures are deterministic).
async fn signed_copy(tx: TransactionRequest, nonce: u64) -> (B256, Vec<u8>) {
    let key: PrivateKeySigner = DEV_KEYS[0].parse().unwrap();
    let envelope = tx
        .with_from(key.address())
        .with_nonce(nonce)
        .with_chain_id(84532)
        .build(&EthereumWallet::from(key))
        .await
        .unwrap();
    (*envelope.tx_hash(), envelope.encoded_2718())
}

/// A node call whose answer does not matter (`evm_mine`, `evm_setAutomine`).
pub(crate) async fn node<P: serde::Serialize + Clone + Send + Sync + Unpin + std::fmt::Debug>(
    client: &ChainClient,
    method: &'static str,
    params: P,
) {
    let _: serde_json::Value = client
        .provider()
        .raw_request(method.into(), params)
        .await
        .unwrap();
}

pub(crate) async fn pending_nonce(client: &ChainClient, address: Address) -> u64 {
    client
        .provider()
        .get_transaction_count(address)
        .pending()
        .await
        .unwrap()
}

/// The receipt's status, waited for up to 10 s.
async fn receipt(sender: &Sender, hash: B256) -> Option<bool> {
    sender
        .wait_receipt(hash, Duration::from_secs(10))
        .await
        .1
        .unwrap()
}

/// A sender of dev account 0 on `anvil` through a recording tap.
pub(crate) async fn tapped(
    anvil: &Anvil,
    fault: Option<Fault>,
) -> (RpcTap, ChainClient, LocalSigner, Sender) {
    let tap = RpcTap::start(anvil.endpoint(), fault).await.unwrap();
    let (client, signer, sender) = dev_sender(tap.url());
    (tap, client, signer, sender)
}

fn sorted(mut methods: Vec<String>) -> Vec<String> {
    methods.sort();
    methods
}

pub(crate) async fn nonce_of(client: &ChainClient, address: Address) -> u64 {
    client
        .provider()
        .get_transaction_count(address)
        .await
        .unwrap()
}

/// The sender's bytes already reached the node (an endpoint that timed out after forwarding
/// them, a retried request): sending them again is refused with "nonce too low" (mined) or
/// "already known" (pending). Either way the node knows the hash, so the send succeeded and
/// nothing is signed again: the nonce advances by exactly one per transaction.
#[tokio::test]
async fn a_transaction_the_node_already_has_is_not_sent_again() {
    let anvil = Anvil::spawn().await.unwrap();
    let (client, signer, sender) = dev_sender(&anvil.endpoint());
    let first = sender.send(transfer(1)).await.unwrap();
    assert_eq!(receipt(&sender, first).await, Some(true));
    assert_eq!(nonce_of(&client, signer.address()).await, 1);

    // Mined: the copy with nonce 1 is in a block before the sender sends its own.
    let (hash, raw) = signed_copy(fixed_transfer(2), 1).await;
    let accepted = client.provider().send_raw_transaction(&raw).await.unwrap();
    assert_eq!(*accepted.tx_hash(), hash);
    assert_eq!(receipt(&sender, hash).await, Some(true));
    assert_eq!(nonce_of(&client, signer.address()).await, 2);
    assert_eq!(sender.send(fixed_transfer(2)).await.unwrap(), hash);
    assert_eq!(
        nonce_of(&client, signer.address()).await,
        2,
        "no second transaction"
    );

    // Pending: blocks are not mined meanwhile, the node holds the copy in its pool.
    node(&client, "evm_setAutomine", (false,)).await;
    let (hash, raw) = signed_copy(fixed_transfer(3), 2).await;
    let accepted = client.provider().send_raw_transaction(&raw).await.unwrap();
    assert_eq!(*accepted.tx_hash(), hash);
    assert_eq!(sender.send(fixed_transfer(3)).await.unwrap(), hash);
    let pending = pending_nonce(&client, signer.address()).await;
    assert_eq!(pending, 3, "one pending transaction, not two");
    node(&client, "evm_mine", ()).await;
    assert_eq!(receipt(&sender, hash).await, Some(true));
    assert_eq!(nonce_of(&client, signer.address()).await, 3);

    // The counter moved on by one each time.
    node(&client, "evm_setAutomine", (true,)).await;
    let next = sender.send(transfer(4)).await.unwrap();
    assert_eq!(tx_nonce(&client, next).await, 3);
}

/// The first endpoint forwards the transaction (mined) and loses the answer: the endpoint set
/// sends the same bytes to the second endpoint, which answers "nonce too low". The sender finds
/// its transaction by hash and reports it sent: one transaction, not a second signed with the
/// next nonce.
#[tokio::test]
async fn a_failover_after_a_lost_answer_sends_once() {
    let anvil = Anvil::spawn().await.unwrap();
    let tap = RpcTap::start(anvil.endpoint(), Some(Fault::LoseResponse))
        .await
        .unwrap();
    let client = ChainClient::connect(
        "devnet",
        &chain(84532, &[(tap.url(), true), (&anvil.endpoint(), true)]),
    )
    .unwrap();
    let signer = LocalSigner::from_private_key_hex(DEV_KEYS[0]).unwrap();
    let sender = Sender::new(&client, &signer);

    let hash = sender.send(transfer(1)).await.unwrap();
    assert_eq!(receipt(&sender, hash).await, Some(true));
    assert_eq!(
        nonce_of(&client, signer.address()).await,
        1,
        "exactly one transaction"
    );
    assert_eq!(tap.sends(), 1, "the proxy forwarded one send");
    // And the next one takes the next nonce.
    let next = sender.send(transfer(2)).await.unwrap();
    assert_eq!(receipt(&sender, next).await, Some(true));
    assert_eq!(nonce_of(&client, signer.address()).await, 2);
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

/// On a loopback node the send that waits is one `eth_sendRawTransactionSync`, whose answer is
/// the receipt: no receipt poll. Gas and fees are estimated before it.
#[tokio::test]
async fn a_waited_send_on_a_devnet_is_one_sync_call() {
    let anvil = Anvil::spawn().await.unwrap();
    let (tap, client, signer, sender) = tapped(&anvil, None).await;

    // The first send asks for the nonce once; later ones count.
    let mut hashes = Vec::new();
    for (wei, nonce_read) in [(1, true), (2, false)] {
        let (hash, mined) = sender
            .send_and_wait(transfer(wei), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(mined, Ok(Some(true)));
        let mut expected = vec![
            "eth_estimateGas",
            "eth_feeHistory",
            "eth_sendRawTransactionSync",
        ];
        if nonce_read {
            expected.insert(2, "eth_getTransactionCount");
        }
        assert_eq!(sorted(tap.take_methods()), expected);
        hashes.push(hash);
    }
    assert_ne!(hashes[0], hashes[1]);
    assert_eq!(nonce_of(&client, signer.address()).await, 2);
}

/// A node without `eth_sendRawTransactionSync`: the same bytes go through
/// `eth_sendRawTransaction`, the receipt is polled, and the sync method is never tried again.
#[tokio::test]
async fn a_node_without_the_sync_method_gets_a_plain_send_and_a_poll() {
    let anvil = Anvil::spawn().await.unwrap();
    let (tap, client, signer, sender) = tapped(
        &anvil,
        Some(Fault::Unsupported("eth_sendRawTransactionSync")),
    )
    .await;

    for (wei, first) in [(1, true), (2, false)] {
        let (hash, mined) = sender
            .send_and_wait(transfer(wei), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(mined, Ok(Some(true)));
        let methods = tap.take_methods();
        let count = |name: &str| methods.iter().filter(|m| *m == name).count();
        assert_eq!(count("eth_sendRawTransactionSync"), usize::from(first));
        assert_eq!(count("eth_sendRawTransaction"), 1, "{methods:?}");
        assert!(count("eth_getTransactionReceipt") >= 1, "{methods:?}");
        assert_eq!(tx_nonce(&client, hash).await, wei - 1);
    }
    assert_eq!(nonce_of(&client, signer.address()).await, 2);
}

/// With nothing mined, the sync call is cut at the deadline: the transaction is known to the
/// node, so the answer is "not mined yet" with its hash, and nothing is sent twice.
#[tokio::test]
async fn a_sync_send_that_is_not_mined_in_time_is_pending() {
    let anvil = Anvil::spawn().await.unwrap();
    let (client, signer, sender) = dev_sender(&anvil.endpoint());
    node(&client, "evm_setAutomine", (false,)).await;
    let (hash, mined) = sender
        .send_and_wait(transfer(1), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(mined, Ok(None));
    let pending = pending_nonce(&client, signer.address()).await;
    assert_eq!(pending, 1, "one transaction in the pool");
    node(&client, "evm_mine", ()).await;
    assert_eq!(receipt(&sender, hash).await, Some(true));
}
