// The store's IndexedDB transactions, each one function (storage.rs says
// what each is for; the README's "Storage schema" gives the records).
//
// They are plain JS because that is what the browser's API is: written in
// Rust over web-sys, every request and every await of these transactions
// became part of the module (about a quarter of it, BENCHMARKS.md). What
// a store does with their answers is decided in Rust and in sync-core.
//
// Each resolves to plain data. A failure rejects with [what, cause] and
// aborts the transaction (nothing of it is stored); storage.rs makes the
// error. Records that do not have the shape this build writes are not
// failures: they come back in `problems` as [key, reason], and the
// transaction goes on with what can be trusted.
//
// Requests of one transaction are issued without awaiting each: IndexedDB
// runs them in order, and the transaction's outcome (`complete`, or `abort`
// with its `error`, e.g. `QuotaExceededError`) is the one result that
// matters: a batch of 1,000 writes is one round trip.
//
// Where a transaction needs one of sync-core's rules with what it read, it
// calls back `decide` (storage.rs): `decide([0, outbox])` is the outbox
// renumbered after an epoch reset; `decide([1, under, epoch, generation,
// storedEpoch])` whether an events write is stale.
//
// Outboxes cross as [nums, bytes, ends]: per entry six numbers (seq,
// discarded 0/1, seen, timeMs, schema, expiresMs), the payloads end to end,
// and where each ends.

const STORES = ['meta', 'streams', 'events', 'outbox', 'snapshots'];
const ABORTED = 'the transaction was aborted';

// A non-negative integer that a JS number holds exactly.
const whole = (v) => Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER;

const request = (r) =>
  new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });

// All keys [stream, n] with from <= n <= to.
const range = (stream, from, to = Infinity) => IDBKeyRange.bound([stream, from], [stream, to]);

/** Opens (or creates) database `name` at `version` with every store. It
 * closes itself when another tab upgrades the schema, so the upgrade is not
 * blocked forever. */
async function openDb(name, version) {
  const what = 'cannot open the database';
  let db;
  try {
    const req = indexedDB.open(name, version);
    req.onupgradeneeded = () => {
      const have = req.result.objectStoreNames;
      // A failure here aborts the version change, which rejects the open.
      for (const s of STORES) if (!have.contains(s)) req.result.createObjectStore(s);
    };
    db = await request(req);
  } catch (e) {
    if (typeof indexedDB === 'undefined') throw ['IndexedDB is not available in this context'];
    throw [what, e];
  }
  db.onversionchange = () => db.close();
  return db;
}

/** What a store opens with (storage.rs, `Db::open_stream`): database
 * `name`, this browser profile's client id (`clientId`, with `fresh` if
 * none is stored) and what is stored of `stream` (`readStream` from 0), as
 * `[db, clientIdAnswer, streamAnswer]`. */
export async function openStream(name, version, fresh, stream, fault) {
  const db = await openDb(name, version);
  try {
    return [db, await clientId(db, fresh, version, fault), await readStream(db, stream, 0)];
  } catch (e) {
    closeDb(db);
    throw e;
  }
}

/** Closes the connection (pending transactions finish first). */
export function closeDb(db) {
  db.onversionchange = null;
  db.close();
}

// Runs `body(t, tx)` in one transaction over `names` (readonly without
// `durability`), then awaits its outcome. `t.what` says what is under way
// (it names the failure); `t.end` what the outcome completes. An answer
// with `abort` set aborts the transaction and is the result. `fault` (test
// hooks only): the browser refuses the transaction with it.
async function run(db, names, durability, fault, body) {
  const t = { what: 'cannot start a transaction', end: '' };
  let tx;
  let done;
  try {
    tx = durability
      ? db.transaction(names, 'readwrite', { durability })
      : db.transaction(names, 'readonly');
    done = new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onabort = () => reject(tx.error || new DOMException(ABORTED, 'AbortError'));
    });
    done.catch(() => {});
    const out = await body(t, tx);
    t.what = t.end;
    if (out.abort) {
      tx.abort();
      await done.catch(() => {});
      return out;
    }
    if (fault) {
      tx.abort();
      await done.catch(() => {});
      throw fault;
    }
    await done;
    return out;
  } catch (e) {
    try {
      tx?.abort();
    } catch (_) {
      // Already finished.
    }
    throw [t.what, e];
  }
}

