// Redux's createStore contract, point by point (after Redux's own
// createStore and applyMiddleware test suites), each point run against a
// plain Redux store and against Logsync stores made through the `logsync()`
// enhancer: before hydration, hydrated, and with every action kept local by
// `filter` (three code paths of the Logsync store). Where Logsync differs
// by design, the case asserts the documented Logsync behaviour and says
// "by design" (js/README.md, "Differences from Redux's createStore").
// The real wasm module in Node; IndexedDB is fake-indexeddb; no server.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import vm from 'node:vm';
import { applyMiddleware, combineReducers, compose, legacy_createStore as createStore } from 'redux';
import { configureStore } from '@reduxjs/toolkit';
import { LogsyncError } from 'logsync';
import { logsync } from 'logsync/redux';

const $$observable = (typeof Symbol === 'function' && Symbol.observable) || '@@observable';

// The stores every contract point runs against.
const VARIANTS = [
  { name: 'redux', logsync: false },
  { name: 'logsync, before hydration', logsync: true, hydrate: false },
  { name: 'logsync, hydrated', logsync: true, hydrate: true },
  { name: 'logsync, local actions (filter)', logsync: true, hydrate: true, local: true },
];

const options = (v) => ({
  url: 'ws://127.0.0.1:9/v1/ws',
  stream: 'test/conformance',
  dbName: `conformance-${randomUUID()}`,
  connect: false,
  devtools: false,
  ...(v.local ? { filter: () => false } : {}),
});

// `createStore(reducer, preloadedState?, enhancer?)` for the variant: the
// Logsync variants put `logsync(…)` last, after `enhancer`.
async function make(t, v, reducer, preloadedState, enhancer) {
  let store;
  if (!v.logsync) {
    store = createStore(reducer, preloadedState, enhancer);
  } else {
    const last = logsync(options(v));
    store = createStore(reducer, preloadedState, enhancer ? compose(enhancer, last) : last);
    t.after(() => store.close());
    if (v.hydrate) {
      await store.ready;
      assert.equal(store.getStatus().hydrated, true);
    } else {
      assert.equal(store.getStatus().hydrated, false, 'the case runs before hydration');
    }
  }
  return store;
}

// One test per contract point, one subtest per variant.
function contract(title, fn) {
  test(title, async (t) => {
    for (const v of VARIANTS) {
      await t.test(v.name, (st) => fn(st, v));
    }
  });
}

// A call counter standing in for a mock function.
function spy(impl = () => {}) {
  const f = function (...args) {
    f.calls.push({ self: this, args });
    return impl.apply(this, args);
  };
  f.calls = [];
  return f;
}

// After Redux's test helpers.
const ADD_TODO = 'ADD_TODO';
const addTodo = (text) => ({ type: ADD_TODO, text });
const unknownAction = () => ({ type: 'UNKNOWN' });
const nextId = (state) => state.reduce((max, item) => (item.id > max ? item.id : max), 0) + 1;
const todos = (state = [], action) => (action.type === ADD_TODO ? [...state, { id: nextId(state), text: action.text }] : state);
const todosReverse = (state = [], action) => (action.type === ADD_TODO ? [{ id: nextId(state), text: action.text }, ...state] : state);
const foo = (state = 0, action) => (action.type === 'foo' ? 1 : state);
const bar = (state = 0, action) => (action.type === 'bar' ? 2 : state);

// Logsync errors are LogsyncErrors with a code; Redux's are Errors.
const refused = (v, code, pattern) => (err) => {
  if (v.logsync) {
    assert.ok(err instanceof LogsyncError, `a LogsyncError, got ${err}`);
    assert.equal(err.code, code, err.message);
  } else {
    assert.ok(err instanceof Error);
  }
  if (pattern) assert.match(err.message, pattern);
  return true;
};

contract('exposes the public API: getState, dispatch, subscribe, replaceReducer, [Symbol.observable]', async (t, v) => {
  const store = await make(t, v, combineReducers({ todos }));
  const methods = Object.keys(store).filter((key) => key !== $$observable);
  for (const name of ['getState', 'dispatch', 'subscribe', 'replaceReducer']) {
    assert.equal(typeof store[name], 'function', name);
  }
  assert.equal(typeof store[$$observable], 'function');
  if (v.logsync) {
    // By design: the sync API sits next to Redux's four methods.
    for (const name of ['ready', 'getStatus', 'onStatus', 'onError', 'onRejected', 'onIntent', 'synced', 'pending', 'discard', 'close']) {
      assert.ok(methods.includes(name), name);
    }
  } else {
    assert.equal(methods.length, 4);
  }
});

