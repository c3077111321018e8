//! Fan-out: one in-memory feed per followed stream, and the subscription
//! cursor that reads from it or, when behind, from the log.
//!
//! Each committed batch of events is encoded once, into an `Events` frame
//! whose bytes every subscriber at that point sends unchanged. A feed keeps
//! only a bounded window of recent batches. A subscription is a cursor
//! (the next offset it needs) and a loop: take the batch holding the
//! cursor from the feed; if the cursor is older than the window, read a
//! bounded page from the log; if it is past the head, wait. A subscriber
//! that stops reading only stops its own loop (its connection's queue is
//! full); it holds no batches beyond that queue, and when it reads again it
//! catches up from the log at its own pace and rejoins the feed. One cursor
//! drives every step, so there is never a gap or a repeat at a switch.
//!
//! A subscriber that is caught up takes one batch at a time and sends the
//! shared frame. One that has fallen behind — the window holds several
//! batches past its cursor, because its connection or the whole server
//! was busy — takes all of them at once (up to [`COALESCE_BYTES`] and the
//! frame limit) as one `Events` frame, built by copying the events'
//! encodings out of the shared frames (nothing is encoded again). Under
//! load, frames then grow instead of multiplying: the cost of fan-out is
//! the number of frames (a system call and a wake-up each), not their
//! size, so a server that falls behind catches up instead of falling
//! further behind.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use sync_core::protocol::{
    encode_event, encode_events_frame, encode_events_frame_of, encode_events_frame_with_ranges,
    EVENTS_FRAME_OVERHEAD as FRAME_OVERHEAD,
};
use sync_core::{Event, Offset, StreamName};
use tokio::sync::watch;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{AppendListener, LogStore, Page, ReadLimits, StoredSnapshot};

/// Most bytes of events a subscriber that is behind takes into one frame
/// (less when the frame limit is lower). Large enough that a frame carries
/// hundreds of small events, small enough that building it is a short
/// copy and a connection's queue holds several.
pub const COALESCE_BYTES: usize = 64 << 10;

/// Committed events of one stream, with their `Events` frame encoded once.
#[derive(Debug)]
pub struct Batch {
    /// Offset of the first event.
    pub first: Offset,
    /// Offset of the last event.
    pub last: Offset,
    /// The events (for transports that re-encode, e.g. SSE).
    pub events: Vec<Event>,
    /// `ServerMsg::Events { stream, events, head: last }`, encoded.
    pub frame: Bytes,
    /// Where each event's encoding starts inside `frame`, and (last
    /// entry) where the last one ends: frames for subscribers that skip
    /// some events or join several batches copy these ranges.
    bounds: Vec<u32>,
}

impl Batch {
    fn bytes(&self) -> usize {
        self.frame.len()
            + self.bounds.len() * 4
            + self
                .events
                .iter()
                .map(|e| e.payload.len() + 64)
                .sum::<usize>()
    }

