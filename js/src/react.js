// React bindings for a Logsync store, on useSyncExternalStore: a component
// re-renders only when the slice of state (or status) it selected changes.

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useDebugValue,
  useEffect,
  useMemo,
  useRef,
  useSyncExternalStore,
} from 'react';
import { LogsyncError, describe } from './errors.js';

const StoreContext = createContext(null);
StoreContext.displayName = 'LogsyncStore';

const identity = (x) => x;

/** Makes `store` available to the hooks below it. */
export function LogsyncProvider({ store, children }) {
  if (!store || typeof store.getState !== 'function' || typeof store.subscribe !== 'function') {
    throw new LogsyncError('INVALID_REQUEST',
      `<LogsyncProvider store={…}> needs the store that createSyncStore() resolved to, got ${describe(store)}`);
  }
  return createElement(StoreContext.Provider, { value: store }, children);
}

/** The store given to the nearest <LogsyncProvider>. */
export function useLogsyncStore() {
  const store = useContext(StoreContext);
  if (store === null) {
    throw new LogsyncError('INVALID_REQUEST',
      'Logsync hooks must be used inside <LogsyncProvider store={store}>: wrap your app in it with the store from createSyncStore()');
  }
  return store;
}

/**
 * The store's state, or `selector(state)`. Re-renders only when the
 * selected value changes by `isEqual` (default Object.is), so selecting a
 * slice keeps unrelated changes from re-rendering the component.
 */
export function useSyncState(selector = identity, isEqual = Object.is) {
  const store = useLogsyncStore();
  const value = useSelected(store.subscribe, store.getState, selector, isEqual);
  useDebugValue(value);
  return value;
}

/** The store's `dispatch` (stable across renders). */
export function useDispatch() {
  return useLogsyncStore().dispatch;
}

/**
 * The sync status `{ online, offset, head, pending, lastError, clientId,
 * hydrated, behind, storage }`, or `selector(status)`; re-renders when it
 * changes. Reads `store.getStatus()` where the store has it: a store made by
 * the `logsync()` enhancer is copied by the enhancers around it, which turns
 * the `status` getter into a value.
 */
export function useSyncStatus(selector = identity, isEqual = Object.is) {
  const store = useLogsyncStore();
  const getStatus = useCallback(() => (typeof store.getStatus === 'function' ? store.getStatus() : store.status), [store]);
  const value = useSelected(store.onStatus, getStatus, selector, isEqual);
  useDebugValue(value);
  return value;
}

/** Shallow equality of two objects or arrays: a handy `isEqual`. */
export function shallowEqual(a, b) {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k) || !Object.is(a[k], b[k])) return false;
  }
  return true;
}

// useSyncExternalStore with a memoised selector: the selector runs once per
// new snapshot, and a result equal to the previous one is returned as the
// previous object, so React sees no change and skips the render. A new
// selector (an inline arrow is new on every render) always runs again, but
// an equal result still keeps the committed object.
function useSelected(subscribe, getSnapshot, selector, isEqual) {
  const committed = useRef(NONE);
  const getSelected = useMemo(() => {
    let memo = null; // { snapshot, selected }
    return () => {
      const snapshot = getSnapshot();
      if (memo !== null && Object.is(memo.snapshot, snapshot)) return memo.selected;
      let selected = selector(snapshot);
      const previous = memo !== null ? memo.selected : committed.current;
      if (previous !== NONE && isEqual(previous, selected)) selected = previous;
      memo = { snapshot, selected };
      return selected;
    };
  }, [getSnapshot, selector, isEqual]);
  const selected = useSyncExternalStore(subscribe, getSelected, getSelected);
  useEffect(() => {
    committed.current = selected;
  }, [selected]);
  return selected;
}

const NONE = Symbol('none');

/**
 * The result of a view store (createViewStore), or `selector(result)`;
 * re-renders when it changes. `undefined` until the result is known.
 */
export function useView(viewStore, selector = identity, isEqual = Object.is) {
  const value = useSelected(viewStore.subscribe, viewStore.getState, selector, isEqual);
  useDebugValue(value);
  return value;
}
