//! Peer-controlled text in log lines: control characters (line breaks,
//! terminal escapes) are escaped, so a token's `sub`, a path or an origin
//! cannot forge or hide log lines, and long values are cut.

use std::fmt::Write as _;

/// Longest peer-controlled value written to a log line, in bytes.
const MAX_LOGGED: usize = 256;

/// `s` with control characters and backslashes escaped (`\n`, `\u{1b}`,
/// `\\`), cut to [`MAX_LOGGED`] bytes (`…` marks a cut).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LOGGED) + 8);
    for c in s.chars() {
        if out.len() >= MAX_LOGGED {
            out.push('…');
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "{}", c.escape_default());
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_make_lines() {
        let forged = "alice\n2026-01-01T00:00:00Z  INFO admin logged in\r\x1b[2K";
        let e = escape(forged);
        assert!(!e.contains(['\n', '\r', '\x1b']), "{e}");
        assert!(e.starts_with("alice\\n2026"), "{e}");
        assert_eq!(escape("plain-user_42"), "plain-user_42");
        assert_eq!(escape("a\\nb"), "a\\\\nb");
        let long = "x".repeat(1000);
        assert!(escape(&long).len() <= MAX_LOGGED + '…'.len_utf8());
    }
}
