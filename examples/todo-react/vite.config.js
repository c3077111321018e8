import { defineConfig, searchForWorkspaceRoot } from 'vite';
import { offlineShell } from './offline-shell.js';

// Where `npm run dev` forwards the API (the WebSocket and HTTP routes).
const server = process.env.LOGSYNC_SERVER ?? 'http://127.0.0.1:8080';

export default defineConfig({
  // JSX through esbuild's automatic runtime: no React plugin needed.
  esbuild: { jsx: 'automatic' },
  resolve: {
    // `logsync` is linked from ../../js, which has its own React for its
    // tests: always use the app's one copy.
    dedupe: ['react', 'react-dom'],
  },
  // The package finds its .wasm next to its JS (new URL(..., import.meta.url));
  // pre-bundling would move the JS away from it.
  optimizeDeps: {
    exclude: ['logsync'],
    include: ['react', 'react-dom/client', 'react/jsx-dev-runtime'],
  },
  server: {
    proxy: { '/v1': { target: server, ws: true } },
    // The linked package lives outside this folder (dev server only).
    fs: { allow: [searchForWorkspaceRoot(process.cwd()), '../../js'] },
  },
  plugins: [offlineShell()],
});
