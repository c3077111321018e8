//! Counters, gauges and histograms, rendered in the Prometheus text format
//! at `GET /metrics`. Plain atomics: recording is a few nanoseconds and
//! needs no registry.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use sync_core::ErrorCode;

/// A histogram with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths, so it can live in an integer atomic.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

const BATCH_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];
const SECONDS_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: AtomicI64,
    /// Open TCP connections of any kind.
    pub tcp_connections: AtomicI64,
    /// Responses with a 5xx status.
    pub http_5xx: AtomicU64,
    /// WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// Live subscriptions (WebSocket and SSE).
    pub subscriptions: AtomicI64,
    /// Intents appended to the log.
    pub intents_appended: AtomicU64,
    /// Intents rejected (the rejection is stored).
    pub intents_rejected: AtomicU64,
    /// Resent intents answered with their original outcome.
    pub intents_duplicate: AtomicU64,
    /// Pushes refused with a seq gap.
    pub intents_gap: AtomicU64,
    /// Bytes of frames waiting in connections' outgoing queues.
    pub fanout_queue_bytes: AtomicI64,
    /// `Events` frames sent that were shared with other subscribers unchanged.
    pub fanout_shared_frames: AtomicU64,
    /// `Events` frames that joined several commits for a subscriber that
    /// was behind the feed.
    pub fanout_coalesced_frames: AtomicU64,
    /// Reads of the log by subscribers that were behind the in-memory feed.
    pub catch_up_reads: AtomicU64,
    /// Intents per commit (transaction).
    pub commit_batch_intents: Histogram,
    /// Time from transaction start to durable commit.
    pub commit_seconds: Histogram,
    /// Pushes a connection had to wait for because it was over its intent
    /// rate (it was slowed down, not refused).
    pub intents_paced: AtomicU64,
    /// Errors sent to peers, by code (index into [`ErrorCode::ALL`]).
    errors: Vec<AtomicU64>,
    /// Requests refused by a limit, by limit (index into [`Limit::ALL`]).
    limit_trips: Vec<AtomicU64>,
    /// Requests refused by authentication, authorisation or the origin
    /// check, by code (index into [`DENIALS`]).
    denied: Vec<AtomicU64>,
}

/// The limits that refuse requests, as `logsync_limit_trips_total{limit}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A frame or HTTP body over `max_frame_bytes` (`FRAME_TOO_LARGE`).
    FrameBytes,
    /// A connection far over its intent rate (`RATE_LIMITED`).
    IntentRate,
    /// Too many subscriptions on one connection (`TOO_MANY_SUBSCRIPTIONS`).
    Subscriptions,
    /// Answers waited too long for a client that reads nothing
    /// (`SLOW_CONSUMER`): the connection's pending bytes stayed at their cap.
    PendingBytes,
    /// Too many WebSocket connections and SSE feeds (`TOO_MANY_CONNECTIONS`).
    Connections,
    /// Too many TCP connections of any kind: answered `503` at accept.
    TcpConnections,
    /// Too many TCP connections from one client address: `503` at accept.
    AddressConnections,
    /// A WebSocket sent no `Hello` within `hello_timeout` (`IDLE_TIMEOUT`).
    HelloTimeout,
    /// A request's head did not arrive within `header_read_timeout`, or a
    /// keep-alive connection stayed idle that long (closed).
    HeaderReadTimeout,
    /// A request body did not arrive within `body_read_timeout` (`408`).
    BodyReadTimeout,
    /// One subject's WebSockets and SSE feeds (`TOO_MANY_CONNECTIONS`).
    SubjectConnections,
    /// One subject's intents per second over every transport (`RATE_LIMITED`).
    SubjectIntentRate,
    /// One subject's payload bytes per second over every transport (`RATE_LIMITED`).
    SubjectBytes,
    /// Streams one subject may create per hour (`RATE_LIMITED`).
    SubjectNewStreams,
}

