//! One set of guard tests for both stores: SQLite in memory, and PostgreSQL (a real server from
//! the test kit; skipped with a note when PostgreSQL is not installed, outside CI). Then what
//! only a shared store can show: two guards (two gateway replicas) on one database.

use std::sync::Arc;

use obol_config::time::unix_now;
use obol_facilitator::PaymentIdentity;
use obol_x402::primitives::{Address, B256, U256};

use super::{Account, Claim, Pending, Recorded, Refusal, ReplayGuard};

pub(super) fn id(n: u8) -> PaymentIdentity {
    PaymentIdentity {
        chain_id: 84532,
        asset: Address::repeat_byte(1),
        payer: Address::repeat_byte(2),
        nonce: B256::repeat_byte(n),
    }
}

fn digest(n: u8) -> B256 {
    B256::repeat_byte(0x80 | n)
}

fn far() -> u64 {
    unix_now() + 3600
}

pub(super) async fn claim(guard: &Arc<ReplayGuard>, n: u8) -> Result<Claim, Refusal> {
    guard.claim(id(n), digest(n), U256::from(10), far()).await
}

/// Every rule, on `guard`.
async fn conformance(guard: Arc<ReplayGuard>) {
    in_flight_then_released(&guard).await;
    reservations_sum_per_payer_until_released(&guard).await;
    an_unsettled_payment_comes_back_only_with_its_own_terms(&guard).await;
    receipts_say_what_was_recorded(&guard).await;
    metered_usage_adds_up(&guard).await;
    pending_settlements_are_counted(&guard).await;
}

/// Runs after the rules above, which leave payment 4 settled and none pending: a payment whose
/// settlement is pending counts until settled; one whose authorization expired counts apart.
async fn pending_settlements_are_counted(guard: &Arc<ReplayGuard>) {
    assert_eq!(guard.pending().await.unwrap(), Pending::default());
    let (settleable, soon) = (far(), unix_now() + 1);
    let pending = claim(guard, 31).await.unwrap();
    pending.ticket.unsettled("0x31", settleable).await.unwrap();
    let lost = guard
        .claim(id(32), digest(32), U256::from(10), soon)
        .await
        .unwrap();
    lost.ticket.unsettled("", soon).await.unwrap();
    let both = Pending {
        unsettled: 2,
        expired: 0,
        next_expiry: Some(soon),
    };
    assert_eq!(guard.pending().await.unwrap(), both);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let one_lost = Pending {
        unsettled: 1,
        expired: 1,
        next_expiry: Some(settleable),
    };
    assert_eq!(guard.pending().await.unwrap(), one_lost);
    let retried = claim(guard, 31).await.unwrap();
    retried
        .ticket
        .settled("0x31", None, settleable)
        .await
        .unwrap();
    assert_eq!(guard.pending().await.unwrap().unsettled, 0);
}

async fn in_flight_then_released(guard: &Arc<ReplayGuard>) {
    let first = claim(guard, 1).await.unwrap();
    assert_eq!(claim(guard, 1).await.unwrap_err(), Refusal::InFlight);
    let other = claim(guard, 2).await;
    assert!(other.is_ok(), "other payments are independent");
    drop((first, other));
    assert!(
        claim(guard, 1).await.is_ok(),
        "a failed request frees the payment"
    );
}

/// Waits until `account` has nothing reserved: a shared store releases dropped claims in the
/// background, within moments.
async fn nothing_reserved(guard: &ReplayGuard, account: &Account) {
    let gone = async {
        while !guard.outstanding(account).await.is_zero() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), gone)
        .await
        .expect("the released reservations are gone");
}

async fn reservations_sum_per_payer_until_released(guard: &Arc<ReplayGuard>) {
    let account = Account::from(&id(11));
    nothing_reserved(guard, &account).await;
    let first = claim(guard, 11).await.unwrap();
    assert_eq!(first.reserved_before, U256::ZERO);
    let second = claim(guard, 12).await.unwrap();
    assert_eq!(second.reserved_before, U256::from(10));
    assert_eq!(guard.outstanding(&account).await, U256::from(20));
    let mut other = id(13);
    other.payer = Address::repeat_byte(9);
    let third = guard
        .claim(other, digest(13), U256::from(5), far())
        .await
        .unwrap();
    assert_eq!(third.reserved_before, U256::ZERO, "another payer");
    first.ticket.settled("0x1", None, far()).await.unwrap();
    assert_eq!(guard.outstanding(&account).await, U256::from(10));
    drop(second);
    nothing_reserved(guard, &account).await;
    drop(third);
}

