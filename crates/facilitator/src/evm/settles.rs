//! The settle cache: what each authorization's settlement produced, so that settling the same
//! authorization again (a retry, a race) gets the first answer and never a second transfer.
//!
//! **Keyed by the authorization's digest** — its EIP-712 signing hash, domain included, so any
//! change of a signed field (payTo, amount, window, nonce, token, chain) is another key. A
//! `(chain, asset, payer, nonce)` identity is not a key: two authorizations sharing a nonce but
//! paying someone else are two payments, and one must never be handed the other's receipt.
//! Instead an index identity → digest lets one authorization *claim* the nonce: while the
//! claimant is in flight, pending or settled, any other digest for that identity is refused at
//! once (its transfer could only fail on-chain). A claimant that finished without a
//! transaction, or whose transaction failed, holds nothing: the chain decides the next one.
//!
//! **Bounded**: at most [`CAPACITY`] entries, so memory stays bounded under any load.
//! Expired authorizations are forgotten first (precheck refuses them, so nothing can ask for
//! them again): they are popped from the front of an expiry-ordered set. At the cap with
//! nothing expired, the earliest-expiring *finished* entry is evicted — safe, because its
//! transfer is done or failed and the chain refuses a replay of a spent nonce. A slot in use
//! (a settle in flight or queued) or pending (broadcast, no receipt yet) is never evicted; when
//! every slot is one, a new payment is refused with a retriable [`Refused::Full`].
//!
//! Every operation is O(log n) (hash maps and ordered sets; eviction skips only entries in use
//! at that instant). One std mutex guards the bookkeeping for a few map operations at a time;
//! it is never held across an `.await` (a slot's own async mutex serialises a settle).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use alloy::primitives::B256;

use super::Outcome;
use crate::checks::PaymentIdentity;

/// The most authorizations remembered at once (a few hundred bytes each: tens of MiB at most).
pub(super) const CAPACITY: usize = 65_536;

/// One authorization's settle history; its async mutex serialises settles of it.
pub(super) type Slot = Arc<tokio::sync::Mutex<Option<Outcome>>>;

/// Why [`Settles::claim`] gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Another authorization holds this payer's nonce (in flight, pending or settled).
    Claimed,
    /// Every remembered settlement is in flight or pending, and the cache is full.
    Full,
}

/// The bounded settle cache (see the module documentation).
pub(super) struct Settles {
    capacity: usize,
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    entries: HashMap<B256, Entry>,
    /// Which digest holds each identity's nonce.
    claims: HashMap<PaymentIdentity, B256>,
    /// Every entry, by `(expires_at, digest)`.
    by_expiry: BTreeSet<(u64, B256)>,
    /// The finished entries (success or failure), by `(expires_at, digest)`: evictable.
    finished: BTreeSet<(u64, B256)>,
}

struct Entry {
    identity: PaymentIdentity,
    expires_at: u64,
    slot: Slot,
    state: State,
}

/// What an entry's last settle left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Claimed, no outcome yet (only while in use: one without an outcome is dropped).
    Open,
    /// Broadcast, no receipt yet.
    Pending,
    /// Settled on-chain.
    Settled,
    /// Finished without a transfer.
    Failed,
}

impl Entry {
    /// Someone other than the cache holds the slot: a settle in flight or queued on it.
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.slot) > 1
    }

    /// Whether this entry keeps other authorizations off its identity's nonce.
    fn holds_claim(&self) -> bool {
        self.in_use() || matches!(self.state, State::Pending | State::Settled)
    }
}

impl Settles {
    /// An empty cache of at most `capacity` entries.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            book: Mutex::new(Book::default()),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot of authorization `digest` (which claims `identity`'s nonce and expires at
    /// `expires_at`), after forgetting what expired by `now`. Hold the returned [`Claim`] for
    /// the whole settle: it marks the slot in use, and records its outcome when dropped.
    pub(super) fn claim(
        &self,
        identity: PaymentIdentity,
        digest: B256,
        expires_at: u64,
        now: u64,
    ) -> Result<Claim<'_>, Refused> {
        let mut book = self.book();
        book.prune(now);
        if let Some(holder) = book.claims.get(&identity)
            && *holder != digest
            && book.entries.get(holder).is_some_and(Entry::holds_claim)
        {
            return Err(Refused::Claimed);
        }
        let slot = match book.entries.get(&digest) {
            Some(entry) => entry.slot.clone(),
            None => {
                if book.entries.len() >= self.capacity && !book.evict_finished() {
                    return Err(Refused::Full);
                }
                let slot = Slot::default();
                book.entries.insert(
                    digest,
                    Entry {
                        identity,
                        expires_at,
                        slot: slot.clone(),
                        state: State::Open,
                    },
                );
                book.by_expiry.insert((expires_at, digest));
                slot
            }
        };
        book.claims.insert(identity, digest);
        Ok(Claim {
            settles: self,
            digest,
            slot,
        })
    }

    /// Called as a claim ends: the last user of a slot records what it left behind.
    fn release(&self, digest: B256, slot: &Slot) {
        let mut book = self.book();
        let Book {
            entries, finished, ..
        } = &mut *book;
        let Some(entry) = entries.get_mut(&digest) else {
            return;
        };
        // Another entry for the same digest (this one expired meanwhile), or other users
        // still queued on the slot: they release it later.
        if !Arc::ptr_eq(&entry.slot, slot) || Arc::strong_count(slot) > 2 {
            return;
        }
        // Clones are only made under the book's lock, so nobody else can hold the slot now.
        let Ok(outcome) = slot.try_lock() else {
            return;
        };
        entry.state = match outcome.as_ref() {
            None => State::Open,
            Some(Outcome::Pending(_)) => State::Pending,
            Some(Outcome::Done(response)) if response.success => State::Settled,
            Some(Outcome::Done(_)) => State::Failed,
        };
        let (state, expires_at) = (entry.state, entry.expires_at);
        drop(outcome);
        match state {
            // Nothing was learnt (the payment was refused or the chain unreachable): keep
            // nothing, hold no claim.
            State::Open => book.remove(expires_at, digest),
            State::Settled | State::Failed => {
                finished.insert((expires_at, digest));
            }
            State::Pending => {}
        }
    }
}

