//! Views, evaluated beside the writer.
//!
//! A reducer module's views (`views.name(state, params)`) are answered by
//! the [`Viewer`]: one thread with reducer instances of its own
//! ([`crate::fold::StreamReducer::for_views`]: for a JavaScript module,
//! a second engine whose calls stop at `--view-timeout`) and its own
//! states, folded from the committed log (the stream's latest snapshot and
//! the events after it, then the events each commit adds). So a view, slow
//! or not, never holds up the writer or the fan-out of events, and a
//! stream followed on a node of a PostgreSQL cluster is folded from what
//! every node committed.
//!
//! Results are shared: the viewer keeps, per (stream, view, params), the
//! last few results it evaluated ([`RECENT`]); any request at the offset
//! of the latest is answered from it, so the followers of one view that
//! wake at one commit cost one evaluation. The kept results are also what
//! a returning client's result (`Watch.known`) is patched against.
//!
//! What a follower sends is decided by [`Follower`]: the result, then one
//! [`Update`] per change of it (a JSON Patch when shorter than the
//! result); commits that leave the result as it was send nothing. The
//! WebSocket watches (`ws`) and the SSE view feeds (`http`) both use it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sync_core::protocol::state_hash;
use sync_core::{ErrorCode, Offset, StreamName};
use tokio::sync::{oneshot, watch};

use crate::error::Error;
use crate::fold::{Folds, Reducers, Unfolded};
use crate::hub::Feed;
use crate::metrics::Metrics;
use crate::store::{LogStore, ReadLimits};

/// Evaluations waiting for the viewer's thread, at most.
const QUEUE: usize = 4096;
/// Results kept per (stream, view, params), newest last: the latest
/// answers requests at its offset, the older ones are bases for patches.
pub const RECENT: usize = 4;
/// (stream, view, params) whose results are kept, at most; past it the
/// least recently used go.
const CACHED_VIEWS: usize = 4096;
/// One read of the log while folding.
const READ: ReadLimits = ReadLimits {
    max_events: 1000,
    max_bytes: 4 << 20,
};

/// A view of a stream's state: the name the reducer exports it under and
/// its parameters (JSON text).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ViewQuery {
    /// The view's name (`views.openTodos` → `openTodos`).
    pub name: String,
    /// Its parameters, JSON text (`null` for none).
    pub params: String,
}

/// A view's result at an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluated {
    /// The offset of the last event the result reflects.
    pub offset: Offset,
    /// The result, JSON text as the view's engine wrote it.
    pub text: Arc<str>,
    /// [`state_hash`] of `text`.
    pub hash: u64,
}

/// The viewer's answer to one request.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The result at the stream's head.
    pub now: Evaluated,
    /// The result whose hash the request named, when the viewer still
    /// keeps it.
    pub known: Option<Evaluated>,
}

struct Job {
    stream: StreamName,
    query: ViewQuery,
    known: Option<u64>,
    reply: oneshot::Sender<Result<Option<Answer>, Error>>,
}

