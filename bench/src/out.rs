//! Results: a Markdown row on stdout for people, and (with `--json FILE`)
//! one JSON object per measured run appended to FILE, from which
//! `bench/report.mjs` makes the min/median/max tables.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

/// Where JSON records go.
pub struct Sink {
    file: Option<Mutex<std::fs::File>>,
    path: Option<PathBuf>,
}

impl Sink {
    /// Appends to `path` (created when missing), or nowhere.
    pub fn open(path: Option<PathBuf>) -> Result<Sink, String> {
        let file = match &path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("cannot open {}: {e}", p.display()))?,
            )),
            None => None,
        };
        Ok(Sink { file, path })
    }

    /// Writes one record (a JSON object) as one line.
    pub fn record(&self, value: serde_json::Value) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut line = value.to_string();
        line.push('\n');
        let mut f = file
            .lock()
            .map_err(|_| "results file lock poisoned".to_string())?;
        f.write_all(line.as_bytes()).map_err(|e| {
            format!(
                "cannot write {}: {e}",
                self.path
                    .as_deref()
                    .unwrap_or_else(|| "?".as_ref())
                    .display()
            )
        })
    }
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1u64 << 20) as f64 * 10.0).round() / 10.0
}

/// Rounds to `digits` decimals (for readable JSON).
pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}
