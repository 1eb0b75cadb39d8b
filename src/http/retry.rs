//! The one retry policy of every HTTP client here (registries, Helm repositories, ARM):
//! exponential backoff with full jitter, a server's `Retry-After` honoured (capped), and
//! [`with_retry`], the loop that applies it to any request, including the "renew the
//! credential once and try again at once" step that a 401 calls for (as oras-go's
//! `retry` and `auth` packages and regclient's `reghttp` do between them).

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng as _;

/// How often and how patiently to retry transient failures.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Delay scale for the first retry.
    pub base_delay: Duration,
    /// Upper bound of one delay (also caps `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1 = first retry). A server's
    /// `Retry-After` wins when present; otherwise full jitter over an exponential ceiling.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let ceiling = exp.min(self.max_delay);
        let millis = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

/// The `Retry-After` of an answer, if it has a readable one.
pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// What a retry loop needs to know about an error.
pub trait Retryable {
    /// Whether trying again later may succeed.
    fn is_transient(&self) -> bool;
    /// The delay the server asked for, if any.
    fn retry_after(&self) -> Option<Duration>;
}

/// How one attempt ended.
#[derive(Debug)]
pub enum Step<T, E> {
    /// It succeeded.
    Done(T),
    /// It failed: tried again with backoff when the error is transient and the budget
    /// allows, else returned.
    Failed(E),
    /// It failed in a step that already retried on its own (e.g. fetching a token): the
    /// loop returns the error at once, so retries never nest.
    Abort(E),
    /// The credential was refused and has been renewed: tried again at once, without
    /// counting the attempt, once per call; the attempt closure is told (its argument)
    /// when the renewal is spent, and a second `Renew` is treated as `Failed` with its
    /// error.
    Renew(E),
}

/// Runs `attempt` until it succeeds, fails permanently, or `max_attempts` attempts (at
/// least one) have failed; between attempts it sleeps [`RetryPolicy::delay`]. `what`
/// names the request in debug logs. The closure gets `true` once a renewal was used.
pub async fn with_retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    max_attempts: u32,
    what: &str,
    mut attempt: F,
) -> Result<T, E>
where
    E: Retryable + Display,
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = Step<T, E>>,
{
    let mut failures = 0;
    let mut renewed = false;
    loop {
        let err = match attempt(renewed).await {
            Step::Done(value) => return Ok(value),
            Step::Abort(err) => return Err(err),
            Step::Renew(_) if !renewed => {
                renewed = true;
                tracing::debug!(what, "credential refused and renewed; trying again at once");
                continue;
            }
            Step::Renew(err) | Step::Failed(err) => err,
        };
        failures += 1;
        if !err.is_transient() || failures >= max_attempts.max(1) {
            return Err(err);
        }
        let delay = policy.delay(failures, err.retry_after());
        tracing::debug!(what, attempt = failures, ?delay, error = %err, "retrying");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct E {
        transient: bool,
        after: Option<Duration>,
    }

    impl Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "e(transient={})", self.transient)
        }
    }

    impl Retryable for E {
        fn is_transient(&self) -> bool {
            self.transient
        }
        fn retry_after(&self) -> Option<Duration> {
            self.after
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_budget() {
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = with_retry(&quick(), 4, "t", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Step::Failed(E {
                    transient: true,
                    after: Some(Duration::ZERO),
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried_and_success_ends_the_loop() {
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = with_retry(&quick(), 4, "t", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Step::Failed(E {
                    transient: false,
                    after: None,
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let calls = AtomicU32::new(0);
        let r: Result<u32, E> = with_retry(&quick(), 4, "t", |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Step::Failed(E {
                        transient: true,
                        after: None,
                    })
                } else {
                    Step::Done(n)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(2));
    }

    #[tokio::test]
    async fn an_abort_is_returned_at_once_even_when_transient() {
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = with_retry(&quick(), 4, "t", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Step::Abort(E {
                    transient: true,
                    after: None,
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn one_renewal_is_free_and_told_to_the_attempt() {
        let seen = std::sync::Mutex::new(Vec::new());
        let r: Result<(), E> = with_retry(&quick(), 1, "t", |renewed| {
            seen.lock().unwrap().push(renewed);
            async {
                Step::Renew(E {
                    transient: false,
                    after: None,
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(
            *seen.lock().unwrap(),
            [false, true],
            "a budget of 1 still renews once"
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert!(p.delay(1, None) <= Duration::from_millis(100));
        assert!(p.delay(1, None) >= Duration::from_millis(50));
        assert!(p.delay(9, None) <= Duration::from_secs(1));
        assert!(p.delay(9, None) >= Duration::from_millis(500));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }
}
