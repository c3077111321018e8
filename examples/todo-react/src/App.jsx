import { memo, useCallback, useEffect, useRef, useState } from 'react';
import { useDispatch, useSyncState } from 'logsync/react';
import { StatusBar } from './StatusBar.jsx';
import { addTodo, clearCompleted, deleteTodo, editTodo, toggleAll, toggleTodo } from './todos.js';

const FILTERS = {
  all: () => true,
  active: (t) => !t.completed,
  completed: (t) => t.completed,
};

export function App({ room }) {
  const todos = useSyncState((s) => s.todos);
  const dispatch = useDispatch();
  // Which todos to show is this window's choice, not shared state.
  const [filter, setFilter] = useState('all');
  const active = todos.filter(FILTERS.active).length;
  const visible = todos.filter(FILTERS[filter]);

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
                <TodoItem key={todo.id} todo={todo} dispatch={dispatch} />
              ))}
            </ul>
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
      <StatusBar room={room} />
      <footer className="info">
        <p>Double-click to edit a todo</p>
        <p>
          Open this page in another window (or share it: <code>#{room}</code> is the room) and watch changes sync.
          It keeps working offline.
        </p>
      </footer>
    </>
  );
}

// memo: a change to one todo re-renders only that row (the reducer keeps
// the other todo objects as they were).
const TodoItem = memo(function TodoItem({ todo, dispatch }) {
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

  const classes = [todo.completed && 'completed', editing && 'editing'].filter(Boolean).join(' ');
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
