import type { ErrorCode } from './errors.js';
export { ERROR_CODES, LogsyncError, Rejection, isLogsyncError } from './errors.js';
export type { ErrorCode } from './errors.js';

/** A Redux action: a plain, JSON-serialisable object with a string `type` (and any other fields). */
export interface Action<T extends string = string> {
  type: T;
}

/** A pure, deterministic `(state, action) => state`; `state` is undefined only when computing the initial state. */
/**
 * Where an action comes from, the same on every device and on the server
 * (a reducer may read it to enforce who may do what, or refuse a write
 * made on a stale read). A confirmed event has the server's values; an
 * action still pending on this device has its local ones: `offset` and
 * `seq` are null, `time` is this device's clock at dispatch.
 */
export interface Meta {
  /** The event's offset in the stream; null while pending. */
  readonly offset: number | null;
  /** The dispatching client (32 hex digits); null before the store has opened. */
  readonly clientId: string | null;
  /** Who dispatched it, as the server verified (the token's `sub`); null without authentication. */
  readonly subject: string | null;
  /** The client's seq for it; null while pending. */
  readonly seq: number | null;
  /** When the server appended it (pending: when it was dispatched), ms since the Unix epoch. */
  readonly time: number;
  /** The confirmed offset the dispatching device had when it dispatched (what its user had seen). */
  readonly seen: number;
  /** The schema version the action was made under, before any `upcast` (1 for actions of apps without `schemaVersion`). */
  readonly schema: number;
}

export type Reducer<S, A extends Action = Action> = (state: S | undefined, action: A, meta: Meta) => S;

/** Options of `createSyncStore`. */
export interface StoreOptions<S, A extends Action = Action> {
  /** The server's WebSocket URL, e.g. `ws://localhost:8080/v1/ws`. */
  url: string;
  /** The stream to follow: 1-200 bytes of `[A-Za-z0-9._~:/-]`, e.g. `todos/team-42`. */
  stream: string;
  /** Folds every event (and every pending action) into the state. */
  reducer: Reducer<S, A>;
  /** The state before the first event; when left out, `reducer(undefined, { type: '@@logsync/INIT' })`. */
  initialState?: S;
  /** The IndexedDB database (one per app). Default `"logsync"`. */
  dbName?: string;
  /** A JWT, when the server requires one. */
  token?: string;
  /** Store a snapshot of the state every this many confirmed events (default 1000). */
  snapshotEvery?: number;
  /** `false` opens the store from IndexedDB only, without connecting (until `reconnect()`). Default `true`. */
  connect?: boolean;
  /**
   * `false` makes a write-only store: it pushes its actions (queued in IndexedDB, exactly once, offline
   * included) and never subscribes, so it downloads nothing and needs no read permission. Its state is
   * `reducer` over its own actions the server has not acknowledged yet, from `initialState`; an action
   * leaves when acknowledged. Read what the server made of them through a view store. Default `true`.
   */
  replicate?: boolean;
  /** Ping period in ms (default 15000); a connection silent for two periods is dropped and reopened. */
  heartbeatMs?: number;
  /** First reconnect delay in ms (default 500), doubled after each failure, with jitter. */
  backoffMinMs?: number;
  /** Longest reconnect delay in ms (default 30000). */
  backoffMaxMs?: number;
  /**
   * One connection for every tab of this browser on this `dbName`, `stream` and `url` (default `true`): the tabs
   * elect a leader (Web Locks), which alone holds the WebSocket; the others follow it through IndexedDB and see
   * each other's actions at once, online or offline. `false`: this tab connects on its own. Where Web Locks or
   * `BroadcastChannel` are missing, every tab connects on its own.
   */
  shareConnection?: boolean;
  /** A leader tab not heard from for this long (ms, default 3000: frozen, or its page stuck) is taken over by another tab. */
  leaderTimeoutMs?: number;
  /** Which actions are synced: `true` synced (the default for every action), `false` kept local — applied to this tab's view only, on top of the synced state, never stored or sent (see the README's "Local actions"). */
  filter?: (action: A) => boolean;
  /** The Redux DevTools extension bridge: on when the page has the extension (default `true`), `false` off, or `{ name, extension }` (an object with the extension's `connect` API). */
  devtools?: boolean | DevtoolsOptions;
  /** The schema version of this app's actions and states: 1 (the default) until their shape changes, then one more per change. Every action carries the version it was made under (see the README's "App upgrades"). */
  schemaVersion?: number;
  /** The oldest version `upcast` takes: 1 (every older one) with `upcast`, `schemaVersion` without. Older events are skipped, like ones the reducer refuses. */
  minSchemaVersion?: number;
  /** An action made under the older version `fromVersion` as an action of `schemaVersion`; pure and deterministic, like the reducer (events and actions queued by an older version of the app go through it before the reducer). */
  upcast?: (action: any, fromVersion: number) => A;
  /** A stored state made under the older version `fromVersion` as a state of `schemaVersion`. Without it, such a state is dropped and rebuilt from the server's events. */
  migrate?: (state: any, fromVersion: number) => S;
  /** Action types that make sense only live (e.g. `'checkout/buy'`): dispatching one while `status.online` is false throws a `LogsyncError` with code `OFFLINE`, and nothing is queued. */
  onlineOnly?: readonly string[];
  /** Time-to-live per action type, in ms after dispatch (e.g. `{ 'cart/add': 86_400_000 }`): an action of that type still queued when it runs out is withdrawn, never applied, and reported to `onRejected` with code `EXPIRED`. */
  ttl?: { readonly [type: string]: number };
}

