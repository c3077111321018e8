// GENERATED from sync-core's ErrorCode (sync-core/src/error.rs) by sync-core/tests/generated.rs: do not edit. After adding a code there, run `LOGSYNC_BLESS=1 cargo test -p sync-core --test generated`.
/** Every stable error code (see `errorCodes()`). */
export type ErrorCode =
  /** The peer speaks another protocol version. */
  | 'PROTOCOL_VERSION'
  /** A frame or body could not be decoded. */
  | 'MALFORMED_FRAME'
  /** A frame or body is over the size limit. */
  | 'FRAME_TOO_LARGE'
  /** The first frame of a connection was not `Hello`. */
  | 'HELLO_REQUIRED'
  /** A second `Hello` on one connection. */
  | 'UNEXPECTED_HELLO'
  /** A stream name breaks the naming rule. */
  | 'INVALID_STREAM'
  /** A seq is zero or otherwise unusable. */
  | 'INVALID_SEQ'
  /** A client id is not 16 bytes / 32 hex digits. */
  | 'INVALID_CLIENT_ID'
  /** An offset is out of range. */
  | 'INVALID_OFFSET'
  /** JSON that does not parse or has the wrong shape. */
  | 'INVALID_JSON'
  /** A request parameter is missing or wrong. */
  | 'INVALID_REQUEST'
  /** The intent's seq is beyond the next one the server expects. */
  | 'SEQ_GAP'
  /** A payload is over the size limit. */
  | 'PAYLOAD_TOO_LARGE'
  /** No valid credentials. */
  | 'UNAUTHORIZED'
  /** Valid credentials, but not for this stream or client id. */
  | 'FORBIDDEN'
  /** The WebSocket's `Origin` is not allowed. */
  | 'ORIGIN_FORBIDDEN'
  /** Too many intents per second. */
  | 'RATE_LIMITED'
  /** Too many subscriptions on one connection. */
  | 'TOO_MANY_SUBSCRIPTIONS'
  /** Too many connections. */
  | 'TOO_MANY_CONNECTIONS'
  /** Too many bytes queued for a connection that does not read. */
  | 'SLOW_CONSUMER'
  /** The connection was idle or did not answer pings. */
  | 'IDLE_TIMEOUT'
  /** The server is shutting down. */
  | 'SHUTTING_DOWN'
  /** The server's storage failed. */
  | 'STORAGE'
  /** The intent was refused by the application's validation. */
  | 'REJECTED'
  /** A batch of events skips an offset. */
  | 'OFFSET_GAP'
  /** A batch of events repeats an offset already applied. */
  | 'OFFSET_REPEAT'
  /** An event belongs to another stream. */
  | 'WRONG_STREAM'
  /** The reducer threw or could not decode a payload. */
  | 'REDUCER'
  /** The server came back with another log epoch. */
  | 'EPOCH_CHANGED'
  /** No such route or resource. */
  | 'NOT_FOUND'
  /** A bug: an invariant did not hold. */
  | 'INTERNAL'
  /** A code this build does not know (sent by a newer peer). */
  | 'UNKNOWN'
  /** Client storage is full (the browser refused a write for quota). */
  | 'QUOTA_EXCEEDED'
  /** The store was closed; the call cannot complete. */
  | 'STORE_CLOSED'
  /** A connection attempt failed: nothing answered, or something that is not a Logsync WebSocket endpoint did. */
  | 'CONNECT_FAILED'
  /** A push reused a seq that already holds another intent (its payload differs from the one the seq was decided with). The message names the offset of the intent that holds the seq; the pushed intent is refused and nothing is stored. */
  | 'SEQ_REUSED'
  /** The events asked for were compacted away: the stream starts from its snapshot (`GET /v1/streams/{s}/snapshot`), and the message names the oldest event kept. */
  | 'COMPACTED'
  /** This client's fold of the log differs from the server's at the same offset (their state hashes differ): the reducer is not deterministic, or not the server's. The client takes the server's snapshot in place of its confirmed state and re-applies its pending intents on it; the message names the offset. */
  | 'DIVERGED'
  /** An intent was made under a schema version older than the oldest the server's reducer still upcasts (its `minSchemaVersion`): it is refused, for good. The app is older than the server supports and must be reloaded. */
  | 'SCHEMA_TOO_OLD'
  /** Something was made under a schema version newer than this side's reducer knows: a server refuses such an intent without deciding it (a newer node may take it), and a client stops applying such events, keeping its outbox, until the app is reloaded. */
  | 'SCHEMA_TOO_NEW'
  /** A queued intent outlived the time-to-live of its action type: it was withdrawn instead of being sent late. */
  | 'EXPIRED'
  /** An online-only action was dispatched while the store was offline: nothing was queued. */
  | 'OFFLINE';
