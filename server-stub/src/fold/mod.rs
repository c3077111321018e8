//! Reducers the server runs at the ordering point: the fold of a stream's
//! log into its state, so the single writer can refuse an intent the
//! app's reducer throws on before it is appended, and serve the state.
//!
//! [`StreamReducer`] is what a store calls; [`js::JsReducer`] runs an ES
//! module in QuickJS, and [`rust::RustReducer`] runs a
//! [`sync_core::Reducer`]; either is registered through [`Reducers::add`]
//! (the library API, with [`crate::Server::open_with_reducers`]). [`Folds`] is
//! the per-stream state a store's writer keeps: built from the log on a
//! stream's first use, then advanced by every accepted intent; past
//! [`Reducers::keep_states`] streams, the least recently used states are
//! dropped between transactions ([`Folds::trim`]) and rebuilt from the log
//! when next needed.

pub mod js;
pub mod rust;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use sync_core::{ErrorCode, Event, Meta, Offset, StreamName};

use crate::auth::Pattern;
use crate::metrics::Metrics;

/// The meta of a test fold (a confirmed event's), for the reducers' unit
/// tests.
#[cfg(test)]
pub(crate) const TEST_META: Meta<'static> = Meta {
    offset: Some(Offset(1)),
    client_id: sync_core::ClientId([0; 16]),
    subject: None,
    seq: None,
    time_ms: 0,
    seen: Offset(0),
    schema: 1,
};

/// How many streams' states a store's writer keeps by default
/// (`--reducer-max-streams`).
pub const DEFAULT_MAX_STATES: usize = 10_000;

/// Why the reducer refused an event: `REJECTED` for the app's own
/// refusal (a throw; an app code travels as `CODE: message`), `REDUCER`
/// for a reducer that failed (stopped by a limit, touched a
/// non-deterministic global, returned nothing, a payload that is not
/// JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `REJECTED` or `REDUCER`.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

/// A reducer module that could not be loaded: the server does not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the reducer module {} could not be loaded: {reason}", path.display())]
pub struct LoadError {
    /// The module file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// A stream's stored snapshot: the state at `offset` as the reducer of
/// schema version `schema` wrote it (JSON text for a folded stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The offset of the last event folded into it.
    pub offset: Offset,
    /// The state's bytes.
    pub state: Vec<u8>,
    /// The schema version of the reducer that made it (1 for snapshots
    /// stored before versions were kept).
    pub schema: u32,
}

/// A deterministic reducer the server folds streams with.
pub trait StreamReducer: Send + Sync + 'static {
    /// What it is, for logs (`JavaScript module ./todos.js`).
    fn describe(&self) -> String;
    /// The schema version of the actions and states this reducer makes
    /// (see [`sync_core::Reducer::schema_version`]).
    fn schema_version(&self) -> u32 {
        1
    }
    /// The oldest schema version of an intent it still folds (upcast);
    /// older ones are refused with `SCHEMA_TOO_OLD`. Default: its own.
    fn min_schema_version(&self) -> u32 {
        self.schema_version()
    }
    /// A state from the JSON text of a snapshot made under the older
    /// schema version `from`, migrated to this reducer's version. `None`
    /// (the default): the reducer does not migrate states; the stream's
    /// state is folded from its events instead.
    fn migrate(&self, _json: &str, _from: u32) -> Option<Result<Box<dyn StreamState>, Refusal>> {
        None
    }
    /// The state of a stream with no events yet.
    fn start(&self) -> Result<Box<dyn StreamState>, Refusal>;
    /// A state from its JSON text (what [`StreamState::to_json`] wrote:
    /// a stored snapshot). The default refuses: such a reducer's states
    /// are always folded from the start of the log, so its streams
    /// cannot be compacted.
    fn restore(&self, _json: &str) -> Result<Box<dyn StreamState>, Refusal> {
        Err(Refusal {
            code: ErrorCode::Reducer,
            message: format!("{} cannot start a state from a snapshot", self.describe()),
        })
    }
    /// The reducer that evaluates views beside the writer (see
    /// `crate::views`): another instance with an engine of its own, each
    /// call limited to `call_timeout`, so that a view never waits for the
    /// writer's engine nor the writer for a view. `None` (the default):
    /// this one, shared (a reducer without a lock of its own, such as a
    /// Rust one, whose calls are not time-limited).
    fn for_views(
        &self,
        _call_timeout: std::time::Duration,
    ) -> Result<Option<Arc<dyn StreamReducer>>, LoadError> {
        Ok(None)
    }
}

