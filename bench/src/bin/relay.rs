//! `logsync-relay`: the fan-out baseline. A minimal, non-durable WebSocket
//! broadcast relay: every binary frame a connection sends is forwarded,
//! unchanged, to every other connection. No storage, no ordering across
//! senders, no protocol: what any fan-out server has to do at the least,
//! so its deliveries per second are the upper bound on this machine.
//!
//! It is not a toy where that matters for the comparison: each connection
//! has a bounded queue (a full queue holds the sender back through TCP, so
//! nothing is dropped and memory stays bounded), and its writer sends
//! everything queued before one flush.
//!
//! ```text
//! logsync-relay --listen 127.0.0.1:0
//! logsync-relay listening on ws://127.0.0.1:PORT
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Frames that may wait for one connection.
const QUEUE: usize = 1024;

/// Every open connection's queue, replaced (not edited) on join and leave
/// so a broadcast only clones one `Arc`.
type Peers = Arc<Mutex<Arc<Vec<(u64, mpsc::Sender<Message>)>>>>;

fn main() -> std::process::ExitCode {
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            _ => {
                eprintln!("usage: logsync-relay [--listen 127.0.0.1:0]");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("logsync-relay: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(&listen)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logsync-relay: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("bind {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("logsync-relay listening on ws://{addr}");
    let peers: Peers = Arc::new(Mutex::new(Arc::new(Vec::new())));
    let next_id = AtomicU64::new(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                let id = next_id.fetch_add(1, Relaxed);
                tokio::spawn(connection(socket, id, peers.clone()));
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn edit(peers: &Peers, f: impl FnOnce(&mut Vec<(u64, mpsc::Sender<Message>)>)) {
    if let Ok(mut p) = peers.lock() {
        let mut next = Vec::clone(&p);
        f(&mut next);
        *p = Arc::new(next);
    }
}

async fn connection(socket: TcpStream, id: u64, peers: Peers) {
    let config = WebSocketConfig::default().read_buffer_size(16 << 10);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(socket, Some(config)).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    edit(&peers, |p| p.push((id, tx)));
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        if let Message::Binary(bytes) = msg {
            let targets = peers.lock().map(|p| Arc::clone(&p)).ok();
            for (peer, queue) in targets.iter().flat_map(|t| t.iter()) {
                if *peer != id {
                    // A full queue waits: back-pressure, never a drop.
                    let _ = queue.send(Message::Binary(bytes.clone())).await;
                }
            }
        }
    }
    edit(&peers, |p| p.retain(|(peer, _)| *peer != id));
    writer.abort();
}
