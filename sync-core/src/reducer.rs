//! The `Reducer` trait: a pure, deterministic `(state, action) -> state`.

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

    /// A state from its JSON text: a snapshot the server sends a client
    /// whose missing events were compacted away. The default refuses
    /// (such a client cannot follow a compacted stream from below its
    /// horizon).
    fn decode_state(&self, _json: &[u8]) -> Result<Self::State, ReduceError> {
        Err(ReduceError(
            "this reducer cannot start from a snapshot (implement Reducer::decode_state)".into(),
        ))
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