impl Limit {
    /// Every limit, in the order they are rendered.
    pub const ALL: [Limit; 14] = [
        Limit::FrameBytes,
        Limit::IntentRate,
        Limit::Subscriptions,
        Limit::PendingBytes,
        Limit::Connections,
        Limit::TcpConnections,
        Limit::AddressConnections,
        Limit::HelloTimeout,
        Limit::HeaderReadTimeout,
        Limit::BodyReadTimeout,
        Limit::SubjectConnections,
        Limit::SubjectIntentRate,
        Limit::SubjectBytes,
        Limit::SubjectNewStreams,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::FrameBytes => "frame_bytes",
            Limit::IntentRate => "intent_rate",
            Limit::Subscriptions => "subscriptions",
            Limit::PendingBytes => "pending_bytes",
            Limit::Connections => "connections",
            Limit::TcpConnections => "tcp_connections",
            Limit::AddressConnections => "address_connections",
            Limit::HelloTimeout => "hello_timeout",
            Limit::HeaderReadTimeout => "header_read_timeout",
            Limit::BodyReadTimeout => "body_read_timeout",
            Limit::SubjectConnections => "subject_connections",
            Limit::SubjectIntentRate => "subject_intent_rate",
            Limit::SubjectBytes => "subject_bytes",
            Limit::SubjectNewStreams => "subject_new_streams",
        }
    }

    /// The limit an error code reports, if it is a limit's.
    pub fn of(code: ErrorCode) -> Option<Limit> {
        match code {
            ErrorCode::FrameTooLarge => Some(Limit::FrameBytes),
            ErrorCode::RateLimited => Some(Limit::IntentRate),
            ErrorCode::TooManySubscriptions => Some(Limit::Subscriptions),
            ErrorCode::SlowConsumer => Some(Limit::PendingBytes),
            ErrorCode::TooManyConnections => Some(Limit::Connections),
            _ => None,
        }
    }
}

