//! Go `encoding/json` compatibility: the exact escaping goraft's `json.NewEncoder` writes, and
//! the lenient decoding its `json.NewDecoder(...).Decode(&cmd)` applies to command payloads.
//!
//! No crate reproduces Go here: `serde_json` rejects invalid UTF-8 and lone surrogates that Go
//! turns into U+FFFD, matches keys case-sensitively, and does not escape `<>&` or U+2028. Pure
//! functions over `&[u8]`.

use std::borrow::Cow;
use std::fmt;

/// Why a payload is not what Go would decode into a command struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset within the payload.
    pub offset: usize,
    /// What was expected there.
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at payload offset {}", self.message, self.offset)
    }
}

impl std::error::Error for JsonError {}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string exactly as Go 1.19's encoder writes it (HTML-safe escaping on):
/// `<>&` and U+2028/U+2029 as `\u` escapes, `\n \r \t` short, other control bytes as `\u00xx`,
/// and every byte of invalid UTF-8 as `\ufffd`.
pub fn write_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let mut i = 0;
    let mut start = 0;
    while i < s.len() {
        let b = s[i];
        if b < 0x80 {
            if b >= 0x20 && b != b'"' && b != b'\\' && b != b'<' && b != b'>' && b != b'&' {
                i += 1;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
            }
            i += 1;
            start = i;
            continue;
        }
        match utf8_char_len(&s[i..]) {
            Some(3)
                if s[i] == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9) =>
            {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(if s[i + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                start = i;
            }
            Some(n) => i += n,
            None => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\ufffd");
                i += 1;
                start = i;
            }
        }
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// The length of the valid UTF-8 character at the start of `s`, if there is one.
fn utf8_char_len(s: &[u8]) -> Option<usize> {
    let n = match s[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let chunk = s.get(..n)?;
    std::str::from_utf8(chunk).ok().map(|_| n)
}

/// Replaces invalid UTF-8 the way Go's decoder does: one U+FFFD per invalid byte.
pub fn lossy_go(s: &[u8]) -> String {
    match std::str::from_utf8(s) {
        Ok(v) => v.to_owned(),
        Err(_) => {
            let mut out = String::with_capacity(s.len() + 8);
            let mut i = 0;
            while i < s.len() {
                if s[i] < 0x80 {
                    out.push(s[i] as char);
                    i += 1;
                } else if let Some(n) = utf8_char_len(&s[i..]) {
                    out.push_str(std::str::from_utf8(&s[i..i + n]).unwrap_or("\u{fffd}"));
                    i += n;
                } else {
                    out.push('\u{fffd}');
                    i += 1;
                }
            }
            out
        }
    }
}

/// Maximum nesting Go's decoder accepts.
const MAX_DEPTH: usize = 10_000;

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, JsonError> {
        Err(JsonError {
            offset: self.pos,
            message: message.into(),
        })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<(), JsonError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(format!("expected {what}"))
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(h) = self.s.get(self.pos..self.pos + 4) else {
            return self.err("expected 4 hex digits after \\u");
        };
        let mut v = 0u32;
        for &c in h {
            let d = (c as char).to_digit(16);
            match d {
                Some(d) => v = v * 16 + d,
                None => return self.err("expected 4 hex digits after \\u"),
            }
        }
        self.pos += 4;
        Ok(v)
    }

    /// Parses a string at `"` as Go does (invalid UTF-8 and lone surrogates become U+FFFD):
    /// borrowed from the input when it is plain ASCII without escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        Ok(match self.string_raw()? {
            // Borrowed means plain ASCII without escapes: valid UTF-8 as it is.
            Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).unwrap_or_default()),
            Cow::Owned(v) => Cow::Owned(match String::from_utf8(v) {
                Ok(s) => s,
                Err(e) => lossy_go(e.as_bytes()),
            }),
        })
    }

    /// Parses a string at `"`: borrowed when it is plain ASCII without escapes, else the decoded
    /// bytes (escapes resolved; raw invalid UTF-8 kept for the caller to replace).
    fn string_raw(&mut self) -> Result<Cow<'a, [u8]>, JsonError> {
        self.expect(b'"', "a string")?;
        let start = self.pos;
        // Fast path: plain ASCII without escapes.
        while let Some(&b) = self.s.get(self.pos) {
            if b == b'"' {
                let v = &self.s[start..self.pos];
                self.pos += 1;
                return Ok(Cow::Borrowed(v));
            }
            if b == b'\\' || !(0x20..0x80).contains(&b) {
                break;
            }
            self.pos += 1;
        }
        let mut out: Vec<u8> = self.s[start..self.pos].to_vec();
        loop {
            let Some(b) = self.peek() else {
                return self.err("unterminated string");
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return self.err("unterminated escape");
                    };
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xd800..0xdc00).contains(&hi)
                                && self.s.get(self.pos..self.pos + 2) == Some(b"\\u")
                            {
                                let save = self.pos;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                                        .unwrap_or('\u{fffd}')
                                } else {
                                    // Go emits U+FFFD for the lone high surrogate and re-reads the next escape.
                                    self.pos = save;
                                    '\u{fffd}'
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{fffd}')
                            }
                        }
                        _ => {
                            self.pos -= 1;
                            return self.err("invalid escape character in string");
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return self.err("invalid control character in string"),
                _ => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.s.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.err(format!(
                "invalid literal (expected {})",
                String::from_utf8_lossy(word)
            ))
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
            }
            _ => return self.err("expected a digit"),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.err("expected a digit after the decimal point");
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.err("expected a digit in the exponent");
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
        }
        Ok(())
    }

    /// Skips one JSON value of any kind, without recursion.
    fn skip_value(&mut self) -> Result<(), JsonError> {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        stack.push(b'}');
                        if stack.len() > MAX_DEPTH {
                            return self.err("exceeded max depth");
                        }
                        self.string()?;
                        self.ws();
                        self.expect(b':', "':' after object key")?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        stack.push(b']');
                        if stack.len() > MAX_DEPTH {
                            return self.err("exceeded max depth");
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string_raw()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return self.err("expected a JSON value"),
            }
            // After a complete value: close containers or move to the next element.
            loop {
                let Some(&close) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if close == b'}' {
                            self.ws();
                            self.string_raw()?;
                            self.ws();
                            self.expect(b':', "':' after object key")?;
                        }
                        break;
                    }
                    Some(c) if c == close => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => {
                        return self.err(format!("expected ',' or '{}'", close as char));
                    }
                }
            }
        }
    }
}

