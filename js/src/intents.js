// The intent lifecycle of `store.onIntent`, derived from what the wasm
// store already reports: its pending list (`pending()`: this tab's actions
// in order, each with its seq once its IndexedDB write is done), its status
// (online, confirmed offset) and its rejections. Nothing here decides
// anything about the log; it only tells an app what became of each of its
// actions.
//
// An action's events, in order:
//   pending    dispatched (seq null until the store has written it), or
//              found in storage when the store opened (`restored: true`)
//   sent       handed to the open connection (the store is online and the
//              action has its seq); reported at the latest together with
//              its fate
//   rebased    events of other devices (or tabs) were placed before it; its
//              effect was recomputed on the new confirmed state (`offset`);
//              any number of times, also when the store hydrates, and also
//              before `sent` (an action not pushed yet is rebased too)
//   confirmed  in the log; `offset` is the confirmed offset once its event
//              was applied: its event's offset, or a later one when several
//              events arrived at once
//   rejected   refused by the server (`code`, `message`), or, for an action
//              dispatched before the store hydrated, refused when it was
//              handed to the opened store (e.g. REDUCER, PAYLOAD_TOO_LARGE)
//   discarded  withdrawn with `store.discard(seq)`; one already sent may
//              have been taken by the server all the same (the withdrawal
//              goes out after the push): it is held until that is known —
//              `confirmed` if an event this tab's other intents do not
//              account for arrives (the store does not say whose events
//              are whose: the first such event is taken for it), else
//              `discarded` once the store has nothing left to decide
//              (`settled`)

const same = (a, b) => a === b;

/**
 * @param {(event: object) => void} emit
 */
