// The size budget: what an app's production bundle loads for
// `import 'logsync'` (the package and its wasm-bindgen glue bundled and
// minified, plus the wasm module), gzip -9, stays within BUDGET_GZIP.
// Measured on the release build that scripts/test-js.sh makes first.
import test from 'node:test';
import assert from 'node:assert/strict';
import { BUDGET_GZIP, measureSize } from '../scripts/size.mjs';

test('import \'logsync\' in a production bundle stays within the gzip budget', async (t) => {
  const { production, bundle, total } = await measureSize();
  t.diagnostic(`production: ${production.gzip} B gzip (bundle JS ${bundle.gzip} B + wasm); as shipped: ${total.gzip} B`);
  // The minified bundle is smaller than the sources: the measure is real.
  assert.ok(bundle.gzip > 0 && bundle.gzip < total.gzip, JSON.stringify({ bundle, total }));
  assert.ok(production.gzip <= BUDGET_GZIP, `${production.gzip} B gzip is over the budget of ${BUDGET_GZIP} B`);
});
