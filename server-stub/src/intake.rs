//! The intake of intents, shared by the WebSocket and HTTP transports: the
//! policy hook that accepts or rejects an intent, and the call into the
//! store.
//!
//! The policy only sees the intent; the store applies its verdict only
//! when the intent's seq is the next one, and stores it with the log, so a
//! resend is always answered with the original decision.

use std::sync::Arc;

use sync_core::{ClientId, ErrorCode, Offset, PushIntent, Seq, StreamName};

use crate::error::Error;
use crate::store::{AppendRequest, LogStore, Outcome, ProposedIntent, Verdict};

/// Decides whether an intent may be appended. Authorisation (`FORBIDDEN`)
/// and application validation plug in here.
pub trait IntentPolicy: Send + Sync + 'static {
    /// The verdict for one intent.
    fn check(&self, stream: &StreamName, client_id: &ClientId, seq: Seq, payload: &[u8])
        -> Verdict;
}

/// The built-in policy: the payload size limit, and the nesting limit of
/// JSON payloads ([`sync_core::json::MAX_PAYLOAD_DEPTH`]).
#[derive(Clone, Debug)]
pub struct SizeLimit {
    /// Largest payload accepted, in bytes.
    pub max_payload_bytes: usize,
}

impl IntentPolicy for SizeLimit {
    fn check(&self, _: &StreamName, _: &ClientId, _: Seq, payload: &[u8]) -> Verdict {
        if payload.len() > self.max_payload_bytes {
            Verdict::Reject {
                code: ErrorCode::PayloadTooLarge,
                message: format!(
                    "payload of {} bytes is over the limit of {} bytes",
                    payload.len(),
                    self.max_payload_bytes
                ),
            }
        } else if sync_core::json::nests_deeper_than(payload, sync_core::json::MAX_PAYLOAD_DEPTH) {
            Verdict::Reject {
                code: ErrorCode::InvalidJson,
                message: format!(
                    "payload nests arrays and objects deeper than {} levels",
                    sync_core::json::MAX_PAYLOAD_DEPTH
                ),
            }
        } else {
            Verdict::Accept
        }
    }
}

/// Runs the policy over `intents` and hands them to the store.
pub async fn push(
    store: &Arc<dyn LogStore>,
    policy: &dyn IntentPolicy,
    stream: StreamName,
    client_id: ClientId,
    subject: Option<String>,
    intents: impl IntoIterator<Item = PushIntent>,
) -> Result<Vec<Outcome>, Error> {
    store
        .append(push_request(policy, stream, client_id, subject, intents))
        .await
}

/// The request for a push: the policy's verdict on each intent.
pub fn push_request(
    policy: &dyn IntentPolicy,
    stream: StreamName,
    client_id: ClientId,
    subject: Option<String>,
    intents: impl IntoIterator<Item = PushIntent>,
) -> AppendRequest {
    let intents = intents
        .into_iter()
        .map(
            |PushIntent {
                 seq,
                 payload,
                 seen,
                 schema,
             }| {
                let verdict = policy.check(&stream, &client_id, seq, &payload);
                // The digest is taken from what the client sent, so a resend
                // is checked against the intent holding its seq even when the
                // policy refuses it now.
                let mut intent = ProposedIntent::new(seq, payload, verdict)
                    .seen(seen)
                    .schema(schema);
                // A refused payload is never stored: do not carry it further.
                if let Verdict::Reject { .. } = intent.verdict {
                    intent.payload = Vec::new();
                }
                intent
            },
        )
        .collect();
    AppendRequest {
        stream,
        client_id,
        subject,
        intents,
    }
}

/// The request that decides `seq` as rejected on the client's own request
/// (`Withdraw`: the intent cannot be pushed), through the same store path
/// as any intent, so the seq leaves no hole and a resend gets the same
/// answer. The client's reason is kept to [`MAX_WITHDRAW_MESSAGE`] bytes.
pub fn withdraw_request(
    stream: StreamName,
    client_id: ClientId,
    seq: Seq,
    code: ErrorCode,
    message: String,
) -> AppendRequest {
    // The client names the reason; keep it short, it is stored.
    let mut message = message;
    if message.len() > MAX_WITHDRAW_MESSAGE {
        let mut end = MAX_WITHDRAW_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    AppendRequest {
        stream,
        client_id,
        subject: None,
        intents: vec![ProposedIntent {
            seq,
            payload: Vec::new(),
            verdict: Verdict::Reject { code, message },
            // The intent itself is not sent: nothing to check a resend by.
            digest: None,
            seen: Offset::ZERO,
            schema: 1,
        }],
    }
}

/// The request that decides each of `seqs` as rejected with `code`
/// (a write the token does not allow, on a stream it may read): stored
/// like any rejection, without the payloads, so the seqs leave no hole and
/// a resend gets the same answer.
pub fn refused_request(
    stream: StreamName,
    client_id: ClientId,
    seqs: impl IntoIterator<Item = Seq>,
    code: ErrorCode,
    message: &str,
) -> AppendRequest {
    AppendRequest {
        stream,
        client_id,
        subject: None,
        intents: seqs
            .into_iter()
            .map(|seq| ProposedIntent {
                seq,
                payload: Vec::new(),
                verdict: Verdict::Reject {
                    code,
                    message: message.to_string(),
                },
                // The payloads are not looked at: a resend of an appended
                // seq keeps its original answer.
                digest: None,
                seen: Offset::ZERO,
                schema: 1,
            })
            .collect(),
    }
}

/// Longest reason kept for a withdrawn intent, in bytes.
pub const MAX_WITHDRAW_MESSAGE: usize = 300;
