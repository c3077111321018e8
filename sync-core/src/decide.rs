//! The server's exactly-once rule, as pure code that the server, its stores
//! and the simulation tests all share.
//!
//! The server keeps, per (stream, client), the highest seq it has decided
//! (appended or rejected). An incoming seq is then one of three cases
//! ([`decide`]); a request of several intents is folded over that rule by
//! [`decide_batch`], which also places appended intents at the stream's
//! next offsets. A store only executes the [`Step`]s it answers: it writes
//! the appends and rejections, moves the head and the last decided seq,
//! and looks up the stored outcome of each resend.
//!
//! A resend is the same intent only when its payload is: the store keeps
//! the [`IntentDigest`] of every appended intent, and [`answer_resend`]
//! tells a true resend from a client that reused a seq for another intent.

use sha2::{Digest as _, Sha256};

use crate::types::{Offset, Seq};

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

/// Where one client stands on one stream before (and, after
/// [`decide_batch`], after) a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Position {
    /// The highest seq of the client decided on the stream (0 when none).
    pub last_decided: u64,
    /// The stream's head (0 for a stream never written).
    pub head: Offset,
}

/// One intent offered for a decision.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Offer {
    /// The client's seq.
    pub seq: Seq,
    /// Whether the intent is to be appended (or refused) should its seq be
    /// decided now; a resend keeps its original outcome either way.
    pub accept: bool,
}

/// What a store does for one offered intent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// Decided now: append the intent at `offset` (the head moves to it).
    Append {
        /// The intent's seq.
        seq: Seq,
        /// Its place in the stream.
        offset: Offset,
    },
    /// Decided now: store the refusal.
    Reject {
        /// The intent's seq.
        seq: Seq,
    },
    /// Decided before (in an earlier request, or earlier in this one):
    /// answer with the stored outcome, checked with [`answer_resend`].
    Resend {
        /// The intent's seq.
        seq: Seq,
    },
    /// Beyond the next seq: this and the rest of the offers are not
    /// decided. Always the last step.
    Gap {
        /// The seq expected next.
        expected: Seq,
    },
}

/// Folds [`decide`] over a request's `offers`, in order, from `position`,
/// and moves `position` past what it decided. One step per offer, up to
/// and including a [`Step::Gap`], after which nothing more is looked at.
///
/// Offsets are dense: each appended intent takes the head's next offset.
/// The last decided seq only moves forward, one seq at a time.
pub fn decide_batch(position: &mut Position, offers: impl IntoIterator<Item = Offer>) -> Vec<Step> {
    let offers = offers.into_iter();
    let mut steps = Vec::with_capacity(offers.size_hint().0);
    for offer in offers {
        let seq = offer.seq;
        match decide(position.last_decided, seq) {
            Decision::Append => {
                position.last_decided = seq.get();
                if offer.accept {
                    position.head = Offset(position.head.0.saturating_add(1));
                    steps.push(Step::Append {
                        seq,
                        offset: position.head,
                    });
                } else {
                    steps.push(Step::Reject { seq });
                }
            }
            Decision::Duplicate => steps.push(Step::Resend { seq }),
            Decision::Gap { expected } => {
                steps.push(Step::Gap { expected });
                break;
            }
        }
    }
    steps
}

/// The SHA-256 digest of an intent's payload: what a store keeps of each
/// appended intent to tell a resend of it from another intent under the
/// same seq.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IntentDigest(pub [u8; 32]);

impl IntentDigest {
    /// The digest of `payload`.
    pub fn of(payload: &[u8]) -> IntentDigest {
        IntentDigest(Sha256::digest(payload).into())
    }

    /// The digest from its stored bytes; `None` unless there are 32.
    pub fn from_slice(bytes: &[u8]) -> Option<IntentDigest> {
        bytes.try_into().ok().map(IntentDigest)
    }
}

/// How to answer a resend of an appended intent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ResendAnswer {
    /// The same intent: answer with its offset, as a duplicate.
    Same,
    /// Another intent under a seq that is taken: refuse it with
    /// [`crate::ErrorCode::SeqReused`], naming `offset` (where the intent
    /// that holds the seq is). Nothing is stored; the seq keeps its intent.
    Reused {
        /// The offset of the intent that holds the seq.
        offset: Offset,
    },
}

/// Answers a resend of the intent appended at `offset` with digest
/// `stored`. `offered` is the resent payload's digest, `None` when the
/// request does not carry the payload (a withdrawal or a refused write:
/// nothing to compare, so the original outcome stands).
pub fn answer_resend(
    offset: Offset,
    stored: &IntentDigest,
    offered: Option<&IntentDigest>,
) -> ResendAnswer {
    match offered {
        Some(d) if d != stored => ResendAnswer::Reused { offset },
        _ => ResendAnswer::Same,
    }
}

/// What the ordering point does with an intent made under a schema
/// version, given the reducer's oldest accepted version `min` and its own
/// version `current` ([`crate::Reducer::min_schema_version`],
/// [`crate::Reducer::schema_version`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SchemaVerdict {
    /// Fold it (upcast from its version to `current` first).
    Take,
    /// Older than the reducer still reads: decided as rejected
    /// (`SCHEMA_TOO_OLD`, stored like every rejection); the app must be
    /// reloaded.
    TooOld,
    /// Newer than the reducer: not decided here (its seq stays free for a
    /// node that runs the newer reducer); `SCHEMA_TOO_NEW`.
    TooNew,
}

