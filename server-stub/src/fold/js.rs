//! The JavaScript [`StreamReducer`]: the app's own ES module run in
//! QuickJS (through `rquickjs`, which compiles QuickJS from source into
//! the binary: no system library, no network at build time).
//!
//! One engine (a QuickJS runtime and context) per module file. Every
//! stream's state stays a JavaScript value inside the engine, in a `Map`
//! keyed by a number the Rust side holds ([`JsState`]); an event crosses
//! as its payload text only, and the state becomes JSON only when someone
//! reads it (`GET /v1/streams/{s}/state`). Why: a JSON round trip of the
//! whole state per event would cost as much as the state is large, on the
//! single writer's path.
//!
//! Determinism: before the module loads, a prelude replaces
//! `Math.random`, `Date.now`, `Date()` and `new Date()` without arguments,
//! and puts throwing getters on `performance`, the timer functions,
//! `crypto`, `WeakRef`, `FinalizationRegistry` (their answers depend on
//! when the collector ran), `Atomics` and `SharedArrayBuffer`; touching
//! one throws an error naming it, and the intent is
//! refused with `REDUCER`. Limits: each call runs under a deadline (an
//! interrupt handler) and the engine under a memory limit; a reducer that
//! runs past either is stopped, the intent refused with `REDUCER`, and the
//! stream's state stays what it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rquickjs::{Context, Ctx, Function, Module, Object, Runtime, Value};
use sync_core::{ErrorCode, Meta};

use super::{LoadError, Refusal, StreamReducer, StreamState};

/// Limits of one JavaScript engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsLimits {
    /// Longest one reduce call may run.
    pub call_timeout: Duration,
    /// Longest the module's top level may run when it loads.
    pub load_timeout: Duration,
    /// Most bytes the engine may allocate, for the module and the states
    /// of all its streams together.
    pub memory_bytes: usize,
}

impl Default for JsLimits {
    fn default() -> Self {
        JsLimits {
            call_timeout: Duration::from_millis(100),
            load_timeout: Duration::from_secs(5),
            memory_bytes: 256 << 20,
        }
    }
}

/// Runs before the module: makes the non-deterministic globals throw,
/// and answers the factory of the fold harness (the harness shares the
/// prelude's error class, so it can tell "touched a non-deterministic
/// global" from an app's refusal).
const PRELUDE: &str = r#"
(() => {
  class NondeterministicError extends Error {}
  NondeterministicError.prototype.name = 'NondeterministicError';
  const refuse = (what) => () => {
    throw new NondeterministicError(
      `${what} is not available to a reducer on the server: a reducer must be deterministic ` +
      `(take times and random ids from the action)`);
  };
  const RealDate = Date;
  function SafeDate(...args) {
    if (!new.target) refuse('Date()')();
    if (args.length === 0) refuse('new Date() without arguments')();
    return Reflect.construct(RealDate, args, new.target);
  }
  SafeDate.prototype = RealDate.prototype;
  Object.defineProperty(RealDate.prototype, 'constructor', { value: SafeDate, writable: true, configurable: true });
  Object.defineProperty(SafeDate, 'name', { value: 'Date' });
  SafeDate.UTC = RealDate.UTC;
  SafeDate.parse = RealDate.parse;
  SafeDate.now = refuse('Date.now');
  globalThis.Date = SafeDate;
  Math.random = refuse('Math.random');
  // WeakRef and FinalizationRegistry answer by when the collector ran;
  // Atomics and SharedArrayBuffer are for memory shared between threads
  // (and Atomics.wait could block past the deadline).
  for (const name of ['performance', 'setTimeout', 'setInterval', 'setImmediate', 'clearTimeout',
                      'clearInterval', 'clearImmediate', 'queueMicrotask', 'crypto', 'WeakRef',
                      'FinalizationRegistry', 'Atomics', 'SharedArrayBuffer']) {
    Object.defineProperty(globalThis, name, { get: refuse(name), configurable: false });
  }
  // The class `import { Rejection } from 'logsync'` gives the module (the
  // engine's built-in `logsync` module re-exports this one), the same as
  // the npm package's: `throw new Rejection('SEAT_TAKEN', 'seat 4A is taken')`.
  class Rejection extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }
  Object.defineProperty(Rejection.prototype, 'name', { value: 'Rejection', writable: true, configurable: true });
  Object.defineProperty(globalThis, Symbol.for('logsync.Rejection'), { value: Rejection });
  const CODE = /^[A-Z0-9_]{1,64}$/;
  const shown = (code) => typeof code === 'string'
    ? stringify(code.length > 80 ? `${code.slice(0, 80)}…` : code)
    : `of type ${code === null ? 'null' : typeof code}`;
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  return (reducer, initialState, views, upcast, migrate, version, oldest) => {
    const states = new Map();
    const viewNames = () => (views !== null && typeof views === 'object'
      ? Object.keys(views).filter((k) => typeof views[k] === 'function') : []);
    // The next state of the last fold that succeeded: kept by `commit`,
    // which the Rust side calls with the deadline off, so a stop can never
    // land between keeping a state and answering that it was refused.
    let pending;
    return {
      start(key) { states.set(key, initialState); },
      restore(key, json) {
        try { states.set(key, parse(json)); }
        catch (e) { return ['REDUCER', `the snapshot is not JSON: ${e.message}`]; }
        return null;
      },
      migrate(key, json, from) {
        let old;
        try { old = parse(json); }
        catch (e) { return ['REDUCER', `the snapshot is not JSON: ${e.message}`]; }
        let state;
        try { state = migrate(old, from); }
        catch (e) {
          return ['REDUCER', `migrate(state, ${from}) threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`];
        }
        if (state === undefined) {
          return ['REDUCER', `migrate(state, ${from}) returned undefined`];
        }
        if (state !== null && typeof state.then === 'function') {
          return ['REDUCER', 'migrate returned a Promise: it must be synchronous'];
        }
        states.set(key, state);
        return null;
      },
      drop(key) { states.delete(key); },
      commit(key) { states.set(key, pending); pending = undefined; },
      fold(key, payload, meta) {
        let action;
        try { action = parse(payload); }
        catch (e) { return ['REDUCER', `the payload is not JSON: ${e.message}`]; }
        const from = meta.schema;
        if (from > version || from < oldest) {
          return ['REDUCER', `the action is of schema version ${from}; this module reads ${oldest} to ${version}`];
        }
        if (from < version) {
          try { action = upcast(action, from); }
          catch (e) {
            if (e instanceof InternalError || e instanceof NondeterministicError ||
                (e instanceof RangeError && /call stack/.test(e.message))) {
              return ['REDUCER', `${e.name}: ${e.message}`];
            }
            return ['REDUCER', `upcast(action, ${from}) threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`];
          }
          if (action === undefined) {
            return ['REDUCER', `upcast(action, ${from}) returned undefined`];
          }
          if (action !== null && typeof action.then === 'function') {
            return ['REDUCER', 'upcast returned a Promise: it must be synchronous'];
          }
        }
        let next;
        try { next = reducer(states.get(key), action, meta); }
        catch (e) {
          // The engine's own failures (out of memory, stack overflow) and
          // non-deterministic globals are the reducer's fault, not a refusal.
          if (e instanceof InternalError || e instanceof NondeterministicError ||
              (e instanceof RangeError && /call stack/.test(e.message))) {
            return ['REDUCER', `${e.name}: ${e.message}`];
          }
          const message = e instanceof Error ? String(e.message) : String(e);
          if (e instanceof Rejection) {
            if (typeof e.code === 'string' && CODE.test(e.code)) {
              return ['REJECTED', `${e.code}: ${message}`];
            }
            return ['REDUCER', `the reducer threw a Rejection whose code ${shown(e.code)} is not 1 to 64 ` +
              `characters of A-Z, 0-9 and _ (its message: ${message})`];
          }
          if (e !== null && typeof e === 'object' && typeof e.code === 'string' && CODE.test(e.code)) {
            return ['REJECTED', `${e.code}: ${message}`];
          }
          return ['REJECTED', message];
        }
        if (next === undefined) {
          return ['REDUCER', 'the reducer returned undefined (return the state unchanged instead)'];
        }
        if (next !== null && typeof next.then === 'function') {
          return ['REDUCER', 'the reducer returned a Promise: a reducer must be synchronous'];
        }
        pending = next;
        return null;
      },
      state(key) { return stringify(states.get(key)) ?? 'null'; },
      view(key, query) {
        const [name, params] = parse(query);
        const view = viewNames().includes(name) ? views[name] : undefined;
        if (view === undefined) {
          const names = viewNames();
          return ['NOT_FOUND', `the module has no view named ${stringify(name)} (its views: ` +
            `${names.length === 0 ? 'none; export them as `export const views = { name: (state, params) => … }`' : names.join(', ')})`];
        }
        let result;
        try { result = view(states.get(key), params); }
        catch (e) {
          return ['REDUCER', `the view ${name} threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`];
        }
        if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
          return ['REDUCER', `the view ${name} returned a Promise: a view must be synchronous`];
        }
        const text = stringify(result);
        if (text === undefined) {
          return ['REDUCER', `the view ${name} returned ${typeof result}, which is not JSON (return null for nothing)`];
        }
        return text;
      },
      size() { return String(states.size); },
    };
  };
})()
"#;

