//! The seats example's reducer: seat booking, each seat booked once.
//!
//! One crate, folded in two places with the same code: by the browser
//! store (`seats-web`, through sync-wasm's `Store<R: StoreReducer>`) and
//! by the server at the ordering point (`logsync-seats-server`, through
//! `server_stub::fold::rust::RustReducer`). So a booking the server
//! accepts folds to the same state on every device, and a booking of a
//! taken seat is refused by the server before it is appended.
//!
//! Actions are JSON: `{"type":"book","seat":"4A","who":"ann"}`. Other
//! types leave the state as it is. The state is JSON too:
//! `{"seats":{"4A":"ann"}}` (what `GET /v1/streams/{s}/state` answers).
//!
//! A refusal is a [`ReduceError`] whose text starts with the app's code
//! ([`SEAT_TAKEN`]`: …`): the server answers it as `REJECTED` with that
//! text, and the client reads the code back with [`app_code`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sync_core::{ReduceError, Reducer};

/// The app's code for a booking of a seat someone else already has.
pub const SEAT_TAKEN: &str = "SEAT_TAKEN";

/// Who booked which seat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seats {
    /// Seat name → who booked it, in seat order.
    pub seats: BTreeMap<String, String>,
}

/// One event's action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Action {
    /// Books `seat` for `who`; refused when the seat is taken.
    Book {
        /// The seat, e.g. `4A`.
        seat: String,
        /// Who books it.
        who: String,
    },
    /// Any other `type`: folds to the same state.
    #[serde(other)]
    Other,
}

impl Action {
    /// `{"type":"book","seat":…,"who":…}` as payload bytes.
    pub fn book(seat: &str, who: &str) -> Vec<u8> {
        let action = Action::Book {
            seat: seat.into(),
            who: who.into(),
        };
        // A map of two strings always serializes.
        serde_json::to_vec(&action).unwrap_or_default()
    }
}

/// The seat-booking reducer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeatsReducer;

impl Reducer for SeatsReducer {
    type State = Seats;
    type Action = Action;

    fn decode(&self, payload: &[u8]) -> Result<Action, ReduceError> {
        serde_json::from_slice(payload).map_err(|e| ReduceError(format!("not a seats action: {e}")))
    }

    fn reduce(&self, state: &Seats, action: &Action) -> Result<Seats, ReduceError> {
        match action {
            Action::Book { seat, who } => {
                if state.seats.contains_key(seat) {
                    return Err(ReduceError(format!("{SEAT_TAKEN}: seat {seat} is taken")));
                }
                let mut next = state.clone();
                next.seats.insert(seat.clone(), who.clone());
                Ok(next)
            }
            Action::Other => Ok(state.clone()),
        }
    }

    fn decode_state(&self, json: &[u8]) -> Result<Seats, ReduceError> {
        serde_json::from_slice(json).map_err(|e| ReduceError(format!("not a seats state: {e}")))
    }

    /// As the server stores it (`serde_json`), so a browser compares its
    /// fold with the server's snapshots.
    fn encode_state(&self, state: &Seats) -> Option<Vec<u8>> {
        serde_json::to_vec(state).ok()
    }

    /// Views the server answers (`GET /v1/streams/{s}/views/{name}`,
    /// live over SSE and WebSocket watches): `heldBy` with `{"who": …}`,
    /// the seats someone holds, in seat order; `count`, how many seats
    /// are booked.
    fn view(
        &self,
        state: &Seats,
        name: &str,
        params: &[u8],
    ) -> Option<Result<Vec<u8>, ReduceError>> {
        match name {
            "heldBy" => {
                #[derive(Deserialize)]
                struct Params {
                    who: String,
                }
                Some(
                    serde_json::from_slice::<Params>(params)
                        .map_err(|e| ReduceError(format!("heldBy takes {{\"who\": \"…\"}}: {e}")))
                        .map(|p| {
                            let held: Vec<&String> = state
                                .seats
                                .iter()
                                .filter(|(_, w)| **w == p.who)
                                .map(|(s, _)| s)
                                .collect();
                            serde_json::to_vec(&held).unwrap_or_default()
                        }),
                )
            }
            "count" => Some(Ok(state.seats.len().to_string().into_bytes())),
            _ => None,
        }
    }