/// One stream's state under a [`StreamReducer`].
pub trait StreamState: Send {
    /// Folds one event's payload into the state, with the event's `meta`
    /// (who sent it, when, what it had seen: see [`sync_core::Meta`]). On
    /// `Err` the state is what it was before the call.
    fn fold(&mut self, payload: &[u8], meta: &Meta<'_>) -> Result<(), Refusal>;
    /// The state as JSON text.
    fn to_json(&self) -> Result<String, Refusal>;
    /// The view `name` of the state with `params` (JSON text), as JSON
    /// text. `NOT_FOUND` when the reducer has no such view (the default:
    /// a reducer without views); `REDUCER` when the view failed.
    fn view(&self, name: &str, _params: &str) -> Result<String, Refusal> {
        Err(Refusal {
            code: ErrorCode::NotFound,
            message: format!("this stream's reducer has no views (asked for {name:?})"),
        })
    }
}

/// Which reducer folds which streams: `(pattern, reducer)` rules, the
/// first matching rule wins. Patterns are those of token permissions: a
/// stream name, or a prefix ending in `*` (`todos/*`; `*` is every
/// stream).
#[derive(Clone)]
pub struct Reducers {
    rules: Vec<(Pattern, Arc<dyn StreamReducer>)>,
    /// Most streams whose states a store's writer keeps between
    /// transactions.
    max_states: usize,
    /// When states are stored, and how much of the log is kept.
    snapshots: SnapshotPolicy,
}

/// When a store's writer stores a folded stream's state, and which events
/// it then deletes.
///
/// Only events at or below the stream's latest snapshot are ever deleted,
/// and only with a retention set. With both retentions set, an event is
/// kept while either one keeps it: it goes once it is more than
/// `retain_events` below the head *and* older than `retain_age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// A snapshot each time a stream's head passes a multiple of this
    /// (0: never).
    pub every: u64,
    /// With `Some(n)`, events more than `n` below the head and at or
    /// below the stream's latest snapshot are deleted (compaction);
    /// `None`: this rule deletes nothing.
    pub retain_events: Option<u64>,
    /// With `Some(d)`, events at or below the stream's latest snapshot
    /// stored more than `d` ago (by their `time_ms`) are deleted, by the
    /// appending transactions and by a background pass, since age grows
    /// while a stream is idle; `None`: this rule deletes nothing.
    pub retain_age: Option<Duration>,
    /// How often the background pass looks for events the retention lets
    /// go (`None`: a tenth of `retain_age`, between 1 s and 1 min). Runs
    /// only with a retention set, and by default only with `retain_age`
    /// (with `retain_events` alone, the appending transactions compact).
    pub compact_every: Option<Duration>,
}

/// Default [`SnapshotPolicy::every`].
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            every: DEFAULT_SNAPSHOT_EVERY,
            retain_events: None,
            retain_age: None,
            compact_every: None,
        }
    }
}

impl SnapshotPolicy {
    /// Whether any events are ever deleted.
    pub fn compacts(&self) -> bool {
        self.every > 0 && (self.retain_events.is_some() || self.retain_age.is_some())
    }

    /// How often a store runs its background compaction pass, if at all.
    pub fn pass_every(&self) -> Option<Duration> {
        if !self.compacts() {
            return None;
        }
        match (self.compact_every, self.retain_age) {
            (Some(every), _) => Some(every.max(Duration::from_millis(1))),
            (None, Some(age)) => {
                Some((age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60)))
            }
            (None, None) => None,
        }
    }

    /// Events stored at or before this time (ms since the Unix epoch) are
    /// old enough for the age rule at `now_ms`; `None` without the rule.
    pub fn old_at_or_before(&self, now_ms: u64) -> Option<u64> {
        let age = self.retain_age?;
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        Some(now_ms.saturating_sub(age_ms))
    }

    /// How far the events of a stream may be compacted, before the age
    /// rule is applied: the stream's latest snapshot is at `snapshot`,
    /// its head at `head`, its events compacted through `through`, and
    /// one pass deletes at most `max_rows`. `None` when nothing can go
    /// (no retention, or the bound is at or below `through`). The age
    /// rule then stops it before the first event newer than
    /// [`SnapshotPolicy::old_at_or_before`].
    pub fn compaction_bound(
        &self,
        snapshot: Offset,
        head: Offset,
        through: Offset,
        max_rows: u64,
    ) -> Option<Offset> {
        if !self.compacts() {
            return None;
        }
        let mut bound = snapshot
            .0
            .min(head.0)
            .min(through.0.saturating_add(max_rows));
        if let Some(n) = self.retain_events {
            bound = bound.min(head.0.saturating_sub(n));
        }
        (bound > through.0).then_some(Offset(bound))
    }
}

impl Default for Reducers {
    fn default() -> Self {
        Reducers {
            rules: Vec::new(),
            max_states: DEFAULT_MAX_STATES,
            snapshots: SnapshotPolicy::default(),
        }
    }
}

impl std::fmt::Debug for Reducers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|(p, r)| (p, r.describe())))
            .finish()
    }
}

impl Reducers {
    /// Folds the streams `pattern` matches with `reducer` (after the rules
    /// added before).
    pub fn add(&mut self, pattern: &str, reducer: Arc<dyn StreamReducer>) -> &mut Self {
        self.rules.push((Pattern::parse(pattern), reducer));
        self
    }

    /// Keeps the states of at most `max` streams (at least 1) between a
    /// writer's transactions: past it, the least recently used are dropped
    /// and rebuilt from the log when next needed. Default
    /// [`DEFAULT_MAX_STATES`].
    pub fn keep_states(&mut self, max: usize) -> &mut Self {
        self.max_states = max.max(1);
        self
    }

