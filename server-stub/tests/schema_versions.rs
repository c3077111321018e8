//! Schema versions at the ordering point, through the real
//! `logsync-server` binary on a real SQLite file with real JavaScript
//! modules: an app upgraded from schema version 1 to 2 (its `upcast`
//! renames `text` to `title`), intents of versions the module does not
//! take, and stored snapshots of the old version (migrated or rebuilt).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::process::Proc;
use common::{answer, client_id, within, Client};

use sync_core::{ErrorCode, ServerMsg};
use tokio::process::Command;

/// Version 1: notes with a `text`.
const V1: &str = r#"
export const initialState = { notes: [] };
export const views = { count: (state) => state.notes.length };
export default function reducer(state, action) {
  if (action.type !== 'add') throw new Error('unknown action');
  return { notes: [...state.notes, { text: action.text }] };
}
"#;

/// Version 2: notes with a `title`; version-1 actions are upcast.
const V2_BODY: &str = r#"
export const schemaVersion = 2;
export const initialState = { notes: [] };
export function upcast(action, from) {
  if (from === 1 && action.type === 'add') return { type: 'add', title: action.text };
  return action;
}
export const views = { titles: (state) => state.notes.map((n) => n.title) };
export default function reducer(state, action, meta) {
  if (action.type !== 'add' || typeof action.title !== 'string') throw new Error('not a version-2 add');
  return { notes: [...state.notes, { title: action.title }] };
}
"#;

/// Version 2's `migrate`: a version-1 state's notes renamed.
const V2_MIGRATE: &str = r#"
export function migrate(state, from) {
  return { notes: state.notes.map((n) => ({ title: n.text })) };
}
"#;

/// The server on `dir/log.db`, folding `notes/*` with `module`.
async fn spawn(dir: &Path, module: &str, extra: &[&str]) -> Proc {
    let path = dir.join(format!("notes-{}.js", rand_suffix()));
    std::fs::write(&path, module).unwrap();
    let mut args = vec![
        "--reducer".to_string(),
        format!("notes/*={}", path.display()),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    Proc::spawn(dir, &args, &[]).await
}

/// A distinct file name per module written (a restarted server loads a
/// new file).
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn add_v1(text: &str) -> Vec<u8> {
    serde_json::json!({"type": "add", "text": text})
        .to_string()
        .into_bytes()
}

fn add_v2(title: &str) -> Vec<u8> {
    serde_json::json!({"type": "add", "title": title})
        .to_string()
        .into_bytes()
}

fn notes(titles: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "notes": titles.iter().map(|t| serde_json::json!({"title": t})).collect::<Vec<_>>()
    })
}

/// Version-1 events and a version-1 snapshot, then the server restarted
/// on the same file with the version-2 module: its state is the upcast
/// fold, whether the module migrates the snapshot or the state is
/// rebuilt from the events; old and new intents are both folded on.
async fn upgrade(module_v2: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn(dir.path(), V1, &["--snapshot-every", "2"]).await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    for (s, t) in [(1, "a"), (2, "b"), (3, "c")] {
        c.push("notes/n", &[(s, add_v1(t))]).await;
        assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    }
    let (status, snap) = p.get("/v1/streams/notes%2Fn/snapshot").await;
    assert_eq!(status, 200, "{snap}");
    assert_eq!(
        (snap["offset"].as_u64(), snap["schema"].as_u64()),
        (Some(2), Some(1))
    );
    drop(c);
    p.stop().await;

    let p = spawn(dir.path(), module_v2, &["--snapshot-every", "2"]).await;
    let (status, state) = p.get("/v1/streams/notes%2Fn/state").await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["state"], notes(&["a", "b", "c"]), "{state}");
    // The viewer (its own engine and states) folds the same way.
    let (status, view) = p
        .get(&common::view_path("notes%2Fn", "titles", "null"))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["result"], serde_json::json!(["a", "b", "c"]), "{view}");
    // A queued version-1 intent and a version-2 one.
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    c.push_schema("notes/n", 1, &[(4, add_v1("d"))]).await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    c.push_schema("notes/n", 2, &[(5, add_v2("e"))]).await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    let (_, state) = p.get("/v1/streams/notes%2Fn/state").await;
    assert_eq!(state["state"], notes(&["a", "b", "c", "d", "e"]), "{state}");
    // The log keeps each intent as it was made.
    let (_, page) = p.get("/v1/streams/notes%2Fn/events?after=0").await;
    let schemas: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["schema"].as_u64().unwrap())
        .collect();
    assert_eq!(schemas, vec![1, 1, 1, 1, 2]);
    // The new snapshot (at 4) is of version 2.
    let (_, snap) = p.get("/v1/streams/notes%2Fn/snapshot").await;
    assert_eq!(
        (snap["offset"].as_u64(), snap["schema"].as_u64()),
        (Some(4), Some(2)),
        "{snap}"
    );
    drop(c);
    p.stop().await;
    // And once more from that snapshot.
    let p = spawn(dir.path(), module_v2, &[]).await;
    let (_, state) = p.get("/v1/streams/notes%2Fn/state").await;
    assert_eq!(state["state"], notes(&["a", "b", "c", "d", "e"]), "{state}");
    p.stop().await;
}

