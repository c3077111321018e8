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

    fn schema_version(&self) -> u32 {
        self.reducer.schema_version()
    }

    fn min_schema_version(&self) -> u32 {
        self.reducer.min_schema_version()
    }

    fn migrate(&self, json: &str, from: u32) -> Option<Result<Box<dyn StreamState>, Refusal>> {
        let old = match serde_json::from_str(json) {
            Ok(old) => old,
            Err(e) => {
                return Some(Err(Refusal {
                    code: ErrorCode::Reducer,
                    message: format!("the snapshot does not decode as the reducer's state: {e}"),
                }))
            }
        };
        let reducer = &self.reducer;
        let migrated = catch_unwind(AssertUnwindSafe(|| reducer.migrate(old, from)))
            .unwrap_or_else(|_| Some(Err("the reducer panicked".to_string().into())))?;
        Some(
            migrated
                .map(|state| {
                    Box::new(RustState {
                        reducer: self.reducer.clone(),
                        state,
                    }) as Box<dyn StreamState>
                })
                .map_err(|e| Refusal {
                    code: ErrorCode::Reducer,
                    message: format!(
                        "migrating the snapshot from schema version {from} failed: {}",
                        e.0
                    ),
                }),
        )
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
            // Decoded, then upcast from the version it was made under.
            let action = reducer
                .decode_at(payload, meta.schema)
                .map_err(|e| Refusal {
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

    fn view(&self, name: &str, params: &str) -> Result<String, Refusal> {
        let reducer = &self.reducer;
        let answer = catch_unwind(AssertUnwindSafe(|| {
            reducer.view(&self.state, name, params.as_bytes())
        }))
        .map_err(|_| panicked())?;
        let bytes = match answer {
            None => {
                let names = reducer.view_names();
                return Err(Refusal {
                    code: ErrorCode::NotFound,
                    message: if names.is_empty() {
                        format!("the stream's reducer exports no views (asked for {name:?})")
                    } else {
                        format!(
                            "the stream's reducer exports no view named {name:?} (its views: {})",
                            names.join(", ")
                        )
                    },
                });
            }
            Some(Err(e)) => {
                return Err(Refusal {
                    code: ErrorCode::Reducer,
                    message: format!("the view {name} failed: {}", e.0),
                })
            }
            Some(Ok(bytes)) => bytes,
        };
        if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err(Refusal {
                code: ErrorCode::Reducer,
                message: format!("the view {name} answered what is not JSON"),
            });
        }
        String::from_utf8(bytes).map_err(|e| Refusal {
            code: ErrorCode::Reducer,
            message: format!("the view {name} answered what is not UTF-8 text: {e}"),
        })
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

        fn view(
            &self,
            state: &Self::State,
            name: &str,
            _params: &[u8],
        ) -> Option<Result<Vec<u8>, ReduceError>> {
            match name {
                "count" => Some(Ok(state.len().to_string().into_bytes())),
                "panics" => panic!("a bug in the view"),
                "garbled" => Some(Ok(b"{not json".to_vec())),
                "refuses" => Some(Err(ReduceError("no such row".into()))),
                _ => None,
            }
        }

        fn view_names(&self) -> &[&str] {
            &["count", "panics", "garbled", "refuses"]
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

    #[test]
    fn views_answer_json_and_every_failure_is_typed() {
        let r = RustReducer::new(Seats, BTreeMap::new());
        let mut s = r.start().expect("start");
        s.fold(br#""12A""#, &META).expect("free seat");
        assert_eq!(s.view("count", "null"), Ok("1".to_string()));
        let code = |name: &str| s.view(name, "null").map_err(|r| (r.code, r.message));
        assert_eq!(
            code("panics"),
            Err((ErrorCode::Reducer, "the reducer panicked".into()))
        );
        assert!(matches!(code("garbled"), Err((ErrorCode::Reducer, m)) if m.contains("not JSON")));
        assert!(
            matches!(code("refuses"), Err((ErrorCode::Reducer, m)) if m.contains("no such row"))
        );
        assert!(
            matches!(code("nope"), Err((ErrorCode::NotFound, m)) if m.contains("count, panics")),
            "{:?}",
            code("nope")
        );
        s.fold(br#""12B""#, &META)
            .expect("still folds after a view panicked");
        assert_eq!(s.view("count", "null"), Ok("2".to_string()));
    }

    /// Version 2 of a seats reducer: version-1 actions were seat numbers
    /// (`12`), version 2's are names (`"12A"`); a version-1 state (seat
    /// numbers) migrates.
    struct SeatsV2;

    impl Reducer for SeatsV2 {
        type State = BTreeMap<String, u32>;
        type Action = serde_json::Value;

        fn decode(&self, payload: &[u8]) -> Result<serde_json::Value, ReduceError> {
            serde_json::from_slice(payload).map_err(|e| ReduceError(e.to_string()))
        }

        fn reduce(
            &self,
            state: &Self::State,
            seat: &serde_json::Value,
        ) -> Result<Self::State, ReduceError> {
            let seat = seat
                .as_str()
                .ok_or_else(|| ReduceError("a seat name".into()))?;
            let mut next = state.clone();
            next.insert(seat.to_string(), 2);
            Ok(next)
        }

        fn schema_version(&self) -> u32 {
            2
        }

        fn min_schema_version(&self) -> u32 {
            1
        }

        fn upcast(
            &self,
            action: serde_json::Value,
            from: u32,
        ) -> Result<serde_json::Value, ReduceError> {
            assert_eq!(from, 1);
            Ok(serde_json::Value::String(format!("{action}A")))
        }

        fn migrate(
            &self,
            state: Self::State,
            from: u32,
        ) -> Option<Result<Self::State, ReduceError>> {
            assert_eq!(from, 1);
            Some(Ok(state
                .into_keys()
                .map(|k| (format!("{k}A"), 1))
                .collect()))
        }
    }

    #[test]
    fn schema_versions_are_the_traits() {
        let r = RustReducer::new(SeatsV2, BTreeMap::new());
        assert_eq!((r.schema_version(), r.min_schema_version()), (2, 1));
        let mut s = r.start().expect("start");
        s.fold(b"12", &Meta { schema: 1, ..META }).expect("upcast");
        s.fold(br#""14B""#, &Meta { schema: 2, ..META })
            .expect("fold");
        assert_eq!(
            s.fold(br#""15C""#, &Meta { schema: 3, ..META })
                .map_err(|r| r.code),
            Err(ErrorCode::Reducer),
            "a newer version does not decode"
        );
        assert_eq!(s.to_json().expect("json"), r#"{"12A":2,"14B":2}"#);
        let migrated = r
            .migrate(r#"{"9":1}"#, 1)
            .expect("migrates")
            .expect("migrated");
        assert_eq!(migrated.to_json().expect("json"), r#"{"9A":1}"#);
        // The default: no migration.
        assert!(RustReducer::new(Seats, BTreeMap::new())
            .migrate("{}", 1)
            .is_none());
    }
}