async fn an_unsettled_payment_comes_back_only_with_its_own_terms(guard: &Arc<ReplayGuard>) {
    let taken = claim(guard, 4).await.unwrap();
    taken.ticket.unsettled("0xpending", far()).await.unwrap();
    let again = claim(guard, 4).await.unwrap();
    assert_eq!(again.unsettled.as_deref(), Some("0xpending"));
    assert_eq!(claim(guard, 4).await.unwrap_err(), Refusal::InFlight);
    drop(again);
    let forged = guard.claim(id(4), digest(5), U256::from(10), far()).await;
    assert_eq!(forged.unwrap_err(), Refusal::OtherTerms);
    let retried = claim(guard, 4).await.unwrap();
    retried.ticket.settled("0xdone", None, far()).await.unwrap();
    assert_eq!(
        claim(guard, 4).await.unwrap_err(),
        Refusal::Settled("0xdone".into())
    );
    // Settling, then refused with nothing delivered: free again, as if never taken.
    let refused = claim(guard, 6).await.unwrap();
    refused.ticket.settling(far()).await.unwrap();
    refused.ticket.released().await.unwrap();
    assert!(claim(guard, 6).await.unwrap().unsettled.is_none());
}

async fn receipts_say_what_was_recorded(guard: &Arc<ReplayGuard>) {
    let nonce = id(21).nonce;
    assert_eq!(guard.receipt(nonce).await, None, "unknown");
    let taken = claim(guard, 21).await.unwrap();
    taken.ticket.settling(far()).await.unwrap();
    let under_way = guard.receipt(nonce).await.unwrap();
    assert!(!under_way.settled);
    taken
        .ticket
        .settled("0x21", Some(U256::from(23)), far())
        .await
        .unwrap();
    assert_eq!(
        guard.receipt(nonce).await,
        Some(Recorded {
            chain_id: 84532,
            payer: Address::repeat_byte(2),
            settled: true,
            transaction: "0x21".into(),
            amount: Some(U256::from(23)),
        })
    );
}

/// Two calls of `default/llm` and one of `other/llm`.
pub(super) async fn metered_usage_adds_up(guard: &ReplayGuard) {
    use crate::metering::{Charge, MeteredUsage};
    use obol_x402::metering::{Measured, Usage};
    let charge = |prompt_tokens, completion_tokens, amount: u64| Charge {
        amount: U256::from(amount),
        measured: Measured::Usage,
        usage: Some(Usage {
            prompt_tokens,
            completion_tokens,
        }),
    };
    assert_eq!(guard.usage("default", "llm").await, None);
    for (namespace, c) in [
        ("default", charge(12, 34, 23)),
        ("default", charge(100, 200, 135)),
        ("other", charge(1, 1, 1)),
    ] {
        guard.add_usage(namespace, "llm", &c).await.unwrap();
    }
    assert_eq!(
        guard.usage("default", "llm").await,
        Some(MeteredUsage {
            requests: 2,
            prompt_tokens: 112,
            completion_tokens: 234,
            charged: U256::from(158),
        })
    );
}

#[tokio::test]
async fn sqlite_keeps_every_rule() {
    conformance(Arc::new(ReplayGuard::in_memory().unwrap())).await;
}

/// A PostgreSQL server and one database on it, or `None` (said) where none is installed.
fn postgres(name: &str) -> Option<(obol_testkit::postgres::PgServer, String)> {
    let server = obol_testkit::postgres::PgServer::start()?;
    let url = server.database(name);
    Some((server, url))
}