    /// When states are stored and events compacted (default: a snapshot
    /// every [`DEFAULT_SNAPSHOT_EVERY`] events, no compaction).
    pub fn snapshots(&mut self, policy: SnapshotPolicy) -> &mut Self {
        self.snapshots = policy;
        self
    }

    /// The snapshot policy.
    pub fn snapshot_policy(&self) -> SnapshotPolicy {
        self.snapshots
    }

    /// Appends the rules of `other` after these (the number of states
    /// kept stays these rules').
    pub fn extend(&mut self, other: Reducers) -> &mut Self {
        self.rules.extend(other.rules);
        self
    }

    /// No rules: every stream's payloads stay opaque.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The same rules with each reducer's instance for views
    /// ([`StreamReducer::for_views`]), keeping as many states.
    pub fn for_views(&self, call_timeout: std::time::Duration) -> Result<Reducers, LoadError> {
        let mut rules = Vec::with_capacity(self.rules.len());
        for (pattern, reducer) in &self.rules {
            let viewer = reducer.for_views(call_timeout)?;
            rules.push((pattern.clone(), viewer.unwrap_or_else(|| reducer.clone())));
        }
        Ok(Reducers {
            rules,
            max_states: self.max_states,
            snapshots: self.snapshots,
        })
    }

    /// The reducer of `stream`, if a rule matches it.
    pub fn for_stream(&self, stream: &StreamName) -> Option<&Arc<dyn StreamReducer>> {
        self.rules
            .iter()
            .find(|(p, _)| p.matches(stream.as_str()))
            .map(|(_, r)| r)
    }
}

/// A stream's state and the offset it is the state at.
pub struct Folded {
    /// The offset of the last event folded in (0: none).
    pub offset: Offset,
    /// The state.
    pub state: Box<dyn StreamState>,
    /// The schema version of the stream's stored snapshot when it was of
    /// an older version the reducer does not migrate, so this state is
    /// folded from the start of the log instead (which then must still
    /// hold every event).
    pub rebuilt_over: Option<u32>,
}

impl Folded {
    /// A state at `offset`.
    pub fn new(offset: Offset, state: Box<dyn StreamState>) -> Folded {
        Folded {
            offset,
            state,
            rebuilt_over: None,
        }
    }

    /// Folds the event appended next (at `meta.offset`); on a refusal
    /// nothing changes.
    pub fn fold(&mut self, payload: &[u8], meta: &Meta<'_>) -> Result<(), Refusal> {
        self.state.fold(payload, meta)?;
        self.offset = Offset(self.offset.0 + 1);
        Ok(())
    }
}

/// The states one store's writer keeps, one per stream with a reducer.
/// Not shared: the writer owns it, so a state only ever moves with
/// decisions the writer makes, in order.
///
/// Memory stays bounded: after each transaction the writer calls
/// [`Folds::trim`], which drops the least recently used states beyond
/// [`Reducers::keep_states`]; a dropped stream's state is started again
/// on its next use, as on its first: from the stream's latest snapshot
/// and the events after it, or from the start of its log. (Only between
/// transactions: a state then is at its committed head, so rebuilding it
/// from the log gives the same state; within one, more streams may be
/// kept, as many as its batch touches.)
pub struct Folds {
    reducers: Reducers,
    states: HashMap<StreamName, Kept>,
    /// The kept streams by last use (the `used` of their [`Kept`]), oldest
    /// first.
    recency: BTreeMap<u64, StreamName>,
    clock: u64,
    built: u64,
    dropped: u64,
    metrics: Option<Arc<Metrics>>,
    /// Streams [`Folds::start_from`] could not start for schema reasons,
    /// with why: their next [`Folds::at_from`] answers
    /// [`Unfolded::Undecided`].
    blocked: HashMap<StreamName, Refusal>,
}

/// A kept state and when it was last used.
struct Kept {
    folded: Folded,
    used: u64,
}

/// Why [`Folds::at`] has no state to give.
#[derive(Debug)]
pub enum Unfolded<E> {
    /// Reading the log failed, or the log is inconsistent.
    Read(E),
    /// The reducer could not start a state (e.g. its engine is out of
    /// memory): the stream's new intents are refused with this.
    Reducer(Refusal),
    /// The reducer cannot fold the stream's log because of schema
    /// versions (an event newer than the reducer; a snapshot older than
    /// it that it cannot migrate, over compacted events): the stream's
    /// new intents are not decided on this node (`SCHEMA_TOO_NEW` or
    /// `SCHEMA_TOO_OLD`), and nothing is kept.
    Undecided(Refusal),
}

/// The refusal for a stream whose snapshot is of the older schema
/// version `old`, which `reducer` does not migrate, and whose events
/// from `missing` on were compacted away: its state cannot be had.
fn not_rebuilt(
    stream: &StreamName,
    reducer: &Arc<dyn StreamReducer>,
    old: u32,
    missing: Offset,
) -> Refusal {
    Refusal {
        code: ErrorCode::SchemaTooOld,
        message: format!(
            "the snapshot of {stream} is of schema version {old}, which {} (version {}) does not \
             migrate (it exports no migrate), and its events from offset {missing} on were compacted \
             away, so its state cannot be rebuilt either: export a migrate(state, fromVersion)",
            reducer.describe(),
            reducer.schema_version()
        ),
    }
}