/// Evaluates views on a thread of its own (see the module's text).
pub struct Viewer {
    jobs: SyncSender<Job>,
    /// Live follows per stream and (view, params).
    followed: Mutex<HashMap<StreamName, HashMap<ViewQuery, usize>>>,
    max_per_stream: usize,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("max_per_stream", &self.max_per_stream)
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// Starts the viewer's thread over `store` with `reducers` (each
    /// rule's instance for views). At most `max_per_stream` different
    /// (view, params) are followed per stream at once. Must be called
    /// inside a Tokio runtime (the thread reads the store through it).
    pub fn start(
        store: Arc<dyn LogStore>,
        reducers: Reducers,
        max_per_stream: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Viewer>, Error> {
        let (jobs, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let runtime = tokio::runtime::Handle::current();
        let counts = metrics.clone();
        std::thread::Builder::new()
            .name("logsync-views".into())
            .spawn(move || run(rx, store, reducers, runtime, counts))?;
        Ok(Arc::new(Viewer {
            jobs,
            followed: Mutex::new(HashMap::new()),
            max_per_stream: max_per_stream.max(1),
            metrics,
        }))
    }

    /// The view `query` of `stream` at its head, and the result whose
    /// hash is `known` if it is still kept; `None` when no reducer folds
    /// the stream. `NOT_FOUND` for a view the reducer does not export,
    /// `REDUCER` for one that failed or ran past its time limit.
    pub async fn evaluate(
        &self,
        stream: &StreamName,
        query: &ViewQuery,
        known: Option<u64>,
    ) -> Result<Option<Answer>, Error> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            stream: stream.clone(),
            query: query.clone(),
            known,
            reply,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Error::Overloaded(format!(
                "{QUEUE} view evaluations are waiting on this server; try again shortly"
            )),
            TrySendError::Disconnected(_) => Error::StoreClosed,
        })?;
        answer.await.map_err(|_| Error::StoreClosed)?
    }

    /// Counts a live follow of `query` on `stream` for as long as the
    /// answer lives: `TOO_MANY_SUBSCRIPTIONS` when the stream already has
    /// `max_per_stream` other (view, params) followed.
    pub fn follow(
        self: &Arc<Self>,
        stream: &StreamName,
        query: &ViewQuery,
    ) -> Result<ViewFollow, (ErrorCode, String)> {
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        let views = followed.entry(stream.clone()).or_default();
        if !views.contains_key(query) && views.len() >= self.max_per_stream {
            return Err((
                ErrorCode::TooManySubscriptions,
                format!(
                    "{} different views of {stream} are followed on this server, its limit \
                     (--max-views-per-stream); follow one of those or try again later",
                    views.len()
                ),
            ));
        }
        *views.entry(query.clone()).or_default() += 1;
        self.metrics.view_follows.fetch_add(1, Relaxed);
        Ok(ViewFollow {
            viewer: self.clone(),
            stream: stream.clone(),
            query: query.clone(),
        })
    }
}

/// One live follow of a view (see [`Viewer::follow`]).
#[derive(Debug)]
pub struct ViewFollow {
    viewer: Arc<Viewer>,
    stream: StreamName,
    query: ViewQuery,
}

impl Drop for ViewFollow {
    fn drop(&mut self) {
        let mut followed = self
            .viewer
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(views) = followed.get_mut(&self.stream) {
            if let Some(n) = views.get_mut(&self.query) {
                *n -= 1;
                if *n == 0 {
                    views.remove(&self.query);
                }
            }
            if views.is_empty() {
                followed.remove(&self.stream);
            }
        }
        self.viewer.metrics.view_follows.fetch_sub(1, Relaxed);
    }
}

/// The results kept for one (stream, view, params).
struct Kept {
    recent: VecDeque<Evaluated>,
    used: u64,
}

#[derive(Default)]
struct Cache {
    views: HashMap<(StreamName, ViewQuery), Kept>,
    clock: u64,
}

impl Cache {
    fn answer(&mut self, key: &(StreamName, ViewQuery), known: Option<u64>) -> Option<Answer> {
        self.clock += 1;
        let kept = self.views.get_mut(key)?;
        kept.used = self.clock;
        let now = kept.recent.back()?.clone();
        let known = known.and_then(|h| kept.recent.iter().rev().find(|e| e.hash == h).cloned());
        Some(Answer { now, known })
    }

    fn latest_at(&self, key: &(StreamName, ViewQuery)) -> Option<Offset> {
        self.views
            .get(key)
            .and_then(|k| k.recent.back())
            .map(|e| e.offset)
    }

    fn keep(&mut self, key: (StreamName, ViewQuery), evaluated: Evaluated) {
        if !self.views.contains_key(&key) && self.views.len() >= CACHED_VIEWS {
            if let Some(oldest) = self
                .views
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(key, _)| key.clone())
            {
                self.views.remove(&oldest);
            }
        }
        let kept = self.views.entry(key).or_insert_with(|| Kept {
            recent: VecDeque::with_capacity(RECENT),
            used: 0,
        });
        match kept.recent.back_mut() {
            // The same result at a later offset: one entry.
            Some(last) if last.text == evaluated.text => last.offset = evaluated.offset,
            _ => {
                if kept.recent.len() == RECENT {
                    kept.recent.pop_front();
                }
                kept.recent.push_back(evaluated);
            }
        }
    }

    fn forget_stream(&mut self, stream: &StreamName) {
        self.views.retain(|(s, _), _| s != stream);
    }
}

fn run(
    jobs: Receiver<Job>,
    store: Arc<dyn LogStore>,
    reducers: Reducers,
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
) {
    let mut folds = Folds::new(reducers);
    let mut cache = Cache::default();
    while let Ok(job) = jobs.recv() {
        if job.reply.is_closed() {
            continue;
        }
        let answer = answer(&mut folds, &mut cache, &*store, &runtime, &metrics, &job);
        let _ = job.reply.send(answer);
        folds.trim();
    }
    tracing::debug!("the views' thread stopped");
}

