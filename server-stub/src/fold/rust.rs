//! A Rust [`StreamReducer`]: any [`sync_core::Reducer`] whose state can
//! be written as JSON, the same trait the wasm client folds with. It is
//! registered through the library API:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn example<R>(reducer: R, initial: R::State, config: server_stub::Config)
//! # where R: sync_core::Reducer + Send + Sync + 'static,
//! #       R::State: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
//! let mut reducers = server_stub::fold::Reducers::default();
//! reducers.add("seats/*", Arc::new(server_stub::fold::rust::RustReducer::new(reducer, initial)));
//! let server = server_stub::Server::open_with_reducers(config, reducers);
//! # }
//! ```
//!
//! A payload that does not decode is refused with `REDUCER`; an `Err`
//! from `reduce` with `REJECTED` and its message (write `CODE: message`
//! to carry an app code, as the JavaScript engine does). A panic in the
//! reducer is caught and refused with `REDUCER`: it never takes the
//! store's writer down.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use sync_core::{ErrorCode, Meta, Reducer};

use super::{Refusal, StreamReducer, StreamState};

/// A [`sync_core::Reducer`] folding streams on the server.
pub struct RustReducer<R: Reducer> {
    reducer: Arc<R>,
    initial: R::State,
}

impl<R: Reducer> RustReducer<R> {
    /// `reducer`, with `initial` the state of a new stream.
    pub fn new(reducer: R, initial: R::State) -> Self {
        RustReducer {
            reducer: Arc::new(reducer),
            initial,
        }
    }
}

fn panicked() -> Refusal {
    Refusal {
        code: ErrorCode::Reducer,
        message: "the reducer panicked".into(),
    }
}

impl<R> StreamReducer for RustReducer<R>
where
    R: Reducer + Send + Sync + 'static,
    R::State: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    fn describe(&self) -> String {
        format!("Rust reducer {}", std::any::type_name::<R>())
    }

    fn start(&self) -> Result<Box<dyn StreamState>, Refusal> {
        Ok(Box::new(RustState {
            reducer: self.reducer.clone(),
            state: self.initial.clone(),
        }))
    }

    fn restore(&self, json: &str) -> Result<Box<dyn StreamState>, Refusal> {
        let state = serde_json::from_str(json).map_err(|e| Refusal {
            code: ErrorCode::Reducer,
            message: format!("the snapshot does not decode as the reducer's state: {e}"),
        })?;
        Ok(Box::new(RustState {
            reducer: self.reducer.clone(),
            state,
        }))
    }
}

struct RustState<R: Reducer> {
    reducer: Arc<R>,
    state: R::State,
}

impl<R> StreamState for RustState<R>
where
    R: Reducer + Send + Sync + 'static,
    R::State: serde::Serialize + Send + Sync + 'static,
{
    fn fold(&mut self, payload: &[u8], meta: &Meta<'_>) -> Result<(), Refusal> {
        let reducer = &self.reducer;
        let state = &self.state;
        let next = catch_unwind(AssertUnwindSafe(|| {
            let action = reducer.decode(payload).map_err(|e| Refusal {
                code: ErrorCode::Reducer,
                message: format!("the payload does not decode: {e}"),
            })?;
            reducer
                .reduce_meta(state, &action, meta)
                .map_err(|e| Refusal {
                    code: ErrorCode::Rejected,
                    message: e.0,
                })
        }))
        .map_err(|_| panicked())??;
        self.state = next;
        Ok(())
    }

    fn to_json(&self) -> Result<String, Refusal> {
        // The reducer's own text when it has one: the one its clients
        // hash to compare their folds with the server's snapshots.
        let own = catch_unwind(AssertUnwindSafe(|| self.reducer.encode_state(&self.state)))
            .map_err(|_| panicked())?;
        if let Some(bytes) = own {
            return String::from_utf8(bytes).map_err(|e| Refusal {
                code: ErrorCode::Reducer,
                message: format!("the reducer's state text is not UTF-8: {e}"),
            });
        }
        serde_json::to_string(&self.state).map_err(|e| Refusal {
            code: ErrorCode::Reducer,
            message: format!("the state could not be written as JSON: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sync_core::ReduceError;

    use super::*;

    use crate::fold::TEST_META as META;

    /// Seats: `"12A"` books seat 12A; a taken seat is refused.
    struct Seats;

    impl Reducer for Seats {
        type State = BTreeMap<String, u32>;
        type Action = String;

        fn decode(&self, payload: &[u8]) -> Result<String, ReduceError> {
            serde_json::from_slice(payload).map_err(|e| ReduceError(e.to_string()))
        }

        fn reduce(&self, state: &Self::State, seat: &String) -> Result<Self::State, ReduceError> {
            if seat == "panic" {
                panic!("a bug in the reducer");
            }
            if state.contains_key(seat) {
                return Err(ReduceError(format!("SEAT_TAKEN: seat {seat} is taken")));
            }
            let mut next = state.clone();
            next.insert(seat.clone(), 1);
            Ok(next)
        }
    }

    #[test]
    fn folds_refuses_and_survives_a_panic() {
        let r = RustReducer::new(Seats, BTreeMap::new());
        let mut s = r.start().expect("start");
        s.fold(br#""12A""#, &META).expect("free seat");
        assert_eq!(
            s.fold(br#""12A""#, &META),
            Err(Refusal {
                code: ErrorCode::Rejected,
                message: "SEAT_TAKEN: seat 12A is taken".into()
            })
        );
        assert_eq!(
            s.fold(b"12A", &META).map_err(|r| r.code),
            Err(ErrorCode::Reducer)
        );
        assert_eq!(s.fold(br#""panic""#, &META), Err(panicked()));
        s.fold(br#""12B""#, &META).expect("still folds");
        assert_eq!(s.to_json().expect("json"), r#"{"12A":1,"12B":1}"#);
    }
}
