//! raftd's command payloads on the hot paths: one scanner, sixteen bytes at a time, for the
//! JSON strings of `{"key":..,"value":..}` (raftd's `write`), `{"name":..,"connectionString":..}`
//! (`raft:join`) and `{"name":..}` (`raft:leave`), used two ways:
//!
//! - [`canonical`] and [`canonical_write`] (`verify`): whether a payload is byte for byte what
//!   goraft's encoder writes, with Go's escaping (see [`super::gojson`]), without decoding it.
//!   A payload they accept is valid for Go's decoder, and they say whether a string holds U+FFFD.
//! - [`decode_write`], [`decode_write_bytes`] and [`decode_str_fields`] (`replay`, `serve`):
//!   the key and value as Go's lenient decoder gives them, borrowed from the payload when it is
//!   plain ASCII without escapes, else through [`gojson::decode_str_fields`], the reference.
//!
//! Why a fast path in front of the reference decoder: it validates the whole payload as UTF-8
//! before it matches the shape, and that validation was an eighth of a large replay. Here the
//! shape is matched byte for byte against ASCII literals and the strings are scanned sixteen
//! bytes at a time. Property tests tie every fast answer to the reference. Pure.

use std::borrow::Cow;

use super::gojson::{self, JsonError};

/// What the scan saw in the strings of a canonical payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Canonical {
    /// A `\ufffd` escape: Go's encoder met invalid UTF-8 there (the original bytes are lost).
    pub fffd_escape: bool,
    /// A raw U+FFFD character (`ef bf bd`).
    pub fffd_raw: bool,
}

/// Whether `payload` is exactly `{"k1":"..","k2":"..",...}\n` for the given keys, with every
/// string escaped the way Go writes it. `None` means "not canonical": decode it the slow way.
#[inline]
pub fn canonical(payload: &[u8], keys: &[&str]) -> Option<Canonical> {
    let mut flags = Canonical::default();
    let mut p = payload;
    for (i, key) in keys.iter().enumerate() {
        p = p.strip_prefix(if i == 0 { &b"{\""[..] } else { &b",\""[..] })?;
        p = p.strip_prefix(key.as_bytes())?;
        p = p.strip_prefix(&b"\":\""[..])?;
        let n = string_body(p, &mut flags)?;
        p = p.get(n + 1..)?;
    }
    (p == b"}\n").then_some(flags)
}

/// [`canonical`] for raftd's `write` payload, tuned for the common case (plain ASCII key and
/// value): the key's end is found with one 16-byte step and the value, which must end right
/// before the final `"}\n`, is checked backwards from there in 16-byte windows. Anything else
/// (escapes, non-ASCII, another shape) goes through the general scan; the answers are the same
/// as `canonical(payload, &["key", "value"])`.
#[inline]
pub fn canonical_write(payload: &[u8]) -> Option<Canonical> {
    const KEY: &[u8; 8] = b"{\"key\":\"";
    const VALUE: &[u8; 11] = b"\",\"value\":\"";
    let rest = payload.strip_prefix(KEY)?;
    if let Some(value_end) = payload.len().checked_sub(3) {
        let key_end = KEY.len() + next_special::<HTML>(rest, 0);
        let value_start = key_end + VALUE.len();
        if payload[value_end..] == *b"\"}\n"
            && value_start <= value_end
            && payload.get(key_end..).and_then(<[u8]>::first_chunk::<11>) == Some(VALUE)
            && plain_before(payload, value_start, value_end)
        {
            return Some(Canonical::default());
        }
    }
    let mut flags = Canonical::default();
    let n = string_body(rest, &mut flags)?;
    let p = rest.get(n..)?.strip_prefix(VALUE)?;
    let n = string_body(p, &mut flags)?;
    (p.get(n..)? == b"\"}\n").then_some(flags)
}

