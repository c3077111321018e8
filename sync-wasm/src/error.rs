//! The browser SDK's one error type, and the one conversion that turns it
//! into a JS `Error` (`name = "LogsyncError"`, `code`, the cause in the
//! message).

use sync_core::{CoreError, ErrorCode};
use wasm_bindgen::JsValue;

/// Everything that can go wrong in the browser SDK. Each variant has a
/// stable [`ErrorCode`] (see [`WasmError::code`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    /// An error of the core (decoding a frame, an offset gap, a reducer
    /// failure, a bad stream name…).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The server answered with an error or refused an intent.
    #[error("server: {message}")]
    Server {
        /// The server's code.
        code: ErrorCode,
        /// The server's words.
        message: String,
    },
    /// IndexedDB failed (not available, a transaction aborted, a value that
    /// cannot be stored).
    #[error("IndexedDB: {0}")]
    Storage(String),
    /// A record read from IndexedDB does not have the shape this build
    /// writes.
    #[error("IndexedDB record {key} is unreadable: {reason}")]
    Corrupt {
        /// Which record (store and key).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The browser refused a write: the origin's storage quota is used up.
    #[error("IndexedDB quota exceeded (free some space; the write is retried): {0}")]
    Quota(String),
    /// A call with a wrong argument, or at a moment it is not allowed.
    #[error("{0}")]
    InvalidRequest(String),
    /// An action that `JSON.stringify` cannot serialise.
    #[error("the action is not JSON-serialisable: {0}")]
    NotJson(String),
    /// An action whose JSON text is over what the server accepts.
    #[error("the action's JSON is {len} bytes; the limit is {limit}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// A connection attempt failed (the message says to what, what the
    /// browser said, and the likely fix).
    #[error("{0}")]
    ConnectFailed(String),
    /// An invariant did not hold (a bug in Logsync).
    #[error("internal error: {0}")]
    Internal(String),
}

impl WasmError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            WasmError::Core(e) => e.code(),
            WasmError::Server { code, .. } => *code,
            WasmError::Storage(_) | WasmError::Corrupt { .. } => ErrorCode::Storage,
            WasmError::Quota(_) => ErrorCode::QuotaExceeded,
            WasmError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            WasmError::NotJson(_) => ErrorCode::InvalidJson,
            WasmError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            WasmError::Closed => ErrorCode::StoreClosed,
            WasmError::ConnectFailed(_) => ErrorCode::ConnectFailed,
            WasmError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// A storage error from a value IndexedDB threw or rejected with: a
    /// `QuotaExceededError` (an exception of that name) becomes
    /// [`WasmError::Quota`] with its message, anything else
    /// [`WasmError::Storage`] with its description ([`describe_js`]).
    pub fn from_storage(context: &str, cause: &JsValue) -> Self {
        let text = describe_js(cause);
        if cause.is_object() && text.starts_with("QuotaExceededError: ") {
            return WasmError::Quota(format!("{context}: {}", &text[20..]));
        }
        WasmError::Storage(format!("{context}: {text}"))
    }

    /// This error as a JS `Error` with `name = "LogsyncError"` and `code`.
    /// The one conversion at the JS boundary. The message never repeats
    /// the code (it is in `code`), and it is the same text that
    /// `status.lastError.message` shows.
    pub fn to_js(&self) -> JsValue {
        crate::page::logsync_error(&self.to_string(), self.code().as_str())
    }
}

impl From<WasmError> for JsValue {
    fn from(e: WasmError) -> JsValue {
        e.to_js()
    }
}

/// A readable text for any thrown JS value: `Name: message` for errors and
/// DOM exceptions, the text of strings, and a note for anything else.
pub fn describe_js(value: &JsValue) -> String {
    crate::page::describe(value)
}
