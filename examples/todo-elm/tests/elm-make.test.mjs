// scripts/elm-make.mjs: the build fails on anything elm prints besides
// its progress, and passes its real progress output (offline and with
// downloads).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unexpectedOutput } from '../scripts/elm-make.mjs';

test('progress, downloads and success are not warnings', () => {
  const offline = '\rVerifying dependencies (1/7)\rVerifying dependencies (7/7)\r                            \rDependencies ready!\n'
    + 'Compiling ...\rCompiling (1)\rCompiling (3)\r             \rSuccess! Compiled 3 modules.\n\n    Main ───> elm-out/elm.js\n\n';
  assert.deepEqual(unexpectedOutput(offline), []);
  const online = 'Starting downloads...\n\n  \x1b[32m●\x1b[0m elm/json 1.1.3\n  \x1b[32m●\x1b[0m elm/core 1.0.5\n\nDependencies ready!\nSuccess!\n\n    Main ───> elm.js\n';
  assert.deepEqual(unexpectedOutput(online), []);
});

test('anything else is reported', () => {
  const printed = 'Compiling ...\r-- SOME NOTE --------------- src/Main.elm\n\nSomething to look at.\nSuccess! Compiled 1 module.\n';
  assert.deepEqual(unexpectedOutput(printed), ['-- SOME NOTE --------------- src/Main.elm', 'Something to look at.']);
});
