//! CPU time and memory of a process, from `/proc` (Linux).
//!
//! CPU seconds are `utime + stime` of `/proc/<pid>/stat` (every thread of
//! the process), so a reading before and after a run gives the CPU the
//! process spent on it, whatever else shares the machine. Peak memory is
//! `VmHWM` of `/proc/<pid>/status`: the largest resident set since the
//! process started (each measured server is a fresh process).

use std::sync::OnceLock;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`;
/// 100 on every Linux this runs on, asked once in case it is not).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds `pid` has used so far (`"self"` for this
/// process).
pub fn cpu_seconds(pid: &str) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unexpected /proc/<pid>/stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11, 12.
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| format!("no CPU time field {i} in /proc/{pid}/stat"))
    };
    Ok((ticks(11)? + ticks(12)?) / ticks_per_second())
}

/// A `kB` line of `/proc/<pid>/status`, in bytes.
fn status_kb(pid: &str, key: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no {key} line in /proc/{pid}/status"))
}

/// Resident memory now, in bytes.
pub fn rss_bytes(pid: &str) -> Result<u64, String> {
    status_kb(pid, "VmRSS:")
}

/// The largest resident memory since the process started, in bytes.
pub fn peak_rss_bytes(pid: &str) -> Result<u64, String> {
    status_kb(pid, "VmHWM:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let before = cpu_seconds("self").expect("cpu");
        // Burn a little CPU so the counter can move (it need not: ticks
        // are 10 ms), and check the readings are sane.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let after = cpu_seconds("self").expect("cpu");
        assert!(after >= before);
        let rss = rss_bytes("self").expect("rss");
        let peak = peak_rss_bytes("self").expect("peak");
        assert!(rss > 0 && peak >= rss, "rss {rss} peak {peak}");
        assert!(cpu_seconds("0").is_err());
    }
}
