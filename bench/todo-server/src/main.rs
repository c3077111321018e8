//! `logsync-todo-server`: `logsync-server` (the same command line, from
//! the server-stub library) with the Rust port of the TodoMVC example's
//! reducer folding every `todos/*` stream at the ordering point. The
//! reducer benchmark (`bench/run.sh --only reducer`) measures it as the
//! `logsync-rust-todo` variant beside `logsync-server` without a reducer
//! and with the example's JavaScript module (`--reducer todos/*=…`).

use std::sync::Arc;

use server_stub::fold::{rust::RustReducer, Reducers};
use todo_reducer::{TodoReducer, Todos};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut reducers = Reducers::default();
    reducers.add(
        "todos/*",
        Arc::new(RustReducer::new(TodoReducer, Todos::default())),
    );
    server_stub::launch::main(reducers).await
}
