import type { ReactNode, ReactElement } from 'react';
import type { Action, Status, SyncStore, ViewStore } from './index.js';

/**
 * What the hooks need of a store: a Logsync store, or a Redux store made
 * with the `logsync()` enhancer (`logsync/redux`), which has no `status`
 * getter (the hooks read `getStatus()`) and Redux's own `dispatch` and
 * `replaceReducer`.
 */
export type ProvidedStore<S, A extends Action = Action> =
  | SyncStore<S, A>
  | (Omit<SyncStore<S, A>, 'status' | 'dispatch' | 'replaceReducer' | typeof Symbol.observable> & {
      dispatch(action: A): unknown;
    });

/** Makes `store` available to the hooks below it. */
export declare function LogsyncProvider<S, A extends Action>(props: {
  store: ProvidedStore<S, A>;
  children?: ReactNode;
}): ReactElement;

/** The store of the nearest `<LogsyncProvider>`. */
export declare function useLogsyncStore<S = unknown, A extends Action = Action>(): SyncStore<S, A>;

/** The whole state. */
export declare function useSyncState<S = unknown>(): S;
/** A slice of the state; re-renders only when it changes by `isEqual` (default `Object.is`). */
export declare function useSyncState<S, T>(
  selector: (state: S) => T,
  isEqual?: (a: T, b: T) => boolean,
): T;

/** The store's `dispatch`. */
export declare function useDispatch<A extends Action = Action>(): <T extends A>(action: T) => T;

/** The sync status. */
export declare function useSyncStatus(): Status;
/** A part of the sync status; re-renders only when it changes by `isEqual`. */
export declare function useSyncStatus<T>(
  selector: (status: Status) => T,
  isEqual?: (a: T, b: T) => boolean,
): T;

/** Shallow equality of two objects or arrays. */
export declare function shallowEqual(a: unknown, b: unknown): boolean;

/** The result of a view store (`createViewStore`); `undefined` until known. */
export declare function useView<R>(viewStore: ViewStore<R>): R | undefined;
/** A part of a view's result; re-renders only when it changes by `isEqual`. */
export declare function useView<R, T>(
  viewStore: ViewStore<R>,
  selector: (result: R | undefined) => T,
  isEqual?: (a: T, b: T) => boolean,
): T;