/// The module `import { Rejection } from 'logsync'` loads inside the
/// engine: the prelude's class (the same as the npm package's).
const LOGSYNC_MODULE: &str =
    "export const Rejection = globalThis[Symbol.for('logsync.Rejection')];\n";

/// The only specifier a reducer module may import.
const LOGSYNC: &str = "logsync";

/// Resolves `logsync` to the built-in module and refuses every other
/// import: a reducer module is one file.
struct OnlyLogsync;

impl rquickjs::loader::Resolver for OnlyLogsync {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
    ) -> rquickjs::Result<String> {
        if name == LOGSYNC {
            return Ok(LOGSYNC.to_string());
        }
        Err(rquickjs::Error::new_resolving_message(
            base,
            name,
            format!(
                "a reducer module on the server is one file: it may import only '{LOGSYNC}' \
                 (for `Rejection`), not {name:?}"
            ),
        ))
    }
}

impl rquickjs::loader::Loader for OnlyLogsync {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
    ) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
        if name != LOGSYNC {
            return Err(rquickjs::Error::new_loading_message(
                name,
                "only 'logsync' can be imported",
            ));
        }
        Module::declare(ctx.clone(), LOGSYNC, LOGSYNC_MODULE)
    }
}

/// The QuickJS engine of one module. The mutex serialises calls (the
/// store's single writer is the only caller on the append path).
struct Engine {
    // Field order: the context goes before the runtime. The harness is
    // the context's userdata (a JavaScript value cannot leave the engine's
    // thread-bound handles otherwise).
    context: Context,
    runtime: Runtime,
    next_key: u64,
}

/// The deadline the interrupt handler checks, in CPU time of the thread
/// that runs the engine (nanoseconds of it; 0 for none). CPU time, not
/// wall-clock time: on a machine whose cores are busy with other work the
/// engine's thread waits for a CPU, and a wall-clock deadline would stop,
/// and so refuse for good, an intent whose reducer is fast. It is set and
/// read on the one thread that runs the call (the interrupt handler runs
/// inside it).
struct Deadline {
    at: AtomicU64,
    fired: AtomicBool,
}

/// CPU time the calling thread has used, in nanoseconds.
fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

impl Deadline {
    fn new() -> Deadline {
        Deadline {
            at: AtomicU64::new(0),
            fired: AtomicBool::new(false),
        }
    }

    fn set(&self, after: Duration) {
        let after = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
        self.fired.store(false, Ordering::Relaxed);
        self.at.store(
            thread_cpu_nanos().saturating_add(after).max(1),
            Ordering::Relaxed,
        );
    }

