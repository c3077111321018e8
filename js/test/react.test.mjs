// logsync/react: the provider and hooks on useSyncExternalStore, rendered
// with react-dom in jsdom. The store here is the in-memory one (to count
// renders precisely); react-redux.test.mjs renders a real Logsync store.
import './dom.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createElement as h, act, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { LogsyncProvider, useSyncState, useDispatch, useSyncStatus, useLogsyncStore, shallowEqual, useView } from 'logsync/react';
import { freshRoot } from './dom.mjs';
import { memoryStore } from './memory-store.mjs';

const reducer = (state, action) => {
  switch (action.type) {
    case 'todo/added':
      return { ...state, todos: [...state.todos, action.text] };
    case 'filter/set':
      return { ...state, filter: action.filter };
    default:
      return state;
  }
};
const initial = { todos: [], filter: 'all' };

async function render(store, element) {
  const el = freshRoot();
  const root = createRoot(el);
  await act(async () => root.render(h(LogsyncProvider, { store }, element)));
  return { el, unmount: () => act(async () => root.unmount()) };
}

test('useSyncState re-renders on change; a selector skips unrelated changes', async () => {
  const store = memoryStore(reducer, initial);
  const renders = { count: 0, filter: 0 };
  function Count() {
    renders.count++;
    const n = useSyncState((s) => s.todos.length);
    return h('span', { id: 'count' }, String(n));
  }
  function Filter() {
    renders.filter++;
    const f = useSyncState((s) => s.filter);
    return h('span', { id: 'filter' }, f);
  }
  const { el, unmount } = await render(store, h('div', null, h(Count), h(Filter)));
  assert.equal(el.querySelector('#count').textContent, '0');
  assert.deepEqual(renders, { count: 1, filter: 1 });

  await act(async () => store.dispatch({ type: 'todo/added', text: 'milk' }));
  assert.equal(el.querySelector('#count').textContent, '1');
  assert.deepEqual(renders, { count: 2, filter: 1 }, 'Filter must not re-render for a todo');

  await act(async () => store.dispatch({ type: 'filter/set', filter: 'done' }));
  assert.equal(el.querySelector('#filter').textContent, 'done');
  assert.deepEqual(renders, { count: 2, filter: 2 }, 'Count must not re-render for a filter');
  await unmount();
});

test('isEqual keeps a derived value (a new array each time) from re-rendering', async () => {
  const store = memoryStore(reducer, initial);
  let renders = 0;
  const upper = (s) => s.todos.map((t) => t.toUpperCase());
  function List() {
    renders++;
    const items = useSyncState(upper, shallowEqual);
    return h('ul', null, items.map((t) => h('li', { key: t }, t)));
  }
  const { el, unmount } = await render(store, h(List));
  await act(async () => store.dispatch({ type: 'todo/added', text: 'tea' }));
  assert.equal(el.querySelectorAll('li').length, 1);
  assert.equal(renders, 2);
  await act(async () => store.dispatch({ type: 'filter/set', filter: 'x' }));
  assert.equal(renders, 2, 'same items by shallowEqual: no render');
  await unmount();
});

test('an inline selector that depends on props follows the props', async () => {
  const store = memoryStore(reducer, { todos: ['a', 'b', 'c'], filter: 'all' });
  let setIndex;
  function Item() {
    const [i, set] = useState(0);
    setIndex = set;
    const t = useSyncState((s) => s.todos[i]);
    return h('b', null, t);
  }
  const { el, unmount } = await render(store, h(Item));
  assert.equal(el.textContent, 'a');
  await act(async () => setIndex(2));
  assert.equal(el.textContent, 'c');
  await unmount();
});