export function intentTracker(emit) {
  // Open intents in dispatch order: { text, action, seq, sent }.
  let entries = [];
  let rejections = []; // { text, code, message }, until matched
  const discarded = new Set();
  // Discarded after they were sent, in seq order: the server may take them
  // all the same. Decided by the next unexplained event, or by `settled`.
  let withdrawing = [];
  let offset = null; // the confirmed offset at the last reconcile
  let renumbering = false; // the log's epoch changed: seqs are about to be renumbered

  const event = (type, entry, extra) => {
    emit(Object.freeze({ type, seq: entry.seq, action: entry.action, ...extra }));
  };

  // After an epoch change the store numbers its pending intents anew
  // (from 1, so old and new seqs overlap): once the list shows other seqs
  // than the open intents have, each open intent takes the seq of the next
  // listed action with its JSON, in order. One not listed any more was
  // decided before the renumbering.
  const renumber = (list) => {
    const written = list.filter((item) => item.seq !== null);
    const seqs = new Set(written.map((item) => item.seq));
    const open = entries.filter((e) => e.seq !== null);
    if (open.length === written.length && open.every((e) => seqs.has(e.seq))) return;
    let next = 0;
    for (const entry of open) {
      let j = next;
      while (j < written.length && JSON.stringify(written[j].action) !== entry.text) j++;
      if (j === written.length) {
        entry.decided = true;
      } else {
        entry.seq = written[j].seq;
        next = j + 1;
      }
    }
    renumbering = false;
  };

  // What became of an intent that left the pending list: discarded,
  // rejected (a rejection with its JSON came), or else confirmed.
  const fateOf = (entry) => {
    if (entry.seq !== null && discarded.has(entry.seq)) {
      discarded.delete(entry.seq);
      return { type: entry.sent ? 'withdrawing' : 'discarded' };
    }
    const i = rejections.findIndex((r) => same(r.text, entry.text));
    if (i >= 0) {
      const [r] = rejections.splice(i, 1);
      return { type: 'rejected', extra: { code: r.code, message: r.message } };
    }
    return { type: 'confirmed' };
  };

  return {
    /** An action of this tab was dispatched (text: its JSON). */
    dispatched(text, action) {
      const entry = { text, action, seq: null, sent: false };
      entries.push(entry);
      event('pending', entry);
    },

    /** Actions found in storage (or pending when tracking began). */
    adopt(list, restored) {
      const known = new Set(entries.map((e) => e.seq));
      const adopted = [];
      for (const item of list) {
        if (item.seq === null || known.has(item.seq)) continue;
        adopted.push({ text: JSON.stringify(item.action), action: item.action, seq: item.seq, sent: false });
      }
      entries = [...adopted, ...entries];
      for (const entry of adopted) event('pending', entry, restored ? { restored: true } : undefined);
    },

    /** An action dispatched before hydration could not be handed over. */
    failed(text, err) {
      const i = entries.findIndex((e) => e.seq === null && e.text === text);
      if (i < 0) return;
      const [entry] = entries.splice(i, 1);
      event('rejected', entry, { code: err.code ?? 'INTERNAL', message: err.message ?? String(err) });
    },

    /**
     * The store hydrated: the actions dispatched before were handed over,
     * `failures` ({ text, error }) could not be (rejected), the others were
     * folded onto the restored state (`moved`: it is not the initial state).
     * Actions a listener dispatches meanwhile were not rebased.
     */
    hydrated(status, moved, failures = []) {
      offset = status.offset;
      const before = [...entries];
      for (const { text, error } of failures) this.failed(text, error);
      if (!moved) return;
      for (const entry of before) {
        if (entry.seq === null && entries.includes(entry)) event('rebased', entry, { offset: status.offset });
      }
    },

    /** The server refused one of this tab's actions ({ action, code, message }). */
    rejected(rejection) {
      rejections.push({ text: JSON.stringify(rejection.action), code: rejection.code, message: rejection.message });
    },

    /**
     * The server has a new log (EPOCH_CHANGED): the store renumbers its
     * pending intents, so an open intent whose seq vanishes is looked for,
     * in order and by its JSON, among the seqs that appear, rather than
     * taken as decided.
     */
    epochChanged() {
      renumbering = true;
    },

    /** `store.discard(seq)` is called (`false`: it failed). */
    discarded(seq, yes = true) {
      if (yes) discarded.add(seq);
      else discarded.delete(seq);
    },

    /**
     * Compares the store's pending list with the open intents; returns how
     * many events of others the confirmed offset moved past (0 if none),
     * which it first tells `remote(count)`, before the rebases they caused.
     * @param {{ online: boolean, offset: number }} status
     * @param {{ seq: number | null, action: unknown }[]} list
     * @param {(count: number) => void} [remote]
     */
    reconcile(status, list, remote) {
      if (renumbering) renumber(list);
      const listed = new Set();
      const fresh = [];
      let unwritten = 0;
      const known = new Set();
      for (const e of entries) if (e.seq !== null) known.add(e.seq);
      for (const item of list) {
        if (item.seq === null) unwritten++;
        else {
          listed.add(item.seq);
          if (!known.has(item.seq)) fresh.push(item);
        }
      }
      // Entries without a seq, in dispatch order: the last `unwritten` of
      // them are still being written; before those come the ones that got
      // a seq since (the `fresh` ones, in order), and before those any that
      // were written and decided before this reconcile saw their seq.
      const unassigned = entries.filter((e) => e.seq === null);
      const writtenCount = unassigned.length - unwritten;
      const early = Math.max(0, writtenCount - fresh.length);
      const done = new Set(unassigned.slice(0, early));
      let f = 0;
      if (writtenCount < fresh.length) {
        // Listed actions this tracker never saw dispatched: adopt them.
        const extra = fresh.slice(0, fresh.length - writtenCount);
        f = extra.length;
        this.adopt(extra, false);
      }
      for (const entry of unassigned.slice(early, writtenCount)) {
        const item = fresh[f++];
        if (item === undefined) break;
        entry.seq = item.seq;
      }

      const decided = [];
      const open = [];
      for (const entry of entries) {
        const gone = done.has(entry) || entry.decided === true || (entry.seq !== null && !listed.has(entry.seq));
        if (gone) decided.push([entry, fateOf(entry)]);
        else open.push(entry);
      }
      entries = open;
      rejections = [];
      const confirmedNow = decided.filter(([, f]) => f.type === 'confirmed').length;
      const before = offset;
      offset = status.offset;
      let others = before !== null && offset > before ? Math.max(0, offset - before - confirmedNow) : 0;
      // A sent intent discarded since: the server may have taken it (its
      // event is then one the confirmed ones do not account for).
      for (const [entry, f] of decided) if (f.type === 'withdrawing') withdrawing.push(entry);
      const taken = withdrawing.slice(0, others);
      withdrawing = withdrawing.slice(taken.length);
      others -= taken.length;
      // Events of others first: they are at or before the offset the
      // decided intents are reported at.
      if (others > 0 && remote) remote(others);
      for (const [entry, f] of decided) {
        if (f.type === 'withdrawing') continue;
        if (f.type !== 'discarded' && !entry.sent) event('sent', entry);
        event(f.type, entry, f.type === 'confirmed' ? { offset } : f.extra);
      }
      for (const entry of taken) event('confirmed', entry, { offset });
      // The intents open at this step, as they are now: a listener may
      // dispatch (and so open more) while it hears them.
      const stepOpen = [...entries];
      for (const entry of stepOpen) {
        if (status.online && entry.seq !== null && !entry.sent) {
          entry.sent = true;
          event('sent', entry);
        }
      }
      if (others > 0) for (const entry of stepOpen) event('rebased', entry, { offset });
      return others;
    },

    /**
     * The store has nothing of this tab left to decide (its `synced()`
     * resolved): a discarded intent whose event did not come was
     * withdrawn. Call after a last `reconcile`.
     */
    settled() {
      const now = withdrawing;
      withdrawing = [];
      for (const entry of now) event('discarded', entry);
    },

    /** Tells `listener` alone `pending` for each open intent (a first listener, when tracking began earlier). */
    replay(listener) {
      for (const entry of [...entries]) {
        listener(Object.freeze({ type: 'pending', seq: entry.seq, action: entry.action }));
      }
    },

    /** Whether a discarded intent waits for `settled`. */
    get withdrawing() {
      return withdrawing.length > 0;
    },

    get size() {
      return entries.length;
    },
  };
}
