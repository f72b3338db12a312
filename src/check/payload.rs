//! A fast recogniser for the exact command payload bytes goraft writes: `{"key":..,"value":..}\n`
//! (raftd's `write`), `{"name":..,"connectionString":..}\n` (`raft:join`) and `{"name":..}\n`
//! (`raft:leave`), with Go's escaping (see `format::gojson`).
//!
//! It exists so that `verify` can check a million `write` payloads without decoding JSON: a
//! payload it accepts is valid for Go's decoder and byte-for-byte what goraft writes, and it says
//! whether a string holds U+FFFD. Anything it does not accept goes to the slow path
//! (`format::command::decode`). Pure functions over `&[u8]`.

/// What the scan saw in the strings of a canonical payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Canonical {
    /// A `\ufffd` escape: Go's encoder met invalid UTF-8 there (the original bytes are lost).
    pub fffd_escape: bool,
    /// A raw U+FFFD character (`ef bf bd`).
    pub fffd_raw: bool,
}

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
        let key_end = KEY.len() + next_special(rest, 0);
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

/// Whether `s[start..end]` has no byte for which [`special`] holds, looking at 16-byte windows
/// that end at `end` (which must be at least 16, so that a window never starts before 0).
#[inline(always)]
fn plain_before(s: &[u8], start: usize, mut end: usize) -> bool {
    if end < 16 || end > s.len() {
        return s
            .get(start..end)
            .is_some_and(|r| !r.iter().any(|&b| special(b)));
    }
    while end > start {
        let Some(window) = s[end - 16..].first_chunk::<16>() else {
            return false;
        };
        let mut m = mask16(window);
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
            return s[start..end].iter().all(|&b| !special(b));
        }
    }
    true
}

/// Whether byte `b` needs a look inside a string: anything but printable ASCII, and `"`, `\\`,
/// `<`, `>`, `&`. (`"` 0x22 and `&` 0x26 differ only in bit 2, `<` 0x3c and `>` 0x3e in bit 1.)
#[inline(always)]
fn special(b: u8) -> bool {
    (b.wrapping_sub(0x20) >= 0x60) | ((b | 0x04) == 0x26) | ((b | 0x02) == 0x3e) | (b == b'\\')
}

/// Bit `k` of the result is set where [`special`] holds for `c[k]`: one 16-byte vector, five
/// compares and a move-mask (SSE2 on x86_64, through `wide`'s safe wrappers; a portable
/// fallback elsewhere). The same test eight bytes at a time in a general register took about
/// 60 instructions per 16 bytes, a third of `verify`'s instructions on a log of writes.
#[inline(always)]
fn mask16(c: &[u8; 16]) -> u32 {
    use wide::u8x16;
    let x = u8x16::new(*c);
    let splat = u8x16::splat;
    // Printable ASCII: x - 0x20 (wrapping) is at most 0x5f.
    let printable = (x - splat(0x20)).max(splat(0x5f)).simd_eq(splat(0x5f));
    // `"` 0x22 and `&` 0x26 differ only in bit 2, `<` 0x3c and `>` 0x3e in bit 1.
    let marks = (x | splat(0x04)).simd_eq(splat(0x26))
        | (x | splat(0x02)).simd_eq(splat(0x3e))
        | x.simd_eq(splat(b'\\'));
    (marks.to_bitmask() | !printable.to_bitmask()) & 0xffff
}

/// The offset of the first byte at or after `i` for which [`special`] holds, or `s.len()`.
#[inline(always)]
fn next_special(s: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        let m = mask16(chunk);
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
        .and_then(|at| s[at..].first_chunk::<16>())
    {
        let skip = 16 - (s.len() - i);
        let m = mask16(last) >> skip;
        return if m == 0 {
            s.len()
        } else {
            i + m.trailing_zeros() as usize
        };
    }
    s[i..]
        .iter()
        .position(|&b| special(b))
        .map_or(s.len(), |k| i + k)
}

/// The length of a canonical JSON string body at the start of `s` (up to, not including, the
/// closing quote).
#[inline(always)]
fn string_body(s: &[u8], flags: &mut Canonical) -> Option<usize> {
    let mut i = 0;
    let mut non_ascii = false;
    loop {
        i = next_special(s, i);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lane_mask_is_special_byte_by_byte() {
        for b in 0..=255u8 {
            for k in 0..16 {
                let mut c = [b'a'; 16];
                c[k] = b;
                assert_eq!(
                    mask16(&c),
                    u32::from(special(b)) << k,
                    "byte {b:#04x} at {k}"
                );
            }
        }
        assert_eq!(mask16(&[b'"'; 16]), 0xffff);
    }
    use crate::format::command;

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
            assert_eq!(special(b), !PLAIN[b as usize], "byte {b:#x}");
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
                        assert_eq!(next_special(&s, start), want, "{s:?} from {start}");
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
}
