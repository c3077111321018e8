// Connects an Elm application's ports to a Logsync store: the Elm app
// dispatches actions through an outgoing port and receives the state (and,
// optionally, the sync status, rejections and errors) through incoming ports.
// A view store (createViewStore) is connected apart, with
// connectElmViewPorts: its result and status go to incoming ports.
// Values cross the ports as JSON-shaped JS values (Elm's Json.Encode.Value /
// Json.Decode.Value), so the Elm side decodes them with ordinary decoders.

import { LogsyncError, describe } from './errors.js';

const identity = (x) => x;

/**
 * @param {Record<string, any>} ports `app.ports` of an initialised Elm app
 * @param {import('./index.js').SyncStore<any, any>} store from createSyncStore()
 * @param {import('./elm.js').ElmPortsOptions} [options]
 * @returns {() => void} disconnect: stops every subscription made here
 */
export function connectElmPorts(ports, store, options = {}) {
  if (ports === null || typeof ports !== 'object') {
    throw new LogsyncError('INVALID_REQUEST',
      `connectElmPorts(app.ports, store) needs the ports of an initialised Elm app, got ${describe(ports)}. ` +
      'If app.ports is undefined, the Elm program declares no port that it uses.');
  }
  if (!store || typeof store.dispatch !== 'function' || typeof store.subscribe !== 'function') {
    const isView = store && typeof store.onStatus === 'function' && typeof store.getState === 'function';
    throw new LogsyncError('INVALID_REQUEST',
      `connectElmPorts(app.ports, store) needs the store that createSyncStore() resolved to, got ${describe(store)}` +
      (isView ? ': a view store (createViewStore) is read-only, connect it with connectElmViewPorts' : ''));
  }
  const {
    dispatchPort = 'dispatch',
    statePort = 'stateChanged',
    statusPort,
    rejectedPort,
    errorPort,
    encodeState = identity,
    sendInitial = true,
  } = options;

  const fn = 'connectElmPorts';
  const outgoing = requirePort(fn, ports, dispatchPort, 'subscribe');
  const state = statePort === null ? null : requirePort(fn, ports, statePort, 'send');
  const status = statusPort == null ? null : requirePort(fn, ports, statusPort, 'send');
  const rejected = rejectedPort == null ? null : requirePort(fn, ports, rejectedPort, 'send');
  const errors = errorPort == null ? null : requirePort(fn, ports, errorPort, 'send');

  // An error must not escape into Elm's runtime (it would stop the app's
  // command processing): it goes to the error port, or to the console.
  const report = (err) => {
    const value = errorValue(err);
    if (errors) errors.send(value);
    else console.error(`[logsync/elm] ${value.code}: ${value.message}`);
  };

  const stops = [];

  const onAction = (action) => {
    try {
      store.dispatch(action);
    } catch (err) {
      report(err);
    }
  };
  outgoing.subscribe(onAction);
  stops.push(() => outgoing.unsubscribe(onAction));

  if (state) {
    let lastSent;
    const sendState = () => {
      const next = store.getState();
      if (next === lastSent) return; // getState() is stable between changes
      lastSent = next;
      state.send(encodeState(next));
    };
    stops.push(store.subscribe(sendState));
    if (sendInitial) sendState();
    else lastSent = store.getState();
  }

  if (status) {
    const sendStatus = (s) => status.send(statusValue(s));
    stops.push(store.onStatus(sendStatus));
    if (sendInitial) sendStatus(store.status);
  }

  if (rejected) {
    stops.push(store.onRejected((r) => rejected.send({ action: r.action, code: r.code, message: r.message })));
  }

  if (errors) {
    stops.push(store.onError((err) => errors.send(errorValue(err))));
  }

  let connected = true;
  return () => {
    if (!connected) return;
    connected = false;
    for (const stop of stops.reverse()) stop();
  };
}

/**
 * Connects a view store's result and status to an Elm app's incoming ports.
 * A view store is read-only, so there is no outgoing port; each view has
 * its own ports (its result has its own type on the Elm side).
 *
 * @param {Record<string, any>} ports `app.ports` of an initialised Elm app
 * @param {import('./index.js').ViewStore<any>} viewStore from createViewStore()
 * @param {import('./elm.js').ElmViewPortsOptions} options
 * @returns {() => void} disconnect: stops every subscription made here (the view store stays open)
 */
