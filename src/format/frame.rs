//! The `"%8x\n"` length header that precedes every protobuf body in a goraft log.
//!
//! It owns the header grammar only: pure functions over `&[u8]`, no I/O, no knowledge of the
//! protobuf body. The canonical form is exactly what goraft writes (`fmt.Fprintf(w, "%8x\n", len)`);
//! the lenient forms are what Go's `fmt.Fscanf(r, "%8x\n", &length)` also accepts, and each of them
//! is reported as a [`HeaderQuirks`] bit rather than accepted silently.

use nom::bytes::complete::{tag, take_while, take_while_m_n};
use nom::error::{context, ContextError, ErrorKind, ParseError};
use nom::IResult;

/// The size of a canonical header: eight right-aligned hex digits and a newline.
pub const CANONICAL_HEADER_LEN: usize = 9;

/// Ways in which a header that Go would accept differs from what goraft writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct HeaderQuirks(u8);

impl HeaderQuirks {
    /// More than eight characters of padding and digits (extra leading spaces).
    pub const EXTRA_SPACES: HeaderQuirks = HeaderQuirks(1);
    /// Fewer than eight characters before the newline: the July-2013 `"%x\n"` form (`29\n`).
    pub const UNPADDED: HeaderQuirks = HeaderQuirks(2);
    /// Uppercase hex digits.
    pub const UPPERCASE: HeaderQuirks = HeaderQuirks(4);
    /// Zero-padded digits (`0000001e`) where goraft pads with spaces.
    pub const LEADING_ZEROS: HeaderQuirks = HeaderQuirks(8);

    const ALL: [(HeaderQuirks, &'static str, &'static str); 4] = [
        (
            Self::EXTRA_SPACES,
            "extra-spaces",
            "more than 8 characters of padding",
        ),
        (
            Self::UNPADDED,
            "unpadded",
            "fewer than 8 characters (2013 \"%x\\n\" header)",
        ),
        (Self::UPPERCASE, "uppercase", "uppercase hex digits"),
        (
            Self::LEADING_ZEROS,
            "leading-zeros",
            "zero padding instead of spaces",
        ),
    ];

    /// No quirk: the header is byte-for-byte what goraft writes.
    pub fn is_canonical(self) -> bool {
        self.0 == 0
    }

    /// Whether every quirk in `other` is set here.
    pub fn contains(self, other: HeaderQuirks) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    fn insert(&mut self, other: HeaderQuirks) {
        self.0 |= other.0;
    }

    /// Short stable names of the quirks that are set, e.g. `["unpadded"]`.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::ALL
            .into_iter()
            .filter(move |(q, _, _)| self.0 & q.0 != 0)
            .map(|(_, name, _)| name)
    }

    /// Human descriptions of the quirks that are set.
    pub fn descriptions(self) -> impl Iterator<Item = &'static str> {
        Self::ALL
            .into_iter()
            .filter(move |(q, _, _)| self.0 & q.0 != 0)
            .map(|(_, _, d)| d)
    }
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The declared protobuf body length.
    pub body_len: u32,
    /// How many header bytes were consumed (9 when canonical).
    pub len: usize,
    /// How it differs from the canonical form.
    pub quirks: HeaderQuirks,
}

/// Why bytes at a frame boundary are not a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The input ended inside the header: only padding and digits (and no newline) remain.
    /// Go's reader takes this as a clean end of file and leaves the bytes in place.
    Torn {
        /// How many bytes of header there were.
        len: usize,
        /// Whether a complete length (digits) was seen before the end.
        has_digits: bool,
    },
    /// The first byte is 0x00: the start of a NUL run.
    Nul,
    /// A byte that cannot be part of a header.
    Invalid {
        /// Offset of the offending byte, relative to the header start.
        at: usize,
        /// The byte found there.
        found: u8,
        /// What the grammar expected at that point.
        expected: &'static str,
    },
}