/// Decodes `payload` into a struct whose fields are all strings, as Go's
/// `json.NewDecoder(r).Decode(&v)` does: the first JSON value only; `null` leaves every field
/// empty; keys match exactly or else case-insensitively; later duplicates win; `null` values
/// leave a field unchanged; unknown keys are ignored; any other type for a field is an error.
pub fn decode_string_fields<const N: usize>(
    payload: &[u8],
    fields: [&str; N],
) -> Result<[String; N], JsonError> {
    super::payload::decode_str_fields(payload, fields).map(|v| v.map(Cow::into_owned))
}

/// [`decode_string_fields`] without copying: each field borrows from `payload` where its
/// string has no escape, and is decoded into an owned string otherwise. The reference for the
/// fast path in front of it, `format::payload::decode_str_fields`.
///
/// # Errors
/// As [`decode_string_fields`].
pub fn decode_str_fields<'a, const N: usize>(
    payload: &'a [u8],
    fields: [&str; N],
) -> Result<[Cow<'a, str>; N], JsonError> {
    let typed = decode_fields(payload, fields.map(|f| (f, Kind::String)))?;
    Ok(typed.map(|v| match v {
        Some(GoValue::String(s)) => s,
        _ => Cow::Borrowed(""),
    }))
}

/// The Go type of a struct field that [`decode_fields`] decodes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `string`.
    String,
    /// `uint32` (SeaweedFS's `needle.VolumeId`).
    Uint32,
}

/// A field's decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoValue<'a> {
    /// A `string` field.
    String(Cow<'a, str>),
    /// A `uint32` field.
    Uint32(u32),
}