    fn clear(&self) -> bool {
        self.at.store(0, Ordering::Relaxed);
        self.fired.swap(false, Ordering::Relaxed)
    }

    fn passed(&self) -> bool {
        let at = self.at.load(Ordering::Relaxed);
        let passed = at != 0 && thread_cpu_nanos() >= at;
        if passed {
            self.fired.store(true, Ordering::Relaxed);
        }
        passed
    }
}

/// A reducer exported by an ES module, run in QuickJS.
///
/// The module contract: the reducer is the export named after `#` in the
/// flag (`todos/*=./todos.js#todosReducer`), else the `default` export,
/// else the export named `reducer`; it is called as `reducer(state,
/// action)` with `action` the `JSON.parse` of the event's payload and
/// returns the next state (never `undefined`). The state of a new stream
/// is the export `initialState` (`undefined` when there is none).
pub struct JsReducer {
    path: PathBuf,
    /// The module's `schemaVersion` (1 without one).
    schema_version: u32,
    /// Its `minSchemaVersion`: 1 with an `upcast`, else `schemaVersion`.
    min_schema_version: u32,
    /// Whether it exports `migrate`.
    migrates: bool,
    /// The export named in the rule, if any.
    export: Option<String>,
    engine: Arc<Mutex<Engine>>,
    deadline: Arc<Deadline>,
    limits: JsLimits,
}

impl std::fmt::Debug for JsReducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsReducer")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The text of the pending exception after `e` (its name, message and
/// stack), or `e` itself.
fn describe(ctx: &Ctx<'_>, e: rquickjs::Error) -> String {
    if !e.is_exception() {
        return e.to_string();
    }
    let thrown = ctx.catch();
    match thrown.as_object() {
        Some(o) => {
            let name: Option<String> = o.get("name").ok();
            let message: Option<String> = o.get("message").ok();
            let stack: Option<String> = o.get("stack").ok();
            let mut text = match (name, message) {
                (Some(n), Some(m)) => format!("{n}: {m}"),
                (None, Some(m)) => m,
                _ => "an exception without a message".to_string(),
            };
            if let Some(stack) = stack.filter(|s| !s.trim().is_empty()) {
                text.push_str(" (");
                text.push_str(stack.trim().lines().next().unwrap_or_default().trim());
                text.push(')');
            }
            text
        }
        None => format!("{thrown:?}"),
    }
}