/// Whether `s[start..end]` has no byte for which [`special`] holds (Go's HTML-safe set), looking at 16-byte windows
/// that end at `end` (which must be at least 16, so that a window never starts before 0).
#[inline(always)]
fn plain_before(s: &[u8], start: usize, mut end: usize) -> bool {
    if end < 16 || end > s.len() {
        return s
            .get(start..end)
            .is_some_and(|r| !r.iter().any(|&b| special::<HTML>(b)));
    }
    while end > start {
        let Some(window) = s[end - 16..].first_chunk::<16>() else {
            return false;
        };
        let mut m = mask16::<HTML>(window);
        // Bytes before `start` belong to the literal `","value":"`.
        let before = (start + 16).saturating_sub(end);
        if before > 0 {
            m = if before >= 16 { 0 } else { m >> before };
        }
        if m != 0 {
            return false;
        }
        end = end.saturating_sub(16);
        if end < 16 && end > start {
            return s[start..end].iter().all(|&b| !special::<HTML>(b));
        }
    }
    true
}

/// The length of a canonical JSON string body at the start of `s` (up to, not including, the
/// closing quote).
#[inline(always)]
fn string_body(s: &[u8], flags: &mut Canonical) -> Option<usize> {
    let mut i = 0;
    let mut non_ascii = false;
    loop {
        i = next_special::<HTML>(s, i);
        match *s.get(i)? {
            b'"' => break,
            b'\\' => match *s.get(i + 1)? {
                // Go >= 1.22 writes \b and \f short; Go 1.19 (goraft's era) as \u0008, \u000c.
                b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f' => i += 2,
                b'u' => {
                    match s.get(i + 2..i + 6)? {
                        b"003c" | b"003e" | b"0026" | b"2028" | b"2029" => {}
                        b"fffd" => flags.fffd_escape = true,
                        // Other control bytes; \n \r \t have short forms and never appear so.
                        [b'0', b'0', hi @ (b'0' | b'1'), lo]
                            if lo.is_ascii_digit() || (b'a'..=b'f').contains(lo) =>
                        {
                            let v = (hi - b'0') * 16
                                + if lo.is_ascii_digit() {
                                    lo - b'0'
                                } else {
                                    lo - b'a' + 10
                                };
                            if matches!(v, 0x09 | 0x0a | 0x0d) {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                    i += 6;
                }
                _ => return None,
            },
            b if b >= 0x80 => {
                non_ascii = true;
                i += 1;
            }
            _ => return None,
        }
    }
    if non_ascii {
        let text = std::str::from_utf8(&s[..i]).ok()?;
        if text.contains(['\u{2028}', '\u{2029}']) {
            return None;
        }
        flags.fffd_raw |= text.contains('\u{fffd}');
    }
    Some(i)
}

/// Decodes a `write` payload into its key and value, as goraft's `json.NewDecoder` does.
///
/// # Errors
/// As [`decode_str_fields`]: the payload is not what Go decodes into a write command.
#[inline]
pub fn decode_write(payload: &[u8]) -> Result<[Cow<'_, str>; 2], JsonError> {
    match write_plain(payload) {
        // ASCII by the scan: the conversions cannot fail, and check only these bytes.
        Some((k, v)) => match (std::str::from_utf8(k), std::str::from_utf8(v)) {
            (Ok(k), Ok(v)) => Ok([Cow::Borrowed(k), Cow::Borrowed(v)]),
            _ => gojson::decode_str_fields(payload, ["key", "value"]),
        },
        None => gojson::decode_str_fields(payload, ["key", "value"]),
    }
}

/// [`decode_write`] as the UTF-8 bytes of the key and value, without converting the fast
/// path's (ASCII) strings to `str`: the bulk write path keeps bytes and converts only the
/// final state's pairs. Why: that conversion, a check of bytes already known to be ASCII, was a
/// twentieth of a large replay. The bytes are always valid UTF-8.
///
/// # Errors
/// As [`decode_write`].
#[inline]
pub fn decode_write_bytes(payload: &[u8]) -> Result<[Cow<'_, [u8]>; 2], JsonError> {
    match write_plain(payload) {
        Some((k, v)) => Ok([Cow::Borrowed(k), Cow::Borrowed(v)]),
        None => gojson::decode_str_fields(payload, ["key", "value"]).map(|kv| {
            kv.map(|s| match s {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            })
        }),
    }
}

/// `s` without its prefix `p`, compared inline as one fixed-size block (a call to `memcmp` per
/// literal cost more, and so did a loop over its bytes: a fifth of the payload's decoding).
#[inline(always)]
fn strip<'a, const N: usize>(s: &'a [u8], p: &[u8; N]) -> Option<&'a [u8]> {
    let (head, rest) = s.split_first_chunk::<N>()?;
    (head == p).then_some(rest)
}

/// A plain string value: the bytes up to the closing quote, none of them special to
/// JSON (so ASCII).
#[inline(always)]
fn plain_string(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = next_special::<JSON>(s, 0);
    if s.get(end) != Some(&b'"') {
        return None;
    }
    Some((s.get(..end)?, s.get(end + 1..)?))
}

/// `{"key":"K","value":"V"}` with an optional trailing newline, K and V plain ASCII without
/// escapes or control bytes: what goraft's encoder writes for such values. `None` for anything
/// else, which the general decoder then handles.
#[inline]
fn write_plain(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = strip(payload, b"{\"key\":\"")?;
    let (key, rest) = plain_string(rest)?;
    let rest = strip(rest, b",\"value\":\"")?;
    let (value, rest) = plain_string(rest)?;
    matches!(rest, b"}" | b"}\n").then_some((key, value))
}

/// The string fields `fields` of `payload`, as Go's decoder gives them: borrowed when the
/// payload is exactly `{"f0":"v0",...}` (optionally with a trailing newline) with plain ASCII
/// strings, else decoded by [`gojson::decode_str_fields`].
///
/// # Errors
/// As [`gojson::decode_str_fields`]: the payload is not what Go decodes into such a struct.
#[inline]
pub fn decode_str_fields<'a, const N: usize>(
    payload: &'a [u8],
    fields: [&str; N],
) -> Result<[Cow<'a, str>; N], JsonError> {
    match plain_fields(payload, fields) {
        Some(out) => Ok(out),
        None => gojson::decode_str_fields(payload, fields),
    }
}