contract('throws if the reducer is not a function', async (t, v) => {
  const enhancer = v.logsync ? logsync(options(v)) : undefined;
  for (const bad of [undefined, 'test', {}]) {
    assert.throws(() => createStore(bad, enhancer));
  }
  if (v.logsync) {
    // By design: the state must be a JSON value, so a reducer whose
    // initial state is undefined is refused when the store is made.
    assert.throws(() => createStore(() => {}, enhancer), refused(v, 'INVALID_REQUEST', /returned undefined/));
  } else {
    assert.doesNotThrow(() => createStore(() => {}, enhancer));
  }
});

contract('passes the initial state (preloadedState)', async (t, v) => {
  const store = await make(t, v, todos, [{ id: 1, text: 'Hello' }]);
  assert.deepEqual(store.getState(), [{ id: 1, text: 'Hello' }]);
});

contract('a partial preloadedState goes through the reducer once: combineReducers fills the missing slices', async (t, v) => {
  const store = await make(t, v, combineReducers({ foo, bar }), { foo: 5 });
  assert.deepEqual(store.getState(), { foo: 5, bar: 0 });
});

contract('applies the reducer to the previous state; an unknown action keeps the state object', async (t, v) => {
  const store = await make(t, v, todos);
  assert.deepEqual(store.getState(), []);
  const before = store.getState();
  store.dispatch(unknownAction());
  assert.equal(store.getState(), before);
  store.dispatch(addTodo('Hello'));
  assert.deepEqual(store.getState(), [{ id: 1, text: 'Hello' }]);
  store.dispatch(addTodo('World'));
  assert.deepEqual(store.getState(), [{ id: 1, text: 'Hello' }, { id: 2, text: 'World' }]);
});

contract('applies the reducer to the initial state', async (t, v) => {
  const store = await make(t, v, todos, [{ id: 1, text: 'Hello' }]);
  store.dispatch(unknownAction());
  assert.deepEqual(store.getState(), [{ id: 1, text: 'Hello' }]);
  store.dispatch(addTodo('World'));
  assert.deepEqual(store.getState(), [{ id: 1, text: 'Hello' }, { id: 2, text: 'World' }]);
});

contract('dispatch returns the action it was given', async (t, v) => {
  const store = await make(t, v, todos);
  const action = addTodo('Hello');
  assert.equal(store.dispatch(action), action);
});

contract('replaceReducer: the new reducer applies to the next actions and subscribers hear of it', async (t, v) => {
  const store = await make(t, v, todos);
  const first = spy();
  const stop = store.subscribe(first);
  store.replaceReducer(todos);
  assert.equal(first.calls.length, 1, 'told once, even when nothing changed');
  stop();
  store.dispatch(addTodo('Hello'));
  store.dispatch(addTodo('World'));
  const listener = spy();
  store.subscribe(listener);
  store.replaceReducer(todosReverse);
  if (v.logsync) {
    // By design: the actions not yet confirmed by the server (here, all of
    // them: offline) are applied again with the new reducer; the confirmed
    // state is kept as it is.
    assert.deepEqual(store.getState(), [{ id: 2, text: 'World' }, { id: 1, text: 'Hello' }]);
    assert.equal(listener.calls.length, 1, 'subscribers hear of the recomputed state');
  } else {
    assert.deepEqual(store.getState(), [{ id: 1, text: 'Hello' }, { id: 2, text: 'World' }]);
    assert.equal(listener.calls.length, 1, 'Redux dispatches @@redux/REPLACE');
  }
  store.dispatch(addTodo('Perhaps'));
  assert.equal(store.getState()[0].text, 'Perhaps', 'the new reducer applies');
  store.replaceReducer(todos);
  store.dispatch(addTodo('Surely'));
  assert.deepEqual(store.getState().at(-1), { id: 4, text: 'Surely' });
  assert.deepEqual(store.getState().map((todo) => todo.text),
    v.logsync ? ['Hello', 'World', 'Perhaps', 'Surely'] : ['Perhaps', 'Hello', 'World', 'Surely']);
});

