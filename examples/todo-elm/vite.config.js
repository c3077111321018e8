import { defineConfig, searchForWorkspaceRoot } from 'vite';

const server = process.env.LOGSYNC_SERVER ?? 'http://127.0.0.1:8080';

export default defineConfig({
  optimizeDeps: { exclude: ['logsync'] },
  server: {
    proxy: { '/v1': { target: server, ws: true } },
    // main.js shares the reducer and styles of ../todo-react.
    fs: { allow: [searchForWorkspaceRoot(process.cwd()), '../todo-react/src', '../../js'] },
  },
});
