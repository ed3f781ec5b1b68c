//! Per-offer request limits (the offer's `limits{maxInFlight, rps}`): a concurrency cap and a
//! token-bucket rate limit (burst 2 × rps, as the original's Traefik middlewares), both counted
//! over every request of the offer (402s and free routes included). Refusals are 429 with
//! `Retry-After`.
//!
//! The state lives in [`Limiter`], keyed by the offer's namespace and name and kept across route
//! table swaps, so publishing a new table neither refills a bucket nor frees a slot; it starts
//! over only when the offer's limits change. A slot is held by the response body, so a stream
//! holds its slot until it ends.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::Response;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::GatewayError;
use crate::route::Offer;

/// An offer's limits (`None`: no limit of that kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests of the offer being served at once.
    pub max_in_flight: Option<NonZeroU32>,
    /// Requests per second, with bursts of twice as many.
    pub rps: Option<NonZeroU32>,
}

impl Limits {
    /// Whether neither limit is set.
    pub fn is_none(&self) -> bool {
        self.max_in_flight.is_none() && self.rps.is_none()
    }
}

/// One offer's live limits.
struct State {
    limits: Limits,
    in_flight: Option<Arc<Semaphore>>,
    rate: Option<DefaultDirectRateLimiter>,
}

impl State {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            in_flight: limits
                .max_in_flight
                .map(|n| Arc::new(Semaphore::new(n.get() as usize))),
            rate: limits.rps.map(|rps| {
                // Bursts of twice the rate (1 + 1 = 2, without an unwrap).
                let burst = rps.saturating_mul(NonZeroU32::MIN.saturating_add(1));
                RateLimiter::direct(Quota::per_second(rps).allow_burst(burst))
            }),
        }
    }
}

/// A request admitted under its offer's limits: holds its in-flight slot until the response
/// (body included) is done with it.
#[derive(Debug)]
pub struct Admitted(Option<OwnedSemaphorePermit>);

impl Admitted {
    /// `response` holding the slot until its body ends or is dropped.
    pub fn hold(self, response: Response<Body>) -> Response<Body> {
        match self.0 {
            None => response,
            Some(permit) => response.map(|inner| {
                Body::new(Holding {
                    inner,
                    _permit: permit,
                })
            }),
        }
    }
}

/// A body that keeps a slot while it lives.
struct Holding {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The live limits of every offer that has some.
#[derive(Default)]
pub struct Limiter {
    states: Mutex<HashMap<(String, String), Arc<State>>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

impl Limiter {
    /// Admits one request of `offer`, or refuses it (429) with how long to wait.
    pub fn admit(&self, offer: &Offer) -> Result<Admitted, GatewayError> {
        if offer.limits.is_none() {
            return Ok(Admitted(None));
        }
        let state = self.state(offer);
        if let Some(rate) = &state.rate
            && let Err(not_until) = rate.check()
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(GatewayError::rate_limited(wait.as_secs() + 1));
        }
        match &state.in_flight {
            None => Ok(Admitted(None)),
            Some(slots) => slots
                .clone()
                .try_acquire_owned()
                .map(|permit| Admitted(Some(permit)))
                .map_err(|_| GatewayError::too_many_in_flight()),
        }
    }

    /// The offer's state, created (or started over, when its limits changed) on demand.
    fn state(&self, offer: &Offer) -> Arc<State> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (offer.namespace.clone(), offer.name.clone());
        match states.get(&key) {
            Some(state) if state.limits == offer.limits => state.clone(),
            _ => {
                let state = Arc::new(State::new(offer.limits));
                states.insert(key, state.clone());
                state
            }
        }
    }
}

/// Refused payment verifications per client (its IP address; one bucket for clients without
/// one). Every well-formed payment costs the facilitator RPC calls, so a flood of them — signed
/// by keys holding nothing, which cost nothing to make — must be bounded; payments that verify
/// cost nothing here, so a busy honest buyer is never slowed. Each refusal by the facilitator
/// takes a cell of the client's token bucket (`burst` cells, refilled at `per_second`); a client
/// with less than a cell gets 429 + `Retry-After` before any call is made. Refused
/// verifications over any time t stay within `burst + per_second × t` (plus those of calls
/// admitted at the same moment).
pub struct VerifyLimit {
    per_second: f64,
    burst: f64,
    /// Each client's bucket: cells left and when they were counted.
    buckets: Mutex<HashMap<Option<std::net::IpAddr>, (f64, std::time::Instant)>>,
}

