#!/usr/bin/env node
// Makes the Markdown results of one benchmark run from its JSON records
// (one object per measured run, as written by logsync-bench --json,
// bench/browser/run.mjs --json and bench/size.mjs --json): min / median /
// max over repeats, ratios against the baselines measured in the same
// run, and where each number stands against its target.
//
//   node bench/report.mjs results.jsonl > results.md

import fs from 'node:fs';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node bench/report.mjs RESULTS.jsonl\n');
  process.exit(2);
}
const all = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const of = (bench) => all.filter((r) => r.bench === bench);
const out = [];
const say = (s = '') => out.push(s);

const sorted = (xs) => [...xs].filter((x) => x !== null && x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b);
const median = (xs) => { const s = sorted(xs); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
const min = (xs) => sorted(xs)[0];
const max = (xs) => sorted(xs).at(-1);
const fmt = (v, d) => (v === undefined || Number.isNaN(v) ? '—' : Number(v).toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));
const mmm = (xs, d = 0) => (xs.length > 1 ? `${fmt(min(xs), d)} / **${fmt(median(xs), d)}** / ${fmt(max(xs), d)}` : `**${fmt(xs[0], d)}**`);
const groupBy = (rows, key) => {
  const m = new Map();
  for (const r of rows) {
    const k = key(r);
    if (!m.has(k)) m.set(k, []);
    m.get(k).push(r);
  }
  return m;
};
const verdict = (ok) => (ok ? 'met' : '**not met**');

// ---- machine -----------------------------------------------------------------
const machine = of('machine')[0];
if (machine) {
  say(`Run of ${machine.date} (${machine.mode}), commit \`${machine.commit}\`, ${machine.duration_s ? `${machine.duration_s} s in all` : ''}`);
  say();
  say(`Machine: ${machine.nproc} cores (${machine.cpu}), ${machine.memory}, Linux ${machine.kernel}; load average before the run ${machine.load}. ${machine.pinning}`);
  const env = of('browser-env')[0];
  if (env) say(`Browser: Chromium ${env.chromium}, headless, cross-origin isolated (5 µs timers): ${env.cross_origin_isolated}.`);
  say();
}
const targets = [];

