//! One intent's way through the server, as structured `tracing` events
//! under the target [`TARGET`] (`logsync::intent`), each keyed by the
//! intent's (client, seq) and stream:
//!
//! | stage        | where                                            | level |
//! |--------------|--------------------------------------------------|-------|
//! | `received`   | a push read from a WebSocket or an HTTP body     | debug |
//! | `committed`  | the transaction holding its event committed      | debug |
//! | `fanned_out` | its event is in the stream's live feed, with the number of subscribers waiting on it | debug |
//! | `decided`    | its outcome answered to the pusher: `appended` at `offset` (`duplicate` for a resend), `rejected` with `code` and `message`, `gap`, `seq_reused` | debug |
//! | `delivered`  | its event sent to one subscriber (the connection's span names which) | trace |
//!
//! A store releases a decision only with its commit, so for an appended
//! intent `committed` and `fanned_out` come before `decided`; a rejected
//! one has only `received` and `decided`. `RUST_LOG=logsync::intent=debug`
//! (or `=trace`) prints them; with the client's lifecycle events
//! (`store.onIntent`, which carries the same seq) they show one action's
//! whole path. The counters beside them are
//! `logsync_intents_received_total`, the decision counters and
//! `logsync_events_delivered_total`.
//!
//! Each push read from a WebSocket also gets its own root span,
//! `intent_push` (stream, client, the first and last seq), entered for
//! `received` and `decided`: with the `otel` feature and
//! `--otlp-endpoint`, one span per push reaches an OpenTelemetry
//! collector, lasting from the frame read to its answer.

use sync_core::{ClientId, Event, Offset, Seq, StreamName};
use tracing::Level;

use crate::store::Outcome;

/// The target of every event of an intent's way.
pub const TARGET: &str = "logsync::intent";

/// Whether the debug events of [`TARGET`] are on (checked once per
/// batch, so a loop over its intents costs nothing when they are off).
fn on(level: Level) -> bool {
    match level {
        Level::TRACE => tracing::enabled!(target: TARGET, Level::TRACE),
        _ => tracing::enabled!(target: TARGET, Level::DEBUG),
    }
}

/// A push's intents, as the server read them (`bytes`: each payload's).
pub fn received<'a>(
    stream: &StreamName,
    client: &ClientId,
    intents: impl IntoIterator<Item = (Seq, usize)> + 'a,
) {
    if !on(Level::DEBUG) {
        return;
    }
    for (seq, bytes) in intents {
        tracing::debug!(target: TARGET, stage = "received", %stream, %client, %seq, bytes);
    }
}

/// A commit's events of one stream, handed to its live feed where
/// `subscribers` wait (none: no feed; a subscriber reads the log).
pub fn committed(stream: &StreamName, events: &[Event], subscribers: usize) {
    if !on(Level::DEBUG) {
        return;
    }
    for e in events {
        let (client, seq, offset) = (&e.client_id, e.seq, e.offset);
        tracing::debug!(target: TARGET, stage = "committed", %stream, %client, %seq, %offset);
        tracing::debug!(target: TARGET, stage = "fanned_out", %stream, %client, %seq, %offset, subscribers);
    }
}

/// The outcomes answered to a push of `client`'s on `stream`.
pub fn decided(stream: &StreamName, client: &ClientId, outcomes: &[Outcome]) {
    if !on(Level::DEBUG) {
        return;
    }
    for o in outcomes {
        match o {
            Outcome::Appended {
                seq,
                offset,
                duplicate,
            } => tracing::debug!(
                target: TARGET, stage = "decided", %stream, %client, %seq,
                outcome = "appended", %offset, duplicate
            ),
            Outcome::Rejected {
                seq,
                code,
                message,
                duplicate,
            } => tracing::debug!(
                target: TARGET, stage = "decided", %stream, %client, %seq,
                outcome = "rejected", %code, message = %crate::logfmt::escape(message), duplicate
            ),
            Outcome::Gap { expected } => tracing::debug!(
                target: TARGET, stage = "decided", %stream, %client,
                outcome = "gap", expected = %expected
            ),
            Outcome::SeqReused { seq, offset } => tracing::debug!(
                target: TARGET, stage = "decided", %stream, %client, %seq,
                outcome = "seq_reused", %offset
            ),
            Outcome::Undecided { seq, code, .. } => tracing::debug!(
                target: TARGET, stage = "decided", %stream, %client, %seq,
                outcome = "undecided", %code
            ),
        }
    }
}

/// Events sent to one subscriber (the current span names the connection).
pub fn delivered<'a>(stream: &StreamName, events: impl Iterator<Item = &'a Event>) {
    if !on(Level::TRACE) {
        return;
    }
    for e in events {
        let (client, seq, offset): (&ClientId, Seq, Offset) = (&e.client_id, e.seq, e.offset);
        tracing::trace!(target: TARGET, stage = "delivered", %stream, %client, %seq, %offset);
    }
}

/// The root span of one WebSocket push (see the module's documentation).
pub fn push_span(stream: &StreamName, client: &ClientId, first: Seq, last: Seq) -> tracing::Span {
    tracing::debug_span!(
        target: TARGET, parent: None, "intent_push",
        %stream, %client, first_seq = %first, last_seq = %last
    )
}
