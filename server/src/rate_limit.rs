//! Sliding-window counters of failures (wrong admin passwords, wrong PINs) per key.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys beyond this many are pruned of expired windows, bounding memory under a flood.
const PRUNE_ABOVE: usize = 10_000;

pub struct RateLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        RateLimiter {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` once `key` has used up its failures in the window.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get_mut(key) else {
            return Ok(());
        };
        self.forget_old(times, now);
        if times.len() < self.max_failures {
            return Ok(());
        }
        let oldest = *times.front().expect("full window is not empty");
        let wait = self.window.saturating_sub(now - oldest);
        Err(wait.as_secs().max(1))
    }

    pub fn record_failure(&self, key: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, times| times.back().is_some_and(|t| now - *t < self.window));
        }
        let times = map.entry(key.to_owned()).or_default();
        self.forget_old(times, now);
        times.push_back(now);
    }

    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn forget_old(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
    }
}

/// The server's limiters, managed as Rocket state.
pub struct Limiters {
    /// Wrong admin passwords, keyed by `user:<name>` and `ip:<address>`.
    pub logins: RateLimiter,
    /// Wrong PINs on the API, keyed by `device:<id>` and `ip:<address>`.
    pub pins: RateLimiter,
}

impl Default for Limiters {
    fn default() -> Self {
        Limiters {
            logins: RateLimiter::new(5, Duration::from_secs(15 * 60)),
            pins: RateLimiter::new(10, Duration::from_secs(60)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_within_the_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.check("k").is_ok());
            limiter.record_failure("k");
        }
        let wait = limiter.check("k").unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(limiter.check("other").is_ok());
        limiter.clear("k");
        assert!(limiter.check("k").is_ok());
    }

    #[test]
    fn failures_expire_after_the_window() {
        let limiter = RateLimiter::new(1, Duration::from_millis(50));
        limiter.record_failure("k");
        assert!(limiter.check("k").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.check("k").is_ok());
    }
}