/// The plain shape of [`decode_str_fields`], or `None`.
#[inline]
fn plain_fields<'a, const N: usize>(
    payload: &'a [u8],
    fields: [&str; N],
) -> Option<[Cow<'a, str>; N]> {
    let mut out: [Cow<'a, str>; N] = std::array::from_fn(|_| Cow::Borrowed(""));
    let mut rest = payload.strip_prefix(b"{")?;
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            rest = rest.strip_prefix(b",")?;
        }
        rest = rest.strip_prefix(b"\"")?;
        rest = rest.strip_prefix(f.as_bytes())?;
        rest = rest.strip_prefix(b"\":\"")?;
        let (s, r) = plain_string(rest)?;
        // ASCII by the scan: the conversion checks only these bytes.
        out[i] = Cow::Borrowed(std::str::from_utf8(s).ok()?);
        rest = r;
    }
    matches!(rest, b"}" | b"}\n").then_some(out)
}

/// The byte set of [`special`] and its kin: JSON's own (`"`, `\\`, anything but printable ASCII).
const JSON: bool = false;
/// JSON's set plus `<`, `>` and `&`, which Go's HTML-safe encoder always escapes: a canonical
/// payload never holds them raw.
const HTML: bool = true;

/// Whether byte `b` needs a look inside a string: anything but printable ASCII, `"` and `\\`,
/// and with `HTML_SAFE` also `<`, `>`, `&`. (`"` 0x22 and `&` 0x26 differ only in bit 2, `<` 0x3c
/// and `>` 0x3e in bit 1.) The reference for [`mask16`].
#[inline(always)]
fn special<const HTML_SAFE: bool>(b: u8) -> bool {
    let json = (b.wrapping_sub(0x20) >= 0x60) | (b == b'"') | (b == b'\\');
    json | (HTML_SAFE && (((b | 0x04) == 0x26) | ((b | 0x02) == 0x3e)))
}

