//! The accept loop: every TCP connection the server takes, with the
//! deadlines and the cap that keep slow or idle peers from holding the
//! server's sockets.
//!
//! `axum::serve` has no header or body deadline and no limit on accepted
//! connections, so the server runs its own loop over hyper's HTTP/1
//! connection builder (the same crates axum uses underneath):
//!
//! - **Header deadline** (`header_read_timeout`): hyper's own timer. A
//!   request's head must arrive whole within it, however slowly it drips;
//!   it also runs while a keep-alive connection waits for its next
//!   request, so it is the keep-alive idle timeout too. Hyper then closes
//!   the connection.
//! - **Cap on accepted connections** (`max_tcp_connections`): a semaphore
//!   taken at accept and held by the socket itself (see [`Held`]), so a
//!   connection upgraded to a WebSocket keeps its place until the socket
//!   closes. At the cap a new connection gets a fixed `503` written
//!   straight to the socket, without parsing anything, and is closed.
//! - The body deadline is the request handler's (see `http.rs`), and the
//!   `Hello` deadline the WebSocket's (see `ws.rs`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service as _;

use crate::metrics::{Limit, Metrics};

/// What a connection refused at the cap reads: a complete HTTP response
/// with the usual JSON error body, written without reading the request.
const SHED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 5\r\n\
connection: close\r\n\
content-length: 108\r\n\
\r\n\
{\"error\":{\"code\":\"TOO_MANY_CONNECTIONS\",\"message\":\"the server holds its limit of connections; retry later\"}}";

/// Refused connections being answered at once (each for at most
/// [`SHED_LINGER`]); past it a refused connection is closed unanswered.
const SHEDDING: usize = 64;
/// How long a refused connection is kept to let its 503 reach the peer
/// (closing a socket with unread input resets it, which can destroy the
/// answer before the peer reads it).
const SHED_LINGER: Duration = Duration::from_millis(500);

/// The soft limit on open files of this process, when it can be read
/// (Linux: `/proc/self/limits`).
pub(crate) fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `listener` with `app` until `stop` is cancelled; then stops
/// accepting, asks every HTTP connection to finish its request and close,
/// and returns once they have (or after `grace`).
/// Open connections per client address, for the per-address cap.
#[derive(Default)]
struct PerAddress(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection's count under its address, returned on drop.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: std::net::IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.table.0.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

impl PerAddress {
    /// A place for one more connection from `ip`, when it has fewer than `max`.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<AddressSlot> {
        let mut m = self.0.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    max_tcp: usize,
    max_per_address: usize,
    header_read_timeout: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    grace: Duration,
) {
    let places = Arc::new(Semaphore::new(max_tcp));
    let shedding = Arc::new(Semaphore::new(SHEDDING));
    let per_address = Arc::new(PerAddress::default());
    let connections = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    on_accept_error(e, &stop).await;
                    continue;
                }
            },
        };
        let address = if max_per_address > 0 {
            match per_address.take(peer.ip(), max_per_address) {
                Some(slot) => Some(slot),
                None => {
                    metrics.trip(Limit::AddressConnections);
                    shed(tcp, &shedding);
                    continue;
                }
            }
        } else {
            None
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            metrics.trip(Limit::TcpConnections);
            shed(tcp, &shedding);
            continue;
        };
        // Acks and events are small frames that must not wait for Nagle.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        metrics.tcp_connections.fetch_add(1, Relaxed);
        let io = TokioIo::new(Held {
            tcp,
            _place: place,
            _address: address,
            metrics: metrics.clone(),
        });
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(req.map(axum::body::Body::new))
        });
        let conn = builder.serve_connection(io, service).with_upgrades();
        let stop = stop.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    metrics.trip(Limit::HeaderReadTimeout);
                    tracing::debug!(%peer, "request head not received in time; connection closed");
                } else {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
        });
    }
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections still open after the shutdown timeout"
        );
    }
}

/// Accept failed: a peer that gave up is nothing; running out of file
/// descriptors (or another resource) is logged and waited out briefly.
async fn on_accept_error(e: io::Error, stop: &CancellationToken) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; waiting 100 ms (out of file descriptors?)");
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        _ = stop.cancelled() => {}
    }
}

/// Answers a connection over the cap with the fixed 503 and closes it.
fn shed(tcp: TcpStream, shedding: &Arc<Semaphore>) {
    let Ok(slot) = shedding.clone().try_acquire_owned() else {
        // Too many being answered already: close without a word.
        let _ = tcp.try_write(SHED_RESPONSE);
        return;
    };
    tokio::spawn(async move {
        let _slot = slot;
        let mut tcp = tcp;
        let _ = tokio::time::timeout(SHED_LINGER, async {
            tcp.write_all(SHED_RESPONSE).await?;
            tcp.shutdown().await?;
            // Read (and drop) what the peer sent, so the close does not
            // reset the connection before it has read the answer.
            let mut sink = [0u8; 1024];
            let mut total = 0;
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await?;
                total += n;
                if n == 0 || total > 16 << 10 {
                    return Ok::<(), io::Error>(());
                }
            }
        })
        .await;
    });
}

/// A socket holding its place under the connection cap: the place is
/// returned when the socket is dropped, also after an upgrade to a
/// WebSocket (hyper moves the socket itself into the upgraded stream).
struct Held {
    tcp: TcpStream,
    _place: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
    metrics: Arc<Metrics>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.metrics.tcp_connections.fetch_sub(1, Relaxed);
    }
}

impl AsyncRead for Held {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// The peer address of a request served by [`serve`] (`None` for requests
/// that did not come through it).
pub(crate) struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| *a),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shed_response_is_well_formed() {
        let text = std::str::from_utf8(SHED_RESPONSE).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .expect("length");
        assert_eq!(length, body.len());
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "TOO_MANY_CONNECTIONS");
    }
}
