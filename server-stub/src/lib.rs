//! Logsync's companion server (filled in by its own issue).
