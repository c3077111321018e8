//! `logsync-seats-server`: `logsync-server` (the same command line, from
//! the server-stub library) with the seats reducer folding every `seats/*`
//! stream at the ordering point. A booking of a taken seat is refused as
//! `REJECTED` with `SEAT_TAKEN: …` and never appended.

use std::sync::Arc;

use seats_reducer::{Seats, SeatsReducer};
use server_stub::fold::{rust::RustReducer, Reducers};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut reducers = Reducers::default();
    reducers.add(
        "seats/*",
        Arc::new(RustReducer::new(SeatsReducer, Seats::default())),
    );
    server_stub::launch::main(reducers).await
}
