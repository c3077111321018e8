//! What the property tests share.

/// How many cases a property test runs: `PROPTEST_CASES` when set (CI and
/// long local runs), else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
