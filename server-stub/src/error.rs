//! The server's one error type. Each variant maps to a stable
//! [`ErrorCode`], which is what peers see (in an `Error` frame or an HTTP
//! JSON body); the message keeps the cause for logs.

use sync_core::ErrorCode;

/// Everything that can go wrong in the server itself (bad input from peers
/// is answered with [`ErrorCode`]s directly and never becomes an `Error`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log store failed (disk, SQLite, corrupt rows).
    #[error("storage failed: {0}")]
    Storage(String),
    /// The log store no longer takes work: the server is shutting down.
    #[error("the log store is closed: the server is shutting down")]
    StoreClosed,
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A reducer module could not be loaded (the server does not start).
    #[error(transparent)]
    ReducerLoad(#[from] crate::fold::LoadError),
    /// A stream's reducer failed outside an intent (building or writing
    /// its state).
    #[error("the stream's reducer failed: {0}")]
    Reducer(String),
    /// What was asked of a stream's reducer does not exist (a view it
    /// does not export).
    #[error("{0}")]
    NotFound(String),
    /// The events asked for were compacted away (the message names the
    /// oldest kept).
    #[error("{0}")]
    Compacted(String),
    /// The server has too much of this work waiting (e.g. view
    /// evaluations); retry shortly.
    #[error("{0}")]
    Overloaded(String),
    /// A stream cannot be folded by this node's reducer because of schema
    /// versions: its log holds events of a newer version
    /// (`SCHEMA_TOO_NEW`), or its snapshot is of an older version the
    /// reducer neither migrates nor can rebuild (`SCHEMA_TOO_OLD`).
    #[error("{1}")]
    Schema(ErrorCode, String),
    /// Binding, accepting or serving failed.
    #[error("I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The stable code peers see for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Storage(_) => ErrorCode::Storage,
            Error::StoreClosed => ErrorCode::ShuttingDown,
            Error::Config(_) | Error::ReducerLoad(_) => ErrorCode::InvalidRequest,
            Error::Reducer(_) => ErrorCode::Reducer,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Compacted(_) => ErrorCode::Compacted,
            Error::Overloaded(_) => ErrorCode::RateLimited,
            Error::Schema(code, _) => *code,
            Error::Io(_) => ErrorCode::Internal,
        }
    }
}

impl Error {
    /// What a peer is told: the code and a stable message. Storage and I/O
    /// details (file paths, SQL, PostgreSQL's SQLSTATE text) stay in the
    /// server's log; callers log `self` where they answer with this.
    pub fn to_peer(&self) -> (ErrorCode, String) {
        let message = match self {
            Error::Storage(_) => {
                "the log store failed; nothing of this request was stored, retry later".to_string()
            }
            Error::Io(_) => "the server failed; retry later".to_string(),
            Error::StoreClosed
            | Error::Config(_)
            | Error::ReducerLoad(_)
            | Error::Reducer(_)
            | Error::NotFound(_)
            | Error::Compacted(_)
            | Error::Overloaded(_)
            | Error::Schema(..) => self.to_string(),
        };
        (self.code(), message)
    }
}

impl From<crate::fold::Refusal> for Error {
    fn from(r: crate::fold::Refusal) -> Self {
        match r.code {
            ErrorCode::Storage => Error::Storage(r.message),
            ErrorCode::NotFound => Error::NotFound(r.message),
            ErrorCode::SchemaTooNew | ErrorCode::SchemaTooOld => Error::Schema(r.code, r.message),
            _ => Error::Reducer(r.message),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        // The plain `Display` of a database error says only "db error":
        // keep PostgreSQL's message and SQLSTATE.
        match e.as_db_error() {
            Some(db) => Error::Storage(format!(
                "PostgreSQL: {} ({})",
                db.message(),
                db.code().code()
            )),
            None => Error::Storage(format!("PostgreSQL: {e}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Closed => Error::StoreClosed,
            other => Error::Storage(format!("PostgreSQL connection pool: {other}")),
        }
    }
}
