//! The store's IndexedDB schema and its transactions. See the README's
//! "Storage schema" for the record shapes.
//!
//! Every read of a record checks its shape; a record that does not have
//! the shape this build writes is reported as [`WasmError::Corrupt`] and
//! the load goes on with what can be trusted (the server sends again what
//! was confirmed; see `load`).

use js_sys::{Object, Reflect, Uint8Array};
use sync_core::{ClientId, Done, Epoch, Event, NewIntent, Offset, OutboxEntry, Seq};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::IdbDatabase;

use crate::error::WasmError;
use crate::idb::{self, Durability};

/// IndexedDB version of the schema below. A change of schema is a new
/// version with an upgrade step.
pub const SCHEMA_VERSION: u32 = 1;

const META: &str = "meta";
const STREAMS: &str = "streams";
const EVENTS: &str = "events";
const OUTBOX: &str = "outbox";
const SNAPSHOTS: &str = "snapshots";
const ALL: [&str; 5] = [META, STREAMS, EVENTS, OUTBOX, SNAPSHOTS];

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
    fn stored_epoch(&self) -> Option<Epoch> {
        self.epoch.clone().map(Epoch)
    }

    /// Storage's answer to a job queued under another numbering.
    pub fn stale(&self) -> Done {
        Done::Stale {
            stored: self.stored_epoch(),
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
    db: IdbDatabase,
    name: String,
    // Closes this connection when another tab upgrades the schema, so the
    // upgrade is not blocked forever.
    _on_version_change: wasm_bindgen::closure::Closure<dyn FnMut()>,
}

impl Db {
    /// Opens (or creates) database `name`.
    pub async fn open(name: &str) -> Result<Db, WasmError> {
        let db = idb::open(name, SCHEMA_VERSION, &ALL).await?;
        let to_close = db.clone();
        let on_version_change =
            wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || to_close.close());
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        Ok(Db {
            db,
            name: name.to_string(),
            _on_version_change: on_version_change,
        })
    }

    /// Closes the connection (pending transactions finish first).
    pub fn close(&self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // A store dropped without close(): the handler's closure goes now.
        self.close();
    }
}

impl Db {
    /// This browser profile's client id: read, or created once with
    /// `random` and stored, in one transaction (two tabs opening at once
    /// agree on one id).
    pub async fn client_id(
        &self,
        random: [u8; 16],
    ) -> Result<(ClientId, Vec<WasmError>), WasmError> {
        let tx = idb::transaction(&self.db, &[META], Some(Durability::Strict))?;
        let outcome = idb::outcome(&tx);
        let meta = idb::store(&tx, META)?;
        let stored = idb::read(meta.get(&"clientId".into()), "read meta.clientId").await?;
        let mut problems = Vec::new();
        let id = match stored.as_string().map(|s| ClientId::from_hex(&s)) {
            Some(Ok(id)) => id,
            found => {
                if !stored.is_undefined() {
                    problems.push(WasmError::Corrupt {
                        key: "meta/clientId".into(),
                        reason: match found {
                            Some(Err(e)) => e.to_string(),
                            _ => "not a string".into(),
                        },
                    });
                }
                let id = ClientId::from_bytes(random);
                put(&meta, &"clientId".into(), &id.to_hex().into())?;
                put(&meta, &"schemaVersion".into(), &SCHEMA_VERSION.into())?;
                id
            }
        };
        finish(&self.name, &tx, outcome, "store the client id").await?;
        Ok((id, problems))
    }

    /// Reads everything a store of `stream` starts from, in one read-only
    /// transaction (a consistent view even while another tab writes).
    pub async fn load(&self, stream: &str) -> Result<Loaded, WasmError> {
        self.read_stream(stream, 0).await
    }

