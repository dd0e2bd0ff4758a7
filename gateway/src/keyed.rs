//! One keyed rate limiter with a name, bounded in memory: what the waiting room's limits and the
//! proof-of-work thresholds are built of.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Rate;

/// One keyed limiter and its name (for metrics and logs).
pub struct Keyed<K: Hash + Eq + Clone> {
    name: &'static str,
    quota: Quota,
    // governor cannot empty a keyed limiter in place: the lock lets the sweep swap in a fresh
    // one. Checks only read-lock it, never across an await.
    limiter: RwLock<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    /// `per_second` sustained, `burst` at once; `per_second` is at least 1.
    pub fn new(name: &'static str, per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Self {
            name,
            quota,
            limiter: RwLock::new(RateLimiter::keyed(quota)),
        }
    }

    pub fn of(name: &'static str, rate: Rate) -> Self {
        Self::new(name, rate.per_second, rate.burst)
    }

    /// Counts one request for `key`; when it is over, how long until it would be allowed.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.limiter
            .read()
            .expect("a limiter check never panics")
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets idle keys; empties the limiter if it still holds more than `max_keys`.
    pub fn sweep(&self, max_keys: usize) {
        let keys = {
            let limiter = self.limiter.read().expect("a limiter check never panics");
            limiter.retain_recent();
            limiter.shrink_to_fit();
            limiter.len()
        };
        if keys > max_keys {
            tracing::warn!(
                limiter = self.name,
                keys,
                max_keys,
                "rate limiter over its key cap; forgetting every key"
            );
            metrics::counter!("rate_limiter_resets_total", "limiter" => self.name).increment(1);
            *self.limiter.write().expect("a limiter check never panics") =
                RateLimiter::keyed(self.quota);
        }
    }

    pub fn len(&self) -> usize {
        self.limiter
            .read()
            .expect("a limiter check never panics")
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
