//! Registration without duplicates, URI drift, metadata, agent wallet and control checks.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use obol_chain::ChainClient;
use obol_config::{ChainEndpoints, Endpoint};
use obol_erc8004::contract::{IIdentityRegistry, sign_agent_wallet};
use obol_erc8004::{
    ClientOptions, Ensured, Erc8004Error, IdentityClient, MetadataEntry, Registries,
    X402_METADATA_VALUE,
};

use crate::{Fixture, client_on};
use obol_devnet::tap::{Fault, RpcTap};

const URI: &str = "https://seller.example/.well-known/agent-registration.json";

#[tokio::test]
async fn register_parses_the_event_and_a_rerun_mints_nothing() {
    let fx = Fixture::start().await;
    let client = fx.client(1);
    let owner = fx.signer(1).address();

    let first = client.register(URI, &[], None).await.unwrap();
    assert_eq!(
        first.agent_id,
        U256::ZERO,
        "ids start at 0 on a fresh registry"
    );
    assert_eq!(first.owner, owner);
    assert_eq!(first.uri, URI);
    assert!(!first.recovered);
    let receipt = fx
        .chain
        .provider()
        .get_transaction_receipt(first.tx_hash)
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    assert_eq!(client.owner_of(first.agent_id).await.unwrap(), owner);
    assert_eq!(client.agent_uri(first.agent_id).await.unwrap(), URI);
    // The registry makes the registering address the agent wallet.
    assert_eq!(
        client.agent_wallet(first.agent_id).await.unwrap(),
        Some(owner)
    );

    // Reruns (with surrounding whitespace, through ensure_registered too) find it again.
    let again = client
        .register(&format!(" {URI}\n"), &[], None)
        .await
        .unwrap();
    assert_eq!(again.agent_id, first.agent_id);
    assert_eq!(again.tx_hash, first.tx_hash);
    assert!(again.recovered);
    let ensured = client.ensure_registered(None, URI, Some(0)).await.unwrap();
    assert_eq!(ensured.agent_id(), first.agent_id);
    assert!(matches!(ensured, Ensured::Registered(ref r) if r.recovered));
    assert_eq!(fx.balance(owner).await, U256::from(1));
    assert_eq!(fx.mints().await, 1);

    // Another owner with the same URI is another agent.
    let other = fx.client(2).register(URI, &[], None).await.unwrap();
    assert_eq!(other.agent_id, U256::from(1));
    assert_eq!(fx.mints().await, 2);
}

#[tokio::test]
async fn register_with_metadata_entries() {
    let fx = Fixture::start().await;
    let client = fx.client(1);
    let entries = [MetadataEntry {
        metadataKey: "x402".into(),
        metadataValue: X402_METADATA_VALUE.to_vec().into(),
    }];
    let registration = client.register(URI, &entries, None).await.unwrap();
    let value = client
        .get_metadata(registration.agent_id, "x402")
        .await
        .unwrap();
    assert_eq!(value.as_ref(), X402_METADATA_VALUE);
    // Already in place: syncing sends nothing.
    assert!(
        !client
            .sync_x402_metadata(registration.agent_id)
            .await
            .unwrap()
    );

    let reserved = [MetadataEntry {
        metadataKey: "agentWallet".into(),
        metadataValue: vec![1].into(),
    }];
    let err = client.register("other", &reserved, None).await.unwrap_err();
    assert!(matches!(err, Erc8004Error::Refused { .. }), "{err}");
    assert_eq!(fx.mints().await, 1);
}