// The `streams` record of `stream` (`raw` as read): a record that does not
// have the stored shape is a problem, and reads as the empty one.
function record(raw, stream, problems) {
  if (raw === undefined) return { offset: 0, nextSeq: 1, snapshotOffset: 0, epoch: null, generation: 0 };
  const reason =
    typeof raw !== 'object' || raw === null
      ? 'not an object'
      : !whole(raw.offset)
        ? 'offset is not a whole number'
        : !whole(raw.nextSeq) || raw.nextSeq < 1
          ? 'nextSeq is not a whole number >= 1'
          : !whole(raw.snapshotOffset)
            ? 'snapshotOffset is not a whole number'
            : raw.epoch != null && typeof raw.epoch !== 'string'
              ? 'epoch is not a string'
              : raw.generation !== undefined && !whole(raw.generation)
                ? 'generation is not a whole number'
                : null;
  if (reason) {
    problems.push([`streams/${stream}`, reason]);
    return { offset: 0, nextSeq: 0, snapshotOffset: 0, epoch: null, generation: 0 };
  }
  return {
    offset: raw.offset,
    nextSeq: raw.nextSeq,
    snapshotOffset: raw.snapshotOffset,
    epoch: raw.epoch ?? null,
    generation: raw.generation ?? 0,
  };
}

// A record's `schema` (absent in records written before it was kept: 1).
const schemaOf = (v) => (whole(v.schema) ? Math.min(v.schema, 4294967295) : 1);

// Stored outbox entries in their crossing form; an entry without a seq or
// payload is a problem (its intent cannot be sent).
function outbox(values, stream, problems) {
  const nums = [];
  const payloads = [];
  values.forEach((v, i) => {
    if (v && whole(v.seq) && v.seq >= 1 && v.payload instanceof Uint8Array) {
      nums.push(
        v.seq,
        v.discarded === true ? 1 : 0,
        whole(v.seen) ? v.seen : 0,
        whole(v.timeMs) ? v.timeMs : 0,
        schemaOf(v),
        whole(v.expiresMs) ? v.expiresMs : 0,
      );
      payloads.push(v.payload);
    } else {
      problems.push([
        `outbox/${stream} (entry ${i})`,
        'expected {seq: number >= 1, payload: Uint8Array}; the intent cannot be sent',
      ]);
    }
  });
  return [new Float64Array(nums), ...join(payloads)];
}

// Writes entries given in the crossing form under [stream, seq], seq
// `first + i` for the i-th (or their own seq when `first` is 0).
function putOutbox(store, stream, [nums, bytes, ends], first) {
  for (let i = 0, a = 0; i < ends.length; i++) {
    const k = i * 6;
    const seq = first ? first + i : nums[k];
    const value = { seq, payload: bytes.slice(a, ends[i]) };
    if (nums[k + 1]) value.discarded = true;
    value.timeMs = nums[k + 3];
    value.seen = nums[k + 2];
    value.schema = nums[k + 4];
    if (nums[k + 5]) value.expiresMs = nums[k + 5];
    store.put(value, [stream, seq]);
    a = ends[i];
  }
}

// Values that are bytes, end to end, and where each ends; it stops at the
// first that is not bytes.
function join(values) {
  let n = 0;
  let len = 0;
  for (; n < values.length && values[n] instanceof Uint8Array; n++) len += values[n].length;
  const bytes = new Uint8Array(len);
  const ends = new Uint32Array(n);
  for (let i = 0, a = 0; i < n; i++) {
    bytes.set(values[i], a);
    a += values[i].length;
    ends[i] = a;
  }
  return [bytes, ends];
}

// Reads the record of `stream` in `tx` into `out.record` (and its epoch
// into `out.epoch`).
async function readRecord(t, tx, stream, out) {
  t.what = 'read streams';
  out.record = record(await request(tx.objectStore('streams').get(stream)), stream, out.problems);
  out.epoch = out.record.epoch;
}

// Reads the record and says whether it is under another numbering than
// `under` (`out.stale`; the transaction then only read).
async function stale(t, tx, stream, under, out) {
  await readRecord(t, tx, stream, out);
  out.stale = out.record.generation !== under;
  if (out.stale) t.end = 'read the outbox numbering';
  return out.stale;
}

// The whole outbox of `stream` in `tx`, in the crossing form.
async function readOutboxIn(t, tx, stream, out) {
  t.what = 'read outbox';
  return outbox(await request(tx.objectStore('outbox').getAll(range(stream, 1))), stream, out.problems);
}

/** This browser profile's client id: the stored one, or `fresh` stored in
 * its place (with the schema `version`), in one transaction (two tabs
 * opening at once agree on one id). Resolves to [id, the unreadable value
 * found] (undefined: none). */
