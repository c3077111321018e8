import { useEffect, useState } from 'react';
import { useLogsyncStore, useSyncStatus } from 'logsync/react';

export function StatusBar({ room }) {
  const status = useSyncStatus();
  const store = useLogsyncStore();
  const [rejection, setRejection] = useState(null);
  useEffect(() => store.onRejected((r) => setRejection(r)), [store]);

  const { online, leader, pending, offset, head, behind, lastError } = status;
  return (
    <aside
      className={`status ${online ? 'online' : 'offline'}`}
      data-testid="status"
      data-online={String(online)}
      data-leader={String(leader)}
      title={leader ? 'This tab holds the connection for every tab of this browser' : 'Synced through another tab of this browser'}
      data-pending={pending}
      data-offset={offset}
      aria-live="polite"
    >
      <span className="dot" aria-hidden="true" />
      <strong>{online ? 'Online' : 'Offline'}</strong>
      <span data-testid="pending">
        {pending === 0 ? 'all changes synced' : `${pending} pending ${pending === 1 ? 'change' : 'changes'}`}
      </span>
      <span className="muted" title="Last event applied / last event on the server">
        offset {offset}
        {head > offset ? ` of ${head}` : ''}
      </span>
      {behind > 0 && (
        // Catching up after a long time offline: `behind` is head - offset.
        <progress data-testid="catch-up" value={offset} max={head} title={`${behind} events to catch up on`} />
      )}
      <span className="muted">room {room}</span>
      {!online && lastError && (
        <span className="error" title={lastError.message}>
          {lastError.code}
        </span>
      )}
      {rejection && (
        <span className="error" role="alert">
          Not saved: {rejection.message} ({rejection.code})
          <button onClick={() => setRejection(null)} aria-label="Dismiss">×</button>
        </span>
      )}
    </aside>
  );
}
