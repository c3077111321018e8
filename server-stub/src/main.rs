//! `logsync-server`: parses flags, sets up logging, opens the store, binds,
//! prints the address line and serves until SIGTERM or Ctrl-C (all of it
//! in [`server_stub::launch::main`]).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    server_stub::launch::main(server_stub::fold::Reducers::default()).await
}