impl JsReducer {
    /// Loads the module at `path` and finds its reducer (the export
    /// `export`, else `default`, else `reducer`).
    pub fn load(
        path: &Path,
        export: Option<&str>,
        limits: JsLimits,
    ) -> Result<JsReducer, LoadError> {
        let fail = |reason: String| LoadError {
            path: path.to_path_buf(),
            reason,
        };
        let source = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("the file could not be read: {e}")))?;
        let runtime = Runtime::new().map_err(|e| fail(format!("QuickJS did not start: {e}")))?;
        runtime.set_memory_limit(limits.memory_bytes);
        runtime.set_max_stack_size(512 << 10);
        runtime.set_loader(OnlyLogsync, OnlyLogsync);
        let deadline = Arc::new(Deadline::new());
        let watch = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || watch.passed())));
        let context =
            Context::full(&runtime).map_err(|e| fail(format!("QuickJS did not start: {e}")))?;
        let name = path.display().to_string();
        deadline.set(limits.load_timeout);
        let loaded = context.with(|ctx| -> Result<(u32, u32, bool), String> {
            let factory: Function = ctx
                .eval(PRELUDE)
                .map_err(|e| format!("the prelude failed: {}", describe(&ctx, e)))?;
            let declared = Module::declare(ctx.clone(), name.clone(), source)
                .map_err(|e| describe(&ctx, e))?;
            let (module, promise) = declared.eval().map_err(|e| describe(&ctx, e))?;
            promise.finish::<()>().map_err(|e| describe(&ctx, e))?;
            let ns = module.namespace().map_err(|e| describe(&ctx, e))?;
            let names: Vec<String> = ns.keys::<String>().filter_map(Result::ok).collect();
            let candidates: Vec<&str> = match export {
                Some(e) => vec![e],
                None => vec!["default", "reducer"],
            };
            let mut reducer = None;
            for c in &candidates {
                let v: Value = ns.get(*c).map_err(|e| describe(&ctx, e))?;
                if v.is_function() {
                    reducer = Some(v);
                    break;
                }
            }
            let Some(reducer) = reducer else {
                return Err(format!(
                    "no reducer function exported as {} (the module exports: {}); export the reducer \
                     as `export default`, as `export function reducer`, or name the export after `#` \
                     in the flag (`pattern=file.js#name`)",
                    candidates
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    if names.is_empty() {
                        "nothing".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            };
            let initial: Value = ns.get("initialState").map_err(|e| describe(&ctx, e))?;
            let views: Value = ns.get("views").map_err(|e| describe(&ctx, e))?;
            let upcast: Value = ns.get("upcast").map_err(|e| describe(&ctx, e))?;
            let migrate: Value = ns.get("migrate").map_err(|e| describe(&ctx, e))?;
            let versions = schema_exports(
                &ns.get::<_, Value>("schemaVersion")
                    .map_err(|e| describe(&ctx, e))?,
                &ns.get::<_, Value>("minSchemaVersion")
                    .map_err(|e| describe(&ctx, e))?,
                &upcast,
                &migrate,
            )?;
            let harness: Object = factory
                .call((
                    reducer,
                    initial,
                    views,
                    upcast,
                    migrate,
                    versions.0 as f64,
                    versions.1 as f64,
                ))
                .map_err(|e| describe(&ctx, e))?;
            ctx.store_userdata(harness)
                .map_err(|e| format!("the engine kept no harness: {e}"))?;
            Ok(versions)
        });
        if deadline.clear() {
            return Err(fail(format!(
                "the module's top level used more than {:?} of CPU time and was stopped",
                limits.load_timeout
            )));
        }
        let (schema_version, min_schema_version, migrates) = loaded.map_err(fail)?;
        Ok(JsReducer {
            path: path.to_path_buf(),
            schema_version,
            min_schema_version,
            migrates,
            export: export.map(str::to_string),
            engine: Arc::new(Mutex::new(Engine {
                context,
                runtime,
                next_key: 0,
            })),
            deadline,
            limits,
        })
    }

    /// How many streams' states the engine holds (a dropped [`JsState`]
    /// deletes its own).
    pub fn states_held(&self) -> Result<usize, Refusal> {
        let engine = self.engine.lock().map_err(|_| self.engine_failed())?;
        match call(&engine, &self.deadline, None, "size", 0.0, None)? {
            Answer::Text(t) => t.parse().map_err(|_| self.engine_failed()),
            Answer::Done => Err(self.engine_failed()),
        }
    }

    fn engine_failed(&self) -> Refusal {
        Refusal {
            code: ErrorCode::Reducer,
            message: "the reducer's engine is unusable (a call panicked)".into(),
        }
    }
}

impl StreamReducer for JsReducer {
    fn describe(&self) -> String {
        format!("JavaScript module {}", self.path.display())
    }

    fn schema_version(&self) -> u32 {
        self.schema_version
    }

    fn min_schema_version(&self) -> u32 {
        self.min_schema_version
    }

    fn migrate(&self, json: &str, from: u32) -> Option<Result<Box<dyn StreamState>, Refusal>> {
        if !self.migrates {
            return None;
        }
        Some(self.started_with("migrate", json, Some(from)))
    }

    /// The module loaded again into an engine of its own (same memory
    /// limit, `call_timeout` per call).
    fn for_views(
        &self,
        call_timeout: Duration,
    ) -> Result<Option<Arc<dyn StreamReducer>>, LoadError> {
        let limits = JsLimits {
            call_timeout,
            ..self.limits
        };
        let again = JsReducer::load(&self.path, self.export.as_deref(), limits)?;
        Ok(Some(Arc::new(again)))
    }

    fn start(&self) -> Result<Box<dyn StreamState>, Refusal> {
        let mut engine = self.engine.lock().map_err(|_| self.engine_failed())?;
        engine.next_key += 1;
        let key = engine.next_key as f64;
        call(
            &engine,
            &self.deadline,
            Some(self.limits.call_timeout),
            "start",
            key,
            None,
        )?;
        Ok(Box::new(JsState {
            key,
            engine: self.engine.clone(),
            deadline: self.deadline.clone(),
            limits: self.limits,
        }))
    }

    fn restore(&self, json: &str) -> Result<Box<dyn StreamState>, Refusal> {
        self.started_with("restore", json, None)
    }
}

impl JsReducer {
    /// A new state from `json` through the harness's `method` (`restore`,
    /// or `migrate` from schema version `from`).
    fn started_with(
        &self,
        method: &str,
        json: &str,
        from: Option<u32>,
    ) -> Result<Box<dyn StreamState>, Refusal> {
        let mut engine = self.engine.lock().map_err(|_| self.engine_failed())?;
        engine.next_key += 1;
        let key = engine.next_key as f64;
        // Made before the call, so a refused restore drops its key.
        let state = JsState {
            key,
            engine: self.engine.clone(),
            deadline: self.deadline.clone(),
            limits: self.limits,
        };
        let restored = match from {
            None => call(
                &engine,
                &self.deadline,
                Some(self.limits.call_timeout),
                method,
                key,
                Some(json),
            ),
            Some(from) => call_with(
                &engine,
                &self.deadline,
                Some(self.limits.call_timeout),
                method,
                key,
                Some(json),
                Some(Extra::From(from)),
            ),
        };
        // The lock goes first: dropping a refused state takes it again.
        drop(engine);
        restored?;
        Ok(Box::new(state))
    }
}

/// What a harness call answered: nothing (done), a refusal, or text.
enum Answer {
    Done,
    Text(String),
}

/// An event's meta as the harness's `fold` takes it: offset, client id
/// (hex), subject, seq, time, seen, schema.
type MetaArgs = (
    Option<f64>,
    String,
    Option<String>,
    Option<f64>,
    f64,
    f64,
    u32,
);

/// What a harness call takes after its text: an event's meta (`fold`),
/// or the schema version a snapshot was made under (`migrate`).
enum Extra {
    Meta(MetaArgs),
    From(u32),
}

/// The module's schema exports, checked: `(schemaVersion,
/// minSchemaVersion, whether it exports migrate)`.
fn schema_exports<'js>(
    version: &Value<'js>,
    min: &Value<'js>,
    upcast: &Value<'js>,
    migrate: &Value<'js>,
) -> Result<(u32, u32, bool), String> {
    let integer = |v: &Value<'_>, name: &str| -> Result<Option<u32>, String> {
        if v.is_undefined() {
            return Ok(None);
        }
        let n = v
            .as_int()
            .map(f64::from)
            .or_else(|| v.as_float())
            .ok_or_else(|| {
                format!("`{name}` must be an integer of 1 or more (it is not a number)")
            })?;
        if n.fract() != 0.0 || !(1.0..=f64::from(u32::MAX)).contains(&n) {
            return Err(format!(
                "`{name}` must be an integer of 1 or more (it is {n})"
            ));
        }
        Ok(Some(n as u32))
    };
    for (v, name) in [(upcast, "upcast"), (migrate, "migrate")] {
        if !v.is_undefined() && !v.is_function() {
            return Err(format!("`{name}` must be a function"));
        }
    }
    let version = integer(version, "schemaVersion")?.unwrap_or(1);
    let min = match integer(min, "minSchemaVersion")? {
        Some(min) => min,
        None if upcast.is_function() => 1,
        None => version,
    };
    if min > version {
        return Err(format!(
            "`minSchemaVersion` ({min}) is above `schemaVersion` ({version})"
        ));
    }
    if min < version && !upcast.is_function() {
        return Err(format!(
            "`minSchemaVersion` ({min}) is below `schemaVersion` ({version}) but the module exports no \
             `upcast(action, fromVersion)` to bring older actions to version {version}"
        ));
    }
    Ok((version, min, migrate.is_function()))
}