/** Options of the Redux DevTools bridge. */
export interface DevtoolsOptions {
  /** The instance name shown in the monitor. Default `"logsync <stream>"`. */
  name?: string;
  /** The extension object; default `window.__REDUX_DEVTOOLS_EXTENSION__`. */
  extension?: { connect(options: object): unknown } | null;
}

/** Storage use of this origin (navigator.storage), where the browser reports it. */
export interface StorageInfo {
  /** Bytes used, or null if unknown. */
  readonly usage: number | null;
  /** Bytes this origin may use, or null if unknown. */
  readonly quota: number | null;
  /** Whether the browser keeps this origin's storage under storage pressure (`store.persist()`), or null if unknown. */
  readonly persisted: boolean | null;
}

/** An error as it appears in the status and in rejections. */
export interface ErrorInfo {
  code: ErrorCode;
  message: string;
}

/** Where syncing stands. A new (frozen) object each time something changes. */
export interface Status {
  /** This tab's stream is live: connected and subscribed, through this tab's connection or the leader tab's (see `leader`). */
  readonly online: boolean;
  /** This tab holds the connection its browser's tabs share (it leads, or connects alone); `false` in a tab that follows the leader, and before hydration. */
  readonly leader: boolean;
  /** The last server offset applied to the confirmed state. */
  readonly offset: number;
  /** The server's last offset, as far as this client knows. */
  readonly head: number;
  /** Actions dispatched in this tab (or found in storage when it opened) that the server has not confirmed, rejected or been told to discard yet. */
  readonly pending: number;
  /** Of the pending actions, those whose IndexedDB write is under way: they have no seq yet. */
  readonly writing: number;
  /** The current problem, or null: why the store cannot sync (connection, server, token) or store (IndexedDB). Cleared once it is over; `onError` keeps the history. */
  readonly lastError: ErrorInfo | null;
  /** This installation's id (32 hex digits); `""` until the store has hydrated. */
  readonly clientId: string;
  /** The server refused the token (`UNAUTHORIZED`) or what it allows (`FORBIDDEN`): the store keeps its actions but does not reconnect until `setToken()` (or `reconnect()`). */
  readonly needsToken: boolean;
  /** This app is older than the data: the store met an event or state made by a newer version of the app (`lastError.code` `SCHEMA_TOO_NEW`: it stopped syncing, keeps its queued actions, and does not reconnect), or the server refused an action as made by a version it no longer takes (`SCHEMA_TOO_OLD`). Ask the user to reload the page. */
  readonly outdated: boolean;
  /** The stored state is in (`store.ready` resolved). Before that `offset`, `head` are 0, `clientId` is `""` and `pending` counts this session's dispatches. */
  readonly hydrated: boolean;
  /** Events the server has that this client has not applied yet: `head - offset`. With `offset` and `head`, a catch-up progress bar. */
  readonly behind: number;
  /** Usage and quota of this origin's storage, once measured; null where the browser does not report it. */
  readonly storage: StorageInfo | null;
}

/** @deprecated The same type as {@link Status} (its former name). */
export type SyncStatus = Status;
/** @deprecated The same type as {@link StoreOptions} (its former name). */
export type SyncStoreOptions<S, A extends Action = Action> = StoreOptions<S, A>;

/**
 * An action the server refused; it has been dropped from the state. (Named
 * `Rejection` before `Rejection` became the class a reducer throws.)
 */
export interface RejectedAction<A extends Action = Action> {
  action: A;
  code: ErrorCode;
  message: string;
}

