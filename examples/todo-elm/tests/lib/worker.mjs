// Compiles tests/elm/PortsCheck.elm (with src/ on the source path, as an app
// that copied Logsync.elm has it) with the real Elm compiler and starts it
// in Node: a real Elm program whose ports the tests drive.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXAMPLE, elmMake } from '../../scripts/elm-make.mjs';

let compiled;

/** The compiled program's `Elm` object (compiled once per process). */
export function compilePortsCheck() {
  if (compiled) return compiled;
  const dir = mkdtempSync(join(tmpdir(), 'logsync-elm-test-'));
  try {
    const project = JSON.parse(readFileSync(join(EXAMPLE, 'elm.json'), 'utf8'));
    project['source-directories'] = [join(EXAMPLE, 'src'), join(EXAMPLE, 'tests', 'elm')];
    writeFileSync(join(dir, 'elm.json'), JSON.stringify(project, null, 4));
    elmMake({ main: join(EXAMPLE, 'tests', 'elm', 'PortsCheck.elm'), output: join(dir, 'elm.js'), cwd: dir });
    const output = {};
    // The compiled file is a classic script that sets `this.Elm`.
    new Function(readFileSync(join(dir, 'elm.js'), 'utf8')).call(output);
    compiled = output.Elm;
    return compiled;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A running PortsCheck program and what it reported so far. */
export function startPortsCheck() {
  const app = compilePortsCheck().PortsCheck.init();
  const reports = [];
  app.ports.report.subscribe((value) => reports.push(value));
  return { app, reports, command: (value) => app.ports.command.send(value) };
}

/** Polls until `check()` is truthy (Elm delivers port values asynchronously). */
export async function waitFor(what, check, timeout = 5_000) {
  const deadline = performance.now() + timeout;
  for (;;) {
    const value = check();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
