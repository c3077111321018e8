// A Vite plugin shared by the examples: at build time it emits sw.js, the
// service worker in ./sw.js with the list of the build's files prepended,
// so the app itself (not only its data) opens with no network.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export function offlineShell() {
  return {
    name: 'logsync-example-offline-shell',
    apply: 'build',
    generateBundle(_options, bundle) {
      const files = ['/', ...Object.keys(bundle).map((f) => `/${f}`)].filter((f) => f !== '/sw.js' && f !== '/index.html');
      const version = createHash('sha256').update(files.join('\n')).digest('hex').slice(0, 12);
      const source = readFileSync(new URL('./sw.js', import.meta.url), 'utf8');
      this.emitFile({
        type: 'asset',
        fileName: 'sw.js',
        source: `const PRECACHE = ${JSON.stringify(files)};\nconst VERSION = ${JSON.stringify(version)};\n${source}`,
      });
    },
  };
}