impl Book {
    /// Forgets every entry that expired by `now`: precheck refuses expired authorizations, so
    /// none of them can be asked for again.
    fn prune(&mut self, now: u64) {
        while let Some(&(expires_at, digest)) = self.by_expiry.first()
            && expires_at <= now
        {
            self.remove(expires_at, digest);
        }
    }

    /// Evicts the earliest-expiring finished entry not in use; `false` when there is none.
    fn evict_finished(&mut self) -> bool {
        let Some(&(expires_at, digest)) = self
            .finished
            .iter()
            .find(|(_, digest)| self.entries.get(digest).is_some_and(|e| !e.in_use()))
        else {
            return false;
        };
        self.remove(expires_at, digest);
        true
    }

    fn remove(&mut self, expires_at: u64, digest: B256) {
        self.by_expiry.remove(&(expires_at, digest));
        self.finished.remove(&(expires_at, digest));
        if let Some(entry) = self.entries.remove(&digest)
            && self.claims.get(&entry.identity) == Some(&digest)
        {
            self.claims.remove(&entry.identity);
        }
    }
}

/// A slot in use for one settle; dropping it records the slot's outcome in the cache.
pub(super) struct Claim<'a> {
    settles: &'a Settles,
    digest: B256,
    slot: Slot,
}

