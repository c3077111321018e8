// One list of error codes everywhere: sync-core's ErrorCode::ALL, the wasm
// module's errorCodes(), ERROR_CODES and the TypeScript union.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import './wasm-node.mjs';
import { ERROR_CODES, LogsyncError, isLogsyncError, init, wasmErrorCodes } from 'logsync';

const read = (rel) => readFileSync(new URL(rel, import.meta.url), 'utf8');

function coreCodes() {
  const src = read('../../sync-core/src/error.rs');
  const all = /pub const ALL: &'static \[ErrorCode\] = &\[([\s\S]*?)\];/.exec(src);
  assert.ok(all, 'ErrorCode::ALL not found in sync-core/src/error.rs');
  const variants = [...all[1].matchAll(/ErrorCode::(\w+)/g)].map((m) => m[1]);
  const text = new Map([...src.matchAll(/ErrorCode::(\w+) => "([A-Z_]+)"/g)].map((m) => [m[1], m[2]]));
  return variants.map((v) => {
    assert.ok(text.has(v), `no as_str text for ErrorCode::${v}`);
    return text.get(v);
  });
}

function unionCodes() {
  const dts = read('../src/errors.d.ts');
  const body = /export type ErrorCode =([\s\S]*?);/.exec(dts);
  assert.ok(body, 'ErrorCode union not found in src/errors.d.ts');
  return [...body[1].matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]);
}

test('ERROR_CODES equals sync-core ErrorCode::ALL, in order', () => {
  assert.deepEqual([...ERROR_CODES], coreCodes());
});

test('the wasm module reports the same codes', async () => {
  await init();
  assert.deepEqual(wasmErrorCodes(), [...ERROR_CODES]);
});

test('the TypeScript union lists exactly ERROR_CODES', () => {
  assert.deepEqual(unionCodes(), [...ERROR_CODES]);
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
