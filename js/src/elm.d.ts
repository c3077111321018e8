import type { Action, SyncStore, ViewStore } from './index.js';

/** An Elm outgoing port (`port x : Json.Encode.Value -> Cmd msg`). */
export interface ElmOutgoingPort<T = unknown> {
  subscribe(callback: (value: T) => void): void;
  unsubscribe(callback: (value: T) => void): void;
}

/** An Elm incoming port (`port x : (Json.Decode.Value -> msg) -> Sub msg`). */
export interface ElmIncomingPort<T = unknown> {
  send(value: T): void;
}

/** Names of the ports to use, and how state is encoded. */
export interface ElmPortsOptions<S = unknown> {
  /** Outgoing port whose values are dispatched. Default `"dispatch"`. */
  dispatchPort?: string;
  /** Incoming port that receives the state; `null` for none. Default `"stateChanged"`. */
  statePort?: string | null;
  /** Incoming port that receives the sync status. Default: none. */
  statusPort?: string;
  /** Incoming port that receives `{ action, code, message }` for refused actions. Default: none. */
  rejectedPort?: string;
  /** Incoming port that receives `{ code, message }` for errors (else they go to the console). Default: none. */
  errorPort?: string;
  /** Maps the state before it is sent (e.g. to a smaller view). Default: the state itself. */
  encodeState?: (state: S) => unknown;
  /** Send the current state and status at once. Default `true`. */
  sendInitial?: boolean;
}

/** Connects an Elm app's ports to a store. Returns a function that disconnects them. */
export declare function connectElmPorts<S, A extends Action>(
  ports: Record<string, ElmOutgoingPort | ElmIncomingPort | undefined> | undefined,
  store: SyncStore<S, A>,
  options?: ElmPortsOptions<S>,
): () => void;

/** Names of a view's ports, and how its result is encoded. */
export interface ElmViewPortsOptions<R = unknown> {
  /** Incoming port that receives the view's result, once one is known and after each change. Required: each view has its own port. */
  resultPort: string;
  /** Incoming port that receives `{ online, offset, hydrated, lastError, needsToken }`. Default: none. */
  statusPort?: string;
  /** Maps the result before it is sent. Default: the result itself. */
  encodeResult?: (result: R) => unknown;
  /** Send the current status, and the result if one is known, at once. Default `true`. */
  sendInitial?: boolean;
}

/** Connects a view store (createViewStore) to an Elm app's incoming ports. Returns a function that disconnects them; the view store stays open. */
export declare function connectElmViewPorts<R>(
  ports: Record<string, ElmOutgoingPort | ElmIncomingPort | undefined> | undefined,
  viewStore: ViewStore<R>,
  options: ElmViewPortsOptions<R>,
): () => void;
