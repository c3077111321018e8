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