export function connectElmViewPorts(ports, viewStore, options) {
  const fn = 'connectElmViewPorts';
  const usage = `${fn}(app.ports, viewStore, { resultPort, statusPort })`;
  if (ports === null || typeof ports !== 'object') {
    throw new LogsyncError('INVALID_REQUEST',
      `${usage} needs the ports of an initialised Elm app, got ${describe(ports)}. ` +
      'If app.ports is undefined, the Elm program declares no port that it uses.');
  }
  if (!viewStore || typeof viewStore.getState !== 'function' || typeof viewStore.subscribe !== 'function'
    || typeof viewStore.onStatus !== 'function' || typeof viewStore.dispatch === 'function') {
    const isSync = viewStore && typeof viewStore.dispatch === 'function';
    throw new LogsyncError('INVALID_REQUEST',
      `${usage} needs the store that createViewStore() returned, got ${describe(viewStore)}` +
      (isSync ? ': a sync store (createSyncStore) is connected with connectElmPorts' : ''));
  }
  if (options === null || typeof options !== 'object' || typeof options.resultPort !== 'string' || options.resultPort === '') {
    throw new LogsyncError('INVALID_REQUEST',
      `${usage} needs options.resultPort, the name of the incoming port for this view's result ` +
      `(e.g. { resultPort: 'countsChanged' } for \`port countsChanged : (Json.Decode.Value -> msg) -> Sub msg\`), ` +
      (options === null || typeof options !== 'object' ? `got options ${describe(options)}` : `got ${describe(options.resultPort)}`));
  }
  const { resultPort, statusPort, encodeResult = identity, sendInitial = true } = options;
  const result = requirePort(fn, ports, resultPort, 'send');
  const status = statusPort == null ? null : requirePort(fn, ports, statusPort, 'send');

  const stops = [];
  // Status before result, at connect time as on a change (the store sets
  // the offset before it tells its result listeners).
  if (status) {
    const sendStatus = (s) => status.send(viewStatusValue(s));
    stops.push(viewStore.onStatus(sendStatus));
    if (sendInitial) sendStatus(viewStore.status);
  }

  // Nothing is sent while no result is known (getState() is undefined,
  // which is not JSON): the Elm app starts without one. A throwing
  // encodeResult is logged, not thrown into the view store's feed (which
  // would count it as a failed connection).
  let lastSent = sendInitial ? undefined : viewStore.getState();
  const sendResult = () => {
    const next = viewStore.getState();
    if (next === undefined || next === lastSent) return;
    lastSent = next;
    let value;
    try {
      value = encodeResult(next);
    } catch (err) {
      const { code, message } = errorValue(err);
      console.error(`[logsync/elm] ${fn}: encodeResult threw (${code}: ${message}); the result was not sent to app.ports.${resultPort}`);
      return;
    }
    result.send(value);
  };
  stops.push(viewStore.subscribe(sendResult));
  if (sendInitial) sendResult();

  let connected = true;
  return () => {
    if (!connected) return;
    connected = false;
    for (const stop of stops.reverse()) stop();
  };
}

const DECLARATION = {
  subscribe: (name) => `port ${name} : Json.Encode.Value -> Cmd msg`,
  send: (name) => `port ${name} : (Json.Decode.Value -> msg) -> Sub msg`,
};

function requirePort(fn, ports, name, method) {
  const port = ports[name];
  if (!port || typeof port[method] !== 'function') {
    const kind = method === 'subscribe' ? 'outgoing' : 'incoming';
    const declaration = DECLARATION[method](name);
    throw new LogsyncError('INVALID_REQUEST',
      `${fn}: app.ports.${name} is missing or is not an ${kind} port. ` +
      `Declare \`${declaration}\` in a port module and use it somewhere in the program ` +
      '(the Elm compiler drops ports the program never uses), or name another port in the options.');
  }
  return port;
}

function statusValue(s) {
  return {
    online: s.online,
    offset: s.offset,
    head: s.head,
    pending: s.pending,
    lastError: s.lastError == null ? null : { code: s.lastError.code, message: s.lastError.message },
    clientId: s.clientId ?? null,
    needsToken: s.needsToken === true,
    outdated: s.outdated === true,
    leader: s.leader === true,
  };
}

function viewStatusValue(s) {
  return {
    online: s.online,
    offset: s.offset,
    hydrated: s.hydrated,
    lastError: s.lastError == null ? null : { code: s.lastError.code, message: s.lastError.message },
    needsToken: s.needsToken === true,
  };
}

function errorValue(err) {
  if (err && typeof err === 'object' && typeof err.code === 'string') {
    return { code: err.code, message: String(err.message) };
  }
  return { code: 'UNKNOWN', message: err instanceof Error ? err.message : String(err) };
}
