//! A size probe, not a product: a wasm module holding only sync-core's
//! client, replica, storage queue and codec, with every effect, storage
//! job and answer crossing to JS, so that JS would do all I/O. It measures
//! what such a module weighs (README.md here; BENCHMARKS.md, "What the
//! 60,000 B goal needs, measured again").
use js_sys::{Array, Function, Uint8Array};
use sync_core::*;
use wasm_bindgen::prelude::*;

#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

struct R {
    f: Function,
}

fn err(e: JsValue) -> ReduceError {
    ReduceError(e.as_string().unwrap_or_else(|| "threw".into()))
}

impl Reducer for R {
    type State = JsValue;
    type Action = JsValue;
    fn decode(&self, payload: &[u8]) -> Result<JsValue, ReduceError> {
        let text = core::str::from_utf8(payload).map_err(|_| ReduceError("not UTF-8".into()))?;
        js_sys::JSON::parse(text).map_err(err)
    }
    fn reduce(&self, state: &JsValue, action: &JsValue) -> Result<JsValue, ReduceError> {
        self.f.call2(&JsValue::NULL, state, action).map_err(err)
    }
    fn reduce_meta(
        &self,
        state: &JsValue,
        action: &JsValue,
        meta: &Meta<'_>,
    ) -> Result<JsValue, ReduceError> {
        let m = Array::of4(
            &meta.offset.map_or(JsValue::NULL, |o| (o.0 as f64).into()),
            &meta.client_id.to_hex().into(),
            &meta.subject.map_or(JsValue::NULL, JsValue::from_str),
            &meta.seq.map_or(JsValue::NULL, |s| (s.get() as f64).into()),
        );
        self.f.call3(&JsValue::NULL, state, action, &m).map_err(err)
    }
    fn decode_state(&self, json: &[u8]) -> Result<JsValue, ReduceError> {
        self.decode(json)
    }
    fn encode_state(&self, state: &JsValue) -> Option<Vec<u8>> {
        js_sys::JSON::stringify(state)
            .ok()
            .and_then(|s| s.as_string())
            .map(String::into_bytes)
    }
}

fn thrown(e: CoreError) -> JsValue {
    let a = Array::of2(&e.code().as_str().into(), &e.to_string().into());
    a.into()
}

fn n(v: u64) -> JsValue {
    (v as f64).into()
}

fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

fn entries(list: &[OutboxEntry]) -> JsValue {
    list.iter()
        .map(|e| {
            let a = Array::new();
            for v in [
                n(e.seq.get()),
                bytes(&e.payload),
                e.discarded.into(),
                n(e.seen.0),
                n(e.time_ms),
                n(e.schema.into()),
                n(e.expires_ms),
            ] {
                a.push(&v);
            }
            JsValue::from(a)
        })
        .collect::<Array>()
        .into()
}

fn entries_from(v: &JsValue) -> Vec<OutboxEntry> {
    let a: &Array = v.unchecked_ref();
    a.iter()
        .filter_map(|e| {
            let e: Array = e.unchecked_into();
            let num = |i| e.get(i).as_f64().unwrap_or(0.0) as u64;
            Some(OutboxEntry {
                seq: Seq::new(num(0)).ok()?,
                payload: Uint8Array::new(&e.get(1)).to_vec(),
                discarded: e.get(2).is_truthy(),
                seen: Offset(num(3)),
                time_ms: num(4),
                schema: num(5) as u32,
                expires_ms: num(6),
            })
        })
        .collect()
}

fn effects(list: Vec<Effect>) -> Array {
    let out = Array::new();
    for e in list {
        let v: JsValue = match e {
            Effect::Send(m) => Array::of2(&0.into(), &bytes(&m.encode())).into(),
            Effect::StateChanged => 1.into(),
            Effect::Rejected {
                seq,
                payload,
                code,
                message,
            } => Array::of5(
                &2.into(),
                &n(seq.get()),
                &bytes(&payload),
                &code.as_str().into(),
                &message.into(),
            )
            .into(),
            Effect::ReducerErrors(list) => {
                let a = Array::of1(&3.into());
                for (o, m) in list {
                    a.push(&n(o.0));
                    a.push(&m.into());
                }
                a.into()
            }
            Effect::EpochReset { previous, epoch } => {
                Array::of3(&4.into(), &previous.0.into(), &epoch.0.into()).into()
            }
            Effect::Diverged { offset, .. } => Array::of2(&5.into(), &n(offset.0)).into(),
            Effect::Agreed { .. } => 6.into(),
            Effect::Outdated { message } => Array::of2(&7.into(), &message.into()).into(),
            Effect::ServerError { code, message } => {
                Array::of3(&8.into(), &code.as_str().into(), &message.into()).into()
            }
            Effect::HeadChanged(o) => Array::of2(&9.into(), &n(o.0)).into(),
            Effect::PersistEvents { .. }
            | Effect::AdoptedSnapshot { .. }
            | Effect::DropFromOutbox(_)
            | Effect::MarkDiscarded(_)
            | Effect::StoreEpoch(_)
            | Effect::ReloadOutbox { .. } => continue,
        };
        out.push(&v);
    }
    out
}

