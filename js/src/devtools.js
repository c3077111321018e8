// The bridge to the Redux DevTools browser extension, through its
// documented `connect()` API (`init`, `send`, `subscribe`, `unsubscribe`).
// Each action shows up when it is dispatched and again for each step of its
// sync fate, the type saying which:
//
//   todo/added (pending)                   dispatched, waiting for the server
//   todo/added (local)                     kept local by the store's `filter`
//   todo/added (confirmed at 12)           in the log; 12 = confirmed offset
//   todo/added (rebased onto 15)           recomputed on a newer confirmed state
//   todo/added (rejected: FORBIDDEN)       refused; rolled back
//   @@logsync/remote (3 events, offset 15) events of other devices
//   @@logsync/hydrated (offset 10)         the stored state came in
//
// Time travel (JUMP_TO_STATE, JUMP_TO_ACTION) shows the chosen state as the
// store's state to the app, and nothing else: nothing is dispatched, sent or
// stored, and the log goes on underneath. The next dispatch of the app, or
// COMMIT, RESET or ROLLBACK in the monitor, returns to the live state.
// Dispatching from the monitor is switched off: it would sync the action.
// Hand-written (no library): the extension's API is four methods, and the
// sync fates are this package's own idea.

/** The extension when the page has it (or the one passed), else null. */
export function findExtension(option) {
  if (option === false || option === undefined || option === null) return null;
  if (typeof option === 'object' && option.extension !== undefined) {
    return option.extension !== null && typeof option.extension.connect === 'function' ? option.extension : null;
  }
  const ext = typeof window !== 'undefined' ? window.__REDUX_DEVTOOLS_EXTENSION__ : undefined;
  return ext !== undefined && ext !== null && typeof ext.connect === 'function' ? ext : null;
}

/**
 * @param {object} ext the extension (`window.__REDUX_DEVTOOLS_EXTENSION__`)
 * @param {{ name?: string }} options
 * @param {{ stream: string, getState(): unknown, travel(state: unknown | null): void, report(err: unknown): void }} store
 */
export function devtoolsBridge(ext, options, store) {
  const conn = ext.connect({
    name: options.name ?? `logsync ${store.stream}`,
    features: {
      pause: false,
      lock: false,
      persist: false,
      export: true,
      import: false,
      jump: true,
      skip: false,
      reorder: false,
      dispatch: false,
      test: false,
    },
  });
  conn.init(store.getState());
  const send = (action) => {
    try {
      conn.send(action, store.getState());
    } catch (err) {
      store.report(err);
    }
  };
  const unsubscribe = conn.subscribe((message) => {
    if (message === null || typeof message !== 'object' || message.type !== 'DISPATCH' || !message.payload) return;
    switch (message.payload.type) {
      case 'JUMP_TO_STATE':
      case 'JUMP_TO_ACTION': {
        let state;
        try {
          state = typeof message.state === 'string' ? JSON.parse(message.state) : message.state;
        } catch (err) {
          store.report(err);
          return;
        }
        store.travel(state);
        return;
      }
      case 'COMMIT':
      case 'RESET':
      case 'ROLLBACK':
        store.travel(null);
        conn.init(store.getState());
        return;
      default:
    }
  });
  const typeOf = (action) => (action !== null && typeof action === 'object' && typeof action.type === 'string' ? action.type : '?');
  return {
    dispatched(action, local) {
      send({ ...action, type: `${typeOf(action)} (${local ? 'local' : 'pending'})` });
    },
    intent(event) {
      const t = typeOf(event.action);
      const base = { seq: event.seq, action: event.action };
      switch (event.type) {
        case 'confirmed':
          send({ type: `${t} (confirmed at ${event.offset})`, ...base, offset: event.offset });
          break;
        case 'rebased':
          send({ type: `${t} (rebased onto ${event.offset})`, ...base, offset: event.offset });
          break;
        case 'rejected':
          send({ type: `${t} (rejected: ${event.code})`, ...base, code: event.code, message: event.message });
          break;
        case 'discarded':
          send({ type: `${t} (discarded)`, ...base });
          break;
        case 'pending':
          if (event.restored) send({ type: `${t} (pending, restored)`, ...base });
          break;
        default:
      }
    },
    remote(count, offset) {
      send({ type: `@@logsync/remote (${count} event${count === 1 ? '' : 's'}, offset ${offset})`, count, offset });
    },
    hydrated(offset) {
      send({ type: `@@logsync/hydrated (offset ${offset})`, offset });
    },
    close() {
      if (typeof unsubscribe === 'function') unsubscribe();
      else if (typeof conn.unsubscribe === 'function') conn.unsubscribe();
    },
  };
}
