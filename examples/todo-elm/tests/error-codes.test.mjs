// src/Logsync/ErrorCode.elm is generated from sync-core's ErrorCode (and
// kept equal to it by sync-core/tests/generated.rs); compiled, the Elm
// module knows exactly the codes the JS package does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
// errors.js has no dependencies (index.js would load the wasm module).
import { ERROR_CODES } from '../../../js/src/errors.js';
import { startPortsCheck, waitFor } from './lib/worker.mjs';

test('compiled: ErrorCode.all is ERROR_CODES; each text decodes to its code and back; unknown text is UNKNOWN', async () => {
  const { reports, command } = startPortsCheck();
  const texts = [...ERROR_CODES, 'NOT_A_CODE_YET', ''];
  command({ run: 'codes', texts });
  const answer = await waitFor('the codes report', () => reports.find((r) => r.all));
  assert.deepEqual(answer.all, [...ERROR_CODES]);
  assert.deepEqual(answer.decoded, [...ERROR_CODES, 'UNKNOWN', 'UNKNOWN']);
  assert.deepEqual(answer.known, [...ERROR_CODES.map(() => true), false, false]);
});