    /// What a tab at offset `after` reads of what another tab stored (a
    /// follower, `sync_core::Work::Follow`; at open, `after` is 0): the
    /// stream record, the snapshot when it is ahead of `after`, the events
    /// after `after` (or after the snapshot), and the outbox, in one
    /// read-only transaction. The caller compares `record.generation`
    /// with its numbering.
    pub async fn read_stream(&self, stream: &str, after: u64) -> Result<Loaded, WasmError> {
        let key: JsValue = stream.into();
        let tx = idb::transaction(&self.db, &[STREAMS, EVENTS, OUTBOX, SNAPSHOTS], None)?;
        let outcome = idb::outcome(&tx);
        let mut problems = Vec::new();

        let raw = idb::read(idb::store(&tx, STREAMS)?.get(&key), "read streams").await?;
        let mut record = StreamRecord::from_js(&raw, stream).unwrap_or_else(|e| {
            problems.push(e);
            StreamRecord::default()
        });
        let mut snapshot = None;
        let mut from = after;
        if record.snapshot_offset > after {
            let raw = idb::read(idb::store(&tx, SNAPSHOTS)?.get(&key), "read snapshots").await?;
            match read_snapshot(&raw, stream, record.snapshot_offset) {
                Ok(state) => {
                    snapshot = Some(state);
                    from = record.snapshot_offset;
                }
                Err(e) => {
                    // The events before the snapshot are gone: start from
                    // `after` (at open, offset 0) and let the server send
                    // the history again.
                    problems.push(e);
                    if after == 0 {
                        record.snapshot_offset = 0;
                    }
                }
            }
        }
        let range = idb::range_from(&key, from + 1)?;
        let raw = idb::read(
            idb::store(&tx, EVENTS)?.get_all_with_key(&range),
            "read events",
        )
        .await?;
        let events = read_events(&raw, stream, from, &mut problems);
        let raw = idb::read(
            idb::store(&tx, OUTBOX)?.get_all_with_key(&idb::range_from(&key, 1)?),
            "read outbox",
        )
        .await?;
        let outbox = read_outbox(&raw, stream, &mut problems);
        finish(&self.name, &tx, outcome, "read the stored stream").await?;

        // A seq must never be handed out twice: when the record was
        // unreadable, start after every seq this store can still see.
        let seen = outbox.last().map_or(0, |e| e.seq.get());
        record.next_seq = record.next_seq.max(seen + 1).max(1);
        Ok(Loaded {
            record,
            snapshot,
            events,
            outbox,
            problems,
        })
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
        let key: JsValue = stream.into();
        let tx = idb::transaction(&self.db, &[STREAMS, OUTBOX], Some(Durability::Strict))?;
        let outcome = idb::outcome(&tx);
        let streams = idb::store(&tx, STREAMS)?;
        let outbox = idb::store(&tx, OUTBOX)?;
        let mut problems = Vec::new();
        let raw = idb::read(streams.get(&key), "read streams").await?;
        let mut record = StreamRecord::from_js(&raw, stream).unwrap_or_else(|e| {
            problems.push(e);
            StreamRecord::default()
        });
        if record.generation != under {
            finish(&self.name, &tx, outcome, "read the outbox numbering").await?;
            return Ok((record.stale(), problems));
        }
        let stored_next = record.next_seq.max(1);
        let mut others = Vec::new();
        if stored_next > floor.get() {
            let range = idb::range(&key, floor.get(), stored_next - 1)?;
            let raw = idb::read(outbox.get_all_with_key(&range), "read outbox").await?;
            others = read_outbox(&raw, stream, &mut problems);
        }
        let first = stored_next.max(floor.get());
        for (i, intent) in intents.iter().enumerate() {
            let seq = first + i as u64;
            put(
                &outbox,
                &idb::key2(&key, seq),
                &outbox_value(seq, &intent.entry(Seq::new(seq).map_err(WasmError::from)?)),
            )?;
        }
        record.next_seq = first + intents.len() as u64;
        put(&streams, &key, &record.to_js())?;
        finish(&self.name, &tx, outcome, "write the outbox").await?;
        let first = Seq::new(first).map_err(WasmError::from)?;
        Ok((Done::Alloc { first, others }, problems))
    }

