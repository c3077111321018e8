// Compiled with `tsc --noEmit` by test/types.test.mjs: every public name is
// used the way the README shows, and each `@ts-expect-error` line proves a
// misuse is caught (tsc fails if such a line compiles).
import {
  init,
  createSyncStore,
  ERROR_CODES,
  LogsyncError,
  isLogsyncError,
  wasmErrorCodes,
  INIT_ACTION_TYPE,
  dbNameFor,
  type ErrorCode,
  type SyncStore,
  type Status,
  type StoreOptions,
  type SyncStatus,
  type SyncStoreOptions,
  Rejection,
  type RejectedAction,
  type Reducer,
} from 'logsync';
import { LogsyncProvider, useSyncState, useDispatch, useSyncStatus, useLogsyncStore, shallowEqual, useView } from 'logsync/react';
import { createViewStore, applyPatch, type ViewStatus } from 'logsync/views';
import { connectElmPorts, connectElmViewPorts, type ElmPortsOptions, type ElmViewPortsOptions } from 'logsync/elm';
import { Provider, useSelector } from 'react-redux';
import { createLogsyncStore, type IntentEvent, type StorageInfo } from 'logsync';
import { logsync, type LogsyncEnhancerOptions } from 'logsync/redux';
import { configureStore, createSlice, type PayloadAction } from '@reduxjs/toolkit';
import { legacy_createStore } from 'redux';

interface Todo { id: string; text: string; done: boolean }
interface State { todos: Todo[] }
// Actions declared as interfaces (no index signature) must work too.
interface TodoAdded { type: 'todo/added'; id: string; text: string }
interface TodoToggled { type: 'todo/toggled'; id: string }
type TodoAction = TodoAdded | TodoToggled;

const reducer: Reducer<State, TodoAction> = (state = { todos: [] }, action) => {
  switch (action.type) {
    case 'todo/added':
      return { todos: [...state.todos, { id: action.id, text: action.text, done: false }] };
    case 'todo/toggled':
      return { todos: state.todos.map((t) => (t.id === action.id ? { ...t, done: !t.done } : t)) };
    default:
      return state;
  }
};

