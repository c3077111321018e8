// The time-to-first-state benchmark's reducer (`logsync-bench boot`): it
// counts the `add` actions of the seeder and keeps the last 100 ids, so
// the state (and a snapshot of it) stays small at any history length.
export const initialState = { count: 0, recent: [] };

export default function boot(state, action) {
  if (action.type !== 'add') return state;
  const recent = state.recent.length < 100
    ? [...state.recent, action.id]
    : [...state.recent.slice(1), action.id];
  return { count: state.count + 1, recent };
}