function clientId(db, fresh, version, fault) {
  return run(db, ['meta'], 'strict', fault, async (t, tx) => {
    t.what = 'read meta.clientId';
    const meta = tx.objectStore('meta');
    const stored = await request(meta.get('clientId'));
    t.end = 'store the client id';
    if (typeof stored === 'string' && /^[0-9a-fA-F]{32}$/.test(stored)) return [stored];
    t.what = 'write meta';
    meta.put(fresh, 'clientId');
    meta.put(version, 'schemaVersion');
    return [fresh, stored];
  });
}

/** What a tab at offset `after` reads of what is stored (at open, `after`
 * is 0), in one read-only transaction (a consistent view even while another
 * tab writes): the record, the snapshot when it is ahead of `after`, the
 * events after it (`from`: the offset they follow), the outbox. */
export function readStream(db, stream, after) {
  return run(db, ['streams', 'events', 'outbox', 'snapshots'], null, null, async (t, tx) => {
    const out = { problems: [] };
    await readRecord(t, tx, stream, out);
    const rec = out.record;
    out.from = after;
    if (rec.snapshotOffset > after) {
      t.what = 'read snapshots';
      const raw = await request(tx.objectStore('snapshots').get(stream));
      const reason =
        typeof raw !== 'object' || raw === null
          ? 'missing or not an object'
          : !whole(raw.offset)
            ? 'offset missing or not a whole number'
            : raw.offset !== rec.snapshotOffset
              ? `offset ${raw.offset} does not match the stream's ${rec.snapshotOffset}`
              : raw.state === undefined
                ? 'no state'
                : null;
      if (reason) {
        // The events before the snapshot are gone: start from `after` (at
        // open, offset 0) and let the server send the history again.
        out.problems.push([`snapshots/${stream}`, reason]);
        if (after === 0) rec.snapshotOffset = 0;
      } else {
        out.snapshot = raw.state;
        out.schema = schemaOf(raw);
        out.from = rec.snapshotOffset;
      }
    }
    t.what = 'read events';
    const events = await request(tx.objectStore('events').getAll(range(stream, out.from + 1)));
    out.events = [...join(events), events.length];
    out.outbox = await readOutboxIn(t, tx, stream, out);
    t.end = 'read the stored stream';
    return out;
  });
}

/** Takes `ends.length` seqs and writes the intents (the crossing form, seq
 * unused) to the outbox, in one strict transaction: two tabs of one client
 * never hand out one seq twice. `floor` is the seq this tab would take next;
 * entries between it and the stored counter were written by other tabs and
 * come back as `others`. Under another numbering than `under`: nothing is
 * written, `stale`. */
export function allocate(db, stream, under, floor, intents, fault) {
  return run(db, ['streams', 'outbox'], 'strict', fault, async (t, tx) => {
    const out = { problems: [] };
    if (await stale(t, tx, stream, under, out)) return out;
    const rec = out.record;
    const store = tx.objectStore('outbox');
    const next = Math.max(rec.nextSeq, 1);
    out.others = [new Float64Array(0), new Uint8Array(0), new Uint32Array(0)];
    if (next > floor) {
      t.what = 'read outbox';
      out.others = outbox(await request(store.getAll(range(stream, floor, next - 1))), stream, out.problems);
    }
    out.first = Math.max(next, floor);
    t.what = 'write outbox';
    putOutbox(store, stream, intents, out.first);
    rec.nextSeq = out.first + intents[2].length;
    t.what = 'write streams';
    tx.objectStore('streams').put(rec, stream);
    t.end = 'write the outbox';
    return out;
  });
}

/** Writes a batch of confirmed events in one transaction: the events
 * (`bytes` end to end, each ending at `ends[i]`, at `offsets[i]`), the
 * outbox entries they confirm removed (`drop`), the offset moved (never
 * back: another tab may be ahead) and, given `snapshotOffset` > 0, a
 * snapshot of `state` (the events it covers deleted; they are not given).
 * `dropSnapshot`: a stored snapshot at that offset is dropped first, with
 * the events after it (-1: none); `epoch`, when given, is stored. Nothing
 * is written, and it is `stale`, when sync-core's rule says so (`decide`,
 * given `under`, `epoch` and what is stored); nothing is written either,
 * and `unclonable` is the exception,
 * when the state cannot be stored (storage.rs then writes the events that
 * snapshot would have covered instead). */
