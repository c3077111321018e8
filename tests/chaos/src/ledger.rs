//! The reducer of the folded run, in Rust: the clients' replicas fold
//! with it what the server folds with `fixtures/ledger.js` (the two must
//! stay alike), and the harness reads the server's state and snapshots
//! into it to compare.
//!
//! The state: per client (its id in hex), the ids its intents carry, the
//! offsets they got and their tags, in order; and the count of all. As
//! JSON: `{"count": N, "clients": {"<32 hex>": {"ids": [1, 2], "at": [4,
//! 9], "tags": [3021, 77]}}}`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use sync_core::{ClientId, Meta, ReduceError, Reducer, Seq};

use crate::client::Model;
use crate::rng::Rng;

/// Where the module is: `fixtures/ledger.js` of this crate.
pub fn module_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/ledger.js")
}

/// The ledger reducer.
#[derive(Clone, Copy, Debug)]
pub struct LedgerReducer;

/// One `add` action: the client's intent id (its seq) and a random tag
/// (below 2^32: a JavaScript number holds it exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Add {
    /// The id.
    pub id: u64,
    /// The tag.
    pub tag: u64,
}

/// One client's intents in the ledger, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    /// Their ids.
    pub ids: Vec<u64>,
    /// Their offsets (0 for an intent still pending on a device).
    pub at: Vec<u64>,
    /// Their tags.
    pub tags: Vec<u64>,
}

/// The ledger.
#[derive(Clone, Debug, Default)]
pub struct LedgerState {
    /// Intents folded.
    pub count: u64,
    /// Per client id (hex); shared between the states a replica keeps,
    /// so a fold copies one client's entries, not all.
    pub clients: BTreeMap<String, Arc<Entries>>,
    /// The client ids in the order they first came (the order of the
    /// JavaScript object's keys, which its JSON text keeps): what
    /// [`Reducer::encode_state`] writes, so that the clients compare their
    /// folds with the server's snapshots. Not part of equality.
    pub order: Vec<String>,
}

impl PartialEq for LedgerState {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.clients == other.clients
    }
}

impl Eq for LedgerState {}

/// The client ids of a state's JSON text in the order they appear: each
/// is 32 hex digits in quotes followed by `:{"ids"` (the text has no
/// spaces: `JSON.stringify`'s).
fn key_order(text: &[u8]) -> Vec<String> {
    const AFTER: &[u8] = b"\":{\"ids\"";
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = text[from..].windows(AFTER.len()).position(|w| w == AFTER) {
        let end = from + p;
        if let Some(key) = end.checked_sub(32).map(|start| &text[start..end]) {
            if key.iter().all(u8::is_ascii_hexdigit) {
                out.push(String::from_utf8_lossy(key).into_owned());
            }
        }
        from = end + AFTER.len();
    }
    out
}

impl LedgerState {
    /// The state from its JSON value, strictly: any other shape is an error.
    pub fn from_json(v: &Value) -> Result<LedgerState, String> {
        let obj = v.as_object().ok_or("the state is not an object")?;
        if obj.len() != 2 {
            return Err(format!("the state has keys {:?}", obj.keys()));
        }
        let count = obj
            .get("count")
            .and_then(Value::as_u64)
            .ok_or("the state has no count")?;
        let mut clients = BTreeMap::new();
        for (id, e) in obj
            .get("clients")
            .and_then(Value::as_object)
            .ok_or("the state has no clients")?
        {
            let e = e
                .as_object()
                .filter(|e| e.len() == 3)
                .ok_or_else(|| format!("client {id}: not an object of ids, at, tags"))?;
            let list = |k: &str| {
                e.get(k)
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("client {id}: no {k}"))
            };
            let nums = |k: &str| {
                list(k)?
                    .iter()
                    .map(|n| {
                        n.as_u64()
                            .ok_or_else(|| format!("client {id}: {k} holds {n}"))
                    })
                    .collect::<Result<Vec<u64>, String>>()
            };
            clients.insert(
                id.clone(),
                Arc::new(Entries {
                    ids: nums("ids")?,
                    at: nums("at")?,
                    tags: nums("tags")?,
                }),
            );
        }
        let order = clients.keys().cloned().collect();
        Ok(LedgerState {
            count,
            clients,
            order,
        })
    }

    /// The state from its JSON text (the clients in the text's order).
    pub fn from_text(text: &[u8]) -> Result<LedgerState, String> {
        let v: Value = serde_json::from_slice(text).map_err(|e| format!("state JSON: {e}"))?;
        let mut state = LedgerState::from_json(&v)?;
        let order = key_order(text);
        if order.len() != state.clients.len()
            || order.iter().any(|k| !state.clients.contains_key(k))
        {
            return Err(format!(
                "the clients of the state text are not its keys: {order:?}"
            ));
        }
        state.order = order;
        Ok(state)
    }

    /// Its JSON value (for messages).
    pub fn to_json(&self) -> Value {
        let clients: Map<String, Value> = self
            .clients
            .iter()
            .map(|(id, e)| {
                (
                    id.clone(),
                    json!({"ids": e.ids, "at": e.at, "tags": e.tags}),
                )
            })
            .collect();
        json!({"count": self.count, "clients": clients})
    }
}

