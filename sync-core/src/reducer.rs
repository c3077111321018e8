//! The `Reducer` trait: a pure, deterministic `(state, action) -> state`.

use crate::types::{ClientId, Event, Offset, Seq};
use alloc::string::String;

/// A pure, deterministic reducer over a stream's events, Redux style.
///
/// `decode` turns an event's payload bytes into an action (for the JS API:
/// `JSON.parse` of the payload text); `reduce` folds one action into a state
/// and returns the next state without changing the old one (the old one
/// stays the confirmed state that pending intents are rebased on).
///
/// Both must be deterministic: every replica folds the same events with the
/// same reducer and must reach the same state. An error is deterministic too:
/// an event whose payload does not decode, or that the reducer refuses,
/// leaves the state unchanged on every replica and is reported.
pub trait Reducer {
    /// The state.
    type State: Clone;
    /// A decoded payload.
    type Action;

    /// Decodes a payload.
    fn decode(&self, payload: &[u8]) -> Result<Self::Action, ReduceError>;

    /// Folds one action into `state`.
    fn reduce(
        &self,
        state: &Self::State,
        action: &Self::Action,
    ) -> Result<Self::State, ReduceError>;

    /// Folds one action into `state`, knowing where it comes from
    /// ([`Meta`]). Every replica and the server call this one; the default
    /// ignores `meta` and calls [`Reducer::reduce`]. Override it to enforce
    /// rules about who may do what (`meta.subject`) or about stale reads
    /// (`meta.seen`); an `Err` refuses the action.
    fn reduce_meta(
        &self,
        state: &Self::State,
        action: &Self::Action,
        meta: &Meta<'_>,
    ) -> Result<Self::State, ReduceError> {
        let _ = meta;
        self.reduce(state, action)
    }

    /// Whether the last [`Reducer::reduce_meta`] call read its `meta`.
    /// A pending intent whose fold read it (its local values) is folded
    /// again when its event confirms it, with the server's values; one
    /// whose fold did not keeps the optimistic state as it is (the same
    /// value, no notification). The default is right for the default
    /// `reduce_meta`, which ignores `meta`; a reducer that overrides
    /// `reduce_meta` and cannot tell returns true.
    fn read_meta(&self) -> bool {
        false
    }

    /// A state from its JSON text: a snapshot the server sends a client
    /// whose missing events were compacted away. The default refuses
    /// (such a client cannot follow a compacted stream from below its
    /// horizon).
    fn decode_state(&self, _json: &[u8]) -> Result<Self::State, ReduceError> {
        Err(ReduceError(
            "this reducer cannot start from a snapshot (implement Reducer::decode_state)".into(),
        ))
    }

    /// A state as the JSON text the server's fold of the same events
    /// stores as its snapshot (for a JS reducer: `JSON.stringify`; for a
    /// Rust reducer on the server: `serde_json::to_string`), so that a
    /// client can compare its fold with the server's at a
    /// [`crate::ServerMsg::Checkpoint`]. The default, `None`, skips the
    /// comparison.
    fn encode_state(&self, _state: &Self::State) -> Option<alloc::vec::Vec<u8>> {
        None
    }

    /// The view `name` of `state` with `params` (JSON text), as JSON text:
    /// what a JavaScript module's `views.name(state, params)` answers, for
    /// a Rust reducer the server folds with (`GET
    /// /v1/streams/{s}/views/{name}`, SSE feeds and WebSocket watches).
    /// Pure and deterministic, like `reduce`. `None`: the reducer has no
    /// view `name` (the default: no views); `Some(Err)`: the view failed
    /// for these params.
    fn view(
        &self,
        _state: &Self::State,
        _name: &str,
        _params: &[u8],
    ) -> Option<Result<alloc::vec::Vec<u8>, ReduceError>> {
        None
    }

    /// The names [`Reducer::view`] answers, for the message that refuses
    /// another one.
    fn view_names(&self) -> &[&str] {
        &[]
    }

    /// The schema version of the actions this reducer takes and the
    /// states it makes: 1 until an app changes their shape, then raised by
    /// one per change. Every intent carries the version it was made under,
    /// events keep it, and an action of an older version is upcast
    /// ([`Reducer::upcast`]) before it is folded, on every replica alike.
    fn schema_version(&self) -> u32 {
        1
    }

    /// The oldest schema version [`Reducer::upcast`] takes. An intent made
    /// under an older one is refused by the server (`SCHEMA_TOO_OLD`); an
    /// older event is skipped like one the reducer refuses. The default:
    /// [`Reducer::schema_version`] (no upcasting).
    fn min_schema_version(&self) -> u32 {
        self.schema_version()
    }