/// Bit `k` of the result is set where [`special`] holds for `c[k]`: one 16-byte vector, a few
/// compares and a move-mask (SSE2 on x86_64, through `wide`'s safe wrappers; a portable fallback
/// elsewhere). Why a vector: the same test eight bytes at a time in a general register took
/// about 60 instructions per 16 bytes, a third of `verify`'s instructions on a log of writes, and
/// a third of `replay`'s decoding; a key or value of goraft's payloads is mostly shorter than 32
/// bytes, so it is one or two vectors.
#[inline(always)]
fn mask16<const HTML_SAFE: bool>(c: &[u8; 16]) -> u32 {
    use wide::u8x16;
    let x = u8x16::new(*c);
    let splat = u8x16::splat;
    // Printable ASCII: x - 0x20 (wrapping) is at most 0x5f.
    let printable = (x - splat(0x20)).max(splat(0x5f)).simd_eq(splat(0x5f));
    let mut marks = x.simd_eq(splat(b'"')) | x.simd_eq(splat(b'\\'));
    if HTML_SAFE {
        // `&` 0x26 is `"` with bit 2 set; `<` 0x3c and `>` 0x3e differ only in bit 1.
        marks = marks | x.simd_eq(splat(0x26)) | (x | splat(0x02)).simd_eq(splat(0x3e));
    }
    (marks.to_bitmask() | !printable.to_bitmask()) & 0xffff
}

