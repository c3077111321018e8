//! Logsync's browser SDK (filled in by its own issue).
