//! The store's IndexedDB schema and its transactions. See the README's
//! "Storage schema" for the record shapes.
//!
//! Each transaction is one function of `storage.js`, which is plain JS
//! because that is what the browser's API is (written here over web-sys,
//! they made about a quarter of the module; BENCHMARKS.md, "Storage in
//! JS"). This file hands them their inputs, makes their answers the
//! `sync_core::Done` the storage queue takes, and decodes stored events.
//!
//! Every read of a record checks its shape; a record that does not have
//! the shape this build writes is reported as [`WasmError::Corrupt`] and
//! the load goes on with what can be trusted (the server sends again what
//! was confirmed; see `load`).

use js_sys::{Array, Float64Array, Function, Promise, Reflect, Uint32Array, Uint8Array};
use sync_core::{ClientId, Done, Epoch, Event, NewIntent, Offset, OutboxEntry, Seq};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::WasmError;

/// IndexedDB version of the schema below. A change of schema is a new
/// version with an upgrade step.
pub const SCHEMA_VERSION: u32 = 1;

#[wasm_bindgen(module = "/src/storage.js")]
extern "C" {
    #[wasm_bindgen(js_name = openStream)]
    fn open_stream_tx(
        name: &str,
        version: u32,
        fresh: &str,
        stream: &str,
        fault: &JsValue,
    ) -> Promise;
    #[wasm_bindgen(js_name = closeDb)]
    fn close_db(db: &JsValue);
    #[wasm_bindgen(js_name = readStream)]
    fn read_stream_tx(db: &JsValue, stream: &str, after: f64) -> Promise;
    #[wasm_bindgen(js_name = allocate)]
    fn allocate_tx(
        db: &JsValue,
        stream: &str,
        under: f64,
        floor: f64,
        intents: &Array,
        fault: &JsValue,
    ) -> Promise;
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(js_name = writeEvents)]
    fn write_events_tx(
        db: &JsValue,
        stream: &str,
        decide: &Function,
        under: f64,
        epoch: Option<&str>,
        drop_snapshot: f64,
        snapshot_offset: f64,
        state: &JsValue,
        schema: u32,
        bytes: &Uint8Array,
        ends: &Uint32Array,
        offsets: &Float64Array,
        drop_seqs: &Float64Array,
        offset: f64,
        fault: &JsValue,
    ) -> Promise;
    #[wasm_bindgen(js_name = reset)]
    fn reset_tx(
        db: &JsValue,
        stream: &str,
        epoch: &str,
        from: Option<&str>,
        decide: &Function,
        fault: &JsValue,
    ) -> Promise;
    #[wasm_bindgen(js_name = readOutbox)]
    fn read_outbox_tx(db: &JsValue, stream: &str, under: f64) -> Promise;
    #[wasm_bindgen(js_name = markDiscarded)]
    fn mark_discarded_tx(
        db: &JsValue,
        stream: &str,
        under: f64,
        seqs: &Float64Array,
        fault: &JsValue,
    ) -> Promise;
}

/// The `streams` record of one stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StreamRecord {
    pub offset: u64,
    pub next_seq: u64,
    pub snapshot_offset: u64,
    pub epoch: Option<String>,
    /// The outbox's numbering: how many epoch resets this stream's storage
    /// has seen (see `sync_core::outbox`). Absent in records written before
    /// it was kept: 0.
    pub generation: u64,
}

impl StreamRecord {
    /// Storage's answer to a job queued under another numbering.
    pub fn stale(&self) -> Done {
        Done::Stale {
            stored: self.epoch.clone().map(Epoch),
        }
    }
}

/// What a store starts from.
pub(crate) struct Loaded {
    pub record: StreamRecord,
    /// The state at `record.snapshot_offset`, when a snapshot is stored,
    /// and the schema version it was made under (1 in records written
    /// before snapshots kept it).
    pub snapshot: Option<(JsValue, u32)>,
    /// Events after the snapshot, dense from `snapshot_offset + 1`.
    pub events: Vec<Event>,
    /// The outbox, in seq order.
    pub outbox: Vec<OutboxEntry>,
    /// Records that could not be read (reported; the load went on).
    pub problems: Vec<WasmError>,
}

/// One transaction's worth of confirmed events and what goes with them
/// (borrowed from the outbox's job: nothing is copied to write it).
pub(crate) struct EventsWrite<'a> {
    pub events: &'a [Event],
    /// Outbox entries to delete (confirmed or rejected seqs).
    pub drop_seqs: &'a [Seq],
    pub offset: Offset,
    /// A snapshot of the confirmed state at an offset within the batch.
    pub snapshot: Option<(Offset, JsValue)>,
    /// The schema version of the snapshot's state (the reducer's).
    pub schema: u32,
    /// A stored snapshot (its offset) of an older schema version the
    /// store did not use: dropped, with the events after it, before
    /// these are written (when it is still the stored one).
    pub drop_snapshot: Option<u64>,
    pub epoch: Option<&'a Epoch>,
}

