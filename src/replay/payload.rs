//! The `write` payload as replay decodes it: the exact bytes goraft writes for plain values on a
//! fast path, anything else through Go's lenient decoder ([`decode_str_fields`]), with the same
//! result either way.
//!
//! Why a second fast path in front of the decoder's own: the decoder validates the whole payload
//! as UTF-8 before it matches the shape, and that validation was an eighth of a large replay.
//! Here the shape is matched byte for byte against ASCII literals and the values are scanned
//! sixteen bytes at a time; [`decode_write_bytes`] hands the (ASCII) values over as bytes,
//! without a second check. Pure.

use std::borrow::Cow;

use crate::format::gojson::{decode_str_fields, JsonError};

/// Decodes a `write` payload into its key and value, as goraft's `json.NewDecoder` does.
///
/// # Errors
/// As [`decode_str_fields`]: the payload is not what Go decodes into a write command.
#[inline]
pub fn decode_write(payload: &[u8]) -> Result<[Cow<'_, str>; 2], JsonError> {
    match canonical(payload) {
        // ASCII by the scan: the conversions cannot fail, and check only these bytes.
        Some((k, v)) => match (std::str::from_utf8(k), std::str::from_utf8(v)) {
            (Ok(k), Ok(v)) => Ok([Cow::Borrowed(k), Cow::Borrowed(v)]),
            _ => decode_str_fields(payload, ["key", "value"]),
        },
        None => decode_str_fields(payload, ["key", "value"]),
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
    match canonical(payload) {
        Some((k, v)) => Ok([Cow::Borrowed(k), Cow::Borrowed(v)]),
        None => decode_str_fields(payload, ["key", "value"]).map(|kv| {
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

/// A plain string value: the bytes up to the closing quote, none of them [`special`] (so
/// ASCII).
#[inline(always)]
fn plain_string(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = plain_len(s);
    if s.get(end) != Some(&b'"') {
        return None;
    }
    Some((s.get(..end)?, s.get(end + 1..)?))
}

/// `{"key":"K","value":"V"}` with an optional trailing newline, K and V plain ASCII without
/// escapes or control bytes: what goraft's encoder writes for such values. `None` for anything
/// else, which the general decoder then handles.
#[inline]
fn canonical(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = strip(payload, b"{\"key\":\"")?;
    let (key, rest) = plain_string(rest)?;
    let rest = strip(rest, b",\"value\":\"")?;
    let (value, rest) = plain_string(rest)?;
    matches!(rest, b"}" | b"}\n").then_some((key, value))
}

/// Whether a string byte ends the fast path: `"`, `\`, a control byte or a non-ASCII byte.
#[inline(always)]
fn special(b: u8) -> bool {
    b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b)
}

/// The length of the prefix of `s` with no [`special`] byte, sixteen bytes at a time.
///
/// Why one vector of 16 (`wide`'s safe SSE2 wrappers): a key or value of goraft's payloads is
/// mostly shorter than 32 bytes, so it is one or two vectors; eight bytes at a time in a general
/// register, with the bytes after the last word one by one, was a third of the reading
/// thread's decoding.
#[inline]
fn plain_len(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        let m = mask16(chunk);
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    // Fewer than 16 bytes left: the last 16 bytes of `s` when it has them, those before `i`
    // masked out (they were plain); else one by one.
    if let Some(last) = s
        .len()
        .checked_sub(16)
        .and_then(|at| s.get(at..))
        .and_then(<[u8]>::first_chunk::<16>)
    {
        let skip = 16 - (s.len() - i);
        let m = mask16(last) >> skip;
        return if m != 0 {
            i + m.trailing_zeros() as usize
        } else {
            s.len()
        };
    }
    i + s
        .get(i..)
        .unwrap_or_default()
        .iter()
        .position(|&b| special(b))
        .unwrap_or(s.len() - i)
}

/// Bit `k` of the result is set where [`special`] holds for `c[k]`.
#[inline(always)]
fn mask16(c: &[u8; 16]) -> u32 {
    use wide::u8x16;
    let x = u8x16::new(*c);
    let splat = u8x16::splat;
    // Printable ASCII: x - 0x20 (wrapping) is at most 0x5f.
    let printable = (x - splat(0x20)).max(splat(0x5f)).simd_eq(splat(0x5f));
    let marks = x.simd_eq(splat(b'"')) | x.simd_eq(splat(b'\\'));
    (marks.to_bitmask() | !printable.to_bitmask()) & 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slow(p: &[u8]) -> Result<[Cow<'_, str>; 2], JsonError> {
        decode_str_fields(p, ["key", "value"])
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
            let want = s.iter().position(|&b| special(b)).unwrap_or(len);
            prop_assert_eq!(plain_len(&s), want);
        }
    }

    #[test]
    fn fast_path_takes_goraft_bytes_and_leaves_the_rest() {
        let p = b"{\"key\":\"mkey0000001\",\"value\":\"v0750001-xxxxxxx\"}\n";
        assert_eq!(
            canonical(p),
            Some((&b"mkey0000001"[..], &b"v0750001-xxxxxxx"[..]))
        );
        assert_eq!(
            canonical(&p[..p.len() - 1]).map(|kv| kv.0),
            Some(&b"mkey0000001"[..])
        );
        assert_eq!(
            canonical(b"{\"key\":\"\",\"value\":\"\"}"),
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
                canonical(other),
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
            let want = s.iter().position(|&b| special(b)).unwrap_or(s.len());
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
            if let Some((fk, fv)) = canonical(&p) {
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
}
