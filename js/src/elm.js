// Connects an Elm application's ports to a Logsync store: the Elm app
// dispatches actions through an outgoing port and receives the state (and,
// optionally, the sync status, rejections and errors) through incoming ports.
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
    throw new LogsyncError('INVALID_REQUEST',
      `connectElmPorts(app.ports, store) needs the store that createSyncStore() resolved to, got ${describe(store)}`);
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

  const outgoing = requirePort(ports, dispatchPort, 'subscribe', `port ${dispatchPort} : Json.Encode.Value -> Cmd msg`);
  const state = statePort === null ? null
    : requirePort(ports, statePort, 'send', `port ${statePort} : (Json.Decode.Value -> msg) -> Sub msg`);
  const status = statusPort == null ? null
    : requirePort(ports, statusPort, 'send', `port ${statusPort} : (Json.Decode.Value -> msg) -> Sub msg`);
  const rejected = rejectedPort == null ? null
    : requirePort(ports, rejectedPort, 'send', `port ${rejectedPort} : (Json.Decode.Value -> msg) -> Sub msg`);
  const errors = errorPort == null ? null
    : requirePort(ports, errorPort, 'send', `port ${errorPort} : (Json.Decode.Value -> msg) -> Sub msg`);

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

function requirePort(ports, name, method, declaration) {
  const port = ports[name];
  if (!port || typeof port[method] !== 'function') {
    const kind = method === 'subscribe' ? 'outgoing' : 'incoming';
    throw new LogsyncError('INVALID_REQUEST',
      `connectElmPorts: app.ports.${name} is missing or is not an ${kind} port. ` +
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
  };
}

function errorValue(err) {
  if (err && typeof err === 'object' && typeof err.code === 'string') {
    return { code: err.code, message: String(err.message) };
  }
  return { code: 'UNKNOWN', message: err instanceof Error ? err.message : String(err) };
}