    /// Writes a batch of confirmed events in one transaction: the events,
    /// the outbox entries they confirm removed, the offset moved, and when
    /// given a snapshot (the events it covers are deleted). Nothing is
    /// written, and the answer is [`Done::Stale`], when storage has
    /// another numbering than `under` or another epoch than the one the
    /// write stores (`sync_core::EventsWrite::is_stale`).
    pub async fn write_events(
        &self,
        stream: &str,
        w: &EventsWrite<'_>,
        under: u64,
    ) -> Result<(Done, Vec<WasmError>), WasmError> {
        let key: JsValue = stream.into();
        let tx = idb::transaction(
            &self.db,
            &[STREAMS, EVENTS, OUTBOX, SNAPSHOTS],
            Some(Durability::Relaxed),
        )?;
        let outcome = idb::outcome(&tx);
        let streams = idb::store(&tx, STREAMS)?;
        let mut problems = Vec::new();
        let raw = idb::read(streams.get(&key), "read streams").await?;
        let mut record = StreamRecord::from_js(&raw, stream).unwrap_or_else(|e| {
            problems.push(e);
            StreamRecord::default()
        });
        let stored = record.stored_epoch();
        let conflict = matches!((&stored, w.epoch), (Some(s), Some(e)) if s != e);
        if record.generation != under || conflict {
            finish(&self.name, &tx, outcome, "read the outbox numbering").await?;
            return Ok((record.stale(), problems));
        }
        let events = idb::store(&tx, EVENTS)?;
        if w.drop_snapshot == Some(record.snapshot_offset) {
            let del = |store: &web_sys::IdbObjectStore, k: &JsValue| {
                store
                    .delete(k)
                    .map(|_| ())
                    .map_err(|e| WasmError::from_storage("drop the snapshot", &e))
            };
            del(&idb::store(&tx, SNAPSHOTS)?, &key)?;
            del(&events, &idb::range_from(&key, 0)?)?;
            record.snapshot_offset = 0;
        }
        // Another tab of this profile may be further along: never move back.
        let mut snapshot_at = 0;
        if let Some((offset, state)) = &w.snapshot {
            if offset.0 > record.snapshot_offset {
                let value = Object::new();
                set(&value, "offset", &JsValue::from_f64(offset.0 as f64));
                set(&value, "state", state);
                set(&value, "timeMs", &js_sys::Date::now().into());
                set(&value, "schema", &w.schema.into());
                // A state that cannot be cloned (a function inside, say)
                // throws here, synchronously, without aborting: keep the
                // events instead and report it.
                match idb::store(&tx, SNAPSHOTS)?.put_with_key(&value, &key) {
                    Ok(_) => snapshot_at = offset.0,
                    Err(e) => problems.push(WasmError::from_storage(
                        "cannot store a snapshot of the state",
                        &e,
                    )),
                }
            }
        }
        // Every event's bytes in one buffer, written in one crossing.
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut offsets = Vec::new();
        for e in w.events.iter().filter(|e| e.offset.0 > snapshot_at) {
            bytes.extend_from_slice(&sync_core::protocol::encode_event(e));
            ends.push(bytes.len() as u32);
            offsets.push(e.offset.0 as f64);
        }
        if !ends.is_empty() {
            idb::put_events(
                &events,
                stream,
                &Uint8Array::from(&bytes[..]),
                &js_sys::Uint32Array::from(&ends[..]),
                &js_sys::Float64Array::from(&offsets[..]),
            )
            .map_err(|e| WasmError::from_storage("write events", &e))?;
        }
        if snapshot_at > 0 {
            events
                .delete(&idb::range(&key, 0, snapshot_at)?)
                .map_err(|e| WasmError::from_storage("delete events", &e))?;
            record.snapshot_offset = snapshot_at;
        }
        let outbox = idb::store(&tx, OUTBOX)?;
        for seq in w.drop_seqs {
            outbox
                .delete(&idb::key2(&key, seq.get()))
                .map_err(|e| WasmError::from_storage("delete outbox", &e))?;
        }
        record.offset = record.offset.max(w.offset.0);
        if let Some(epoch) = &w.epoch {
            record.epoch = Some(epoch.0.clone());
        }
        put(&streams, &key, &record.to_js())?;
        finish(&self.name, &tx, outcome, "write events").await?;
        Ok((Done::Written, problems))
    }