/// What the header grammar expected where it stopped.
const EXPECT_DIGIT: &str = "a space or a hex digit of the length header";
const EXPECT_NEWLINE_AFTER_8: &str = "a newline after 8 hex digits";
const EXPECT_DIGIT_OR_NEWLINE: &str = "a hex digit or the newline ending the length header";

/// Where the header grammar stopped and what it expected there: nom's error for
/// [`header_grammar`], turned into a [`HeaderError`] by [`parse_lenient`] as it is.
#[derive(Debug)]
struct Expected<'a> {
    /// The input from the offending byte on (empty: the input ended there).
    rest: &'a [u8],
    /// The innermost context the grammar gave.
    what: &'static str,
}

impl<'a> ParseError<&'a [u8]> for Expected<'a> {
    fn from_error_kind(rest: &'a [u8], _: ErrorKind) -> Self {
        Expected { rest, what: "" }
    }

    fn append(_: &'a [u8], _: ErrorKind, inner: Self) -> Self {
        inner
    }
}

impl<'a> ContextError<&'a [u8]> for Expected<'a> {
    fn add_context(_: &'a [u8], what: &'static str, mut inner: Self) -> Self {
        if inner.what.is_empty() {
            inner.what = what;
        }
        inner
    }
}

/// The grammar Go's `Fscanf("%8x\n")` accepts: any spaces, then one to eight hex digits, then a
/// newline. Returns the spaces and the digits.
fn header_grammar(input: &[u8]) -> IResult<&[u8], (&[u8], &[u8]), Expected<'_>> {
    let (rest, spaces) = take_while(|c| c == b' ')(input)?;
    let (rest, digits) = context(
        EXPECT_DIGIT,
        take_while_m_n(1, 8, |c: u8| c.is_ascii_hexdigit()),
    )(rest)?;
    let newline = if digits.len() == 8 {
        EXPECT_NEWLINE_AFTER_8
    } else {
        EXPECT_DIGIT_OR_NEWLINE
    };
    let (rest, _) = context(newline, tag(b"\n"))(rest)?;
    Ok((rest, (spaces, digits)))
}

fn hex_value(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        };
        (acc << 4) | u32::from(d)
    })
}

/// Parses the header at the start of `input`.
///
/// The canonical form takes a fast path; everything else goes through the lenient nom grammar,
/// which yields the same result for canonical input (a property test holds them together).
#[inline]
pub fn parse_header(input: &[u8]) -> Result<Header, HeaderError> {
    if let Some(h) = parse_canonical(input) {
        return Ok(h);
    }
    parse_lenient(input)
}

/// The fast path: exactly `[ ]*[0-9a-f]{1,8}` filling 8 bytes, no leading zero, then `\n`.
#[inline]
fn parse_canonical(input: &[u8]) -> Option<Header> {
    Some(Header {
        body_len: canonical_body_len(input.first_chunk()?)?,
        len: CANONICAL_HEADER_LEN,
        quirks: HeaderQuirks::default(),
    })
}

/// The body length a canonical header declares (`[ ]*[0-9a-f]{1,8}` filling 8 bytes, no leading
/// zero, then `\n`), or `None` for any other 9 bytes: what [`parse_header`] parses without a
/// quirk. Whole-log passes call it directly.
#[inline(always)]
pub fn canonical_body_len(h: &[u8; CANONICAL_HEADER_LEN]) -> Option<u32> {
    if h[8] != b'\n' {
        return None;
    }
    // The leading spaces, counted 8 at a time: a space XOR 0x20 is the only zero byte value,
    // so the number of trailing zero bytes (little-endian) is the number of leading spaces.
    let lanes = u64::from_le_bytes(*h.first_chunk::<8>()?) ^ 0x2020_2020_2020_2020;
    let i = ((lanes.trailing_zeros() / 8) as usize).min(7);
    if h[i] == b'0' && i != 7 {
        return None;
    }
    let mut v: u32 = 0;
    for &c in &h[i..8] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u32::from(d);
    }
    Some(v)
}

