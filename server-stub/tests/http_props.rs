//! Property tests of the HTTP/JSON input paths against a real server (auth
//! on, real SQLite file): arbitrary intent bodies, stream names in URLs
//! (percent-encoded bytes), query parameters (`after`, `limit`, `token`),
//! `Last-Event-ID` and `Authorization` headers. Whatever comes in, the
//! answer is never a 5xx and never a panic: a 200 of the documented shape,
//! or a 4xx with `{"error":{"code","message"}}` and a known code. A request
//! is refused with 401 exactly when its token is not valid.
//!
//! `PROPTEST_CASES=N` sets the cases per property (default 256).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use server_stub::auth::{now_secs, sign, Secret};
use sync_core::ErrorCode;

const SECRET: &[u8] = b"http-props-secret-0123456789abcdef";

struct Env {
    rt: tokio::runtime::Runtime,
    server: TestServer,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// One server for every case of every property in this file.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let server = rt.block_on(TestServer::start(server_stub::Config {
            jwt_secret: Some(Secret::new(SECRET).unwrap()),
            max_payload_bytes: 512,
            max_frame_bytes: 4096,
            ..config(dir.path())
        }));
        Env {
            rt,
            server,
            client: http(),
            _dir: dir,
        }
    })
}

/// A token that may read and write every stream starting with `p`.
fn valid_token() -> String {
    let claims = serde_json::json!({"sub": "props", "exp": now_secs() + 3600, "read": ["p*"], "write": ["p*"]});
    sign(&claims.to_string(), SECRET)
}

#[derive(Clone, Debug)]
enum Token {
    None,
    Valid,
    /// The valid token with one character changed.
    Tampered(usize, char),
    Junk(String),
}

impl Token {
    fn text(&self) -> Option<String> {
        match self {
            Token::None => None,
            Token::Valid => Some(valid_token()),
            Token::Tampered(i, c) => {
                let mut t: Vec<char> = valid_token().chars().collect();
                let i = i % t.len();
                // Changing a char into itself would keep the token valid.
                t[i] = if t[i] == *c { '!' } else { *c };
                Some(t.into_iter().collect())
            }
            Token::Junk(s) => Some(s.clone()),
        }
    }

    fn is_valid(&self) -> bool {
        matches!(self, Token::Valid)
    }
}

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![
        1 => Just(Token::None),
        4 => Just(Token::Valid),
        1 => (any::<usize>(), proptest::char::range('-', 'z')).prop_map(|(i, c)| Token::Tampered(i, c)),
        1 => "[A-Za-z0-9._~-]{0,60}".prop_map(Token::Junk),
    ]
}

/// Every byte of `raw` that is not unreserved, as %XX.
fn percent_encode(raw: &[u8]) -> String {
    raw.iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (*b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends `req` and checks the invariant every answer keeps; returns the
/// status and, for JSON answers, the body.
fn send(req: reqwest::RequestBuilder) -> (u16, Option<serde_json::Value>) {
    let e = env();
    e.rt.block_on(async {
        let r = within("an answer", req.send()).await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(status < 500, "status {status}");
        if ct.starts_with("text/event-stream") {
            // A live feed: the headers are the answer; drop the body.
            assert_eq!(status, 200);
            return (status, None);
        }
        let body = within("the body", r.text()).await.unwrap();
        assert_eq!(ct, "application/json", "{status} {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        if status != 200 {
            let code = v["error"]["code"]
                .as_str()
                .unwrap_or_else(|| panic!("no error code: {body}"));
            let parsed = ErrorCode::parse(code);
            assert!(
                parsed != ErrorCode::Unknown && parsed != ErrorCode::Internal,
                "code {code}: {body}"
            );
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            assert_eq!(
                server_stub::status_for(parsed).as_u16(),
                status,
                "{code} goes with another status: {body}"
            );
        }
        (status, Some(v))
    })
}

fn with_token(req: reqwest::RequestBuilder, t: &Token, in_query: bool) -> reqwest::RequestBuilder {
    match t.text() {
        Some(text) if in_query => req.query(&[("token", text)]),
        Some(text) => req.header("authorization", format!("Bearer {text}")),
        None => req,
    }
}

/// Intent bodies: arbitrary bytes, or JSON objects with odd fields.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let json_value = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "\"[^\"\\\\]{0,20}\"",
        Just("18446744073709551616".to_string()),
        Just("{\"type\":\"x\"}".to_string()),
        Just("[1,{\"a\":[]}]".to_string()),
        "\\PC{0,30}".prop_map(|s| serde_json::Value::String(s).to_string()),
    ];
    let client_id = prop_oneof!["[0-9a-f]{32}", "[0-9A-Fa-z]{0,40}", Just("é".repeat(16)),];
    let object = (
        proptest::option::of(client_id),
        proptest::option::of(json_value.clone()),
        proptest::option::of(json_value),
        proptest::option::of("[a-z_]{1,8}"),
    )
        .prop_map(|(id, seq, payload, extra)| {
            let mut fields = Vec::new();
            if let Some(id) = id {
                fields.push(format!("\"client_id\":\"{id}\""));
            }
            if let Some(seq) = seq {
                fields.push(format!("\"seq\":{seq}"));
            }
            if let Some(p) = payload {
                fields.push(format!("\"payload\":{p}"));
            }
            if let Some(k) = extra {
                fields.push(format!("\"{k}\":1"));
            }
            format!("{{{}}}", fields.join(",")).into_bytes()
        });
    // Well-formed intents (a few clients, small seqs): appended, duplicate,
    // a gap, or a payload over the limit.
    let intent = (0u8..4, 1u64..5, 0usize..700).prop_map(|(c, seq, n)| {
        format!(
            r#"{{"client_id":"{}","seq":{seq},"payload":"{}"}}"#,
            format!("{c:02x}").repeat(16),
            "x".repeat(n)
        )
        .into_bytes()
    });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        object,
        intent,
        // Over the frame limit (4 KiB).
        (4097usize..6000).prop_map(|n| vec![b' '; n]),
    ]
}