// ---- fan-out --------------------------------------------------------------------
const fan = of('fanout');
if (fan.length) {
  say('## 1. Fan-out');
  say();
  say('One stream. Deliveries/s = measured deliveries ÷ the time they took (a target that falls behind is charged its catch-up time). Latency: writer send → subscriber receive, same process clock. `lost` = expected − received after the drain, over all repeats. Server CPU s = utime + stime of the server (or relay) from the first measured send to the last delivery; µs/delivery = that ÷ all deliveries of the run. min / **median** / max over repeats.');
  say();
  say('| workload | clients | mode | target | events/s | deliveries/s | p50 ms | p99 ms | max ms | lost | events/frame | server CPU s | server µs/delivery | server peak RSS MiB | loadgen CPU % | ÷ relay (deliveries/s) |');
  say('|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const cells = groupBy(fan, (r) => `${r.workload}|${r.clients}|${r.mode}|${r.max_batch}`);
  for (const [, rows] of cells) {
    const byTarget = groupBy(rows, (r) => r.target);
    const relay = byTarget.get('relay') || [];
    for (const [target, rs] of byTarget) {
      const r0 = rs[0];
      let ratio = '—';
      let ratios = [];
      if (target !== 'relay' && relay.length) {
        ratios = rs.map((r) => {
          const base = relay.find((b) => b.repeat === r.repeat);
          return base ? r.deliveries_per_s / base.deliveries_per_s : NaN;
        });
        ratio = mmm(ratios, 2);
        if (r0.workload === 'one-writer' && r0.clients === 1000 && (r0.mode === 'paced' || r0.max_batch > 1)) {
          targets.push({
            what: `fan-out, one writer, N = 1000, ${r0.mode}: ${target} deliveries/s ÷ relay's`,
            target: '≥ 0.5',
            value: fmt(median(ratios), 2),
            ok: median(ratios) >= 0.5,
          });
        }
      }
      const lost = rs.reduce((a, r) => a + r.lost, 0);
      if (lost > 0 || rs.some((r) => r.misordered > 0 || r.duplicates > 0)) {
        targets.push({ what: `fan-out ${r0.workload} N = ${r0.clients} ${r0.mode} ${target}: lost / misordered / duplicated deliveries`, target: '0', value: `${lost} / ${rs.reduce((a, r) => a + r.misordered, 0)} / ${rs.reduce((a, r) => a + r.duplicates, 0)}`, ok: false });
      }
      say(`| ${r0.workload} | ${r0.clients} | ${r0.mode}${r0.mode === 'paced' ? ` ${r0.rate_target}/s` : ` (window ${r0.window}${r0.max_batch === 1 ? ', 1 intent per push' : ''})`} | ${target} | ${fmt(median(rs.map((r) => r.events_per_s)), 0)} | ${mmm(rs.map((r) => r.deliveries_per_s))} | ${fmt(median(rs.map((r) => r.p50_ms)), 2)} | ${fmt(median(rs.map((r) => r.p99_ms)), 2)} | ${fmt(max(rs.map((r) => r.max_ms)), 1)} | ${lost} | ${fmt(median(rs.map((r) => r.events_per_frame)), 1)} | ${fmt(median(rs.map((r) => r.server_cpu_s)), 2)} | ${fmt(median(rs.map((r) => (r.server_cpu_s * 1e6) / r.expected_deliveries)), 2)} | ${fmt(max(rs.map((r) => r.server_peak_rss_mib)), 1)} | ${fmt(median(rs.map((r) => (100 * r.loadgen_cpu_s) / r.elapsed_s)), 0)} | ${ratio} |`);
    }
  }
  say();
}

// ---- append ----------------------------------------------------------------------
const app = of('append').filter((r) => (r.payload ?? 'string') === 'string');
if (app.length) {
  say('## 2. Durable append');
  say();
  say('Closed-loop writers, one intent in flight each (push, wait for the Ack sent after the fsync, push the next); one stream, 100 B payloads. intents/s min / **median** / max over repeats; latency push → Ack, median over repeats.');
  say();
  say('| server | writers | group commit intents/s | p50 / p99 ms | one commit per intent intents/s | p50 / p99 ms | group ÷ per-intent |');
  say('|---|---:|---:|---:|---:|---:|---:|');
  for (const [, rows] of groupBy(app, (r) => `${r.target}|${r.writers}`)) {
    const g = rows.filter((r) => r.mode === 'group');
    const p = rows.filter((r) => r.mode === 'per-intent');
    const ratios = g.map((r) => { const b = p.find((x) => x.repeat === r.repeat); return b ? r.intents_per_s / b.intents_per_s : NaN; });
    say(`| ${rows[0].target} | ${rows[0].writers} | ${mmm(g.map((r) => r.intents_per_s))} | ${fmt(median(g.map((r) => r.p50_ms)), 2)} / ${fmt(median(g.map((r) => r.p99_ms)), 2)} | ${mmm(p.map((r) => r.intents_per_s))} | ${fmt(median(p.map((r) => r.p50_ms)), 2)} / ${fmt(median(p.map((r) => r.p99_ms)), 2)} | ${mmm(ratios, 1)} |`);
  }
  say();
}

// ---- append with a reducer at the ordering point ---------------------------------
// The TodoMVC example's actions, the same streams, group commit: the server
// without a reducer (`logsync`) and with each reducer variant, per repeat.
const red = of('append').filter((r) => r.payload === 'todo');
if (red.length) {
  say('## 2b. Durable append with a reducer at the ordering point');
  say();
  say(`Closed-loop writers as in 2 (group commit), but every intent is one of the TodoMVC example's own actions (\`examples/todo-react/src/todos.js\`; about ${fmt(median(red.map((r) => r.payload_bytes)), 0)} B): each writer adds its share of the stream's 100 todos, then toggles and edits them in turn, so every action changes the state. Streams \`${red[0].stream_prefix}0\`… (${red[0].streams}); \`logsync\` folds nothing; \`logsync-js-todo\` folds \`todos/*\` with the module's reducer in its JavaScript engine before each append, \`logsync-rust-todo\` (\`logsync-todo-server\`, when measured) with the same reducer ported to Rust (\`bench/todo-reducer\`). intents/s min / **median** / max over repeats; ratio per repeat; latency push → Ack and server CPU seconds (${fmt(red[0].duration_s, 0)} s measured + warm-up), median over repeats; server CPU µs per intent = CPU seconds ÷ every intent acked while they were counted.`);
  say();
  say('| writers | server | no reducer intents/s | p50 / p99 ms | with reducer intents/s | p50 / p99 ms | with ÷ without | server CPU s without / with | server CPU µs per intent without / with | difference µs per intent |');
  say('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [, rows] of groupBy(red, (r) => r.writers)) {
    const base = rows.filter((r) => r.target === 'logsync');
    for (const [target, rs] of groupBy(rows.filter((r) => r.target !== 'logsync'), (r) => r.target)) {
      const ratios = rs.map((r) => { const b = base.find((x) => x.repeat === r.repeat); return b ? r.intents_per_s / b.intents_per_s : NaN; });
      const us = (xs) => median(xs.map((r) => r.server_cpu_us_per_intent));
      say(`| ${rs[0].writers} | ${target} | ${mmm(base.map((r) => r.intents_per_s))} | ${fmt(median(base.map((r) => r.p50_ms)), 2)} / ${fmt(median(base.map((r) => r.p99_ms)), 2)} | ${mmm(rs.map((r) => r.intents_per_s))} | ${fmt(median(rs.map((r) => r.p50_ms)), 2)} / ${fmt(median(rs.map((r) => r.p99_ms)), 2)} | ${mmm(ratios, 2)} | ${fmt(median(base.map((r) => r.server_cpu_s)), 2)} / ${fmt(median(rs.map((r) => r.server_cpu_s)), 2)} | ${fmt(us(base), 1)} / ${fmt(us(rs), 1)} | ${fmt(us(rs) - us(base), 1)} |`);
      // The server-reducer issue's goals: Rust ≥ 0.8×, JavaScript ≥ 0.5×.
      const goal = target.includes('rust') ? 0.8 : target.includes('js') ? 0.5 : null;
      if (rs[0].writers === 100 && goal !== null) {
        targets.push({ what: `append, 100 writers, todo actions: ${target} intents/s ÷ no reducer's`, target: `≥ ${goal}`, value: fmt(median(ratios), 2), ok: median(ratios) >= goal });
      }
    }
  }
  say();
}

// ---- idle ------------------------------------------------------------------------
const boots = of('boot');
if (boots.length) {
  say("## 2c. A new client's time to first state");
  say();
  say('A stream of N events folded by `bench/boot-reducer.js` (a count and the last 100 ids). A new client connects over loopback, subscribes from offset 0 and is done when it holds the state at the head: it decodes every event it receives (JSON) or the snapshot\'s JSON text. "full catch-up": the server keeps the whole log; "snapshot boot": `--retain-events 1000` (a snapshot every 1000 events), so the client gets the snapshot and the events after it. Server storage: the SQLite file, WAL and shared memory after seeding.');
  say();
  say('| history | mode | time to state p50 ms | max ms | bytes received | events received | server storage MiB |');
  say('|---:|---|---:|---:|---:|---:|---:|');
  for (const r of boots) {
    say(`| ${r.history} | ${r.mode} | ${fmt(r.p50_ms, 1)} | ${fmt(r.max_ms, 1)} | ${r.bytes} | ${r.events} | ${fmt(r.storage_bytes / 1048576, 1)} |`);
  }
  say();
}

const idle = of('idle');
if (idle.length) {
  say('## 3. Memory per connection');
  say();
  say('Server RSS after 16 warm-up connections, then after N more idle connections (each said Hello and subscribed to one stream, then only answers pings); (after − before) ÷ N. min / **median** / max over repeats.');
  say();
  say('| server | connections | RSS before MiB | RSS after MiB | bytes per idle connection |');
  say('|---|---:|---:|---:|---:|');
  for (const [, rs] of groupBy(idle, (r) => `${r.target}|${r.connections}`)) {
    say(`| ${rs[0].target} | ${rs[0].connections} | ${fmt(median(rs.map((r) => r.rss_before_mib)), 1)} | ${fmt(median(rs.map((r) => r.rss_after_mib)), 1)} | ${mmm(rs.map((r) => r.bytes_per_connection))} |`);
  }
  say();
}

// ---- browser -------------------------------------------------------------------
const init = of('browser-init')[0];
const disp = of('dispatch');
if (disp.length) {
  say('## 4a. Client: dispatch against Redux');
  say();
  say('Headless Chromium, release build of the npm package and Redux 5 (production browser build) in the same page, the same reducer, one subscriber each; the Logsync store online against a real server. Each repeat interleaves the stores in blocks of 500 dispatches. µs per dispatch, min / **median** / max over repeats: the dispatch call (reducer, listeners) and the store\'s handover of its dispatches to wasm, which happens at the next microtask checkpoint — every timed block ends with one (`await null`, for all three stores), so a block of 500 is handed over once. The "one per microtask" rows put a checkpoint after every dispatch, as when each dispatch comes from its own click or key press: the handover is paid per dispatch, and every store pays the checkpoint. "Redux + JSON round trip" dispatches `JSON.parse(JSON.stringify(action))`: the floor for any store that ships actions as JSON. The last column times dispatch → every intent in the outbox, pushed, durably appended by the server and confirmed back (`synced()`).');
  say();
  say('| reducer | Redux µs | Redux + JSON µs | Logsync µs | Logsync ÷ Redux | Logsync ÷ (Redux + JSON) | dispatch → confirmed, intents/s |');
  say('|---|---:|---:|---:|---:|---:|---:|');
  for (const [reducer, rs] of groupBy(disp, (r) => `${r.reducer}${r.per_tick ? ', one per microtask' : ''}`)) {
    say(`| ${reducer} | ${mmm(rs.map((r) => r.redux_us), 3)} | ${mmm(rs.map((r) => r.redux_json_us), 3)} | ${mmm(rs.map((r) => r.logsync_us), 2)} | ${mmm(rs.map((r) => r.ratio), 1)} | ${mmm(rs.map((r) => r.ratio_vs_json), 1)} | ${mmm(rs.map((r) => r.confirm_intents_per_s))} |`);
    targets.push({ what: `dispatch ÷ Redux (${rs[0].reducer} reducer${rs[0].per_tick ? ', one per microtask' : ''})`, target: '≤ 3', value: fmt(median(rs.map((r) => r.ratio)), 1), ok: median(rs.map((r) => r.ratio)) <= 3 });
  }
  say();
}
const prof = of('browser-profile')[0];
if (prof) {
  say(`Profile of 20,000 dispatches (list reducer, offline store, ${fmt(prof.us_per_dispatch, 2)} µs each under the profiler), self time: ${prof.top.slice(0, 10).map((t) => `${t.name} ${t.pct}%`).join(', ')}.`);
  say();
}
const cu = of('catchup');
if (cu.length) {
  say('## 4b, 4d. Client: catch-up from a real server');
  say();
  say(`A fresh store (new IndexedDB database) follows a stream of ${cu[0].events.toLocaleString('en-US')} events (\`{"type":"add","id":…}\`, the list reducer) from logsync-server on loopback. Applied events/s = events applied in memory from the first batch to offset = head; the baseline is a plain JS loop that JSON.parses the same payloads and runs the same reducer, in the same page right after. min / **median** / max over repeats.`);
  say();
  say('| snapshots | repeats | to first batch ms | to offset = head ms | to all written (synced) ms | applied events/s | plain JS fold events/s | applied ÷ fold |');
  say('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const [label, rs] of groupBy(cu, (r) => r.snapshots)) {
    say(`| ${label} | ${rs.length} | ${mmm(rs.map((r) => r.first_batch_ms))} | ${mmm(rs.map((r) => r.to_head_ms))} | ${mmm(rs.map((r) => r.to_written_ms))} | ${mmm(rs.map((r) => r.apply_events_per_s))} | ${mmm(rs.map((r) => r.fold_events_per_s))} | ${mmm(rs.map((r) => r.apply_vs_fold), 2)} |`);
  }
  say();
}
const su = of('startup');
if (su.length) {
  say('## 4c. Client: start-up to first state');
  say();
  say(`\`createSyncStore\` with \`connect: false\` → first \`getState()\` (wasm module already loaded${init ? `; loading and instantiating it took ${fmt(init.init_ms, 1)} ms on first use` : ''}), on an IndexedDB database seeded in bulk in the store's own record format (checked byte for byte against records the store wrote itself), list reducer. "Plain IndexedDB read" opens the same database and reads the same records (stream record, snapshot, events) with no decoding: the floor. ms, min / **median** / max over runs.`);
  say();
  say('| stored events | stored as | Logsync start-up ms | plain IndexedDB read ms | ÷ at 1,000 events |');
  say('|---:|---|---:|---:|---:|');
  for (const [label, rs] of groupBy(su, (r) => r.stored)) {
    const base = rs.find((r) => r.events === 1000);
    for (const r of rs) {
      say(`| ${r.events.toLocaleString('en-US')} | ${label} | ${mmm(r.store_ms, 1)} | ${mmm(r.idb_ms, 1)} | ${base ? fmt(median(r.store_ms) / median(base.store_ms), 2) : '—'} |`);
    }
    const big = rs.at(-1);
    if (base && label.startsWith('snapshot')) {
      const growth = median(big.store_ms) / median(base.store_ms);
      targets.push({ what: `start-up with ${big.events.toLocaleString('en-US')} stored events ÷ with 1,000 (snapshots)`, target: 'flat (≤ 1.5)', value: fmt(growth, 2), ok: growth <= 1.5 });
    }
  }
  say();
}
const size = of('size')[0];
if (size) {
  say('## 5. Size');
  say();
  say('The npm package\'s release build (`npm run build` in js/: wasm-pack with the `wasm-release` profile, wasm-opt), gzip -9 of each file, summed.');
  say();
  say('| what | raw bytes | gzip bytes |');
  say('|---|---:|---:|');
  for (const p of size.parts) say(`| ${p.what} | ${fmt(p.raw, 0)} | ${fmt(p.gzip, 0)} |`);
  say(`| **wasm + glue** | ${fmt(size.wasm_glue.raw, 0)} | **${fmt(size.wasm_glue.gzip, 0)}** |`);
  say(`| **everything \`import 'logsync'\` loads** | ${fmt(size.total.raw, 0)} | **${fmt(size.total.gzip, 0)}** |`);
  say();
  targets.push({ what: 'wasm + JS glue, gzip', target: `≤ ${fmt(size.budget_gzip, 0)} B`, value: `${fmt(size.wasm_glue.gzip, 0)} B (${fmt((100 * size.wasm_glue.gzip) / size.budget_gzip, 0)}%)`, ok: size.wasm_glue.gzip <= size.budget_gzip });
  targets.push({ what: 'everything `import \'logsync\'` loads, gzip', target: `≤ ${fmt(size.budget_gzip, 0)} B`, value: `${fmt(size.total.gzip, 0)} B (${fmt((100 * size.total.gzip) / size.budget_gzip, 0)}%)`, ok: size.total.gzip <= size.budget_gzip });
}

if (targets.length) {
  say('## Against the targets');
  say();
  say('| what | target | this run (median) | |');
  say('|---|---|---:|---|');
  for (const t of targets) say(`| ${t.what} | ${t.target} | ${t.value} | ${verdict(t.ok)} |`);
  say();
}
process.stdout.write(`${out.join('\n')}\n`);