/// The general path: every form Go accepts ([`header_grammar`], in nom), with its quirks named
/// and, for bytes that are no header, the grammar's own account of where it stopped and why.
pub fn parse_lenient(input: &[u8]) -> Result<Header, HeaderError> {
    if input.first() == Some(&0) {
        return Err(HeaderError::Nul);
    }
    let (spaces, digits) = match header_grammar(input) {
        Ok((_, parsed)) => parsed,
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            let at = input.len() - e.rest.len();
            return Err(match e.rest.first() {
                None => HeaderError::Torn {
                    len: at,
                    has_digits: e.what != EXPECT_DIGIT,
                },
                Some(&found) => HeaderError::Invalid {
                    at,
                    found,
                    expected: e.what,
                },
            });
        }
        // Complete parsers never ask for more input.
        Err(nom::Err::Incomplete(_)) => {
            return Err(HeaderError::Torn {
                len: input.len(),
                has_digits: false,
            })
        }
    };
    let used = spaces.len() + digits.len();
    let mut quirks = HeaderQuirks::default();
    if used > 8 {
        quirks.insert(HeaderQuirks::EXTRA_SPACES);
    } else if used < 8 {
        quirks.insert(HeaderQuirks::UNPADDED);
    }
    if digits.iter().any(|c| c.is_ascii_uppercase()) {
        quirks.insert(HeaderQuirks::UPPERCASE);
    }
    if digits.len() > 1 && digits[0] == b'0' {
        quirks.insert(HeaderQuirks::LEADING_ZEROS);
    }
    Ok(Header {
        body_len: hex_value(digits),
        len: used + 1,
        quirks,
    })
}