impl Reducer for LedgerReducer {
    type State = LedgerState;
    type Action = Add;

    fn decode(&self, payload: &[u8]) -> Result<Add, ReduceError> {
        let v: Value = serde_json::from_slice(payload)
            .map_err(|e| ReduceError(format!("payload is not JSON: {e}")))?;
        match (
            v.get("type"),
            v.get("id").and_then(Value::as_u64),
            v.get("tag").and_then(Value::as_u64),
        ) {
            (Some(Value::String(t)), Some(id), Some(tag)) if t == "add" => Ok(Add { id, tag }),
            _ => Err(ReduceError(format!("BAD_ACTION: not an add action: {v}"))),
        }
    }

    fn reduce(&self, _: &LedgerState, _: &Add) -> Result<LedgerState, ReduceError> {
        Err(ReduceError("the ledger folds with meta".into()))
    }

    fn reduce_meta(
        &self,
        state: &LedgerState,
        action: &Add,
        meta: &Meta<'_>,
    ) -> Result<LedgerState, ReduceError> {
        let client = meta.client_id.to_hex();
        let held = state.clients.get(&client).map_or(0, |e| e.ids.len());
        if meta.offset.is_some() {
            if action.id != held as u64 + 1 {
                return Err(ReduceError(format!(
                    "OUT_OF_ORDER: client {client}: id {} after {held} ids",
                    action.id
                )));
            }
            if let Some(seq) = meta.seq.filter(|s| s.get() != action.id) {
                return Err(ReduceError(format!(
                    "SEQ_MISMATCH: client {client}: id {} has seq {seq}",
                    action.id
                )));
            }
        }
        let mut next = state.clone();
        next.count += 1;
        if held == 0 && !next.clients.contains_key(&client) {
            next.order.push(client.clone());
        }
        let mine = Arc::make_mut(next.clients.entry(client).or_default());
        mine.ids.push(action.id);
        mine.at.push(meta.offset.map_or(0, |o| o.0));
        mine.tags.push(action.tag);
        Ok(next)
    }

    fn read_meta(&self) -> bool {
        true
    }

    fn decode_state(&self, json: &[u8]) -> Result<LedgerState, ReduceError> {
        LedgerState::from_text(json).map_err(ReduceError)
    }

    /// `JSON.stringify` of the module's state, so every client compares its
    /// fold with the server's snapshots (a difference fails the run).
    fn encode_state(&self, state: &LedgerState) -> Option<Vec<u8>> {
        let list = |v: &[u64]| serde_json::to_string(v).ok();
        let mut out = format!("{{\"count\":{},\"clients\":{{", state.count);
        for (i, id) in state.order.iter().enumerate() {
            let e = state.clients.get(id)?;
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "\"{id}\":{{\"ids\":{},\"at\":{},\"tags\":{}}}",
                list(&e.ids)?,
                list(&e.at)?,
                list(&e.tags)?
            ));
        }
        out.push_str("}}");
        Some(out.into_bytes())
    }
}

impl Model for LedgerReducer {
    fn payload(&self, _client: ClientId, seq: Seq, rng: &Rng) -> Vec<u8> {
        json!({"type": "add", "id": seq.get(), "tag": rng.next_u64() >> 32})
            .to_string()
            .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::Offset;

    #[test]
    fn a_state_goes_to_json_and_back() {
        let id = ClientId([7; 16]);
        let add = LedgerReducer
            .decode(br#"{"type":"add","id":1,"tag":4294967295}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let meta = Meta {
            offset: Some(Offset(3)),
            client_id: id,
            subject: None,
            seq: Some(Seq::FIRST),
            time_ms: 0,
            seen: Offset(2),
            schema: 1,
        };
        let s = LedgerReducer
            .reduce_meta(&LedgerState::default(), &add, &meta)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.count, 1);
        assert_eq!(LedgerState::from_json(&s.to_json()), Ok(s.clone()));
        // Its text is what `JSON.stringify` makes of the module's state,
        // and reads back with the clients in order.
        let other = Meta {
            client_id: ClientId([1; 16]),
            ..meta
        };
        let two = LedgerReducer
            .reduce_meta(&s, &add, &other)
            .unwrap_or_else(|e| panic!("{e}"));
        let text = LedgerReducer.encode_state(&two).unwrap_or_default();
        let want = format!(
            "{{\"count\":2,\"clients\":{{\"{}\":{{\"ids\":[1],\"at\":[3],\"tags\":[4294967295]}},\"{}\":{{\"ids\":[1],\"at\":[3],\"tags\":[4294967295]}}}}}}",
            id.to_hex(),
            ClientId([1; 16]).to_hex()
        );
        assert_eq!(String::from_utf8_lossy(&text), want);
        let back = LedgerState::from_text(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.order, two.order);
        assert_eq!(back, two);
        // The same id again, confirmed: refused, as the module refuses it.
        assert!(LedgerReducer.reduce_meta(&s, &add, &meta).is_err());
        assert!(LedgerState::from_text(br#"{"count":0,"clients":{},"x":1}"#).is_err());
    }
}
