//! Guest-controlled text made safe for one line of the host's log.
//!
//! A guest chooses its log messages and fields, its stdout and stderr, its
//! task error messages and its panic messages (and, through its code, part
//! of a trap's message). Written into a log as they are, a newline would
//! start a line the host never wrote (`2099-01-01T00:00:00Z ERROR
//! culvert::executor: ...`), a carriage return would overwrite one on a
//! terminal, an escape sequence would drive the terminal, and a bidi
//! override would make a line read differently from what it holds.
//! [`escape`] (or [`Escaped`], its `Display` form) is applied to each such
//! string wherever the host logs or prints one.
//!
//! What is escaped, in the `\u{..}` form of Rust's `escape_debug`:
//! - every control character (Unicode general category Cc: U+0000 to
//!   U+001F and U+007F to U+009F), with `\n`, `\r` and `\t` spelled so;
//! - the line and paragraph separators U+2028 and U+2029;
//! - the bidirectional controls U+061C, U+200E, U+200F, U+202A to U+202E
//!   and U+2066 to U+2069.
//!
//! Everything else, backslashes included, is kept: the result cannot
//! break a line or reorder it, though a literal `\n` typed by the guest
//! reads the same as an escaped newline.
//!
//! Names from package metadata (package, workflow and task names, versions)
//! are validated at registration to printable ASCII without spaces, so the
//! labels built from them need no escaping.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` is escaped by [`escape`].
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every character `needs_escape` picks written as an
/// escape (`\n`, `\r`, `\t`, `\u{1b}`, `\u{202e}`); borrowed when there is
/// none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if text.chars().any(needs_escape) {
        Cow::Owned(Escaped(text).to_string())
    } else {
        Cow::Borrowed(text)
    }
}

/// Formats its text as [`escape`] would, without an intermediate string:
/// `tracing::info!("failed: {}", Escaped(&message))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("a char at a found index");
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// A short, printable rendering of an untrusted string for error messages:
/// control characters escaped, at most 64 characters.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().nth(64).is_some() {
        out.push_str(&format!("… ({} bytes)", s.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_escapes_and_bidi_controls_are_escaped() {
        let forged = "ok\n2099-01-01T00:00:00Z ERROR culvert::executor: FORGED\r\x1b[2J\u{7}";
        assert_eq!(
            escape(forged),
            "ok\\n2099-01-01T00:00:00Z ERROR culvert::executor: FORGED\\r\\u{1b}[2J\\u{7}"
        );
        assert_eq!(
            escape("a\tb\0c\u{7f}d\u{85}e"),
            "a\\tb\\u{0}c\\u{7f}d\\u{85}e"
        );
        assert_eq!(
            escape("x\u{2028}y\u{2029}z\u{202e}evil\u{2066}"),
            "x\\u{2028}y\\u{2029}z\\u{202e}evil\\u{2066}"
        );
        // Nothing to do: borrowed, and non-ASCII text is kept.
        assert!(matches!(escape("héllo wörld \\n"), Cow::Borrowed(_)));
        assert_eq!(escape(""), "");
        assert_eq!(format!("> {}", Escaped("a\nb")), "> a\\nb");
        assert!(!escape(forged).contains(['\n', '\r', '\x1b']));
    }

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable("a\u{1}b"), "a\\u{1}b");
        let long = "x".repeat(100);
        assert!(printable(&long).ends_with("… (100 bytes)"));
    }
}