contract('supports multiple subscriptions', async (t, v) => {
  const store = await make(t, v, todos);
  const a = spy();
  const b = spy();
  const counts = () => [a.calls.length, b.calls.length];
  let unsubscribeA = store.subscribe(a);
  store.dispatch(unknownAction());
  assert.deepEqual(counts(), [1, 0]);
  store.dispatch(unknownAction());
  assert.deepEqual(counts(), [2, 0]);
  const unsubscribeB = store.subscribe(b);
  assert.deepEqual(counts(), [2, 0]);
  store.dispatch(unknownAction());
  assert.deepEqual(counts(), [3, 1]);
  unsubscribeA();
  store.dispatch(unknownAction());
  assert.deepEqual(counts(), [3, 2]);
  unsubscribeB();
  store.dispatch(unknownAction());
  assert.deepEqual(counts(), [3, 2]);
  unsubscribeA = store.subscribe(a);
  store.dispatch(unknownAction());
  assert.deepEqual(counts(), [4, 2]);
});

contract('unsubscribe removes the listener once, however often it is called', async (t, v) => {
  const store = await make(t, v, todos);
  const a = spy();
  const b = spy();
  const unsubscribeA = store.subscribe(a);
  store.subscribe(b);
  unsubscribeA();
  unsubscribeA();
  store.dispatch(unknownAction());
  assert.equal(a.calls.length, 0);
  assert.equal(b.calls.length, 1);
});

contract('unsubscribe removes only its own subscription of a listener subscribed twice', async (t, v) => {
  const store = await make(t, v, todos);
  const listener = spy();
  store.subscribe(listener);
  const second = store.subscribe(listener);
  second();
  second();
  store.dispatch(unknownAction());
  assert.equal(listener.calls.length, 1);
});

contract('a listener may unsubscribe itself while it is called', async (t, v) => {
  const store = await make(t, v, todos);
  const a = spy();
  const b = spy();
  const c = spy();
  store.subscribe(a);
  const unsubscribeB = store.subscribe(() => {
    b();
    unsubscribeB();
  });
  store.subscribe(c);
  store.dispatch(unknownAction());
  store.dispatch(unknownAction());
  assert.deepEqual([a.calls.length, b.calls.length, c.calls.length], [2, 1, 2]);
});

contract('every listener of the dispatch is called even if one unsubscribes all of them', async (t, v) => {
  const store = await make(t, v, todos);
  const handles = [];
  const l1 = spy();
  const l2 = spy();
  const l3 = spy();
  handles.push(store.subscribe(() => l1()));
  handles.push(store.subscribe(() => {
    l2();
    handles.forEach((unsubscribe) => unsubscribe());
  }));
  handles.push(store.subscribe(() => l3()));
  store.dispatch(unknownAction());
  assert.deepEqual([l1.calls.length, l2.calls.length, l3.calls.length], [1, 1, 1]);
  store.dispatch(unknownAction());
  assert.deepEqual([l1.calls.length, l2.calls.length, l3.calls.length], [1, 1, 1]);
});

contract('a listener subscribed during a dispatch is called from the next dispatch on', async (t, v) => {
  const store = await make(t, v, todos);
  const l1 = spy();
  const l2 = spy();
  const l3 = spy();
  let added = false;
  store.subscribe(() => l1());
  store.subscribe(() => {
    l2();
    if (!added) {
      added = true;
      store.subscribe(() => l3());
    }
  });
  store.dispatch(unknownAction());
  assert.deepEqual([l1.calls.length, l2.calls.length, l3.calls.length], [1, 1, 0]);
  store.dispatch(unknownAction());
  assert.deepEqual([l1.calls.length, l2.calls.length, l3.calls.length], [2, 2, 1]);
});

