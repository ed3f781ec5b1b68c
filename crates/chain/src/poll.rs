//! Waiting for something the chain will answer soon (a receipt): the one polling loop of the
//! workspace. The first check comes after [`FIRST_POLL`] (a loopback devnet has usually mined
//! by then), each wait doubles up to the caller's interval, and the loop stops at its deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The first wait after a send.
pub const FIRST_POLL: Duration = Duration::from_millis(1);

/// Runs `attempt` until it yields `Some`, or until `timeout` has passed (`None`); between
/// attempts it sleeps [`FIRST_POLL`], then twice as long each time, at most `interval`.
pub async fn poll_until<T, F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut wait = FIRST_POLL.min(interval);
    loop {
        if let Some(done) = attempt().await {
            return Some(done);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        tokio::time::sleep(wait.min(left)).await;
        wait = (wait * 2).min(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_faster_first_and_stops_at_the_deadline() {
        let mut seen = Vec::new();
        let started = Instant::now();
        let found = poll_until(Duration::from_secs(5), Duration::from_millis(16), || {
            seen.push(started.elapsed());
            let done = seen.len() == 6;
            async move { done.then_some("mined") }
        })
        .await;
        assert_eq!(found, Some("mined"));
        // Waits of 1, 2, 4, 8 and 16 ms: at least 31 ms in all, each gap no shorter than the last.
        assert!(seen[5] >= Duration::from_millis(31), "{seen:?}");
        let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[4] >= Duration::from_millis(16), "{gaps:?}");

        let started = Instant::now();
        let never = poll_until(
            Duration::from_millis(50),
            Duration::from_millis(16),
            || async { None::<()> },
        )
        .await;
        assert_eq!(never, None);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(50) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
