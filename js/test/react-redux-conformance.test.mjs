// react-redux's contract, point by point (after react-redux's own
// useSelector, connect and Provider test suites), each point run against a
// plain Redux store and a hydrated Logsync store made through the
// `logsync()` enhancer; then what only a Logsync store does: state that
// changes without a dispatch (hydration, discard, replaceReducer) reaches
// useSelector and connect. The real wasm module in Node, fake-indexeddb,
// jsdom, no server.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import './dom.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createElement as h, act, Component, useCallback, useLayoutEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { Provider, connect, shallowEqual, useDispatch, useSelector } from 'react-redux';
import { legacy_createStore as createStore } from 'redux';
import { logsync } from 'logsync/redux';
import { freshRoot } from './dom.mjs';

const VARIANTS = [
  { name: 'redux', logsync: false },
  { name: 'logsync, hydrated', logsync: true },
];

const options = (stream = 'test/react-redux-conformance', dbName = `rr-conformance-${randomUUID()}`) => ({
  url: 'ws://127.0.0.1:9/v1/ws', stream, dbName, connect: false, devtools: false,
});

async function make(t, v, reducer, preloadedState) {
  if (!v.logsync) return createStore(reducer, preloadedState);
  const store = createStore(reducer, preloadedState, logsync(options()));
  t.after(() => store.close());
  await store.ready;
  return store;
}

function contract(title, fn) {
  test(title, async (t) => {
    for (const v of VARIANTS) {
      await t.test(v.name, (st) => fn(st, v));
    }
  });
}

// Renders `element` into a fresh root, unmounted after the test.
async function render(t, element) {
  const el = freshRoot();
  const root = createRoot(el);
  await act(async () => root.render(element));
  t.after(() => act(async () => root.unmount()));
  return { el, root };
}

const run = (fn) => act(async () => { fn(); });

// react-redux's "normal store": every action (the init one too) counts.
const counting = ({ count } = { count: -1 }) => ({ count: count + 1 });

contract('useSelector selects the state on the first render and re-renders on an update', async (t, v) => {
  const store = await make(t, v, counting);
  const rendered = [];
  function Comp() {
    const count = useSelector((s) => s.count);
    rendered.push(count);
    return h('div', null, String(count));
  }
  const { el } = await render(t, h(Provider, { store }, h(Comp)));
  assert.equal(el.textContent, '0');
  await run(() => store.dispatch({ type: '' }));
  assert.equal(el.textContent, '1');
  assert.deepEqual(rendered, [0, 1]);
});

contract('useSelector always uses the latest state', async (t, v) => {
  const store = await make(t, v, (c = 1) => c + 1, -1);
  const rendered = [];
  function Comp() {
    const selector = useCallback((c) => c + 1, []);
    rendered.push(useSelector(selector));
    return null;
  }
  await render(t, h(Provider, { store }, h(Comp)));
  assert.deepEqual(rendered, [1]);
  await run(() => store.dispatch({ type: '' }));
  assert.deepEqual(rendered, [1, 2]);
});

contract('useSelector notices store updates between render and its subscription effect', async (t, v) => {
  const store = await make(t, v, counting);
  const rendered = [];
  function Child({ count }) {
    useLayoutEffect(() => {
      if (count === 0) store.dispatch({ type: '' });
    }, [count]);
    return null;
  }
  function Comp() {
    const count = useSelector((s) => s.count);
    useLayoutEffect(() => {
      rendered.push(count);
    });
    return h('div', null, String(count), h(Child, { count }));
  }
  await render(t, h(Provider, { store }, h(Comp)));
  assert.deepEqual(rendered, [0, 1]);
});

contract('a memoized selector with a dispatch in a child\'s layout effect', async (t, v) => {
  const store = await make(t, v, (c = 1) => c + 1, -1);
  const rendered = [];
  function Child({ parentCount }) {
    useLayoutEffect(() => {
      if (parentCount === 1) store.dispatch({ type: '' });
    }, [parentCount]);
    return h('div', null, String(parentCount));
  }
  function Comp() {
    const selector = useCallback((c) => c, []);
    const count = useSelector(selector);
    rendered.push(count);
    return h(Child, { parentCount: count });
  }
  await render(t, h(Provider, { store }, h(Comp)));
  assert.deepEqual(rendered, [0]);
  await run(() => store.dispatch({ type: '' }));
  assert.deepEqual(rendered, [0, 1, 2]);
});

