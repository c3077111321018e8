//! What the JavaScript engine costs per intent, without the network and the
//! store: the TodoMVC example's reducer module (`todos.js`) loaded as
//! `--reducer` loads it, folding the todo actions the append benchmark
//! sends (`logsync-bench append --payload todo`: a writer adds 100 todos,
//! then toggles and edits them in turn), against a module whose reducer
//! returns the state unchanged (what the harness costs: the call into the
//! engine, `JSON.parse` of the payload, keeping the next state).
//!
//! ```text
//! cargo run --release -p server-stub --example js_fold_cost -- [intents] [todos]
//! ```
//!
//! Prints µs per fold for each module, best of 5 rounds.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use server_stub::fold::js::{JsLimits, JsReducer};
use server_stub::fold::StreamReducer;

/// The append benchmark's `todo_action` (bench/src/append.rs), one writer.
fn todo_action(owned: u64, n: u64) -> Vec<u8> {
    let k = n % owned;
    let id = format!("00000000-0000-4000-8000-{k:012x}");
    let action = if n < owned {
        serde_json::json!({ "type": "todo/added", "id": id, "text": format!("todo {k} of writer 0") })
    } else if (n / owned) % 2 == 1 {
        serde_json::json!({ "type": "todo/toggled", "id": id })
    } else {
        serde_json::json!({ "type": "todo/edited", "id": id, "text": format!("todo {k} of writer 0, edit {n}") })
    };
    action.to_string().into_bytes()
}

/// µs per fold of `payloads` onto a fresh state, best of 5; and the state.
fn measure(module: &Path, payloads: &[Vec<u8>]) -> (f64, String) {
    let reducer = JsReducer::load(module, None, JsLimits::default()).unwrap();
    let mut best = f64::MAX;
    let mut json = String::new();
    for _ in 0..5 {
        let mut state = reducer.start().unwrap();
        let start = Instant::now();
        for (i, p) in payloads.iter().enumerate() {
            let meta = sync_core::Meta {
                offset: Some(sync_core::Offset(i as u64 + 1)),
                client_id: sync_core::ClientId([7; 16]),
                subject: Some("writer-0"),
                seq: sync_core::Seq::new(i as u64 + 1).ok(),
                time_ms: 1_700_000_000_000 + i as u64,
                seen: sync_core::Offset(i as u64),
                schema: 1,
            };
            state.fold(p, &meta).unwrap();
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / payloads.len() as f64;
        best = best.min(us);
        json = state.to_json().unwrap();
    }
    (best, json)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map(|a| a.parse().unwrap()).unwrap_or(100_000);
    let todos: u64 = args.next().map(|a| a.parse().unwrap()).unwrap_or(100);
    let payloads: Vec<Vec<u8>> = (0..n).map(|i| todo_action(todos, i)).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let todo_module = root.join("examples/todo-react/src/todos.js");
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("identity.js");
    std::fs::write(
        &identity,
        "export const initialState = { todos: [] };\nexport default (state, action) => state;\n",
    )
    .unwrap();

    let (harness_us, _) = measure(&identity, &payloads);
    let (todo_us, state) = measure(&todo_module, &payloads);
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let kept = state["todos"].as_array().map_or(0, Vec::len);
    assert_eq!(kept as u64, todos.min(n), "the state holds every todo");
    let bytes = payloads.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
    println!("{n} todo actions ({bytes:.0} B on average), {todos} todos in the state");
    println!("| module | µs per fold |");
    println!("|---|---:|");
    println!("| returns the state unchanged (the harness) | {harness_us:.2} |");
    println!("| examples/todo-react/src/todos.js | {todo_us:.2} |");
}
