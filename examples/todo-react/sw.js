// The app shell's service worker (PRECACHE and VERSION are prepended by the
// build, see offline-shell.js). Data never goes through here: Logsync keeps it
// in IndexedDB and syncs it over the WebSocket.
/* global PRECACHE, VERSION */
const CACHE = `todo-shell-${VERSION}`;

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('todo-shell-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/v1/')) return;
  if (request.mode === 'navigate') {
    // Network first, so a new deploy shows at once; the cached page when the
    // network fails or hangs.
    event.respondWith(
      withTimeout(fetch(request), 3000).catch(() => caches.match('/', { cacheName: CACHE, ignoreVary: true })),
    );
    return;
  }
  // Build files have content hashes in their names: the cache is always
  // right. ignoreVary: the server varies on Origin (CORS), which a module
  // script request sends and the precache request did not.
  event.respondWith(
    caches.match(request, { cacheName: CACHE, ignoreVary: true }).then((hit) => hit ?? fetch(request)),
  );
});

function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('network timeout')), ms);
    promise.then(
      (value) => { clearTimeout(timer); resolve(value); },
      (err) => { clearTimeout(timer); reject(err); },
    );
  });
}