fn answer(
    folds: &mut Folds,
    cache: &mut Cache,
    store: &dyn LogStore,
    runtime: &tokio::runtime::Handle,
    metrics: &Metrics,
    job: &Job,
) -> Result<Option<Answer>, Error> {
    let stream = &job.stream;
    let head = runtime.block_on(store.head(stream.clone()))?;
    let key = (stream.clone(), job.query.clone());
    if cache.latest_at(&key) == Some(head) {
        metrics.views_shared.fetch_add(1, Relaxed);
        return Ok(cache.answer(&key, job.known));
    }
    let mut again = true;
    let evaluated = loop {
        let folded = folds.at_from(
            stream,
            head,
            || runtime.block_on(store.latest_snapshot(stream.clone())),
            |after| {
                // Not in a transaction: commits that landed after `head`
                // was read may be in the page; the fold stops at `head`.
                runtime
                    .block_on(store.read(stream.clone(), after, READ))
                    .map(|page| {
                        let mut events = page.events;
                        events.retain(|e| e.offset <= head);
                        events
                    })
            },
        );
        match folded {
            Ok(None) => return Ok(None),
            Ok(Some(folded)) => {
                let text = folded.state.view(&job.query.name, &job.query.params)?;
                break Evaluated {
                    offset: folded.offset,
                    hash: state_hash(text.as_bytes()),
                    text: text.into(),
                };
            }
            // The kept state fell below events compacted meanwhile (or
            // the log changed under it): start again from the snapshot.
            Err(Unfolded::Read(e)) if again => {
                tracing::debug!(error = %e, %stream, "the views' state is rebuilt");
                folds.forget(stream);
                cache.forget_stream(stream);
                again = false;
            }
            Err(Unfolded::Read(e)) => return Err(e),
            Err(Unfolded::Reducer(r)) | Err(Unfolded::Undecided(r)) => return Err(r.into()),
        }
    };
    metrics.views_evaluated.fetch_add(1, Relaxed);
    cache.keep(key.clone(), evaluated);
    Ok(cache.answer(&key, job.known))
}

/// What a follower is to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// The whole result.
    Result(Evaluated),
    /// `patch` (an RFC 6902 JSON Patch, JSON text) turns the result the
    /// follower holds into `now`; shorter than `now`'s text.
    Patch {
        /// The new result.
        now: Evaluated,
        /// The patch.
        patch: String,
    },
    /// The follower holds this result already (its known one).
    Same(Evaluated),
}

impl Update {
    /// The result the follower holds after this update.
    pub fn now(&self) -> &Evaluated {
        match self {
            Update::Result(now) | Update::Same(now) | Update::Patch { now, .. } => now,
        }
    }
}

/// The update that takes a follower holding `held` to `now`: nothing new,
/// a patch when it is shorter than the result, else the result.
fn update(held: Option<&Evaluated>, now: Evaluated) -> Update {
    let Some(held) = held else {
        return Update::Result(now);
    };
    if held.text == now.text {
        return Update::Same(now);
    }
    let parsed = (
        serde_json::from_str::<serde_json::Value>(&held.text),
        serde_json::from_str::<serde_json::Value>(&now.text),
    );
    if let (Ok(before), Ok(after)) = parsed {
        if let Ok(patch) = serde_json::to_string(&json_patch::diff(&before, &after)) {
            if patch.len() < now.text.len() {
                return Update::Patch { now, patch };
            }
        }
    }
    Update::Result(now)
}

/// One live follow of a view: its first answer, then each change.
pub struct Follower {
    viewer: Arc<Viewer>,
    stream: StreamName,
    query: ViewQuery,
    head: watch::Receiver<Offset>,
    /// Held so the hub keeps the stream's feed (and its head) alive.
    _feed: Arc<Feed>,
    /// The result the follower's client holds.
    held: Option<Evaluated>,
}

impl Follower {
    /// A follow of `query` on `stream`, woken by the head of `feed` (the
    /// stream's). The caller counts it with [`Viewer::follow`] for as long
    /// as it lives.
    pub fn new(
        viewer: &Arc<Viewer>,
        stream: StreamName,
        query: ViewQuery,
        feed: Arc<Feed>,
    ) -> Follower {
        Follower {
            viewer: viewer.clone(),
            stream,
            query,
            head: feed.watch_head(),
            _feed: feed,
            held: None,
        }
    }