/// The offset of the first byte at or after `i` for which [`special`] holds, or `s.len()`.
#[inline(always)]
fn next_special<const HTML_SAFE: bool>(s: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        let m = mask16::<HTML_SAFE>(chunk);
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    if i >= s.len() {
        return s.len();
    }
    // Fewer than 16 bytes left: look at the last 16 bytes of `s`, from byte `i` on.
    if let Some(last) = s
        .len()
        .checked_sub(16)
        .and_then(|at| s.get(at..))
        .and_then(<[u8]>::first_chunk::<16>)
    {
        let skip = 16 - (s.len() - i);
        let m = mask16::<HTML_SAFE>(last) >> skip;
        return if m == 0 {
            s.len()
        } else {
            i + m.trailing_zeros() as usize
        };
    }
    s.get(i..)
        .unwrap_or_default()
        .iter()
        .position(|&b| special::<HTML_SAFE>(b))
        .map_or(s.len(), |k| i + k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::command;
    use proptest::prelude::*;
    /// Bytes Go's HTML-safe encoder writes raw inside a string (ASCII only; non-ASCII is checked
    /// separately): 0x20..=0x7f except `"`, `\`, `<`, `>` and `&`. The reference for the SWAR test.
    #[cfg(test)]
    static PLAIN: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0x20;
        while i < 0x80 {
            t[i] = !matches!(i as u8, b'"' | b'\\' | b'<' | b'>' | b'&');
            i += 1;
        }
        t
    };

    /// JSON's scan from the start of `s` (replay's view).
    fn plain_len(s: &[u8]) -> usize {
        next_special::<JSON>(s, 0)
    }

    #[test]
    fn the_lane_mask_is_special_byte_by_byte() {
        for b in 0..=255u8 {
            for k in 0..16 {
                let mut c = [b'a'; 16];
                c[k] = b;
                let at = format!("byte {b:#04x} at {k}");
                assert_eq!(
                    mask16::<HTML>(&c),
                    u32::from(special::<HTML>(b)) << k,
                    "{at}"
                );
                assert_eq!(
                    mask16::<JSON>(&c),
                    u32::from(special::<JSON>(b)) << k,
                    "{at}"
                );
            }
            // JSON's set is HTML's but for `<`, `>` and `&`.
            let html_only = matches!(b, b'<' | b'>' | b'&');
            assert_eq!(
                special::<JSON>(b),
                special::<HTML>(b) && !html_only,
                "{b:#04x}"
            );
        }
        assert_eq!(mask16::<HTML>(&[b'"'; 16]), 0xffff);
        assert_eq!(mask16::<JSON>(&[b'<'; 16]), 0);
    }

    const WRITE: &[&str] = &["key", "value"];

    #[test]
    fn accepts_exactly_what_goraft_writes() {
        let cases: &[&[u8]] = &[
            b"foo",
            b"",
            b"a<b>&c\x01\x08\xff\"\\\t\xe2\x80\xa8\n",
            "é ü 日本 \u{7f}".as_bytes(),
            b"\xef\xbf\xbd",
        ];
        for value in cases {
            let payload = command::encode_write(b"k", value);
            assert!(
                canonical(&payload, WRITE).is_some(),
                "{:?}",
                String::from_utf8_lossy(&payload)
            );
        }
        let join = command::encode_join("2832bfa", "http://localhost:4001");
        assert_eq!(
            canonical(&join, &["name", "connectionString"]),
            Some(Canonical::default())
        );
        assert!(canonical(&command::encode_leave("x"), &["name"]).is_some());
    }

    #[test]
    fn tells_the_two_kinds_of_replacement_char_apart() {
        let lossy = command::encode_write(b"k", b"a\xffb");
        assert_eq!(
            canonical(&lossy, WRITE),
            Some(Canonical {
                fffd_escape: true,
                fffd_raw: false
            })
        );
        let raw = command::encode_write(b"k", "a\u{fffd}".as_bytes());
        assert_eq!(
            canonical(&raw, WRITE),
            Some(Canonical {
                fffd_escape: false,
                fffd_raw: true
            })
        );
        // An escaped backslash followed by "ufffd" is not U+FFFD.
        let p = b"{\"key\":\"k\",\"value\":\"\\\\ufffd\"}\n";
        assert_eq!(canonical(p, WRITE), Some(Canonical::default()));
    }

    #[test]
    fn the_vector_scan_finds_exactly_the_first_special_byte() {
        for b in 0..=255u8 {
            assert_eq!(special::<HTML>(b), !PLAIN[b as usize], "byte {b:#x}");
        }
        // Every byte value at every position of strings of 1..40 bytes, from every start.
        for len in 1..40usize {
            for pos in 0..len {
                for b in [
                    0x00, 0x1f, 0x20, b'"', b'&', b'<', b'>', b'\\', 0x7f, 0x80, 0xff,
                ] {
                    let mut s = vec![b'a'; len];
                    s[pos] = b;
                    for start in 0..=len {
                        let want = (start..len).find(|&k| !PLAIN[s[k] as usize]).unwrap_or(len);
                        assert_eq!(next_special::<HTML>(&s, start), want, "{s:?} from {start}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_write_shortcut_agrees_with_the_general_form_on_every_byte() {
        // Every byte value of interest at every position of payloads of several shapes.
        let shapes = [
            ("k", ""),
            ("ekey0000123", "v0150123-xxxxxxx"),
            ("", "v"),
            (
                "key-of-20-characters",
                "a value that is longer than 32 bytes",
            ),
        ];
        for (k, v) in shapes {
            let base = command::encode_write(k.as_bytes(), v.as_bytes());
            for pos in 0..base.len() {
                for b in [
                    0x00, b'\n', b' ', b'"', b'&', b'<', b'\\', b'a', b'}', b',', b':', 0x7f, 0x80,
                    0xef,
                ] {
                    let mut p = base.clone();
                    p[pos] = b;
                    assert_eq!(
                        canonical_write(&p),
                        canonical(&p, WRITE),
                        "{:?}",
                        String::from_utf8_lossy(&p)
                    );
                }
            }
        }
    }

    #[test]
    fn the_write_shortcut_agrees_with_the_general_form() {
        let values: [&[u8]; 4] = [
            b"v0150123-xxxxxxx",
            b"",
            b"a\"b\\c<>&\x01\xff\xe2\x80\xa8",
            "\u{fffd}".as_bytes(),
        ];
        for value in values {
            let p = command::encode_write(b"ekey0000123", value);
            assert_eq!(canonical_write(&p), canonical(&p, WRITE));
            assert!(canonical_write(&p).is_some());
            for cut in 0..p.len() {
                assert_eq!(canonical_write(&p[..cut]), None);
                assert_eq!(canonical(&p[..cut], WRITE), None);
            }
        }
    }

    #[test]
    fn rejects_what_goraft_never_writes() {
        for payload in [
            &br#"{"key":"k","value":"v"}"#[..],         // no newline
            br#"{"key":"k","value":"v"}  "#,            // trailing bytes
            b"{\"key\":\"k\",\"value\":\"v\"}\x00",     // NUL instead of the newline
            b"{\"key\": \"k\",\"value\":\"v\"}\n",      // space
            b"{\"value\":\"v\",\"key\":\"k\"}\n",       // key order
            b"{\"key\":\"k\",\"value\":\"\\/\"}\n",     // \/ escape
            b"{\"key\":\"k\",\"value\":\"\\u0041\"}\n", // needless escape
            b"{\"key\":\"k\",\"value\":\"\\u000a\"}\n", // \n has a short form
            b"{\"key\":\"k\",\"value\":\"\\u003C\"}\n", // uppercase hex
            b"{\"key\":\"k\",\"value\":\"<\"}\n",       // raw <
            b"{\"key\":\"k\",\"value\":\"a\x01\"}\n",   // raw control byte
            b"{\"key\":\"k\",\"value\":\"\xff\"}\n",    // raw invalid UTF-8
            "{\"key\":\"k\",\"value\":\"\u{2028}\"}\n".as_bytes(), // raw U+2028
            b"{\"key\":\"k\",\"value\":\"v",            // cut
            b"null\n",
        ] {
            assert_eq!(
                canonical(payload, WRITE),
                None,
                "{:?}",
                String::from_utf8_lossy(payload)
            );
            assert_eq!(canonical_write(payload), None);
        }
    }

    fn slow(p: &[u8]) -> Result<[Cow<'_, str>; 2], JsonError> {
        gojson::decode_str_fields(p, ["key", "value"])
    }

    /// The general decoder's answer as `decode_write_bytes` gives it.
    fn as_bytes(r: Result<[Cow<'_, str>; 2], JsonError>) -> Result<[Cow<'_, [u8]>; 2], JsonError> {
        r.map(|kv| kv.map(|s| Cow::Owned(s.into_owned().into_bytes())))
    }

    #[test]
    fn plain_len_examples() {
        assert_eq!(plain_len(b""), 0);
        assert_eq!(plain_len(b"abcdefghijklmnop"), 16);
        assert_eq!(plain_len(b"abcdefg\"ijklmnop"), 7);
        assert_eq!(plain_len(b"abcdefgh\\"), 8);
        assert_eq!(plain_len(b"abcdefgh\x1f\x1f"), 8);
        assert_eq!(plain_len(b"ab\x7f\x80defghijk"), 3);
        assert_eq!(plain_len("abc\u{e9}".as_bytes()), 3);
        // A zero byte then borrow-prone bytes inside one word: the first special byte counts.
        assert_eq!(plain_len(b"!!\x00!\"!!!!!!"), 2);
    }

    proptest! {
        /// Every length around the vector's 16 bytes, one special byte anywhere or none.
        #[test]
        fn plain_len_finds_a_lone_special_byte_at_any_place(
            len in 0usize..50,
            at in proptest::option::of(0usize..50),
            special_byte in prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x7fu8..=0xff],
            plain in 0x20u8..0x7f,
        ) {
            let plain = if plain == b'"' || plain == b'\\' { b'a' } else { plain };
            let mut s = vec![plain; len];
            if let Some(at) = at.filter(|&at| at < len) {
                s[at] = special_byte;
            }
            let want = s.iter().position(|&b| special::<JSON>(b)).unwrap_or(len);
            prop_assert_eq!(plain_len(&s), want);
        }
    }

    #[test]
    fn write_fast_path_takes_goraft_bytes_and_leaves_the_rest() {
        let p = b"{\"key\":\"mkey0000001\",\"value\":\"v0750001-xxxxxxx\"}\n";
        assert_eq!(
            write_plain(p),
            Some((&b"mkey0000001"[..], &b"v0750001-xxxxxxx"[..]))
        );
        assert_eq!(
            write_plain(&p[..p.len() - 1]).map(|kv| kv.0),
            Some(&b"mkey0000001"[..])
        );
        assert_eq!(
            write_plain(b"{\"key\":\"\",\"value\":\"\"}"),
            Some((&b""[..], &b""[..]))
        );
        for other in [
            &b"{\"key\":\"a\\\"b\",\"value\":\"v\"}\n"[..], // an escape
            b"{\"key\":\"k\",\"value\":\"\xff\"}\n",        // invalid UTF-8
            "{\"key\":\"k\",\"value\":\"\u{e9}\"}".as_bytes(), // non-ASCII
            b"{\"key\":\"k\",\"value\":\"v\",\"key\":\"z\"}\n", // a duplicated key
            b"{\"value\":\"v\",\"key\":\"k\"}\n",           // another order
            b"{\"key\":\"k\",\"value\":\"v\"}\n\n",         // trailing bytes
            b"{\"KEY\":\"k\",\"value\":\"v\"}",             // case-folded name
            b"null\n",
        ] {
            assert_eq!(
                write_plain(other),
                None,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        // Through the general decoder: the duplicate wins, invalid bytes become U+FFFD.
        let [k, _] = decode_write(b"{\"key\":\"k\",\"value\":\"v\",\"key\":\"z\"}\n").unwrap();
        assert_eq!(k, "z");
        let [_, v] = decode_write(b"{\"key\":\"k\",\"value\":\"\xff\"}\n").unwrap();
        assert_eq!(v, "\u{fffd}");
        assert!(decode_write(b"{\"key\":1}\n").is_err());
    }

    proptest! {
        #[test]
        fn plain_len_finds_the_first_special_byte(
            s in proptest::collection::vec(
                prop_oneof![0x20u8..0x80, any::<u8>(), Just(b'"'), Just(b'\\'), Just(0x1f), Just(0x7f), Just(0x80)],
                0..40)) {
            let want = s.iter().position(|&b| special::<JSON>(b)).unwrap_or(s.len());
            prop_assert_eq!(plain_len(&s), want);
        }

        #[test]
        fn decode_write_agrees_with_the_general_decoder(
            k in proptest::collection::vec(
                prop_oneof![0x20u8..0x80, any::<u8>(), Just(b'"'), Just(b'\\'), Just(b'u')], 0..14),
            v in proptest::collection::vec(
                prop_oneof![0x20u8..0x80, any::<u8>(), Just(b'"'), Just(b'\\'), Just(0xe2)], 0..14),
            dup: bool, tail in 0usize..4) {
            // Raw bytes between the quotes: escapes, quotes, control bytes, non-ASCII and
            // invalid UTF-8 all reach the fast path's scan.
            let mut p = b"{\"key\":\"".to_vec();
            p.extend_from_slice(&k);
            p.extend_from_slice(b"\",\"value\":\"");
            p.extend_from_slice(&v);
            p.extend_from_slice(b"\"");
            if dup {
                p.extend_from_slice(b",\"key\":\"z\"");
            }
            p.extend_from_slice([&b"}\n"[..], b"}", b"} ", b"}\n\n"][tail]);
            if let Some((fk, fv)) = write_plain(&p) {
                let [sk, sv] = slow(&p).unwrap();
                prop_assert_eq!((fk, fv), (sk.as_bytes(), sv.as_bytes()));
            }
            prop_assert_eq!(decode_write(&p), slow(&p));
            prop_assert_eq!(decode_write_bytes(&p), as_bytes(slow(&p)));
        }

        #[test]
        fn goraft_encoded_writes_agree(
            k in "\\PC{0,12}", v in proptest::collection::vec(any::<u8>(), 0..12), nl: bool) {
            let mut p = crate::format::command::encode_write(k.as_bytes(), &v);
            if !nl { p.pop(); }
            prop_assert_eq!(decode_write(&p), slow(&p));
            prop_assert_eq!(decode_write_bytes(&p), as_bytes(slow(&p)));
        }

        #[test]
        fn arbitrary_payloads_agree(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode_write(&bytes), slow(&bytes));
            prop_assert_eq!(decode_write_bytes(&bytes), as_bytes(slow(&bytes)));
        }
    }

    /// A payload of the given fields with raw bytes between the quotes, as the fast paths meet
    /// them: escapes, quotes, `<>&`, control bytes, non-ASCII and invalid UTF-8.
    fn raw_payload(fields: &[&str], values: &[Vec<u8>], tail: &[u8]) -> Vec<u8> {
        let mut p = b"{".to_vec();
        for (i, (f, v)) in fields.iter().zip(values).enumerate() {
            if i > 0 {
                p.push(b',');
            }
            p.extend_from_slice(format!("\"{f}\":\"").as_bytes());
            p.extend_from_slice(v);
            p.push(b'"');
        }
        p.extend_from_slice(tail);
        p
    }

    fn string_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                0x20u8..0x80,
                any::<u8>(),
                Just(b'"'),
                Just(b'\\'),
                Just(b'u'),
                Just(b'<'),
                Just(0xef),
                Just(0xbf),
                Just(0xbd),
            ],
            0..24,
        )
    }

    proptest! {
        /// The general fast path gives the reference decoder's answer for every command shape.
        #[test]
        fn decode_str_fields_agrees_with_the_reference(
            a in string_bytes(), b in string_bytes(), encoded: bool,
            tail in prop_oneof![Just(&b"}\n"[..]), Just(&b"}"[..]), Just(&b"} "[..])]) {
            let (join, write) = if encoded {
                (command::encode_join(&String::from_utf8_lossy(&a), &String::from_utf8_lossy(&b)),
                 command::encode_write(&a, &b))
            } else {
                (raw_payload(&["name", "connectionString"], &[a.clone(), b.clone()], tail),
                 raw_payload(&["key", "value"], &[a.clone(), b.clone()], tail))
            };
            let leave = raw_payload(&["name"], std::slice::from_ref(&a), tail);
            let join_fields = ["name", "connectionString"];
            prop_assert_eq!(decode_str_fields(&join, join_fields), gojson::decode_str_fields(&join, join_fields));
            prop_assert_eq!(decode_str_fields(&leave, ["name"]), gojson::decode_str_fields(&leave, ["name"]));
            prop_assert_eq!(decode_str_fields(&write, ["key", "value"]), slow(&write));
            prop_assert_eq!(decode_write(&write), slow(&write));
        }

        /// What `verify`'s scan takes for canonical is what Go's decoder reads, and its U+FFFD
        /// flags say whether the decoded strings hold U+FFFD.
        #[test]
        fn a_canonical_payload_is_one_the_reference_decodes(
            k in string_bytes(), v in string_bytes(), encoded: bool) {
            let p = if encoded {
                command::encode_write(&k, &v)
            } else {
                raw_payload(WRITE, &[k, v], b"}\n")
            };
            let scanned = canonical(&p, WRITE);
            prop_assert_eq!(canonical_write(&p), scanned);
            if encoded {
                prop_assert!(scanned.is_some());
            }
            if let Some(flags) = scanned {
                let [k, v] = slow(&p).unwrap();
                let fffd = k.contains('\u{fffd}') || v.contains('\u{fffd}');
                prop_assert_eq!(fffd, flags.fffd_escape || flags.fffd_raw);
            }
        }
    }
}
