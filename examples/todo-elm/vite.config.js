import { defineConfig, searchForWorkspaceRoot } from 'vite';
// The React example's service-worker plugin: the same offline app shell.
import { offlineShell } from '../todo-react/offline-shell.js';

const server = process.env.LOGSYNC_SERVER ?? 'http://127.0.0.1:8080';

export default defineConfig({
  optimizeDeps: { exclude: ['logsync'] },
  server: {
    proxy: { '/v1': { target: server, ws: true } },
    // main.js shares the reducer, styles and service worker of ../todo-react.
    fs: { allow: [searchForWorkspaceRoot(process.cwd()), '../todo-react', '../../js'] },
  },
  plugins: [elmOutput(), offlineShell()],
});

// `elm make` writes a classic script that sets `this.Elm`. Run it with
// `this` bound to an object and export what it set, so the compiled
// program is an ES module that Vite bundles (and hashes) with main.js.
function elmOutput() {
  return {
    name: 'logsync-example-elm-output',
    transform(code, id) {
      if (!id.split('?')[0].endsWith('/elm-out/elm.js')) return null;
      return { code: `const output = {};\n(function () {\n${code}\n}).call(output);\nexport const Elm = output.Elm;\n`, map: null };
    },
  };
}
