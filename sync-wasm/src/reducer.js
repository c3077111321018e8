// The JS half of reducer.rs: the `meta` a JS reducer receives, and a
// batch of events folded in one call.

// The reducer's meta: a confirmed event's, or a pending intent's.
let read = false;
export function meta(offset, clientId, subject, seq, time, seen, schema) {
  if (offset !== undefined) return { offset, clientId, subject: subject ?? null, seq, time, seen, schema };
  // Pending: whether the reducer reads it decides whether its confirmation
  // folds it again (with the server's values). One object, its values set
  // per call (valid during the reducer's call), as in the package.
  read = false;
  pending.clientId = clientId;
  pending.subject = subject ?? null;
  pending.time = time;
  pending.seen = seen;
  pending.schema = schema;
  return watched;
}
const pending = { clientId: null, subject: null, time: 0, seen: 0, schema: 1 };
const watched = Object.freeze({
  get offset() { read = true; return null; },
  get clientId() { read = true; return pending.clientId; },
  get subject() { read = true; return pending.subject; },
  get seq() { read = true; return null; },
  get time() { read = true; return pending.time; },
  get seen() { read = true; return pending.seen; },
  // The same when confirmed: not a read that needs a second fold.
  get schema() { return pending.schema; },
});
export function metaRead() { return read; }
// A batch of events folded in one call (reducer.rs, `fold_events`), from
// event `from` on: the payloads' bytes end to end and where each ends (an
// empty one is not this version's UTF-8: folded alone); `ascii`: every byte
// is below 0x80, so byte offsets are the text's (BOMs are kept, as
// wasm-bindgen's own decoding keeps them); `nums`: per event its offset,
// seq, time, seen, and its client's and subject's index in `clients` and
// `subjects`. Stops at the first event it cannot fold: [state, index,
// kind, thrown], kind 1: not JSON here (folded alone, for its upcast or
// error), 2: the reducer threw `thrown`, 3: it returned undefined; kind 0
// and index = length when all are folded.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
export function foldMany(reducer, state, bytes, ends, ascii, from, nums, clients, subjects, schema) {
  const text = ascii ? utf8.decode(bytes) : '';
  const meta = { offset: 0, clientId: null, subject: null, seq: 0, time: 0, seen: 0, schema };
  let a = from > 0 ? ends[from - 1] : 0;
  for (let i = from; i < ends.length; i++) {
    const b = ends[i];
    if (b === a) return [state, i, 1];
    let action;
    try {
      action = JSON.parse(ascii ? text.slice(a, b) : utf8.decode(bytes.subarray(a, b)));
    } catch (_) {
      return [state, i, 1];
    }
    a = b;
    // One meta object for the batch, its fields set per event: it is
    // valid during the reducer's call (js/README.md, "meta").
    const k = i * 6;
    meta.offset = nums[k];
    meta.clientId = clients[nums[k + 4]];
    meta.subject = subjects[nums[k + 5]];
    meta.seq = nums[k + 1];
    meta.time = nums[k + 2];
    meta.seen = nums[k + 3];
    let next;
    try {
      next = reducer(state, action, meta);
    } catch (e) {
      return [state, i, 2, e];
    }
    if (next === undefined) return [state, i, 3];
    state = next;
  }
  return [state, ends.length, 0];
}
