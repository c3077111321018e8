//! The server's exactly-once rule, as pure code that the server, its stores
//! and the simulation tests all share.
//!
//! The server keeps, per (stream, client), the highest seq it has decided
//! (appended or rejected). An incoming seq is then one of three cases.

use crate::types::Seq;

/// What to do with an incoming intent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    /// The next seq: decide it now (append, or reject).
    Append,
    /// Already decided: answer with the original result (offset or rejection),
    /// append nothing.
    Duplicate,
    /// Beyond the next seq: refuse and tell the client which seq comes next.
    Gap {
        /// The seq the server expects.
        expected: Seq,
    },
}

/// Decides an incoming `seq` given the highest seq already decided for its
/// (stream, client), `last_decided` (0 when none).
pub fn decide(last_decided: u64, seq: Seq) -> Decision {
    let s = seq.get();
    if s <= last_decided {
        Decision::Duplicate
    } else if s == last_decided.saturating_add(1) {
        Decision::Append
    } else {
        Decision::Gap {
            // last_decided + 1 >= 1, and `s` > it, so it cannot overflow.
            expected: Seq::new(last_decided + 1).unwrap_or(Seq::FIRST),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u64) -> Seq {
        Seq::new(n).unwrap()
    }

    #[test]
    fn three_cases() {
        assert_eq!(decide(0, seq(1)), Decision::Append);
        assert_eq!(decide(0, seq(2)), Decision::Gap { expected: seq(1) });
        assert_eq!(decide(5, seq(6)), Decision::Append);
        assert_eq!(decide(5, seq(5)), Decision::Duplicate);
        assert_eq!(decide(5, seq(1)), Decision::Duplicate);
        assert_eq!(decide(5, seq(9)), Decision::Gap { expected: seq(6) });
        assert_eq!(decide(u64::MAX, seq(u64::MAX)), Decision::Duplicate);
    }
}