/// Why [`Folds`] could not start a state: see [`Unfolded`].
#[derive(Debug)]
pub enum Started {
    /// [`Unfolded::Reducer`].
    Reducer(Refusal),
    /// [`Unfolded::Undecided`].
    Undecided(Refusal),
}

/// Events of a stream after an offset, ascending; an empty page is the
/// end of the log.
pub type Replayed = Vec<Event>;

impl Folds {
    /// No states yet.
    pub fn new(reducers: Reducers) -> Folds {
        Folds {
            reducers,
            states: HashMap::new(),
            recency: BTreeMap::new(),
            clock: 0,
            built: 0,
            dropped: 0,
            metrics: None,
            blocked: HashMap::new(),
        }
    }

    /// [`Folds::new`], counting its states in `metrics`
    /// (`logsync_reducer_states`, `…_built_total`, `…_dropped_total`).
    pub fn with_metrics(reducers: Reducers, metrics: Arc<Metrics>) -> Folds {
        Folds {
            metrics: Some(metrics),
            ..Folds::new(reducers)
        }
    }

    /// How many streams' states are kept now.
    pub fn kept(&self) -> usize {
        self.states.len()
    }

    /// States folded from the start of a log so far (first uses, and
    /// rebuilds after a drop or a rollback).
    pub fn built(&self) -> u64 {
        self.built
    }

    /// States dropped so far as least recently used.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the state of `stream` is kept.
    pub fn keeps(&self, stream: &StreamName) -> bool {
        self.states.contains_key(stream)
    }

    /// Takes the kept state of `stream` out (to fold it on or rebuild it).
    fn take(&mut self, stream: &StreamName) -> Option<Folded> {
        let kept = self.states.remove(stream)?;
        self.recency.remove(&kept.used);
        Some(kept.folded)
    }

    /// Keeps `folded` as the state of `stream`, used now.
    fn keep(&mut self, stream: &StreamName, folded: Folded) {
        self.clock += 1;
        self.recency.insert(self.clock, stream.clone());
        self.states.insert(
            stream.clone(),
            Kept {
                folded,
                used: self.clock,
            },
        );
    }

    /// Marks the kept state of `stream` as used now.
    fn touch(&mut self, stream: &StreamName) {
        if let Some(kept) = self.states.get_mut(stream) {
            self.recency.remove(&kept.used);
            self.clock += 1;
            kept.used = self.clock;
            self.recency.insert(self.clock, stream.clone());
        }
    }

    fn count(&self) {
        if let Some(m) = &self.metrics {
            m.reducer_states.store(
                i64::try_from(self.states.len()).unwrap_or(i64::MAX),
                Relaxed,
            );
        }
    }

    /// Drops the least recently used states beyond
    /// [`Reducers::keep_states`]. Call it only between transactions (every
    /// kept state at its committed head).
    pub fn trim(&mut self) {
        let mut dropped = 0;
        while self.states.len() > self.reducers.max_states {
            let Some((_, stream)) = self.recency.pop_first() else {
                break;
            };
            if self.states.remove(&stream).is_some() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.dropped += dropped;
            if let Some(m) = &self.metrics {
                m.reducer_states_dropped.fetch_add(dropped, Relaxed);
            }
            tracing::debug!(
                dropped,
                kept = self.states.len(),
                "reducer states of the least recently used streams dropped"
            );
        }
        self.count();
    }

    /// Whether any stream has a reducer.
    pub fn is_empty(&self) -> bool {
        self.reducers.is_empty()
    }

    /// The state of `stream` at `head`: the kept one when it is at
    /// `head`, the kept one folded on through `read` (pages of the events
    /// after an offset) when it is behind (another node appended), else
    /// one folded from the start of the log. `Ok(None)`: the stream has no reducer.
    ///
    /// While rebuilding, an event the reducer refuses leaves the state as
    /// it was (as on every client) and is logged: events appended before
    /// the reducer was configured are not checked.
    pub fn at<E: From<Refusal>>(
        &mut self,
        stream: &StreamName,
        head: Offset,
        read: impl FnMut(Offset) -> Result<Replayed, E>,
    ) -> Result<Option<&mut Folded>, Unfolded<E>> {
        self.at_from(stream, head, || Ok(None), read)
    }

