// The shared reducer: every window folds the same events through it, so it
// must be pure and deterministic (ids and text come in the action, never
// from Math.random or Date.now here), and it must tolerate any action any
// client sent (an action it does not understand changes nothing).
//
// A todo is { id, text, completed }, plus `assignee` (a name) while it is
// assigned to someone: unassigned todos have no such field, so the state of
// a list nobody assigns anything in is the same as before assignees existed.

export const initialState = { todos: [] };

const MAX_TEXT = 500;
const MAX_NAME = 64;

export function todosReducer(state = initialState, action) {
  switch (action.type) {
    case 'todo/added': {
      const text = cleanText(action.text);
      if (typeof action.id !== 'string' || !text || state.todos.some((t) => t.id === action.id)) return state;
      return { ...state, todos: [...state.todos, { id: action.id, text, completed: false }] };
    }
    case 'todo/toggled':
      return update(state, action.id, (t) => ({ ...t, completed: !t.completed }));
    case 'todo/edited': {
      const text = cleanText(action.text);
      if (!text) return state;
      return update(state, action.id, (t) => (t.text === text ? t : { ...t, text }));
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
      // `to`: a name (trimmed; empty means nobody) or null to unassign;
      // anything else is not understood and changes nothing.
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

// Views: read-only questions about a list that the server answers on the
// state it folds, at /v1/streams/todos%2F<room>/views/<name>?params=<JSON>
// (and live, with Accept: text/event-stream). Pure, like the reducer.
export const views = {
  open: (state) => state.todos.filter((t) => !t.completed),
  counts: (state) => ({ all: state.todos.length, completed: state.todos.filter((t) => t.completed).length }),
  // The open todos assigned to `params.user` (the "Assigned to me" panel):
  // a completed or unassigned todo leaves it. No user, no todos.
  assignedTo: (state, params) => {
    const user = cleanName(params?.user);
    return user === null ? [] : state.todos.filter((t) => !t.completed && t.assignee === user);
  },
};

// The server runs the same reducer at the ordering point
// (`logsync-server --reducer 'todos/*=./examples/todo-react/src/todos.js'`):
// it loads the module's default export.
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

function cleanText(text) {
  return typeof text === 'string' ? text.trim().slice(0, MAX_TEXT) : '';
}

// A person's name as todos carry it: trimmed, at most MAX_NAME characters;
// null for nobody (not a string, or nothing left after trimming).
export function cleanName(name) {
  const clean = typeof name === 'string' ? name.trim().slice(0, MAX_NAME).trim() : '';
  return clean === '' ? null : clean;
}

// Action creators: the only place ids are made.
export const addTodo = (text) => ({ type: 'todo/added', id: newId(), text });
export const toggleTodo = (id) => ({ type: 'todo/toggled', id });
export const editTodo = (id, text) => ({ type: 'todo/edited', id, text });
export const deleteTodo = (id) => ({ type: 'todo/deleted', id });
export const toggleAll = (completed) => ({ type: 'todos/allToggled', completed });
export const clearCompleted = () => ({ type: 'todos/completedCleared' });
export const assignTodo = (id, to) => ({ type: 'todo/assigned', id, to: cleanName(to) });

function newId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}