    /// The first answer: the result at the head, a patch from the
    /// client's `known` result (its hash) when the viewer still keeps it,
    /// or [`Update::Same`] when that is the result. `None`: no reducer
    /// folds the stream.
    pub async fn first(&mut self, known: Option<u64>) -> Result<Option<Update>, Error> {
        let Some(answer) = self
            .viewer
            .evaluate(&self.stream, &self.query, known)
            .await?
        else {
            return Ok(None);
        };
        let update = update(answer.known.as_ref(), answer.now);
        self.held = Some(update.now().clone());
        Ok(Some(update))
    }

    /// The client holds the result at `offset` already (an SSE client's
    /// `Last-Event-ID`): a first answer at that offset is not to be sent.
    pub fn holds_offset(&self, offset: Offset) -> bool {
        self.held.as_ref().is_some_and(|h| h.offset == offset)
    }

    /// Waits for the next change of the result (a patch or the result);
    /// commits that leave it as it was send nothing. `None`: the stream's
    /// feed is gone (the server is stopping).
    pub async fn next(&mut self) -> Result<Option<Update>, Error> {
        loop {
            let seen = self.held.as_ref().map_or(Offset(0), |h| h.offset);
            if self.head.wait_for(|h| *h > seen).await.is_err() {
                return Ok(None);
            }
            let Some(answer) = self
                .viewer
                .evaluate(&self.stream, &self.query, None)
                .await?
            else {
                return Ok(None);
            };
            if answer.now.offset <= seen {
                // The feed heard of a commit the store does not show
                // yet: look again shortly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let update = update(self.held.as_ref(), answer.now);
            self.held = Some(update.now().clone());
            if !matches!(update, Update::Same(_)) {
                return Ok(Some(update));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(offset: u64, text: &str) -> Evaluated {
        Evaluated {
            offset: Offset(offset),
            text: text.into(),
            hash: state_hash(text.as_bytes()),
        }
    }

    #[test]
    fn an_update_is_a_patch_only_when_shorter() {
        let long = r#"[{"id":"a","text":"milk and honey and bread"},{"id":"b","text":"eggs"}]"#;
        let shorter = r#"[{"id":"a","text":"milk and honey and bread"}]"#;
        let held = result(3, long);
        match update(Some(&held), result(4, shorter)) {
            Update::Patch { now, patch } => {
                assert_eq!(now.offset, Offset(4));
                assert_eq!(patch, r#"[{"op":"remove","path":"/1"}]"#);
            }
            other => panic!("expected a patch, got {other:?}"),
        }
        // A small result: the whole result is shorter than any patch.
        let small = result(5, "1");
        assert_eq!(
            update(Some(&result(4, "2")), small.clone()),
            Update::Result(small)
        );
        assert_eq!(update(None, held.clone()), Update::Result(held.clone()));
        assert_eq!(
            update(Some(&held), result(6, long)),
            Update::Same(result(6, long))
        );
    }

    #[test]
    fn the_cache_keeps_the_recent_results_of_a_view_and_merges_repeats() {
        let mut cache = Cache::default();
        let key = (
            StreamName::new("s").expect("name"),
            ViewQuery {
                name: "open".into(),
                params: "null".into(),
            },
        );
        for i in 1..=6 {
            cache.keep(key.clone(), result(i, &format!("[{i}]")));
        }
        cache.keep(key.clone(), result(7, "[6]"));
        let kept: Vec<_> = cache.views[&key]
            .recent
            .iter()
            .map(|e| (e.offset.0, e.text.to_string()))
            .collect();
        assert_eq!(
            kept,
            [(3, "[3]"), (4, "[4]"), (5, "[5]"), (7, "[6]")]
                .map(|(o, t)| (o, t.to_string()))
                .to_vec()
        );
        let answer = cache.answer(&key, Some(state_hash(b"[4]"))).expect("kept");
        assert_eq!(answer.now.offset, Offset(7));
        assert_eq!(answer.known.map(|k| k.offset), Some(Offset(4)));
        let answer = cache.answer(&key, Some(state_hash(b"[1]"))).expect("kept");
        assert_eq!(answer.known, None, "a result no longer kept is not a base");
    }
}