/// The [`SchemaVerdict`] for an intent of version `schema`, with the
/// reducer reading `min..=current`.
pub fn schema_verdict(schema: u32, min: u32, current: u32) -> SchemaVerdict {
    if schema > current {
        SchemaVerdict::TooNew
    } else if schema < min {
        SchemaVerdict::TooOld
    } else {
        SchemaVerdict::Take
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn schema_versions_outside_the_reducers_range_are_refused() {
        assert_eq!(schema_verdict(1, 1, 1), SchemaVerdict::Take);
        assert_eq!(schema_verdict(2, 1, 1), SchemaVerdict::TooNew);
        assert_eq!(schema_verdict(1, 1, 3), SchemaVerdict::Take);
        assert_eq!(schema_verdict(3, 1, 3), SchemaVerdict::Take);
        assert_eq!(schema_verdict(1, 2, 3), SchemaVerdict::TooOld);
        assert_eq!(schema_verdict(4, 2, 3), SchemaVerdict::TooNew);
        assert_eq!(schema_verdict(u32::MAX, 1, 3), SchemaVerdict::TooNew);
    }

    proptest! {
        #[test]
        fn a_version_is_taken_exactly_in_the_range(schema in 0u32..10, min in 1u32..5, extra in 0u32..5) {
            let current = min + extra;
            let v = schema_verdict(schema, min, current);
            prop_assert_eq!(v == SchemaVerdict::Take, (min..=current).contains(&schema));
            prop_assert_eq!(v == SchemaVerdict::TooNew, schema > current);
        }
    }

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

    #[test]
    fn a_batch_appends_rejects_resends_and_stops_at_a_gap() {
        let mut p = Position {
            last_decided: 2,
            head: Offset(10),
        };
        let offer = |s, accept| Offer {
            seq: seq(s),
            accept,
        };
        let steps = decide_batch(
            &mut p,
            [
                offer(2, true),
                offer(3, true),
                offer(4, false),
                offer(3, true),
                offer(5, true),
                offer(7, true),
                offer(6, true),
            ],
        );
        assert_eq!(
            steps,
            vec![
                Step::Resend { seq: seq(2) },
                Step::Append {
                    seq: seq(3),
                    offset: Offset(11)
                },
                Step::Reject { seq: seq(4) },
                Step::Resend { seq: seq(3) },
                Step::Append {
                    seq: seq(5),
                    offset: Offset(12)
                },
                Step::Gap { expected: seq(6) },
            ]
        );
        assert_eq!(
            p,
            Position {
                last_decided: 5,
                head: Offset(12)
            }
        );
    }

    #[test]
    fn a_resend_is_the_same_intent_only_with_the_same_payload() {
        let d = IntentDigest::of(b"{\"add\":1}");
        assert_eq!(d, IntentDigest::of(b"{\"add\":1}"));
        assert_eq!(answer_resend(Offset(4), &d, Some(&d)), ResendAnswer::Same);
        assert_eq!(answer_resend(Offset(4), &d, None), ResendAnswer::Same);
        let other = IntentDigest::of(b"{\"add\":2}");
        assert_eq!(
            answer_resend(Offset(4), &d, Some(&other)),
            ResendAnswer::Reused { offset: Offset(4) }
        );
        assert_eq!(IntentDigest::from_slice(&d.0), Some(d));
        assert_eq!(IntentDigest::from_slice(&d.0[1..]), None);
    }

    /// A model of one stream with one client, written the long way: what
    /// every seq was decided as, and where appended intents went.
    #[derive(Default)]
    struct Model {
        decided: Vec<bool>,
        events: u64,
    }

    proptest! {
        /// Folding requests one after another equals the model, whatever
        /// the seqs: dense offsets, one decision per seq, never past a gap.
        #[test]
        fn batches_fold_like_the_model(
            requests in proptest::collection::vec(
                proptest::collection::vec((1u64..12, any::<bool>()), 0..8),
                0..8,
            ),
        ) {
            let mut position = Position::default();
            let mut model = Model::default();
            for request in requests {
                let offers: Vec<Offer> = request
                    .iter()
                    .map(|&(s, accept)| Offer { seq: seq(s), accept })
                    .collect();
                let steps = decide_batch(&mut position, offers.iter().copied());
                prop_assert!(steps.len() <= offers.len());
                for (i, (offer, step)) in offers.iter().zip(&steps).enumerate() {
                    let s = offer.seq.get();
                    let next = model.decided.len() as u64 + 1;
                    let want = if s < next {
                        Step::Resend { seq: offer.seq }
                    } else if s == next {
                        model.decided.push(offer.accept);
                        if offer.accept {
                            model.events += 1;
                            Step::Append { seq: offer.seq, offset: Offset(model.events) }
                        } else {
                            Step::Reject { seq: offer.seq }
                        }
                    } else {
                        Step::Gap { expected: seq(next) }
                    };
                    prop_assert_eq!(*step, want);
                    let gap = matches!(step, Step::Gap { .. });
                    if gap {
                        prop_assert_eq!(i, steps.len() - 1);
                    }
                }
                if steps.len() < offers.len() {
                    let stopped = matches!(steps.last(), Some(Step::Gap { .. }));
                    prop_assert!(stopped, "fewer steps than offers only after a gap");
                }
                prop_assert_eq!(position.last_decided, model.decided.len() as u64);
                prop_assert_eq!(position.head, Offset(model.events));
            }
        }
    }
}
