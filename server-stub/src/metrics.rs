//! Counters, gauges and histograms, served at `GET /metrics` in the
//! Prometheus text format (0.0.4), or in OpenMetrics 1.0 text when the
//! scraper asks for it (`Accept: application/openmetrics-text`).
//!
//! Recording stays on plain atomics, a few nanoseconds with no lock and
//! no label lookup; the `prometheus-client` crate renders them (a
//! [`Collector`] over a snapshot of the atomics, taken at each scrape).
//! Its own metric types cost more where it matters: its histograms take a
//! lock per observation and its labelled families hash the labels per
//! increment (numbers: `examples/metrics_cost.rs`, README "Metrics").

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sync_core::ErrorCode;

/// The content type of the Prometheus text format (0.0.4).
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The content type of the OpenMetrics 1.0 text format.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

    /// Sum, count and per-bucket counts (not cumulative), the last one
    /// the `+Inf` bucket: what the encoder takes.
    fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| (*b, n.load(Relaxed)))
            .collect();
        let count = self.count.load(Relaxed);
        let bounded: u64 = buckets.iter().map(|(_, n)| n).sum();
        // Observations race with the scrape: the count is read after the
        // buckets, so it is rarely behind them, and then +Inf gets 0.
        buckets.push((f64::INFINITY, count.saturating_sub(bounded)));
        HistogramSnapshot {
            sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
            count: count.max(bounded),
            buckets,
        }
    }
}

#[derive(Debug)]
struct HistogramSnapshot {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
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
    /// Intents read from pushes (WebSocket and HTTP), before any decision.
    pub intents_received: AtomicU64,
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
    /// Snapshots sent to subscribers whose events were compacted away.
    pub snapshots_sent: AtomicU64,
    /// Of those, snapshots continued from where a cut connection left
    /// them (`Subscribe.resume`).
    pub snapshots_resumed: AtomicU64,
    /// Events handed to subscribers (WebSocket and SSE), one per event
    /// and subscriber.
    pub events_delivered: AtomicU64,
    /// Intents per commit (transaction).
    pub commit_batch_intents: Histogram,
    /// Time from transaction start to durable commit.
    pub commit_seconds: Histogram,
    /// Pushes a connection had to wait for because it was over its intent
    /// rate (it was slowed down, not refused).
    pub intents_paced: AtomicU64,
    /// Streams whose reducer states the store's writer keeps now.
    pub reducer_states: AtomicI64,
    /// Reducer states folded from the start of a stream's log (first use,
    /// or again after being dropped or rolled back).
    pub reducer_states_built: AtomicU64,
    /// Reducer states dropped as the least recently used beyond
    /// `--reducer-max-streams`.
    pub reducer_states_dropped: AtomicU64,
    /// View results evaluated (by the views' own engine, off the writer).
    pub views_evaluated: AtomicU64,
    /// View answers given from a result evaluated for another follower
    /// (or request) at the same offset.
    pub views_shared: AtomicU64,
    /// Live view follows (WebSocket watches and SSE view feeds).
    pub view_follows: AtomicI64,
    /// Errors sent to peers, by code (index into [`ErrorCode::ALL`]).
    errors: Vec<AtomicU64>,
    /// Requests refused by a limit, by limit (index into [`Limit::ALL`]).
    limit_trips: Vec<AtomicU64>,
    /// Requests refused by authentication, authorisation or the origin
    /// check, by code (index into [`DENIALS`]).
    denied: Vec<AtomicU64>,
}

/// Counts a live subscription (WebSocket or SSE) for as long as it exists.
pub(crate) struct SubscriptionGauge(std::sync::Arc<Metrics>);

impl SubscriptionGauge {
    pub(crate) fn new(metrics: std::sync::Arc<Metrics>) -> Self {
        metrics.subscriptions.fetch_add(1, Relaxed);
        SubscriptionGauge(metrics)
    }
}