/// Decodes `payload` into a struct of the given fields, as Go's `json.NewDecoder(r).Decode(&v)`
/// does (see [`decode_string_fields`]): a field is `None` when it is absent or `null` (Go leaves
/// it at its zero value). A `uint32` field takes a JSON number that `strconv.ParseUint(s, 10,
/// 32)` accepts; a negative, fractional, exponent or too large number, or a value of another
/// type, is Go's type error, reported after the whole value was read (a syntax error wins).
///
/// # Errors
/// A syntax error, or the first type error.
pub fn decode_fields<'a, const N: usize>(
    payload: &'a [u8],
    fields: [(&str, Kind); N],
) -> Result<[Option<GoValue<'a>>; N], JsonError> {
    let mut out: [Option<GoValue<'a>>; N] = std::array::from_fn(|_| None);
    let mut p = Parser { s: payload, pos: 0 };
    p.ws();
    match p.peek() {
        Some(b'n') => {
            p.literal(b"null")?;
            return Ok(out);
        }
        Some(b'{') => p.pos += 1,
        Some(_) => {
            // Go reports an UnmarshalTypeError after reading the whole value; a syntax error wins.
            p.skip_value()?;
            return Err(JsonError {
                offset: 0,
                message: "expected a JSON object".into(),
            });
        }
        None => return p.err("expected a JSON value (payload is empty)"),
    }
    let mut type_error: Option<JsonError> = None;
    p.ws();
    if p.peek() == Some(b'}') {
        return Ok(out);
    }
    loop {
        p.ws();
        let key = p.string_raw()?;
        p.ws();
        p.expect(b':', "':' after object key")?;
        p.ws();
        let slot = fields
            .iter()
            .position(|(f, _)| f.as_bytes() == &*key)
            .or_else(|| {
                fields
                    .iter()
                    .position(|(f, _)| f.as_bytes().eq_ignore_ascii_case(&key))
            });
        let value_at = p.pos;
        let wrong = |i: usize, what: &str| JsonError {
            offset: value_at,
            message: format!("field {:?} is not {what}", fields[i].0),
        };
        match (slot.map(|i| (i, fields[i].1)), p.peek()) {
            (Some((i, Kind::String)), Some(b'"')) => out[i] = Some(GoValue::String(p.string()?)),
            (Some((i, Kind::Uint32)), Some(b'-' | b'0'..=b'9')) => {
                p.number()?;
                let text = std::str::from_utf8(&payload[value_at..p.pos]).unwrap_or_default();
                match text.parse::<u32>() {
                    Ok(n) => out[i] = Some(GoValue::Uint32(n)),
                    Err(_) => {
                        type_error.get_or_insert(wrong(i, "a uint32"));
                    }
                }
            }
            (Some(_), Some(b'n')) => p.literal(b"null")?,
            (Some((i, kind)), _) => {
                p.skip_value()?;
                let what = match kind {
                    Kind::String => "a string",
                    Kind::Uint32 => "a uint32",
                };
                type_error.get_or_insert(wrong(i, what));
            }
            (None, _) => p.skip_value()?,
        }
        p.ws();
        match p.peek() {
            Some(b',') => p.pos += 1,
            Some(b'}') => break,
            _ => return p.err("expected ',' or '}' in object"),
        }
    }
    match type_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(s: &[u8]) -> String {
        let mut out = Vec::new();
        write_string(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escaping_matches_go_1_19() {
        // Go 1.19's escaping (docs/format.md, 'Command payloads'): a < b > & c 0x01 0x08 0xff " \ TAB U+2028 LF
        let input = b"a<b>&c\x01\x08\xff\"\\\t\xe2\x80\xa8\n";
        assert_eq!(
            enc(input),
            r#""a\u003cb\u003e\u0026c\u0001\u0008\ufffd\"\\\t\u2028\n""#
        );
        assert_eq!(enc("é 日本 🎉".as_bytes()), "\"é 日本 🎉\"");
        assert_eq!(enc(b"\xff\xfe raw"), r#""\ufffd\ufffd raw""#);
        assert_eq!(enc(b"\xe6\x97"), r#""\ufffd\ufffd""#);
        assert_eq!(enc("\u{2029}".as_bytes()), r#""\u2029""#);
        assert_eq!(enc(b"\x1f\x7f"), "\"\\u001f\x7f\"");
    }

    #[test]
    fn decoding_matches_go() {
        let [k, v] =
            decode_string_fields(b"{\"key\":\"foo\",\"value\":\"bar\"}\n", ["key", "value"])
                .unwrap();
        assert_eq!((k.as_str(), v.as_str()), ("foo", "bar"));
        let [k, v] = decode_string_fields(b"null\n", ["key", "value"]).unwrap();
        assert_eq!((k.as_str(), v.as_str()), ("", ""));
        let [k, v] = decode_string_fields(
            br#"{"KEY":"a","Value":null,"x":[1,{"y":2}],"key":"b"}"#,
            ["key", "value"],
        )
        .unwrap();
        assert_eq!((k.as_str(), v.as_str()), ("b", ""));
        let [v] =
            decode_string_fields(br#"{"value":"\ud800x\u00e9\ud83c\udf89"}"#, ["value"]).unwrap();
        assert_eq!(v, "\u{fffd}xé🎉");
        let [v] = decode_string_fields(b"{\"value\":\"\xff\"}", ["value"]).unwrap();
        assert_eq!(v, "\u{fffd}");
        assert!(decode_string_fields(br#"{"value":1}"#, ["value"]).is_err());
        assert!(decode_string_fields(br#"[]"#, ["value"]).is_err());
        assert!(decode_string_fields(br#"{"value":"x""#, ["value"]).is_err());
        assert_eq!(decode_string_fields(b"", ["value"]).unwrap_err().offset, 0);
        // Trailing data after the first value is ignored, as Go's Decoder does.
        assert!(decode_string_fields(b"{}garbage", ["value"]).is_ok());
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_go_lossy(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut payload = b"{\"value\":".to_vec();
            write_string(&bytes, &mut payload);
            payload.extend_from_slice(b"}\n");
            let [v] = decode_string_fields(&payload, ["value"]).unwrap();
            prop_assert_eq!(v, lossy_go(&bytes));
        }

        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_string_fields(&bytes, ["key", "value"]);
        }

        #[test]
        fn valid_utf8_agrees_with_serde(s in "\\PC{0,30}") {
            let mut out = Vec::new();
            write_string(s.as_bytes(), &mut out);
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
