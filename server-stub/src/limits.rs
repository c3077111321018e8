//! The per-connection intent rate: a token bucket that slows a client a
//! little over its rate and disconnects one far over it.
//!
//! Each intent (pushed or withdrawn) takes one token; tokens come back at
//! `rate` per second up to `burst`. A push that finds too few tokens is
//! *paced*: the connection stops reading until the tokens it needs have
//! come back, as long as that takes at most [`MAX_PACE`]. That is the same
//! back-pressure a busy server applies anyway, so an honest client (one
//! draining a large offline outbox, say) only goes slower. A push that
//! would need a longer wait is taken as far as the tokens in hand go, and
//! the connection ends with `RATE_LIMITED`; the client reconnects after a
//! backoff and resends what was not acknowledged, so nothing is lost
//! either way.

use std::time::Duration;

use tokio::time::Instant;

/// The longest a push is held back before the connection is refused.
pub const MAX_PACE: Duration = Duration::from_secs(1);

/// What to do with a push of `k` intents.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Admit {
    /// Take it now.
    Now,
    /// Take it after this wait (the tokens are spoken for already).
    After(Duration),
    /// Take only the first `n` intents, then end the connection.
    Partial(usize),
}

/// One connection's token bucket.
#[derive(Clone, Debug)]
pub(crate) struct IntentRate {
    rate: f64,
    burst: f64,
    /// May go below zero while a paced push waits for its tokens.
    tokens: f64,
    last: Instant,
}

impl IntentRate {
    /// A full bucket; `None` when the limit is off (`rate` 0).
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Option<IntentRate> {
        (rate > 0).then(|| IntentRate {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        })
    }

    /// A full bucket of `burst` tokens refilled at `rate` per second (a
    /// fraction for slow budgets, e.g. streams per hour); `None` when
    /// `rate` is 0 (no limit).
    pub(crate) fn per_second(rate: f64, burst: f64, now: Instant) -> Option<IntentRate> {
        (rate > 0.0).then(|| IntentRate {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: now,
        })
    }

    /// Takes `k` tokens when the bucket holds them; never waits.
    pub(crate) fn try_take(&mut self, k: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= k {
            self.tokens -= k;
            true
        } else {
            false
        }
    }

    /// Decides a push of `k` intents arriving at `now`.
    pub(crate) fn admit(&mut self, k: usize, now: Instant) -> Admit {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let k_f = k as f64;
        if self.tokens >= k_f {
            self.tokens -= k_f;
            return Admit::Now;
        }
        let wait = (k_f - self.tokens) / self.rate;
        if wait <= MAX_PACE.as_secs_f64() {
            self.tokens -= k_f;
            return Admit::After(Duration::from_secs_f64(wait));
        }
        let n = self.tokens.max(0.0).floor();
        self.tokens -= n;
        Admit::Partial(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_when_the_rate_is_zero() {
        assert!(IntentRate::new(0, 10, Instant::now()).is_none());
    }

    #[test]
    fn burst_then_pacing_then_refusal() {
        let t0 = Instant::now();
        let mut r = IntentRate::new(10, 20, t0).expect("on");
        // The burst goes at once.
        assert_eq!(r.admit(20, t0), Admit::Now);
        // 5 more need half a second of refill: paced.
        assert_eq!(r.admit(5, t0), Admit::After(Duration::from_millis(500)));
        // Those tokens are spoken for: after the wait the bucket is empty.
        let t1 = t0 + Duration::from_millis(500);
        match r.admit(10, t1) {
            Admit::After(d) => assert!((d.as_secs_f64() - 1.0).abs() < 1e-9, "{d:?}"),
            other => panic!("{other:?}"),
        }
        // Far over the rate: only the tokens in hand (none) go.
        assert_eq!(r.admit(50, t1), Admit::Partial(0));
        // After a long rest the bucket is full again, not more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(r.admit(35, t2), Admit::Partial(20));
        assert_eq!(r.admit(1, t2 + Duration::from_secs(60)), Admit::Now);
    }

    #[test]
    fn a_push_within_the_pace_bound_is_never_refused() {
        let t0 = Instant::now();
        let mut r = IntentRate::new(100, 100, t0).expect("on");
        // A sustained stream of pushes at twice the rate: each is paced,
        // none refused, and the waits add up to the rate.
        let mut now = t0;
        let mut waited = Duration::ZERO;
        for _ in 0..100 {
            match r.admit(2, now) {
                Admit::Now => {}
                Admit::After(d) => {
                    waited += d;
                    now += d;
                }
                Admit::Partial(n) => panic!("refused after {n}"),
            }
        }
        // 200 intents at 100/s with 100 in the bucket: about one second.
        assert!((waited.as_secs_f64() - 1.0).abs() < 0.05, "{waited:?}");
    }
}