#[tokio::test]
async fn a_registration_mined_before_a_crash_is_recovered() {
    let fx = Fixture::start().await;
    let owner = fx.signer(3).address();
    let from = fx.chain.provider().get_block_number().await.unwrap();
    // A process sends the registration and dies before reading the receipt.
    let sender = fx.raw_sender(3);
    let registry = IIdentityRegistry::new(obol_devnet::IDENTITY_REGISTRY, &sender);
    let pending = registry.register_1(URI.to_owned()).send().await.unwrap();
    let sent_hash = *pending.tx_hash();
    drop(pending);

    // The rerun finds it: same agent, same transaction, nothing minted.
    let recovered = fx.client(3).register(URI, &[], Some(from)).await.unwrap();
    assert!(recovered.recovered);
    assert_eq!(recovered.tx_hash, sent_hash);
    assert_eq!(recovered.owner, owner);
    assert_eq!(
        fx.registry()
            .ownerOf(recovered.agent_id)
            .call()
            .await
            .unwrap(),
        owner
    );
    assert_eq!(fx.balance(owner).await, U256::from(1));
    assert_eq!(fx.mints().await, 1);
}

/// A registration older than the searched range is not seen, so the signer's balance decides:
/// holding more agents than the range shows it registering refuses instead of minting; a search
/// from block 0 reads everything and then recovers (same URI) or mints (another URI).
#[tokio::test]
async fn an_agent_older_than_the_search_is_never_duplicated() {
    let fx = Fixture::start().await;
    let client = fx.client(6);
    let owner = fx.signer(6).address();
    let first = client.register(URI, &[], None).await.unwrap();
    let after = fx.chain.provider().get_block_number().await.unwrap() + 1;

    for uri in [
        URI,
        "https://other.example/.well-known/agent-registration.json",
    ] {
        let err = client.register(uri, &[], Some(after)).await.unwrap_err();
        assert!(
            matches!(
                err,
                Erc8004Error::UnsearchedAgents { held, seen: 0, from_block, .. }
                    if held == U256::from(1) && from_block == after
            ),
            "{err}"
        );
        assert!(!err.is_transient());
    }
    assert_eq!(fx.mints().await, 1);
    assert_eq!(
        client.balance_of(owner).await.unwrap(),
        U256::from(1),
        "balance_of reads the registry"
    );

    // The whole chain: the same URI is recovered…
    let recovered = client.register(URI, &[], Some(0)).await.unwrap();
    assert!(recovered.recovered);
    assert_eq!(recovered.agent_id, first.agent_id);
    // …another URI is a deliberate second agent.
    let second = client
        .register(
            "https://other.example/.well-known/agent-registration.json",
            &[],
            Some(0),
        )
        .await
        .unwrap();
    assert!(!second.recovered);
    assert_eq!(fx.mints().await, 2);
    // A range that shows both registrations lets a third URI through as well.
    let from = first.block_number.unwrap();
    let third = client
        .register(
            "https://third.example/.well-known/agent-registration.json",
            &[],
            Some(from),
        )
        .await
        .unwrap();
    assert!(!third.recovered);
    assert_eq!(fx.balance(owner).await, U256::from(3));
}

/// A signer that already holds an unrelated agent (an older one, or one received by transfer)
/// is refused by default; an operator who knows none of them is this stack mints anyway
/// (`mint_despite_older_agents`, `obol sell register --new-agent`), and a rerun over the same
/// range recovers that registration instead of minting again.
#[tokio::test]
async fn the_balance_guard_can_be_skipped_for_a_new_agent() {
    let fx = Fixture::start().await;
    let owner = fx.signer(6).address();
    let unrelated = fx
        .client(6)
        .register("https://elsewhere.example/agent.json", &[], None)
        .await
        .unwrap();
    let after = fx.chain.provider().get_block_number().await.unwrap() + 1;

    let guarded = fx.client(6);
    let err = guarded.register(URI, &[], Some(after)).await.unwrap_err();
    assert!(
        matches!(err, Erc8004Error::UnsearchedAgents { seen: 0, .. }),
        "{err}"
    );
    assert_eq!(fx.mints().await, 1);

    let new_agent = fx.client(6).with_options(ClientOptions {
        mint_despite_older_agents: true,
        ..crate::fast()
    });
    let minted = new_agent.register(URI, &[], Some(after)).await.unwrap();
    assert!(!minted.recovered);
    assert_ne!(minted.agent_id, unrelated.agent_id);
    assert_eq!(fx.balance(owner).await, U256::from(2));
    assert_eq!(fx.mints().await, 2);

    // Still never twice: the same URI inside the searched range is recovered, with or without
    // the guard.
    for client in [&new_agent, &guarded] {
        let again = client.register(URI, &[], Some(after)).await.unwrap();
        assert!(again.recovered);
        assert_eq!(again.agent_id, minted.agent_id);
    }
    assert_eq!(fx.mints().await, 2);
}

