//! One intent's way through the server, as the `logsync::intent` events
//! say it (server-stub/src/trace.rs) and as the counters count it: an
//! in-process server with a real SQLite file, real WebSocket clients, and
//! a tracing layer that records every event of that target.
//!
//! Its own test binary: the recording layer is the process's global
//! subscriber (the store's writer runs on its own thread).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{client_id, config, metric, within, Client, TestServer};
use sync_core::ServerMsg;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::Layer;

type Fields = BTreeMap<String, String>;

/// Records the fields of every event of the intent target.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Fields>>>);

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.to_string());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != server_stub::trace::TARGET {
            return;
        }
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

impl Recorder {
    /// The stages recorded for (client, seq) on `stream`, in order, each
    /// with its fields.
    fn way(&self, stream: &str, client: &str, seq: u64) -> Vec<Fields> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|f| {
                f.get("stream").map(String::as_str) == Some(stream)
                    && f.get("client").map(String::as_str) == Some(client)
                    && f.get("seq").map(String::as_str) == Some(&*seq.to_string())
            })
            .cloned()
            .collect()
    }

    fn stages(&self, stream: &str, client: &str, seq: u64) -> Vec<String> {
        self.way(stream, client, seq)
            .into_iter()
            .map(|f| f["stage"].clone())
            .collect()
    }
}

fn field<'a>(way: &'a [Fields], stage: &str, name: &str) -> &'a str {
    way.iter()
        .find(|f| f["stage"] == stage)
        .and_then(|f| f.get(name))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {name} at {stage}: {way:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intents_way_is_traced_by_client_and_seq_and_counted() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(
            recorder.clone().with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(server_stub::trace::TARGET, tracing::Level::TRACE),
            ),
        ),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (mut reader, _) = Client::hello(&server.ws_url(), client_id(2)).await;
    reader.subscribe("trace/s", 0).await;
    // The subscription's first page (empty) before the push, so the event
    // reaches this subscriber live.
    let ServerMsg::Events { .. } = within("first page", reader.recv()).await else {
        panic!("expected the first page")
    };

    let (mut writer, _) = Client::hello(&server.ws_url(), client_id(1)).await;
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000)).into_bytes();
    writer
        .push(
            "trace/s",
            &[(1, br#"{"type":"add"}"#.to_vec()), (2, deep.clone())],
        )
        .await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        if let m @ (ServerMsg::Ack { .. } | ServerMsg::Reject { .. }) =
            within("answers", writer.recv()).await
        {
            answers.push(m);
        }
    }
    assert!(matches!(answers[0], ServerMsg::Ack { .. }), "{answers:?}");
    assert!(
        matches!(answers[1], ServerMsg::Reject { .. }),
        "{answers:?}"
    );
    within("the event at the reader", reader.events_until(1)).await;
    // A resend of seq 1 is answered as a duplicate.
    writer
        .push("trace/s", &[(1, br#"{"type":"add"}"#.to_vec())])
        .await;
    let ServerMsg::Ack {
        duplicate: true, ..
    } = within("the resend's answer", writer.recv()).await
    else {
        panic!("expected a duplicate Ack")
    };

    let client = client_id(1).to_string();
    // Appended: every stage, in order (the decision is answered after the
    // commit), then the resend's receipt and decision.
    within("the delivered stage", async {
        while !recorder
            .stages("trace/s", &client, 1)
            .contains(&"delivered".to_string())
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut stages = recorder.stages("trace/s", &client, 1);
    // `delivered` (the reader's task) and the writer's `decided` race; the
    // rest is ordered by the server.
    let delivered = stages.iter().position(|s| s == "delivered").unwrap();
    stages.remove(delivered);
    assert_eq!(
        stages,
        [
            "received",
            "committed",
            "fanned_out",
            "decided",
            "received",
            "decided"
        ],
        "{:?}",
        recorder.way("trace/s", &client, 1)
    );
    let way = recorder.way("trace/s", &client, 1);
    assert_eq!(field(&way, "received", "bytes"), "14");
    assert_eq!(field(&way, "committed", "offset"), "1");
    assert_eq!(field(&way, "fanned_out", "subscribers"), "1");
    assert_eq!(field(&way, "decided", "outcome"), "appended");
    assert_eq!(field(&way, "decided", "offset"), "1");
    let decisions: Vec<_> = way.iter().filter(|f| f["stage"] == "decided").collect();
    assert_eq!(decisions[0]["duplicate"], "false");
    assert_eq!(decisions[1]["duplicate"], "true");
    // Rejected: received, then decided with the code; never committed.
    assert_eq!(
        recorder.stages("trace/s", &client, 2),
        ["received", "decided"]
    );
    let way = recorder.way("trace/s", &client, 2);
    assert_eq!(field(&way, "decided", "outcome"), "rejected");
    assert_eq!(field(&way, "decided", "code"), "INVALID_JSON");

    // The counters: three intents read, one appended, one rejected, one
    // resend; one event delivered to one subscriber.
    assert_eq!(metric(&server, "logsync_intents_received_total").await, 3.0);
    assert_eq!(metric(&server, "logsync_intents_appended_total").await, 1.0);
    assert_eq!(metric(&server, "logsync_intents_rejected_total").await, 1.0);
    assert_eq!(
        metric(&server, "logsync_intents_deduplicated_total").await,
        1.0
    );
    assert_eq!(metric(&server, "logsync_events_delivered_total").await, 1.0);
    server.stop().await;
}