/// The `meta` object a JS reducer receives: the same on every device.
fn meta_object<'js>(ctx: &Ctx<'js>, m: MetaArgs) -> rquickjs::Result<Object<'js>> {
    let null = || Value::new_null(ctx.clone());
    let num = |v: Option<f64>| v.map_or_else(null, |n| Value::new_float(ctx.clone(), n));
    let o = Object::new(ctx.clone())?;
    o.set("offset", num(m.0))?;
    o.set("clientId", m.1)?;
    match m.2 {
        Some(subject) => o.set("subject", subject)?,
        None => o.set("subject", null())?,
    }
    o.set("seq", num(m.3))?;
    o.set("time", m.4)?;
    o.set("seen", m.5)?;
    o.set("schema", m.6)?;
    Ok(o)
}

fn meta_args(meta: &Meta<'_>) -> MetaArgs {
    (
        meta.offset.map(|o| o.0 as f64),
        meta.client_id.to_hex(),
        meta.subject.map(str::to_owned),
        meta.seq.map(|s| s.get() as f64),
        meta.time_ms as f64,
        meta.seen.0 as f64,
        meta.schema,
    )
}

/// Calls the harness method `method` with `key` (and `payload`, and an
/// event's `meta`) under the deadline; a stop or an engine failure is a
/// `REDUCER` refusal.
fn call(
    engine: &Engine,
    deadline: &Deadline,
    timeout: Option<Duration>,
    method: &str,
    key: f64,
    payload: Option<&str>,
) -> Result<Answer, Refusal> {
    call_with(engine, deadline, timeout, method, key, payload, None)
}

/// [`call`] with an event's meta after the payload.
fn call_with(
    engine: &Engine,
    deadline: &Deadline,
    timeout: Option<Duration>,
    method: &str,
    key: f64,
    payload: Option<&str>,
    extra: Option<Extra>,
) -> Result<Answer, Refusal> {
    let reducer_failed = |message: String| Refusal {
        code: ErrorCode::Reducer,
        message,
    };
    if let Some(timeout) = timeout {
        deadline.set(timeout);
    }
    let result = engine.context.with(|ctx| -> Result<Answer, Refusal> {
        let harness: Object = ctx
            .userdata::<Object>()
            .map(|h| h.clone())
            .ok_or_else(|| reducer_failed("the engine lost its harness".into()))?;
        let f: Function = harness
            .get(method)
            .map_err(|e| reducer_failed(describe(&ctx, e)))?;
        let answer: Value = match (payload, extra) {
            (Some(p), Some(Extra::Meta(m))) => {
                let meta = meta_object(&ctx, m).map_err(|e| reducer_failed(describe(&ctx, e)))?;
                f.call((key, p, meta))
            }
            (Some(p), Some(Extra::From(from))) => f.call((key, p, from)),
            (Some(p), None) => f.call((key, p)),
            (None, _) => f.call((key,)),
        }
        .map_err(|e| reducer_failed(describe(&ctx, e)))?;
        if let Some(s) = answer.as_string() {
            return s
                .to_string()
                .map(Answer::Text)
                .map_err(|e| reducer_failed(e.to_string()));
        }
        if let Some(a) = answer.as_array() {
            let code: String = a.get(0).map_err(|e| reducer_failed(describe(&ctx, e)))?;
            let message: String = a.get(1).map_err(|e| reducer_failed(describe(&ctx, e)))?;
            let code = match code.as_str() {
                "REJECTED" => ErrorCode::Rejected,
                "NOT_FOUND" => ErrorCode::NotFound,
                _ => ErrorCode::Reducer,
            };
            return Err(Refusal { code, message });
        }
        Ok(Answer::Done)
    });
    if deadline.clear() {
        // Let the engine reclaim what the stopped call allocated.
        engine.runtime.run_gc();
        return Err(reducer_failed(format!(
            "the reducer used more than {:?} of CPU time and was stopped",
            timeout.unwrap_or_default()
        )));
    }
    if matches!(&result, Err(r) if r.code == ErrorCode::Reducer) {
        engine.runtime.run_gc();
    }
    result
}

/// One stream's state, a value inside the engine.
pub struct JsState {
    key: f64,
    engine: Arc<Mutex<Engine>>,
    deadline: Arc<Deadline>,
    limits: JsLimits,
}

impl JsState {
    fn with<T>(&self, f: impl FnOnce(&Engine) -> Result<T, Refusal>) -> Result<T, Refusal> {
        let engine = self.engine.lock().map_err(|_| Refusal {
            code: ErrorCode::Reducer,
            message: "the reducer's engine is unusable (a call panicked)".into(),
        })?;
        f(&engine)
    }
}

impl StreamState for JsState {
    fn fold(&mut self, payload: &[u8], meta: &Meta<'_>) -> Result<(), Refusal> {
        let text = std::str::from_utf8(payload).map_err(|e| Refusal {
            code: ErrorCode::Reducer,
            message: format!("the payload is not UTF-8 text: {e}"),
        })?;
        let meta = meta_args(meta);
        self.with(|engine| {
            call_with(
                engine,
                &self.deadline,
                Some(self.limits.call_timeout),
                "fold",
                self.key,
                Some(text),
                Some(Extra::Meta(meta)),
            )?;
            // No deadline: keeping the state is one `Map.set` of a key
            // that exists (no allocation), and it must not be cut short.
            call(engine, &self.deadline, None, "commit", self.key, None).map(|_| ())
        })
    }

    fn view(&self, name: &str, params: &str) -> Result<String, Refusal> {
        self.view_of(name, params)
    }

    fn to_json(&self) -> Result<String, Refusal> {
        self.with(|engine| {
            match call(
                engine,
                &self.deadline,
                Some(self.limits.call_timeout),
                "state",
                self.key,
                None,
            )? {
                Answer::Text(t) => Ok(t),
                Answer::Done => Err(Refusal {
                    code: ErrorCode::Reducer,
                    message: "the state could not be written as JSON".into(),
                }),
            }
        })
    }
}