contract('a nested dispatch uses the listeners as they are when it begins', async (t, v) => {
  const store = await make(t, v, todos);
  const l1 = spy();
  const l2 = spy();
  const l3 = spy();
  const l4 = spy();
  const counts = () => [l1, l2, l3, l4].map((l) => l.calls.length);
  let unsubscribe4;
  const unsubscribe1 = store.subscribe(() => {
    l1();
    assert.deepEqual(counts(), [1, 0, 0, 0]);
    unsubscribe1();
    unsubscribe4 = store.subscribe(l4);
    store.dispatch(unknownAction());
    assert.deepEqual(counts(), [1, 1, 1, 1]);
  });
  store.subscribe(l2);
  store.subscribe(l3);
  store.dispatch(unknownAction());
  assert.deepEqual(counts(), [1, 2, 2, 1]);
  unsubscribe4();
  store.dispatch(unknownAction());
  assert.deepEqual(counts(), [1, 3, 3, 1]);
});

contract('a listener reads the up-to-date state, and is called without arguments or this', async (t, v) => {
  const store = await make(t, v, todos);
  const seen = [];
  store.subscribe(function (...args) {
    seen.push({ state: store.getState(), self: this, args });
  });
  store.dispatch(addTodo('Hello'));
  assert.equal(seen.length, 1, 'called before dispatch returns');
  assert.deepEqual(seen[0].state, [{ id: 1, text: 'Hello' }]);
  assert.equal(seen[0].self, undefined, 'no store internals as this');
  assert.deepEqual(seen[0].args, []);
});

contract('only plain object actions are accepted', async (t, v) => {
  const store = await make(t, v, todos);
  assert.doesNotThrow(() => store.dispatch(unknownAction()));
  function AwesomeMap() {}
  for (const bad of [null, undefined, 42, 'hey', new AwesomeMap(), Promise.resolve(42), () => {}, new Date(), [], new Map()]) {
    assert.throws(() => store.dispatch(bad), refused(v, 'INVALID_REQUEST', /plain/), `refused: ${String(bad)}`);
  }
  const bare = Object.create(null);
  bare.type = ADD_TODO;
  bare.text = 'no prototype';
  assert.doesNotThrow(() => store.dispatch(bare), 'an object without a prototype is plain');
  // A plain object made in another realm (an iframe, a vm context).
  const foreign = vm.runInNewContext('({ type: "ADD_TODO", text: "from another realm" })');
  assert.doesNotThrow(() => store.dispatch(foreign), 'a plain object of another realm is plain');
  assert.deepEqual(store.getState().map((todo) => todo.text), ['no prototype', 'from another realm']);
});

contract('an action must have a string type (an empty string is one)', async (t, v) => {
  const store = await make(t, v, todos);
  for (const bad of [{}, { type: undefined }, { type: false }, { type: 0 }, { type: null }, { type: Symbol('MY_ACTION') }, { type: { name: 'x' } }]) {
    // (Redux 5.0.1 words its message with the type in a template string,
    // which a Symbol breaks: only Logsync's message is checked.)
    assert.throws(() => store.dispatch(bad), refused(v, 'INVALID_REQUEST', v.logsync ? /type/ : undefined), `refused: ${String(bad.type)}`);
  }
  assert.doesNotThrow(() => store.dispatch({ type: '' }));
  assert.deepEqual(store.getState(), []);
});

contract('a refused action changes nothing and tells no listener', async (t, v) => {
  const store = await make(t, v, todos);
  store.dispatch(addTodo('kept'));
  const before = store.getState();
  const listener = spy();
  store.subscribe(listener);
  assert.throws(() => store.dispatch({ text: 'no type' }));
  assert.throws(() => store.dispatch(() => {}));
  assert.equal(store.getState(), before);
  assert.equal(listener.calls.length, 0);
});

contract('a listener may dispatch (nested dispatches)', async (t, v) => {
  const store = await make(t, v, combineReducers({ foo, bar }));
  store.subscribe(() => {
    if (store.getState().bar === 0) store.dispatch({ type: 'bar' });
  });
  store.dispatch({ type: 'foo' });
  assert.deepEqual(store.getState(), { foo: 1, bar: 2 });
});

// A reducer that calls `during[action.type]` while it runs (Redux's
// tests put the function in the action; a Logsync reducer sees the action
// as JSON, without functions, so here the reducer finds it by type).
function busyReducer(during) {
  return (state = [], action) => {
    if (Object.hasOwn(during, action.type)) during[action.type]();
    return state;
  };
}

