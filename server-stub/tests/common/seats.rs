//! The seat-booking constraint under concurrency, for any set of nodes
//! running the seat reducer (tests/fixtures/seats.js) on `seats/*`: twenty
//! devices each booked ten seats of a pool of thirty while offline, and
//! reconnect at once, each pushing its whole outbox in one frame to its
//! node (spread over the nodes). Every seat anyone wanted is taken exactly
//! once; each loser is refused with the app's code; the offsets are dense;
//! every device's replica (a fold of the events it receives from 0) and
//! every node's `/state` equal the state of the winning bookings.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use sync_core::{ErrorCode, ServerMsg};

use super::{client_id, http, Client};

/// Devices, seats each booked, and the pool they chose from.
pub const DEVICES: u8 = 20;
const PER_DEVICE: u64 = 10;
const POOL: u64 = 30;

/// The seats device `d` booked offline, in its order (distinct).
pub fn plan(d: u8) -> Vec<String> {
    (0..PER_DEVICE)
        .map(|k| format!("s{:02}", (u64::from(d) * 7 + k * 3) % POOL))
        .collect()
}

fn booking(seat: &str, d: u8) -> Vec<u8> {
    serde_json::json!({"type": "book", "seat": seat, "who": format!("d{d}")})
        .to_string()
        .into_bytes()
}

/// What one device heard: per seat it booked, the offset or the refusal.
type Heard = Vec<(String, Result<u64, (ErrorCode, String)>)>;

async fn reconnect_and_push(url: String, stream: String, d: u8) -> (u8, Heard) {
    let (mut c, _) = Client::hello(&url, client_id(d)).await;
    let seats = plan(d);
    let intents: Vec<(u64, Vec<u8>)> = seats
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64 + 1, booking(s, d)))
        .collect();
    c.push(&stream, &intents).await;
    let mut answers: BTreeMap<u64, Result<u64, (ErrorCode, String)>> = BTreeMap::new();
    while answers.len() < seats.len() {
        match c.recv().await {
            ServerMsg::Ack { seq, offset, .. } => {
                answers.insert(seq.get(), Ok(offset.0));
            }
            ServerMsg::Reject {
                seq, code, message, ..
            } => {
                answers.insert(seq.get(), Err((code, message)));
            }
            ServerMsg::Events { .. } | ServerMsg::Pong { .. } => {}
            other => panic!("device {d}: unexpected {other:?}"),
        }
    }
    let heard = seats
        .into_iter()
        .zip(answers.into_values())
        .collect::<Vec<_>>();
    (d, heard)
}

/// Runs the scenario against the nodes at `bases` (`http://host:port`),
/// on `stream`; returns the final state.
pub async fn twenty_devices_book_offline(bases: &[String], stream: &str) -> serde_json::Value {
    let ws = |d: u8| {
        format!(
            "{}/v1/ws",
            bases[usize::from(d) % bases.len()].replacen("http", "ws", 1)
        )
    };
    let tasks: Vec<_> = (1..=DEVICES)
        .map(|d| tokio::spawn(reconnect_and_push(ws(d), stream.to_string(), d)))
        .collect();
    let mut winners: BTreeMap<String, (u8, u64)> = BTreeMap::new();
    let mut losers: Vec<(u8, String, ErrorCode, String)> = Vec::new();
    for t in tasks {
        let (d, heard) = t.await.unwrap();
        for (seat, answer) in heard {
            match answer {
                Ok(offset) => {
                    if let Some(first) = winners.insert(seat.clone(), (d, offset)) {
                        panic!("seat {seat} appended twice: d{} and d{d}", first.0);
                    }
                }
                Err((code, message)) => losers.push((d, seat, code, message)),
            }
        }
    }
    // Every seat anyone wanted is taken, once; offsets are 1..=n.
    let wanted: std::collections::BTreeSet<String> = (1..=DEVICES).flat_map(plan).collect();
    assert_eq!(
        winners
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        wanted,
        "every wanted seat is taken"
    );
    let mut offsets: Vec<u64> = winners.values().map(|(_, o)| *o).collect();
    offsets.sort_unstable();
    let total = offsets.len() as u64;
    assert_eq!(offsets, (1..=total).collect::<Vec<_>>(), "dense offsets");
    assert_eq!(
        losers.len() as u64,
        u64::from(DEVICES) * PER_DEVICE - total,
        "every other booking is refused"
    );
    for (d, seat, code, message) in &losers {
        assert_eq!(*code, ErrorCode::Rejected, "d{d} {seat}");
        assert_eq!(message, &format!("SEAT_TAKEN: seat {seat} is taken"));
        assert_ne!(winners[seat].0, *d, "d{d} lost {seat} to itself");
    }
    let seats: serde_json::Map<String, serde_json::Value> = winners
        .iter()
        .map(|(s, (d, _))| (s.clone(), serde_json::json!(format!("d{d}"))))
        .collect();
    let want = serde_json::json!({ "seats": seats });

    // Each device's replica: the events from 0, folded as the reducer does.
    for d in 1..=DEVICES {
        let (mut c, _) = Client::hello(&ws(d), client_id(d)).await;
        c.subscribe(stream, 0).await;
        let events = c.events_until(total).await;
        let mut replica = serde_json::Map::new();
        for e in events {
            let a: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
            let seat = a["seat"].as_str().unwrap().to_string();
            assert!(replica.insert(seat, a["who"].clone()).is_none());
        }
        assert_eq!(
            serde_json::json!({ "seats": replica }),
            want,
            "d{d}'s replica"
        );
    }
    // Every node's state.
    let name = stream.replace('/', "%2F");
    for base in bases {
        let r = http()
            .get(format!("{base}/v1/streams/{name}/state"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["offset"], total, "{base}");
        assert_eq!(body["state"], want, "{base}'s state");
    }
    want
}
