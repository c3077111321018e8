//! `logsync-server`'s entry point as a library function ([`main`]), so a
//! server binary built from this library runs the same command line with
//! Rust reducers of its own registered:
//!
//! ```no_run
//! # struct Seats;
//! # impl sync_core::Reducer for Seats {
//! #     type State = u32;
//! #     type Action = ();
//! #     fn decode(&self, _: &[u8]) -> Result<(), sync_core::ReduceError> { Ok(()) }
//! #     fn reduce(&self, s: &u32, _: &()) -> Result<u32, sync_core::ReduceError> { Ok(*s) }
//! # }
//! use std::sync::Arc;
//! use server_stub::fold::{rust::RustReducer, Reducers};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let mut reducers = Reducers::default();
//!     reducers.add("seats/*", Arc::new(RustReducer::new(Seats, 0)));
//!     server_stub::launch::main(reducers).await
//! }
//! ```

use clap::Parser as _;

use crate::cli::{Command, LogFormat};
use crate::fold::Reducers;
use crate::{Cli, Server};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// `logsync-server`'s whole `main`: parses the command line ([`Cli`]),
/// runs `token` and `bind`, or sets up logging, opens the store with the
/// `--reducer` modules and then `reducers` (see
/// [`Server::open_with_reducers`]), binds, prints the address line and
/// serves until SIGTERM or Ctrl-C. A server binary built from the library
/// with Rust reducers of its own is `main` calling this.
pub async fn main(reducers: Reducers) -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Token {
        sub,
        read,
        write,
        ttl,
        expired,
    }) = &cli.command
    {
        return match mint_token(&cli, sub, read, write, *ttl, *expired) {
            Ok(token) => {
                // One newline-terminated line (a test checks it).
                println!("{token}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("logsync-server token: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match cli.log_format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    }
    .with_filter(filter);
    let logs = tracing_subscriber::registry().with(logs);
    #[cfg(feature = "otel")]
    let exporter = match cli.otlp_endpoint.as_deref().map(crate::otel::layer) {
        None => {
            logs.init();
            None
        }
        Some(Ok((layer, exporter))) => {
            logs.with(layer).init();
            Some(exporter)
        }
        Some(Err(e)) => {
            eprintln!("logsync-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    #[cfg(not(feature = "otel"))]
    {
        if cli.otlp_endpoint.is_some() {
            eprintln!(
                "logsync-server: --otlp-endpoint needs a server built with the otel feature \
                 (cargo build --release -p server-stub --features otel)"
            );
            return std::process::ExitCode::FAILURE;
        }
        logs.init();
    }
    if let Some(Command::Bind { client_id, sub }) = &cli.command {
        return match bind(&cli, client_id, sub).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("logsync-server bind: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let code = match serve(cli, reducers).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(code = %e.code(), "{e}");
            eprintln!("logsync-server: {e}");
            std::process::ExitCode::FAILURE
        }
    };
    #[cfg(feature = "otel")]
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    code
}

/// `logsync-server token`: a development token signed with the server's secret.
fn mint_token(
    cli: &Cli,
    sub: &str,
    read: &[String],
    write: &[String],
    ttl: std::time::Duration,
    expired: bool,
) -> Result<String, crate::Error> {
    // A grant the server would refuse (a malformed `PATTERN#VIEW`) is
    // never signed.
    crate::auth::check_grants(read, write).map_err(|e| crate::Error::Config(e.to_string()))?;
    let secret = cli.jwt_secret()?.ok_or_else(|| {
        crate::Error::Config(
            "no secret to sign with: set LOGSYNC_JWT_SECRET or --jwt-secret-file, as for the server"
                .into(),
        )
    })?;
    let now = crate::auth::now_secs();
    let claims = serde_json::json!({
        "sub": sub,
        "exp": if expired {
            // Past the server's leeway too, so it is refused at once.
            now.saturating_sub(ttl.as_secs().max(1) + crate::auth::LEEWAY_SECS)
        } else {
            now.saturating_add(ttl.as_secs())
        },
        "read": read,
        "write": write,
    });
    Ok(crate::auth::sign(&claims.to_string(), secret.bytes()))
}

/// `logsync-server bind`: binds a client id to a subject in the store.
async fn bind(cli: &Cli, client_id: &str, sub: &str) -> Result<(), String> {
    let id = sync_core::ClientId::from_hex(client_id).map_err(|e| e.to_string())?;
    if sub.is_empty() || sub.len() > 256 {
        return Err("--sub must be 1-256 bytes".into());
    }
    let config = cli.to_config().map_err(|e| e.to_string())?;
    let store = crate::open_store_for_admin(&config)
        .await
        .map_err(|e| e.to_string())?;
    let bound = store.bind_client(id, sub.to_string()).await;
    store.close().await;
    let bound = bound.map_err(|e| e.to_string())?;
    if bound == sub {
        println!("client id {id} is bound to {sub:?}");
        Ok(())
    } else {
        Err(format!(
            "client id {id} is already bound to another subject ({bound:?}); bindings never change"
        ))
    }
}

async fn serve(cli: Cli, reducers: Reducers) -> Result<(), crate::Error> {
    let config = cli.to_config()?;
    let server = Server::open_with_reducers(config, reducers).await?;
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .map_err(|e| {
            crate::Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", cli.listen),
            ))
        })?;
    // Scripts and tests read this exact line to learn the port.
    println!(
        "logsync-server listening on http://{}",
        listener.local_addr()?
    );
    server.serve(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}
