// "Assigned to me": the open todos assigned to this window's user, as the
// server's view `assignedTo` (todos.js) answers them. The panel reads a view
// store, never the list's replica, so it also works in a window that
// replicates nothing of the list (?only=assigned, see main.jsx): the server
// folds the list and sends only this user's part of it.
import { useState, useSyncExternalStore } from 'react';
import { useView } from 'logsync/react';
import { cleanName } from './todos.js';

const USER_KEY = 'logsync-todomvc-user';

/** Who "me" is: `?user=` in the address (remembered), else the name remembered last time, else null. */
export function userFromPage() {
  const fromAddress = cleanName(new URLSearchParams(location.search).get('user'));
  try {
    if (fromAddress !== null) localStorage.setItem(USER_KEY, fromAddress);
    return fromAddress ?? cleanName(localStorage.getItem(USER_KEY));
  } catch {
    return fromAddress; // no localStorage (e.g. blocked): the address only
  }
}

/** Opens this page again as `name` (the view's params are chosen once per page, like the room). */
function becomeUser(name) {
  const user = cleanName(name);
  const next = new URL(location.href);
  if (user === null) next.searchParams.delete('user');
  else next.searchParams.set('user', user);
  try {
    if (user === null) localStorage.removeItem(USER_KEY);
    else localStorage.setItem(USER_KEY, user);
  } catch {
    // the address carries it
  }
  location.assign(next);
}

/** The same page with `?only=` changed: the whole list, or only the panel. */
export function addressWith(only) {
  const next = new URL(location.href);
  if (only) next.searchParams.set('only', only);
  else next.searchParams.delete('only');
  return next.href;
}

/**
 * @param {{ viewStore: import('logsync').ViewStore<{ id: string, text: string }[]> | null, user: string | null }} props
 *   `viewStore` follows view `assignedTo` with params `{ user }`; null without a user.
 */
export function AssignedPanel({ viewStore, user }) {
  const [renaming, setRenaming] = useState(false);
  if (viewStore === null || renaming) {
    return (
      <section className="assigned" data-testid="assigned">
        <h2>Assigned to me</h2>
        <WhoAmI user={user} onCancel={user === null ? null : () => setRenaming(false)} />
      </section>
    );
  }
  return <AssignedList viewStore={viewStore} user={user} onRename={() => setRenaming(true)} />;
}

function AssignedList({ viewStore, user, onRename }) {
  const todos = useView(viewStore);
  const status = useSyncExternalStore(viewStore.onStatus, () => viewStore.status);
  return (
    <section
      className="assigned"
      data-testid="assigned"
      data-user={user}
      data-online={String(status.online)}
      data-offset={status.offset}
      data-known={String(todos !== undefined)}
    >
      <h2>
        Assigned to me <span className="muted">({user})</span>
        <button className="rename" onClick={onRename}>not {user}?</button>
      </h2>
      {todos === undefined ? (
        <p className="muted">{status.lastError ? `Not loaded yet: ${status.lastError.message}` : 'Loading…'}</p>
      ) : todos.length === 0 ? (
        <p className="muted" data-testid="assigned-empty">Nothing open is assigned to {user}.</p>
      ) : (
        <ul>
          {todos.map((t) => (
            <li key={t.id} data-testid="assigned-item" data-id={t.id}>{t.text}</li>
          ))}
        </ul>
      )}
      <p className="muted view-status" title="The server's view assignedTo; the offset is the event of the list after which its answer last changed (or was first sent)">
        {status.online ? 'live' : status.lastError ? 'offline: as last seen' : 'connecting'} · updated at offset {status.offset}
        {!status.online && status.lastError && <span className="error"> {status.lastError.code}</span>}
      </p>
    </section>
  );
}

function WhoAmI({ user, onCancel }) {
  return (
    <label className="who">
      Your name:{' '}
      <input
        data-testid="user-name"
        defaultValue={user ?? ''}
        placeholder="e.g. bob"
        maxLength={64}
        autoFocus={user !== null}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && cleanName(e.currentTarget.value) !== null) becomeUser(e.currentTarget.value);
          else if (e.key === 'Escape') onCancel?.();
        }}
      />
    </label>
  );
}
