// react-redux's <Provider> with a real Logsync store (the wasm engine in
// Node, fake-indexeddb, no server): it renders, dispatches through
// react-redux, and re-renders on changes from either side.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import './dom.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createElement as h, act } from 'react';
import { createRoot } from 'react-dom/client';
import { Provider, useDispatch, useSelector, connect } from 'react-redux';
import { createSyncStore } from 'logsync';
import { LogsyncProvider, useSyncStatus } from 'logsync/react';
import { freshRoot } from './dom.mjs';

const todos = (state = { todos: [] }, action) =>
  action.type === 'todo/added' ? { todos: [...state.todos, action.text] } : state;

test('react-redux <Provider store={logsyncStore}> renders, dispatches and re-renders', async () => {
  const store = await createSyncStore({
    url: 'ws://127.0.0.1:9/v1/ws', stream: 'test/react-redux', reducer: todos,
    dbName: `react-redux-${randomUUID()}`, connect: false,
  });
  let renders = 0;
  function List() {
    renders++;
    const items = useSelector((s) => s.todos);
    const dispatch = useDispatch();
    return h('div', null,
      h('ul', null, items.map((t, i) => h('li', { key: i }, t))),
      h('button', { onClick: () => dispatch({ type: 'todo/added', text: `from react-redux ${items.length}` }) }, 'add'));
  }
  const Count = connect((s) => ({ n: s.todos.length }))(({ n }) => h('output', null, String(n)));
  function Pending() {
    return h('em', null, String(useSyncStatus((s) => s.pending)));
  }

  const el = freshRoot();
  const root = createRoot(el);
  await act(async () => root.render(
    h(Provider, { store }, h(LogsyncProvider, { store }, h(List), h(Count), h(Pending))),
  ));
  assert.equal(el.querySelectorAll('li').length, 0);
  assert.equal(el.querySelector('output').textContent, '0');

  await act(async () => el.querySelector('button').dispatchEvent(new window.MouseEvent('click', { bubbles: true })));
  assert.deepEqual([...el.querySelectorAll('li')].map((li) => li.textContent), ['from react-redux 0']);
  assert.equal(el.querySelector('output').textContent, '1');

  await act(async () => store.dispatch({ type: 'todo/added', text: 'from the store' }));
  assert.deepEqual([...el.querySelectorAll('li')].map((li) => li.textContent), ['from react-redux 0', 'from the store']);
  assert.equal(el.querySelector('output').textContent, '2');
  assert.ok(renders >= 3);

  // Offline, both actions wait in the outbox; the status shows it.
  const deadline = performance.now() + 5_000;
  while (el.querySelector('em').textContent !== '2' && performance.now() < deadline) {
    await act(async () => new Promise((r) => setTimeout(r, 10)));
  }
  assert.equal(el.querySelector('em').textContent, '2');

  await act(async () => root.unmount());
  await store.close();
});

test('a configureStore + logsync() store in react-redux: renders before hydration, useSyncStatus follows getStatus()', async () => {
  const { configureStore } = await import('@reduxjs/toolkit');
  const { logsync } = await import('logsync/redux');
  const store = configureStore({
    reducer: todos,
    enhancers: (getDefault) => getDefault().concat(logsync({
      url: 'ws://127.0.0.1:9/v1/ws', stream: 'test/react-rtk', dbName: `react-rtk-${randomUUID()}`, connect: false, devtools: false,
    })),
    devTools: false,
  });
  function App() {
    const items = useSelector((s) => s.todos);
    const hydrated = useSyncStatus((s) => s.hydrated);
    const pending = useSyncStatus((s) => s.pending);
    return h('p', null, `${items.length} ${hydrated} ${pending}`);
  }
  const el = freshRoot();
  const root = createRoot(el);
  await act(async () => {
    root.render(h(Provider, { store }, h(LogsyncProvider, { store }, h(App))));
    store.dispatch({ type: 'todo/added', text: 'early' });
  });
  assert.equal(store.getStatus().pending, 1);
  assert.equal(store.status.pending, 0, 'the enhancers around it copied the status getter once: read getStatus()');
  const deadline = performance.now() + 5_000;
  while (el.querySelector('p').textContent !== '1 true 1' && performance.now() < deadline) {
    await act(async () => new Promise((r) => setTimeout(r, 10)));
  }
  assert.equal(el.querySelector('p').textContent, '1 true 1', 'hydrated, and the early action pending once');
  await act(async () => root.unmount());
  await store.close();
});