    /// The encoding of event `i` (0 = the first) as it sits in `frame`.
    fn encoded(&self, i: usize) -> &[u8] {
        match (self.bounds.get(i), self.bounds.get(i + 1)) {
            (Some(&a), Some(&b)) => self.frame.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Bytes of the encodings of the events from `skip` on.
    fn encoded_len(&self, skip: usize) -> usize {
        match (self.bounds.get(skip), self.bounds.last()) {
            (Some(&a), Some(&b)) => b.saturating_sub(a) as usize,
            _ => 0,
        }
    }
}

/// The recent history of one stream and its head.
pub struct Feed {
    stream: StreamName,
    window: Mutex<Window>,
    head: watch::Sender<Offset>,
    /// The stream's latest snapshot made on this node, `(offset, hash)`
    /// (see [`Subscription::checkpoint`]); its offset also in
    /// `checkpoint_at`, which subscribers read first.
    checkpoint: Mutex<Option<(Offset, u64, u32)>>,
    checkpoint_at: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Window {
    batches: VecDeque<Arc<Batch>>,
    /// The last few frames made for subscribers that were behind, each
    /// holding events `from..=to` (whole commits after `from`). A
    /// subscriber whose cursor is at a kept `from` takes exactly that run
    /// (the commits after it come in its next frame), so subscribers that
    /// fell behind together — under load they usually do — send the same
    /// bytes, built once. Counted in `bytes`; the first to go when the
    /// window needs room.
    joined: VecDeque<Joined>,
    bytes: usize,
    /// The limit of the last `push`.
    limit: usize,
}

/// A frame of events `from..=to` made for a subscriber that was behind.
struct Joined {
    from: Offset,
    to: Offset,
    frame: Bytes,
}

/// Joined frames kept per feed.
const JOINED_KEPT: usize = 4;

impl Window {
    /// Drops the oldest kept frames, then the oldest batches (always
    /// keeping the newest batch), until `extra` more bytes fit in `limit`.
    fn make_room(&mut self, extra: usize, limit: usize) {
        while self.bytes + extra > limit {
            if let Some(j) = self.joined.pop_front() {
                self.bytes -= j.frame.len();
            } else if self.batches.len() > 1 {
                if let Some(old) = self.batches.pop_front() {
                    self.bytes -= old.bytes();
                }
            } else {
                break;
            }
        }
    }
}

enum Lookup {
    /// The batch holding the cursor, how many of its events to skip, and
    /// the batches right after it that go into the same frame (none when
    /// the subscriber is caught up).
    Live(Arc<Batch>, usize, Vec<Arc<Batch>>),
    /// The cursor is at or below the head but not in the window: read the log.
    Behind,
    /// The cursor is past the head: wait.
    Ahead,
}

impl Feed {
    /// The stream.
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    /// A snapshot of the stream at `offset` whose state hashes `hash` was
    /// stored under schema version `schema` (before its events are
    /// pushed to the feed).
    fn set_checkpoint(&self, offset: Offset, hash: u64, schema: u32) {
        if let Ok(mut c) = self.checkpoint.lock() {
            if c.is_none_or(|(o, _, _)| o < offset) {
                *c = Some((offset, hash, schema));
                self.checkpoint_at.store(offset.0, Relaxed);
            }
        }
    }

    /// The latest checkpoint, when it is above `above`.
    fn checkpoint_above(&self, above: Offset) -> Option<(Offset, u64, u32)> {
        if self.checkpoint_at.load(Relaxed) <= above.0 {
            return None;
        }
        let c = *self.checkpoint.lock().ok()?;
        c.filter(|(o, _, _)| *o > above)
    }

    /// The highest offset known to be durable.
    pub fn head(&self) -> Offset {
        *self.head.borrow()
    }

    /// A receiver of the head's changes (for a follower of the stream's
    /// state, which needs no events).
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<Offset> {
        self.head.subscribe()
    }

    /// Raises the known head (never lowers it).
    fn raise_head(&self, head: Offset) {
        self.head.send_if_modified(|h| {
            if head > *h {
                *h = head;
                true
            } else {
                false
            }
        });
    }

    /// Where `next` is, taking with its batch the batches after it whose
    /// events fit in `budget` bytes together with it.
    fn lookup(&self, next: Offset, budget: usize) -> Lookup {
        let head = self.head();
        if next > head {
            return Lookup::Ahead;
        }
        let Ok(window) = self.window.lock() else {
            return Lookup::Behind;
        };
        let (Some(front), Some(back)) = (window.batches.front(), window.batches.back()) else {
            return Lookup::Behind;
        };
        if next < front.first || next > back.last {
            return Lookup::Behind;
        }
        // Batches are contiguous: find the one holding `next`.
        let i = window.batches.partition_point(|b| b.last < next);
        let Some(b) = window.batches.get(i).filter(|b| b.first <= next) else {
            return Lookup::Behind;
        };
        let skip = (next.0 - b.first.0) as usize;
        // Another subscriber at this cursor made a frame already: end
        // where it ends, to send the same bytes.
        let end = window
            .joined
            .iter()
            .find(|j| j.from == next && j.to >= b.last)
            .map_or(Offset(u64::MAX), |j| j.to);
        let mut size = b.encoded_len(skip);
        let mut more = Vec::new();
        for later in window.batches.range(i + 1..) {
            size += later.encoded_len(0);
            if size > budget || later.last > end {
                break;
            }
            more.push(later.clone());
        }
        Lookup::Live(b.clone(), skip, more)
    }

    fn push(&self, batch: Batch, limit: usize) {
        let last = batch.last;
        if let Ok(mut w) = self.window.lock() {
            w.limit = limit;
            if let Some(back) = w.batches.back() {
                if back.last.next() != batch.first {
                    // Not contiguous (the feed missed commits made before it
                    // existed, or another node's): start a new window; older
                    // cursors read the log.
                    w.batches.clear();
                    w.joined.clear();
                    w.bytes = 0;
                }
            }
            w.bytes += batch.bytes();
            w.batches.push_back(Arc::new(batch));
            w.make_room(0, limit);
        }
        self.raise_head(last);
    }

    /// The frame of events `from..=to` made for another subscriber, if it
    /// is still kept.
    fn joined(&self, from: Offset, to: Offset) -> Option<Bytes> {
        let w = self.window.lock().ok()?;
        w.joined
            .iter()
            .find(|j| j.from == from && j.to == to)
            .map(|j| j.frame.clone())
    }

    /// Keeps `frame` (events `from..=to`) for the next subscribers at the
    /// same place, within the window's limit: older kept frames, then the
    /// oldest batches make room, as for a new commit.
    fn keep_joined(&self, from: Offset, to: Offset, frame: &Bytes) {
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        // Only for a run the window still holds (a subscriber's cursor
        // can only land on it from there).
        if w.batches.front().is_none_or(|b| b.first > from)
            || w.joined.iter().any(|j| j.from == from)
        {
            return;
        }
        if w.joined.len() >= JOINED_KEPT {
            if let Some(j) = w.joined.pop_front() {
                w.bytes -= j.frame.len();
            }
        }
        let limit = w.limit;
        w.make_room(frame.len(), limit);
        if w.bytes + frame.len() <= limit {
            w.bytes += frame.len();
            w.joined.push_back(Joined {
                from,
                to,
                frame: frame.clone(),
            });
        }
    }
}

/// All feeds, and the listener the store reports commits to.
pub struct Hub {
    feeds: Mutex<HashMap<StreamName, Weak<Feed>>>,
    window_bytes: usize,
    total_bytes: usize,
    max_frame_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub keeping at most `window_bytes` of recent batches per followed
    /// stream and about `total_bytes` for all of them (each feed gets an
    /// equal share, and always keeps its newest batch), each frame at most
    /// `max_frame_bytes`.
    pub fn new(
        window_bytes: usize,
        total_bytes: usize,
        max_frame_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Hub {
            feeds: Mutex::new(HashMap::new()),
            window_bytes,
            total_bytes,
            max_frame_bytes,
            metrics,
        }
    }

    /// The feed of `stream`, made on first use; it lives as long as someone
    /// holds it.
    pub fn feed(&self, stream: &StreamName) -> Arc<Feed> {
        let Ok(mut feeds) = self.feeds.lock() else {
            // A poisoned map only means a panic elsewhere; a private feed
            // still works (it learns the head from the log).
            return Arc::new(new_feed(stream));
        };
        if let Some(f) = feeds.get(stream).and_then(Weak::upgrade) {
            return f;
        }
        // Forget feeds nobody follows any more before the map grows.
        if feeds.len() >= 64 && feeds.len().is_power_of_two() {
            feeds.retain(|_, w| w.strong_count() > 0);
        }
        let f = Arc::new(new_feed(stream));
        feeds.insert(stream.clone(), Arc::downgrade(&f));
        f
    }

    /// The feed of `stream` if someone follows it, and the window size it
    /// may keep now.
    fn existing(&self, stream: &StreamName) -> Option<(Arc<Feed>, usize)> {
        let mut feeds = self.feeds.lock().ok()?;
        let share = self.total_bytes / feeds.len().max(1);
        match feeds.get(stream).map(Weak::upgrade) {
            Some(Some(f)) => Some((f, self.window_bytes.min(share))),
            Some(None) => {
                feeds.remove(stream);
                None
            }
            None => None,
        }
    }

    /// Splits `events` into batches whose frames fit the frame limit.
    fn batches(&self, stream: &StreamName, events: &[Event]) -> Vec<Batch> {
        let budget = self.max_frame_bytes.saturating_sub(FRAME_OVERHEAD);
        let mut out = Vec::new();
        let mut encoded: Vec<Vec<u8>> = Vec::new();
        let mut size = 0;
        let mut start = 0;
        for (i, e) in events.iter().enumerate() {
            let bytes = encode_event(e);
            if !encoded.is_empty() && size + bytes.len() > budget {
                out.push(make_batch(stream, &events[start..i], &encoded));
                encoded.clear();
                size = 0;
                start = i;
            }
            size += bytes.len();
            encoded.push(bytes);
        }
        if !encoded.is_empty() {
            out.push(make_batch(stream, &events[start..], &encoded));
        }
        out
    }
}

fn new_feed(stream: &StreamName) -> Feed {
    Feed {
        stream: stream.clone(),
        window: Mutex::new(Window::default()),
        head: watch::channel(Offset::ZERO).0,
        checkpoint: Mutex::new(None),
        checkpoint_at: std::sync::atomic::AtomicU64::new(0),
    }
}

fn make_batch(stream: &StreamName, events: &[Event], encoded: &[Vec<u8>]) -> Batch {
    let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let first = events.first().map(|e| e.offset).unwrap_or_default();
    let last = events.last().map(|e| e.offset).unwrap_or_default();
    let (frame, ranges) = encode_events_frame_with_ranges(stream, &refs, last);
    let mut bounds: Vec<u32> = ranges.iter().map(|r| r.start as u32).collect();
    bounds.push(ranges.last().map_or(0, |r| r.end) as u32);
    Batch {
        first,
        last,
        events: events.to_vec(),
        frame: Bytes::from(frame),
        bounds,
    }
}

impl AppendListener for Hub {
    fn checkpoint(&self, stream: &StreamName, offset: Offset, hash: u64, schema: u32) {
        if let Some((feed, _)) = self.existing(stream) {
            feed.set_checkpoint(offset, hash, schema);
        }
    }

    fn appended(&self, stream: &StreamName, events: &[Event]) {
        // Nobody follows the stream: nothing to encode. A feed made later
        // learns the head from its first read of the log.
        let Some((feed, limit)) = self.existing(stream) else {
            crate::trace::committed(stream, events, 0);
            return;
        };
        crate::trace::committed(stream, events, feed.head.receiver_count());
        for batch in self.batches(stream, events) {
            feed.push(batch, limit);
        }
    }

    fn head_moved(&self, stream: &StreamName, head: Offset) {
        if let Some((feed, _)) = self.existing(stream) {
            feed.raise_head(head);
        }
    }

    fn follows(&self, stream: &StreamName) -> bool {
        self.existing(stream).is_some()
    }

    fn followed(&self) -> Vec<(StreamName, Offset)> {
        let Ok(feeds) = self.feeds.lock() else {
            return Vec::new();
        };
        feeds
            .iter()
            .filter_map(|(s, f)| Some((s.clone(), f.upgrade()?.head())))
            .collect()
    }
}

/// What a subscription yields next.
pub enum Chunk {
    /// Batches from the feed: `batch`, whose first `skip` events the
    /// subscriber already has, then `more` (consecutive; empty when the
    /// subscriber is caught up).
    Live {
        /// The shared batch holding the cursor.
        batch: Arc<Batch>,
        /// Events at its start the subscriber already has.
        skip: usize,
        /// The batches after it, for a subscriber that is behind.
        more: Vec<Arc<Batch>>,
    },
    /// A page read from the log.
    Page(Page),
    /// One `Snapshot` frame (a part of the stream's snapshot, for a
    /// subscriber whose events were compacted away).
    Snapshot(Bytes),
}

impl Chunk {
    /// The `Events` frame for this chunk. A live chunk of one whole batch
    /// is the shared frame itself (no copy, no encoding; its head is the
    /// one it was made with, at its commit); other live chunks copy the
    /// events' encodings out of the shared frames and carry `head`, the
    /// stream's head now, when it is past their last event (a subscriber
    /// behind by more than one frame's worth must not take a frame's end
    /// for the head).
    pub fn frame(&self, stream: &StreamName, metrics: &Metrics, head: Offset) -> Bytes {
        match self {
            Chunk::Live {
                batch,
                skip: 0,
                more,
            } if more.is_empty() => {
                metrics.fanout_shared_frames.fetch_add(1, Relaxed);
                batch.frame.clone()
            }
            Chunk::Live { batch, skip, more } => {
                if !more.is_empty() {
                    metrics.fanout_coalesced_frames.fetch_add(1, Relaxed);
                }
                let head = head.max(more.last().unwrap_or(batch).last);
                let mut refs: Vec<&[u8]> = Vec::new();
                refs.extend((*skip..batch.events.len()).map(|i| batch.encoded(i)));
                for b in more {
                    refs.extend((0..b.events.len()).map(|i| b.encoded(i)));
                }
                Bytes::from(encode_events_frame(stream, &refs, head))
            }
            Chunk::Page(p) => encode_frame(stream, &p.events, p.head),
            Chunk::Snapshot(frame) => frame.clone(),
        }
    }

    /// The events of this chunk (past the skip), in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> + '_ {
        let (first, more, page): (&[Event], &[Arc<Batch>], &[Event]) = match self {
            Chunk::Live { batch, skip, more } => {
                (batch.events.get(*skip..).unwrap_or(&[]), more, &[])
            }
            Chunk::Page(p) => (&[], &[], &p.events),
            Chunk::Snapshot(_) => (&[], &[], &[]),
        };
        first
            .iter()
            .chain(more.iter().flat_map(|b| b.events.iter()))
            .chain(page)
    }
}

fn encode_frame(stream: &StreamName, events: &[Event], head: Offset) -> Bytes {
    Bytes::from(encode_events_frame_of(stream, events, head))
}

/// A cursor over one stream: catch-up pages from the log, then live
/// batches from the feed, then waiting; dense and never repeating.
pub struct Subscription {
    store: Arc<dyn LogStore>,
    feed: Arc<Feed>,
    next: Offset,
    limits: ReadLimits,
    /// Most bytes of events one live frame takes when behind.
    coalesce: usize,
    started: bool,
    metrics: Arc<Metrics>,
    /// Whether a cursor below the compacted events gets the stream's
    /// snapshot (a WebSocket client) or fails with `COMPACTED`.
    snapshots: bool,
    /// Snapshot frames still to send, in order.
    parts: std::collections::VecDeque<Bytes>,
    /// Where the client's copy of a snapshot was cut (see
    /// [`Subscription::resuming`]).
    resume: Option<sync_core::SnapshotResume>,
    /// Most bytes of a frame.
    max_frame_bytes: usize,
    /// The offset of the last checkpoint sent, or of the cursor it
    /// started from (older checkpoints are of no use to the client).
    checkpoint_sent: Offset,
}

impl Subscription {
    /// Follows `stream` from the event after `after`. Pages hold at most
    /// `max_events` events and fit in `max_frame_bytes`.
    pub fn new(
        hub: &Hub,
        store: Arc<dyn LogStore>,
        stream: &StreamName,
        after: Offset,
        max_events: usize,
    ) -> Self {
        Subscription {
            store,
            // Register with the feed before the first read of the log, so
            // no commit can fall between the read and the feed.
            feed: hub.feed(stream),
            next: after.next(),
            limits: ReadLimits {
                max_events,
                max_bytes: hub.max_frame_bytes.saturating_sub(FRAME_OVERHEAD),
            },
            coalesce: COALESCE_BYTES.min(hub.max_frame_bytes.saturating_sub(FRAME_OVERHEAD)),
            started: false,
            metrics: hub.metrics.clone(),
            snapshots: false,
            parts: std::collections::VecDeque::new(),
            resume: None,
            max_frame_bytes: hub.max_frame_bytes,
            checkpoint_sent: after,
        }
    }

    /// The client holds the first `resume.at` bytes of a snapshot (its
    /// connection was cut while receiving it): if the snapshot this
    /// subscription sends is that one (same offset and hash), its parts
    /// start at `resume.at`; otherwise from the start.
    pub fn resuming(mut self, resume: Option<sync_core::SnapshotResume>) -> Self {
        self.resume = resume;
        self
    }

    /// The `Checkpoint` frame to send before `chunk`'s frame: when the
    /// stream's latest snapshot made on this node is at one of the
    /// chunk's events (the client compares its own fold there, see
    /// [`sync_core::ServerMsg::Checkpoint`]). Each checkpoint goes once.
    pub fn checkpoint(&mut self, chunk: &Chunk) -> Option<Bytes> {
        let (offset, hash, schema) = self.feed.checkpoint_above(self.checkpoint_sent)?;
        let (first, last) = match chunk {
            Chunk::Live { batch, skip, more } => (
                Offset(batch.first.0 + *skip as u64),
                more.last().unwrap_or(batch).last,
            ),
            Chunk::Page(p) => (p.events.first()?.offset, p.events.last()?.offset),
            Chunk::Snapshot(_) => return None,
        };
        if offset < first || offset > last {
            return None;
        }
        self.checkpoint_sent = offset;
        let msg = sync_core::ServerMsg::Checkpoint {
            stream: self.feed.stream().clone(),
            offset,
            hash,
            schema,
        };
        Some(Bytes::from(msg.encode()))
    }

    /// A cursor below the events the store still keeps (compacted away)
    /// is answered with the stream's snapshot in `Snapshot` frames, then
    /// the events after it. Without this, such a cursor fails with
    /// [`Error::Compacted`].
    pub fn with_snapshots(mut self) -> Self {
        self.snapshots = true;
        self
    }

    /// The stream.
    pub fn stream(&self) -> &StreamName {
        self.feed.stream()
    }

    /// The `Events` frame of `chunk` (from this subscription's
    /// [`Subscription::next`]): as [`Chunk::frame`], except that a frame
    /// joining several commits is shared with the other subscribers that
    /// take the same events next, so under load, when all of them fall
    /// behind together, it is built once too.
    pub fn frame(&self, chunk: &Chunk) -> Bytes {
        let Chunk::Live { batch, skip, more } = chunk else {
            return chunk.frame(self.stream(), &self.metrics, self.feed.head());
        };
        if *skip == 0 && more.is_empty() {
            return chunk.frame(self.stream(), &self.metrics, self.feed.head());
        }
        let from = Offset(batch.first.0 + *skip as u64);
        let to = more.last().unwrap_or(batch).last;
        if let Some(frame) = self.feed.joined(from, to) {
            if !more.is_empty() {
                self.metrics.fanout_coalesced_frames.fetch_add(1, Relaxed);
            }
            return frame;
        }
        let frame = chunk.frame(self.stream(), &self.metrics, self.feed.head());
        self.feed.keep_joined(from, to, &frame);
        frame
    }

    /// The next chunk. The first call always answers at once with a page
    /// from the log (possibly empty) that carries the head. Its events
    /// count as delivered (`logsync_events_delivered_total`, and the
    /// `delivered` stage of [`crate::trace`]).
    pub async fn next(&mut self) -> Result<Chunk, Error> {
        let chunk = self.next_chunk().await?;
        let events = chunk.events().count() as u64;
        self.metrics.events_delivered.fetch_add(events, Relaxed);
        crate::trace::delivered(self.feed.stream(), chunk.events());
        Ok(chunk)
    }

    async fn next_chunk(&mut self) -> Result<Chunk, Error> {
        if let Some(part) = self.parts.pop_front() {
            return Ok(Chunk::Snapshot(part));
        }
        if !self.started {
            self.started = true;
            return self.read().await;
        }
        loop {
            // Subscribe to head changes before looking, so a commit between
            // the look and the wait still wakes us.
            let mut head = self.feed.head.subscribe();
            match self.feed.lookup(self.next, self.coalesce) {
                Lookup::Live(batch, skip, more) => {
                    self.next = more.last().unwrap_or(&batch).last.next();
                    return Ok(Chunk::Live { batch, skip, more });
                }
                Lookup::Behind => {
                    self.metrics.catch_up_reads.fetch_add(1, Relaxed);
                    let chunk = self.read().await?;
                    if chunk.events().next().is_some() || matches!(chunk, Chunk::Snapshot(_)) {
                        return Ok(chunk);
                    }
                    // The log has nothing at the cursor although the feed's
                    // head says so: wait for the next change rather than spin.
                    let _ = head.changed().await;
                }
                Lookup::Ahead => {
                    let want = self.next;
                    if head.wait_for(|h| *h >= want).await.is_err() {
                        return Err(Error::StoreClosed);
                    }
                }
            }
        }
    }

    async fn read(&mut self) -> Result<Chunk, Error> {
        let after = Offset(self.next.0.saturating_sub(1));
        let page = self
            .store
            .read(self.feed.stream().clone(), after, self.limits)
            .await?;
        self.feed.raise_head(page.head);
        if page.compacted > after {
            return self.snapshot(after, page.compacted).await;
        }
        if self.snapshots && self.resume.is_some() {
            // The client asks for the snapshot (it diverged, or was cut
            // while receiving one): the latest, when not behind it.
            if let Some(chunk) = self.asked_snapshot(after).await? {
                return Ok(chunk);
            }
        }
        if let Some(last) = page.events.last() {
            self.next = last.offset.next();
        }
        Ok(Chunk::Page(page))
    }

    /// The stream's latest snapshot for a client that asked for it
    /// (`Subscribe.resume`), when it is at or after `after`; `None`
    /// otherwise (the events follow as usual).
    async fn asked_snapshot(&mut self, after: Offset) -> Result<Option<Chunk>, Error> {
        let stream = self.feed.stream().clone();
        match self.store.latest_snapshot(stream).await? {
            Some(snapshot) if snapshot.offset >= after => self.snapshot_parts(snapshot).map(Some),
            _ => {
                self.resume = None;
                Ok(None)
            }
        }
    }

    /// The cursor (after `after`) is below the compacted events (through
    /// `compacted`): the stream's snapshot, cut into frames, and the
    /// cursor after it.
    async fn snapshot(&mut self, after: Offset, compacted: Offset) -> Result<Chunk, Error> {
        let stream = self.feed.stream().clone();
        if !self.snapshots {
            return Err(Error::Compacted(format!(
                "the events of {stream} after offset {after} were compacted away up to offset {compacted}: \
                 start from its snapshot (GET /v1/streams/{{stream}}/snapshot)"
            )));
        }
        let Some(snapshot) = self.store.latest_snapshot(stream.clone()).await? else {
            return Err(Error::Storage(format!(
                "the events of {stream} are compacted up to offset {compacted} but it has no snapshot"
            )));
        };
        if snapshot.offset < compacted {
            return Err(Error::Storage(format!(
                "the events of {stream} are compacted up to offset {compacted}, past its snapshot at {}",
                snapshot.offset
            )));
        }
        self.snapshot_parts(snapshot)
    }

    /// The stored `snapshot` cut into `Snapshot` frames (from where the
    /// client's copy was cut, when it is this one), and the cursor after
    /// it: the first frame now, the others next.
    fn snapshot_parts(&mut self, snapshot: StoredSnapshot) -> Result<Chunk, Error> {
        let StoredSnapshot {
            offset,
            state,
            schema,
        } = snapshot;
        let stream = self.feed.stream().clone();
        let hash = sync_core::protocol::state_hash(&state);
        let total = state.len() as u64;
        let room = self
            .max_frame_bytes
            .saturating_sub(sync_core::protocol::SNAPSHOT_FRAME_OVERHEAD)
            .max(1);
        let mut at = match self.resume.take() {
            Some(r) if r.at > 0 && r.offset == offset && r.hash == hash && r.at < total => {
                self.metrics.snapshots_resumed.fetch_add(1, Relaxed);
                r.at as usize
            }
            _ => 0,
        };
        loop {
            let end = (at + room).min(state.len());
            let msg = sync_core::ServerMsg::Snapshot {
                stream: stream.clone(),
                offset,
                hash,
                total,
                at: at as u64,
                part: state[at..end].to_vec(),
                schema,
            };
            self.parts.push_back(Bytes::from(msg.encode()));
            at = end;
            if at >= state.len() {
                break;
            }
        }
        self.metrics.snapshots_sent.fetch_add(1, Relaxed);
        self.next = offset.next();
        self.checkpoint_sent = self.checkpoint_sent.max(offset);
        // After the parts, a page read at once (possibly empty): it
        // carries the head, as the first answer to a subscription does.
        self.started = false;
        let first = self
            .parts
            .pop_front()
            .ok_or_else(|| Error::Storage("a snapshot made no frames".into()))?;
        Ok(Chunk::Snapshot(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{AppendRequest, ProposedIntent, Verdict};
    use sync_core::{ClientId, Epoch, Seq, ServerMsg};

    fn ev(o: u64, len: usize) -> Event {
        Event {
            subject: None,
            seen: sync_core::Offset::ZERO,
            schema: 1,
            offset: Offset(o),
            client_id: ClientId([1; 16]),
            seq: Seq::new(o).expect("seq"),
            time_ms: 0,
            payload: vec![b'x'; len],
        }
    }

    #[test]
    fn window_is_bounded_and_contiguous() {
        let hub = Hub::new(10_000, 1 << 30, 1 << 20, Arc::new(Metrics::default()));
        let s = StreamName::new("s").expect("name");
        let feed = hub.feed(&s);
        for o in 1..=100 {
            hub.appended(&s, &[ev(o, 1000)]);
        }
        assert_eq!(feed.head(), Offset(100));
        assert!(matches!(feed.lookup(Offset(1), 0), Lookup::Behind));
        assert!(matches!(feed.lookup(Offset(100), 0), Lookup::Live(_, 0, _)));
        assert!(matches!(feed.lookup(Offset(101), 0), Lookup::Ahead));
        let w = feed.window.lock().expect("lock");
        assert!(w.bytes <= 10_000, "{}", w.bytes);
        // A gap (commits this feed never saw) restarts the window.
        drop(w);
        hub.appended(&s, &[ev(105, 10)]);
        assert!(matches!(feed.lookup(Offset(101), 0), Lookup::Behind));
        assert!(matches!(feed.lookup(Offset(105), 0), Lookup::Live(_, 0, _)));
        // Another node's commit: the head moves, the window cannot serve it.
        hub.head_moved(&s, Offset(107));
        assert!(matches!(feed.lookup(Offset(106), 0), Lookup::Behind));
    }

    #[test]
    fn busy_streams_share_the_total() {
        let hub = Hub::new(1 << 20, 40_000, 1 << 20, Arc::new(Metrics::default()));
        let names: Vec<StreamName> = (0..4)
            .map(|i| StreamName::new(format!("s{i}")).expect("name"))
            .collect();
        let feeds: Vec<Arc<Feed>> = names.iter().map(|n| hub.feed(n)).collect();
        for o in 1..=100 {
            for n in &names {
                hub.appended(n, &[ev(o, 1000)]);
            }
        }
        for f in &feeds {
            let w = f.window.lock().expect("lock");
            // A quarter of 40,000 each, give or take one batch.
            assert!(w.bytes <= 10_000, "{}", w.bytes);
            assert!(w.batches.len() >= 2);
        }
    }

    #[test]
    fn large_commits_are_split_to_fit_frames() {
        let hub = Hub::new(1 << 30, 1 << 30, 8192, Arc::new(Metrics::default()));
        let s = StreamName::new("s").expect("name");
        let events: Vec<Event> = (1..=10).map(|o| ev(o, 3000)).collect();
        let batches = hub.batches(&s, &events);
        assert!(batches.len() >= 4, "{}", batches.len());
        let mut next = 1;
        for b in &batches {
            assert!(b.frame.len() <= 8192, "{}", b.frame.len());
            assert_eq!(b.first.0, next);
            next = b.last.0 + 1;
            let msg = sync_core::ServerMsg::decode(&b.frame, 8192).expect("decodes");
            let sync_core::ServerMsg::Events { events, head, .. } = msg else {
                panic!("not events")
            };
            assert_eq!(head, b.last);
            assert_eq!(events, b.events);
        }
        assert_eq!(next, 11);
    }

    /// A hub with frames of at most `max_frame` bytes over an in-memory
    /// store that reports its appends to it.
    fn hub_and_store(max_frame: usize) -> (Arc<Hub>, Arc<dyn LogStore>) {
        let hub = Arc::new(Hub::new(
            64 << 20,
            1 << 30,
            max_frame,
            Arc::new(Metrics::default()),
        ));
        let store: Arc<dyn LogStore> =
            Arc::new(MemoryStore::new(Epoch::from_random([7; 16]), hub.clone()));
        (hub, store)
    }

    /// Appends one commit of `sizes.len()` events (payload sizes `sizes`).
    async fn commit(
        store: &Arc<dyn LogStore>,
        s: &StreamName,
        next_seq: &mut u64,
        sizes: &[usize],
    ) {
        let intents = sizes
            .iter()
            .map(|&len| {
                *next_seq += 1;
                ProposedIntent::new(
                    Seq::new(*next_seq).expect("seq"),
                    vec![b'p'; len],
                    Verdict::Accept,
                )
            })
            .collect();
        let outcomes = store
            .append(AppendRequest {
                subject: None,
                stream: s.clone(),
                client_id: ClientId([3; 16]),
                intents,
            })
            .await
            .expect("append");
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, crate::store::Outcome::Appended { .. })));
    }

    /// Takes the next chunk's frame, checks it is exactly what
    /// `ServerMsg::encode` makes for its events and within `max_frame`,
    /// and returns its offsets.
    async fn take(sub: &mut Subscription, max_frame: usize) -> Vec<u64> {
        let chunk = sub.next().await.expect("next");
        let frame = sub.frame(&chunk);
        assert!(frame.len() <= max_frame, "{} > {max_frame}", frame.len());
        let msg = ServerMsg::decode(&frame, max_frame).expect("decodes");
        assert_eq!(
            msg.encode(),
            frame.to_vec(),
            "byte for byte ServerMsg::encode"
        );
        let ServerMsg::Events { events, head, .. } = msg else {
            panic!("not Events: {msg:?}")
        };
        let seen: Vec<&Event> = chunk.events().collect();
        assert_eq!(seen.len(), events.len());
        assert!(seen.iter().zip(&events).all(|(a, b)| *a == b));
        if let Some(last) = events.last() {
            assert!(head >= last.offset, "head {head:?} before {last:?}");
            match &chunk {
                Chunk::Live { skip: 0, more, .. } if more.is_empty() => {
                    assert_eq!(
                        head, last.offset,
                        "a shared frame's head is its commit's last event"
                    )
                }
                Chunk::Live { .. } => assert_eq!(
                    head,
                    sub.feed.head().max(last.offset),
                    "a joined frame carries the head it was made at"
                ),
                Chunk::Page(_) | Chunk::Snapshot(_) => {}
            }
        }
        events.iter().map(|e| e.offset.0).collect()
    }

    #[tokio::test]
    async fn a_subscriber_behind_takes_many_commits_in_few_frames_dense_and_within_the_limit() {
        let max_frame = 16 << 10;
        let (hub, store) = hub_and_store(max_frame);
        let s = StreamName::new("behind").expect("name");
        let mut sub = Subscription::new(&hub, store.clone(), &s, Offset::ZERO, 1000);
        assert_eq!(take(&mut sub, max_frame).await, Vec::<u64>::new());
        // 300 commits of one event each while the subscriber takes nothing.
        let mut seq = 0;
        for _ in 0..300 {
            commit(&store, &s, &mut seq, &[100]).await;
        }
        let mut got = Vec::new();
        let mut frames = 0;
        while got.len() < 300 {
            got.extend(take(&mut sub, max_frame).await);
            frames += 1;
        }
        assert_eq!(
            got,
            (1..=300).collect::<Vec<u64>>(),
            "dense, in order, no repeat"
        );
        // ~150 encoded bytes per event: 300 of them fill 3 frames of 16 KiB.
        assert!(frames <= 4, "{frames} frames for 300 commits");
        assert_eq!(hub.metrics.fanout_coalesced_frames.load(Relaxed), frames);
        assert_eq!(hub.metrics.fanout_shared_frames.load(Relaxed), 0);
        assert_eq!(
            hub.metrics.catch_up_reads.load(Relaxed),
            0,
            "all from the feed"
        );

        // Caught up: the next commit is the shared frame, encoded once.
        commit(&store, &s, &mut seq, &[100]).await;
        let chunk = sub.next().await.expect("next");
        let frame = chunk.frame(&s, &hub.metrics, hub.feed(&s).head());
        let shared = hub
            .feed(&s)
            .window
            .lock()
            .expect("lock")
            .batches
            .back()
            .expect("batch")
            .frame
            .clone();
        assert_eq!(
            frame.as_ptr(),
            shared.as_ptr(),
            "the same bytes, not a copy"
        );
        assert_eq!(hub.metrics.fanout_shared_frames.load(Relaxed), 1);
        assert_eq!(hub.metrics.fanout_coalesced_frames.load(Relaxed), frames);
    }

    #[tokio::test]
    async fn subscribers_behind_at_the_same_place_share_one_joined_frame() {
        let max_frame = 1 << 20;
        let (hub, store) = hub_and_store(max_frame);
        let s = StreamName::new("together").expect("name");
        let mut subs = Vec::new();
        for _ in 0..3 {
            let mut sub = Subscription::new(&hub, store.clone(), &s, Offset::ZERO, 1000);
            take(&mut sub, max_frame).await;
            subs.push(sub);
        }
        let mut seq = 0;
        for _ in 0..20 {
            commit(&store, &s, &mut seq, &[100]).await;
        }
        let mut frames = Vec::new();
        for (i, sub) in subs.iter_mut().enumerate() {
            let chunk = sub.next().await.expect("next");
            frames.push(sub.frame(&chunk));
            if i == 0 {
                // A commit in the middle of the round: the others still
                // take the run the first one took, and this one after.
                commit(&store, &s, &mut seq, &[100]).await;
            }
        }
        assert!(
            frames.iter().all(|f| f.as_ptr() == frames[0].as_ptr()),
            "one copy"
        );
        let msg = ServerMsg::decode(&frames[0], max_frame).expect("decodes");
        assert!(matches!(&msg, ServerMsg::Events { events, .. } if events.len() == 20));
        assert_eq!(hub.metrics.fanout_coalesced_frames.load(Relaxed), 3);
        for sub in &mut subs {
            assert_eq!(take(sub, max_frame).await, vec![21]);
        }
        // The kept frame counts against the window.
        let feed = hub.feed(&s);
        let w = feed.window.lock().expect("lock");
        let batches: usize = w.batches.iter().map(|b| b.bytes()).sum();
        assert_eq!(w.joined.len(), 1);
        assert_eq!(w.bytes, batches + frames[0].len());
    }

    #[tokio::test]
    async fn a_cursor_inside_a_commit_joins_it_with_the_next_ones() {
        let max_frame = 1 << 20;
        let (hub, store) = hub_and_store(max_frame);
        let s = StreamName::new("skip").expect("name");
        let _follow = hub.feed(&s);
        let mut seq = 0;
        commit(&store, &s, &mut seq, &[10; 10]).await;
        commit(&store, &s, &mut seq, &[20; 10]).await;
        commit(&store, &s, &mut seq, &[30; 1]).await;
        // Catch-up pages of two events: the first ends inside commit 1.
        let mut sub = Subscription::new(&hub, store.clone(), &s, Offset(3), 2);
        assert_eq!(take(&mut sub, max_frame).await, vec![4, 5]);
        assert_eq!(
            take(&mut sub, max_frame).await,
            (6..=21).collect::<Vec<u64>>()
        );
        assert_eq!(hub.metrics.fanout_coalesced_frames.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn frames_stay_dense_and_within_the_limit_whatever_the_commits_and_the_pace() {
        // A small pseudo-random walk over commit sizes, payload sizes and
        // how many commits land between two takes.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for &max_frame in &[4096usize, 9000, 1 << 20] {
            let (hub, store) = hub_and_store(max_frame);
            let s = StreamName::new("walk").expect("name");
            let mut sub = Subscription::new(&hub, store.clone(), &s, Offset::ZERO, 50);
            take(&mut sub, max_frame).await;
            let (mut seq, mut got, mut expected) = (0u64, Vec::new(), 0u64);
            for _ in 0..60 {
                for _ in 0..rand(6) {
                    let sizes: Vec<usize> = (0..1 + rand(12))
                        .map(|_| rand((max_frame as u64 - 400).min(3000)) as usize)
                        .collect();
                    expected += sizes.len() as u64;
                    commit(&store, &s, &mut seq, &sizes).await;
                }
                while (got.len() as u64) < expected {
                    got.extend(take(&mut sub, max_frame).await);
                }
            }
            assert_eq!(got, (1..=expected).collect::<Vec<u64>>());
            assert!(hub.metrics.fanout_coalesced_frames.load(Relaxed) > 0);
        }
    }
}
