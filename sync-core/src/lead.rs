//! When a tab that follows another tab's connection (see the `outbox`
//! module) takes the connection over: the follower's watch of the leader,
//! as a pure state machine fed with the time (ms) and with what the leader
//! said. The adapter asks [`LeaderWatch::tick`] every [`PING_MS`] and does
//! what it answers (post a ping, steal the lock).
//!
//! The rules:
//! - A follower that has not heard the leader for [`PING_MS`] pings it,
//!   once; any word of the leader answers the ping.
//! - Only a ping left unanswered for the timeout takes the connection
//!   over. A follower whose own timer was held back (a background tab the
//!   browser throttles for a minute) pings first instead of taking over a
//!   leader it merely did not hear.
//! - A follower whose own check ran late (by [`PING_MS`] or more) was
//!   stalled itself (frozen, throttled, starved of the CPU): what it did
//!   not hear meanwhile proves nothing, so it pings again rather than take
//!   over. Only once in a row: a follower whose every check runs late (a
//!   background tab throttled for good) takes over at its next check.
//! - A leader's word counts only when its leadership id is at least the
//!   highest heard: an old leader that wakes up cannot speak as leader
//!   again (leaderships are fenced by their ids).

/// How often a follower checks on the leader, and how long a silence is
/// before it pings (ms).
pub const PING_MS: u32 = 1000;

/// What a follower does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Nothing.
    Wait,
    /// Ping the leader.
    Ping,
    /// The leader left a ping unanswered for the timeout: take the
    /// connection over.
    TakeOver,
}

/// A follower's watch of the leader (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LeaderWatch {
    id: u64,
    online: bool,
    heard_ms: f64,
    pinged_ms: Option<f64>,
    /// The last check, and whether it ran late.
    ticked_ms: Option<f64>,
    late: bool,
}

impl LeaderWatch {
    /// Starts watching at `now_ms` (as if the leader had just been heard,
    /// offline).
    pub fn new(now_ms: f64) -> Self {
        LeaderWatch {
            heard_ms: now_ms,
            ..LeaderWatch::default()
        }
    }

    /// The leader with leadership id `id` says whether it is online, at
    /// `now_ms`. Returns whether it counts (its id is not below the
    /// highest heard).
    pub fn heard(&mut self, id: u64, online: bool, now_ms: f64) -> bool {
        if id < self.id {
            return false;
        }
        self.id = id;
        self.online = online;
        self.heard_ms = now_ms;
        self.pinged_ms = None;
        true
    }

    /// The leader (as far as this tab knows) is online.
    pub fn online(&self) -> bool {
        self.online
    }

    /// The highest leadership id heard.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A new leadership id for this tab, which got the connection at
    /// `now_ms`: the time, and above every id heard. (A tab that takes over
    /// a silent leader does so at least the timeout after that one began,
    /// on the same clock; one that follows a closed leader heard its id.)
    pub fn lead(&mut self, now_ms: f64) -> u64 {
        let id = (now_ms as u64).max(self.id + 1);
        self.id = id;
        id
    }

    /// The leader went away (this tab lost the connection, or gave it
    /// up): not online; the silence counts from `now_ms`.
    pub fn lost(&mut self, now_ms: f64) {
        self.online = false;
        self.heard_ms = now_ms;
        self.pinged_ms = None;
    }

    /// The check at `now_ms` with take-over after `timeout_ms`.
    pub fn tick(&mut self, now_ms: f64, timeout_ms: u32) -> Tick {
        let late = self
            .ticked_ms
            .is_some_and(|t| now_ms - t >= 2.0 * f64::from(PING_MS));
        self.ticked_ms = Some(now_ms);
        let stalled = late && !self.late;
        self.late = late;
        if stalled && self.pinged_ms.is_some() {
            // Stalled too: ask again before taking anything over.
            self.pinged_ms = Some(now_ms);
            return Tick::Ping;
        }
        match self.pinged_ms {
            Some(at) if now_ms - at >= f64::from(timeout_ms) => {
                self.lost(now_ms);
                Tick::TakeOver
            }
            Some(_) => Tick::Wait,
            None if now_ms - self.heard_ms >= f64::from(PING_MS) => {
                self.pinged_ms = Some(now_ms);
                Tick::Ping
            }
            None => Tick::Wait,
        }
    }
}

