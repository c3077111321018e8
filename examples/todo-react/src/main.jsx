import { createRoot } from 'react-dom/client';
import { configureStore } from '@reduxjs/toolkit';
import { logsync } from 'logsync/redux';
import { LogsyncProvider } from 'logsync/react';
import { App } from './App.jsx';
import { initialState, todosReducer } from './todos.js';
import './styles.css';

// The room is the URL's hash (#team-42), so a link opens the same list.
const room = roomFromHash();
const root = createRoot(document.getElementById('root'));

if ('serviceWorker' in navigator && import.meta.env.PROD) {
  // The app shell works offline too (see sw.js).
  navigator.serviceWorker.register('/sw.js').catch((err) => console.warn('service worker not registered:', err));
}
window.addEventListener('hashchange', () => {
  if (roomFromHash() !== room) location.reload();
});

start();

function start() {
  root.render(<p className="loading">Opening “{room}”…</p>);
  // A Redux Toolkit store, made at once; the Logsync enhancer (last) syncs
  // it and hydrates it from IndexedDB in the background. Logsync connects
  // the Redux DevTools itself, hence devTools: false.
  const store = configureStore({
    reducer: todosReducer,
    preloadedState: initialState,
    enhancers: (getDefault) => getDefault().concat(logsync({
      // One origin serves the app and the API, so the URL follows the page.
      url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`,
      stream: `todos/${room}`,
      dbName: 'logsync-todomvc',
    })),
    devTools: false,
  });
  // Handy in the console: logsync.store.getState(), logsync.store.getStatus().
  window.logsync = { store };
  // The list shows once the stored state is in, so a reload never flashes
  // an empty list before the stored one.
  store.ready.then(
    () => root.render(
      <LogsyncProvider store={store}>
        <App room={room} />
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

function roomFromHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  return /^[A-Za-z0-9._~-]{1,64}$/.test(raw) ? raw : 'demo';
}
