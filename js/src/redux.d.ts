import type { StoreEnhancer } from 'redux';
import type { Action, StoreOptions, SyncStore } from './index.js';

/** Options of the `logsync()` enhancer: those of `createSyncStore` without the reducer and the initial state, which come from `createStore`/`configureStore`. */
export type LogsyncEnhancerOptions<A extends Action = Action> = Omit<StoreOptions<unknown, A>, 'reducer' | 'initialState'>;

/**
 * What the enhancer adds to the Redux store: everything of a Logsync store
 * but the Redux methods. `status` is left out on purpose: the enhancers
 * around this one copy the store, which turns the `status` getter into a
 * value; read `getStatus()`.
 */
export type LogsyncStoreExtension<A extends Action = Action> = Omit<
  SyncStore<unknown, A>,
  'getState' | 'dispatch' | 'subscribe' | 'replaceReducer' | 'status' | typeof Symbol.observable
>;

/** A Redux store enhancer that makes the store a Logsync store; it must be the last enhancer. */
export declare function logsync<A extends Action = Action>(
  options: LogsyncEnhancerOptions<A>,
): StoreEnhancer<LogsyncStoreExtension<A>>;
