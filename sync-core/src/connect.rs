//! What a client says about a connection that failed, and how often.
//!
//! A browser's WebSocket tells a page almost nothing about a failed
//! connection (by design: pages must not scan ports), so an adapter asks
//! the address over plain HTTP once it is about to report, and hands the
//! outcome here as a [`Probe`]. [`connect_failure`] turns the URL, what the
//! transport said and the probe into one message that names the likely
//! fix; [`FailureReports`] decides which failures are reported at all, so
//! a long outage does not flood listeners.

use alloc::format;
use alloc::string::String;

/// The shortest time between two reports of failed connection attempts
/// (the first one of an outage is always reported).
pub const REPORT_EVERY_MS: f64 = 30_000.0;

/// What the address answered to a plain HTTP request, asked after a
/// WebSocket attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Not asked (or no way to ask).
    NotAsked,
    /// Nothing answered: the request failed as a network error (with what
    /// the platform said).
    NoAnswer(String),
    /// An HTTP server answered, with this status when it could be read
    /// (a cross-origin answer is opaque: `None`).
    Http(Option<u16>),
}

/// `url` split at its `://`: the scheme and the rest. (By bytes: a
/// substring search pulls the two-way searcher, about 1.5 KB of code, into
/// the browser's module for this alone.)
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let i = url.as_bytes().windows(3).position(|w| w == b"://")?;
    Some((url.get(..i)?, url.get(i + 3..)?))
}

/// The path of a `ws://` or `wss://` URL (`/` when it has none), without
/// its query.
pub fn url_path(url: &str) -> &str {
    let rest = split_scheme(url).map_or(url, |(_, r)| r);
    // Bytes, not `char` patterns, here and below: ASCII bytes sit at char
    // boundaries, and the browser's module then carries no `char` searcher
    // (BENCHMARKS.md, "Popped, not drained; bytes, not chars").
    let end = rest
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let rest = rest.get(..end).unwrap_or("");
    rest.bytes()
        .position(|b| b == b'/')
        .and_then(|i| rest.get(i..))
        .unwrap_or("/")
}

/// The WebSocket endpoint of `logsync-server`.
pub const WS_PATH: &str = "/v1/ws";

/// The message of a `CONNECT_FAILED` report: the URL, what the transport
/// said, what the probe found, and the likely fix. `suppressed` is the
/// number of failed attempts since the last report that were not reported.
pub fn connect_failure(url: &str, transport: &str, probe: &Probe, suppressed: u32) -> String {
    let path = url_path(url);
    let finding = match probe {
        Probe::NotAsked => String::new(),
        Probe::NoAnswer(why) => format!(
            "; nothing answered there over HTTP either ({why}): is logsync-server running and listening at that host and port?"
        ),
        Probe::Http(status) => {
            let status = status.map_or(String::new(), |s| format!(" ({s})"));
            let trimmed = path.len() - path.bytes().rev().take_while(|&b| b == b'/').count();
            if path.get(..trimmed) != Some(WS_PATH) {
                format!(
                    "; an HTTP server answered{status} instead of a WebSocket upgrade: the URL's path is \"{path}\", \
                     logsync-server's WebSocket endpoint is {WS_PATH} (e.g. {})",
                    with_path(url, WS_PATH)
                )
            } else {
                format!(
                    "; an HTTP server answered{status} but the WebSocket upgrade failed: a proxy in between that does \
                     not pass WebSockets on (with Vite's dev server: `ws: true` on the /v1 proxy), or a server that refused it"
                )
            }
        }
    };
    let more = if suppressed > 0 {
        format!(" ({suppressed} more failed attempts since the last report)")
    } else {
        String::new()
    };
    format!("cannot connect to {url}: {transport}{finding}{more}")
}

/// `url` with its path (and query) replaced by `path`.
fn with_path(url: &str, path: &str) -> String {
    let (scheme, rest) = split_scheme(url).unwrap_or(("ws", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{authority}{path}")
}

/// Which failed connection attempts are reported: the first of an outage,
/// then at most one per [`REPORT_EVERY_MS`]. A connection that succeeds
/// ends the outage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FailureReports {
    last_report_ms: Option<f64>,
    suppressed: u32,
}

impl FailureReports {
    /// A failed attempt at `now_ms`: `Some(n)` when it is to be reported
    /// (`n` earlier failures went unreported since the last report),
    /// `None` when it is to stay quiet.
    pub fn failed(&mut self, now_ms: f64) -> Option<u32> {
        match self.last_report_ms {
            Some(last) if now_ms - last < REPORT_EVERY_MS => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last_report_ms = Some(now_ms);
                Some(core::mem::take(&mut self.suppressed))
            }
        }
    }

    /// A connection succeeded: the next failure is the first of a new outage.
    pub fn connected(&mut self) {
        *self = FailureReports::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(url_path("ws://127.0.0.1:18431"), "/");
        assert_eq!(url_path("ws://h:1/"), "/");
        assert_eq!(url_path("wss://h/v1/ws?x=1"), "/v1/ws");
        assert_eq!(url_path("wss://h/v1/ws#top"), "/v1/ws");
        assert_eq!(url_path("ws://h:1?x=/a"), "/");
        assert_eq!(url_path("ws://h\u{e9}t\u{e9}/\u{e4}/b?x"), "/\u{e4}/b");
        assert_eq!(url_path("h:1/p/"), "/p/");
        assert_eq!(with_path("ws://h:1/app?x", WS_PATH), "ws://h:1/v1/ws");
    }

    #[test]
    fn messages_name_the_likely_fix() {
        let m = connect_failure(
            "ws://127.0.0.1:18431",
            "closed before it opened (code 1006)",
            &Probe::Http(Some(200)),
            0,
        );
        assert!(
            m.starts_with("cannot connect to ws://127.0.0.1:18431: closed before"),
            "{m}"
        );
        assert!(
            m.contains("/v1/ws") && m.contains("ws://127.0.0.1:18431/v1/ws"),
            "{m}"
        );
        assert!(m.contains("(200)"), "{m}");
        // The endpoint with trailing slashes is the endpoint: no path advice.
        let m = connect_failure("ws://h:1/v1/ws//", "x", &Probe::Http(None), 0);
        assert!(
            m.contains("ws: true") && !m.contains("the URL's path"),
            "{m}"
        );
        let m = connect_failure("ws://h:1/v1/w/", "x", &Probe::Http(None), 0);
        assert!(m.contains("the URL's path is \"/v1/w/\""), "{m}");
        let m = connect_failure("ws://h:1/v1/ws", "x", &Probe::Http(None), 3);
        assert!(
            m.contains("ws: true") && m.contains("3 more failed attempts"),
            "{m}"
        );
        let m = connect_failure(
            "ws://h:1/v1/ws",
            "x",
            &Probe::NoAnswer("TypeError: Failed to fetch".into()),
            0,
        );
        assert!(
            m.contains("nothing answered") && m.contains("Failed to fetch"),
            "{m}"
        );
        assert!(!m.contains("more failed"), "{m}");
    }

    #[test]
    fn reports_are_throttled_per_outage() {
        let mut r = FailureReports::default();
        assert_eq!(r.failed(0.0), Some(0), "the first failure is reported");
        assert_eq!(r.failed(500.0), None);
        assert_eq!(r.failed(29_999.0), None);
        assert_eq!(
            r.failed(30_000.0),
            Some(2),
            "then one per period, counting the quiet ones"
        );
        assert_eq!(r.failed(30_001.0), None);
        r.connected();
        assert_eq!(
            r.failed(30_002.0),
            Some(0),
            "a new outage is reported at once"
        );
    }
}