#[tokio::test]
async fn postgres_keeps_every_rule() {
    let Some((_server, url)) = postgres("guard") else {
        return;
    };
    conformance(Arc::new(ReplayGuard::postgres(&url).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_share_claims_records_and_reservations() {
    let Some((_server, url)) = postgres("replicas") else {
        return;
    };
    let a = Arc::new(ReplayGuard::postgres(&url).await.unwrap());
    let b = Arc::new(ReplayGuard::postgres(&url).await.unwrap());

    // A claim in one replica is in flight in the other; its record refuses it everywhere.
    let taken = claim(&a, 1).await.unwrap();
    assert_eq!(claim(&b, 1).await.unwrap_err(), Refusal::InFlight);
    // The payer's reservations are summed across replicas.
    assert_eq!(claim(&b, 2).await.unwrap().reserved_before, U256::from(10));
    taken.ticket.settled("0xa", None, far()).await.unwrap();
    assert_eq!(
        claim(&b, 1).await.unwrap_err(),
        Refusal::Settled("0xa".into())
    );

    // One payment sent to both replicas by 16 requests at once: exactly one claim.
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..16 {
        let guard = if i % 2 == 0 { a.clone() } else { b.clone() };
        racing.spawn(async move {
            let claimed = claim(&guard, 3).await;
            // Hold a granted claim a moment, as a request being served does.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            claimed.is_ok()
        });
    }
    let granted = racing.join_all().await.into_iter().filter(|ok| *ok).count();
    assert_eq!(granted, 1, "one payment, one request");

    // A replica that dies holding a claim: the claim lapses with its lease.
    let lapsed = a
        .claim(id(4), digest(4), U256::from(10), unix_now() - 1)
        .await
        .unwrap();
    std::mem::forget(lapsed.ticket);
    assert!(claim(&b, 4).await.is_ok(), "an expired lease is taken over");

    // Metered usage from both replicas adds up in one row.
    metered_usage_adds_up(&a).await;
    let more = crate::metering::Charge {
        amount: U256::from(2),
        measured: obol_x402::metering::Measured::Estimate,
        usage: None,
    };
    b.add_usage("default", "llm", &more).await.unwrap();
    let usage = a.usage("default", "llm").await.unwrap();
    assert_eq!((usage.requests, usage.charged), (3, U256::from(160)));
}

#[tokio::test]
async fn an_unreachable_database_refuses_to_start_and_says_why() {
    let error = ReplayGuard::postgres("postgres://obol@127.0.0.1:9/none")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("payment guard store"), "{error}");
}

/// The exchanges a paid call may have with PostgreSQL, each waited on (a `ReadyForQuery` from
/// the server): the claim's `BEGIN`, lock, look, insert and `COMMIT` (the lock and the look
/// sent together: 4 round trips), then the `settling` and `settled` writes. Statements are
/// prepared once per connection, and the settled claim is not released again.
const EXCHANGES_PER_PAID_CALL: usize = 7;

/// A relay to the server at `url` that counts the server's `ReadyForQuery` messages; the URL
/// to connect through it, and the count.
async fn counting_relay(url: &str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (head, tail) = url.rsplit_once(':').unwrap();
    let (port, database) = tail.split_once('/').unwrap();
    let server = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = format!(
        "{head}:{}/{database}",
        listener.local_addr().unwrap().port()
    );
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = ready.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = tokio::net::TcpStream::connect(&server).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = upstream.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
            let count = count.clone();
            tokio::spawn(async move {
                // Every server message is a type byte, a 4-byte length (itself included), a body.
                let (mut header, mut skip, mut buf) = (Vec::new(), 0usize, vec![0u8; 8192]);
                while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                    let mut bytes = &buf[..n];
                    while !bytes.is_empty() {
                        if skip > 0 {
                            let take = skip.min(bytes.len());
                            (skip, bytes) = (skip - take, &bytes[take..]);
                            continue;
                        }
                        let take = (5 - header.len()).min(bytes.len());
                        header.extend_from_slice(&bytes[..take]);
                        bytes = &bytes[take..];
                        if header.len() == 5 {
                            if header[0] == b'Z' {
                                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            let length = u32::from_be_bytes(header[1..].try_into().unwrap());
                            skip = usize::try_from(length).unwrap() - 4;
                            header.clear();
                        }
                    }
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (relay, ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_call_waits_on_postgresql_few_times() {
    let Some((_server, url)) = postgres("trips") else {
        return;
    };
    let (relay, ready) = counting_relay(&url).await;
    let guard = Arc::new(ReplayGuard::postgres(&relay).await.unwrap());
    let paid_call = |n: u8| {
        let guard = guard.clone();
        async move {
            let claim = claim(&guard, n).await.unwrap();
            claim.ticket.settling(far()).await.unwrap();
            claim.ticket.settled("0x1", None, far()).await.unwrap();
        }
    };
    // The first call prepares the statements on the connection.
    paid_call(1).await;
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(200));
    settle().await;
    let before = ready.load(std::sync::atomic::Ordering::SeqCst);
    for n in 2..12 {
        paid_call(n).await;
    }
    settle().await;
    let exchanges = ready.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        exchanges <= 10 * EXCHANGES_PER_PAID_CALL,
        "10 paid calls waited on PostgreSQL {exchanges} times"
    );
    assert_eq!(
        claim(&guard, 2).await.unwrap_err(),
        Refusal::Settled("0x1".into())
    );
}