/// A leader's status as one number on the tabs' channel: its leadership
/// id × 2, + 1 when online.
pub fn encode_status(id: u64, online: bool) -> f64 {
    (id.saturating_mul(2) + u64::from(online)) as f64
}

/// The leadership id and whether online, from [`encode_status`]'s number.
pub fn decode_status(n: f64) -> (u64, bool) {
    let n = n as u64;
    (n / 2, n % 2 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_leader_is_pinged_then_taken_over_after_the_timeout() {
        let mut w = LeaderWatch::new(0.0);
        assert!(w.heard(5, true, 0.0));
        assert_eq!(w.tick(500.0, 3000), Tick::Wait);
        assert_eq!(w.tick(1000.0, 3000), Tick::Ping);
        assert_eq!(w.tick(2000.0, 3000), Tick::Wait, "one ping at a time");
        assert_eq!(w.tick(3999.0, 3000), Tick::Wait);
        assert_eq!(w.tick(4000.0, 3000), Tick::TakeOver);
        assert!(!w.online());
        assert_eq!(w.tick(4500.0, 3000), Tick::Wait, "the silence starts again");
    }

    #[test]
    fn an_answered_ping_is_no_take_over() {
        let mut w = LeaderWatch::new(0.0);
        assert_eq!(w.tick(1000.0, 3000), Tick::Ping);
        assert!(w.heard(1, true, 1001.0));
        assert_eq!(w.tick(4100.0, 3000), Tick::Ping, "silent again: a new ping");
        assert_eq!(w.tick(7000.0, 3000), Tick::Wait);
    }

    #[test]
    fn a_follower_whose_timer_was_held_back_pings_before_it_takes_over() {
        let mut w = LeaderWatch::new(0.0);
        // A background tab's first check a minute later.
        assert_eq!(w.tick(60_000.0, 3000), Tick::Ping);
        assert!(w.heard(1, true, 60_010.0));
        assert_eq!(w.tick(120_000.0, 3000), Tick::Ping);
    }

    /// Found by the browser chaos soak: a whole browser stalled for
    /// seconds (the machine busy) made a follower take over a leader that
    /// was stalled just the same, and for a moment the database had two
    /// connections.
    #[test]
    fn a_follower_stalled_itself_pings_again_before_it_takes_over() {
        let mut w = LeaderWatch::new(0.0);
        assert_eq!(w.tick(1000.0, 3000), Tick::Ping);
        // The next check runs 5 s late: the leader may have been stalled
        // just as long.
        assert_eq!(w.tick(7000.0, 3000), Tick::Ping, "asks again");
        assert!(w.heard(1, true, 7050.0), "and the leader answers");
        assert_eq!(w.tick(8000.0, 3000), Tick::Wait);
        // Checks on time again: a silent leader is taken over as ever.
        assert_eq!(w.tick(9000.0, 3000), Tick::Ping);
        assert_eq!(w.tick(10_000.0, 3000), Tick::Wait);
        assert_eq!(w.tick(11_000.0, 3000), Tick::Wait);
        assert_eq!(w.tick(12_000.0, 3000), Tick::TakeOver);
    }

    #[test]
    fn a_follower_throttled_for_good_still_takes_over() {
        let mut w = LeaderWatch::new(0.0);
        // A background tab checked once a minute.
        assert_eq!(w.tick(60_000.0, 3000), Tick::Ping);
        assert_eq!(w.tick(120_000.0, 3000), Tick::Ping, "late once: asks again");
        assert_eq!(w.tick(180_000.0, 3000), Tick::TakeOver, "late every time");
    }

    #[test]
    fn an_older_leadership_is_not_listened_to() {
        let mut w = LeaderWatch::new(0.0);
        assert!(w.heard(10, false, 0.0));
        assert!(!w.heard(9, true, 1.0), "an old leader woke up");
        assert!(!w.online());
        assert!(w.heard(10, true, 2.0));
        assert!(w.online());
        let mine = w.lead(5.0);
        assert_eq!(mine, 11, "above every id heard, even with a clock behind");
        assert!(!w.heard(10, true, 6.0));
    }

    #[test]
    fn a_status_survives_its_encoding() {
        for (id, online) in [(0, false), (1, true), (1_796_650_000_000, true)] {
            assert_eq!(decode_status(encode_status(id, online)), (id, online));
        }
    }
}
