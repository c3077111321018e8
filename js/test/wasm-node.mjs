// Loads the built wasm module into Node for the tests of the package's
// non-browser parts (`npm run build` first). Node has no IndexedDB:
// fake-indexeddb stands in, and stores are opened with `connect: false`.
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { initSync } from '../wasm/logsync_wasm.js';

const wasmFile = fileURLToPath(new URL('../wasm/logsync_wasm_bg.wasm', import.meta.url));
if (!existsSync(wasmFile)) {
  throw new Error(`${wasmFile} is missing: run \`npm run build\` in js/ first`);
}
initSync({ module: readFileSync(wasmFile) });