    /// [`Folds::at`], where a state that is not kept starts from the
    /// stream's latest stored snapshot (`snapshot`, asked only then) when
    /// there is one at or below `head` and the reducer restores it, and
    /// is folded on from there; else from the start of the log.
    pub fn at_from<E: From<Refusal>>(
        &mut self,
        stream: &StreamName,
        head: Offset,
        snapshot: impl FnOnce() -> Result<Option<StoredSnapshot>, E>,
        mut read: impl FnMut(Offset) -> Result<Replayed, E>,
    ) -> Result<Option<&mut Folded>, Unfolded<E>> {
        let Some(reducer) = self.reducers.for_stream(stream) else {
            return Ok(None);
        };
        let reducer = reducer.clone();
        if let Some(r) = self.blocked.remove(stream) {
            return Err(Unfolded::Undecided(r));
        }
        // A kept state beyond `head` holds decisions that were rolled
        // back: it is rebuilt. One behind it (another node appended) folds
        // on from where it is.
        if self
            .states
            .get(stream)
            .is_some_and(|k| k.folded.offset > head)
        {
            self.take(stream);
        }
        if self
            .states
            .get(stream)
            .is_none_or(|k| k.folded.offset < head)
        {
            let mut folded = match self.take(stream) {
                Some(kept) => kept,
                None => {
                    let snapshot = snapshot().map_err(Unfolded::Read)?;
                    self.started(&reducer, stream, head, snapshot)
                        .map_err(|e| match e {
                            Started::Reducer(r) => Unfolded::Reducer(r),
                            Started::Undecided(r) => Unfolded::Undecided(r),
                        })?
                }
            };
            while folded.offset < head {
                let page = read(folded.offset).map_err(Unfolded::Read)?;
                if page.is_empty() {
                    break;
                }
                for event in page {
                    let offset = event.offset;
                    if let Some(old) = folded
                        .rebuilt_over
                        .filter(|_| offset.0 != folded.offset.0 + 1)
                    {
                        return Err(Unfolded::Undecided(not_rebuilt(
                            stream,
                            &reducer,
                            old,
                            folded.offset.next(),
                        )));
                    }
                    if event.schema > reducer.schema_version() {
                        // Written by a node with a newer reducer: this one
                        // cannot read it, and stops here (nothing kept).
                        return Err(Unfolded::Undecided(Refusal {
                            code: ErrorCode::SchemaTooNew,
                            message: format!(
                                "the log of {stream} holds an event of schema version {} at offset {offset}, \
                                 newer than this node's reducer ({}, version {}): upgrade this node",
                                event.schema,
                                reducer.describe(),
                                reducer.schema_version()
                            ),
                        }));
                    }
                    if offset.0 != folded.offset.0 + 1 {
                        return Err(Unfolded::Read(E::from(Refusal {
                            code: ErrorCode::Storage,
                            message: format!(
                                "the log of {stream} skips from offset {} to {offset}",
                                folded.offset
                            ),
                        })));
                    }
                    if let Err(r) = folded.state.fold(&event.payload, &Meta::of_event(&event)) {
                        tracing::warn!(
                            stream = %stream, offset = %offset, code = r.code.as_str(),
                            reason = %r.message, "a stored event is refused by the reducer; its state is unchanged"
                        );
                    }
                    folded.offset = offset;
                }
            }
            if let Some(old) = folded.rebuilt_over.filter(|_| folded.offset != head) {
                return Err(Unfolded::Undecided(not_rebuilt(
                    stream,
                    &reducer,
                    old,
                    folded.offset.next(),
                )));
            }
            if folded.offset != head {
                return Err(Unfolded::Read(E::from(Refusal {
                    code: ErrorCode::Storage,
                    message: format!(
                        "the log of {stream} ends at offset {} below its head {head}",
                        folded.offset
                    ),
                })));
            }
            self.keep(stream, folded);
            self.count();
        } else {
            self.touch(stream);
        }
        Ok(self.states.get_mut(stream).map(|k| &mut k.folded))
    }

