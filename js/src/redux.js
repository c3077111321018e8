// The Redux store enhancer: Redux's `createStore` and Redux Toolkit's
// `configureStore` make their store through Logsync, so middleware and the
// enhancers before it wrap a synced store as usual.

import { createLogsyncStore, INIT_ACTION_TYPE, LogsyncError } from './index.js';
import { describe } from './errors.js';

/**
 * A Redux store enhancer: `createStore(reducer, preloadedState,
 * logsync(options))`, or in Redux Toolkit's `configureStore`,
 * `enhancers: (getDefault) => getDefault().concat(logsync(options))`. The
 * store it makes is the one `createLogsyncStore` makes, with the reducer
 * and preloaded state Redux hands it (the preloaded state, passed once
 * through the reducer with `@@logsync/INIT` as Redux does, is the initial
 * state of the log). It creates the store itself, so it must come last
 * among the enhancers; middleware and the enhancers before it wrap it.
 *
 * @param {Omit<import('./index.js').StoreOptions<any, any>, 'reducer' | 'initialState'>} options
 */
export function logsync(options) {
  if (options === null || typeof options !== 'object') {
    throw new LogsyncError('INVALID_REQUEST', `logsync(options) expects an options object { url, stream, dbName }, got ${describe(options)}`);
  }
  if (options.reducer !== undefined || options.initialState !== undefined) {
    throw new LogsyncError('INVALID_REQUEST', 'logsync(options): the reducer and the preloaded state come from createStore/configureStore; leave reducer and initialState out of these options');
  }
  return () => (reducer, preloadedState) => {
    // As Redux does, the preloaded state goes through the reducer once, so
    // that combineReducers fills in the slices it lacks.
    let initialState = preloadedState;
    if (preloadedState !== undefined && typeof reducer === 'function') {
      initialState = reducer(preloadedState, { type: INIT_ACTION_TYPE });
      if (initialState === undefined) {
        throw new LogsyncError('INVALID_REQUEST', `the reducer returned undefined for the preloaded state and { type: "${INIT_ACTION_TYPE}" }; return the state it was given when an action does not apply`);
      }
    }
    return createLogsyncStore({ ...options, reducer, initialState });
  };
}
