// ErrorCode and ERROR_CODES are generated from sync-core's ErrorCode.
import type { ErrorCode } from './error-codes.js';

export type { ErrorCode } from './error-codes.js';
export { ERROR_CODES } from './error-codes.js';

/**
 * An error with a stable code to switch on. `err instanceof LogsyncError`
 * holds for every error Logsync throws or reports, including those made
 * inside the wasm module.
 */
export declare class LogsyncError extends Error {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown });
  readonly name: 'LogsyncError';
  readonly code: ErrorCode;
}

/** Whether `value` is an error Logsync made. */
export declare function isLogsyncError(value: unknown): value is LogsyncError;

/**
 * The app's refusal of an action, thrown by a reducer:
 * `throw new Rejection('SEAT_TAKEN', 'seat 4A is taken')`. On the server
 * (`import { Rejection } from 'logsync'` in a reducer module run by
 * logsync-server) it refuses the intent as `REJECTED` with the message
 * `CODE: message`; the code must be 1 to 64 characters of A-Z, 0-9 and _.
 */
export declare class Rejection extends Error {
  constructor(code: string, message?: string);
  readonly name: 'Rejection';
  readonly code: string;
}