/// Writes the canonical header for a body of `len` bytes: `"%8x\n"`.
pub fn write_header(len: u32, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [b' '; 9];
    buf[8] = b'\n';
    let mut v = len;
    let mut i = 8;
    loop {
        i -= 1;
        buf[i] = HEX[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf);
}

/// Whether `input` starts with what the resynchroniser looks for after damage: a canonical
/// header followed by the tag byte of field 1 (`0x08`).
#[inline]
pub fn looks_like_frame_start(input: &[u8]) -> Option<Header> {
    let h = parse_canonical(input)?;
    (input.get(CANONICAL_HEADER_LEN) == Some(&0x08)).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_shortcut_parses_exactly_the_quirkless_headers() {
        // Every header made of these bytes in its 8 places: spaces, a leading zero, digits,
        // uppercase, a newline too early.
        let alphabet = [b' ', b'0', b'7', b'f', b'F', b'\n'];
        let mut h = [b' '; 9];
        h[8] = b'\n';
        for n in 0..alphabet.len().pow(8) {
            let mut k = n;
            for slot in h.iter_mut().take(8) {
                *slot = alphabet[k % alphabet.len()];
                k /= alphabet.len();
            }
            let want = parse_lenient(&h)
                .ok()
                .filter(|x| x.len == 9 && x.quirks.is_canonical())
                .map(|x| x.body_len);
            assert_eq!(
                canonical_body_len(&h),
                want,
                "{:?}",
                String::from_utf8_lossy(&h)
            );
        }
    }

    use proptest::prelude::*;

    #[test]
    fn canonical_examples_from_the_spec() {
        for (bytes, len) in [
            (&b"       e\n"[..], 14),
            (b"      4f\n", 0x4f),
            (b"    1000\n", 4096),
            (b"ffffffff\n", u32::MAX),
            (b"       0\n", 0),
        ] {
            let h = parse_header(bytes).unwrap();
            assert_eq!((h.body_len, h.len, h.quirks.is_canonical()), (len, 9, true));
            let mut out = Vec::new();
            write_header(len, &mut out);
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn lenient_forms_are_flagged() {
        let h = parse_header(b"29\n").unwrap();
        assert_eq!((h.body_len, h.len), (0x29, 3));
        assert!(h.quirks.contains(HeaderQuirks::UNPADDED));
        let h = parse_header(b"         29\n").unwrap();
        assert_eq!((h.body_len, h.len), (0x29, 12));
        assert!(h.quirks.contains(HeaderQuirks::EXTRA_SPACES));
        let h = parse_header(b"      4F\n").unwrap();
        assert!(h.quirks.contains(HeaderQuirks::UPPERCASE));
        assert_eq!(h.quirks.names().collect::<Vec<_>>(), ["uppercase"]);
        let h = parse_header(b"0000001e\n").unwrap();
        assert!(h.quirks.contains(HeaderQuirks::LEADING_ZEROS));
        assert_eq!(h.body_len, 0x1e);
    }

    #[test]
    fn damage_is_told_apart() {
        assert_eq!(parse_header(b"\0\0\0"), Err(HeaderError::Nul));
        assert_eq!(
            parse_header(b"     "),
            Err(HeaderError::Torn {
                len: 5,
                has_digits: false
            })
        );
        assert_eq!(
            parse_header(b"      29"),
            Err(HeaderError::Torn {
                len: 8,
                has_digits: true
            })
        );
        assert!(matches!(
            parse_header(b"CORRUPT!\n"),
            Err(HeaderError::Invalid {
                at: 1,
                found: b'O',
                ..
            })
        ));
        assert!(matches!(
            parse_header(b"123456789\n"),
            Err(HeaderError::Invalid {
                at: 8,
                found: b'9',
                ..
            })
        ));
        assert!(matches!(
            parse_header(b"   12 \n"),
            Err(HeaderError::Invalid {
                at: 5,
                found: b' ',
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn fast_path_agrees_with_lenient_grammar(bytes in proptest::collection::vec(
            prop_oneof![Just(b' '), Just(b'\n'), Just(b'0'), Just(b'a'), Just(b'F'), any::<u8>()], 0..12)) {
            if let Some(fast) = parse_canonical(&bytes) {
                prop_assert_eq!(Ok(fast), parse_lenient(&bytes));
            }
        }

        /// The grammar's errors point at the byte where it stopped: an invalid byte is the one
        /// named, a torn header is all the input, and what precedes either is a header's start.
        #[test]
        fn grammar_errors_point_at_the_offending_byte(bytes in proptest::collection::vec(
            prop_oneof![Just(b' '), Just(b'\n'), Just(b'0'), Just(b'a'), Just(b'F'), any::<u8>()], 0..14)) {
            let start = |b: &[u8]| {
                let digits = b.iter().skip_while(|&&c| c == b' ');
                digits.clone().count() <= 8 && digits.clone().all(u8::is_ascii_hexdigit)
            };
            match parse_lenient(&bytes) {
                Ok(h) => prop_assert_eq!(bytes[h.len - 1], b'\n'),
                Err(HeaderError::Nul) => prop_assert_eq!(bytes[0], 0),
                Err(HeaderError::Torn { len, has_digits }) => {
                    prop_assert_eq!(len, bytes.len());
                    prop_assert!(start(&bytes));
                    prop_assert_eq!(has_digits, bytes.iter().any(|&c| c != b' '));
                }
                Err(HeaderError::Invalid { at, found, expected }) => {
                    prop_assert_eq!(bytes[at], found);
                    prop_assert!(start(&bytes[..at]));
                    prop_assert!(!expected.is_empty());
                }
            }
        }

        #[test]
        fn write_then_parse(len in any::<u32>()) {
            let mut out = Vec::new();
            write_header(len, &mut out);
            prop_assert_eq!(out.len(), 9);
            let h = parse_header(&out).unwrap();
            prop_assert_eq!((h.body_len, h.quirks.is_canonical()), (len, true));
            prop_assert_eq!(parse_lenient(&out), Ok(h));
        }
    }
}