impl Drop for SubscriptionGauge {
    fn drop(&mut self) {
        self.0.subscriptions.fetch_sub(1, Relaxed);
    }
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
            intents_received: AtomicU64::new(0),
            intents_appended: AtomicU64::new(0),
            intents_rejected: AtomicU64::new(0),
            intents_duplicate: AtomicU64::new(0),
            intents_gap: AtomicU64::new(0),
            fanout_queue_bytes: AtomicI64::new(0),
            fanout_shared_frames: AtomicU64::new(0),
            fanout_coalesced_frames: AtomicU64::new(0),
            catch_up_reads: AtomicU64::new(0),
            snapshots_sent: AtomicU64::new(0),
            snapshots_resumed: AtomicU64::new(0),
            events_delivered: AtomicU64::new(0),
            commit_batch_intents: Histogram::new(BATCH_BOUNDS),
            commit_seconds: Histogram::new(SECONDS_BOUNDS),
            intents_paced: AtomicU64::new(0),
            reducer_states: AtomicI64::new(0),
            reducer_states_built: AtomicU64::new(0),
            reducer_states_dropped: AtomicU64::new(0),
            views_evaluated: AtomicU64::new(0),
            views_shared: AtomicU64::new(0),
            view_follows: AtomicI64::new(0),
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

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        self.encode(false)
    }

    /// The OpenMetrics 1.0 text exposition (ends with `# EOF`).
    pub fn render_openmetrics(&self) -> String {
        self.encode(true)
    }

    /// The exposition a scraper's `Accept` header asks for, and its
    /// content type: OpenMetrics when it accepts
    /// `application/openmetrics-text` (as Prometheus does), else the
    /// Prometheus text format.
    pub fn exposition(&self, accept: Option<&str>) -> (&'static str, String) {
        if accept.is_some_and(accepts_openmetrics) {
            (OPENMETRICS_TEXT, self.render_openmetrics())
        } else {
            (PROMETHEUS_TEXT, self.render())
        }
    }

    fn encode(&self, openmetrics: bool) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.snapshot(openmetrics)));
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail, and every name is valid.
        let _ = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        };
        out
    }

    /// Every value, read once, in the order they are rendered.
    fn snapshot(&self, openmetrics: bool) -> Snapshot {
        use Family::*;
        let families = vec![
            Gauge(
                "logsync_connections",
                "Open WebSocket connections.",
                self.connections.load(Relaxed),
            ),
            Gauge(
                "logsync_tcp_connections",
                "Open TCP connections of any kind (HTTP, SSE, WebSocket, not yet spoken).",
                self.tcp_connections.load(Relaxed),
            ),
            Counter(
                "logsync_http_5xx",
                "HTTP responses with a 5xx status (each is logged).",
                self.http_5xx.load(Relaxed),
            ),
            // OpenMetrics would name this counter's family
            // `logsync_connections`, the gauge's name: it is untyped there.
            Untyped(
                "logsync_connections_total",
                "WebSocket connections accepted.",
                self.connections_total.load(Relaxed),
            ),
            Gauge(
                "logsync_subscriptions",
                "Live subscriptions (WebSocket and SSE).",
                self.subscriptions.load(Relaxed),
            ),
            Counter(
                "logsync_intents_received",
                "Intents read from pushes (WebSocket and HTTP), before any decision.",
                self.intents_received.load(Relaxed),
            ),
            Counter(
                "logsync_intents_appended",
                "Intents appended to the log.",
                self.intents_appended.load(Relaxed),
            ),
            Counter(
                "logsync_intents_rejected",
                "Intents rejected (the rejection is stored).",
                self.intents_rejected.load(Relaxed),
            ),
            Counter(
                "logsync_intents_deduplicated",
                "Resent intents answered with their original outcome.",
                self.intents_duplicate.load(Relaxed),
            ),
            Counter(
                "logsync_intents_gap",
                "Pushes refused because a seq was beyond the next one.",
                self.intents_gap.load(Relaxed),
            ),
            Gauge(
                "logsync_fanout_queue_bytes",
                "Bytes of frames waiting in connections' outgoing queues.",
                self.fanout_queue_bytes.load(Relaxed),
            ),
            Counter(
                "logsync_fanout_shared_frames",
                "Events frames sent as shared bytes, encoded once for every subscriber.",
                self.fanout_shared_frames.load(Relaxed),
            ),
            Counter(
                "logsync_fanout_coalesced_frames",
                "Events frames that joined several commits for a subscriber behind the feed.",
                self.fanout_coalesced_frames.load(Relaxed),
            ),
            Counter(
                "logsync_catch_up_reads",
                "Log reads by subscribers behind the in-memory feed.",
                self.catch_up_reads.load(Relaxed),
            ),
            Counter(
                "logsync_snapshots_sent",
                "Snapshots sent to subscribers whose events were compacted away.",
                self.snapshots_sent.load(Relaxed),
            ),
            Counter(
                "logsync_snapshots_resumed",
                "Snapshots sent from where a cut connection left them.",
                self.snapshots_resumed.load(Relaxed),
            ),
            Counter(
                "logsync_events_delivered",
                "Events handed to subscribers (WebSocket and SSE), one per event and subscriber.",
                self.events_delivered.load(Relaxed),
            ),
            Histogram(
                "logsync_commit_batch_intents",
                "Intents per durable commit.",
                self.commit_batch_intents.snapshot(),
            ),
            Histogram(
                "logsync_commit_seconds",
                "Time from transaction start to durable commit.",
                self.commit_seconds.snapshot(),
            ),
            Counter(
                "logsync_intents_paced",
                "Pushes delayed because their connection was over its intent rate.",
                self.intents_paced.load(Relaxed),
            ),
            Gauge(
                "logsync_reducer_states",
                "Streams whose reducer states the store's writer keeps in memory.",
                self.reducer_states.load(Relaxed),
            ),
            Counter(
                "logsync_reducer_states_built",
                "Reducer states folded from the start of a stream's log (first use, or after a drop).",
                self.reducer_states_built.load(Relaxed),
            ),
            Counter(
                "logsync_reducer_states_dropped",
                "Reducer states dropped as least recently used beyond --reducer-max-streams.",
                self.reducer_states_dropped.load(Relaxed),
            ),
            Counter(
                "logsync_views_evaluated",
                "View results evaluated by the views' engine (off the writer).",
                self.views_evaluated.load(Relaxed),
            ),
            Counter(
                "logsync_views_shared",
                "View answers given from a result already evaluated at the same offset.",
                self.views_shared.load(Relaxed),
            ),
            Gauge(
                "logsync_view_follows",
                "Live view follows (WebSocket watches and SSE view feeds).",
                self.view_follows.load(Relaxed),
            ),
            Labelled(
                "logsync_limit_trips",
                "Requests and connections refused by a limit, by limit.",
                "limit",
                Limit::ALL
                    .iter()
                    .zip(&self.limit_trips)
                    .map(|(l, n)| (l.as_str(), n.load(Relaxed)))
                    .collect(),
            ),
            Labelled(
                "logsync_denied",
                "Requests refused by authentication, permissions or the origin check, by code.",
                "code",
                DENIALS
                    .iter()
                    .zip(&self.denied)
                    .map(|(c, n)| (c.as_str(), n.load(Relaxed)))
                    .collect(),
            ),
            Labelled(
                "logsync_errors",
                "Errors that ended WebSocket connections, by code.",
                "code",
                ErrorCode::ALL
                    .iter()
                    .zip(&self.errors)
                    .map(|(c, n)| (c.as_str(), n.load(Relaxed)))
                    // Only codes that happened: there are many.
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            ),
        ];
        Snapshot {
            families,
            openmetrics,
        }
    }
}

