import { createRoot } from 'react-dom/client';
import { createSyncStore } from 'logsync';
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

async function start() {
  root.render(<p className="loading">Opening “{room}”…</p>);
  try {
    const store = await createSyncStore({
      // One origin serves the app and the API, so the URL follows the page.
      url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`,
      stream: `todos/${room}`,
      reducer: todosReducer,
      initialState,
      dbName: 'logsync-todomvc',
    });
    // Handy in the console: logsync.store.getState(), logsync.store.status.
    window.logsync = { store };
    root.render(
      <LogsyncProvider store={store}>
        <App room={room} />
      </LogsyncProvider>,
    );
  } catch (err) {
    root.render(
      <div className="fatal" role="alert">
        <h2>Could not open the todo list</h2>
        <p><code>{err.code ?? err.name}</code> {err.message}</p>
      </div>,
    );
  }
}

function roomFromHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  return /^[A-Za-z0-9._~-]{1,64}$/.test(raw) ? raw : 'demo';
}