/// The node got the transaction but the answer was lost: the retry looks first (and finds it
/// once mined), or resends the same bytes, which the node knows already. Either way: one agent.
#[tokio::test]
async fn a_lost_response_mints_once() {
    let fx = Fixture::start().await;
    let tap = RpcTap::start(fx.devnet.endpoint(), Some(Fault::LoseResponse))
        .await
        .unwrap();
    let chain = ChainClient::connect("devnet", &endpoints(tap.url(), true)).unwrap();
    let client = client_on(&chain, &fx.signer(4));

    let registration = client.register(URI, &[], None).await.unwrap();
    assert_eq!(registration.agent_id, U256::ZERO);
    let sends = tap.sends();
    assert!(
        (registration.recovered && sends == 1) || sends == 2,
        "recovered {} after {sends} sends",
        registration.recovered
    );
    assert_eq!(fx.balance(fx.signer(4).address()).await, U256::from(1));
    assert_eq!(fx.mints().await, 1);
}

/// The transaction never reached the node: the retry resends the same signed bytes.
#[tokio::test]
async fn a_dropped_send_is_retried_with_the_same_transaction() {
    let fx = Fixture::start().await;
    let tap = RpcTap::start(fx.devnet.endpoint(), Some(Fault::DropRequest))
        .await
        .unwrap();
    let chain = ChainClient::connect("devnet", &endpoints(tap.url(), true)).unwrap();
    let client = client_on(&chain, &fx.signer(5));

    let registration = client.register(URI, &[], None).await.unwrap();
    assert!(!registration.recovered);
    assert_eq!(tap.sends(), 2, "one retry");
    assert_eq!(fx.balance(fx.signer(5).address()).await, U256::from(1));
    assert_eq!(fx.mints().await, 1);
}

#[tokio::test]
async fn writes_need_a_signer_and_a_write_endpoint() {
    let fx = Fixture::start().await;
    let read_only =
        ChainClient::connect("devnet", &endpoints(&fx.devnet.endpoint(), false)).unwrap();
    let err = client_on(&read_only, &fx.signer(1))
        .register(URI, &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, Erc8004Error::NoWriteEndpoint { .. }), "{err}");
    assert!(err.to_string().contains("--allow-writes"), "{err}");

    let registry = Registries::builtin().require(84532).unwrap();
    let unsigned = IdentityClient::new(fx.chain.clone(), registry).unwrap();
    let err = unsigned.register(URI, &[], None).await.unwrap_err();
    assert!(matches!(err, Erc8004Error::NoSigner { .. }), "{err}");

    let elsewhere = Registries::builtin().require(8453).unwrap();
    assert!(matches!(
        IdentityClient::new(fx.chain.clone(), elsewhere),
        Err(Erc8004Error::WrongChain { .. })
    ));
    assert_eq!(fx.mints().await, 0);
}

