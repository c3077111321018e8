// Glue: open the Logsync store and the view store of the server's `counts`
// view, start the Elm program, connect the ports that src/Logsync.elm and
// src/Main.elm declare.
import { createSyncStore } from 'logsync';
import { createViewStore } from 'logsync/views';
import { connectElmPorts, connectElmViewPorts } from 'logsync/elm';
// The same reducer as the React example, so Elm and React windows can share a room.
import { initialState, todosReducer } from '../todo-react/src/todos.js';
import '../todo-react/src/styles.css';
// Written by `npm run elm` (scripts/elm-make.mjs); vite.config.js makes it a module.
import { Elm } from './elm-out/elm.js';

const room = roomFromHash();

if ('serviceWorker' in navigator && import.meta.env.PROD) {
  // The app shell works offline too (the React example's sw.js).
  navigator.serviceWorker.register('/sw.js').catch((err) => console.warn('service worker not registered:', err));
}

async function start() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
  const store = await createSyncStore({
    url,
    stream: `todos/${room}`,
    reducer: todosReducer,
    initialState,
    dbName: 'logsync-todomvc',
  });
  const app = Elm.Main.init({
    node: document.getElementById('app'),
    // Ids of new todos: a random prefix per page load plus a counter in Elm.
    flags: { room, idPrefix: crypto.randomUUID() },
  });
  // The port names of src/Logsync.elm.
  connectElmPorts(app.ports, store, {
    dispatchPort: 'dispatch',
    statePort: 'stateChanged',
    statusPort: 'syncStatus',
    rejectedPort: 'rejected',
    errorPort: 'errors',
  });
  // The server's `counts` view of this list (the module's `views`, served
  // when the server folds todos/* with it, as scripts/start.sh does):
  // followed live over Server-Sent Events and cached in IndexedDB, so the
  // last counts seen show offline too. Its ports are declared in Main.elm.
  const counts = createViewStore({ url, stream: `todos/${room}`, view: 'counts', dbName: 'logsync-todomvc' });
  connectElmViewPorts(app.ports, counts, { resultPort: 'serverCounts', statusPort: 'serverCountsStatus' });
  // Handy in the console: logsync.store.getState(), logsync.store.status,
  // logsync.counts.getState(), logsync.counts.status.
  window.logsync = { store, counts, app };
}

function roomFromHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  return /^[A-Za-z0-9._~-]{1,64}$/.test(raw) ? raw : 'demo';
}

window.addEventListener('hashchange', () => {
  if (roomFromHash() !== room) location.reload();
});

start().catch((err) => {
  const app = document.getElementById('app');
  app.className = 'fatal';
  app.setAttribute('role', 'alert');
  app.textContent = `Could not open the todo list: ${err.code ?? err.name}: ${err.message}`;
});
