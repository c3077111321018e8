#![doc = include_str!("../README.md")]

extern crate alloc;

pub mod backoff;
pub mod client;
pub mod connect;
pub mod decide;
pub mod error;
pub mod json;
pub mod lead;
#[cfg(feature = "legacy")]
pub mod legacy;
pub mod mux;
pub mod outbox;
pub mod protocol;
pub mod reducer;
pub mod replica;
pub mod types;

pub use backoff::Backoff;
pub use client::{Effect, Phase, SyncClient};
pub use connect::{connect_failure, FailureReports, Probe};
pub use decide::{
    answer_resend, decide, decide_batch, schema_verdict, Decision, IntentDigest, Offer, Position,
    ResendAnswer, SchemaVerdict, Step,
};
pub use error::{CoreError, ErrorCode};
pub use outbox::{Done, EventsWrite, Finished, NewIntent, Outbox, OutboxEntry, Stored, Work};
pub use protocol::{
    ClientMsg, PushIntent, ServerMsg, SnapshotResume, DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
#[cfg(feature = "views")]
pub use protocol::{ViewChange, ViewKnown};
pub use reducer::{Folded, Meta, ReduceError, Reducer};
pub use replica::{Applied, LocalId, Pending, Replica};
pub use types::{
    sort_by_seq, ClientId, Epoch, Event, Offset, Seq, StreamName, MAX_STREAM_NAME_LEN,
    MAX_SUBJECT_LEN,
};