#[tokio::test]
async fn uri_drift_is_fixed_with_set_agent_uri() {
    let fx = Fixture::start().await;
    let client = fx.client(1);
    let id = client.register(URI, &[], None).await.unwrap().agent_id;
    let moved = "https://new-tunnel.example/.well-known/agent-registration.json";

    let ensured = client
        .ensure_registered(Some(id), moved, None)
        .await
        .unwrap();
    let Ensured::UriUpdated {
        agent_id,
        previous_uri,
        ..
    } = ensured
    else {
        panic!("expected UriUpdated, got {ensured:?}");
    };
    assert_eq!((agent_id, previous_uri.as_str()), (id, URI));
    assert_eq!(client.agent_uri(id).await.unwrap(), moved);
    assert_eq!(
        client
            .ensure_registered(Some(id), moved, None)
            .await
            .unwrap(),
        Ensured::Unchanged { agent_id: id }
    );
    assert_eq!(fx.mints().await, 1);

    // Someone else may not move it; an unknown id is reported as such.
    let err = fx
        .client(2)
        .ensure_registered(Some(id), URI, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Erc8004Error::NotAuthorized { owner, .. } if owner == fx.signer(1).address()),
        "{err}"
    );
    let err = client
        .ensure_registered(Some(U256::from(99)), URI, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Erc8004Error::UnknownAgent { .. }), "{err}");
    assert_eq!(client.agent_uri(id).await.unwrap(), moved);
}

#[tokio::test]
async fn metadata_is_written_only_when_different() {
    let fx = Fixture::start().await;
    let client = fx.client(1);
    let id = client.register(URI, &[], None).await.unwrap().agent_id;

    assert!(client.sync_x402_metadata(id).await.unwrap());
    assert!(!client.sync_x402_metadata(id).await.unwrap());
    assert_eq!(fx.metadata_writes(id, "x402").await, 1);
    assert!(client.sync_metadata(id, "x402", b"{}").await.unwrap());
    assert_eq!(fx.metadata_writes(id, "x402").await, 2);
    assert_eq!(
        client.get_metadata(id, "x402").await.unwrap().as_ref(),
        b"{}"
    );

    let err = client
        .sync_metadata(id, "agentWallet", b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, Erc8004Error::Refused { .. }), "{err}");
    let err = fx.client(2).sync_x402_metadata(id).await.unwrap_err();
    assert!(matches!(err, Erc8004Error::NotAuthorized { .. }), "{err}");
}

#[tokio::test]
async fn verify_control_by_owner_wallet_or_operator() {
    let fx = Fixture::start().await;
    let owner = fx.signer(1);
    let hot = fx.signer(6);
    let stranger = fx.signer(7).address();
    let client = fx.client(1);
    let id = client.register(URI, &[], None).await.unwrap().agent_id;

    let control = client.verify_control(id, owner.address()).await.unwrap();
    assert!(control.controls() && control.is_owner && control.is_authorized);
    let control = client.verify_control(id, hot.address()).await.unwrap();
    assert!(!control.controls());
    assert_eq!(control.owner, owner.address());

    // The hot key proves it accepts the wallet role; the owner sends it.
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 120;
    let signature = sign_agent_wallet(&hot, client.registry(), id, owner.address(), deadline)
        .await
        .unwrap();
    client
        .set_agent_wallet(id, hot.address(), deadline, &signature)
        .await
        .unwrap();
    assert_eq!(client.agent_wallet(id).await.unwrap(), Some(hot.address()));
    let control = client.verify_control(id, hot.address()).await.unwrap();
    assert!(control.controls() && control.is_agent_wallet && !control.is_owner);

    // A proof signed by someone else is refused by the registry before anything is sent.
    let forged = sign_agent_wallet(
        &fx.signer(8),
        client.registry(),
        id,
        owner.address(),
        deadline,
    )
    .await
    .unwrap();
    let err = client
        .set_agent_wallet(id, stranger, deadline, &forged)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Erc8004Error::Refused { reason, .. } if reason.contains("invalid wallet sig")),
        "{err}"
    );
    assert!(
        !client
            .verify_control(id, stranger)
            .await
            .unwrap()
            .controls()
    );
    assert!(matches!(
        client.verify_control(U256::from(42), stranger).await,
        Err(Erc8004Error::UnknownAgent { .. })
    ));
    assert_ne!(stranger, Address::ZERO);
}

fn endpoints(url: &str, allow_writes: bool) -> ChainEndpoints {
    ChainEndpoints {
        chain_id: 84532,
        endpoints: vec![Endpoint {
            url: url.to_owned(),
            allow_writes,
        }],
    }
}
