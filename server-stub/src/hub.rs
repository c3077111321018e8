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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use sync_core::protocol::{encode_event, encode_events_frame};
use sync_core::{Event, Offset, StreamName};
use tokio::sync::watch;

use crate::config::FRAME_OVERHEAD;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{AppendListener, LogStore, Page, ReadLimits};

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
}

impl Batch {
    fn bytes(&self) -> usize {
        self.frame.len()
            + self
                .events
                .iter()
                .map(|e| e.payload.len() + 64)
                .sum::<usize>()
    }
}

/// The recent history of one stream and its head.
pub struct Feed {
    stream: StreamName,
    window: Mutex<Window>,
    head: watch::Sender<Offset>,
}

#[derive(Default)]
struct Window {
    batches: VecDeque<Arc<Batch>>,
    bytes: usize,
}

enum Lookup {
    /// The batch holding the cursor, and how many of its events to skip.
    Live(Arc<Batch>, usize),
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

    /// The highest offset known to be durable.
    pub fn head(&self) -> Offset {
        *self.head.borrow()
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

    fn lookup(&self, next: Offset) -> Lookup {
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
        match window.batches.get(i) {
            Some(b) if b.first <= next => Lookup::Live(b.clone(), (next.0 - b.first.0) as usize),
            _ => Lookup::Behind,
        }
    }

    fn push(&self, batch: Batch, limit: usize) {
        let last = batch.last;
        if let Ok(mut w) = self.window.lock() {
            if let Some(back) = w.batches.back() {
                if back.last.next() != batch.first {
                    // Not contiguous (the feed missed commits made before it
                    // existed, or another node's): start a new window; older
                    // cursors read the log.
                    w.batches.clear();
                    w.bytes = 0;
                }
            }
            w.bytes += batch.bytes();
            w.batches.push_back(Arc::new(batch));
            while w.bytes > limit && w.batches.len() > 1 {
                if let Some(old) = w.batches.pop_front() {
                    w.bytes -= old.bytes();
                }
            }
        }
        self.raise_head(last);
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
    }
}

fn make_batch(stream: &StreamName, events: &[Event], encoded: &[Vec<u8>]) -> Batch {
    let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let first = events.first().map(|e| e.offset).unwrap_or_default();
    let last = events.last().map(|e| e.offset).unwrap_or_default();
    Batch {
        first,
        last,
        events: events.to_vec(),
        frame: Bytes::from(encode_events_frame(stream, &refs, last)),
    }
}

impl AppendListener for Hub {
    fn appended(&self, stream: &StreamName, events: &[Event]) {
        // Nobody follows the stream: nothing to encode. A feed made later
        // learns the head from its first read of the log.
        let Some((feed, limit)) = self.existing(stream) else {
            return;
        };
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
    /// A batch from the feed; skip its first `skip` events (already sent).
    Live {
        /// The shared batch.
        batch: Arc<Batch>,
        /// Events at its start the subscriber already has.
        skip: usize,
    },
    /// A page read from the log.
    Page(Page),
}

impl Chunk {
    /// The `Events` frame for this chunk. A live chunk without a skip is
    /// the shared frame itself (no copy, no encoding).
    pub fn frame(&self, stream: &StreamName, metrics: &Metrics) -> Bytes {
        match self {
            Chunk::Live { batch, skip: 0 } => {
                metrics.fanout_shared_frames.fetch_add(1, Relaxed);
                batch.frame.clone()
            }
            Chunk::Live { batch, skip } => {
                encode_frame(stream, batch.events.get(*skip..).unwrap_or(&[]), batch.last)
            }
            Chunk::Page(p) => encode_frame(stream, &p.events, p.head),
        }
    }

    /// The events of this chunk (past the skip).
    pub fn events(&self) -> &[Event] {
        match self {
            Chunk::Live { batch, skip } => batch.events.get(*skip..).unwrap_or(&[]),
            Chunk::Page(p) => &p.events,
        }
    }
}

fn encode_frame(stream: &StreamName, events: &[Event], head: Offset) -> Bytes {
    let encoded: Vec<Vec<u8>> = events.iter().map(encode_event).collect();
    let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    Bytes::from(encode_events_frame(stream, &refs, head))
}

/// A cursor over one stream: catch-up pages from the log, then live
/// batches from the feed, then waiting; dense and never repeating.
pub struct Subscription {
    store: Arc<dyn LogStore>,
    feed: Arc<Feed>,
    next: Offset,
    limits: ReadLimits,
    started: bool,
    metrics: Arc<Metrics>,
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
            started: false,
            metrics: hub.metrics.clone(),
        }
    }

    /// The stream.
    pub fn stream(&self) -> &StreamName {
        self.feed.stream()
    }

    /// The next chunk. The first call always answers at once with a page
    /// from the log (possibly empty) that carries the head.
    pub async fn next(&mut self) -> Result<Chunk, Error> {
        if !self.started {
            self.started = true;
            return self.read().await;
        }
        loop {
            // Subscribe to head changes before looking, so a commit between
            // the look and the wait still wakes us.
            let mut head = self.feed.head.subscribe();
            match self.feed.lookup(self.next) {
                Lookup::Live(batch, skip) => {
                    self.next = batch.last.next();
                    return Ok(Chunk::Live { batch, skip });
                }
                Lookup::Behind => {
                    self.metrics.catch_up_reads.fetch_add(1, Relaxed);
                    let chunk = self.read().await?;
                    if !chunk.events().is_empty() {
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
        if let Some(last) = page.events.last() {
            self.next = last.offset.next();
        }
        Ok(Chunk::Page(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::{ClientId, Seq};

    fn ev(o: u64, len: usize) -> Event {
        Event {
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
        assert!(matches!(feed.lookup(Offset(1)), Lookup::Behind));
        assert!(matches!(feed.lookup(Offset(100)), Lookup::Live(_, 0)));
        assert!(matches!(feed.lookup(Offset(101)), Lookup::Ahead));
        let w = feed.window.lock().expect("lock");
        assert!(w.bytes <= 10_000, "{}", w.bytes);
        // A gap (commits this feed never saw) restarts the window.
        drop(w);
        hub.appended(&s, &[ev(105, 10)]);
        assert!(matches!(feed.lookup(Offset(101)), Lookup::Behind));
        assert!(matches!(feed.lookup(Offset(105)), Lookup::Live(_, 0)));
        // Another node's commit: the head moves, the window cannot serve it.
        hub.head_moved(&s, Offset(107));
        assert!(matches!(feed.lookup(Offset(106)), Lookup::Behind));
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
}