#[tokio::test]
async fn an_upgraded_module_migrates_the_old_snapshot_and_upcasts_old_events() {
    upgrade(&format!("{V2_BODY}{V2_MIGRATE}")).await;
}

#[tokio::test]
async fn an_upgraded_module_without_migrate_rebuilds_the_state_from_the_events() {
    upgrade(V2_BODY).await;
}

/// An intent older than the module's `minSchemaVersion` is rejected for
/// good (`SCHEMA_TOO_OLD`, stored): a resend gets the same answer.
#[tokio::test]
async fn an_intent_of_a_schema_too_old_is_rejected_once_and_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let module = format!("{V2_BODY}\nexport const minSchemaVersion = 2;\n");
    let p = spawn(dir.path(), &module, &[]).await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    c.push_schema("notes/n", 1, &[(1, add_v1("a"))]).await;
    let first = answer(&mut c).await;
    let ServerMsg::Reject { code, message, .. } = &first else {
        panic!("expected a Reject: {first:?}")
    };
    assert_eq!(*code, ErrorCode::SchemaTooOld);
    assert!(message.contains("reload"), "{message}");
    c.push_schema("notes/n", 1, &[(1, add_v1("a"))]).await;
    assert_eq!(
        answer(&mut c).await,
        first,
        "a resend gets the stored answer"
    );
    // The next seq goes on (nothing was appended).
    c.push_schema("notes/n", 2, &[(2, add_v2("b"))]).await;
    let ServerMsg::Ack { offset, .. } = answer(&mut c).await else {
        panic!("expected an Ack")
    };
    assert_eq!(offset.0, 1);
    // Over HTTP too, after a restart.
    drop(c);
    p.stop().await;
    let p = spawn(dir.path(), &module, &[]).await;
    let (status, body) = p
        .post("notes%2Fn", 1, 1, 1, r#"{"type":"add","text":"a"}"#)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("SCHEMA_TOO_OLD")),
        "{body}"
    );
    p.stop().await;
}

/// An intent newer than the module is not decided: its seq stays free,
/// and a server running the newer module appends it.
#[tokio::test]
async fn an_intent_of_a_newer_schema_is_not_decided_until_the_new_module_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn(dir.path(), V1, &[]).await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    c.push_schema("notes/n", 2, &[(1, add_v2("a"))]).await;
    let (error, close) = within("the close", c.recv_close()).await;
    assert!(
        matches!(
            &error,
            Some(ServerMsg::Error {
                code: ErrorCode::SchemaTooNew,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    let (status, body) = p
        .post("notes%2Fn", 1, 1, 2, r#"{"type":"add","title":"a"}"#)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("SCHEMA_TOO_NEW")),
        "{body}"
    );
    let (_, page) = p.get("/v1/streams/notes%2Fn/events?after=0").await;
    assert_eq!(page["events"], serde_json::json!([]), "{page}");
    // Version-1 intents of another client are folded as before.
    let (mut other, _) = Client::hello(&p.ws(), client_id(2)).await;
    other.push_schema("notes/n", 1, &[(1, add_v1("x"))]).await;
    assert!(matches!(answer(&mut other).await, ServerMsg::Ack { .. }));
    drop(other);
    p.stop().await;

    let p = spawn(dir.path(), &format!("{V2_BODY}{V2_MIGRATE}"), &[]).await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    c.push_schema("notes/n", 2, &[(1, add_v2("a"))]).await;
    let ServerMsg::Ack {
        offset, duplicate, ..
    } = answer(&mut c).await
    else {
        panic!("expected an Ack")
    };
    assert_eq!((offset.0, duplicate), (2, false));
    let (_, state) = p.get("/v1/streams/notes%2Fn/state").await;
    assert_eq!(state["state"], notes(&["x", "a"]), "{state}");
    // And the version-1 server now refuses the stream: it cannot read
    // version 2's event.
    drop(c);
    p.stop().await;
    let p = spawn(dir.path(), V1, &[]).await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(2)).await;
    c.push_schema("notes/n", 1, &[(2, add_v1("y"))]).await;
    let (error, _) = within("the close", c.recv_close()).await;
    assert!(
        matches!(
            &error,
            Some(ServerMsg::Error {
                code: ErrorCode::SchemaTooNew,
                ..
            })
        ),
        "{error:?}"
    );
    let (status, body) = p.get("/v1/streams/notes%2Fn/state").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("SCHEMA_TOO_NEW")),
        "{body}"
    );
    // The viewer does not fold it either.
    let (status, body) = p
        .get(&common::view_path("notes%2Fn", "count", "null"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("SCHEMA_TOO_NEW")),
        "{body}"
    );
    p.stop().await;
}