contract('a reducer may not dispatch', async (t, v) => {
  let store;
  const during = { DISPATCH_IN_MIDDLE: () => store.dispatch(unknownAction()) };
  store = await make(t, v, busyReducer(during));
  assert.throws(() => store.dispatch({ type: 'DISPATCH_IN_MIDDLE' }), refused(v, 'REDUCER', /may not dispatch/));
  during.DISPATCH_IN_MIDDLE = () => {};
  assert.doesNotThrow(() => store.dispatch({ type: 'DISPATCH_IN_MIDDLE' }));
});

contract('a reducer may not call getState', async (t, v) => {
  let store;
  const during = { GET_STATE_IN_MIDDLE: () => store.getState() };
  store = await make(t, v, busyReducer(during));
  assert.throws(() => store.dispatch({ type: 'GET_STATE_IN_MIDDLE' }),
    refused(v, 'REDUCER', v.logsync ? /may not dispatch, read the state/ : /You may not call store.getState\(\)/));
  during.GET_STATE_IN_MIDDLE = () => {};
  assert.doesNotThrow(() => store.dispatch({ type: 'GET_STATE_IN_MIDDLE' }));
});

contract('a reducer may not subscribe', async (t, v) => {
  let store;
  const listener = spy();
  const during = { SUBSCRIBE_IN_MIDDLE: () => store.subscribe(listener) };
  store = await make(t, v, busyReducer(during));
  assert.throws(() => store.dispatch({ type: 'SUBSCRIBE_IN_MIDDLE' }),
    refused(v, 'REDUCER', v.logsync ? /may not .*subscribe/ : /You may not call store.subscribe\(\)/));
  during.SUBSCRIBE_IN_MIDDLE = () => {};
  assert.doesNotThrow(() => store.dispatch({ type: 'SUBSCRIBE_IN_MIDDLE' }));
  store.dispatch(unknownAction());
  assert.equal(listener.calls.length, 0, 'the refused subscription was not made');
});

contract('a reducer may not unsubscribe', async (t, v) => {
  let store;
  const listener = spy();
  let unsubscribe;
  const during = { UNSUBSCRIBE_IN_MIDDLE: () => unsubscribe() };
  store = await make(t, v, busyReducer(during));
  unsubscribe = store.subscribe(listener);
  assert.throws(() => store.dispatch({ type: 'UNSUBSCRIBE_IN_MIDDLE' }),
    refused(v, 'REDUCER', v.logsync ? /may not .*subscribe/ : /You may not unsubscribe/));
  during.UNSUBSCRIBE_IN_MIDDLE = () => {};
  store.dispatch({ type: 'UNSUBSCRIBE_IN_MIDDLE' });
  assert.equal(listener.calls.length, 1, 'the refused unsubscribe left the listener subscribed');
  unsubscribe();
  store.dispatch(unknownAction());
  assert.equal(listener.calls.length, 1, 'unsubscribing after the refusal works');
});

contract('recovers from an error within a reducer: nothing applied, no listener told, the next dispatch works', async (t, v) => {
  const boom = new Error('boom');
  const reducer = (state = [], action) => {
    if (action.type === 'THROW_ERROR') throw boom;
    return todos(state, action);
  };
  const store = await make(t, v, reducer);
  const listener = spy();
  store.subscribe(listener);
  assert.throws(() => store.dispatch({ type: 'THROW_ERROR' }), (err) => {
    if (v.logsync) {
      // By design: wrapped in a LogsyncError REDUCER, the reducer's error as its cause.
      assert.ok(err instanceof LogsyncError);
      assert.equal(err.code, 'REDUCER');
      assert.equal(err.cause, boom);
    } else {
      assert.equal(err, boom);
    }
    return true;
  });
  assert.deepEqual(store.getState(), []);
  assert.equal(listener.calls.length, 0);
  assert.doesNotThrow(() => store.dispatch(addTodo('after')));
  assert.deepEqual(store.getState(), [{ id: 1, text: 'after' }]);
});

contract('throws if nextReducer is not a function', async (t, v) => {
  const store = await make(t, v, todos);
  assert.throws(() => store.replaceReducer(undefined), refused(v, 'INVALID_REQUEST', /function/));
  assert.throws(() => store.replaceReducer(null), refused(v, 'INVALID_REQUEST', /function/));
  assert.doesNotThrow(() => store.replaceReducer(() => []));
});

