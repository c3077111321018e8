//! The JSON shapes of the HTTP and SSE API (stable: tests and outside tools
//! rely on them), shared by the server and any client that reads them.
//!
//! ```text
//! event  {"offset":N,"client_id":"<32 hex>","seq":K,"time_ms":T,"subject":"…"|null,
//!         "seen":S,"schema":V,"payload":<JSON>}
//!        (or "payload_base64":"…" when the payload bytes are not JSON)
//! error  {"error":{"code":"SCREAMING_SNAKE","message":"…", …extra}}
//! intent {"client_id":"<32 hex>","seq":K,"payload":<JSON>[,"seen":S][,"schema":V]}
//! ```

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{CoreError, ErrorCode};
use crate::types::{ClientId, Event, Offset, Seq};

/// Appends `event` as its JSON object to `out`. A payload that is valid
/// JSON is embedded as it is (no re-serialisation), anything else goes
/// base64-encoded under `payload_base64`.
pub fn write_event(out: &mut String, event: &Event) {
    use core::fmt::Write as _;
    let _ = write!(
        out,
        "{{\"offset\":{},\"client_id\":\"{}\",\"seq\":{},\"time_ms\":{},",
        event.offset.0,
        event.client_id.to_hex(),
        event.seq.get(),
        event.time_ms
    );
    out.push_str("\"subject\":");
    match &event.subject {
        Some(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"seen\":{},\"schema\":{},",
        event.seen.0, event.schema
    );
    match payload_as_json(&event.payload) {
        Some(text) => {
            out.push_str("\"payload\":");
            out.push_str(text);
        }
        None => {
            out.push_str("\"payload_base64\":\"");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(&event.payload));
            out.push('"');
        }
    }
    out.push('}');
}

/// The event as a JSON object.
pub fn event_json(event: &Event) -> String {
    let mut s = String::with_capacity(event.payload.len() + 96);
    write_event(&mut s, event);
    s
}

/// `{"events":[…],"head":N}`.
pub fn events_page_json(events: &[Event], head: Offset) -> String {
    let mut s =
        String::with_capacity(events.iter().map(|e| e.payload.len() + 96).sum::<usize>() + 32);
    s.push_str("{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_event(&mut s, e);
    }
    s.push_str("],\"head\":");
    s.push_str(&head.0.to_string());
    s.push('}');
    s
}

/// The payload as JSON text, when it is one JSON value (surrounding
/// whitespace allowed).
pub fn payload_as_json(payload: &[u8]) -> Option<&str> {
    let text = core::str::from_utf8(payload).ok()?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    Some(text.trim())
}

/// `{"error":{"code":…,"message":…}}`, with `extra` fields (already JSON
/// values, e.g. `("expected_seq", "5")`) inside the error object.
pub fn error_json(code: ErrorCode, message: &str, extra: &[(&str, String)]) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("code".into(), code.as_str().into());
    obj.insert("message".into(), message.into());
    for (k, v) in extra {
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()));
        obj.insert((*k).to_string(), value);
    }
    let mut root = serde_json::Map::new();
    root.insert("error".into(), serde_json::Value::Object(obj));
    serde_json::Value::Object(root).to_string()
}

/// A decoded `POST /v1/streams/{stream}/intents` body.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IntentRequest {
    /// Who asks.
    pub client_id: ClientId,
    /// The client's seq.
    pub seq: Seq,
    /// The payload's JSON text, exactly as sent.
    pub payload: Vec<u8>,
    /// The confirmed offset the client had seen (0 when not sent).
    pub seen: Offset,
    /// The schema version the intent was made under (1 when not sent).
    pub schema: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntent<'a> {
    client_id: &'a str,
    seq: u64,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(default)]
    seen: u64,
    #[serde(default = "first_schema")]
    schema: u32,
}

fn first_schema() -> u32 {
    1
}

/// Deepest nesting of arrays and objects accepted in a payload. Deeper
/// JSON breaks readers whose parsers limit depth (`serde_json` and many
/// others stop at 128), so it is refused at the door.
pub const MAX_PAYLOAD_DEPTH: usize = 128;