/// Stream names as URL bytes: any bytes, or names from the allowed
/// alphabet (some too long, half of them on the token's `p*` streams).
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..220),
        "[A-Za-z0-9._~:/-]{1,210}".prop_map(String::into_bytes),
        "p[A-Za-z0-9._~:/-]{0,40}".prop_map(String::into_bytes),
    ]
}

/// Header values: visible ASCII, spaces, tabs and bytes above 0x7f.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn intent_bodies(body in body(), t in token(), in_query in any::<bool>(), n in 0u32..1000) {
        let e = env();
        let url = e.server.url(&format!("/v1/streams/p{n}/intents"));
        let (status, v) = send(with_token(e.client.post(url).body(body), &t, in_query));
        prop_assert_eq!(status == 401, !t.is_valid(), "{} {:?}", status, v);
        if status == 200 {
            let v = v.unwrap();
            prop_assert!(v["offset"].as_u64().is_some_and(|o| o >= 1), "{}", v);
            prop_assert!(v["duplicate"].is_boolean());
        }
    }

    #[test]
    fn stream_names_in_urls(raw in stream_bytes(), t in token(), which in 0u8..3) {
        // URL clients resolve "." and ".." (also as %2E) as dot segments
        // before sending, so the naming rule reserves them.
        prop_assume!(raw != b"." && raw != b"..");
        prop_assert!(sync_core::StreamName::new(".").is_err());
        let e = env();
        let seg = percent_encode(&raw);
        let req = match which {
            0 => e.client.get(e.server.url(&format!("/v1/streams/{seg}"))),
            1 => e.client.get(e.server.url(&format!("/v1/streams/{seg}/events?after=0"))),
            _ => e.client.post(e.server.url(&format!("/v1/streams/{seg}/intents")))
                .body(format!(r#"{{"client_id":"{}","seq":1,"payload":1}}"#, "ab".repeat(16))),
        };
        let (status, v) = send(with_token(req, &t, false));
        prop_assert_eq!(status == 401, !t.is_valid(), "{} {:?}", status, v);
        let name = String::from_utf8(raw.clone()).ok();
        let valid_name = name.as_deref().is_some_and(|n| sync_core::StreamName::new(n).is_ok());
        if t.is_valid() && !valid_name {
            prop_assert_eq!(status, 400, "{:?}", v);
        }
        if t.is_valid() && valid_name {
            let name = name.unwrap();
            // Readable and writable exactly when it starts with "p".
            if name.starts_with('p') {
                prop_assert!(status == 200 || status == 409, "{} {:?}", status, v);
                if which == 0 {
                    let v = v.unwrap();
                    prop_assert_eq!(v["stream"].as_str(), Some(name.as_str()));
                }
            } else {
                prop_assert_eq!(status, 403, "{:?}", v);
            }
        }
    }

    #[test]
    fn query_parameters(
        pairs in proptest::collection::vec(
            (prop_oneof![Just("after"), Just("limit"), Just("token"), Just("x"), Just("")],
             "[-0-9a-zA-Z%+.=_]{0,24}"),
            0..5),
        sse in any::<bool>(),
    ) {
        let e = env();
        let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut req = e.client
            .get(e.server.url(&format!("/v1/streams/p1/events?{}", q.join("&"))))
            .bearer_auth(valid_token());
        if sse {
            req = req.header("accept", "text/event-stream");
        }
        let (status, v) = send(req);
        // The header token wins over ?token=: never 401 here.
        prop_assert!(status == 200 || status == 400, "{} {:?}", status, v);
    }

    #[test]
    fn last_event_id(value in header_bytes(), after in "[0-9a-z-]{0,6}") {
        let e = env();
        let Ok(header) = reqwest::header::HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let req = e.client
            .get(e.server.url(&format!("/v1/streams/p2/events?after={after}")))
            .header("accept", "text/event-stream")
            .header("last-event-id", header)
            .bearer_auth(valid_token());
        let (status, v) = send(req);
        prop_assert!(status == 200 || status == 400, "{} {:?}", status, v);
    }

    #[test]
    fn authorization_headers(value in header_bytes(), bearer in any::<bool>()) {
        let e = env();
        let mut value = value;
        if bearer {
            value.splice(0..0, b"Bearer ".iter().copied());
        }
        let Ok(header) = reqwest::header::HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let req = e.client
            .get(e.server.url("/v1/streams/p3"))
            .header("authorization", header);
        let (status, v) = send(req);
        prop_assert_eq!(status, 401, "{:?}", v);
    }
}