contract('throws if a listener is not a function', async (t, v) => {
  const store = await make(t, v, todos);
  for (const bad of [undefined, '', null, {}]) {
    assert.throws(() => store.subscribe(bad), refused(v, 'INVALID_REQUEST'));
  }
});

contract('an enhancer given as the third argument wraps the store (with preloadedState)', async (t, v) => {
  const preloaded = [];
  let seen = null;
  const spyEnhancer = (next) => (...args) => {
    seen = args;
    const inner = next(...args);
    return { ...inner, dispatch: spy(inner.dispatch) };
  };
  const store = await make(t, v, todos, preloaded, spyEnhancer);
  assert.equal(seen.length, 2);
  assert.equal(seen[0], todos);
  assert.equal(seen[1], preloaded);
  const action = addTodo('Hello');
  store.dispatch(action);
  assert.equal(store.dispatch.calls[0].args[0], action);
  assert.deepEqual(store.getState(), [{ id: 1, text: 'Hello' }]);
});

contract('an enhancer given as the second argument wraps the store (no preloadedState)', async (t, v) => {
  let seen = null;
  const spyEnhancer = (next) => (...args) => {
    seen = args;
    const inner = next(...args);
    return { ...inner, dispatch: spy(inner.dispatch) };
  };
  const enhancer = v.logsync ? compose(spyEnhancer, logsync(options(v))) : spyEnhancer;
  const store = createStore(todos, enhancer);
  if (v.logsync) {
    t.after(() => store.close());
    if (v.hydrate) await store.ready;
  }
  assert.equal(seen.length, 2);
  assert.equal(seen[0], todos);
  assert.equal(seen[1], undefined);
  store.dispatch(addTodo('Hello'));
  assert.equal(store.dispatch.calls.length, 1);
  assert.deepEqual(store.getState(), [{ id: 1, text: 'Hello' }]);
});

contract('Symbol.observable: the store is an observable of its states', async (t, v) => {
  const store = await make(t, v, combineReducers({ foo, bar }));
  const obs = store[$$observable]();
  assert.equal(typeof obs.subscribe, 'function');
  assert.equal(obs[$$observable](), obs, 'it returns itself');
  for (const bad of [undefined, null, () => {}]) {
    assert.throws(() => obs.subscribe(bad), /Expected the observer to be an object/);
  }
  const bareSub = obs.subscribe({});
  assert.equal(typeof bareSub.unsubscribe, 'function');
  bareSub.unsubscribe();

  const results = [];
  const sub = obs.subscribe({ next: (state) => results.push(state) });
  store.dispatch({ type: 'foo' });
  sub.unsubscribe();
  store.dispatch({ type: 'bar' });
  assert.deepEqual(results, [{ foo: 0, bar: 0 }, { foo: 1, bar: 0 }]);
});

// applyMiddleware, after Redux's applyMiddleware test suite.
const thunk = ({ dispatch, getState }) => (next) => (action) => (typeof action === 'function' ? action(dispatch, getState) : next(action));

contract('applyMiddleware: middleware wraps dispatch once and sees getState', async (t, v) => {
  const seen = [];
  const test = ({ getState }) => (next) => (action) => {
    seen.push([action.type, getState().length]);
    return next(action);
  };
  const store = await make(t, v, todos, undefined, applyMiddleware(test, thunk));
  store.dispatch(addTodo('Use Redux'));
  store.dispatch(addTodo('Flux FTW!'));
  assert.deepEqual(seen, [[ADD_TODO, 0], [ADD_TODO, 1]]);
  assert.deepEqual(store.getState().map((todo) => todo.text), ['Use Redux', 'Flux FTW!']);
});

contract('applyMiddleware: a thunk\'s dispatches go through the whole chain; async thunks work', async (t, v) => {
  const seen = [];
  const logger = () => (next) => (action) => {
    seen.push(typeof action === 'function' ? 'function' : action.type);
    return next(action);
  };
  const store = await make(t, v, todos, undefined, applyMiddleware(logger, thunk));
  const result = store.dispatch((dispatch, getState) => {
    dispatch(addTodo('sync'));
    return getState().length;
  });
  assert.equal(result, 1, 'the thunk ran and its result came back');
  await store.dispatch((dispatch) => new Promise((resolve) => setImmediate(() => {
    dispatch(addTodo('async'));
    resolve();
  })));
  assert.deepEqual(seen, ['function', ADD_TODO, 'function', ADD_TODO]);
  assert.deepEqual(store.getState().map((todo) => todo.text), ['sync', 'async']);
});

