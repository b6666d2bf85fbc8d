//! The one retry policy of the registry client: idempotent steps are retried with exponential
//! backoff and jitter on connection errors, resets, timeouts, 408, 429 and 5xx (also the OCI
//! code `TOOMANYREQUESTS`), honouring `Retry-After`; bounded in attempts and in total time.
//! When retries run out the error says what was tried ("after 5 attempts over 31 s").
//!
//! What is retryable is decided by [`RegistryError::is_retryable`]; this file decides how often
//! and how long. Nothing else in the crate sleeps between attempts.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use super::error::RegistryError;

/// How idempotent steps are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// The delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// The longest delay (also caps `Retry-After`).
    pub max_delay: Duration,
    /// No retry starts (and no backoff sleeps) past this much time since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// `retries` retries after the first attempt, none starting later than `max_elapsed`.
    pub fn with_retries(retries: u32, max_elapsed: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts: retries.saturating_add(1),
            max_elapsed,
            ..RetryPolicy::default()
        }
    }

    /// The delay before retry number `retry` (from 1): `Retry-After` if given, else
    /// `base * 2^(retry-1)` with ±50 % jitter; at most `max_delay`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let exp = exp.min(self.max_delay);
        // Jitter in [0.5, 1.5): a random number without a crate.
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let factor = 0.5 + (r % 1000) as f64 / 1000.0;
        exp.mul_f64(factor).min(self.max_delay)
    }

    /// Run `step` until it succeeds, fails with a non-retryable error, or attempts or time run
    /// out. A failure after more than one attempt is [`RegistryError::Exhausted`], naming the
    /// attempts and the time they took, with the last error as its cause.
    pub async fn run<T, F, Fut>(&self, what: &str, mut step: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match step().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => {
                    let delay = self.delay(attempt, e.retry_after());
                    let out_of_time = started.elapsed().saturating_add(delay) > self.max_elapsed;
                    if attempt >= self.max_attempts || out_of_time {
                        if self.max_attempts <= 1 {
                            return Err(e);
                        }
                        return Err(RegistryError::Exhausted {
                            what: what.to_string(),
                            attempts: attempt,
                            elapsed: started.elapsed(),
                            last: Box::new(e),
                        });
                    }
                    tracing::warn!(step = what, attempt, delay_ms = delay.as_millis() as u64, error = %e, "retrying");
                    crate::events::emit(crate::events::Event::Retrying {
                        step: what.to_string(),
                        attempt,
                        delay_ms: delay.as_millis() as u64,
                        error: crate::auth::redact::scrub_here(&e.to_string()).into_owned(),
                    });
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Parse a `Retry-After` header: seconds, or an HTTP date (RFC 9110 IMF-fixdate) from now.
pub fn parse_retry_after(v: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let s = v?.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(s)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → seconds since the epoch.
fn parse_http_date(s: &str) -> Option<u64> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let day: u64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':');
    let (h, m, sec): (u64, u64, u64) = (
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
    );
    if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(60),
        };
        for retry in 1..40 {
            let d = p.delay(retry, None);
            assert!(d <= Duration::from_secs(1));
        }
        let d1 = p.delay(1, None);
        assert!(
            d1 >= Duration::from_millis(50) && d1 < Duration::from_millis(150),
            "{d1:?}"
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(20))),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_http_date("garbage"), None);
        let past = reqwest::header::HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_retry_after(Some(&past)), Some(Duration::ZERO));
        let secs = reqwest::header::HeaderValue::from_static(" 3 ");
        assert_eq!(parse_retry_after(Some(&secs)), Some(Duration::from_secs(3)));
    }

    fn transient() -> RegistryError {
        RegistryError::Timeout {
            what: "w".into(),
            registry: "r".into(),
            repository: "p".into(),
            cause: "stalled".into(),
        }
    }

    #[tokio::test]
    async fn attempts_are_bounded_and_named() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_elapsed: Duration::from_secs(60),
        };
        let mut n = 0;
        let e = p
            .run("checking blob x", || {
                n += 1;
                async { Err::<(), _>(transient()) }
            })
            .await
            .unwrap_err();
        assert_eq!(n, 3);
        let msg = e.to_string();
        assert!(msg.contains("after 3 attempts over"), "{msg}");
        assert!(msg.contains("stalled"), "{msg}");
        assert!(!e.is_retryable());
        // Out of time: no further attempt starts.
        let p = RetryPolicy {
            max_elapsed: Duration::ZERO,
            ..p
        };
        let mut n = 0;
        let e = p
            .run("x", || {
                n += 1;
                async { Err::<(), _>(transient()) }
            })
            .await
            .unwrap_err();
        assert_eq!(n, 1);
        assert!(e.to_string().contains("after 1 attempt over"), "{e}");
        assert!(
            matches!(e.last_attempt(), RegistryError::Timeout { .. }),
            "{e}"
        );
        // No retries configured: the error as it is.
        let e = RetryPolicy::none()
            .run("x", || async { Err::<(), _>(transient()) })
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::Timeout { .. }), "{e}");
    }
}
