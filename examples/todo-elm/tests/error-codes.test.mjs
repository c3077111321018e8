// src/Logsync/ErrorCode.elm is generated from sync-core's ErrorCode, and
// the compiled Elm module knows exactly the codes the JS package does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ELM_MODULE, generate, readCodes } from '../scripts/generate-error-codes.mjs';
// errors.js has no dependencies (index.js would load the wasm module).
import { ERROR_CODES } from '../../../js/src/errors.js';
import { startPortsCheck, waitFor } from './lib/worker.mjs';

test('src/Logsync/ErrorCode.elm is what the generator makes from sync-core/src/error.rs', () => {
  const committed = readFileSync(ELM_MODULE, 'utf8');
  assert.ok(
    committed === generate(),
    'src/Logsync/ErrorCode.elm is stale: run `node scripts/generate-error-codes.mjs` in examples/todo-elm',
  );
});

test('the generator reads every code of sync-core, in the order of ERROR_CODES', () => {
  assert.deepEqual(readCodes().map((c) => c.code), [...ERROR_CODES]);
});

test('a new code in sync-core changes the generated module', () => {
  const source = readFileSync(new URL('../../../sync-core/src/error.rs', import.meta.url), 'utf8')
    .replace(/(pub enum ErrorCode \{[\s\S]*?,)(\n\})/, '$1\n    /// A code added later.\n    BrandNew,$2')
    .replace(/(\n        ErrorCode::\w+,)(\n    \];)/, '$1\n        ErrorCode::BrandNew,$2')
    .replace(/(pub fn as_str\(self\) -> &'static str \{\n        match self \{\n)/, '$1            ErrorCode::BrandNew => "BRAND_NEW",\n');
  const codes = readCodes(source);
  assert.deepEqual(codes.at(-1), { variant: 'BrandNew', code: 'BRAND_NEW', doc: 'A code added later.' });
  const text = generate(codes);
  assert.notEqual(text, readFileSync(ELM_MODULE, 'utf8'));
  assert.match(text, /\n {4}\| BrandNew\n/);
  assert.match(text, /"BRAND_NEW" ->\n {12}Just BrandNew/);
});

test('compiled: ErrorCode.all is ERROR_CODES; each text decodes to its code and back; unknown text is UNKNOWN', async () => {
  const { reports, command } = startPortsCheck();
  const texts = [...ERROR_CODES, 'NOT_A_CODE_YET', ''];
  command({ run: 'codes', texts });
  const answer = await waitFor('the codes report', () => reports.find((r) => r.all));
  assert.deepEqual(answer.all, [...ERROR_CODES]);
  assert.deepEqual(answer.decoded, [...ERROR_CODES, 'UNKNOWN', 'UNKNOWN']);
  assert.deepEqual(answer.known, [...ERROR_CODES.map(() => true), false, false]);
});
