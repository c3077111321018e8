//! The store on its own, in headless Chromium with real IndexedDB and no
//! server: the Redux contract, errors at the JS boundary, and restarts
//! from IndexedDB with no network.
#![cfg(target_arch = "wasm32")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use js_sys::{Array, Function};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A URL where nothing listens: the store stays offline.
const NOWHERE: &str = "ws://127.0.0.1:9/v1/ws";

fn offline_options(stream: &str, db: &str) -> JsValue {
    options(NOWHERE, stream, db, r#","connect":false"#)
}

#[wasm_bindgen_test]
async fn redux_contract() {
    let db = unique("redux");
    let store = open(offline_options("s", &db)).await;

    // getState returns the same object until the state changes.
    let s1 = call(&store, "getState", &[]).unwrap();
    let s2 = call(&store, "getState", &[]).unwrap();
    assert!(js_sys::Object::is(&s1, &s2));

    // dispatch (detached) notifies subscribers before it returns, with the
    // new state visible to them; it returns the action.
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let (store2, seen2) = (store.clone(), seen.clone());
    let listener =
        Closure::<dyn Fn()>::new(move || seen2.borrow_mut().push(items(&store2).join(",")));
    let unsubscribe: Function = call(&store, "subscribe", &[listener.as_ref().clone()])
        .unwrap()
        .unchecked_into();
    let action = js_sys::JSON::parse(r#"{"type":"add","id":"a"}"#).unwrap();
    let returned = call(&store, "dispatch", std::slice::from_ref(&action)).unwrap();
    assert!(
        js_sys::Object::is(&returned, &action),
        "dispatch returns the action"
    );
    assert_eq!(
        *seen.borrow(),
        vec!["a".to_string()],
        "notified before dispatch returned"
    );
    let s3 = call(&store, "getState", &[]).unwrap();
    assert!(!js_sys::Object::is(&s1, &s3));
    assert!(js_sys::Object::is(
        &s3,
        &call(&store, "getState", &[]).unwrap()
    ));

    // An action the reducer ignores still notifies (as Redux does) and
    // keeps the same state object.
    call(
        &store,
        "dispatch",
        &[js_sys::JSON::parse(r#"{"type":"noop"}"#).unwrap()],
    )
    .unwrap();
    assert_eq!(seen.borrow().len(), 2);
    assert!(js_sys::Object::is(
        &s3,
        &call(&store, "getState", &[]).unwrap()
    ));

    // unsubscribe stops notifications; calling it twice is harmless.
    unsubscribe.call0(&JsValue::UNDEFINED).unwrap();
    unsubscribe.call0(&JsValue::UNDEFINED).unwrap();
    add(&store, "b");
    assert_eq!(seen.borrow().len(), 2);
    assert_eq!(items(&store), vec!["a", "b"]);

    // replaceReducer re-applies pending intents with the new reducer and
    // notifies.
    let (rec, calls) = recorder();
    call(&store, "subscribe", &[rec.into()]).unwrap();
    let upper = Function::new_with_args(
        "state, action",
        "return action.type === 'add' ? { items: [...state.items, action.id.toUpperCase()] } : state;",
    );
    call(&store, "replaceReducer", &[upper.into()]).unwrap();
    assert_eq!(calls.borrow().len(), 1);
    assert_eq!(items(&store), vec!["A", "B"]);
    assert_eq!(status_num(&store, "pending"), 3.0, "a, noop, b");
    close(&store).await;
    drop(listener);
}

#[wasm_bindgen_test]
async fn subscribers_follow_redux_snapshot_rules() {
    let store = open(offline_options("s", &unique("snap"))).await;
    let calls = std::rc::Rc::new(std::cell::RefCell::new(Vec::<&'static str>::new()));
    // Listener 1 unsubscribes listener 2 during a notification: 2 is still
    // called this time (the list was taken when dispatch started), not after.
    let unsub2: std::rc::Rc<std::cell::RefCell<Option<Function>>> = Default::default();
    let (c1, u2) = (calls.clone(), unsub2.clone());
    let l1 = Closure::<dyn Fn()>::new(move || {
        c1.borrow_mut().push("one");
        if let Some(u) = u2.borrow_mut().take() {
            u.call0(&JsValue::UNDEFINED).unwrap();
        }
    });
    let c2 = calls.clone();
    let l2 = Closure::<dyn Fn()>::new(move || c2.borrow_mut().push("two"));
    call(&store, "subscribe", &[l1.as_ref().clone()]).unwrap();
    *unsub2.borrow_mut() = Some(
        call(&store, "subscribe", &[l2.as_ref().clone()])
            .unwrap()
            .unchecked_into(),
    );
    add(&store, "x");
    assert_eq!(*calls.borrow(), vec!["one", "two"]);
    add(&store, "y");
    assert_eq!(*calls.borrow(), vec!["one", "two", "one"]);

    // A listener may dispatch (nested dispatches notify too).
    let store2 = store.clone();
    let once = std::rc::Rc::new(std::cell::Cell::new(true));
    let nested = Closure::<dyn Fn()>::new(move || {
        if once.replace(false) {
            add(&store2, "from-listener");
        }
    });
    call(&store, "subscribe", &[nested.as_ref().clone()]).unwrap();
    add(&store, "z");
    assert_eq!(items(&store), vec!["x", "y", "z", "from-listener"]);

    // A listener that throws does not stop the others or the dispatch.
    let thrower = Function::new_no_args("throw new Error('listener failure');");
    call(&store, "subscribe", &[thrower.into()]).unwrap();
    let (rec, log) = recorder();
    call(&store, "subscribe", &[rec.into()]).unwrap();
    add(&store, "w");
    assert_eq!(log.borrow().len(), 1);
    close(&store).await;
    drop((l1, l2, nested));
}

#[wasm_bindgen_test]
async fn bad_actions_and_reducer_failures_throw_logsync_errors_and_keep_state() {
    let store = open(offline_options("s", &unique("errors"))).await;
    add(&store, "keep");
    let before = call(&store, "getState", &[]).unwrap();
    let (rec, notified) = recorder();
    call(&store, "subscribe", &[rec.into()]).unwrap();

    let cases: [(&str, JsValue); 5] = [
        ("INVALID_REQUEST", JsValue::from_str("add")),
        (
            "INVALID_REQUEST",
            js_sys::JSON::parse(r#"{"id":"no type"}"#).unwrap(),
        ),
        (
            "INVALID_REQUEST",
            js_sys::JSON::parse(r#"[{"type":"add"}]"#).unwrap(),
        ),
        (
            "REDUCER",
            js_sys::JSON::parse(r#"{"type":"boom"}"#).unwrap(),
        ),
        (
            "INVALID_JSON",
            js_sys::eval("({ type: 'add', id: 'big', n: 10n })").unwrap(),
        ),
    ];
    for (code, action) in cases {
        let err = call(&store, "dispatch", &[action]).expect_err("dispatch must throw");
        assert!(err.is_instance_of::<js_sys::Error>(), "a real Error");
        assert_eq!(
            get(&err, "name").as_string().as_deref(),
            Some("LogsyncError")
        );
        assert_eq!(
            get(&err, "code").as_string().as_deref(),
            Some(code),
            "{}",
            describe(&err)
        );
        let message = get(&err, "message").as_string().unwrap();
        // One rule: the code is `err.code`, the message does not repeat it.
        assert!(
            !message.starts_with(code) && !message.is_empty(),
            "message without the code: {message}"
        );
    }
    let boom = call(
        &store,
        "dispatch",
        &[js_sys::JSON::parse(r#"{"type":"boom"}"#).unwrap()],
    )
    .unwrap_err();
    assert!(
        describe(&boom).contains("boom in reducer"),
        "the cause is kept: {}",
        describe(&boom)
    );
    // Circular structures are not JSON either.
    let circular =
        js_sys::eval("(() => { const a = { type: 'add' }; a.self = a; return a; })()").unwrap();
    let err = call(&store, "dispatch", &[circular]).unwrap_err();
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some("INVALID_JSON")
    );

    assert!(
        js_sys::Object::is(&before, &call(&store, "getState", &[]).unwrap()),
        "state unchanged"
    );
    assert_eq!(
        notified.borrow().len(),
        0,
        "no notification for a failed dispatch"
    );
    assert_eq!(
        status_num(&store, "pending"),
        1.0,
        "nothing queued for a failed dispatch"
    );

    // A reducer that calls back into the store gets an error, not a crash.
    let reentrant_store = store.clone();
    let reentrant = Closure::<dyn Fn(JsValue, JsValue) -> Result<JsValue, JsValue>>::new(
        move |state: JsValue, _action: JsValue| {
            let e = call(&reentrant_store, "getState", &[]).expect_err("getState inside a reducer");
            assert_eq!(
                get(&e, "code").as_string().as_deref(),
                Some("INVALID_REQUEST")
            );
            Ok(state)
        },
    );
    call(&store, "replaceReducer", &[reentrant.as_ref().clone()]).unwrap();
    call(
        &store,
        "dispatch",
        &[js_sys::JSON::parse(r#"{"type":"noop"}"#).unwrap()],
    )
    .unwrap();

    // The error code list matches the core's.
    let codes: Array = sync_wasm::error_codes();
    assert_eq!(codes.length() as usize, sync_core::ErrorCode::ALL.len());
    close(&store).await;

    // After close: dispatch and synced fail with STORE_CLOSED; close again is fine.
    let err = call(
        &store,
        "dispatch",
        &[js_sys::JSON::parse(r#"{"type":"add","id":"late"}"#).unwrap()],
    )
    .unwrap_err();
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some("STORE_CLOSED")
    );
    let p: js_sys::Promise = call(&store, "synced", &[]).unwrap().unchecked_into();
    let err = wasm_bindgen_futures::JsFuture::from(p).await.unwrap_err();
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some("STORE_CLOSED")
    );
    close(&store).await;
    drop(reentrant);
}

#[wasm_bindgen_test]
async fn bad_options_are_refused() {
    let reducer: JsValue = list_reducer().into();
    for (opts, code) in [
        (
            r#"{"url":"http://x/v1/ws","stream":"s","dbName":"d"}"#,
            "INVALID_REQUEST",
        ),
        (
            r#"{"url":"ws://x/v1/ws","stream":"has space","dbName":"d"}"#,
            "INVALID_STREAM",
        ),
        (r#"{"url":"ws://x/v1/ws","stream":"s"}"#, "INVALID_REQUEST"),
        (
            r#"{"url":"ws://x/v1/ws","stream":"s","dbName":"d","snapshotEvery":0}"#,
            "INVALID_REQUEST",
        ),
    ] {
        let err = sync_wasm::open_store(
            js_sys::JSON::parse(opts).unwrap(),
            reducer.clone(),
            empty_list(),
        )
        .await
        .expect_err(opts);
        assert_eq!(
            get(&err, "code").as_string().as_deref(),
            Some(code),
            "{opts}: {}",
            describe(&err)
        );
    }
    let err = sync_wasm::open_store(
        offline_options("s", &unique("d")),
        JsValue::from(3),
        empty_list(),
    )
    .await
    .expect_err("reducer must be a function");
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some("INVALID_REQUEST")
    );
}

#[wasm_bindgen_test]
async fn reopens_from_indexeddb_with_no_network() {
    let db = unique("reopen");
    let store = open(offline_options("todos/a", &db)).await;
    let client_id = status(&store, "clientId").as_string().unwrap();
    assert_eq!(client_id.len(), 32);
    for id in ["one", "two", "three"] {
        add(&store, id);
    }
    assert_eq!(status_num(&store, "pending"), 3.0);
    close(&store).await;

    let again = open(offline_options("todos/a", &db)).await;
    assert_eq!(
        items(&again),
        vec!["one", "two", "three"],
        "state back from the outbox"
    );
    assert_eq!(status_num(&again, "pending"), 3.0);
    assert_eq!(
        status(&again, "clientId").as_string().unwrap(),
        client_id,
        "client id kept"
    );
    assert_eq!(status(&again, "online"), JsValue::FALSE);
    // The outbox holds seqs 1..3 in order, each once.
    let (keys, values) = raw_get_all(&db, "outbox").await;
    assert_eq!(keys.length(), 3);
    let seqs: Vec<f64> = values
        .iter()
        .map(|v| get(&v, "seq").as_f64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1.0, 2.0, 3.0]);
    // Another stream of the same database is independent.
    let other = open(offline_options("todos/b", &db)).await;
    assert!(items(&other).is_empty());
    assert_eq!(
        status(&other, "clientId").as_string().unwrap(),
        client_id,
        "one client id per database"
    );
    add(&other, "b1");
    close(&other).await;
    close(&again).await;
    let (_, values) = raw_get_all(&db, "outbox").await;
    assert_eq!(values.length(), 4);
}

#[wasm_bindgen_test]
async fn status_is_stable_and_observable() {
    let store = open(offline_options("s", &unique("status"))).await;
    let a = call(&store, "status", &[]).unwrap();
    assert!(
        js_sys::Object::is(&a, &call(&store, "status", &[]).unwrap()),
        "same object until it changes"
    );
    assert!(js_sys::Object::is_frozen(
        a.unchecked_ref::<js_sys::Object>()
    ));
    let (rec, log) = recorder();
    let unsub: Function = call(&store, "onStatus", &[rec.into()])
        .unwrap()
        .unchecked_into();
    add(&store, "x");
    let b = call(&store, "status", &[]).unwrap();
    assert!(!js_sys::Object::is(&a, &b));
    assert_eq!(get(&b, "pending").as_f64(), Some(1.0));
    assert_eq!(
        log.borrow().len(),
        1,
        "one status notification for one change"
    );
    unsub.call0(&JsValue::UNDEFINED).unwrap();
    add(&store, "y");
    assert_eq!(log.borrow().len(), 1);
    close(&store).await;
}
