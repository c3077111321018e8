/** Every stable error code Logsync uses, in Rust, on the wire, over HTTP and in JS. */
export type ErrorCode =
  | 'PROTOCOL_VERSION'
  | 'MALFORMED_FRAME'
  | 'FRAME_TOO_LARGE'
  | 'HELLO_REQUIRED'
  | 'UNEXPECTED_HELLO'
  | 'INVALID_STREAM'
  | 'INVALID_SEQ'
  | 'INVALID_CLIENT_ID'
  | 'INVALID_OFFSET'
  | 'INVALID_JSON'
  | 'INVALID_REQUEST'
  | 'SEQ_GAP'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'ORIGIN_FORBIDDEN'
  | 'RATE_LIMITED'
  | 'TOO_MANY_SUBSCRIPTIONS'
  | 'TOO_MANY_CONNECTIONS'
  | 'SLOW_CONSUMER'
  | 'IDLE_TIMEOUT'
  | 'SHUTTING_DOWN'
  | 'STORAGE'
  | 'REJECTED'
  | 'OFFSET_GAP'
  | 'OFFSET_REPEAT'
  | 'WRONG_STREAM'
  | 'REDUCER'
  | 'EPOCH_CHANGED'
  | 'NOT_FOUND'
  | 'INTERNAL'
  | 'UNKNOWN'
  | 'QUOTA_EXCEEDED'
  | 'STORE_CLOSED'
  | 'CONNECT_FAILED'
  | 'SEQ_REUSED';

/** Every code, in a fixed order (equal to the wasm module's `errorCodes()`). */
export declare const ERROR_CODES: readonly ErrorCode[];

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
