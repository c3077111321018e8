//! Reducers the server runs at the ordering point: the fold of a stream's
//! log into its state, so the single writer can refuse an intent the
//! app's reducer throws on before it is appended, and serve the state.
//!
//! [`StreamReducer`] is what a store calls; [`js::JsReducer`] runs an ES
//! module in QuickJS, and [`rust::RustReducer`] runs a
//! [`sync_core::Reducer`]; either is registered through [`Reducers::add`]
//! (the library API, with [`crate::Server::open_with_reducers`]). [`Folds`] is
//! the per-stream state a store's writer keeps: built from the log on a
//! stream's first use, then advanced by every accepted intent.

pub mod js;
pub mod rust;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use sync_core::{ErrorCode, Offset, StreamName};

use crate::auth::Pattern;

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

/// A deterministic reducer the server folds streams with.
pub trait StreamReducer: Send + Sync + 'static {
    /// What it is, for logs (`JavaScript module ./todos.js`).
    fn describe(&self) -> String;
    /// The state of a stream with no events yet.
    fn start(&self) -> Result<Box<dyn StreamState>, Refusal>;
}

/// One stream's state under a [`StreamReducer`].
pub trait StreamState: Send {
    /// Folds one event's payload into the state. On `Err` the state is
    /// what it was before the call.
    fn fold(&mut self, payload: &[u8]) -> Result<(), Refusal>;
    /// The state as JSON text.
    fn to_json(&self) -> Result<String, Refusal>;
}

/// Which reducer folds which streams: `(pattern, reducer)` rules, the
/// first matching rule wins. Patterns are those of token permissions: a
/// stream name, or a prefix ending in `*` (`todos/*`; `*` is every
/// stream).
#[derive(Clone, Default)]
pub struct Reducers {
    rules: Vec<(Pattern, Arc<dyn StreamReducer>)>,
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

    /// Appends the rules of `other` after these.
    pub fn extend(&mut self, other: Reducers) -> &mut Self {
        self.rules.extend(other.rules);
        self
    }

    /// No rules: every stream's payloads stay opaque.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
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
}

impl Folded {
    /// Folds the event appended next; on a refusal nothing changes.
    pub fn fold(&mut self, payload: &[u8]) -> Result<(), Refusal> {
        self.state.fold(payload)?;
        self.offset = Offset(self.offset.0 + 1);
        Ok(())
    }
}

/// The states one store's writer keeps, one per stream with a reducer.
/// Not shared: the writer owns it, so a state only ever moves with
/// decisions the writer makes, in order.
pub struct Folds {
    reducers: Reducers,
    states: HashMap<StreamName, Folded>,
}

/// Why [`Folds::at`] has no state to give.
#[derive(Debug)]
pub enum Unfolded<E> {
    /// Reading the log failed, or the log is inconsistent.
    Read(E),
    /// The reducer could not start a state (e.g. its engine is out of
    /// memory): the stream's new intents are refused with this.
    Reducer(Refusal),
}

/// Events of a stream after an offset, ascending, as `(offset, payload)`;
/// an empty page is the end of the log.
pub type Replayed = Vec<(Offset, Vec<u8>)>;

impl Folds {
    /// No states yet.
    pub fn new(reducers: Reducers) -> Folds {
        Folds {
            reducers,
            states: HashMap::new(),
        }
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
        mut read: impl FnMut(Offset) -> Result<Replayed, E>,
    ) -> Result<Option<&mut Folded>, Unfolded<E>> {
        let Some(reducer) = self.reducers.for_stream(stream) else {
            return Ok(None);
        };
        // A kept state beyond `head` holds decisions that were rolled
        // back: it is rebuilt. One behind it (another node appended) folds
        // on from where it is.
        if self.states.get(stream).is_some_and(|f| f.offset > head) {
            self.states.remove(stream);
        }
        if self.states.get(stream).is_none_or(|f| f.offset < head) {
            let mut folded = match self.states.remove(stream) {
                Some(kept) => kept,
                None => Folded {
                    offset: Offset(0),
                    state: reducer.start().map_err(Unfolded::Reducer)?,
                },
            };
            while folded.offset < head {
                let page = read(folded.offset).map_err(Unfolded::Read)?;
                if page.is_empty() {
                    break;
                }
                for (offset, payload) in page {
                    if offset.0 != folded.offset.0 + 1 {
                        return Err(Unfolded::Read(E::from(Refusal {
                            code: ErrorCode::Storage,
                            message: format!(
                                "the log of {stream} skips from offset {} to {offset}",
                                folded.offset
                            ),
                        })));
                    }
                    if let Err(r) = folded.state.fold(&payload) {
                        tracing::warn!(
                            stream = %stream, offset = %offset, code = r.code.as_str(),
                            reason = %r.message, "a stored event is refused by the reducer; its state is unchanged"
                        );
                    }
                    folded.offset = offset;
                }
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
            self.states.insert(stream.clone(), folded);
        }
        Ok(self.states.get_mut(stream))
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
        match self.states.get(stream) {
            Some(f) if f.offset == head => None,
            Some(f) if f.offset < head => Some(f.offset),
            _ => Some(Offset(0)),
        }
    }

    /// Drops every kept state (after a transaction that folded intents
    /// rolled back): each is rebuilt from the log on its next use.
    pub fn forget_all(&mut self) {
        self.states.clear();
    }
}
