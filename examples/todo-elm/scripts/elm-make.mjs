#!/usr/bin/env node
// `elm make src/Main.elm --optimize --output=elm-out/elm.js`, failing on
// anything the compiler prints besides its progress lines (a warning, a
// note, a download), so the build stays warnings-free.
//
// ELM_HOME: when it is not set and the repository has the offline package
// cache unpacked (scripts/setup.sh does that into .tools/elm when the
// shared cache is beside the clone), that cache is used; otherwise Elm's
// own cache (~/.elm), which downloads from package.elm-lang.org.
//
//   node scripts/elm-make.mjs [--output=FILE] [src/Module.elm]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const EXAMPLE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = resolve(EXAMPLE, '..', '..');
export const ELM = join(EXAMPLE, 'node_modules', '.bin', 'elm');
const OFFLINE_HOME = join(ROOT, '.tools', 'elm', 'elm-home');

/** The environment elm runs in: ELM_HOME as described above. */
export function elmEnv(env = process.env) {
  if (env.ELM_HOME || !existsSync(join(OFFLINE_HOME, '0.19.1', 'packages', 'registry.dat'))) return { ...env };
  return { ...env, ELM_HOME: OFFLINE_HOME };
}

// What elm make prints on success, line by line (after splitting on \r and
// \n and dropping colours): downloads (first build with network), progress
// counters, "Success!" and the output file.
const PROGRESS = [
  /^Starting downloads\.\.\.$/,
  /^● \S+\/\S+ \d+\.\d+\.\d+$/,
  /^Verifying dependencies \(\d+\/\d+\)$/,
  /^Dependencies (ready|loaded)!$/,
  /^Compiling( \.\.\.| \(\d+\))?$/,
  /^Success! Compiled \d+ modules?\.$/,
  /^Success!$/,
  /^\S+ ───> \S+$/,
];

/** The lines of elm's output that are not progress (empty when all is well). */
export function unexpectedOutput(printed) {
  return printed
    .replace(/\x1b\[[0-9;]*m/g, '')
    .split(/[\r\n]+/)
    .map((line) => line.trim())
    .filter((line) => line && !PROGRESS.some((re) => re.test(line)));
}

/**
 * Compiles `main` (relative to `cwd`) to `output`; throws with the
 * compiler's output when it fails or prints anything but progress.
 * @returns {string} what elm printed
 */
export function elmMake({ main = 'src/Main.elm', output = 'elm-out/elm.js', optimize = true, cwd = EXAMPLE } = {}) {
  if (!existsSync(ELM)) throw new Error(`no Elm compiler at ${ELM}: run npm install in examples/todo-elm (or scripts/setup.sh)`);
  const args = ['make', main, `--output=${output}`, ...(optimize ? ['--optimize'] : [])];
  const run = spawnSync(ELM, args, { cwd, env: elmEnv(), encoding: 'utf8' });
  const printed = `${run.stdout ?? ''}${run.stderr ?? ''}`;
  if (run.error) throw new Error(`elm ${args.join(' ')}: ${run.error.message}`);
  if (run.status !== 0) throw new Error(`elm ${args.join(' ')} failed (exit ${run.status}):\n${printed}`);
  const extra = unexpectedOutput(printed);
  if (extra.length > 0) {
    throw new Error(`elm ${args.join(' ')} printed more than progress (warnings are errors here):\n${extra.join('\n')}`);
  }
  return printed;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const output = args.find((a) => a.startsWith('--output='))?.slice('--output='.length);
  const main = args.find((a) => !a.startsWith('--'));
  try {
    elmMake({ main, output });
    console.log(`elm make ${main ?? 'src/Main.elm'} --optimize: ok, no warnings -> ${output ?? 'elm-out/elm.js'}`);
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}