/// The codes counted in `logsync_denied_total{code}`.
pub const DENIALS: [ErrorCode; 3] = [
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::OriginForbidden,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections: AtomicI64::new(0),
            tcp_connections: AtomicI64::new(0),
            http_5xx: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            subscriptions: AtomicI64::new(0),
            intents_appended: AtomicU64::new(0),
            intents_rejected: AtomicU64::new(0),
            intents_duplicate: AtomicU64::new(0),
            intents_gap: AtomicU64::new(0),
            fanout_queue_bytes: AtomicI64::new(0),
            fanout_shared_frames: AtomicU64::new(0),
            fanout_coalesced_frames: AtomicU64::new(0),
            catch_up_reads: AtomicU64::new(0),
            commit_batch_intents: Histogram::new(BATCH_BOUNDS),
            commit_seconds: Histogram::new(SECONDS_BOUNDS),
            intents_paced: AtomicU64::new(0),
            errors: ErrorCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            limit_trips: Limit::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            denied: DENIALS.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Metrics {
    /// Counts an error sent to a peer.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts one trip of `limit` (for limits whose code is shared, e.g.
    /// `RATE_LIMITED` of a connection's and of a subject's rate).
    pub fn trip(&self, limit: Limit) {
        if let Some(i) = Limit::ALL.iter().position(|l| *l == limit) {
            self.limit_trips[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a request refused with `code` on any transport, when the
    /// code is a limit's or a denial's (other codes are not counted here).
    pub fn refused(&self, code: ErrorCode) {
        if let Some(limit) = Limit::of(code) {
            if let Some(i) = Limit::ALL.iter().position(|l| *l == limit) {
                self.limit_trips[i].fetch_add(1, Relaxed);
            }
        }
        if let Some(i) = DENIALS.iter().position(|c| *c == code) {
            self.denied[i].fetch_add(1, Relaxed);
        }
    }

    /// Records one commit.
    pub fn commit(&self, intents: usize, took: Duration) {
        self.commit_batch_intents.observe(intents as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "logsync_connections",
            "Open WebSocket connections.",
            self.connections.load(Relaxed),
        );
        gauge(
            &mut out,
            "logsync_tcp_connections",
            "Open TCP connections of any kind (HTTP, SSE, WebSocket, not yet spoken).",
            self.tcp_connections.load(Relaxed),
        );
        counter(
            &mut out,
            "logsync_http_5xx_total",
            "HTTP responses with a 5xx status (each is logged).",
            self.http_5xx.load(Relaxed),
        );
        counter(
            &mut out,
            "logsync_connections_total",
            "WebSocket connections accepted.",
            self.connections_total.load(Relaxed),
        );
        gauge(
            &mut out,
            "logsync_subscriptions",
            "Live subscriptions (WebSocket and SSE).",
            self.subscriptions.load(Relaxed),
        );
        counter(
            &mut out,
            "logsync_intents_appended_total",
            "Intents appended to the log.",
            self.intents_appended.load(Relaxed),
        );
        counter(
            &mut out,
            "logsync_intents_rejected_total",
            "Intents rejected (the rejection is stored).",
            self.intents_rejected.load(Relaxed),
        );
        counter(
            &mut out,
            "logsync_intents_deduplicated_total",
            "Resent intents answered with their original outcome.",
            self.intents_duplicate.load(Relaxed),
        );
        counter(
            &mut out,
            "logsync_intents_gap_total",
            "Pushes refused because a seq was beyond the next one.",
            self.intents_gap.load(Relaxed),
        );
        gauge(
            &mut out,
            "logsync_fanout_queue_bytes",
            "Bytes of frames waiting in connections' outgoing queues.",
            self.fanout_queue_bytes.load(Relaxed),
        );
        counter(
            &mut out,
            "logsync_fanout_shared_frames_total",
            "Events frames sent as shared bytes, encoded once for every subscriber.",
            self.fanout_shared_frames.load(Relaxed),
        );
        counter(
            &mut out,
            "logsync_fanout_coalesced_frames_total",
            "Events frames that joined several commits for a subscriber behind the feed.",
            self.fanout_coalesced_frames.load(Relaxed),
        );
        counter(
            &mut out,
            "logsync_catch_up_reads_total",
            "Log reads by subscribers behind the in-memory feed.",
            self.catch_up_reads.load(Relaxed),
        );
        self.commit_batch_intents.render(
            &mut out,
            "logsync_commit_batch_intents",
            "Intents per durable commit.",
        );
        self.commit_seconds.render(
            &mut out,
            "logsync_commit_seconds",
            "Time from transaction start to durable commit.",
        );
        counter(
            &mut out,
            "logsync_intents_paced_total",
            "Pushes delayed because their connection was over its intent rate.",
            self.intents_paced.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP logsync_limit_trips_total Requests and connections refused by a limit, by limit.\n# TYPE logsync_limit_trips_total counter"
        );
        for (limit, n) in Limit::ALL.iter().zip(&self.limit_trips) {
            let _ = writeln!(
                out,
                "logsync_limit_trips_total{{limit=\"{}\"}} {}",
                limit.as_str(),
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP logsync_denied_total Requests refused by authentication, permissions or the origin check, by code.\n# TYPE logsync_denied_total counter"
        );
        for (code, n) in DENIALS.iter().zip(&self.denied) {
            let _ = writeln!(
                out,
                "logsync_denied_total{{code=\"{code}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP logsync_errors_total Errors that ended WebSocket connections, by code.\n# TYPE logsync_errors_total counter"
        );
        for (code, n) in ErrorCode::ALL.iter().zip(&self.errors) {
            let n = n.load(Relaxed);
            if n > 0 {
                let _ = writeln!(out, "logsync_errors_total{{code=\"{code}\"}} {n}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.commit(3, Duration::from_millis(2));
        m.error(ErrorCode::SeqGap);
        let text = m.render();
        assert!(text.contains("logsync_commit_batch_intents_bucket{le=\"4\"} 1"));
        assert!(text.contains("logsync_commit_batch_intents_bucket{le=\"2\"} 0"));
        assert!(text.contains("logsync_commit_seconds_count 1"));
        assert!(text.contains("logsync_errors_total{code=\"SEQ_GAP\"} 1"));
        m.refused(ErrorCode::RateLimited);
        m.refused(ErrorCode::Forbidden);
        m.refused(ErrorCode::SeqGap);
        let text = m.render();
        assert!(text.contains("logsync_limit_trips_total{limit=\"intent_rate\"} 1"));
        assert!(text.contains("logsync_limit_trips_total{limit=\"connections\"} 0"));
        assert!(text.contains("logsync_denied_total{code=\"FORBIDDEN\"} 1"));
        assert!(text.contains("logsync_denied_total{code=\"UNAUTHORIZED\"} 0"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