    /// The server's log has epoch `epoch` (see `sync_core::Work::Reset`):
    /// when storage holds `epoch` already nothing changes; when it holds
    /// `from`, the stream's history is forgotten (events and snapshot
    /// deleted, offset 0) and every tab's outbox entries are renumbered
    /// from seq 1 in seq order, as one more numbering; otherwise
    /// (another tab moved storage on) nothing changes and the answer is
    /// [`Done::Stale`]. One strict transaction.
    pub async fn reset(
        &self,
        stream: &str,
        epoch: &Epoch,
        from: Option<&Epoch>,
    ) -> Result<(Done, Vec<WasmError>), WasmError> {
        let key: JsValue = stream.into();
        let tx = idb::transaction(
            &self.db,
            &[STREAMS, EVENTS, OUTBOX, SNAPSHOTS],
            Some(Durability::Strict),
        )?;
        let outcome = idb::outcome(&tx);
        let mut problems = Vec::new();
        let streams = idb::store(&tx, STREAMS)?;
        let raw = idb::read(streams.get(&key), "read streams").await?;
        let record = StreamRecord::from_js(&raw, stream).unwrap_or_else(|e| {
            problems.push(e);
            StreamRecord::default()
        });
        let out = idb::store(&tx, OUTBOX)?;
        let raw = idb::read(
            out.get_all_with_key(&idb::range_from(&key, 1)?),
            "read outbox",
        )
        .await?;
        let entries = read_outbox(&raw, stream, &mut problems);
        let stored = record.stored_epoch();
        if stored.as_ref() == Some(epoch) {
            finish(&self.name, &tx, outcome, "read the outbox").await?;
            let done = Done::Reset {
                entries,
                generation: record.generation,
            };
            return Ok((done, problems));
        }
        if from.is_none() || stored.as_ref() != from {
            finish(&self.name, &tx, outcome, "read the outbox numbering").await?;
            return Ok((record.stale(), problems));
        }
        let entries = sync_core::outbox::renumber(entries);
        let all = idb::range_from(&key, 0)?;
        let del = |store: &str, k: &JsValue| -> Result<(), WasmError> {
            idb::store(&tx, store)?
                .delete(k)
                .map(|_| ())
                .map_err(|e| WasmError::from_storage("reset the stream", &e))
        };
        del(EVENTS, &all)?;
        del(OUTBOX, &all)?;
        del(SNAPSHOTS, &key)?;
        for e in &entries {
            put(
                &out,
                &idb::key2(&key, e.seq.get()),
                &outbox_value(e.seq.get(), e),
            )?;
        }
        let generation = record.generation + 1;
        let record = StreamRecord {
            offset: 0,
            next_seq: entries.last().map_or(1, |e| e.seq.get() + 1),
            snapshot_offset: 0,
            epoch: Some(epoch.0.clone()),
            generation,
        };
        put(&streams, &key, &record.to_js())?;
        finish(&self.name, &tx, outcome, "reset the stream").await?;
        Ok((
            Done::Reset {
                entries,
                generation,
            },
            problems,
        ))
    }

    /// Reads the numbering of `stream` in `tx`: `Some(stale answer)` when
    /// it is not `under`.
    async fn check_numbering(
        tx: &web_sys::IdbTransaction,
        stream: &str,
        under: u64,
        problems: &mut Vec<WasmError>,
    ) -> Result<Option<Done>, WasmError> {
        let raw = idb::read(idb::store(tx, STREAMS)?.get(&stream.into()), "read streams").await?;
        let record = StreamRecord::from_js(&raw, stream).unwrap_or_else(|e| {
            problems.push(e);
            StreamRecord::default()
        });
        Ok((record.generation != under).then(|| record.stale()))
    }

    /// The whole outbox of `stream`, in seq order.
    /// ([`Done::Reload`]; [`Done::Stale`] under another numbering than
    /// `under`).
    pub async fn read_outbox(
        &self,
        stream: &str,
        under: u64,
    ) -> Result<(Done, Vec<WasmError>), WasmError> {
        let key: JsValue = stream.into();
        let tx = idb::transaction(&self.db, &[STREAMS, OUTBOX], None)?;
        let outcome = idb::outcome(&tx);
        let mut problems = Vec::new();
        if let Some(stale) = Self::check_numbering(&tx, stream, under, &mut problems).await? {
            finish(&self.name, &tx, outcome, "read the outbox numbering").await?;
            return Ok((stale, problems));
        }
        let raw = idb::read(
            idb::store(&tx, OUTBOX)?.get_all_with_key(&idb::range_from(&key, 1)?),
            "read outbox",
        )
        .await?;
        let outbox = read_outbox(&raw, stream, &mut problems);
        finish(&self.name, &tx, outcome, "read the outbox").await?;
        Ok((Done::Reload(outbox), problems))
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
        let key: JsValue = stream.into();
        let tx = idb::transaction(&self.db, &[STREAMS, OUTBOX], Some(Durability::Strict))?;
        let outcome = idb::outcome(&tx);
        let mut problems = Vec::new();
        if let Some(stale) = Self::check_numbering(&tx, stream, under, &mut problems).await? {
            finish(&self.name, &tx, outcome, "read the outbox numbering").await?;
            return Ok((stale, problems));
        }
        let outbox = idb::store(&tx, OUTBOX)?;
        for seq in seqs {
            let k = idb::key2(&key, seq.get());
            let raw = idb::read(outbox.get(&k), "read outbox").await?;
            if raw.is_object() {
                set(raw.unchecked_ref(), "discarded", &JsValue::TRUE);
                put(&outbox, &k, &raw)?;
            }
        }
        finish(&self.name, &tx, outcome, "mark outbox entries discarded").await?;
        Ok((Done::Written, problems))
    }
}

