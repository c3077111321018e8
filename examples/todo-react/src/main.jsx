import { createRoot } from 'react-dom/client';
import { configureStore } from '@reduxjs/toolkit';
import { createViewStore } from 'logsync/views';
import { logsync } from 'logsync/redux';
import { LogsyncProvider } from 'logsync/react';
import { App } from './App.jsx';
import { AssignedPanel, addressWith, userFromPage } from './Assigned.jsx';
import { initialState, todosReducer } from './todos.js';
import './styles.css';

// The room is the URL's hash (#team-42), so a link opens the same list.
const room = roomFromHash();
// Who "me" is, for "Assigned to me": ?user=bob (remembered for next time).
const user = userFromPage();
// ?only=assigned: only the "Assigned to me" panel, no replica of the list.
const onlyAssigned = new URLSearchParams(location.search).get('only') === 'assigned';
const root = createRoot(document.getElementById('root'));
// One origin serves the app and the API, so the URL follows the page.
const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
const stream = `todos/${room}`;
const dbName = 'logsync-todomvc';

if ('serviceWorker' in navigator && import.meta.env.PROD) {
  // The app shell works offline too (see sw.js).
  navigator.serviceWorker.register('/sw.js').catch((err) => console.warn('service worker not registered:', err));
}
window.addEventListener('hashchange', () => {
  if (roomFromHash() !== room) location.reload();
});

if (onlyAssigned) startAssignedOnly();
else start();

// "Assigned to me" follows the server's view `assignedTo` (todos.js) with
// this user as its params: a read-only store of that result alone, cached
// in IndexedDB (the database `logsync-todomvc-views`) for offline starts.
function assignedStore() {
  return user === null ? null : createViewStore({ url, stream, view: 'assignedTo', params: { user }, dbName });
}

function start() {
  root.render(<p className="loading">Opening “{room}”…</p>);
  // A Redux Toolkit store, made at once; the Logsync enhancer (last) syncs
  // it and hydrates it from IndexedDB in the background. Logsync connects
  // the Redux DevTools itself, hence devTools: false.
  const store = configureStore({
    reducer: todosReducer,
    preloadedState: initialState,
    enhancers: (getDefault) => getDefault().concat(logsync({ url, stream, dbName })),
    devTools: false,
  });
  const assigned = assignedStore();
  // Handy in the console: logsync.store.getState(), logsync.store.getStatus(),
  // logsync.assigned.getState().
  window.logsync = { store, assigned };
  // The list shows once the stored state is in, so a reload never flashes
  // an empty list before the stored one (the same for the panel's result).
  Promise.all([store.ready, assigned?.ready]).then(
    () => root.render(
      <LogsyncProvider store={store}>
        <App room={room} user={user} assigned={assigned} />
      </LogsyncProvider>,
    ),
    (err) => root.render(
      <div className="fatal" role="alert">
        <h2>Could not open the todo list</h2>
        <p><code>{err.code ?? err.name}</code> {err.message}</p>
      </div>,
    ),
  );
}

// Partial replication: this window holds no replica of the list (no sync
// store, no events in IndexedDB), only the view's result for this user.
function startAssignedOnly() {
  const assigned = assignedStore();
  window.logsync = { assigned };
  const page = (
    <main className="assigned-only">
      <h1>todos</h1>
      <AssignedPanel viewStore={assigned} user={user} />
      <footer className="info">
        <p>
          This window follows only the server&apos;s answer for <code>{user ?? '…'}</code> in <code>#{room}</code>,
          not the whole list. <a href={addressWith(null)}>Open the whole list</a>
        </p>
      </footer>
    </main>
  );
  if (assigned === null) root.render(page);
  else assigned.ready.then(() => root.render(page));
}

function roomFromHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  return /^[A-Za-z0-9._~-]{1,64}$/.test(raw) ? raw : 'demo';
}