impl Claim<'_> {
    /// The authorization's slot: lock it for the settle.
    pub(super) fn slot(&self) -> &Slot {
        &self.slot
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.settles.release(self.digest, &self.slot);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use alloy::primitives::Address;
    use obol_x402::wire::SettleResponse;

    use super::*;

    fn identity(nonce: u8) -> PaymentIdentity {
        PaymentIdentity {
            chain_id: 84532,
            asset: Address::ZERO,
            payer: Address::repeat_byte(1),
            nonce: B256::repeat_byte(nonce),
        }
    }

    fn digest(n: u64) -> B256 {
        B256::left_padding_from(&n.to_be_bytes())
    }

    fn done(success: bool) -> Option<Outcome> {
        Some(Outcome::Done(SettleResponse {
            success,
            ..SettleResponse::default()
        }))
    }

    /// One settle of `digest` at time `now` that leaves `outcome` behind.
    fn settle_at(
        settles: &Settles,
        now: u64,
        (identity, digest, expires_at): (PaymentIdentity, B256, u64),
        outcome: Option<Outcome>,
    ) -> Result<(), Refused> {
        let claim = settles.claim(identity, digest, expires_at, now)?;
        *claim.slot().try_lock().unwrap() = outcome;
        Ok(())
    }

    /// [`settle_at`] time 0.
    fn settle(
        settles: &Settles,
        identity: PaymentIdentity,
        digest: B256,
        expires_at: u64,
        outcome: Option<Outcome>,
    ) -> Result<(), Refused> {
        settle_at(settles, 0, (identity, digest, expires_at), outcome)
    }

    fn len(settles: &Settles) -> usize {
        settles.book().entries.len()
    }

    #[test]
    fn a_second_digest_for_a_claimed_nonce_is_refused_while_in_flight_pending_or_settled() {
        let settles = Settles::new(16);
        let first = settles.claim(identity(1), digest(1), 100, 0).unwrap();
        assert_eq!(
            settles.claim(identity(1), digest(2), 100, 0).err(),
            Some(Refused::Claimed),
            "in flight"
        );
        let again = settles.claim(identity(1), digest(1), 100, 0).unwrap();
        assert!(
            Arc::ptr_eq(first.slot(), again.slot()),
            "same digest, same slot"
        );
        *first.slot().try_lock().unwrap() = Some(Outcome::Pending(B256::ZERO));
        drop((first, again));
        assert_eq!(
            settles.claim(identity(1), digest(2), 100, 0).err(),
            Some(Refused::Claimed),
            "pending"
        );
        settle(&settles, identity(1), digest(1), 100, done(true)).unwrap();
        assert_eq!(
            settle(&settles, identity(1), digest(2), 100, None),
            Err(Refused::Claimed),
            "settled"
        );
        // Another nonce of the same payer is another payment.
        settle(&settles, identity(2), digest(3), 100, done(true)).unwrap();
    }

    #[test]
    fn a_claimant_without_a_transfer_holds_nothing() {
        let settles = Settles::new(16);
        // Refused before any transaction: nothing is kept.
        settle(&settles, identity(1), digest(1), 100, None).unwrap();
        assert_eq!(len(&settles), 0);
        // A failed transfer is remembered for its own digest, but frees the nonce.
        settle(&settles, identity(1), digest(2), 100, done(false)).unwrap();
        settle(&settles, identity(1), digest(3), 100, done(true)).unwrap();
        assert_eq!(len(&settles), 2);
        let failed = settles.claim(identity(1), digest(2), 100, 0);
        assert_eq!(
            failed.err(),
            Some(Refused::Claimed),
            "now digest 3 holds it"
        );
    }

    #[test]
    fn expired_entries_are_forgotten_with_their_claims() {
        let settles = Settles::new(16);
        settle(&settles, identity(1), digest(1), 100, done(true)).unwrap();
        settle(&settles, identity(2), digest(2), 300, done(true)).unwrap();
        let in_flight = settles.claim(identity(3), digest(3), 150, 0).unwrap();
        settle_at(&settles, 200, (identity(4), digest(4), 400), done(true)).unwrap();
        let book = settles.book();
        assert_eq!(book.entries.len(), 2, "the two expired by 200 are gone");
        assert!(book.entries.contains_key(&digest(2)) && book.entries.contains_key(&digest(4)));
        assert_eq!(book.by_expiry.len(), 2);
        assert_eq!(book.finished.len(), 2);
        assert!(!book.claims.contains_key(&identity(1)) && !book.claims.contains_key(&identity(3)));
        drop(book);
        // The expired in-flight claim ends without touching anything.
        drop(in_flight);
        assert_eq!(len(&settles), 2);
    }

    #[test]
    fn the_cap_holds_and_only_finished_entries_not_in_use_are_evicted() {
        let settles = Settles::new(4);
        let in_flight = settles.claim(identity(1), digest(1), 100, 0).unwrap();
        let pending = Some(Outcome::Pending(B256::ZERO));
        settle(&settles, identity(2), digest(2), 50, pending).unwrap();
        settle(&settles, identity(3), digest(3), 500, done(true)).unwrap();
        settle(&settles, identity(4), digest(4), 300, done(false)).unwrap();
        let reading = settles.claim(identity(4), digest(4), 300, 0).unwrap();

        // Full: digest 4 (earlier) is in use, so digest 3 goes.
        settle(&settles, identity(5), digest(5), 900, done(true)).unwrap();
        assert_eq!(len(&settles), 4);
        assert!(!settles.book().entries.contains_key(&digest(3)));
        // Then digest 5, the only finished entry not in use.
        let second = settles.claim(identity(6), digest(6), 900, 0).unwrap();
        assert_eq!(len(&settles), 4);
        assert!(!settles.book().entries.contains_key(&digest(5)));
        // In flight (1, 6), pending (2) and in use (4): nothing to evict.
        assert_eq!(
            settles.claim(identity(7), digest(7), 900, 0).err(),
            Some(Refused::Full)
        );
        for kept in [1, 2, 4, 6] {
            assert!(settles.book().entries.contains_key(&digest(kept)), "{kept}");
        }
        drop((in_flight, reading, second));
        assert!(settles.claim(identity(7), digest(7), 900, 0).is_ok());
    }

    #[test]
    fn operations_at_the_cap_stay_logarithmic() {
        let settles = Settles::new(CAPACITY);
        let count = |n: u64| u8::try_from(n % 251).unwrap();
        for n in 0..CAPACITY as u64 {
            settle(
                &settles,
                identity(count(n)),
                digest(n),
                1_000 + n,
                done(false),
            )
            .unwrap();
        }
        assert_eq!(len(&settles), CAPACITY);
        // Each of these evicts one entry: a scan of the whole cache per settle (the old
        // `retain`) would take minutes here, not milliseconds.
        let started = Instant::now();
        let extra = 20_000u64;
        for n in CAPACITY as u64..CAPACITY as u64 + extra {
            settle(
                &settles,
                identity(count(n)),
                digest(n),
                1_000 + n,
                done(false),
            )
            .unwrap();
        }
        let elapsed = started.elapsed();
        assert_eq!(len(&settles), CAPACITY);
        let book = settles.book();
        assert_eq!(book.by_expiry.len(), CAPACITY);
        assert_eq!(
            book.by_expiry.first().map(|(expires_at, _)| *expires_at),
            Some(1_000 + extra),
            "the earliest-expiring went first"
        );
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
}
