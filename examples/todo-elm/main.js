// Glue: open the Logsync store, start the Elm program, connect the ports.
import { createSyncStore } from 'logsync';
import { connectElmPorts } from 'logsync/elm';
// The same reducer as the React example, so Elm and React windows can share a room.
import { initialState, todosReducer } from '../todo-react/src/todos.js';
import '../todo-react/src/styles.css';

const room = roomFromHash();

async function start() {
  const store = await createSyncStore({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`,
    stream: `todos/${room}`,
    reducer: todosReducer,
    initialState,
    dbName: 'logsync-todomvc',
  });
  const app = window.Elm.Main.init({
    node: document.getElementById('app'),
    // Ids of new todos: a random prefix per page load plus a counter in Elm.
    flags: { room, idPrefix: crypto.randomUUID() },
  });
  connectElmPorts(app.ports, store, {
    dispatchPort: 'dispatch',
    statePort: 'stateChanged',
    statusPort: 'syncStatus',
    rejectedPort: 'rejected',
  });
  window.logsync = { store, app };
}

function roomFromHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  return /^[A-Za-z0-9._~-]{1,64}$/.test(raw) ? raw : 'demo';
}

window.addEventListener('hashchange', () => location.reload());

start().catch((err) => {
  document.getElementById('app').textContent = `Could not open the todo list: ${err.code ?? err.name}: ${err.message}`;
});
