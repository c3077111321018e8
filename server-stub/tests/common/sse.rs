//! A Server-Sent Events reader for tests: opens a URL with
//! `Accept: text/event-stream` and yields its events with a deadline.
#![allow(dead_code, clippy::unwrap_used)]

use super::within;

/// A Server-Sent Events reader over a streaming HTTP response.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

/// One SSE event: its `event:`, `id:` and `data:` fields.
#[derive(Debug)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: serde_json::Value,
}

impl SseReader {
    pub async fn open(url: &str) -> SseReader {
        let r = reqwest::Client::new()
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        SseReader {
            body: Box::pin(r.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped), within the deadline.
    pub async fn next(&mut self) -> SseEvent {
        use futures_util::StreamExt as _;
        within("an SSE event", async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut event, mut id, mut data) =
                        (String::new(), String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().into();
                        } else if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().into();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return SseEvent {
                        event,
                        id,
                        data: serde_json::from_str(&data).unwrap(),
                    };
                }
                let chunk = self.body.next().await.expect("the feed ended").unwrap();
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
    }
}