/** An action of this tab that waits for the server. */
export interface PendingAction<A extends Action = Action> {
  /** Its seq, to pass to `discard`; null for the moment its IndexedDB write takes. */
  readonly seq: number | null;
  /** The action, as it travels (JSON). */
  readonly action: A;
  /** Its `ttl` ran out before it was sent: it is out of the state and waits for the server to record its withdrawal (then `onRejected` with `EXPIRED`). */
  readonly expired?: true;
}

/** What became of one of this tab's actions (`store.onIntent`). */
export type IntentEvent<A extends Action = Action> =
  /** Dispatched (`seq` null until the store has written it), or found in storage when the store opened (`restored`). */
  | { readonly type: 'pending'; readonly seq: number | null; readonly action: A; readonly restored?: true }
  /** Handed to the open connection; reported at the latest together with its fate. */
  | { readonly type: 'sent'; readonly seq: number | null; readonly action: A }
  /** Events of others were placed before it; its effect was recomputed on the confirmed state at `offset`. */
  | { readonly type: 'rebased'; readonly seq: number | null; readonly action: A; readonly offset: number }
  /** In the log: `offset` is the confirmed offset once its event was applied (its event's, or a later one when several arrived at once). */
  | { readonly type: 'confirmed'; readonly seq: number | null; readonly action: A; readonly offset: number }
  /** Refused by the server, or (dispatched before hydration) refused by the opened store; rolled back. */
  | { readonly type: 'rejected'; readonly seq: number | null; readonly action: A; readonly code: ErrorCode; readonly message: string }
  /** Withdrawn with `store.discard(seq)`. */
  | { readonly type: 'discarded'; readonly seq: number | null; readonly action: A };

/** A way to stop listening. Calling it twice is harmless. */
export type Unsubscribe = () => void;

/** An observable of states, for interop (`Symbol.observable`). */
export interface StateObservable<S> {
  subscribe(observer: { next?(state: S): void }): { unsubscribe: Unsubscribe };
  [Symbol.observable](): StateObservable<S>;
}

declare global {
  interface SymbolConstructor {
    readonly observable: symbol;
  }
}

/** A Redux-compatible store whose state is kept in sync with the server. All methods work detached (`const { dispatch } = store`). */
export interface SyncStore<S, A extends Action = Action> {
  /** The stream this store follows. */
  readonly stream: string;
  /** Resolves once the stored state is in (`status.hydrated`); rejects with a LogsyncError if the store cannot open (the store then keeps its state in memory only). */
  readonly ready: Promise<void>;
  /** The current state (optimistic: confirmed state with pending actions on top). The same object until it changes. */
  getState(): S;
  /** Applies `action` at once and sends it to the server (now, or when back online). Returns `action`. */
  dispatch<T extends A>(action: T): T;
  /** Calls `listener` after every state change. */
  subscribe(listener: () => void): Unsubscribe;
  /** Swaps the reducer and recomputes the state (for hot reloading). */
  replaceReducer(nextReducer: Reducer<S, A>): void;
  /** The sync status. */
  readonly status: Status;
  /** The sync status (the same object as `status`); use this on a store made by the `logsync()` enhancer, whose `status` the enhancers around it copy once. */
  getStatus(): Status;
  /** Calls `listener` for each step of each of this tab's actions: pending → sent → confirmed | rejected | discarded, with rebased in between (also before sent: an action not pushed yet is rebased too). A first listener also hears `pending` for the actions pending at that moment. */
  onIntent(listener: (event: IntentEvent<A>) => void): Unsubscribe;
  /** Asks the browser to keep this origin's storage under storage pressure (navigator.storage.persist); resolves whether it will. `false` where the browser has no such API. */
  persist(): Promise<boolean>;
  /** Calls `listener` with the new status whenever it changes. */
  onStatus(listener: (status: Status) => void): Unsubscribe;
  /** Calls `listener` with connection, storage and reducer errors (the store keeps running). */
  onError(listener: (error: LogsyncErrorType) => void): Unsubscribe;
  /** Calls `listener` when the server refuses one of this client's actions. */
  onRejected(listener: (rejection: RejectedAction<A>) => void): Unsubscribe;
  /** Resolves when every action dispatched so far is confirmed by the server. */
  synced(): Promise<void>;
  /** Connects now: after `goOffline()`, after `connect: false`, or to skip a reconnect delay. */
  reconnect(): void;
  /** Drops the connection and stays offline (dispatches are kept) until `reconnect()`. */
  goOffline(): void;
  /** Uses `token` (a JWT, or null for none) from the next connection on; after a refused token (`status.needsToken`) connects at once. A live connection keeps going. A token of another user (another `sub`) switches to that user's own local replica; the promise resolves once it is open (until then, also before hydration, dispatching a synced action throws `INVALID_REQUEST`). */
  setToken(token: string | null): Promise<void>;
  /** This tab's actions that wait for the server, in the order they apply. */
  pending(): PendingAction<A>[];
  /** Discards a pending action (by its seq from `pending()`): it leaves the state at once and is withdrawn instead of sent. An action the server already took cannot be discarded; its event arrives as usual. */
  discard(seq: number): void;
  /** Disconnects and releases IndexedDB. The store cannot be used afterwards. */
  close(): Promise<void>;
  [Symbol.observable](): StateObservable<S>;
}