test('useDispatch is the store\'s dispatch and works from an event handler', async () => {
  const store = memoryStore(reducer, initial);
  function Add() {
    const dispatch = useDispatch();
    const n = useSyncState((s) => s.todos.length);
    return h('button', { onClick: () => dispatch({ type: 'todo/added', text: `t${n}` }) }, String(n));
  }
  const { el, unmount } = await render(store, h(Add));
  const button = el.querySelector('button');
  await act(async () => button.dispatchEvent(new window.MouseEvent('click', { bubbles: true })));
  await act(async () => button.dispatchEvent(new window.MouseEvent('click', { bubbles: true })));
  assert.equal(button.textContent, '2');
  assert.deepEqual(store.getState().todos, ['t0', 't1']);
  await unmount();
});

test('useSyncStatus follows the status; a selector skips other fields', async () => {
  const store = memoryStore(reducer, initial);
  let renders = 0;
  function Bar() {
    renders++;
    const online = useSyncStatus((s) => s.online);
    const status = useLogsyncStore().status;
    return h('i', null, `${online ? 'online' : 'offline'} ${status.pending}`);
  }
  function Whole() {
    const s = useSyncStatus();
    return h('em', null, String(s.offset));
  }
  const { el, unmount } = await render(store, h('div', null, h(Bar), h(Whole)));
  assert.equal(el.querySelector('i').textContent, 'offline 0');
  await act(async () => store.setStatus({ online: true }));
  assert.equal(el.querySelector('i').textContent, 'online 0');
  assert.equal(renders, 2);
  await act(async () => store.setStatus({ offset: 5 }));
  assert.equal(el.querySelector('em').textContent, '5');
  assert.equal(renders, 2, 'Bar selects only `online`');
  await unmount();
});

test('unmounting unsubscribes', async () => {
  const store = memoryStore(reducer, initial);
  function Both() {
    useSyncState();
    useSyncStatus();
    return null;
  }
  const { unmount } = await render(store, h(Both));
  assert.equal(store.listenerCount(), 2);
  await unmount();
  assert.equal(store.listenerCount(), 0);
});

test('hooks outside a provider, and a provider without a store, say how to fix it', async (t) => {
  t.mock.method(console, 'error', () => {});
  function Lonely() {
    useSyncState();
    return null;
  }
  const renderError = async (element) => {
    try {
      await act(async () => createRoot(freshRoot()).render(element));
    } catch (err) {
      return err;
    }
    return null;
  };
  const outside = await renderError(h(Lonely));
  assert.equal(outside?.code, 'INVALID_REQUEST');
  assert.match(outside.message, /inside <LogsyncProvider store=\{store\}>/);
  const noStore = await renderError(h(LogsyncProvider, { store: undefined }));
  assert.equal(noStore?.code, 'INVALID_REQUEST');
  assert.match(noStore.message, /needs the store that createSyncStore\(\) resolved to/);
});

test('useView renders a view store\'s result (undefined until known) and re-renders on a new one; a selector skips equal results', async () => {
  // What useView reads of a view store (createViewStore): getState and subscribe.
  let result;
  const listeners = new Set();
  const view = {
    getState: () => result,
    subscribe: (l) => { listeners.add(l); return () => listeners.delete(l); },
  };
  const set = (next) => { result = next; for (const l of [...listeners]) l(); };
  const renders = { list: 0, count: 0 };
  function List() {
    renders.list++;
    const list = useView(view);
    return h('span', { id: 'list' }, list === undefined ? 'loading' : list.join(','));
  }
  function Count() {
    renders.count++;
    return h('span', { id: 'n' }, String(useView(view, (r) => r?.length ?? 0)));
  }
  const el = freshRoot();
  const root = createRoot(el);
  await act(async () => root.render(h('div', null, h(List), h(Count))));
  assert.equal(el.querySelector('#list').textContent, 'loading');
  await act(async () => set(['milk']));
  assert.equal(el.querySelector('#list').textContent, 'milk');
  assert.equal(el.querySelector('#n').textContent, '1');
  await act(async () => set(['eggs']));
  assert.equal(el.querySelector('#list').textContent, 'eggs');
  assert.deepEqual(renders, { list: 3, count: 2 }, 'the count stayed 1: Count did not re-render');
  assert.equal(listeners.size, 2);
  await act(async () => root.unmount());
  assert.equal(listeners.size, 0, 'unsubscribed on unmount');
});
