//! The JSON Lines writer of the hot paths (`inspect --json` entries, `replay --json` state):
//! objects written by hand into a reused buffer, byte for byte what serde_json writes for the
//! same fields. Everything else goes through serde_json (`render::replay::line`).

use std::path::Path;

use serde::Serialize;

/// One JSON object being written into a buffer: `{"type":…` then `,"key":value` pairs.
pub(crate) struct Obj<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> Obj<'b> {
    pub(crate) fn new(buf: &'b mut Vec<u8>, ty: &str) -> Self {
        buf.extend_from_slice(b"{\"type\":\"");
        buf.extend_from_slice(ty.as_bytes());
        buf.push(b'"');
        Obj { buf }
    }

    /// Goes on with the object whose first fields are already in `buf`.
    pub(crate) fn continuing(buf: &'b mut Vec<u8>) -> Self {
        Obj { buf }
    }

    pub(crate) fn key(&mut self, k: &str) -> &mut Vec<u8> {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf
    }

    pub(crate) fn u64(&mut self, k: &str, v: u64) {
        let s = itoa::Buffer::new().format(v).as_bytes().to_vec();
        self.key(k).extend_from_slice(&s);
    }

    pub(crate) fn opt_u64(&mut self, k: &str, v: Option<u64>) {
        match v {
            Some(v) => self.u64(k, v),
            None => self.key(k).extend_from_slice(b"null"),
        }
    }

    pub(crate) fn bool(&mut self, k: &str, v: bool) {
        self.key(k)
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    pub(crate) fn str(&mut self, k: &str, v: &str) {
        push_json_str(self.key(k), v);
    }

    /// `"k":"<lossy UTF-8>"`, plus `"k_base64"` when the bytes are not UTF-8.
    pub(crate) fn bytes(&mut self, k: &str, v: &[u8]) {
        match std::str::from_utf8(v) {
            Ok(s) => self.str(k, s),
            Err(_) => {
                self.str(k, &String::from_utf8_lossy(v));
                push_base64(self.key(&format!("{k}_base64")), v);
            }
        }
    }

    pub(crate) fn path(&mut self, k: &str, p: &Path) {
        self.bytes(k, p.as_os_str().as_encoded_bytes());
    }

    pub(crate) fn value<T: Serialize + ?Sized>(&mut self, k: &str, v: &T) {
        let buf = self.key(k);
        if serde_json::to_writer(&mut *buf, v).is_err() {
            buf.extend_from_slice(b"null");
        }
    }

    pub(crate) fn end(self) {
        self.buf.extend_from_slice(b"}\n");
    }
}

/// Appends `s` as a JSON string, byte for byte as serde_json writes it.
pub(crate) fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    if plain_json(s) {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // serde_json only for the escaping; writing into a Vec cannot fail.
        let _ = serde_json::to_writer(buf, s);
    }
}

/// Whether serde_json writes `s` between its quotes as it is: no `"`, `\\` or control byte (it
/// escapes nothing else).
pub(crate) fn plain_json(s: &str) -> bool {
    !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Standard base64 of every 12-bit value: two output characters per lookup.
static BASE64_PAIRS: [[u8; 2]; 4096] = {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [T[i >> 6], T[i & 63]];
        i += 1;
    }
    t
};

/// Appends `"<standard base64>"`. Hand-written because payloads are short and the general
/// engine's per-call overhead dominated `--json`; a unit test holds it to the base64 crate.
pub(crate) fn push_base64(buf: &mut Vec<u8>, b: &[u8]) {
    let start = buf.len();
    buf.resize(start + 2 + b.len().div_ceil(3) * 4, b'=');
    buf[start] = b'"';
    let end = buf.len() - 1;
    buf[end] = b'"';
    let out = &mut buf[start + 1..end];
    // Six input bytes (read as eight) to eight output bytes per step, then three to four.
    let (mut i, mut j) = (0, 0);
    while let (Some(w), Some(o)) = (b.get(i..i + 8), out.get_mut(j..j + 8)) {
        let w = u64::from_be_bytes(w.try_into().unwrap_or([0; 8]));
        let pair = |shift: u32| {
            u64::from(u16::from_le_bytes(
                BASE64_PAIRS[(w >> shift) as usize & 0xfff],
            ))
        };
        let v = pair(52) | pair(40) << 16 | pair(28) << 32 | pair(16) << 48;
        o.copy_from_slice(&v.to_le_bytes());
        i += 6;
        j += 8;
    }
    let (b, out) = (&b[i..], &mut out[j..]);
    let mut chunks = b.chunks_exact(3);
    let mut outs = out.chunks_exact_mut(4);
    for (c, o) in (&mut chunks).zip(&mut outs) {
        let n = usize::from(c[0]) << 16 | usize::from(c[1]) << 8 | usize::from(c[2]);
        o[..2].copy_from_slice(&BASE64_PAIRS[n >> 12]);
        o[2..].copy_from_slice(&BASE64_PAIRS[n & 0xfff]);
    }
    if let Some(o) = outs.next() {
        let c = |i: usize| BASE64_PAIRS[i][1];
        match *chunks.remainder() {
            [a] => {
                o[0] = c(usize::from(a >> 2));
                o[1] = c(usize::from(a & 3) << 4);
            }
            [a, b] => {
                o[0] = c(usize::from(a >> 2));
                o[1] = c(usize::from(a & 3) << 4 | usize::from(b >> 4));
                o[2] = c(usize::from(b & 15) << 2);
            }
            _ => {}
        }
    }
}

pub(crate) fn push_hex(buf: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    for &x in b {
        buf.push(HEX[usize::from(x >> 4)]);
        buf.push(HEX[usize::from(x & 15)]);
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn base64_matches_the_base64_crate() {
        let mut x: u32 = 0x9e37_79b9;
        let data: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for len in 0..data.len() {
            let mut buf = b"x".to_vec();
            push_base64(&mut buf, &data[..len]);
            let want = format!(
                "x\"{}\"",
                base64::engine::general_purpose::STANDARD.encode(&data[..len])
            );
            assert_eq!(String::from_utf8(buf).unwrap(), want, "length {len}");
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "plain",
            "a\u{7f}\u{e9}",
            "q\"uote",
            "back\\slash",
            "tab\t",
            "\u{1}nul\0",
        ] {
            let mut buf = Vec::new();
            push_json_str(&mut buf, s);
            assert_eq!(buf, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        assert!(plain_json("a\u{7f}\u{e9}") && !plain_json("\t") && !plain_json("\\"));
    }
}
