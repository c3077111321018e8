// logsync/views: read-only stores of the server's views (js/README.md,
// "Views"). A separate entry point: apps that do not follow views do not
// load it.
import type { ViewStore, ViewStoreOptions } from './index.js';

export type { ViewStatus, ViewStore, ViewStoreOptions } from './index.js';

/** Creates a view store at once; it reads its cached result (`ready`) and opens the feed in the background. */
export declare function createViewStore<R = unknown>(options: ViewStoreOptions): ViewStore<R>;

/** JSON Patch `add`/`remove`/`replace` (RFC 6902) applied without changing `doc`: new objects along each changed path. */
export declare function applyPatch<T = unknown>(
  doc: unknown,
  ops: { op: 'add' | 'remove' | 'replace'; path: string; value?: unknown }[],
): T;
