// Errors of the Logsync JS API. Every error Logsync throws or reports is a
// real `Error` whose `name` is "LogsyncError" and whose `code` is one of
// ERROR_CODES. Errors made inside the wasm module are plain `Error`s with
// that name and code, so `instanceof LogsyncError` checks the shape rather
// than the prototype chain.

// ERROR_CODES is generated from sync-core's ErrorCode (error-codes.js;
// sync-core/tests/generated.rs keeps it equal, and test/error-codes.test.mjs
// checks it against the wasm module's errorCodes()).
import { ERROR_CODES } from './error-codes.js';

export { ERROR_CODES };

const KNOWN = new Set(ERROR_CODES);

/** An error with a stable, switchable `code`. */
export class LogsyncError extends Error {
  /**
   * @param {string} code one of ERROR_CODES (anything else becomes UNKNOWN)
   * @param {string} message what went wrong and, where it helps, how to fix it
   * @param {{ cause?: unknown }} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = 'LogsyncError';
    this.code = KNOWN.has(code) ? code : 'UNKNOWN';
  }

  // Errors built by the wasm module are plain Errors with this name and a
  // code; they count as LogsyncErrors too.
  static [Symbol.hasInstance](value) {
    return isLogsyncError(value);
  }
}

/** Whether `value` is an error Logsync made (here or in the wasm module). */
export function isLogsyncError(value) {
  return (
    value instanceof Error &&
    value.name === 'LogsyncError' &&
    typeof (/** @type {any} */ (value).code) === 'string'
  );
}

/**
 * Turns whatever a lower layer threw into a LogsyncError, keeping the cause.
 * @param {unknown} err
 * @param {string} code the code to use when `err` carries none
 * @param {string} context what was being done, for the message
 */
export function toLogsyncError(err, code, context) {
  if (isLogsyncError(err)) return err;
  const text = err instanceof Error ? err.message : String(err);
  return new LogsyncError(code, `${context}: ${text}`, { cause: err });
}

/** A short description of a value for error messages. */
export function describe(value) {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'function') return `a function${value.name ? ` (${value.name})` : ''}`;
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') {
    const name = Object.getPrototypeOf(value)?.constructor?.name;
    return name && name !== 'Object' ? `an instance of ${name}` : 'an object';
  }
  return `${typeof value} ${String(value)}`;
}

/**
 * The app's refusal of an action, thrown by a reducer:
 * `throw new Rejection('SEAT_TAKEN', 'seat 4A is taken')`. An Error with
 * the app's `code` (1 to 64 characters of A-Z, 0-9 and _) and a message.
 *
 * The same class is what `import { Rejection } from 'logsync'` gives a
 * reducer module run by logsync-server at the ordering point, so one
 * module runs in the browser and on the server. There, a thrown Rejection
 * refuses the intent as `REJECTED` with the message `CODE: message`; one
 * whose code is not of that form is refused as `REDUCER`.
 */
export class Rejection extends Error {
  /**
   * @param {string} code the app's code, e.g. `SEAT_TAKEN`
   * @param {string} [message] why, for people
   */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}
Object.defineProperty(Rejection.prototype, 'name', { value: 'Rejection', writable: true, configurable: true });