/// Whether `json` nests arrays and objects deeper than `max` (strings and
/// their escapes are skipped; the text is not otherwise checked).
pub fn nests_deeper_than(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses an intent body. Every failure is `INVALID_JSON`,
/// `INVALID_CLIENT_ID` or `INVALID_SEQ` with a message naming the field.
pub fn parse_intent(body: &[u8]) -> Result<IntentRequest, (ErrorCode, String)> {
    let raw: RawIntent<'_> = serde_json::from_slice(body).map_err(|e| {
        (
            ErrorCode::InvalidJson,
            alloc::format!(
                "intent body must be {{\"client_id\": \"<32 hex digits>\", \"seq\": <integer >= 1>, \"payload\": <JSON>}}: {e}"
            ),
        )
    })?;
    let client_id = ClientId::from_hex(raw.client_id).map_err(|e| (e.code(), e.to_string()))?;
    let seq = Seq::new(raw.seq).map_err(|e: CoreError| (e.code(), e.to_string()))?;
    if nests_deeper_than(raw.payload.get().as_bytes(), MAX_PAYLOAD_DEPTH) {
        return Err((
            ErrorCode::InvalidJson,
            alloc::format!(
                "payload nests arrays and objects deeper than {MAX_PAYLOAD_DEPTH} levels"
            ),
        ));
    }
    Ok(IntentRequest {
        client_id,
        seq,
        payload: raw.payload.get().as_bytes().to_vec(),
        seen: Offset(raw.seen),
        schema: raw.schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_depth() {
        let deep = |n: usize| {
            let mut s = "[".repeat(n);
            s.push_str(&"]".repeat(n));
            s
        };
        assert!(!nests_deeper_than(deep(128).as_bytes(), 128));
        assert!(nests_deeper_than(deep(129).as_bytes(), 128));
        // Brackets inside strings do not count, escaped quotes do not end them.
        let s = alloc::format!(r#"{{"a":"{}\"[[["}}"#, "[".repeat(500));
        assert!(!nests_deeper_than(s.as_bytes(), 2));
        let body = |payload: &str| {
            alloc::format!(
                r#"{{"client_id":"0123456789abcdef0123456789abcdef","seq":1,"payload":{payload}}}"#
            )
        };
        assert!(parse_intent(body(&deep(128)).as_bytes()).is_ok());
        let refused = parse_intent(body(&deep(100_000)).as_bytes());
        assert_eq!(refused.err().map(|e| e.0), Some(ErrorCode::InvalidJson));
    }

    fn ev(payload: &[u8]) -> Event {
        Event {
            subject: None,
            seen: crate::types::Offset::ZERO,
            offset: Offset(7),
            client_id: ClientId([0xab; 16]),
            seq: Seq::new(3).unwrap(),
            time_ms: 42,
            payload: payload.to_vec(),
            schema: 1,
        }
    }

    #[test]
    fn event_shapes() {
        let v: serde_json::Value =
            serde_json::from_str(&event_json(&ev(br#"{"type":"x"}"#))).unwrap();
        assert_eq!(v["offset"], 7);
        assert_eq!(v["client_id"], "ab".repeat(16));
        assert_eq!(v["seq"], 3);
        assert_eq!(v["time_ms"], 42);
        assert_eq!(v["payload"]["type"], "x");
        let v: serde_json::Value = serde_json::from_str(&event_json(&ev(&[0xff, 0]))).unwrap();
        assert_eq!(v["payload_base64"], "/wA=");
        assert!(v.get("payload").is_none());
        let page: serde_json::Value =
            serde_json::from_str(&events_page_json(&[ev(b"1"), ev(b"\"s\"")], Offset(9))).unwrap();
        assert_eq!(page["head"], 9);
        assert_eq!(page["events"][1]["payload"], "s");
    }

    #[test]
    fn intent_bodies() {
        let ok = parse_intent(
            format!(
                r#"{{"client_id":"{}","seq":1,"payload":{{"a": [1, 2]}}}}"#,
                "0f".repeat(16)
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.payload, br#"{"a": [1, 2]}"#);
        assert_eq!(ok.seq, Seq::FIRST);
        for (body, code) in [
            (&b"not json"[..], ErrorCode::InvalidJson),
            (
                br#"{"client_id":"x","seq":1,"payload":1}"#,
                ErrorCode::InvalidClientId,
            ),
            (
                br#"{"client_id":"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f","seq":0,"payload":1}"#,
                ErrorCode::InvalidSeq,
            ),
            (
                br#"{"client_id":"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f","seq":1}"#,
                ErrorCode::InvalidJson,
            ),
        ] {
            assert_eq!(
                parse_intent(body).unwrap_err().0,
                code,
                "{:?}",
                core::str::from_utf8(body)
            );
        }
    }

    #[test]
    fn error_bodies() {
        let v: serde_json::Value = serde_json::from_str(&error_json(
            ErrorCode::SeqGap,
            "expected 5",
            &[("expected_seq", "5".into())],
        ))
        .unwrap();
        assert_eq!(v["error"]["code"], "SEQ_GAP");
        assert_eq!(v["error"]["expected_seq"], 5);
    }
}
