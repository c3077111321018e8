//! What the Rust todo reducer costs per intent, without the network and
//! the store: `todo_reducer::TodoReducer` behind the server's
//! `RustReducer` (as `logsync-todo-server` registers it), folding the todo
//! actions the append benchmark sends (`logsync-bench append --payload
//! todo`: a writer adds 100 todos, then toggles and edits them in turn).
//! The same actions and loop as server-stub's `js_fold_cost` example,
//! which measures the JavaScript module.
//!
//! ```text
//! cargo run --release -p todo-server --example rust_fold_cost -- [intents] [todos]
//! ```
//!
//! Prints µs per fold, best of 5 rounds.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use server_stub::fold::rust::RustReducer;
use server_stub::fold::StreamReducer;
use todo_reducer::{TodoReducer, Todos};

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

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map(|a| a.parse().unwrap()).unwrap_or(100_000);
    let todos: u64 = args.next().map(|a| a.parse().unwrap()).unwrap_or(100);
    let payloads: Vec<Vec<u8>> = (0..n).map(|i| todo_action(todos, i)).collect();
    let reducer = RustReducer::new(TodoReducer, Todos::default());
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
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / n as f64);
        json = state.to_json().unwrap();
    }
    let state: serde_json::Value = serde_json::from_str(&json).unwrap();
    let kept = state["todos"].as_array().map_or(0, Vec::len);
    assert_eq!(kept as u64, todos.min(n), "the state holds every todo");
    let bytes = payloads.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
    println!("{n} todo actions ({bytes:.0} B on average), {todos} todos in the state");
    println!("| reducer | µs per fold |");
    println!("|---|---:|");
    println!("| todo_reducer::TodoReducer (Rust) | {best:.2} |");
}
