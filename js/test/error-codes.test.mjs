// One list of error codes everywhere: src/error-codes.js and
// src/error-codes.d.ts are generated from sync-core's ErrorCode (and
// checked by sync-core/tests/generated.rs); here the built wasm module's
// errorCodes() must give the same list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import './wasm-node.mjs';
import { ERROR_CODES, LogsyncError, isLogsyncError, init, wasmErrorCodes } from 'logsync';

test('the wasm module reports the same codes', async () => {
  await init();
  assert.deepEqual(wasmErrorCodes(), [...ERROR_CODES]);
});

test('codes are unique SCREAMING_SNAKE', () => {
  assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length);
  for (const code of ERROR_CODES) assert.match(code, /^[A-Z]+(_[A-Z]+)*$/);
});

test('LogsyncError is a real Error with name, code and cause', () => {
  const cause = new Error('disk on fire');
  const err = new LogsyncError('STORAGE', 'could not write', { cause });
  assert.ok(err instanceof Error);
  assert.ok(err instanceof LogsyncError);
  assert.equal(err.name, 'LogsyncError');
  assert.equal(err.code, 'STORAGE');
  assert.equal(err.cause, cause);
  assert.match(err.stack, /could not write/);
  assert.equal(new LogsyncError('NOT_A_CODE', 'x').code, 'UNKNOWN');
});

test('errors made in the wasm module count as LogsyncErrors by shape', () => {
  const fromWasm = Object.assign(new Error('boom'), { name: 'LogsyncError', code: 'REDUCER' });
  assert.ok(fromWasm instanceof LogsyncError);
  assert.ok(isLogsyncError(fromWasm));
  assert.ok(!(new Error('plain') instanceof LogsyncError));
  assert.ok(!isLogsyncError({ name: 'LogsyncError', code: 'REDUCER', message: 'not an Error' }));
  assert.ok(!isLogsyncError(Object.assign(new Error('no code'), { name: 'LogsyncError' })));
});