#[wasm_bindgen]
pub struct Core {
    client: SyncClient<R>,
    outbox: Outbox<JsValue>,
    work: Option<(usize, Work<JsValue>)>,
}

#[wasm_bindgen]
impl Core {
    #[wasm_bindgen(constructor)]
    pub fn new(
        stream: String,
        client: &str,
        f: Function,
        initial: JsValue,
        offset: f64,
        next_seq: f64,
        epoch: Option<String>,
        every: f64,
        events: &[u8],
        ends: &[u32],
    ) -> Result<Core, JsValue> {
        let stream = StreamName::new(stream).map_err(thrown)?;
        let id = ClientId::from_hex(client).map_err(thrown)?;
        let seq = Seq::new(next_seq as u64).map_err(thrown)?;
        let mut replica = Replica::restore(
            stream,
            id,
            R { f },
            initial.clone(),
            Offset(offset as u64),
            seq,
        );
        let mut list = Vec::new();
        let mut a = 0;
        for &b in ends {
            list.push(
                postcard::from_bytes::<Event>(&events[a..b as usize])
                    .map_err(|e| JsValue::from(e.to_string()))?,
            );
            a = b as usize;
        }
        replica.apply_events(&list).map_err(thrown)?;
        Ok(Core {
            client: SyncClient::new(replica, epoch.map(Epoch), initial),
            outbox: Outbox::new(Offset(offset as u64), every as u64, 0),
            work: None,
        })
    }

    pub fn state(&self) -> JsValue {
        self.client.replica().state().clone()
    }

    pub fn connected(&mut self, token: Option<String>) -> Vec<u8> {
        let m = self.client.connected(token).encode();
        self.outbox.connected(&self.client);
        m
    }

    pub fn disconnected(&mut self) {
        self.client.disconnected();
        self.outbox.disconnected();
    }

    fn carry(&mut self, list: Vec<Effect>) -> Array {
        let mut rest = Vec::new();
        for e in list {
            if let Some(e) = self.outbox.effect(e, &self.client) {
                rest.push(e);
            }
        }
        effects(rest)
    }

    pub fn handle(&mut self, frame: &[u8]) -> Result<Array, JsValue> {
        let msg = ServerMsg::decode(frame, 16 << 20).map_err(thrown)?;
        let list = self.client.handle(msg).map_err(thrown)?;
        Ok(self.carry(list))
    }

    pub fn flush(&mut self) -> Array {
        let l = self.client.flush();
        self.carry(l)
    }

    pub fn expire(&mut self, now: f64) -> Array {
        let l = self.client.expire(now as u64);
        self.carry(l)
    }

    pub fn discard(&mut self, seq: f64) -> Result<Array, JsValue> {
        let l = self
            .client
            .discard(Seq::new(seq as u64).map_err(thrown)?)
            .map_err(thrown)?;
        Ok(self.carry(l))
    }

    pub fn adopt(&mut self, entries: JsValue) -> Array {
        let mut l = Vec::new();
        for e in entries_from(&entries) {
            l.extend(self.client.adopt_as(e, true));
        }
        self.carry(l)
    }

    pub fn dispatch(
        &mut self,
        payload: Vec<u8>,
        action: JsValue,
        next: JsValue,
        read: bool,
        seen: f64,
        time: f64,
        expires: f64,
    ) {
        let local = self.client.replica_mut().dispatch_folded(
            payload.clone(),
            action,
            Some((next, read)),
            Offset(seen as u64),
            time as u64,
        );
        let intent = NewIntent {
            payload,
            seen: Offset(seen as u64),
            time_ms: time as u64,
            schema: 1,
            expires_ms: expires as u64,
        };
        self.outbox.dispatched(local, intent);
    }