export async function main(): Promise<void> {
  await init();
  await init({ wasm: new URL('https://example.invalid/logsync_wasm_bg.wasm') });
  const options: StoreOptions<State, TodoAction> = {
    url: 'ws://localhost:8080/v1/ws',
    stream: 'todos/team-42',
    reducer,
    initialState: { todos: [] },
    dbName: 'my-app',
  };
  const store: SyncStore<State, TodoAction> = await createSyncStore(options);
  const added = store.dispatch({ type: 'todo/added', id: '1', text: 'milk' });
  const id: string = added.id;
  // @ts-expect-error an action outside the union is refused
  store.dispatch({ type: 'todo/renamed', id: '1' });
  const { dispatch, getState, subscribe } = store;
  dispatch({ type: 'todo/toggled', id });
  const todos: Todo[] = getState().todos;
  const stop = subscribe(() => console.log(todos.length));
  stop();
  const status: Status = store.status;
  // The former names stay as aliases of the same types.
  const oldStatus: SyncStatus = status;
  const oldOptions: SyncStoreOptions<State, TodoAction> = options;
  void oldStatus;
  void oldOptions;
  const online: boolean = status.online;
  const pending: number = status.pending;
  const offset: number = status.offset;
  const head: number = status.head;
  const needsToken: boolean = status.needsToken;
  const switched: Promise<void> = store.setToken('a.new.jwt');
  void switched;
  store.setToken(null);
  const waiting = store.pending();
  const firstSeq: number | null = waiting[0]?.seq ?? null;
  if (firstSeq !== null) store.discard(firstSeq);
  // @ts-expect-error discard takes a seq number
  store.discard('1');
  const db: string = dbNameFor('app', null);
  void db;
  // @ts-expect-error a token is a string
  store.setToken(42);
  const lastCode: ErrorCode | undefined = status.lastError?.code;
  // @ts-expect-error status is read-only
  store.status = status;
  store.onStatus((s) => console.log(s.online, online, pending, offset, head, lastCode, needsToken));
  store.onError((err) => {
    const code: ErrorCode = err.code;
    if (code === 'UNAUTHORIZED') console.log(err.message);
    // @ts-expect-error not an error code
    if (code === 'NOT_A_CODE') console.log('never');
  });
  store.onRejected((r: RejectedAction<TodoAction>) => console.log(r.action.type, r.code, r.message));
  store.replaceReducer(reducer);
  await store.synced();
  store.goOffline();
  store.reconnect();
  const sub = store[Symbol.observable]().subscribe({ next: (s) => console.log(s.todos.length) });
  sub.unsubscribe();
  await store.close();

  // Redux's initial-state convention: initialState may be left out.
  await createSyncStore({ url: 'wss://sync.example.invalid/v1/ws', stream: 's', reducer, connect: false, token: 'jwt', snapshotEvery: 100, heartbeatMs: 5000, backoffMinMs: 100, backoffMaxMs: 10000 });
  // @ts-expect-error url is required
  await createSyncStore({ stream: 's', reducer });

  const codes: readonly ErrorCode[] = ERROR_CODES;
  const fromWasm: ErrorCode[] = wasmErrorCodes();
  const initType: '@@logsync/INIT' = INIT_ACTION_TYPE;
  console.log(codes, fromWasm, initType);
  try {
    store.dispatch({ type: 'todo/toggled', id });
  } catch (e) {
    if (e instanceof LogsyncError) console.log(e.code satisfies ErrorCode);
    if (isLogsyncError(e)) console.log(e.code);
  }
  new LogsyncError('INVALID_REQUEST', 'message', { cause: new Error('x') });
  const refusal: Error = new Rejection('SEAT_TAKEN', 'seat 4A is taken');
  const refusalCode: string = new Rejection('NO_REASON').code;
  console.log(refusal, refusalCode);
  // @ts-expect-error the app's code is required
  new Rejection();

  // Elm
  const ports = {
    dispatch: { subscribe(_cb: (v: unknown) => void) {}, unsubscribe(_cb: (v: unknown) => void) {} },
    stateChanged: { send(_v: unknown) {} },
  };
  const elmOptions: ElmPortsOptions<State> = { statusPort: 'syncStatus', encodeState: (s) => s.todos };
  const disconnect: () => void = connectElmPorts(ports, store, elmOptions);
  disconnect();

  // React
  const App = () => {
    const count = useSyncState((s: State) => s.todos.length);
    const texts = useSyncState((s: State) => s.todos.map((t) => t.text), shallowEqual);
    const whole = useSyncState<State>();
    const d = useDispatch<TodoAction>();
    const isOnline = useSyncStatus((s) => s.online);
    const full: Status = useSyncStatus();
    const same: SyncStore<State, TodoAction> = useLogsyncStore<State, TodoAction>();
    const fromRedux = useSelector((s: State) => s.todos.length);
    return (
      <button onClick={() => d({ type: 'todo/added', id: String(count), text: 'x' })}>
        {count} {texts.join()} {whole.todos.length} {String(isOnline)} {full.pending} {same.stream} {fromRedux}
      </button>
    );
  };
  const tree = (
    <LogsyncProvider store={store}>
      <Provider store={store}>
        <App />
      </Provider>
    </LogsyncProvider>
  );
  console.log(tree);

  // Synchronous creation, hydration in the background.
  const now: SyncStore<State, TodoAction> = createLogsyncStore({ ...options, filter: (a) => a.type !== 'todo/toggled', devtools: { name: 'todos' } });
  now.dispatch({ type: 'todo/added', id: '2', text: 'bread' });
  const ready: Promise<void> = now.ready;
  await ready;
  const st: Status = now.getStatus();
  const hydrated: boolean = st.hydrated;
  const behind: number = st.behind;
  const storage: StorageInfo | null = st.storage;
  const quota: number | null = storage?.quota ?? null;
  console.log(hydrated, behind, quota);
  const granted: Promise<boolean> = now.persist();
  void granted;
  const stopIntents = now.onIntent((e: IntentEvent<TodoAction>) => {
    if (e.type === 'confirmed') console.log(e.offset, e.seq, e.action.type);
    if (e.type === 'rejected') {
      const c: ErrorCode = e.code;
      console.log(c, e.message);
    }
    // @ts-expect-error only confirmed and rebased events carry an offset
    if (e.type === 'pending') console.log(e.offset);
  });
  stopIntents();
  // @ts-expect-error filter takes an action and answers whether it is synced
  createLogsyncStore({ ...options, filter: 'ui' });
  // @ts-expect-error devtools is a boolean or options
  createLogsyncStore({ ...options, devtools: 'yes' });

  // The enhancer in Redux Toolkit and in Redux.
  const todoSlice = createSlice({
    name: 'todos',
    initialState: { items: [] as string[] },
    reducers: { added: (s, a: PayloadAction<string>) => { s.items.push(a.payload); } },
  });
  const enhancerOptions: LogsyncEnhancerOptions = { url: 'ws://localhost:8080/v1/ws', stream: 'todos/team-42', dbName: 'my-app', filter: (a) => !a.type.startsWith('ui/') };
  const rtk = configureStore({
    reducer: todoSlice.reducer,
    enhancers: (getDefault) => getDefault().concat(logsync(enhancerOptions)),
    devTools: false,
  });
  rtk.dispatch(todoSlice.actions.added('milk'));
  const items: string[] = rtk.getState().items;
  await rtk.ready;
  const rtkStatus: Status = rtk.getStatus();
  rtk.onIntent((e) => console.log(e.type, e.action.type, items.length, rtkStatus.behind));
  await rtk.synced();
  await rtk.close();
  // @ts-expect-error the reducer comes from configureStore
  logsync({ ...enhancerOptions, reducer });
  const plain = legacy_createStore(todoSlice.reducer, { items: ['x'] }, logsync(enhancerOptions));
  await plain.ready;
  const plainItems: string[] = plain.getState().items;
  console.log(plainItems);
  // The hooks take a store made with the enhancer too (they read getStatus()).
  const rtkTree = (
    <LogsyncProvider store={rtk}>
      <Provider store={rtk}>
        <App />
      </Provider>
    </LogsyncProvider>
  );
  const plainTree = <LogsyncProvider store={plain}>{null}</LogsyncProvider>;
  console.log(rtkTree, plainTree);
  // @ts-expect-error a plain Redux store is not a Logsync store
  const notLogsync = <LogsyncProvider store={legacy_createStore(todoSlice.reducer)}>{null}</LogsyncProvider>;
  console.log(notLogsync);
}

