// A jsdom window as the global environment for react-dom under node --test.
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body><div id="root"></div></body></html>', { url: 'http://localhost/' });
for (const key of ['window', 'document', 'navigator', 'HTMLElement', 'Node', 'Event', 'MouseEvent']) {
  Object.defineProperty(globalThis, key, { value: dom.window[key] ?? dom.window, configurable: true, writable: true });
}
globalThis.window = dom.window;
globalThis.IS_REACT_ACT_ENVIRONMENT = true;

export function freshRoot() {
  const el = document.createElement('div');
  document.body.appendChild(el);
  return el;
}

// The wasm module looks IndexedDB up on the global object it finds first,
// which is now the jsdom window: give it the one the test installed
// (import 'fake-indexeddb/auto' before this module).
for (const key of Object.getOwnPropertyNames(globalThis)) {
  if ((key === 'indexedDB' || key.startsWith('IDB')) && !(key in dom.window)) {
    dom.window[key] = globalThis[key];
  }
}
