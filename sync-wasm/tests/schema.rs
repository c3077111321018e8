//! Schema versions in storage, in headless Chromium with real IndexedDB
//! and no server: records the previous release wrote (no `schema`, no
//! `expiresMs`, events without their schema byte) read as version 1 and
//! fold upcast; records this release writes keep both; a stored snapshot
//! of an older version is migrated or dropped, one of a newer version
//! leaves the store outdated; a time-to-live runs out offline.
#![cfg(target_arch = "wasm32")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use js_sys::{Array, Function, Uint8Array};
use sync_core::{ClientId, Event, Offset, Seq};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A URL where nothing listens.
const NOWHERE: &str = "ws://127.0.0.1:9/v1/ws";

fn func(args: &str, body: &str) -> Function {
    Function::new_with_args(args, body)
}

/// The options of version 2 of the app: `add` takes `title` (version 1
/// had `text`); `extra` more JSON fields.
fn v2_options(db: &str, extra: &str) -> JsValue {
    let opts = options(
        NOWHERE,
        "s",
        db,
        &format!(r#","connect":false,"schemaVersion":2{extra}"#),
    );
    let _ = js_sys::Reflect::set(
        &opts,
        &"upcast".into(),
        &func(
            "action, from",
            "return action.type === 'add' ? { type: 'add', title: action.text.toUpperCase(), from } : action;",
        ),
    );
    opts
}

/// Version 2's reducer: each item `[title, meta.schema]`.
fn v2_reducer() -> Function {
    func(
        "state, action, meta",
        "if (action.type !== 'add') return state;
         if (typeof action.title !== 'string') throw new Error('not a v2 action');
         return { items: [...state.items, [action.title, meta.schema]] };",
    )
}

fn state_json(store: &JsValue) -> String {
    stringify(&call(store, "getState", &[]).unwrap())
}

/// `{offset, nextSeq, snapshotOffset, epoch: null}`, as the previous
/// release wrote it.
fn stream_record(offset: u64, next_seq: u64, snapshot_offset: u64) -> JsValue {
    js_sys::JSON::parse(&format!(
        r#"{{"offset":{offset},"nextSeq":{next_seq},"snapshotOffset":{snapshot_offset},"epoch":null}}"#
    ))
    .unwrap()
}

fn key(offset: u64) -> JsValue {
    Array::of2(&"s".into(), &JsValue::from_f64(offset as f64)).into()
}

fn event(offset: u64, text: &str) -> Event {
    Event {
        offset: Offset(offset),
        client_id: ClientId::from_bytes([7; 16]),
        seq: Seq::new(offset).unwrap(),
        time_ms: 1_000,
        payload: format!(r#"{{"type":"add","text":"{text}"}}"#).into_bytes(),
        subject: None,
        seen: Offset(0),
        schema: 1,
    }
}

/// Stores `events` as the previous run of a store left them: each under
/// its offset, and the stream's record at the last one.
async fn store_events(db: &str, events: &[Event]) {
    for e in events {
        let bytes = sync_core::protocol::encode_event(e);
        raw_put(
            db,
            "events",
            key(e.offset.0),
            Uint8Array::from(&bytes[..]).into(),
        )
        .await;
    }
    let n = events.last().map_or(0, |e| e.offset.0);
    raw_put(db, "streams", "s".into(), stream_record(n, 1, 0)).await;
}

/// Creates the database of a store (its schema and client id).
async fn create(db: &str) {
    let store = open_with(
        options(NOWHERE, "s", db, r#","connect":false"#),
        list_reducer(),
    )
    .await;
    close(&store).await;
}

#[wasm_bindgen_test]
async fn records_of_the_previous_release_read_as_version_1_and_fold_upcast() {
    let db = unique("schema-old-records");
    create(&db).await;
    // Event 1 as protocol 4 stored it (no schema byte), event 2 as
    // protocol 1 did (no subject, seen or schema), an outbox entry with
    // neither `schema` nor `expiresMs`.
    let mut four = sync_core::protocol::encode_event(&event(1, "one"));
    assert_eq!(four.pop(), Some(1), "schema 1 is the last byte");
    let mut first = sync_core::protocol::encode_event(&event(2, "two"));
    first.truncate(first.len() - 3);
    raw_put(&db, "events", key(1), Uint8Array::from(&four[..]).into()).await;
    raw_put(&db, "events", key(2), Uint8Array::from(&first[..]).into()).await;
    let payload = Uint8Array::from(&br#"{"type":"add","text":"queued"}"#[..]);
    let entry = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&entry, &"seq".into(), &1.into());
    let _ = js_sys::Reflect::set(&entry, &"payload".into(), &payload);
    let _ = js_sys::Reflect::set(&entry, &"timeMs".into(), &5.into());
    raw_put(&db, "outbox", key(1), entry.into()).await;
    raw_put(&db, "streams", "s".into(), stream_record(2, 2, 0)).await;

    let store = open_with(v2_options(&db, ""), v2_reducer()).await;
    assert_eq!(last_error_code(&store), None);
    assert_eq!(
        state_json(&store),
        r#"{"items":[["ONE",1],["TWO",1],["QUEUED",1]]}"#,
        "both events and the queued intent fold upcast, meta.schema 1"
    );
    assert_eq!(status_num(&store, "offset"), 2.0);
    assert_eq!(status_num(&store, "pending"), 1.0);

    // A dispatch of this version is stored with its version and expiry.
    let action = js_sys::JSON::parse(r#"{"type":"add","title":"NEW"}"#).unwrap();
    let state =
        js_sys::JSON::parse(r#"{"items":[["ONE",1],["TWO",1],["QUEUED",1],["NEW",2]]}"#).unwrap();
    let batch = Array::new();
    for v in [
        JsValue::from_str(r#"{"type":"add","title":"NEW"}"#),
        action,
        state,
        JsValue::from_f64(10.0),
        JsValue::from_f64(2.0),
        JsValue::FALSE,
        JsValue::from_f64(4_000_000_000_000.0),
    ] {
        batch.push(&v);
    }
    let base = call(&store, "getState", &[]).unwrap();
    call(&store, "dispatchFolded", &[base, batch.into()]).unwrap();
    wait_for(5_000.0, "the outbox write", || {
        status_num(&store, "writing") == 0.0
    })
    .await;
    close(&store).await;
    let (_, values) = raw_get_all(&db, "outbox").await;
    let fields: Vec<(JsValue, JsValue)> = values
        .iter()
        .map(|v| (get(&v, "schema"), get(&v, "expiresMs")))
        .collect();
    assert!(
        fields[0].0.is_undefined(),
        "the old entry is left as it was"
    );
    assert_eq!(fields[1].0.as_f64(), Some(2.0));
    assert_eq!(fields[1].1.as_f64(), Some(4_000_000_000_000.0));
}

/// A batch of stored events is folded in one call to JS (`fold_events`)
/// exactly as each alone: this version's JSON parsed, an older version's
/// upcast, and what is not this version's JSON (not JSON, not UTF-8, a
/// byte-order mark, nothing) refused by the reducer and skipped, whether
/// or not the batch is all ASCII.
#[wasm_bindgen_test]
async fn a_batch_of_events_decodes_as_each_event_alone() {
    for (name, last) in [("ascii", "Z"), ("utf8", "é")] {
        let db = unique(&format!("schema-batch-{name}"));
        create(&db).await;
        let payloads: Vec<(Vec<u8>, u32)> = vec![
            (br#"{"type":"add","title":"A"}"#.to_vec(), 2),
            (br#"{"type":"add","text":"b"}"#.to_vec(), 1),
            (b"not json".to_vec(), 2),
            (vec![0xff, 0xfe], 2),
            (
                "\u{feff}{\"type\":\"add\",\"title\":\"bom\"}"
                    .as_bytes()
                    .to_vec(),
                2,
            ),
            (Vec::new(), 2),
            (br#"{"type":"add","title":"Y"}"#.to_vec(), 2),
            (
                format!(r#"{{"type":"add","title":"{last}"}}"#).into_bytes(),
                2,
            ),
        ];
        let n = payloads.len() as u64;
        let events: Vec<Event> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, (payload, schema))| Event {
                payload,
                schema,
                ..event(i as u64 + 1, "")
            })
            .collect();
        store_events(&db, &events).await;
        let store = open_with(v2_options(&db, ""), v2_reducer()).await;
        assert_eq!(
            state_json(&store),
            format!(r#"{{"items":[["A",2],["B",1],["Y",2],["{last}",2]]}}"#),
            "{name}: each event folded as alone"
        );
        assert_eq!(status_num(&store, "offset"), n as f64);
        close(&store).await;
    }
}

/// A batch of stored events is folded in one call to JS (`fold_events`)
/// exactly as each alone: every event's meta (offset, seq, client id,
/// subject, time, seen, schema; two clients and two subjects in one
/// batch), an event the reducer throws on or returns `undefined` for
/// skipped with the state as it was, an older version's event upcast and
/// a payload that is not JSON skipped, mid-batch, and the fold going on
/// after each.
#[wasm_bindgen_test]
async fn a_batch_of_events_folds_with_each_events_meta_as_alone() {
    let db = unique("schema-fold");
    create(&db).await;
    let other = ClientId::from_bytes([9; 16]);
    let mine = ClientId::from_bytes([7; 16]);
    let rows: Vec<(&str, u32, ClientId, Option<&str>)> = vec![
        (r#"{"type":"add","title":"a"}"#, 2, mine, Some("ann")),
        (r#"{"type":"add","title":"b"}"#, 2, other, None),
        ("not json", 2, other, None),
        (r#"{"type":"throw"}"#, 2, other, Some("bob")),
        (r#"{"type":"add","title":"c"}"#, 2, other, Some("bob")),
        (r#"{"type":"add","text":"old"}"#, 1, other, Some("ann")),
        (r#"{"type":"undefined"}"#, 2, other, Some("ann")),
        (r#"{"type":"add","title":"d"}"#, 2, mine, Some("ann")),
    ];
    let n = rows.len() as u64;
    let events: Vec<Event> = (1..=n)
        .zip(rows)
        .map(|(offset, (payload, schema, client_id, subject))| Event {
            payload: payload.as_bytes().to_vec(),
            schema,
            client_id,
            subject: subject.map(str::to_string),
            seq: Seq::new(offset + 10).unwrap(),
            time_ms: 5_000 + offset,
            seen: Offset(offset - 1),
            ..event(offset, "")
        })
        .collect();
    store_events(&db, &events).await;
    let reducer = func(
        "state, action, meta",
        "if (action.type === 'throw') throw new Error('no');
         if (action.type === 'undefined') return undefined;
         if (typeof action.title !== 'string') throw new Error('not a v2 action');
         const m = [meta.offset, meta.seq, meta.clientId.slice(0, 2), meta.subject, meta.time, meta.seen, meta.schema];
         return { items: [...state.items, [action.title, ...m]] };",
    );
    let store = open_with(v2_options(&db, ""), reducer).await;
    assert_eq!(
        state_json(&store),
        concat!(
            r#"{"items":[["a",1,11,"07","ann",5001,0,2],["b",2,12,"09",null,5002,1,2],"#,
            r#"["c",5,15,"09","bob",5005,4,2],["OLD",6,16,"09","ann",5006,5,1],"#,
            r#"["d",8,18,"07","ann",5008,7,2]]}"#
        ),
        "each event folded with its own meta, the refused ones skipped"
    );
    assert_eq!(status_num(&store, "offset"), n as f64);
    // Each refused event is reported; the last one is the status's.
    let message = get(&status(&store, "lastError"), "message").as_string();
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("offset 7") && m.contains("returned undefined")),
        "{message:?}"
    );
    close(&store).await;
}

/// A batch with more clients and subjects than the fold's lookup keeps at
/// hand (it searches the last few): each event still gets its own.
#[wasm_bindgen_test]
async fn a_batch_of_many_clients_folds_each_with_its_own_client_and_subject() {
    let db = unique("schema-fold-many");
    create(&db).await;
    let n = 14u64;
    let events: Vec<Event> = (1..=n)
        .map(|offset| {
            let who = (offset * 5 % 7) as u8; // 5, 3, 1, 6, 4, 2, 0, 5, …
            Event {
                payload: format!(r#"{{"type":"add","title":"t{offset}"}}"#).into_bytes(),
                schema: 2,
                client_id: ClientId::from_bytes([0x10 + who; 16]),
                subject: (who % 3 != 0).then(|| format!("user-{who}")),
                ..event(offset, "")
            }
        })
        .collect();
    store_events(&db, &events).await;
    let reducer = func(
        "state, action, meta",
        "return { items: [...state.items, [action.title, meta.clientId.slice(0, 2), meta.subject]] };",
    );
    let store = open_with(v2_options(&db, ""), reducer).await;
    let expected: Vec<String> = (1..=n)
        .map(|offset| {
            let who = offset * 5 % 7;
            let subject = if who % 3 != 0 {
                format!(r#""user-{who}""#)
            } else {
                "null".to_string()
            };
            format!(r#"["t{offset}","1{who}",{subject}]"#)
        })
        .collect();
    assert_eq!(
        state_json(&store),
        format!(r#"{{"items":[{}]}}"#, expected.join(","))
    );
    close(&store).await;
}

#[wasm_bindgen_test]
async fn a_stored_snapshot_of_an_older_version_is_migrated_or_rebuilt() {
    let db = unique("schema-migrate");
    create(&db).await;
    let snapshot =
        js_sys::JSON::parse(r#"{"offset":4,"state":{"items":["a","b"]},"timeMs":0}"#).unwrap();
    raw_put(&db, "snapshots", "s".into(), snapshot).await;
    let five = sync_core::protocol::encode_event(&event(5, "five"));
    raw_put(&db, "events", key(5), Uint8Array::from(&five[..]).into()).await;
    raw_put(&db, "streams", "s".into(), stream_record(5, 1, 4)).await;

    // With migrate: the snapshot, migrated, and the event after it.
    let opts = v2_options(&db, "");
    let _ = js_sys::Reflect::set(
        &opts,
        &"migrate".into(),
        &func(
            "state, from",
            "return { items: state.items.map((t) => [t + ' migrated', from]) };",
        ),
    );
    let store = open_with(opts, v2_reducer()).await;
    assert_eq!(
        state_json(&store),
        r#"{"items":[["a migrated",1],["b migrated",1],["FIVE",1]]}"#
    );
    assert_eq!(status_num(&store, "offset"), 5.0);
    close(&store).await;

    // Without: the snapshot is not used (nor the event after it); the
    // store starts at 0, also when opened again before it met the server
    // (whose first events write drops the snapshot: js/test/schema.test.mjs).
    for _ in 0..2 {
        let store = open_with(v2_options(&db, ""), v2_reducer()).await;
        assert_eq!(state_json(&store), r#"{"items":[]}"#);
        assert_eq!(status_num(&store, "offset"), 0.0);
        assert_eq!(last_error_code(&store), None);
        close(&store).await;
    }
}

#[wasm_bindgen_test]
async fn a_stored_snapshot_of_a_newer_version_is_not_applied_and_the_outbox_is_kept() {
    let db = unique("schema-newer");
    let store = open_with(v2_options(&db, ""), v2_reducer()).await;
    let action = js_sys::JSON::parse(r#"{"type":"add","title":"MINE"}"#).unwrap();
    call(&store, "dispatch", &[action]).unwrap();
    wait_for(5_000.0, "the outbox write", || {
        status_num(&store, "writing") == 0.0
    })
    .await;
    close(&store).await;
    let snapshot = js_sys::JSON::parse(
        r#"{"offset":9,"state":{"items":[["FROM THE FUTURE",3]]},"timeMs":0,"schema":3}"#,
    )
    .unwrap();
    raw_put(&db, "snapshots", "s".into(), snapshot).await;
    raw_put(&db, "streams", "s".into(), stream_record(9, 2, 9)).await;

    let store = open_with(v2_options(&db, ""), v2_reducer()).await;
    assert_eq!(status(&store, "outdated"), JsValue::TRUE);
    assert_eq!(last_error_code(&store).as_deref(), Some("SCHEMA_TOO_NEW"));
    assert_eq!(
        state_json(&store),
        r#"{"items":[["MINE",2]]}"#,
        "the newer state is not applied; the queued intent is kept"
    );
    assert_eq!(status_num(&store, "pending"), 1.0);
    call(&store, "reconnect", &[]).unwrap();
    assert_eq!(status(&store, "online"), JsValue::FALSE);
    close(&store).await;
    let (_, snapshots) = raw_get_all(&db, "snapshots").await;
    assert_eq!(
        get(&snapshots.get(0), "schema").as_f64(),
        Some(3.0),
        "left as it was"
    );
    let (_, outbox) = raw_get_all(&db, "outbox").await;
    assert_eq!(outbox.length(), 1);
}

#[wasm_bindgen_test]
async fn an_intent_past_its_time_to_live_leaves_the_state_offline() {
    let db = unique("schema-ttl");
    let store = open_with(v2_options(&db, ""), v2_reducer()).await;
    let now = js_sys::Date::now();
    let batch = Array::new();
    for (title, expires) in [("SHORT", now + 200.0), ("LONG", now + 3_600_000.0)] {
        let json = format!(r#"{{"type":"add","title":"{title}"}}"#);
        for v in [
            JsValue::from_str(&json),
            js_sys::JSON::parse(&json).unwrap(),
            JsValue::UNDEFINED, // folded again: the base below is stale
            JsValue::from_f64(now),
            JsValue::from_f64(0.0),
            JsValue::FALSE,
            JsValue::from_f64(expires),
        ] {
            batch.push(&v);
        }
    }
    let stale: JsValue = js_sys::Object::new().into();
    call(&store, "dispatchFolded", &[stale, batch.into()]).unwrap();
    assert_eq!(state_json(&store), r#"{"items":[["SHORT",2],["LONG",2]]}"#);
    wait_for(3_000.0, "the short one to expire", || {
        state_json(&store) == r#"{"items":[["LONG",2]]}"#
    })
    .await;
    assert_eq!(status_num(&store, "pending"), 1.0);
    close(&store).await;
    // The expired intent stays in the outbox until the server decides it
    // (withdrawn, EXPIRED) on the next connection.
    let (_, outbox) = raw_get_all(&db, "outbox").await;
    assert_eq!(outbox.length(), 2);
}