export function writeEvents(db, stream, decide, under, epoch, dropSnapshot, snapshotOffset, state, schema, bytes, ends, offsets, drop, offset, fault) {
  return run(db, ['streams', 'events', 'outbox', 'snapshots'], 'relaxed', fault, async (t, tx) => {
    const out = { problems: [] };
    await readRecord(t, tx, stream, out);
    const rec = out.record;
    out.stale = decide([1, under, epoch, rec.generation, rec.epoch]);
    if (out.stale) {
      t.end = 'read the outbox numbering';
      return out;
    }
    const events = tx.objectStore('events');
    const snapshots = tx.objectStore('snapshots');
    if (dropSnapshot === rec.snapshotOffset) {
      t.what = 'drop the snapshot';
      snapshots.delete(stream);
      events.delete(range(stream, 0));
      rec.snapshotOffset = 0;
    }
    let at = 0;
    if (snapshotOffset > rec.snapshotOffset) {
      // A state that cannot be cloned (a function inside, say) throws
      // here, synchronously.
      try {
        snapshots.put({ offset: snapshotOffset, state, timeMs: Date.now(), schema }, stream);
        at = snapshotOffset;
      } catch (e) {
        out.unclonable = e;
        out.abort = true;
        return out;
      }
    }
    t.what = 'write events';
    for (let i = 0, a = 0; i < ends.length; i++) {
      // Its own copy: a view would store the whole buffer.
      if (offsets[i] > at) events.put(bytes.slice(a, ends[i]), [stream, offsets[i]]);
      a = ends[i];
    }
    if (at > 0) {
      t.what = 'delete events';
      events.delete(range(stream, 0, at));
      rec.snapshotOffset = at;
    }
    t.what = 'delete outbox';
    const box = tx.objectStore('outbox');
    for (const seq of drop) box.delete([stream, seq]);
    rec.offset = Math.max(rec.offset, offset);
    if (epoch != null) rec.epoch = epoch;
    t.what = 'write streams';
    tx.objectStore('streams').put(rec, stream);
    t.end = 'write events';
    return out;
  });
}

/** The server's log has epoch `epoch`: when storage holds it already
 * nothing changes (`entries`: the outbox); when it holds `from`, the
 * stream's history is forgotten (events and snapshot deleted, offset 0) and
 * the outbox is written again as `decide` gives it back (sync-core decides
 * the numbering), as one more numbering; otherwise another tab
 * moved storage on: `stale`. One strict transaction. */
export function reset(db, stream, epoch, from, decide, fault) {
  return run(db, ['streams', 'events', 'outbox', 'snapshots'], 'strict', fault, async (t, tx) => {
    const out = { problems: [] };
    await readRecord(t, tx, stream, out);
    const rec = out.record;
    const box = tx.objectStore('outbox');
    out.entries = await readOutboxIn(t, tx, stream, out);
    out.generation = rec.generation;
    out.stale = false;
    if (rec.epoch === epoch) {
      t.end = 'read the outbox';
      return out;
    }
    if (from == null || rec.epoch !== from) {
      out.stale = true;
      t.end = 'read the outbox numbering';
      return out;
    }
    out.entries = decide([0, out.entries]);
    t.what = 'reset the stream';
    tx.objectStore('events').delete(range(stream, 0));
    box.delete(range(stream, 0));
    tx.objectStore('snapshots').delete(stream);
    t.what = 'write outbox';
    putOutbox(box, stream, out.entries, 0);
    const nums = out.entries[0];
    out.generation = rec.generation + 1;
    t.what = 'write streams';
    tx.objectStore('streams').put(
      {
        offset: 0,
        nextSeq: nums.length ? nums[nums.length - 6] + 1 : 1,
        snapshotOffset: 0,
        epoch,
        generation: out.generation,
      },
      stream,
    );
    t.end = 'reset the stream';
    return out;
  });
}

/** The whole outbox of `stream` (`stale` under another numbering than
 * `under`), in one read-only transaction. */
export function readOutbox(db, stream, under) {
  return run(db, ['streams', 'outbox'], null, null, async (t, tx) => {
    const out = { problems: [] };
    if (await stale(t, tx, stream, under, out)) return out;
    out.outbox = await readOutboxIn(t, tx, stream, out);
    t.end = 'read the outbox';
    return out;
  });
}

/** Marks the outbox entries of `seqs` discarded (entries already gone,
 * decided meanwhile, are skipped), in one strict transaction (`stale` under
 * another numbering than `under`). */
export function markDiscarded(db, stream, under, seqs, fault) {
  return run(db, ['streams', 'outbox'], 'strict', fault, async (t, tx) => {
    const out = { problems: [] };
    if (await stale(t, tx, stream, under, out)) return out;
    const box = tx.objectStore('outbox');
    for (const seq of seqs) {
      t.what = 'read outbox';
      const raw = await request(box.get([stream, seq]));
      if (typeof raw === 'object' && raw !== null) {
        raw.discarded = true;
        t.what = 'write outbox';
        box.put(raw, [stream, seq]);
      }
    }
    t.end = 'mark outbox entries discarded';
    return out;
  });
}