/// An open database.
pub(crate) struct Db {
    db: JsValue,
    name: String,
    /// sync-core's rules, called back by the transactions (`decide`).
    decide: Closure<dyn FnMut(JsValue) -> JsValue>,
}

/// What a transaction asks of sync-core (`decide` in storage.js):
/// `[0, outbox]`, the outbox renumbered after an epoch reset
/// (`outbox::renumber`); `[1, under, epoch, generation, storedEpoch]`,
/// whether an events write is stale (`outbox::stale_write`).
fn decide(question: JsValue) -> JsValue {
    let q: Array = question.unchecked_into();
    if q.get(0).as_f64() == Some(0.0) {
        return outbox_to(sync_core::outbox::renumber(outbox_from(&q.get(1))).iter()).into();
    }
    let whole = |i| q.get(i).as_f64().unwrap_or(0.0) as u64;
    let epoch = q.get(2).as_string().map(Epoch);
    let stored = q.get(4).as_string().map(Epoch);
    sync_core::outbox::stale_write(epoch.as_ref(), whole(1), whole(3), stored.as_ref()).into()
}

impl Drop for Db {
    fn drop(&mut self) {
        // A store dropped without close().
        self.close();
    }
}

/// Awaits a transaction of `storage.js`: its answer, or the error it
/// rejected with (`[what, cause]`).
async fn answer(tx: Promise) -> Result<JsValue, WasmError> {
    JsFuture::from(tx).await.map_err(rejected)
}

/// The error a transaction rejected with (`[what, cause]`).
#[inline(never)]
fn rejected(e: JsValue) -> WasmError {
    let what = Reflect::get_u32(&e, 0).ok().and_then(|w| w.as_string());
    let cause = Reflect::get_u32(&e, 1).unwrap_or(JsValue::UNDEFINED);
    match what {
        Some(what) if cause.is_undefined() => WasmError::Storage(what),
        Some(what) => WasmError::from_storage(&what, &cause),
        None => WasmError::from_storage("IndexedDB", &e),
    }
}

