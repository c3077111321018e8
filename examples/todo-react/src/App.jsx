import { memo, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { useDispatch, useSyncState } from 'logsync/react';
import { AssignedPanel, addressWith } from './Assigned.jsx';
import { StatusBar } from './StatusBar.jsx';
import { addTodo, assignTodo, cleanName, clearCompleted, deleteTodo, editTodo, toggleAll, toggleTodo } from './todos.js';

const FILTERS = {
  all: () => true,
  active: (t) => !t.completed,
  completed: (t) => t.completed,
};

export function App({ room, user, assigned }) {
  const todos = useSyncState((s) => s.todos);
  const dispatch = useDispatch();
  // Which todos to show is this window's choice, not shared state.
  const [filter, setFilter] = useState('all');
  const active = todos.filter(FILTERS.active).length;
  const visible = todos.filter(FILTERS[filter]);
  // Names to suggest in the assignee fields: me and everyone assigned something.
  const people = useMemo(
    () => [...new Set([user, ...todos.map((t) => t.assignee)].filter(Boolean))].sort(),
    [user, todos],
  );

  const onNewTodo = (e) => {
    if (e.key !== 'Enter') return;
    const text = e.currentTarget.value.trim();
    if (!text) return;
    dispatch(addTodo(text));
    e.currentTarget.value = '';
  };

  return (
    <>
      <section className="todoapp">
        <header>
          <h1>todos</h1>
          <input
            className="new-todo"
            data-testid="new-todo"
            placeholder="What needs to be done?"
            aria-label="New todo"
            autoFocus
            maxLength={500}
            onKeyDown={onNewTodo}
          />
        </header>
        {todos.length > 0 && (
          <section className="main">
            <input
              id="toggle-all"
              className="toggle-all"
              type="checkbox"
              checked={active === 0}
              onChange={(e) => dispatch(toggleAll(e.currentTarget.checked))}
            />
            <label htmlFor="toggle-all">Mark all as complete</label>
            <ul className="todo-list" data-testid="todo-list">
              {visible.map((todo) => (
                <TodoItem key={todo.id} todo={todo} mine={user !== null && todo.assignee === user} dispatch={dispatch} />
              ))}
            </ul>
            <datalist id="people">
              {people.map((name) => <option key={name} value={name} />)}
            </datalist>
          </section>
        )}
        {todos.length > 0 && (
          <footer className="footer">
            <span className="todo-count" data-testid="todo-count">
              <strong>{active}</strong> {active === 1 ? 'item' : 'items'} left
            </span>
            <ul className="filters">
              {Object.keys(FILTERS).map((name) => (
                <li key={name}>
                  <button className={filter === name ? 'selected' : ''} onClick={() => setFilter(name)}>
                    {name[0].toUpperCase() + name.slice(1)}
                  </button>
                </li>
              ))}
            </ul>
            {todos.length > active && (
              <button className="clear-completed" onClick={() => dispatch(clearCompleted())}>
                Clear completed
              </button>
            )}
          </footer>
        )}
      </section>
      <AssignedPanel viewStore={assigned} user={user} />
      <StatusBar room={room} />
      <footer className="info">
        <p>Double-click to edit a todo; type a name beside it to assign it</p>
        <p>
          Open this page in another window (or share it: <code>#{room}</code> is the room) and watch changes sync.
          It keeps working offline.
        </p>
        {user !== null && (
          <p>
            <a href={addressWith('assigned')}>Only what is assigned to {user}</a>: a window that follows the server&apos;s
            view instead of the whole list.
          </p>
        )}
      </footer>
    </>
  );
}

// memo: a change to one todo re-renders only that row (the reducer keeps
// the other todo objects as they were).
const TodoItem = memo(function TodoItem({ todo, mine, dispatch }) {
  const [editing, setEditing] = useState(false);
  const input = useRef(null);
  useEffect(() => {
    if (editing) input.current?.focus();
  }, [editing]);

  const finish = useCallback(
    (commit) => {
      if (!editing) return;
      setEditing(false);
      if (!commit) return;
      const text = input.current.value.trim();
      if (!text) dispatch(deleteTodo(todo.id));
      else if (text !== todo.text) dispatch(editTodo(todo.id, text));
    },
    [editing, dispatch, todo.id, todo.text],
  );

  const classes = [todo.completed && 'completed', editing && 'editing', mine && 'mine'].filter(Boolean).join(' ');
  return (
    <li className={classes} data-testid="todo-item" data-id={todo.id}>
      <div className="view">
        <input
          className="toggle"
          type="checkbox"
          aria-label={`Toggle ${todo.text}`}
          checked={todo.completed}
          onChange={() => dispatch(toggleTodo(todo.id))}
        />
        <label data-testid="todo-title" onDoubleClick={() => setEditing(true)}>
          {todo.text}
        </label>
        <Assignee todo={todo} dispatch={dispatch} />
        <button className="destroy" aria-label={`Delete ${todo.text}`} onClick={() => dispatch(deleteTodo(todo.id))} />
      </div>
      {editing && (
        <input
          ref={input}
          className="edit"
          defaultValue={todo.text}
          maxLength={500}
          onBlur={() => finish(true)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') finish(true);
            else if (e.key === 'Escape') finish(false);
          }}
        />
      )}
    </li>
  );
});

// Who the todo is assigned to: a name, typed (or picked from the names
// known) and committed on Enter or when the field loses focus; an empty
// field unassigns. Escape puts back the name the todo has.
function Assignee({ todo, dispatch }) {
  const current = todo.assignee ?? '';
  const [draft, setDraft] = useState(current);
  // A change made elsewhere (another window, a rejection) shows here.
  useEffect(() => setDraft(current), [current]);
  const commit = () => {
    const to = cleanName(draft);
    if ((to ?? '') !== current) dispatch(assignTodo(todo.id, to));
    else setDraft(current);
  };
  return (
    <input
      className="assignee"
      data-testid="assignee"
      aria-label={`Assignee of ${todo.text}`}
      placeholder="assign…"
      list="people"
      maxLength={64}
      value={draft}
      onChange={(e) => setDraft(e.currentTarget.value)}
      onBlur={commit}
      onKeyDown={(e) => {
        if (e.key === 'Enter') e.currentTarget.blur();
        else if (e.key === 'Escape') setDraft(current);
      }}
    />
  );
}
