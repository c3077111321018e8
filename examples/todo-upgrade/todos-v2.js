// Version 2 of the TodoMVC reducer (examples/todo-react/src/todos.js is
// version 1): a todo's `text` is now its `title`, in the actions that carry
// it (`todo/added`, `todo/edited`) and in the state ({ id, title,
// completed }). Everything else is as in version 1.
//
// What makes the upgrade safe for work made under version 1 — actions in
// the log, actions still queued offline on some device, states stored in
// IndexedDB or in the server's snapshots:
// - `schemaVersion`: every intent carries the version it was made under,
//   events keep it, and a store or server that meets something newer than
//   its own version refuses to apply it (SCHEMA_TOO_NEW: reload the app);
// - `upcast(action, fromVersion)`: an action of an older version as this
//   version's, applied before the reducer sees it, on every replica and on
//   the server alike (so it must be pure, like the reducer);
// - `migrate(state, fromVersion)`: a stored state of an older version as
//   this version's (without it, the state is rebuilt from the events).
//
// The server loads this one file (`--reducer 'todos/*=…/todos-v2.js'`):
// its default export, `schemaVersion`, `upcast`, `migrate` and `views`.

export const schemaVersion = 2;

export const initialState = { todos: [] };

const MAX_TEXT = 500;
const MAX_NAME = 64;

export function upcast(action, fromVersion) {
  if (fromVersion < 2 && (action.type === 'todo/added' || action.type === 'todo/edited')) {
    const { text, ...rest } = action;
    return { ...rest, title: text };
  }
  return action;
}

export function migrate(state, fromVersion) {
  if (fromVersion < 2) {
    return {
      ...state,
      todos: state.todos.map(({ text, ...rest }) => ({ ...rest, title: text })),
    };
  }
  return state;
}

export function todosReducer(state = initialState, action) {
  switch (action.type) {
    case 'todo/added': {
      const title = cleanTitle(action.title);
      if (typeof action.id !== 'string' || !title || state.todos.some((t) => t.id === action.id)) return state;
      return { ...state, todos: [...state.todos, { id: action.id, title, completed: false }] };
    }
    case 'todo/toggled':
      return update(state, action.id, (t) => ({ ...t, completed: !t.completed }));
    case 'todo/edited': {
      const title = cleanTitle(action.title);
      if (!title) return state;
      return update(state, action.id, (t) => (t.title === title ? t : { ...t, title }));
    }
    case 'todo/deleted': {
      const todos = state.todos.filter((t) => t.id !== action.id);
      return todos.length === state.todos.length ? state : { ...state, todos };
    }
    case 'todos/allToggled': {
      const completed = action.completed === true;
      if (state.todos.every((t) => t.completed === completed)) return state;
      return { ...state, todos: state.todos.map((t) => (t.completed === completed ? t : { ...t, completed })) };
    }
    case 'todos/completedCleared': {
      const todos = state.todos.filter((t) => !t.completed);
      return todos.length === state.todos.length ? state : { ...state, todos };
    }
    case 'todo/assigned': {
      if (action.to !== null && typeof action.to !== 'string') return state;
      const to = cleanName(action.to);
      return update(state, action.id, (t) => {
        if ((t.assignee ?? null) === to) return t;
        if (to !== null) return { ...t, assignee: to };
        const { assignee, ...rest } = t;
        return rest;
      });
    }
    default:
      return state;
  }
}

export const views = {
  open: (state) => state.todos.filter((t) => !t.completed),
  counts: (state) => ({ all: state.todos.length, completed: state.todos.filter((t) => t.completed).length }),
  assignedTo: (state, params) => {
    const user = cleanName(params?.user);
    return user === null ? [] : state.todos.filter((t) => !t.completed && t.assignee === user);
  },
};

export default todosReducer;

function update(state, id, fn) {
  let changed = false;
  const todos = state.todos.map((t) => {
    if (t.id !== id) return t;
    const next = fn(t);
    if (next !== t) changed = true;
    return next;
  });
  return changed ? { ...state, todos } : state;
}

function cleanTitle(title) {
  return typeof title === 'string' ? title.trim().slice(0, MAX_TEXT) : '';
}

export function cleanName(name) {
  const clean = typeof name === 'string' ? name.trim().slice(0, MAX_NAME).trim() : '';
  return clean === '' ? null : clean;
}

// Action creators of version 2.
export const addTodo = (title, id = crypto.randomUUID()) => ({ type: 'todo/added', id, title });
export const editTodo = (id, title) => ({ type: 'todo/edited', id, title });