    /// `action`, made under the older schema version `from`, as an action
    /// of [`Reducer::schema_version`]. Pure and deterministic, like
    /// `reduce`: every replica upcasts the same event alike. Called only
    /// for `from` between [`Reducer::min_schema_version`] and the current
    /// version (exclusive).
    fn upcast(&self, action: Self::Action, from: u32) -> Result<Self::Action, ReduceError> {
        let _ = action;
        Err(alloc::format!(
            "an action of schema version {from} cannot be upcast to version {} (the reducer has no upcast)",
            self.schema_version()
        )
        .into())
    }

    /// `state`, made under the older schema version `from`, as a state of
    /// [`Reducer::schema_version`]: a stored snapshot after an upgrade.
    /// `None` (the default): this reducer does not migrate states; the
    /// state is rebuilt from the events instead.
    fn migrate(&self, state: Self::State, from: u32) -> Option<Result<Self::State, ReduceError>> {
        let _ = (state, from);
        None
    }

    /// Decodes a payload made under schema version `schema` into an action
    /// of this reducer's version: [`Reducer::decode`], then
    /// [`Reducer::upcast`] for an older version. A version newer than this
    /// reducer's, or older than its oldest, is an error (callers that must
    /// tell those apart compare the version first).
    fn decode_at(&self, payload: &[u8], schema: u32) -> Result<Self::Action, ReduceError> {
        let now = self.schema_version();
        if schema > now {
            return Err(alloc::format!(
                "made under schema version {schema}, newer than this reducer's {now}"
            )
            .into());
        }
        let action = self.decode(payload)?;
        if schema == now {
            return Ok(action);
        }
        let oldest = self.min_schema_version();
        if schema < oldest {
            return Err(alloc::format!(
                "made under schema version {schema}, older than the oldest this reducer upcasts ({oldest})"
            )
            .into());
        }
        self.upcast(action, schema)
    }

    /// Folds a batch of confirmed events onto `state`, each decoded as
    /// [`Reducer::decode_at`] would and reduced by
    /// [`Reducer::reduce_meta`] with [`Meta::of_event`]. An event that
    /// does not decode, or that the reducer refuses, leaves the state as
    /// it was; it is reported with its index in `events`, in order.
    /// Returns the state after the batch (`None`: no event applied) and
    /// those failures. The default folds the events one by one; a reducer
    /// for which every call crosses a boundary (a JavaScript reducer in a
    /// browser) folds the batch in one call and must give the same result.
    fn fold_events(&self, state: &Self::State, events: &[Event]) -> Folded<Self::State> {
        let mut folded = Folded {
            state: None,
            errors: alloc::vec::Vec::new(),
        };
        for (i, e) in events.iter().enumerate() {
            let base = folded.state.as_ref().unwrap_or(state);
            match self
                .decode_at(&e.payload, e.schema)
                .and_then(|a| self.reduce_meta(base, &a, &Meta::of_event(e)))
            {
                Ok(next) => folded.state = Some(next),
                Err(err) => folded.errors.push((i, err)),
            }
        }
        folded
    }
}

/// What [`Reducer::fold_events`] made of a batch.
#[derive(Debug)]
pub struct Folded<S> {
    /// The state after the batch; `None` when no event of it applied.
    pub state: Option<S>,
    /// The events that did not decode or that the reducer refused: their
    /// index in the batch and why, in order.
    pub errors: alloc::vec::Vec<(usize, ReduceError)>,
}

/// What a reducer knows about the action it folds, the same on every
/// device: a confirmed event's values as the server stored them; for an
/// intent still pending on this device, its local values (`offset` and
/// `seq` are `None`, `time_ms` is this device's clock at dispatch).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Meta<'a> {
    /// The event's offset; `None` while pending.
    pub offset: Option<Offset>,
    /// The client that dispatched it.
    pub client_id: ClientId,
    /// Who dispatched it, as the server verified (the token's `sub`);
    /// `None` with authentication off. While pending, the subject this
    /// device believes it has.
    pub subject: Option<&'a str>,
    /// The client's seq; `None` while pending.
    pub seq: Option<Seq>,
    /// The server's clock when it appended the event (pending: this
    /// device's at dispatch), ms since the Unix epoch.
    pub time_ms: u64,
    /// The confirmed offset the dispatching client had when it dispatched.
    pub seen: Offset,
    /// The schema version the action was made under (before any upcast).
    pub schema: u32,
}

impl<'a> Meta<'a> {
    /// The meta of a confirmed event.
    pub fn of_event(e: &'a Event) -> Meta<'a> {
        Meta {
            offset: Some(e.offset),
            client_id: e.client_id,
            subject: e.subject.as_deref(),
            seq: Some(e.seq),
            time_ms: e.time_ms,
            seen: e.seen,
            schema: e.schema,
        }
    }
}

/// A reducer's failure: a payload that does not decode, or an action the
/// reducer threw on.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReduceError(pub String);

impl From<&str> for ReduceError {
    fn from(value: &str) -> Self {
        ReduceError(value.into())
    }
}

impl From<String> for ReduceError {
    fn from(value: String) -> Self {
        ReduceError(value)
    }
}