/// A module whose schema exports do not hold together is not loaded.
#[tokio::test]
async fn inconsistent_schema_exports_stop_the_server_with_a_clear_reason() {
    for (module, reason) in [
        (
            format!("{V1}\nexport const schemaVersion = 1.5;"),
            "`schemaVersion` must be an integer",
        ),
        (
            format!("{V1}\nexport const schemaVersion = 0;"),
            "`schemaVersion` must be an integer",
        ),
        (
            format!("{V1}\nexport const schemaVersion = 2;\nexport const minSchemaVersion = 3;"),
            "is above `schemaVersion`",
        ),
        (
            format!("{V1}\nexport const schemaVersion = 2;\nexport const minSchemaVersion = 1;"),
            "exports no `upcast",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.js");
        std::fs::write(&path, &module).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_logsync-server"))
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("log.db"))
            .arg("--reducer")
            .arg(format!("notes/*={}", path.display()))
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{reason}: {err}");
    }
}

/// A version-1 snapshot whose events were compacted away: the version-2
/// module's `migrate` is the only way to its state; without one, the
/// stream is refused undecided with a clear reason (never a crash), and
/// the other streams go on.
#[tokio::test]
async fn a_compacted_stream_needs_migrate_and_is_refused_undecided_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let compact = ["--snapshot-every", "2", "--retain-events", "0"];
    let p = spawn(dir.path(), V1, &compact).await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    for (s, t) in [(1, "a"), (2, "b")] {
        c.push("notes/n", &[(s, add_v1(t))]).await;
        assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    }
    let (status, _) = p.get("/v1/streams/notes%2Fn/events?after=0").await;
    assert_eq!(status, 410, "the events are compacted");
    drop(c);
    p.stop().await;

    // Without migrate: not decided, a clear reason.
    let p = spawn(dir.path(), V2_BODY, &compact).await;
    let (status, body) = p.get("/v1/streams/notes%2Fn/state").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("SCHEMA_TOO_OLD")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("migrate"),
        "{body}"
    );
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    c.push_schema("notes/n", 2, &[(3, add_v2("c"))]).await;
    let (error, _) = within("the close", c.recv_close()).await;
    assert!(
        matches!(
            &error,
            Some(ServerMsg::Error {
                code: ErrorCode::SchemaTooOld,
                ..
            })
        ),
        "{error:?}"
    );
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    c.push_schema("notes/other", 2, &[(1, add_v2("z"))]).await;
    assert!(matches!(answer(&mut c).await, ServerMsg::Ack { .. }));
    drop(c);
    p.stop().await;

    // With migrate: the seq left free is appended.
    let p = spawn(dir.path(), &format!("{V2_BODY}{V2_MIGRATE}"), &compact).await;
    let (mut c, _) = Client::hello(&p.ws(), client_id(1)).await;
    c.push_schema("notes/n", 2, &[(3, add_v2("c"))]).await;
    let ServerMsg::Ack { offset, .. } = answer(&mut c).await else {
        panic!("expected an Ack")
    };
    assert_eq!(offset.0, 3);
    let (_, state) = p.get("/v1/streams/notes%2Fn/state").await;
    assert_eq!(state["state"], notes(&["a", "b", "c"]), "{state}");
    // A new subscriber gets the stored snapshot with its version (the
    // client migrates it), then the event after it.
    c.subscribe("notes/n", 0).await;
    let frame = c.recv().await;
    let ServerMsg::Snapshot { offset, schema, .. } = frame else {
        panic!("expected a Snapshot: {frame:?}")
    };
    assert_eq!((offset.0, schema), (2, 1));
    drop(c);
    p.stop().await;
}