// View stores: a read-only store of one server view, and its hook.
{
  type Todo = { id: string; text: string; completed: boolean };
  const open = createViewStore<Todo[]>({ url: 'ws://localhost:8080/v1/ws', stream: 'todos/team-42', view: 'open' });
  const counts = createViewStore<{ all: number }>({ url: 'https://example.com', stream: 's', view: 'counts', params: { who: 'me' }, token: null });
  const todos: Todo[] | undefined = open.getState();
  const unsubscribe: () => void = open.subscribe(() => {});
  const s: ViewStatus = open.status;
  const online: boolean = s.online && s.hydrated && !s.needsToken && s.offset >= 0 && s.lastError === null;
  open.onStatus((st) => console.log(st.lastError?.code));
  open.setToken('jwt');
  void open.ready.then(() => open.close());
  const patched = applyPatch<Todo[]>([], [{ op: 'add', path: '/-', value: 1 }]);
  console.log(todos, unsubscribe, online, patched, counts);
  // @ts-expect-error a view store needs a view name
  createViewStore({ url: 'ws://x/v1/ws', stream: 's' });
  // @ts-expect-error a view store has no dispatch
  open.dispatch({ type: 'x' });
  function OpenCount() {
    const n: number = useView(open, (list) => list?.length ?? 0);
    const list: Todo[] | undefined = useView(open);
    return <span>{n}{list?.length}</span>;
  }
  console.log(<OpenCount />);
  // Elm: a view's result and status through incoming ports.
  const elmPorts = { openChanged: { send(_v: unknown) {} }, openStatus: { send(_v: unknown) {} } };
  const viewOptions: ElmViewPortsOptions<Todo[]> = { resultPort: 'openChanged', statusPort: 'openStatus', encodeResult: (list) => list.map((t) => t.text) };
  const disconnectView: () => void = connectElmViewPorts(elmPorts, open, viewOptions);
  disconnectView();
  // @ts-expect-error a view's result port must be named
  connectElmViewPorts(elmPorts, open, { statusPort: 'openStatus' });
  // @ts-expect-error encodeResult takes the view's result type
  connectElmViewPorts(elmPorts, open, { resultPort: 'openChanged', encodeResult: (list: number) => list });
}
