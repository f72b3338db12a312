//! The only formatting code: tables, JSON Lines and reports, written to `&mut dyn Write`.
//!
//! Renderers take library results and an output stream; they never read files or decide exit
//! codes. Untrusted bytes (payloads, names, paths) are escaped before they reach a terminal.

pub mod diff;
pub mod follow;
mod machine;
pub mod replay;

use std::borrow::Cow;

pub mod inspect;
mod jsonl;
pub mod repair;
pub mod report;

/// Escapes a string for a terminal: control characters (C0, DEL, C1), and the line and paragraph
/// separators become `\n`, `\t`, `\u{..}`-style escapes, and backslashes are doubled, so a value can
/// neither move the cursor nor be confused with an escape. Everything else is kept.
pub fn escape_terminal(s: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() || c == '\\' || c == '\u{2028}' || c == '\u{2029}';
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `s` escaped for the terminal ([`escape_terminal`]) when it is at most `max` characters long,
/// else `Err` with its first `max` characters, for the caller to mark as cut.
pub fn escape_clipped(s: &str, max: usize) -> Result<String, String> {
    let e = escape_terminal(s);
    if e.chars().count() <= max {
        return Ok(e.into_owned());
    }
    Err(e.chars().take(max).collect())
}

/// Escapes bytes for a terminal: invalid UTF-8 bytes become `\xNN`.
pub fn escape_bytes(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => escape_terminal(s),
        Err(_) => {
            let mut out = String::new();
            for chunk in b.utf8_chunks() {
                out.push_str(&escape_terminal(chunk.valid()));
                for x in chunk.invalid() {
                    out.push_str(&format!("\\x{x:02x}"));
                }
            }
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_moves_the_cursor() {
        assert_eq!(escape_terminal("plain é"), "plain é");
        assert_eq!(escape_terminal("a\nb\x1b[2J\\"), "a\\nb\\u{1b}[2J\\\\");
        assert_eq!(escape_terminal("\u{2028}\u{85}"), "\\u{2028}\\u{85}");
        assert_eq!(escape_bytes(b"ok\xff"), "ok\\xff");
    }
}
