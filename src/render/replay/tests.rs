use super::*;

#[test]
fn line_puts_type_first() {
    let mut out = Vec::new();
    line(&mut out, "kv", &KvLine::new("k", Some("v"))).unwrap();
    #[derive(Serialize)]
    struct E {}
    line(&mut out, "empty", &E {}).unwrap();
    line(&mut out, "n", &7).unwrap();
    assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"kv\",\"key\":\"k\",\"value\":\"v\"}\n{\"type\":\"empty\"}\n{\"type\":\"n\",\"value\":7}\n"
        );
}

#[test]
fn kv_lines_are_what_line_writes() {
    let strings = [
        "",
        "k",
        "a\"b",
        "back\\slash",
        "nl\n",
        "\u{1}\u{1f}",
        "del\u{7f}",
        "<&>",
        "é日本🎉",
        "\u{2028}\u{2029}",
        "\u{fffd}",
        "/",
        "x y",
    ];
    let mut pairs = Vec::new();
    for k in strings {
        for v in strings {
            pairs.push((k, v));
        }
    }
    // Enough lines to cross the buffer's flush point more than once, and enough pairs for
    // the two-thread path.
    let long = "v".repeat(3000);
    pairs.extend(std::iter::repeat_n(("long", long.as_str()), 50));
    let keys: Vec<String> = (0..20_000).map(|i| format!("k{i:05}\u{1}")).collect();
    pairs.extend(keys.iter().map(|k| (k.as_str(), "v")));
    pairs.extend(std::iter::repeat_n(("k", "\""), 20_000));
    let mut want = Vec::new();
    for &(k, v) in &pairs {
        line(&mut want, "kv", &KvLine::new(k, Some(v))).unwrap();
    }
    let mut got = Vec::new();
    kv_lines(&mut got, pairs.len(), &|i| pairs[i]).unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(want).unwrap()
    );
    // A write that fails stops both threads (the helper may be waiting to hand over a
    // chunk) and is reported.
    struct Closed(usize);
    impl Write for Closed {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if b.len() > self.0 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"));
            }
            self.0 -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    // Bounded: a helper left blocked would hang the call, and the test fails instead. Enough
    // chunks that the helper has more formatted than the channel holds.
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .cycle()
        .take(120_000)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (sent, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for room in [0, 200_000] {
            let pair = |i: usize| (pairs[i].0.as_str(), pairs[i].1.as_str());
            let err = kv_lines(&mut Closed(room), pairs.len(), &pair).map_err(|e| e.kind());
            let _ = sent.send((room, err));
        }
    });
    for _ in 0..2 {
        let (room, err) = got
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("kv_lines returns after a failed write");
        assert_eq!(err, Err(io::ErrorKind::BrokenPipe), "after {room} bytes");
    }
}

#[test]
fn clip_escapes_and_shortens() {
    assert_eq!(clip("a\nb"), "a\\nb");
    let long = "x".repeat(4096);
    assert_eq!(clip(&long), format!("{}… (4096 bytes)", "x".repeat(60)));
    assert_eq!(b64_if_not_utf8(b"ok"), None);
    assert_eq!(b64_if_not_utf8(b"\xff").as_deref(), Some("/w=="));
}