contract('applyMiddleware: extra arguments of dispatch reach the middleware', async (t, v) => {
  const extras = [];
  const spyArgs = () => (next) => (action, ...rest) => {
    extras.push(rest);
    return next(action, ...rest);
  };
  const store = await make(t, v, todos, undefined, applyMiddleware(spyArgs));
  store.dispatch(addTodo('x'), 'extra', 42);
  assert.deepEqual(extras, [['extra', 42]]);
});

contract('applyMiddleware: dispatching while the middleware is made throws', async (t, v) => {
  const eager = ({ dispatch }) => {
    dispatch(addTodo('too early'));
    return (next) => next;
  };
  const enhancer = applyMiddleware(eager);
  if (v.logsync) {
    const last = logsync(options(v));
    assert.throws(() => createStore(todos, compose(enhancer, last)), /Dispatching while constructing your middleware is not allowed/);
  } else {
    assert.throws(() => createStore(todos, enhancer), /Dispatching while constructing your middleware is not allowed/);
  }
});

contract('configureStore: the default middleware (thunk, checks) and dev checks leave the store intact', async (t, v) => {
  const enhancers = v.logsync ? (getDefault) => getDefault().concat(logsync(options(v))) : undefined;
  const store = configureStore({ reducer: { todos, foo }, preloadedState: { foo: 7 }, enhancers, devTools: false });
  if (v.logsync) {
    t.after(() => store.close());
    if (v.hydrate) await store.ready;
  }
  assert.deepEqual(store.getState(), { todos: [], foo: 7 }, 'a partial preloadedState is completed by the reducer');
  store.dispatch((dispatch) => dispatch(addTodo('thunk')));
  store.dispatch(addTodo('plain'));
  assert.deepEqual(store.getState(), { todos: [{ id: 1, text: 'thunk' }, { id: 2, text: 'plain' }], foo: 7 });
});

// What differs by design: the action travels as JSON.

contract('what the reducer sees: the action itself (redux, local actions) or its JSON copy (synced)', async (t, v) => {
  const seen = [];
  const reducer = (state = 0, action) => {
    if (action.type === 'when') seen.push(action);
    return state;
  };
  const store = await make(t, v, reducer);
  const when = new Date(0);
  const action = { type: 'when', when, skipped: undefined };
  store.dispatch(action);
  assert.equal(seen.length, 1);
  if (v.logsync && !v.local) {
    // By design: every device folds the same JSON, so this one does too.
    assert.notEqual(seen[0], action);
    assert.deepEqual(seen[0], { type: 'when', when: when.toJSON() });
  } else {
    assert.equal(seen[0], action);
  }
});

contract('actions that are not JSON: refused when synced, kept as they are when local', async (t, v) => {
  const store = await make(t, v, todos);
  const cyclic = { type: ADD_TODO, text: 'cyclic' };
  cyclic.self = cyclic;
  const cases = [{ type: ADD_TODO, text: 'big', n: 1n }, cyclic];
  for (const action of cases) {
    if (v.logsync && !v.local) {
      // By design: what cannot travel as JSON is refused, nothing applied.
      assert.throws(() => store.dispatch(action), refused(v, 'INVALID_JSON'));
    } else {
      assert.equal(store.dispatch(action), action);
    }
  }
  assert.deepEqual(store.getState().map((todo) => todo.text), v.logsync && !v.local ? [] : ['big', 'cyclic']);
});

contract('a reducer that returns undefined: Redux keeps undefined, Logsync refuses the action', async (t, v) => {
  const reducer = (state = [], action) => (action.type === 'lose' ? undefined : state);
  const store = await make(t, v, reducer);
  if (v.logsync) {
    // By design: the state must stay a JSON value.
    assert.throws(() => store.dispatch({ type: 'lose' }), refused(v, 'REDUCER', /returned undefined/));
    assert.deepEqual(store.getState(), []);
  } else {
    store.dispatch({ type: 'lose' });
    assert.equal(store.getState(), undefined);
  }
});