async fn finish(
    db: &str,
    tx: &web_sys::IdbTransaction,
    outcome: wasm_bindgen_futures::JsFuture,
    what: &str,
) -> Result<(), WasmError> {
    #[cfg(feature = "test-hooks")]
    if tx.mode().ok() == Some(web_sys::IdbTransactionMode::Readwrite) {
        if let Some(e) = crate::testing::take_fault(db) {
            // The browser refuses the transaction: nothing of it is kept.
            let _ = tx.abort();
            let _ = outcome.await;
            return Err(WasmError::from_storage(what, &e));
        }
    }
    let _ = (db, tx);
    outcome
        .await
        .map(|_| ())
        .map_err(|e| WasmError::from_storage(what, &e))
}

fn put(store: &web_sys::IdbObjectStore, key: &JsValue, value: &JsValue) -> Result<(), WasmError> {
    store
        .put_with_key(value, key)
        .map(|_| ())
        .map_err(|e| WasmError::from_storage(&format!("write {}", store.name()), &e))
}

fn set(obj: &Object, name: &str, value: &JsValue) {
    // Setting a data property on a plain new object cannot fail.
    let _ = Reflect::set(obj, &name.into(), value);
}

fn get(obj: &JsValue, name: &str) -> JsValue {
    Reflect::get(obj, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

/// A non-negative integer that a JS number holds exactly.
fn whole(v: &JsValue) -> Option<u64> {
    let n = v.as_f64()?;
    (n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0).then_some(n as u64)
}

/// An outbox entry as stored under `seq`: `{seq, payload, discarded?,
/// timeMs, seen, schema, expiresMs?}` (`seen` is missing in entries stored
/// before intents carried it: 0; `schema` and `expiresMs` in entries
/// stored before they were kept: schema 1, never expiring).
fn outbox_value(seq: u64, e: &OutboxEntry) -> JsValue {
    let value = Object::new();
    set(&value, "seq", &JsValue::from_f64(seq as f64));
    set(&value, "payload", &Uint8Array::from(&e.payload[..]));
    if e.discarded {
        set(&value, "discarded", &JsValue::TRUE);
    }
    set(&value, "timeMs", &JsValue::from_f64(e.time_ms as f64));
    set(&value, "seen", &JsValue::from_f64(e.seen.0 as f64));
    set(&value, "schema", &e.schema.into());
    if e.expires_ms != 0 {
        set(&value, "expiresMs", &JsValue::from_f64(e.expires_ms as f64));
    }
    value.into()
}

impl StreamRecord {
    fn from_js(raw: &JsValue, stream: &str) -> Result<StreamRecord, WasmError> {
        if raw.is_undefined() {
            return Ok(StreamRecord {
                next_seq: 1,
                ..StreamRecord::default()
            });
        }
        let bad = |reason: &str| WasmError::Corrupt {
            key: format!("streams/{stream}"),
            reason: reason.into(),
        };
        if !raw.is_object() {
            return Err(bad("not an object"));
        }
        let offset =
            whole(&get(raw, "offset")).ok_or_else(|| bad("offset is not a whole number"))?;
        let next_seq = whole(&get(raw, "nextSeq"))
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad("nextSeq is not a whole number >= 1"))?;
        let snapshot_offset = whole(&get(raw, "snapshotOffset"))
            .ok_or_else(|| bad("snapshotOffset is not a whole number"))?;
        let epoch = get(raw, "epoch");
        let epoch = if epoch.is_null() || epoch.is_undefined() {
            None
        } else {
            Some(
                epoch
                    .as_string()
                    .ok_or_else(|| bad("epoch is not a string"))?,
            )
        };
        let generation = get(raw, "generation");
        let generation = if generation.is_undefined() {
            0
        } else {
            whole(&generation).ok_or_else(|| bad("generation is not a whole number"))?
        };
        Ok(StreamRecord {
            offset,
            next_seq,
            snapshot_offset,
            epoch,
            generation,
        })
    }

    fn to_js(&self) -> JsValue {
        let o = Object::new();
        set(&o, "offset", &JsValue::from_f64(self.offset as f64));
        set(&o, "nextSeq", &JsValue::from_f64(self.next_seq as f64));
        set(
            &o,
            "snapshotOffset",
            &JsValue::from_f64(self.snapshot_offset as f64),
        );
        let epoch = self
            .epoch
            .as_deref()
            .map_or(JsValue::NULL, JsValue::from_str);
        set(&o, "epoch", &epoch);
        set(&o, "generation", &JsValue::from_f64(self.generation as f64));
        o.into()
    }
}

fn read_snapshot(raw: &JsValue, stream: &str, expected: u64) -> Result<(JsValue, u32), WasmError> {
    let bad = |reason: String| WasmError::Corrupt {
        key: format!("snapshots/{stream}"),
        reason,
    };
    if !raw.is_object() {
        return Err(bad("missing or not an object".into()));
    }
    match whole(&get(raw, "offset")) {
        Some(o) if o == expected => {}
        // (No `{:?}` of the `Option`: Debug formatting would come into
        // the module for this one message.)
        Some(other) => {
            return Err(bad(format!(
                "offset {other} does not match the stream's {expected}"
            )))
        }
        None => return Err(bad("offset missing or not a whole number".into())),
    }
    let state = get(raw, "state");
    if state.is_undefined() {
        return Err(bad("no state".into()));
    }
    Ok((state, schema_of(raw)))
}

/// A record's `schema` (absent in records written before it was kept: 1).
fn schema_of(raw: &JsValue) -> u32 {
    whole(&get(raw, "schema")).map_or(1, |n| n.min(u64::from(u32::MAX)) as u32)
}

/// Decodes stored events, keeping the dense run after `after`; the first
/// unreadable or missing one ends the run (the server sends the rest).
fn read_events(
    raw: &JsValue,
    stream: &str,
    after: u64,
    problems: &mut Vec<WasmError>,
) -> Vec<Event> {
    let Some(arr) = raw.dyn_ref::<js_sys::Array>() else {
        problems.push(WasmError::Storage(
            "getAll on events did not return an array".into(),
        ));
        return Vec::new();
    };
    // Their bytes in one buffer, copied in one crossing; a value that is
    // not bytes ends it (and the run).
    let joined = idb::join_bytes(arr);
    let bytes = Uint8Array::new(&joined.get(0)).to_vec();
    let ends = js_sys::Uint32Array::new(&joined.get(1)).to_vec();
    let not_bytes = (ends.len() < arr.length() as usize).then_some(Err("not bytes".to_string()));
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

fn read_outbox(raw: &JsValue, stream: &str, problems: &mut Vec<WasmError>) -> Vec<OutboxEntry> {
    let Some(arr) = raw.dyn_ref::<js_sys::Array>() else {
        problems.push(WasmError::Storage(
            "getAll on outbox did not return an array".into(),
        ));
        return Vec::new();
    };
    let mut out = Vec::with_capacity(arr.length() as usize);
    for (i, value) in arr.iter().enumerate() {
        let seq = whole(&get(&value, "seq")).and_then(|s| Seq::new(s).ok());
        let payload = get(&value, "payload").dyn_into::<Uint8Array>().ok();
        match (seq, payload) {
            (Some(seq), Some(p)) => out.push(OutboxEntry {
                seq,
                payload: p.to_vec(),
                discarded: get(&value, "discarded") == JsValue::TRUE,
                seen: Offset(whole(&get(&value, "seen")).unwrap_or(0)),
                time_ms: whole(&get(&value, "timeMs")).unwrap_or(0),
                schema: schema_of(&value),
                expires_ms: whole(&get(&value, "expiresMs")).unwrap_or(0),
            }),
            _ => problems.push(WasmError::Corrupt {
                key: format!("outbox/{stream} (entry {i})"),
                reason:
                    "expected {seq: number >= 1, payload: Uint8Array}; the intent cannot be sent"
                        .into(),
            }),
        }
    }
    sync_core::sort_by_seq(&mut out, |e| e.seq);
    out
}