impl JsState {
    /// The view `name` of this state with `params` (JSON text).
    fn view_of(&self, name: &str, params: &str) -> Result<String, Refusal> {
        let query = format!(
            "[{},{params}]",
            serde_json::to_string(name).unwrap_or_else(|_| "\"\"".into())
        );
        self.with(|engine| {
            match call(
                engine,
                &self.deadline,
                Some(self.limits.call_timeout),
                "view",
                self.key,
                Some(&query),
            )? {
                Answer::Text(t) => Ok(t),
                Answer::Done => Err(Refusal {
                    code: ErrorCode::Reducer,
                    message: format!("the view {name} gave no answer"),
                }),
            }
        })
    }
}

impl Drop for JsState {
    fn drop(&mut self) {
        if let Ok(engine) = self.engine.lock() {
            let _ = call(
                &engine,
                &self.deadline,
                Some(self.limits.call_timeout),
                "drop",
                self.key,
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    use crate::fold::TEST_META as META;

    /// Writes `source` to a module file in `dir`.
    fn module(dir: &tempfile::TempDir, name: &str, source: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, source).expect("write module");
        path
    }

    const SEATS: &str = r#"
        export const initialState = { seats: {} };
        export default function seats(state, action) {
          if (action.type === 'book') {
            if (state.seats[action.seat]) {
              const e = new Error(`seat ${action.seat} is taken`);
              e.code = 'SEAT_TAKEN';
              throw e;
            }
            return { seats: { ...state.seats, [action.seat]: action.who } };
          }
          if (action.type === 'plain') throw new Error('no reason');
          if (action.type === 'lower') { const e = new Error('bad code'); e.code = 'lower'; throw e; }
          if (action.type === 'random') return { ...state, r: Math.random() };
          if (action.type === 'now') return { ...state, t: Date.now() };
          if (action.type === 'date') return { ...state, d: new Date().toISOString() };
          if (action.type === 'datefixed') return { ...state, d: new Date(0).toISOString() };
          if (action.type === 'perf') return { ...state, p: performance.now() };
          if (action.type === 'timer') { setTimeout(() => {}, 1); return state; }
          if (action.type === 'weakref') return { ...state, w: new WeakRef(state).deref() === state };
          if (action.type === 'finreg') { new FinalizationRegistry(() => {}); return state; }
          if (action.type === 'atomics') return { ...state, a: Atomics.load(new Int32Array(1), 0) };
          if (action.type === 'sab') return { ...state, b: new SharedArrayBuffer(8).byteLength };
          if (action.type === 'loop') { for (;;) {} }
          if (action.type === 'hog') { const a = []; for (;;) a.push(new Array(100000).fill(1)); }
          if (action.type === 'undefined') return undefined;
          if (action.type === 'deep') { const f = (n) => f(n + 1) + 1; return f(0); }
          return state;
        }
    "#;

    fn limits() -> JsLimits {
        JsLimits {
            call_timeout: Duration::from_millis(200),
            load_timeout: Duration::from_secs(2),
            memory_bytes: 32 << 20,
        }
    }

    fn seats(dir: &tempfile::TempDir) -> JsReducer {
        JsReducer::load(&module(dir, "seats.js", SEATS), None, limits()).expect("load")
    }

    fn json(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn folds_and_keeps_state_per_stream() {
        let dir = tempfile::tempdir().expect("dir");
        let r = seats(&dir);
        let mut a = r.start().expect("start");
        let mut b = r.start().expect("start");
        a.fold(
            &json(serde_json::json!({"type": "book", "seat": "1A", "who": "ann"})),
            &META,
        )
        .expect("fold");
        assert_eq!(a.to_json().expect("json"), r#"{"seats":{"1A":"ann"}}"#);
        assert_eq!(b.to_json().expect("json"), r#"{"seats":{}}"#);
        b.fold(
            &json(serde_json::json!({"type": "book", "seat": "1A", "who": "bob"})),
            &META,
        )
        .expect("another stream's seat is free");
        assert_eq!(r.states_held().expect("size"), 2);
        // A state dropped on the Rust side leaves the engine too.
        drop(a);
        assert_eq!(r.states_held().expect("size"), 1);
        assert_eq!(b.to_json().expect("json"), r#"{"seats":{"1A":"bob"}}"#);
    }

    #[test]
    fn a_throw_refuses_with_the_app_code_and_keeps_the_state() {
        let dir = tempfile::tempdir().expect("dir");
        let r = seats(&dir);
        let mut s = r.start().expect("start");
        let book = json(serde_json::json!({"type": "book", "seat": "1A", "who": "ann"}));
        s.fold(&book, &META).expect("first");
        assert_eq!(
            s.fold(&book, &META),
            Err(Refusal {
                code: ErrorCode::Rejected,
                message: "SEAT_TAKEN: seat 1A is taken".into()
            })
        );
        assert_eq!(
            s.fold(&json(serde_json::json!({"type": "plain"})), &META),
            Err(Refusal {
                code: ErrorCode::Rejected,
                message: "no reason".into()
            })
        );
        // A code that is not SCREAMING_SNAKE is not an app code.
        assert_eq!(
            s.fold(&json(serde_json::json!({"type": "lower"})), &META),
            Err(Refusal {
                code: ErrorCode::Rejected,
                message: "bad code".into()
            })
        );
        let r2 = s.fold(b"not json", &META).expect_err("not JSON");
        assert_eq!(r2.code, ErrorCode::Reducer, "{r2:?}");
        for kind in ["undefined", "deep"] {
            let r3 = s
                .fold(&json(serde_json::json!({ "type": kind })), &META)
                .expect_err(kind);
            assert_eq!(r3.code, ErrorCode::Reducer, "{kind}: {r3:?}");
        }
        assert_eq!(s.to_json().expect("json"), r#"{"seats":{"1A":"ann"}}"#);
    }

    const REJECTING: &str = r#"
        import { Rejection } from 'logsync';
        export const initialState = { seats: {} };
        export default function seats(state, action) {
          if (action.type === 'book') {
            if (state.seats[action.seat]) throw new Rejection('SEAT_TAKEN', `seat ${action.seat} is taken`);
            return { seats: { ...state.seats, [action.seat]: action.who } };
          }
          if (action.type === 'check') {
            const r = new Rejection('X', 'y');
            if (!(r instanceof Error) || r.name !== 'Rejection' || r.code !== 'X' || r.message !== 'y') {
              throw new Error(`not an Error with code and message: ${r.name} ${r.code} ${r.message}`);
            }
            return state;
          }
          if (action.type === 'bad') throw new Rejection(action.code, 'bad code');
          return state;
        }
    "#;

    #[test]
    fn a_thrown_rejection_of_the_logsync_module_is_the_app_code() {
        let dir = tempfile::tempdir().expect("dir");
        let r = JsReducer::load(&module(&dir, "rejecting.js", REJECTING), None, limits())
            .expect("a module importing 'logsync' loads");
        let mut s = r.start().expect("start");
        let book = json(serde_json::json!({"type": "book", "seat": "4A", "who": "ann"}));
        s.fold(&book, &META).expect("first");
        assert_eq!(
            s.fold(&book, &META),
            Err(Refusal {
                code: ErrorCode::Rejected,
                message: "SEAT_TAKEN: seat 4A is taken".into()
            })
        );
        s.fold(&json(serde_json::json!({"type": "check"})), &META)
            .expect("a Rejection is an Error with its code and message");
        assert_eq!(s.to_json().expect("json"), r#"{"seats":{"4A":"ann"}}"#);
    }

    #[test]
    fn a_rejection_with_a_bad_code_is_a_reducer_failure() {
        let dir = tempfile::tempdir().expect("dir");
        let r = JsReducer::load(&module(&dir, "rejecting.js", REJECTING), None, limits())
            .expect("load");
        let mut s = r.start().expect("start");
        let long = "A".repeat(65);
        for code in [
            serde_json::json!("seat_taken"),
            serde_json::json!(""),
            serde_json::json!("SEAT TAKEN"),
            serde_json::json!(long),
            serde_json::json!(42),
            serde_json::Value::Null,
        ] {
            let refusal = s
                .fold(
                    &json(serde_json::json!({"type": "bad", "code": code})),
                    &META,
                )
                .expect_err("a bad code");
            assert_eq!(refusal.code, ErrorCode::Reducer, "{code}: {refusal:?}");
            assert!(
                refusal.message.contains("Rejection whose code")
                    && refusal.message.contains("bad code"),
                "{code}: {refusal:?}"
            );
        }
        // 64 characters is the longest code.
        let longest = "B".repeat(64);
        assert_eq!(
            s.fold(
                &json(serde_json::json!({"type": "bad", "code": longest})),
                &META
            ),
            Err(Refusal {
                code: ErrorCode::Rejected,
                message: format!("{longest}: bad code")
            })
        );
        assert_eq!(s.to_json().expect("json"), r#"{"seats":{}}"#);
    }

    #[test]
    fn non_deterministic_globals_throw_naming_what_was_touched() {
        let dir = tempfile::tempdir().expect("dir");
        let r = seats(&dir);
        let mut s = r.start().expect("start");
        for (kind, name) in [
            ("random", "Math.random"),
            ("now", "Date.now"),
            ("date", "new Date() without arguments"),
            ("perf", "performance"),
            ("timer", "setTimeout"),
            ("weakref", "WeakRef"),
            ("finreg", "FinalizationRegistry"),
            ("atomics", "Atomics"),
            ("sab", "SharedArrayBuffer"),
        ] {
            let refusal = s
                .fold(&json(serde_json::json!({ "type": kind })), &META)
                .expect_err(kind);
            assert_eq!(refusal.code, ErrorCode::Reducer, "{kind}: {refusal:?}");
            assert!(
                refusal
                    .message
                    .contains(&format!("{name} is not available to a reducer")),
                "{kind}: {refusal:?}"
            );
        }
        // A date from the action's data is fine.
        s.fold(&json(serde_json::json!({"type": "datefixed"})), &META)
            .expect("new Date(0)");
        assert!(s
            .to_json()
            .expect("json")
            .contains("1970-01-01T00:00:00.000Z"));
    }

    #[test]
    fn a_deadline_counts_the_calls_cpu_time_not_its_wait_for_a_cpu() {
        let d = Deadline::new();
        d.set(Duration::from_millis(20));
        // A thread waiting (asleep here, as it is while other work holds
        // the CPU) uses none of its time.
        std::thread::sleep(Duration::from_millis(60));
        assert!(!d.passed(), "stopped for time spent waiting for a CPU");
        // Working uses it up.
        let started = Instant::now();
        let mut spins = 0u64;
        while !d.passed() {
            spins = std::hint::black_box(spins + 1);
            assert!(started.elapsed() < Duration::from_secs(10), "never passed");
        }
        assert!(d.clear(), "the deadline fired");
    }

    #[test]
    fn an_endless_loop_is_stopped_and_the_engine_goes_on() {
        let dir = tempfile::tempdir().expect("dir");
        let r = seats(&dir);
        let mut s = r.start().expect("start");
        let started = Instant::now();
        let refusal = s
            .fold(&json(serde_json::json!({"type": "loop"})), &META)
            .expect_err("loop");
        assert_eq!(refusal.code, ErrorCode::Reducer, "{refusal:?}");
        assert!(refusal.message.contains("was stopped"), "{refusal:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        s.fold(
            &json(serde_json::json!({"type": "book", "seat": "2B", "who": "c"})),
            &META,
        )
        .expect("the engine still folds");
        assert_eq!(s.to_json().expect("json"), r#"{"seats":{"2B":"c"}}"#);
    }

    #[test]
    fn a_memory_hog_is_stopped_and_the_engine_goes_on() {
        let dir = tempfile::tempdir().expect("dir");
        let r = JsReducer::load(
            &module(&dir, "seats.js", SEATS),
            None,
            JsLimits {
                // Long enough that the memory limit, not the deadline, stops it.
                call_timeout: Duration::from_secs(20),
                ..limits()
            },
        )
        .expect("load");
        let mut s = r.start().expect("start");
        let refusal = s
            .fold(&json(serde_json::json!({"type": "hog"})), &META)
            .expect_err("hog");
        assert_eq!(refusal.code, ErrorCode::Reducer, "{refusal:?}");
        assert!(refusal.message.contains("out of memory"), "{refusal:?}");
        s.fold(
            &json(serde_json::json!({"type": "book", "seat": "3C", "who": "d"})),
            &META,
        )
        .expect("the engine still folds");
        assert_eq!(s.to_json().expect("json"), r#"{"seats":{"3C":"d"}}"#);
    }

    #[test]
    fn modules_that_fail_to_load_say_which_and_why() {
        let dir = tempfile::tempdir().expect("dir");
        let cases = [
            (
                "syntax.js",
                "export default function (s, a) { return s +; }",
                "SyntaxError",
            ),
            (
                "throws.js",
                "throw new Error('boom at load');",
                "boom at load",
            ),
            (
                "none.js",
                "export const initialState = 1;",
                "no reducer function exported",
            ),
            (
                "random.js",
                "const r = Math.random(); export default (s) => s;",
                "Math.random",
            ),
            (
                "loops.js",
                "for (;;) {} export default (s) => s;",
                "was stopped",
            ),
            (
                "imports.js",
                "import x from './missing.js'; export default x;",
                "may import only 'logsync'",
            ),
            (
                "imports_bare.js",
                "import { x } from 'lodash'; export default (s) => s;",
                "lodash",
            ),
            (
                "imports_nothing.js",
                "import { Nope } from 'logsync'; export default (s) => s;",
                "Nope",
            ),
        ];
        for (name, source, want) in cases {
            let path = module(&dir, name, source);
            let e = JsReducer::load(&path, None, limits()).expect_err(name);
            assert_eq!(e.path, path);
            assert!(e.reason.contains(want), "{name}: {e}");
            assert!(e.to_string().contains(name), "{name}: {e}");
        }
        let e = JsReducer::load(&dir.path().join("absent.js"), None, limits()).expect_err("absent");
        assert!(e.reason.contains("could not be read"), "{e}");
    }

    #[test]
    fn the_todo_example_loads_by_its_export_name() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/todo-react/src/todos.js");
        let r = JsReducer::load(&path, None, limits()).expect("load");
        let mut s = r.start().expect("start");
        s.fold(
            &json(serde_json::json!({"type": "todo/added", "id": "a", "text": " milk "})),
            &META,
        )
        .expect("fold");
        assert_eq!(
            s.to_json().expect("json"),
            r#"{"todos":[{"id":"a","text":"milk","completed":false}]}"#
        );
        let named = JsReducer::load(&path, Some("todosReducer"), limits()).expect("load by name");
        named.start().expect("start");
        let e = JsReducer::load(&path, Some("nope"), limits()).expect_err("no such export");
        assert!(e.reason.contains("todosReducer"), "lists the exports: {e}");
    }

    /// A version-2 module: `upcast` brings a version-1 action up (and
    /// sees its version), the reducer gets `meta.schema` (the version the
    /// action was made under), `migrate` turns a version-1 state; a
    /// throwing upcast is the reducer's failure for that event only.
    #[test]
    fn upcast_migrate_and_meta_schema() {
        let dir = tempfile::tempdir().expect("dir");
        let path = module(
            &dir,
            "v2.js",
            r#"
            export const schemaVersion = 2;
            export const initialState = [];
            export function upcast(action, from) {
              if (action.bad) throw new Error('cannot upcast');
              return { title: action.text, from };
            }
            export function migrate(state, from) { return state.map((t) => ({ title: t, migratedFrom: from })); }
            export default (state, action, meta) => [...state, { ...action, schema: meta.schema }];
            "#,
        );
        let r = JsReducer::load(&path, None, limits()).expect("load");
        assert_eq!((r.schema_version(), r.min_schema_version()), (2, 1));
        let mut s = r.start().expect("start");
        let v1 = Meta { schema: 1, ..META };
        let v2 = Meta { schema: 2, ..META };
        s.fold(&json(serde_json::json!({"text": "a"})), &v1)
            .expect("upcast");
        s.fold(&json(serde_json::json!({"title": "b"})), &v2)
            .expect("fold");
        let refused = s
            .fold(&json(serde_json::json!({"bad": true})), &v1)
            .expect_err("a throwing upcast");
        assert_eq!(refused.code, ErrorCode::Reducer);
        assert!(
            refused.message.contains("cannot upcast"),
            "{}",
            refused.message
        );
        let too_new = s
            .fold(
                &json(serde_json::json!({"title": "c"})),
                &Meta { schema: 3, ..META },
            )
            .expect_err("too new");
        assert_eq!(too_new.code, ErrorCode::Reducer);
        assert_eq!(
            s.to_json().expect("json"),
            r#"[{"title":"a","from":1,"schema":1},{"title":"b","schema":2}]"#
        );
        let migrated = r
            .migrate(r#"["x"]"#, 1)
            .expect("the module migrates")
            .expect("migrated");
        assert_eq!(
            migrated.to_json().expect("json"),
            r#"[{"title":"x","migratedFrom":1}]"#
        );
        // Without the exports: version 1, nothing to migrate.
        let plain = JsReducer::load(
            &module(&dir, "v1.js", "export default (s, a) => a;"),
            None,
            limits(),
        )
        .expect("load");
        assert_eq!((plain.schema_version(), plain.min_schema_version()), (1, 1));
        assert!(plain.migrate("1", 1).is_none());
    }
}
