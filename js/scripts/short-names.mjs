// Shortens the names the wasm module and its JS glue use to find each
// other, after wasm-bindgen and wasm-opt: the import names
// (`__wbg_new_with_length_01b143a7e5dd5a3e`, ~125 of them, each ending in a
// hash that gzip cannot compress), the import module names
// (`./logsync_wasm_bg.js` before every import) and the export names
// (`wasmstore_dispatchFolded`, `wasm_bindgen__convert__closures_____invoke__…`).
// They appear twice in what a page loads (in the module and as keys or
// property names in the glue, which a minifier does not rename), and no
// browser or app reads them. It also drops the module's custom sections
// (`target_features`, names), which only tools read.
//
// Hand-written because no tool we have does it: wasm-opt's
// `--minify-imports-and-exports` renames only `env` and `wasi_*` imports,
// and the glue must be rewritten with the same table. The rewrite is
// checked: every name it renames in the module must be found in the glue
// (or it fails the build), and `test/size.test.mjs` and the whole JS suite
// instantiate the result.
import { readFileSync, writeFileSync } from 'node:fs';

/** Reads an unsigned LEB128 at `pos`: [value, next position]. */
function readU32(bytes, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[pos++];
    if (b === undefined) throw new Error('wasm: truncated LEB128');
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [value, pos];
    shift += 7;
    if (shift > 35) throw new Error('wasm: LEB128 too long');
  }
}