/// Does an `Accept` header take OpenMetrics text (with a q above 0)?
fn accepts_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut params = range.split(';').map(str::trim);
        params
            .next()
            .is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"))
            && params.all(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_none_or(|q| q > 0.0)
            })
    })
}

/// One metric family's values, read at a scrape. Counter names are given
/// without `_total`: the encoders add it.
#[derive(Debug)]
enum Family {
    Gauge(&'static str, &'static str, i64),
    Counter(&'static str, &'static str, u64),
    /// A counter in the Prometheus format, `unknown` in OpenMetrics (full name).
    Untyped(&'static str, &'static str, u64),
    Histogram(&'static str, &'static str, HistogramSnapshot),
    /// A counter with one label: (label value, count) pairs.
    Labelled(
        &'static str,
        &'static str,
        &'static str,
        Vec<(&'static str, u64)>,
    ),
}

/// The values of one scrape, encoded by `prometheus-client`.
#[derive(Debug)]
struct Snapshot {
    families: Vec<Family>,
    openmetrics: bool,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            match family {
                Family::Gauge(name, help, v) => {
                    let gauge = ConstGauge::new(*v);
                    gauge.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        gauge.metric_type(),
                    )?)?;
                }
                Family::Counter(name, help, v) => {
                    let counter = ConstCounter::new(*v);
                    counter.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        counter.metric_type(),
                    )?)?;
                }
                Family::Untyped(name, help, v) => {
                    if self.openmetrics {
                        encoder
                            .encode_descriptor(name, help, None, MetricType::Unknown)?
                            .encode_gauge(v)?;
                    } else {
                        let base = name.strip_suffix("_total").unwrap_or(name);
                        let counter = ConstCounter::new(*v);
                        counter.encode(encoder.encode_descriptor(
                            base,
                            help,
                            None,
                            counter.metric_type(),
                        )?)?;
                    }
                }
                Family::Histogram(name, help, h) => {
                    encoder
                        .encode_descriptor(name, help, None, MetricType::Histogram)?
                        .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
                }
                Family::Labelled(name, help, label, values) => {
                    let mut metric =
                        encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                    for (value, n) in values {
                        let labels = [(*label, *value)];
                        ConstCounter::new(*n).encode(metric.encode_family(&labels)?)?;
                    }
                }
            }
        }
        Ok(())
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

    #[test]
    fn openmetrics_when_the_scraper_asks_for_it() {
        let m = Metrics::default();
        m.commit(3, Duration::from_millis(2));
        m.connections_total.fetch_add(2, Relaxed);
        m.refused(ErrorCode::Unauthorized);
        // What Prometheus sends, and plain requests.
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
                          application/openmetrics-text;version=0.0.1;q=0.4,\
                          text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let (content_type, text) = m.exposition(Some(prometheus));
        assert_eq!(content_type, OPENMETRICS_TEXT);
        assert!(text.ends_with("# EOF\n"), "{text}");
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("application/openmetrics-text;q=0"),
            Some("application/openmetrics-textual"),
        ] {
            let (content_type, text) = m.exposition(accept);
            assert_eq!(content_type, PROMETHEUS_TEXT, "{accept:?}");
            assert!(
                text.starts_with("# HELP logsync_connections "),
                "{accept:?}"
            );
            assert!(!text.contains("# EOF"), "{accept:?}");
        }
        let (_, text) = m.exposition(Some(prometheus));
        // Samples keep their names; counters' families drop `_total`.
        assert!(text.contains("\n# TYPE logsync_denied counter\n"), "{text}");
        assert!(text.contains("\nlogsync_denied_total{code=\"UNAUTHORIZED\"} 1\n"));
        assert!(text.contains("\nlogsync_commit_batch_intents_bucket{le=\"4.0\"} 1\n"));
        assert!(text.contains("\nlogsync_commit_seconds_count 1\n"));
        assert!(text.contains("\nlogsync_connections_total 2\n"), "{text}");
        // Every family name once (OpenMetrics requires it): the accepted
        // connections counter is `unknown` there, beside the gauge.
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        let all = families.len();
        families.sort_unstable();
        families.dedup();
        assert_eq!(families.len(), all, "{text}");
        assert!(text.contains("# TYPE logsync_connections_total unknown\n"));
        // The Prometheus text format types the same counter as a counter.
        assert!(m
            .render()
            .contains("# TYPE logsync_connections_total counter\nlogsync_connections_total 2\n"));
    }

    #[test]
    fn a_histogram_snapshot_counts_values_over_the_last_bound_in_inf() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.5, 3.0, 100.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.buckets, vec![(1.0, 1), (2.0, 2), (f64::INFINITY, 2)]);
        assert!((s.sum - 106.5).abs() < 1e-9, "{}", s.sum);
    }
}