contract('useSelector compares by reference: an action that keeps the state does not re-render', async (t, v) => {
  const store = await make(t, v, (state = { n: 0 }, action) => (action.type === 'inc' ? { n: state.n + 1 } : state));
  const rendered = [];
  function Comp() {
    rendered.push(useSelector((s) => s));
    return null;
  }
  await render(t, h(Provider, { store }, h(Comp)));
  await run(() => store.dispatch({ type: 'unknown' }));
  assert.equal(rendered.length, 1);
  await run(() => store.dispatch({ type: 'inc' }));
  assert.equal(rendered.length, 2);
  assert.deepEqual(rendered[1], { n: 1 });
});

contract('useSelector with an equality function skips equal results', async (t, v) => {
  const store = await make(t, v, counting);
  const rendered = [];
  function Comp() {
    rendered.push(useSelector((s) => ({ tens: Math.floor(s.count / 10) }), shallowEqual));
    return null;
  }
  await render(t, h(Provider, { store }, h(Comp)));
  await run(() => {
    for (let i = 0; i < 5; i++) store.dispatch({ type: '' });
  });
  assert.equal(rendered.length, 1);
});

contract('useSelector uses the latest selector', async (t, v) => {
  const store = await make(t, v, counting);
  let setOffset;
  const rendered = [];
  function Comp() {
    const [offset, set] = useState(0);
    setOffset = set;
    rendered.push(useSelector((s) => s.count + offset));
    return null;
  }
  await render(t, h(Provider, { store }, h(Comp)));
  await act(async () => setOffset(100));
  await run(() => store.dispatch({ type: '' }));
  assert.deepEqual(rendered, [0, 100, 101]);
});

contract('useSelector ignores a transient error of a child\'s selector (stale props)', async (t, v) => {
  const store = await make(t, v, counting);
  function Child({ parentCount }) {
    const result = useSelector(({ count }) => {
      if (count !== parentCount) throw new Error('stale props');
      return count + parentCount;
    });
    return h('div', null, String(result));
  }
  function Parent() {
    return h(Child, { parentCount: useSelector((s) => s.count) });
  }
  const { el } = await render(t, h(Provider, { store }, h(Parent)));
  await run(() => store.dispatch({ type: '' }));
  assert.equal(el.textContent, '2');
});

contract('dispatches in one event handler render once (batched)', async (t, v) => {
  const store = await make(t, v, counting);
  const rendered = [];
  let seenDispatch = null;
  function Comp() {
    const count = useSelector((s) => s.count);
    const dispatch = useDispatch();
    seenDispatch = dispatch;
    rendered.push(count);
    return h('button', { onClick: () => { dispatch({ type: '' }); dispatch({ type: '' }); dispatch({ type: '' }); } }, String(count));
  }
  const { el } = await render(t, h(Provider, { store }, h(Comp)));
  await act(async () => el.querySelector('button').dispatchEvent(new window.MouseEvent('click', { bubbles: true })));
  assert.deepEqual(rendered, [0, 3]);
  assert.equal(seenDispatch, store.dispatch, 'useDispatch gives the store\'s own dispatch');
});

contract('connect passes the state to mapState consistently, parents before children', async (t, v) => {
  const store = await make(t, v, (prev = '', action) => (action.type === 'APPEND' ? prev + action.body : prev));
  await run(() => store.dispatch({ type: 'APPEND', body: 'a' }));
  const childCalls = [];
  const Child = connect((state, parentProps) => {
    childCalls.push([state, parentProps.parentState]);
    return {};
  })(() => h('div'));
  class Container extends Component {
    render() {
      return h('div', null,
        h('button', { onClick: () => store.dispatch({ type: 'APPEND', body: 'b' }) }, 'change'),
        h(Child, { parentState: this.props.state }));
    }
  }
  const Wrapper = connect((state) => ({ state }))(Container);
  const { el } = await render(t, h(Provider, { store }, h(Wrapper)));
  assert.equal(childCalls.length, 1);
  await run(() => store.dispatch({ type: 'APPEND', body: 'c' }));
  assert.equal(childCalls.length, 2);
  await act(async () => el.querySelector('button').dispatchEvent(new window.MouseEvent('click', { bubbles: true })));
  assert.equal(childCalls.length, 3);
  await run(() => store.dispatch({ type: 'APPEND', body: 'd' }));
  assert.deepEqual(childCalls, [['a', 'a'], ['ac', 'ac'], ['acb', 'acb'], ['acbd', 'acbd']]);
});