function u32(value) {
  const out = [];
  do {
    let b = value & 0x7f;
    value = Math.floor(value / 128);
    if (value !== 0) b |= 0x80;
    out.push(b);
  } while (value !== 0);
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const enc = new TextEncoder();

function readName(bytes, pos) {
  const [len, at] = readU32(bytes, pos);
  return [utf8.decode(bytes.subarray(at, at + len)), at + len];
}

function name(s) {
  const b = enc.encode(s);
  return [...u32(b.length), ...b];
}

/** Skips a table's or memory's limits. */
function skipLimits(bytes, pos) {
  const flags = bytes[pos++];
  [, pos] = readU32(bytes, pos);
  if (flags & 1) [, pos] = readU32(bytes, pos);
  return pos;
}

/** Skips one import's description (function, table, memory, global, tag). */
function skipImportDesc(bytes, pos) {
  const kind = bytes[pos++];
  switch (kind) {
    case 0: return readU32(bytes, pos)[1];
    case 1: return skipLimits(bytes, pos + 1); // reftype, limits
    case 2: return skipLimits(bytes, pos);
    case 3: return pos + 2; // valtype, mutability
    case 4: return readU32(bytes, pos + 1)[1]; // attribute, type index
    default: throw new Error(`wasm: unknown import kind ${kind}`);
  }
}

/** Short identifiers: a, b, …, Z, aa, ab, … (valid JS property names). */
function* shortNames() {
  const first = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const rest = `${first}0123456789`;
  for (let n = 0; ; n += 1) {
    let s = first[n % first.length];
    let k = Math.floor(n / first.length);
    while (k > 0) {
      k -= 1;
      s += rest[k % rest.length];
      k = Math.floor(k / rest.length);
    }
    yield s;
  }
}

/**
 * Rewrites `wasmFile` and `glueFile` (and the glue's `.d.ts` files, whose
 * export list would otherwise name what is gone) in place.
 * @returns {{ imports: number, modules: number, exports: number, before: number, after: number }}
 */
export function shortenNames(wasmFile, glueFile, dtsFiles = []) {
  const bytes = readFileSync(wasmFile);
  if (bytes.readUInt32LE(0) !== 0x6d736100 || bytes.readUInt32LE(4) !== 1) throw new Error(`${wasmFile}: not a wasm module`);
  let glue = readFileSync(glueFile, 'utf8');

  const moduleNames = new Map(); // old module name -> new
  const importNames = new Map(); // old import name in the glue module -> new
  const exportNames = new Map();
  const modules = shortNames();
  const imports = shortNames();
  const exports = shortNames();

  const out = [bytes.subarray(0, 8)];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, start] = readU32(bytes, pos + 1);
    const end = start + size;
    if (end > bytes.length) throw new Error('wasm: section runs past the end');
    if (id === 0) {
      // A custom section: no browser reads it.
    } else if (id === 2 || id === 7) {
      let p = start;
      const [count, at] = readU32(bytes, p);
      p = at;
      const body = [...u32(count)];
      for (let i = 0; i < count; i += 1) {
        if (id === 2) {
          const [mod, a] = readName(bytes, p);
          const [field, b] = readName(bytes, a);
          const descEnd = skipImportDesc(bytes, b);
          if (!moduleNames.has(mod)) moduleNames.set(mod, modules.next().value);
          // Imports from the glue's own module are its functions, named
          // freely; imports from a snippet are that file's exports.
          let newField = field;
          if (mod.endsWith('_bg.js')) {
            if (!importNames.has(field)) importNames.set(field, imports.next().value);
            newField = importNames.get(field);
          }
          body.push(...name(moduleNames.get(mod)), ...name(newField), ...bytes.subarray(b, descEnd));
          p = descEnd;
        } else {
          const [field, a] = readName(bytes, p);
          const [, descEnd] = readU32(bytes, a + 1);
          const newField = exports.next().value;
          exportNames.set(field, newField);
          body.push(...name(newField), ...bytes.subarray(a, descEnd));
          p = descEnd;
        }
      }
      if (p !== end) throw new Error(`wasm: section ${id} has ${end - p} bytes left over`);
      out.push(Buffer.from([id, ...u32(body.length), ...body]));
    } else {
      out.push(bytes.subarray(pos, end));
    }
    pos = end;
  }

  // One pass per kind, so that a new short name is never renamed again.
  const seen = new Set();
  const rename = (pattern, table) => {
    glue = glue.replace(pattern, (whole, quote, id) => {
      const short = table.get(id);
      if (short === undefined) return whole;
      seen.add(id);
      return `${quote}${short}${quote}`;
    });
  };
  rename(/(["'])([^"'\n]+)\1(?=:)/g, moduleNames);
  rename(/(?<![\w$.])()([A-Za-z_$][\w$]*)(?=: function)/g, importNames);
  // `wasm.memory` and the exported functions; an export the glue does not
  // read (none today) is simply not found.
  rename(/(?<=\bwasm\.)()([A-Za-z_$][\w$]*)/g, exportNames);
  // Every module and import the wasm asks for must have been renamed in
  // the glue, or instantiation would fail: fail the build instead.
  const missing = [...moduleNames.keys(), ...importNames.keys()].filter((old) => !seen.has(old));
  if (missing.length > 0) throw new Error(`${glueFile}: the glue does not define ${missing.join(', ')}; its shape changed`);

  // wasm-bindgen imports a snippet file once per group of the module's
  // imports from it, each as its own namespace under the same key of the
  // imports object: a duplicate key every app's bundler warns about. One
  // namespace per file (the same object: one module) is kept.
  const kept = new Map();
  const dropped = [];
  glue = glue.replace(/^\s*(["'])([^"'\n]+)\1: (import\d+),\n/gm, (whole, quote, key, ns) => {
    if (!kept.has(key)) {
      kept.set(key, ns);
      return whole;
    }
    dropped.push(ns);
    return '';
  });
  for (const ns of dropped) {
    glue = glue.replace(new RegExp(`^import \\* as ${ns} from "[^"\\n]+";?\\n`, 'm'), '');
    if (new RegExp(`\\b${ns}\\b`).test(glue)) throw new Error(`${glueFile}: ${ns} is still used after its duplicate key went`);
  }

  for (const file of dtsFiles) {
    let dts = readFileSync(file, 'utf8');
    dts = dts.replace(/(?<=readonly )([A-Za-z_$][\w$]*)/g, (id) => exportNames.get(id) ?? id);
    writeFileSync(file, dts);
  }
  const result = Buffer.concat(out);
  writeFileSync(wasmFile, result);
  writeFileSync(glueFile, glue);
  return { imports: importNames.size, modules: moduleNames.size, exports: exportNames.size, before: bytes.length, after: result.length };
}
