// A store that keeps the SyncStore contract in memory, to test adapters in
// isolation from syncing. Status changes and errors are driven by the test.
export function memoryStore(reducer, initialState) {
  let state = initialState;
  let status = Object.freeze({ online: false, offset: 0, head: 0, pending: 0, lastError: null, clientId: '0'.repeat(32) });
  const listeners = new Set();
  const statusListeners = new Set();
  const errorListeners = new Set();
  const rejectedListeners = new Set();
  const on = (set) => (fn) => {
    set.add(fn);
    return () => set.delete(fn);
  };
  return {
    stream: 'test/memory',
    getState: () => state,
    dispatch(action) {
      if (action === null || typeof action !== 'object' || typeof action.type !== 'string') {
        throw Object.assign(new Error('dispatch expects a plain object with a string "type"'), { name: 'LogsyncError', code: 'INVALID_REQUEST' });
      }
      const next = reducer(state, action);
      if (next !== state) {
        state = next;
        for (const fn of Array.from(listeners)) fn();
      }
      return action;
    },
    subscribe: on(listeners),
    onStatus: on(statusListeners),
    onError: on(errorListeners),
    onRejected: on(rejectedListeners),
    get status() {
      return status;
    },
    // test drivers
    setStatus(patch) {
      status = Object.freeze({ ...status, ...patch });
      for (const fn of Array.from(statusListeners)) fn(status);
    },
    emitError(err) {
      for (const fn of Array.from(errorListeners)) fn(err);
    },
    emitRejected(r) {
      for (const fn of Array.from(rejectedListeners)) fn(r);
    },
    listenerCount: () => listeners.size + statusListeners.size + errorListeners.size + rejectedListeners.size,
  };
}

// A view store (createViewStore's contract) in memory: the test sets the
// result and the status.
export function memoryViewStore(result) {
  let status = Object.freeze({ online: false, offset: 0, hydrated: false, lastError: null, needsToken: false });
  const listeners = new Set();
  const statusListeners = new Set();
  const on = (set) => (fn) => {
    set.add(fn);
    return () => set.delete(fn);
  };
  return {
    getState: () => result,
    subscribe: on(listeners),
    onStatus: on(statusListeners),
    get status() {
      return status;
    },
    ready: Promise.resolve(),
    setToken() {},
    close() {},
    // test drivers: a new result at an offset, as the real store does it
    // (the status first, then the result's listeners)
    setResult(next, offset = status.offset + 1) {
      result = next;
      this.setStatus({ offset });
      for (const fn of Array.from(listeners)) fn();
    },
    setStatus(patch) {
      status = Object.freeze({ ...status, ...patch });
      for (const fn of Array.from(statusListeners)) fn(status);
    },
    listenerCount: () => listeners.size + statusListeners.size,
  };
}