    /// A new state of `stream` (folded by `reducer`) at or below `head`:
    /// restored from `snapshot` when there is one at or below `head` and
    /// the reducer restores it, else the reducer's start (at offset 0).
    fn started(
        &mut self,
        reducer: &Arc<dyn StreamReducer>,
        stream: &StreamName,
        head: Offset,
        snapshot: Option<StoredSnapshot>,
    ) -> Result<Folded, Started> {
        let mut rebuilt_over = None;
        let restored = match snapshot {
            Some(StoredSnapshot {
                offset,
                state: bytes,
                schema,
            }) if offset <= head => {
                let current = reducer.schema_version();
                if schema > current {
                    return Err(Started::Undecided(Refusal {
                        code: ErrorCode::SchemaTooNew,
                        message: format!(
                            "the snapshot of {stream} is of schema version {schema}, newer than this node's \
                             reducer ({}, version {current}): upgrade this node",
                            reducer.describe()
                        ),
                    }));
                }
                let restore = |json: &str| -> Result<Option<Box<dyn StreamState>>, Refusal> {
                    if schema == current {
                        return reducer.restore(json).map(Some);
                    }
                    match reducer.migrate(json, schema) {
                        Some(migrated) => migrated.map(Some),
                        None => Ok(None),
                    }
                };
                match std::str::from_utf8(&bytes)
                    .map_err(|e| Refusal {
                        code: ErrorCode::Reducer,
                        message: format!("the snapshot is not UTF-8 text: {e}"),
                    })
                    .and_then(restore)
                {
                    Ok(Some(state)) => Some(Folded::new(offset, state)),
                    Ok(None) => {
                        tracing::info!(
                            stream = %stream, offset = %offset, snapshot_schema = schema, schema = current,
                            "the stream's snapshot is of an older schema version and the reducer does not \
                             migrate states; folding its whole log"
                        );
                        rebuilt_over = Some(schema);
                        None
                    }
                    Err(r) => {
                        tracing::warn!(
                            stream = %stream, offset = %offset, code = r.code.as_str(),
                            reason = %r.message,
                            "the stream's snapshot could not be restored; folding its whole log"
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let folded = match restored {
            Some(folded) => folded,
            None => Folded {
                offset: Offset(0),
                state: reducer.start().map_err(Started::Reducer)?,
                rebuilt_over,
            },
        };
        self.built += 1;
        if let Some(m) = &self.metrics {
            m.reducer_states_built.fetch_add(1, Relaxed);
        }
        Ok(folded)
    }

    /// The offset of the kept state of `stream`, if one is kept.
    pub fn kept_at(&self, stream: &StreamName) -> Option<Offset> {
        self.states.get(stream).map(|k| k.folded.offset)
    }

    /// Drops the kept state of `stream`: it is started again (from the
    /// stream's snapshot) on its next use. For a state behind events
    /// that were compacted away since it was kept.
    pub fn forget(&mut self, stream: &StreamName) {
        if self.take(stream).is_some() {
            self.count();
        }
    }

    /// For a store whose reads are asynchronous: starts the state of
    /// `stream` when none is kept, from `snapshot` (the stream's latest
    /// stored one) when it is at or below `head` and the reducer restores
    /// it, else from the start of the log, and keeps it. Answers the
    /// offset the kept state is at (the store reads the events after it
    /// up to `head`, and [`Folds::at_from`] folds them on), or `None`
    /// when no reducer folds `stream`. A refusal: the reducer cannot
    /// start a state (nothing is kept).
    pub fn start_from(
        &mut self,
        stream: &StreamName,
        head: Offset,
        snapshot: Option<StoredSnapshot>,
    ) -> Result<Option<Offset>, Refusal> {
        let Some(reducer) = self.reducers.for_stream(stream).cloned() else {
            return Ok(None);
        };
        if let Some(at) = self.kept_at(stream) {
            if at <= head {
                return Ok(Some(at));
            }
            // Beyond the head: decisions that were rolled back.
            self.take(stream);
        }
        let folded = match self.started(&reducer, stream, head, snapshot) {
            Ok(folded) => folded,
            Err(Started::Reducer(r)) => return Err(r),
            Err(Started::Undecided(r)) => {
                // Told by the next [`Folds::at_from`] of the stream.
                self.blocked.insert(stream.clone(), r.clone());
                return Err(r);
            }
        };
        let at = folded.offset;
        self.keep(stream, folded);
        self.count();
        Ok(Some(at))
    }

    /// The state of `stream` to store as a snapshot after a transaction
    /// moved its head from `before` to the kept state's offset: `Some`
    /// when that move passed a multiple of [`SnapshotPolicy::every`]
    /// (the state as JSON text, or why it could not be written, and the
    /// reducer's schema version to store it under).
    pub fn snapshot_due(
        &self,
        stream: &StreamName,
        before: Offset,
    ) -> Option<(Offset, Result<String, Refusal>, u32)> {
        let every = self.reducers.snapshots.every;
        if every == 0 {
            return None;
        }
        let kept = &self.states.get(stream)?.folded;
        if kept.offset.0 / every <= before.0 / every {
            return None;
        }
        let schema = self
            .reducers
            .for_stream(stream)
            .map_or(1, |r| r.schema_version());
        Some((kept.offset, kept.state.to_json(), schema))
    }

    /// The snapshot policy of these folds.
    pub fn policy(&self) -> SnapshotPolicy {
        self.reducers.snapshots
    }

    /// The schema versions the reducer of `stream` takes, `(min,
    /// current)`; `None` without a reducer.
    pub fn schema_range(&self, stream: &StreamName) -> Option<(u32, u32)> {
        let r = self.reducers.for_stream(stream)?;
        Some((r.min_schema_version(), r.schema_version()))
    }

    /// Whether a reducer folds `stream`.
    pub fn folds(&self, stream: &StreamName) -> bool {
        self.reducers.for_stream(stream).is_some()
    }

    /// Where the state of `stream` at `head` has to be folded on from:
    /// `None` when no reducer folds `stream` or the kept state is at
    /// `head`, else the offset after which [`Folds::at`] reads the log
    /// (the kept state's offset, or 0 when it is rebuilt). Lets a store
    /// whose reads are asynchronous fetch those events first.
    pub fn behind(&self, stream: &StreamName, head: Offset) -> Option<Offset> {
        self.reducers.for_stream(stream)?;
        match self.states.get(stream).map(|k| k.folded.offset) {
            Some(offset) if offset == head => None,
            Some(offset) if offset < head => Some(offset),
            _ => Some(Offset(0)),
        }
    }

    /// Drops every kept state (after a transaction that folded intents
    /// rolled back): each is rebuilt from the log on its next use.
    pub fn forget_all(&mut self) {
        self.states.clear();
        self.recency.clear();
        self.count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A state that lists the payloads folded into it; `start` is counted.
    struct Listing {
        starts: Arc<AtomicUsize>,
    }

    struct Listed(Vec<String>);

    impl StreamReducer for Listing {
        fn describe(&self) -> String {
            "listing".into()
        }
        fn start(&self) -> Result<Box<dyn StreamState>, Refusal> {
            self.starts.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(Listed(Vec::new())))
        }
    }

    impl StreamState for Listed {
        fn fold(&mut self, payload: &[u8], _: &Meta<'_>) -> Result<(), Refusal> {
            self.0.push(String::from_utf8_lossy(payload).into_owned());
            Ok(())
        }
        fn to_json(&self) -> Result<String, Refusal> {
            Ok(serde_json::to_string(&self.0).expect("json"))
        }
    }

    /// The event at `offset` with `payload` (one client, no subject).
    fn event(offset: u64, payload: &[u8]) -> Event {
        Event {
            offset: Offset(offset),
            client_id: sync_core::ClientId([1; 16]),
            seq: sync_core::Seq::new(offset).expect("seq"),
            time_ms: 0,
            payload: payload.to_vec(),
            subject: None,
            seen: Offset::ZERO,
            schema: 1,
        }
    }

    /// The logs of some streams, and the reads of them.
    #[derive(Default)]
    struct Logs {
        logs: HashMap<String, Vec<Vec<u8>>>,
        reads: Mutex<Vec<(String, Offset)>>,
    }

    impl Logs {
        fn head(&self, s: &StreamName) -> Offset {
            Offset(self.logs.get(s.as_str()).map_or(0, |l| l.len() as u64))
        }

        fn read(&self, s: &StreamName, after: Offset) -> Result<Replayed, Refusal> {
            self.reads
                .lock()
                .expect("lock")
                .push((s.to_string(), after));
            Ok(self
                .logs
                .get(s.as_str())
                .map(|l| {
                    l.iter()
                        .enumerate()
                        .skip(after.0 as usize)
                        .map(|(i, p)| event(i as u64 + 1, p))
                        .collect()
                })
                .unwrap_or_default())
        }

        /// Appends `payload` the way a writer does: folds it onto the
        /// state at the head, then puts it in the log.
        fn append(&mut self, folds: &mut Folds, s: &StreamName, payload: &str) {
            let head = self.head(s);
            let logs = &*self;
            let folded = folds
                .at(s, head, |after| logs.read(s, after))
                .ok()
                .flatten()
                .expect("a state");
            let at = event(head.0 + 1, payload.as_bytes());
            folded
                .fold(&at.payload, &Meta::of_event(&at))
                .expect("fold");
            self.logs
                .entry(s.to_string())
                .or_default()
                .push(payload.as_bytes().to_vec());
        }

        fn state(&self, folds: &mut Folds, s: &StreamName) -> (Offset, String) {
            let folded = folds
                .at(s, self.head(s), |after| self.read(s, after))
                .ok()
                .flatten()
                .expect("a state");
            (folded.offset, folded.state.to_json().expect("json"))
        }
    }

    fn name(s: &str) -> StreamName {
        StreamName::new(s).expect("stream name")
    }

    #[test]
    fn past_the_cap_the_least_recently_used_state_is_dropped_and_rebuilt_from_its_log() {
        let starts = Arc::new(AtomicUsize::new(0));
        let mut reducers = Reducers::default();
        reducers
            .add(
                "s/*",
                Arc::new(Listing {
                    starts: starts.clone(),
                }),
            )
            .keep_states(2);
        let metrics = Arc::new(Metrics::default());
        let mut folds = Folds::with_metrics(reducers, metrics.clone());
        let mut logs = Logs::default();
        let (a, b, c) = (name("s/a"), name("s/b"), name("s/c"));

        // Each append is one transaction: trimmed after it.
        for (s, p) in [(&a, "a1"), (&a, "a2"), (&b, "b1"), (&c, "c1")] {
            logs.append(&mut folds, s, p);
            folds.trim();
        }
        assert_eq!(folds.kept(), 2);
        assert!(!folds.keeps(&a), "a is the least recently used");
        assert!(folds.keeps(&b) && folds.keeps(&c));
        assert_eq!(folds.dropped(), 1);
        assert_eq!(starts.load(Ordering::Relaxed), 3);

        // a is needed again: folded from offset 0, equal to its log's fold.
        logs.reads.lock().expect("lock").clear();
        assert_eq!(
            logs.state(&mut folds, &a),
            (Offset(2), r#"["a1","a2"]"#.to_string())
        );
        assert_eq!(
            logs.reads.lock().expect("lock").first(),
            Some(&("s/a".to_string(), Offset(0))),
            "rebuilt from the start of its log"
        );
        assert_eq!(starts.load(Ordering::Relaxed), 4);
        assert_eq!(folds.built(), 4);
        // It goes on from there.
        logs.append(&mut folds, &a, "a3");
        folds.trim();
        assert_eq!(
            logs.state(&mut folds, &a),
            (Offset(3), r#"["a1","a2","a3"]"#.to_string())
        );
        // Now b was used least recently; c was kept and folds on as is.
        assert!(!folds.keeps(&b));
        assert!(folds.keeps(&c));
        assert_eq!(folds.kept(), 2);
        assert_eq!(folds.dropped(), 2);
        assert_eq!(
            logs.state(&mut folds, &c),
            (Offset(1), r#"["c1"]"#.to_string())
        );
        assert_eq!(starts.load(Ordering::Relaxed), 4, "c was not rebuilt");
        // A read marks a state used: b comes back, a (read before c) goes.
        assert_eq!(
            logs.state(&mut folds, &b),
            (Offset(1), r#"["b1"]"#.to_string())
        );
        folds.trim();
        assert!(folds.keeps(&b) && folds.keeps(&c) && !folds.keeps(&a));

        assert_eq!(metrics.reducer_states.load(Relaxed), 2);
        assert_eq!(metrics.reducer_states_built.load(Relaxed), 5);
        assert_eq!(metrics.reducer_states_dropped.load(Relaxed), 3);
        folds.forget_all();
        assert_eq!(metrics.reducer_states.load(Relaxed), 0);
        assert_eq!(folds.kept(), 0);
    }

    #[test]
    fn within_a_transaction_the_cap_waits_for_trim() {
        let starts = Arc::new(AtomicUsize::new(0));
        let mut reducers = Reducers::default();
        reducers
            .add("*", Arc::new(Listing { starts }))
            .keep_states(1);
        let mut folds = Folds::new(reducers);
        let mut logs = Logs::default();
        let (a, b) = (name("a"), name("b"));
        logs.append(&mut folds, &a, "a1");
        logs.append(&mut folds, &b, "b1");
        // Both are kept until the transaction ends: a's state may hold
        // decisions not committed yet.
        assert_eq!(folds.kept(), 2);
        folds.trim();
        assert_eq!(folds.kept(), 1);
        assert!(folds.keeps(&b));
    }

    /// The code of an `Undecided` answer, or what came instead.
    fn undecided<E: std::fmt::Debug>(r: Result<Option<&mut Folded>, Unfolded<E>>) -> ErrorCode {
        match r {
            Err(Unfolded::Undecided(r)) => r.code,
            Err(other) => panic!("another failure: {other:?}"),
            Ok(_) => panic!("folded"),
        }
    }

    #[test]
    fn a_log_or_snapshot_of_another_schema_version_is_not_guessed_at() {
        let listing = || {
            let mut reducers = Reducers::default();
            reducers.add(
                "*",
                Arc::new(Listing {
                    starts: Arc::new(AtomicUsize::new(0)),
                }),
            );
            Folds::new(reducers)
        };
        let s = name("s");
        let log = [
            event(1, b"a"),
            Event {
                schema: 2,
                ..event(2, b"b")
            },
        ];
        let read = |after: Offset| -> Result<Replayed, Refusal> {
            Ok(log.iter().filter(|e| e.offset > after).cloned().collect())
        };
        // An event newer than the reducer: the fold stops, nothing kept.
        let mut folds = listing();
        assert_eq!(
            undecided(folds.at(&s, Offset(2), read)),
            ErrorCode::SchemaTooNew
        );
        assert!(!folds.keeps(&s));
        // Up to the event before it, it folds.
        let first = |after: Offset| -> Result<Replayed, Refusal> {
            Ok(log[..1]
                .iter()
                .filter(|e| e.offset > after)
                .cloned()
                .collect())
        };
        assert!(folds.at(&s, Offset(1), first).expect("folds").is_some());
        // A snapshot newer than the reducer.
        let snapshot = |schema| StoredSnapshot {
            offset: Offset(1),
            state: br#"["a"]"#.to_vec(),
            schema,
        };
        let mut folds = listing();
        assert_eq!(
            undecided(folds.at_from(&s, Offset(1), || Ok(Some(snapshot(2))), read)),
            ErrorCode::SchemaTooNew
        );
        // An older one the reducer does not migrate, over compacted
        // events: refused, not folded from a hole.
        let compacted = |after: Offset| -> Result<Replayed, Refusal> {
            Ok(log[..1]
                .iter()
                .filter(|e| e.offset > after.max(Offset(1)))
                .cloned()
                .collect())
        };
        let mut reducers = Reducers::default();
        reducers.add("*", Arc::new(Versioned));
        let mut folds = Folds::new(reducers);
        assert_eq!(
            undecided(folds.at_from(&s, Offset(1), || Ok(Some(snapshot(1))), compacted)),
            ErrorCode::SchemaTooOld
        );
        // With the events still there, rebuilt from them.
        let full = |after: Offset| -> Result<Replayed, Refusal> {
            Ok(log[..1]
                .iter()
                .filter(|e| e.offset > after)
                .cloned()
                .collect())
        };
        let folded = folds
            .at_from(&s, Offset(1), || Ok(Some(snapshot(1))), full)
            .expect("rebuilt")
            .expect("a state");
        assert_eq!(folded.state.to_json().expect("json"), r#"["a"]"#);
    }

    /// A listing reducer of schema version 2 that does not migrate.
    struct Versioned;

    impl StreamReducer for Versioned {
        fn describe(&self) -> String {
            "versioned".into()
        }
        fn schema_version(&self) -> u32 {
            2
        }
        fn min_schema_version(&self) -> u32 {
            1
        }
        fn start(&self) -> Result<Box<dyn StreamState>, Refusal> {
            Ok(Box::new(Listed(Vec::new())))
        }
        fn restore(&self, json: &str) -> Result<Box<dyn StreamState>, Refusal> {
            Ok(Box::new(Listed(serde_json::from_str(json).expect("json"))))
        }
    }
}
