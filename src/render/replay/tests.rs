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
fn kv_parts_are_what_line_writes() {
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
    // Enough pairs for several parts.
    let long = "v".repeat(3000);
    pairs.extend(std::iter::repeat_n(("long", long.as_str()), 50));
    let keys: Vec<String> = (0..20_000).map(|i| format!("k{i:05}\u{1}")).collect();
    pairs.extend(keys.iter().map(|k| (k.as_str(), "v")));
    pairs.extend(std::iter::repeat_n(("k", "\""), 20_000));
    let mut want = Vec::new();
    for &(k, v) in &pairs {
        line(&mut want, "kv", &KvLine::new(k, Some(v))).unwrap();
    }
    let kv = KvParts {
        pairs: Pairs::Sorted(pairs.clone()),
    };
    assert_eq!(kv.len(), pairs.len().div_ceil(KvParts::CHUNK));
    assert!(kv.len() > 2, "several parts");
    let mut got = Vec::new();
    for i in 0..kv.len() {
        kv.format(i, &mut got);
    }
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(want).unwrap()
    );
}

#[test]
fn clip_escapes_and_shortens() {
    assert_eq!(clip("a\nb"), "a\\nb");
    let long = "x".repeat(4096);
    assert_eq!(clip(&long), format!("{}… (4096 bytes)", "x".repeat(60)));
    assert_eq!(b64_if_not_utf8(b"ok"), None);
    assert_eq!(b64_if_not_utf8(b"\xff").as_deref(), Some("/w=="));
}