fn field(o: &JsValue, name: &str) -> JsValue {
    Reflect::get(o, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

/// A whole number `storage.js` checked.
fn num(o: &JsValue, name: &str) -> u64 {
    field(o, name).as_f64().unwrap_or(0.0) as u64
}

/// The answer's records that could not be read (`[key, reason]` each).
fn problems(out: &JsValue) -> Vec<WasmError> {
    let list: Array = field(out, "problems").unchecked_into();
    list.iter()
        .map(|p| {
            let p: Array = p.unchecked_into();
            WasmError::Corrupt {
                key: p.get(0).as_string().unwrap_or_default(),
                reason: p.get(1).as_string().unwrap_or_default(),
            }
        })
        .collect()
}

fn record(out: &JsValue) -> StreamRecord {
    let r = field(out, "record");
    StreamRecord {
        offset: num(&r, "offset"),
        next_seq: num(&r, "nextSeq"),
        snapshot_offset: num(&r, "snapshotOffset"),
        epoch: field(&r, "epoch").as_string(),
        generation: num(&r, "generation"),
    }
}

/// The answer of a transaction that found another numbering, if it did.
fn stale(out: &JsValue) -> Option<Done> {
    (field(out, "stale") == JsValue::TRUE).then(|| Done::Stale {
        stored: field(out, "epoch").as_string().map(Epoch),
    })
}

/// Outbox entries from their crossing form (`storage.js`), in seq order.
fn outbox_from(v: &JsValue) -> Vec<OutboxEntry> {
    let v: &Array = v.unchecked_ref();
    let nums = Float64Array::new(&v.get(0)).to_vec();
    let bytes = Uint8Array::new(&v.get(1)).to_vec();
    let ends = Uint32Array::new(&v.get(2)).to_vec();
    let mut start = 0;
    let mut out: Vec<OutboxEntry> = nums
        .chunks_exact(6)
        .zip(ends)
        .filter_map(|(n, end)| {
            let payload = bytes[start..end as usize].to_vec();
            start = end as usize;
            Some(OutboxEntry {
                seq: Seq::new(n[0] as u64).ok()?,
                payload,
                discarded: n[1] != 0.0,
                seen: Offset(n[2] as u64),
                time_ms: n[3] as u64,
                schema: n[4] as u32,
                expires_ms: n[5] as u64,
            })
        })
        .collect();
    sync_core::sort_by_seq(&mut out, |e| e.seq);
    out
}

/// Outbox entries in their crossing form.
fn outbox_to<'a>(entries: impl Iterator<Item = &'a OutboxEntry>) -> Array {
    let mut nums = Vec::new();
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for e in entries {
        nums.extend([
            e.seq.get() as f64,
            f64::from(u8::from(e.discarded)),
            e.seen.0 as f64,
            e.time_ms as f64,
            f64::from(e.schema),
            e.expires_ms as f64,
        ]);
        bytes.extend_from_slice(&e.payload);
        ends.push(bytes.len() as u32);
    }
    Array::of3(
        &Float64Array::from(&nums[..]),
        &Uint8Array::from(&bytes[..]),
        &Uint32Array::from(&ends[..]),
    )
}

/// The fault a test armed for the next write transaction of `db`.
fn fault(db: &str) -> JsValue {
    #[cfg(feature = "test-hooks")]
    if let Some(e) = crate::testing::take_fault(db) {
        return e;
    }
    let _ = db;
    JsValue::UNDEFINED
}

/// This browser profile's client id from `clientId`'s answer
/// (`[stored]`, or `[fresh, unreadable]` when it stored `fresh`), and the
/// unreadable record it replaced.
fn client_id(out: &JsValue, fresh: ClientId) -> (ClientId, Vec<WasmError>) {
    let out: &Array = out.unchecked_ref();
    let mut problems = Vec::new();
    let found = out.get(1);
    if out.length() > 1 && !found.is_undefined() {
        problems.push(WasmError::Corrupt {
            key: "meta/clientId".into(),
            reason: match found.as_string().map(|s| ClientId::from_hex(&s)) {
                Some(Err(e)) => e.to_string(),
                _ => "not a string".into(),
            },
        });
    }
    let id = out.get(0).as_string().unwrap_or_default();
    (ClientId::from_hex(&id).unwrap_or(fresh), problems)
}

/// What `readStream` answered, read (see [`Db::read_stream`]).
fn loaded(out: &JsValue, stream: &str) -> Loaded {
    let mut problems = problems(out);
    let mut record = record(out);
    let state = field(out, "snapshot");
    let snapshot = (!state.is_undefined()).then(|| (state, num(out, "schema") as u32));
    let events = read_events(
        &field(out, "events"),
        stream,
        num(out, "from"),
        &mut problems,
    );
    let outbox = outbox_from(&field(out, "outbox"));
    // A seq must never be handed out twice: when the record was
    // unreadable, start after every seq this store can still see.
    let seen = outbox.last().map_or(0, |e| e.seq.get());
    record.next_seq = record.next_seq.max(seen + 1).max(1);
    Loaded {
        record,
        snapshot,
        events,
        outbox,
        problems,
    }
}

impl Db {
    /// Opens (or creates) database `name` and reads what a store of
    /// `stream` starts from, one step after the other in one call of
    /// `storage.js` (`openStream`): this browser profile's client id
    /// (read, or created once from `random` and stored, in one
    /// transaction, so two tabs opening at once agree on one id) with
    /// the unreadable record it replaced, and the stream's record,
    /// snapshot, events and outbox (`read_stream` from offset 0, one
    /// read-only transaction: a consistent view even while another tab
    /// writes).
    pub async fn open_stream(
        name: &str,
        random: [u8; 16],
        stream: &str,
    ) -> Result<(Db, ClientId, Vec<WasmError>, Loaded), WasmError> {
        let fresh = ClientId::from_bytes(random);
        let out = answer(open_stream_tx(
            name,
            SCHEMA_VERSION,
            &fresh.to_hex(),
            stream,
            &fault(name),
        ))
        .await?;
        let out: Array = out.unchecked_into();
        let db = Db {
            db: out.get(0),
            name: name.to_string(),
            decide: Closure::new(decide),
        };
        let (id, problems) = client_id(&out.get(1), fresh);
        let loaded = loaded(&out.get(2), stream);
        Ok((db, id, problems, loaded))
    }

    /// Closes the connection (pending transactions finish first).
    pub fn close(&self) {
        close_db(&self.db);
    }

    /// What a tab at offset `after` reads of what another tab stored (a
    /// follower, `sync_core::Work::Follow`): the stream record, the
    /// snapshot when it is ahead of `after`, the events after `after` (or
    /// after the snapshot), and the outbox, in one read-only transaction.
    /// The caller compares `record.generation` with its numbering.
    pub async fn read_stream(&self, stream: &str, after: u64) -> Result<Loaded, WasmError> {
        let out = answer(read_stream_tx(&self.db, stream, after as f64)).await?;
        Ok(loaded(&out, stream))
    }

    /// Allocates `intents.len()` seqs and writes the intents to the
    /// outbox, in one strict transaction: this is what makes two tabs of
    /// one client never hand out one seq twice. `floor` is the seq this
    /// tab would allocate next; entries between it and the stored counter
    /// were written by other tabs and are returned. Under another
    /// numbering than `under`: nothing is written, [`Done::Stale`].
    pub async fn allocate(
        &self,
        stream: &str,
        intents: &[NewIntent],
        floor: Seq,
        under: u64,
    ) -> Result<(Done, Vec<WasmError>), WasmError> {
        let entries: Vec<OutboxEntry> = intents.iter().map(|i| i.entry(floor)).collect();
        let out = answer(allocate_tx(
            &self.db,
            stream,
            under as f64,
            floor.get() as f64,
            &outbox_to(entries.iter()),
            &fault(&self.name),
        ))
        .await?;
        let problems = problems(&out);
        if let Some(stale) = stale(&out) {
            return Ok((stale, problems));
        }
        let first = Seq::new(num(&out, "first")).map_err(WasmError::from)?;
        let others = outbox_from(&field(&out, "others"));
        Ok((Done::Alloc { first, others }, problems))
    }

    /// Writes a batch of confirmed events in one transaction: the events,
    /// the outbox entries they confirm removed, the offset moved, and when
    /// given a snapshot, that (the events it covers are deleted, and those
    /// of the batch not written; when the browser cannot clone the state,
    /// that is reported and the batch is written without it). Nothing is
    /// written, and the answer is [`Done::Stale`], when storage has
    /// another numbering than `under` or another epoch than the one the
    /// write stores (`sync_core::EventsWrite::is_stale`).
    pub async fn write_events(
        &self,
        stream: &str,
        w: &EventsWrite<'_>,
        under: u64,
    ) -> Result<(Done, Vec<WasmError>), WasmError> {
        #[cfg(feature = "test-hooks")]
        if let Some(wait) = crate::testing::take_hold(&self.name) {
            let _ = wasm_bindgen_futures::JsFuture::from(wait).await;
        }
        let mut problems = Vec::new();
        let mut snapshot = w.snapshot.as_ref();
        loop {
            let tx = self.events_tx(stream, w, under, snapshot);
            let out = answer(tx).await?;
            problems.extend(self::problems(&out));
            let refused = field(&out, "unclonable");
            if snapshot.is_some() && !refused.is_undefined() {
                // Nothing was written: write the events instead.
                problems.push(WasmError::from_storage(
                    "cannot store a snapshot of the state",
                    &refused,
                ));
                snapshot = None;
                continue;
            }
            return Ok((stale(&out).unwrap_or(Done::Written), problems));
        }
    }

    /// Starts the transaction of [`Db::write_events`], with `snapshot`.
    fn events_tx(
        &self,
        stream: &str,
        w: &EventsWrite<'_>,
        under: u64,
        snapshot: Option<&(Offset, JsValue)>,
    ) -> Promise {
        // The events a snapshot covers are not stored: not encoded.
        let at = snapshot.map_or(0, |(offset, _)| offset.0);
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut offsets = Vec::new();
        for e in w.events.iter().filter(|e| e.offset.0 > at) {
            bytes.extend_from_slice(&sync_core::protocol::encode_event(e));
            ends.push(bytes.len() as u32);
            offsets.push(e.offset.0 as f64);
        }
        let drop: Vec<f64> = w.drop_seqs.iter().map(|s| s.get() as f64).collect();
        write_events_tx(
            &self.db,
            stream,
            self.decide.as_ref().unchecked_ref(),
            under as f64,
            w.epoch.map(|e| e.0.as_str()),
            w.drop_snapshot.map_or(-1.0, |o| o as f64),
            at as f64,
            snapshot.map_or(&JsValue::UNDEFINED, |(_, state)| state),
            w.schema,
            &Uint8Array::from(&bytes[..]),
            &Uint32Array::from(&ends[..]),
            &Float64Array::from(&offsets[..]),
            &Float64Array::from(&drop[..]),
            w.offset.0 as f64,
            &fault(&self.name),
        )
    }

    /// The server's log has epoch `epoch` (see `sync_core::Work::Reset`):
    /// when storage holds `epoch` already nothing changes; when it holds
    /// `from`, the stream's history is forgotten (events and snapshot
    /// deleted, offset 0) and every tab's outbox entries are renumbered
    /// (`sync_core::outbox::renumber`), as one more numbering; otherwise
    /// (another tab moved storage on) nothing changes and the answer is
    /// [`Done::Stale`]. One strict transaction.
    pub async fn reset(
        &self,
        stream: &str,
        epoch: &Epoch,
        from: Option<&Epoch>,
    ) -> Result<(Done, Vec<WasmError>), WasmError> {
        let out = answer(reset_tx(
            &self.db,
            stream,
            &epoch.0,
            from.map(|e| e.0.as_str()),
            self.decide.as_ref().unchecked_ref(),
            &fault(&self.name),
        ))
        .await?;
        let problems = problems(&out);
        if let Some(stale) = stale(&out) {
            return Ok((stale, problems));
        }
        let done = Done::Reset {
            entries: outbox_from(&field(&out, "entries")),
            generation: num(&out, "generation"),
        };
        Ok((done, problems))
    }

    /// The whole outbox of `stream`, in seq order.
    /// ([`Done::Reload`]; [`Done::Stale`] under another numbering than
    /// `under`).
    pub async fn read_outbox(
        &self,
        stream: &str,
        under: u64,
    ) -> Result<(Done, Vec<WasmError>), WasmError> {
        let out = answer(read_outbox_tx(&self.db, stream, under as f64)).await?;
        let problems = problems(&out);
        let done = stale(&out).unwrap_or_else(|| Done::Reload(outbox_from(&field(&out, "outbox"))));
        Ok((done, problems))
    }

    /// Marks the outbox entries of `seqs` discarded (entries already gone,
    /// decided meanwhile, are skipped), in one strict transaction
    /// ([`Done::Stale`] under another numbering than `under`).
    pub async fn mark_discarded(
        &self,
        stream: &str,
        seqs: &[Seq],
        under: u64,
    ) -> Result<(Done, Vec<WasmError>), WasmError> {
        let seqs: Vec<f64> = seqs.iter().map(|s| s.get() as f64).collect();
        let out = answer(mark_discarded_tx(
            &self.db,
            stream,
            under as f64,
            &Float64Array::from(&seqs[..]),
            &fault(&self.name),
        ))
        .await?;
        let problems = problems(&out);
        Ok((stale(&out).unwrap_or(Done::Written), problems))
    }
}

/// Decodes stored events (`[bytes, ends, count]`: the values that are
/// bytes, end to end, and how many values were read), keeping the dense
/// run after `after`; the first unreadable or missing one ends the run (the
/// server sends the rest).
fn read_events(
    read: &JsValue,
    stream: &str,
    after: u64,
    problems: &mut Vec<WasmError>,
) -> Vec<Event> {
    let read: &Array = read.unchecked_ref();
    let bytes = Uint8Array::new(&read.get(0)).to_vec();
    let ends = Uint32Array::new(&read.get(1)).to_vec();
    let count = read.get(2).as_f64().unwrap_or(0.0) as usize;
    // A value that is not bytes ends the run.
    let not_bytes = (ends.len() < count).then_some(Err("not bytes".to_string()));
    let mut events = Vec::with_capacity(ends.len());
    let mut expect = after + 1;
    let mut start = 0;
    let each = ends.iter().map(|&end| {
        let one = &bytes[start..end as usize];
        start = end as usize;
        decode_stored_event(one)
    });
    for decoded in each.chain(not_bytes) {
        let decoded = decoded.and_then(|e| {
            if e.offset.0 == expect {
                Ok(e)
            } else {
                Err(format!(
                    "holds offset {} where {expect} was expected",
                    e.offset
                ))
            }
        });
        match decoded {
            Ok(e) => {
                events.push(e);
                expect += 1;
            }
            Err(reason) => {
                problems.push(WasmError::Corrupt {
                    key: format!("events/[{stream},{expect}]"),
                    reason,
                });
                break;
            }
        }
    }
    events
}

/// A stored event. One stored before events carried their `schema`
/// (protocol versions before 5) lacks its byte at the end: it reads as
/// schema version 1 (postcard writes 1 as the byte 1); one stored before
/// they carried `subject` and `seen` (protocol version 1) lacks those too:
/// no subject and seen 0 (postcard writes `None` and `0` as one zero byte
/// each), as the server's log has it.
fn decode_stored_event(bytes: &[u8]) -> Result<Event, String> {
    let first = match postcard::from_bytes::<Event>(bytes) {
        Ok(e) => return Ok(e),
        Err(e) => e.to_string(),
    };
    [&[1][..], &[0, 0, 1]]
        .iter()
        .find_map(|tail| postcard::from_bytes::<Event>(&[bytes, tail].concat()).ok())
        .ok_or(first)
}