contract('a listener that throws: Redux\'s dispatch throws and skips the rest, Logsync reports it and goes on', async (t, v) => {
  const store = await make(t, v, todos);
  const boom = new Error('listener boom');
  const after = spy();
  store.subscribe(() => { throw boom; });
  store.subscribe(after);
  if (v.logsync) {
    // By design: a sync store notifies from many places (server events,
    // rebases), where a throw has no caller to go to; it goes to the page
    // (reportError, or console.error where there is none).
    const reported = [];
    const saved = console.error;
    console.error = (...args) => reported.push(args);
    try {
      store.dispatch(addTodo('x'));
    } finally {
      console.error = saved;
    }
    assert.equal(after.calls.length, 1, 'the other listeners were called');
    assert.ok(reported.some((args) => args.includes(boom)), 'the error was reported');
  } else {
    assert.throws(() => store.dispatch(addTodo('x')), (err) => err === boom);
    assert.equal(after.calls.length, 0);
  }
  assert.equal(store.getState().length, 1, 'the action was applied either way');
});

contract('the reducer is called with an init action when the store is made', async (t, v) => {
  const types = [];
  const reducer = (state = 0, action) => {
    types.push(action.type);
    return state;
  };
  await make(t, v, reducer);
  if (v.logsync) {
    // By design: Logsync folds one '@@logsync/INIT' to compute the
    // initial state; Redux dispatches '@@redux/INIT<random>'.
    assert.equal(types[0], '@@logsync/INIT');
  } else {
    assert.match(types[0], /^@@redux\/INIT/);
  }
});

contract('replaceReducer with a combineReducers that drops a slice: the slice goes at the next action', async (t, v) => {
  const keep = (s = 0) => s;
  const store = await make(t, v, combineReducers({ x: keep, y: combineReducers({ z: keep, w: keep }) }));
  store.dispatch(unknownAction());
  const logged = [];
  const saved = console.error;
  console.error = (...args) => logged.push(args.join(' '));
  try {
    store.replaceReducer(combineReducers({ y: combineReducers({ z: keep }) }));
    store.dispatch(unknownAction());
  } finally {
    console.error = saved;
  }
  if (v.logsync) {
    // By design: the confirmed state is kept as it is, and the pending and
    // local actions are folded again onto it with the new reducer; Redux
    // folds '@@redux/REPLACE', which combineReducers does not check. So in
    // development combineReducers warns, once per slice, that the kept
    // state has slices it does not know.
    assert.deepEqual(logged.map((line) => line.match(/^Unexpected key "(\w)"/)?.[1]), ['x', 'w']);
  } else {
    assert.deepEqual(logged, []);
  }
  assert.deepEqual(store.getState(), { y: { z: 0 } });
});

// Logsync only: the state also changes without a dispatch (hydration,
// replaceReducer, server events); a listener told of such a change may
// dispatch, as it may in a dispatch's notification.
test('Logsync only: a listener told of hydration or of replaceReducer may dispatch', async (t) => {
  const list = (state = [], action) => (action.type === 'add' ? [...state, action.id] : state);
  const opts = options({ hydrate: true });
  const first = createStore(list, logsync(opts));
  first.dispatch({ type: 'add', id: 'stored' });
  await first.close();

  const store = createStore(list, logsync(opts));
  t.after(() => store.close());
  store.dispatch({ type: 'add', id: 'early' });
  let hydrated = false;
  store.subscribe(() => {
    if (!hydrated && store.getState().includes('stored')) {
      hydrated = true;
      store.dispatch({ type: 'add', id: 'on hydration' });
    }
  });
  await store.ready;
  assert.deepEqual(store.getState(), ['stored', 'early', 'on hydration']);
  let replaced = false;
  store.subscribe(() => {
    if (!replaced) {
      replaced = true;
      store.dispatch({ type: 'add', id: 'on replace' });
    }
  });
  store.replaceReducer(list);
  assert.deepEqual(store.getState(), ['stored', 'early', 'on hydration', 'on replace']);
  await store.close();
  const again = createStore(list, logsync(opts));
  await again.ready;
  try {
    assert.deepEqual(again.getState(), ['stored', 'early', 'on hydration', 'on replace'], 'each stored once');
  } finally {
    await again.close();
  }
});