type LogsyncErrorType = import('./errors.js').LogsyncError;

/** Options of `init`. */
export interface InitOptions {
  /** Where the `.wasm` file is, or its bytes or compiled module. Default: next to the package's JS. */
  wasm?: string | URL | Request | Response | BufferSource | WebAssembly.Module;
}

/** Loads the wasm module once. Idempotent; `createSyncStore` calls it for you. */
export declare function init(options?: InitOptions): Promise<void>;

/** Creates the store at once (state: `initialState`, dispatches applied and queued) and hydrates it from IndexedDB in the background (`store.ready`). */
export declare function createLogsyncStore<S, A extends Action = Action>(
  options: StoreOptions<S, A>,
): SyncStore<S, A>;

/** Opens the local replica of a stream (from IndexedDB, even offline) and starts syncing it: `createLogsyncStore` and `await store.ready`. */
export declare function createSyncStore<S, A extends Action = Action>(
  options: StoreOptions<S, A>,
): Promise<SyncStore<S, A>>;

/** The codes the loaded wasm module knows (equal to ERROR_CODES). Call after `await init()`. */
export declare function wasmErrorCodes(): ErrorCode[];

/** The type of the action that computes a missing `initialState`. */
/** The IndexedDB database a store of `dbName` uses for the user `token` speaks for: `dbName`, or `dbName@subject` for a JWT with a `sub`. */
export declare function dbNameFor(dbName: string, token: string | null): string;

export declare const INIT_ACTION_TYPE: '@@logsync/INIT';

/** Options of `createViewStore`. */
export interface ViewStoreOptions {
  /** The server: the WebSocket URL given to `createSyncStore` (`ws://host/v1/ws`) or its HTTP base (`https://host`). */
  url: string;
  /** The stream whose view to follow. */
  stream: string;
  /** The view's name: a key of the reducer module's exported `views`. */
  view: string;
  /** The view's `params` (any JSON value; default `null`). */
  params?: unknown;
  /** The cache is the IndexedDB database `<dbNameFor(dbName, token)>-views`. Default `"logsync"`. */
  dbName?: string;
  /** A JWT, sent as `Authorization: Bearer …`. */
  token?: string | null;
  /** Reconnect backoff, first delay in ms (default 250). */
  backoffMinMs?: number;
  /** Reconnect backoff, largest delay in ms (default 30000). */
  backoffMaxMs?: number;
}

/** Where a view store stands. A new (frozen) object each time something changes. */
export interface ViewStatus {
  /** A feed is open. */
  readonly online: boolean;
  /** The offset the result held was evaluated at (0 before one is known). */
  readonly offset: number;
  /** The cache has been read (`ready` resolved). */
  readonly hydrated: boolean;
  /** The current problem (`NOT_FOUND` view, `UNAUTHORIZED`, `CONNECT_FAILED`, a store error), or null; cleared when a feed opens. */
  readonly lastError: ErrorInfo | null;
  /** The server refused the token (401/403): no reconnecting until `setToken()`. */
  readonly needsToken: boolean;
}

/** A read-only store of one server view. */
export interface ViewStore<R = unknown> {
  /** The view's result; `undefined` until known (from the cache or the server). */
  getState(): R | undefined;
  /** Calls `listener` after each new result; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  readonly status: ViewStatus;
  /** Calls `listener` with each new status; returns the unsubscribe function. */
  onStatus(listener: (status: ViewStatus) => void): () => void;
  /** Resolves once the cached result (if any) is read. */
  readonly ready: Promise<void>;
  /** Uses `token` from the next request on; after a refused token, reconnects at once. The cache database stays the one chosen at creation. */
  setToken(token: string | null): void;
  /** Ends the feed and the listeners. */
  close(): void;
}