contract('<Provider> accepts a new store in its props', async (t, v) => {
  const store1 = await make(t, v, (state = 10) => state + 1);
  const store2 = await make(t, v, (state = 10) => state * 2);
  const store3 = await make(t, v, (state = 10) => state * state + 1);
  function Child() {
    return h('p', null, `store - ${useSelector((s) => s)}`);
  }
  let setStore;
  function Container() {
    const [store, set] = useState(store1);
    setStore = set;
    return h(Provider, { store }, h(Child));
  }
  const { el } = await render(t, h(Container));
  assert.equal(el.textContent, 'store - 11');
  await act(async () => setStore(store2));
  assert.equal(el.textContent, 'store - 20');
  await run(() => store1.dispatch({ type: 'hi' }));
  assert.equal(el.textContent, 'store - 20', 'the old store no longer renders');
  await run(() => store2.dispatch({ type: 'hi' }));
  assert.equal(el.textContent, 'store - 40');
  await act(async () => setStore(store3));
  assert.equal(el.textContent, 'store - 101');
  await run(() => store2.dispatch({ type: 'hi' }));
  assert.equal(el.textContent, 'store - 101');
  await run(() => store3.dispatch({ type: 'hi' }));
  assert.equal(el.textContent, 'store - 10202');
});

contract('unmounting unsubscribes: later dispatches run no selector', async (t, v) => {
  const store = await make(t, v, counting);
  let calls = 0;
  function Comp() {
    return h('div', null, String(useSelector((s) => { calls++; return s.count; })));
  }
  const el = freshRoot();
  const root = createRoot(el);
  await act(async () => root.render(h(Provider, { store }, h(Comp))));
  await act(async () => root.unmount());
  const before = calls;
  await run(() => store.dispatch({ type: '' }));
  assert.equal(calls, before);
});

// Logsync only: the state also changes without a dispatch.

const list = (state = [], action) => (action.type === 'add' ? [...state, action.id] : state);

test('Logsync only: hydration, discard and replaceReducer re-render useSelector and connect', async (t) => {
  const opts = options('test/rr-no-dispatch');
  const first = createStore(list, logsync(opts));
  first.dispatch({ type: 'add', id: 'stored' });
  await first.close();

  const store = createStore(list, logsync(opts));
  t.after(() => store.close());
  store.dispatch({ type: 'add', id: 'early' });
  function Hook() {
    return h('p', null, useSelector((s) => s.join(',')));
  }
  const Connected = connect((s) => ({ n: s.length }))(({ n }) => h('output', null, String(n)));
  const { el } = await render(t, h(Provider, { store }, h(Hook), h(Connected)));
  const shown = () => `${el.querySelector('p').textContent} ${el.querySelector('output').textContent}`;
  if (!store.getStatus().hydrated) assert.equal(shown(), 'early 1', 'before hydration: the early action on the initial state');

  await act(async () => store.ready);
  assert.equal(shown(), 'stored,early 2', 'hydration: rebased onto the stored state');

  const deadline = performance.now() + 5_000;
  while (store.pending().some((p) => p.seq === null)) {
    if (performance.now() > deadline) assert.fail('timed out waiting for the early action to be written');
    await act(async () => new Promise((r) => setTimeout(r, 5)));
  }
  const early = store.pending().find((p) => p.action.id === 'early');
  await act(async () => store.discard(early.seq));
  assert.equal(shown(), 'stored 1', 'discard: taken out of the state');

  await act(async () => store.replaceReducer((state = [], action) => (action.type === 'add' ? [...state, action.id.toUpperCase()] : state)));
  assert.equal(shown(), 'STORED 1', 'replaceReducer: the pending action folded again with the new reducer');
});