    fn view_names(&self) -> &[&str] {
        &["heldBy", "count"]
    }
}

/// Splits a refusal's message into the app's code and the rest:
/// `"SEAT_TAKEN: seat 4A is taken"` → `Some(("SEAT_TAKEN", "seat 4A is
/// taken"))`. `None` when the message does not start with a code of
/// `[A-Z0-9_]+` and `": "`.
pub fn app_code(message: &str) -> Option<(&str, &str)> {
    let (code, rest) = message.split_once(": ")?;
    let is_code = !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    is_code.then_some((code, rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fold(payloads: &[&[u8]]) -> (Seats, Vec<String>) {
        let r = SeatsReducer;
        let mut state = Seats::default();
        let mut refused = Vec::new();
        for p in payloads {
            match r.decode(p).and_then(|a| r.reduce(&state, &a)) {
                Ok(next) => state = next,
                Err(e) => refused.push(e.0),
            }
        }
        (state, refused)
    }

    #[test]
    fn books_free_seats_and_refuses_taken_ones_with_the_app_code() {
        let (state, refused) = fold(&[
            &Action::book("4A", "ann"),
            &Action::book("4B", "bob"),
            &Action::book("4A", "bob"),
        ]);
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            serde_json::json!({"seats": {"4A": "ann", "4B": "bob"}})
        );
        assert_eq!(refused, vec!["SEAT_TAKEN: seat 4A is taken"]);
        assert_eq!(
            app_code(&refused[0]),
            Some((SEAT_TAKEN, "seat 4A is taken"))
        );
    }

    #[test]
    fn a_refusal_leaves_the_state_it_was_given() {
        let r = SeatsReducer;
        let before = r
            .reduce(
                &Seats::default(),
                &r.decode(&Action::book("1A", "ann")).unwrap(),
            )
            .unwrap();
        let copy = before.clone();
        assert!(r
            .reduce(&before, &r.decode(&Action::book("1A", "cy")).unwrap())
            .is_err());
        assert_eq!(before, copy);
    }

    #[test]
    fn other_types_fold_to_the_same_state_and_bad_payloads_do_not_decode() {
        let r = SeatsReducer;
        let (state, refused) = fold(&[
            &Action::book("1A", "ann"),
            br#"{"type":"cancel","seat":"1A"}"#,
        ]);
        assert_eq!(state.seats.len(), 1);
        assert!(refused.is_empty());
        for bad in [
            &b"not json"[..],
            br#"{"seat":"1A","who":"ann"}"#,
            br#"{"type":"book","seat":1,"who":"ann"}"#,
            br#"{"type":"book","who":"ann"}"#,
        ] {
            assert!(r.decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_wire_forms_are_those_of_the_javascript_seats_module() {
        // server-stub/tests/fixtures/seats.js: `{ seats: { [seat]: who } }`.
        assert_eq!(
            String::from_utf8(Action::book("12A", "ann")).unwrap(),
            r#"{"type":"book","seat":"12A","who":"ann"}"#
        );
        let s: Seats = serde_json::from_str(r#"{"seats":{"12A":"ann"}}"#).unwrap();
        assert_eq!(s.seats["12A"], "ann");
    }

    #[test]
    fn views_answer_json_and_refuse_bad_params() {
        let (state, _) = fold(&[
            &Action::book("2B", "bob"),
            &Action::book("1A", "bob"),
            &Action::book("3C", "ann"),
        ]);
        let view = |name: &str, params: &[u8]| SeatsReducer.view(&state, name, params);
        assert_eq!(
            view("heldBy", br#"{"who":"bob"}"#),
            Some(Ok(br#"["1A","2B"]"#.to_vec()))
        );
        assert_eq!(view("count", b"null"), Some(Ok(b"3".to_vec())));
        assert!(matches!(view("heldBy", b"null"), Some(Err(e)) if e.0.contains("heldBy takes")));
        assert_eq!(view("nope", b"null"), None);
    }

    #[test]
    fn app_codes_are_read_from_messages() {
        assert_eq!(app_code("X_1: y"), Some(("X_1", "y")));
        assert_eq!(app_code("seat 1A is taken"), None);
        assert_eq!(app_code("lower: case"), None);
        assert_eq!(app_code(": empty"), None);
    }
}