    /// The next storage work as JS: [kind, ...].
    pub fn next_work(&mut self) -> JsValue {
        let Some((k, work)) = self.outbox.next(&self.client) else {
            return JsValue::NULL;
        };
        let v: JsValue = match &work {
            Work::Alloc {
                intents,
                floor,
                under,
            } => {
                let list: Vec<OutboxEntry> = intents.iter().map(|i| i.entry(*floor)).collect();
                Array::of4(&0.into(), &entries(&list), &n(floor.get()), &n(*under)).into()
            }
            Work::Write { write, under } => {
                let mut b = Vec::new();
                let ends = Array::new();
                for e in &write.events {
                    b.extend_from_slice(&sync_core::protocol::encode_event(e));
                    ends.push(&n(b.len() as u64));
                }
                let a = Array::of5(&1.into(), &bytes(&b), &ends, &n(write.offset.0), &n(*under));
                a.push(
                    &write
                        .snapshot
                        .as_ref()
                        .map_or(JsValue::NULL, |(o, s)| Array::of2(&n(o.0), s).into()),
                );
                a.push(
                    &write
                        .drop_seqs
                        .iter()
                        .map(|s| n(s.get()))
                        .collect::<Array>(),
                );
                a.push(
                    &write
                        .epoch
                        .as_ref()
                        .map_or(JsValue::NULL, |e| e.0.clone().into()),
                );
                a.into()
            }
            Work::Reset { epoch, from } => Array::of3(
                &2.into(),
                &epoch.0.clone().into(),
                &from.as_ref().map_or(JsValue::NULL, |e| e.0.clone().into()),
            )
            .into(),
            Work::Reload { under } => Array::of2(&3.into(), &n(*under)).into(),
            Work::Discard { seqs, under } => Array::of3(
                &4.into(),
                &seqs.iter().map(|s| n(s.get())).collect::<Array>(),
                &n(*under),
            )
            .into(),
            Work::Follow { after, under } => Array::of3(&5.into(), &n(after.0), &n(*under)).into(),
        };
        self.work = Some((k, work));
        v
    }

    /// Storage's answer to the work: [kind, ...].
    pub fn done(&mut self, answer: Array) -> Result<Array, JsValue> {
        let (k, work) = self.work.take().ok_or_else(|| JsValue::from("no work"))?;
        let kind = answer.get(0).as_f64().unwrap_or(0.0) as u32;
        let finished = if kind == 5 {
            let ev = Uint8Array::new(&answer.get(2)).to_vec();
            let mut events = Vec::new();
            let mut a = 0;
            for e in Array::from(&answer.get(3)).iter() {
                let b = e.as_f64().unwrap_or(0.0) as usize;
                if let Ok(e) = postcard::from_bytes::<Event>(&ev[a..b]) {
                    events.push(e);
                }
                a = b;
            }
            let stored = Stored {
                offset: Offset(answer.get(1).as_f64().unwrap_or(0.0) as u64),
                epoch: answer.get(4).as_string().map(Epoch),
                snapshot_offset: Offset(0),
                snapshot: None,
                events,
                outbox: entries_from(&answer.get(5)),
            };
            self.outbox.followed(k, stored, &mut self.client)
        } else {
            let done = match kind {
                0 => Done::Alloc {
                    first: Seq::new(answer.get(1).as_f64().unwrap_or(1.0) as u64)
                        .map_err(thrown)?,
                    others: entries_from(&answer.get(2)),
                },
                1 => Done::Written,
                2 => Done::Reload(entries_from(&answer.get(1))),
                3 => Done::Reset {
                    entries: entries_from(&answer.get(1)),
                    generation: answer.get(2).as_f64().unwrap_or(0.0) as u64,
                },
                _ => Done::Stale {
                    stored: answer.get(1).as_string().map(Epoch),
                },
            };
            self.outbox.finish(k, work, done, &mut self.client)
        };
        let out = self.carry(finished.effects);
        out.push(&finished.missing.map_or(JsValue::NULL, |s| n(s.get())));
        out.push(&finished.reconnect.into());
        out.push(&finished.tell_tabs.into());
        Ok(out)
    }

    pub fn renumber(list: JsValue) -> JsValue {
        entries(&sync_core::outbox::renumber(entries_from(&list)))
    }
}