impl std::fmt::Debug for VerifyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyLimit")
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

/// Clients remembered before the full buckets are forgotten.
const MAX_CLIENTS: usize = 10_000;

impl VerifyLimit {
    /// `per_second` refused verifications per client, in bursts of `burst`.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            per_second: f64::from(per_second.get()),
            burst: f64::from(burst.get()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `client`'s cells at `now`: what was left when last counted, refilled since (a client
    /// never refused has a full bucket and no entry).
    fn cells(
        &self,
        buckets: &HashMap<Option<std::net::IpAddr>, (f64, std::time::Instant)>,
        client: Option<std::net::IpAddr>,
        now: std::time::Instant,
    ) -> f64 {
        buckets.get(&client).map_or(self.burst, |(left, at)| {
            (left + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst)
        })
    }

    /// Whether `client` may have a payment verified now: not while its bucket is empty. Reads
    /// only (the paid path's common case, a client never refused, finds no entry).
    pub fn admit(&self, client: Option<std::net::IpAddr>) -> Result<(), GatewayError> {
        let now = std::time::Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let left = self.cells(&buckets, client, now);
        if left >= 1.0 {
            return Ok(());
        }
        let wait = ((1.0 - left) / self.per_second).ceil().max(1.0);
        Err(GatewayError::rate_limited(wait as u64)
            .detail("too many of this client's payments were refused; retry after the wait"))
    }

    /// Counts a verification of `client`'s the facilitator refused.
    pub fn refused(&self, client: Option<std::net::IpAddr>) {
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > MAX_CLIENTS {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (left, at)| {
                *left + now.duration_since(*at).as_secs_f64() * per_second < burst
            });
        }
        let left = self.cells(&buckets, client, now);
        buckets.insert(client, (left - 1.0, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::tests::offer;

    fn limited(max_in_flight: u32, rps: u32) -> Offer {
        let mut offer = Arc::unwrap_or_clone(offer("api", "/services/api"));
        offer.limits = Limits {
            max_in_flight: NonZeroU32::new(max_in_flight),
            rps: NonZeroU32::new(rps),
        };
        offer
    }

    #[test]
    fn slots_are_held_until_the_response_goes() {
        let limiter = Limiter::default();
        let offer = limited(2, 0);
        let first = limiter.admit(&offer).unwrap();
        let second = limiter.admit(&offer).unwrap();
        let refused = limiter.admit(&offer).unwrap_err();
        assert_eq!(
            (refused.status.as_u16(), refused.reason),
            (429, "too_many_in_flight")
        );
        let response = first.hold(Response::new(Body::from("x")));
        assert!(limiter.admit(&offer).is_err(), "the body holds it");
        drop(response);
        assert!(limiter.admit(&offer).is_ok(), "freed with the body");
        drop(second);
    }

    #[test]
    fn the_rate_allows_a_burst_of_twice_the_rps_then_asks_to_wait() {
        let limiter = Limiter::default();
        let offer = limited(0, 3);
        for i in 0..6 {
            assert!(limiter.admit(&offer).is_ok(), "burst request {i}");
        }
        let refused = limiter.admit(&offer).unwrap_err();
        assert_eq!(
            (refused.status.as_u16(), refused.reason),
            (429, "rate_limited")
        );
        assert_eq!(refused.retry_after, Some(1));
        // Another offer has its own bucket; the same offer with new limits starts over.
        let mut other = limited(0, 3);
        other.name = "other".into();
        assert!(limiter.admit(&other).is_ok());
        assert!(limiter.admit(&limited(0, 4)).is_ok());
    }

    #[test]
    fn an_offer_without_limits_is_never_refused() {
        let limiter = Limiter::default();
        let offer = limited(0, 0);
        for _ in 0..100 {
            assert!(limiter.admit(&offer).is_ok());
        }
        assert!(limiter.states.lock().unwrap().is_empty(), "no state kept");
    }
}
