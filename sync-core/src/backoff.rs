//! Reconnect delays: exponential backoff with jitter, shared by every
//! client transport. Pure: the caller brings the randomness (a number in
//! `[0, 1)`) and the clock.
//!
//! The n-th retry (from 0) waits a random time in `[cap/2, cap]` where
//! `cap = min(max, min * 2^n)`. Keeping half of the delay fixed means a
//! client never hammers a server that just came back, while the random half
//! spreads a crowd of clients that all lost the same server at once.

/// Exponential backoff with jitter.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    min_ms: u32,
    max_ms: u32,
    attempt: u32,
}

impl Backoff {
    /// Delays grow from `min_ms` to `max_ms` (both at least 1, and
    /// `max_ms >= min_ms`; other values are raised to fit).
    pub fn new(min_ms: u32, max_ms: u32) -> Self {
        let min_ms = min_ms.max(1);
        Backoff {
            min_ms,
            max_ms: max_ms.max(min_ms),
            attempt: 0,
        }
    }

    /// The delay before the next attempt, given `random` in `[0, 1)`;
    /// counts the attempt.
    pub fn next_delay_ms(&mut self, random: f64) -> u32 {
        let cap = u64::from(self.min_ms)
            .saturating_mul(1u64 << self.attempt.min(31))
            .min(u64::from(self.max_ms));
        self.attempt = self.attempt.saturating_add(1);
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let half = cap as f64 / 2.0;
        (half + half * random) as u32
    }

    /// A connection succeeded: the next failure starts from `min_ms` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(500, 30_000);
        let lows: alloc::vec::Vec<u32> = (0..10).map(|_| b.next_delay_ms(0.0)).collect();
        assert_eq!(
            lows,
            [250, 500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000, 15_000]
        );
        let mut b = Backoff::new(500, 30_000);
        let highs: alloc::vec::Vec<u32> = (0..8).map(|_| b.next_delay_ms(0.999_999)).collect();
        assert_eq!(highs[0], 499);
        assert_eq!(highs[7], 29_999);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay_ms(0.5), 375);
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let mut b = Backoff::new(0, 0);
        for _ in 0..100 {
            assert!(b.next_delay_ms(f64::NAN) <= 1);
        }
        // Out-of-range randomness is clamped: 2.0 acts as 1.0 (the cap).
        let mut b = Backoff::new(u32::MAX, 1);
        assert_eq!(b.next_delay_ms(2.0), u32::MAX);
        assert_eq!(b.next_delay_ms(-1.0), u32::MAX / 2);
    }
}
