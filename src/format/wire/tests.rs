use super::*;
use proptest::prelude::*;

#[test]
fn varints() {
    let mut out = Vec::new();
    write_varint(300, &mut out);
    assert_eq!(out, [0xac, 0x02]);
    let mut pos = 0;
    assert_eq!(read_varint(&out, &mut pos), Ok(300));
    assert_eq!(pos, 2);
    assert_eq!(
        read_varint(&[0x80], &mut 0),
        Err(WireError::BadVarint { offset: 0 })
    );
    assert_eq!(
        read_varint(&[0xff; 10], &mut 0),
        Err(WireError::BadVarint { offset: 0 })
    );
    for v in [0, 1, 127, 128, 16383, 16384, u64::MAX] {
        let mut out = Vec::new();
        write_varint(v, &mut out);
        assert_eq!(out.len(), varint_len(v), "{v}");
    }
}

#[test]
fn nop_body_from_the_spec() {
    let body = b"\x08\x01\x10\x01\x1a\x08raft:nop";
    let e = decode_entry(body).unwrap();
    assert_eq!(
        (e.index, e.term, e.name, e.command, e.canonical),
        (1, 1, &b"raft:nop"[..], None, true)
    );
    assert_eq!(check(body, &LOG_ENTRY), Ok(vec![]));
}

#[test]
fn strictness_goes_beyond_prost() {
    // Missing CommandName.
    assert_eq!(
        decode_entry(b"\x08\x01\x10\x01"),
        Err(WireError::MissingRequired {
            message: "LogEntry",
            field: "CommandName"
        })
    );
    assert_eq!(decode_entry(b""), Err(WireError::Empty));
    // Unknown field 5 (the July-2013 Position) is accepted but reported.
    let body = b"\x08\x01\x10\x01\x1a\x01x\x28\x07";
    let e = decode_entry(body).unwrap();
    assert!(!e.canonical);
    assert_eq!(
        check(body, &LOG_ENTRY),
        Ok(vec![WireQuirk::UnknownField {
            offset: 7,
            field: 5
        }])
    );
    // Duplicate Index, last wins.
    let body = b"\x08\x01\x10\x01\x1a\x01x\x08\x02";
    assert_eq!(decode_entry(body).unwrap().index, 2);
    assert_eq!(
        check(body, &LOG_ENTRY),
        Ok(vec![
            WireQuirk::OutOfOrder {
                offset: 7,
                field: "Index"
            },
            WireQuirk::DuplicateField {
                offset: 7,
                field: "Index"
            }
        ])
    );
    // Truncated bytes field.
    assert!(matches!(
        decode_entry(b"\x08\x01\x10\x01\x1a\x09raft"),
        Err(WireError::Truncated {
            offset: 4,
            field: 3,
            needed: 9,
            available: 4
        })
    ));
    // Wrong wire type for Index.
    assert!(matches!(
        decode_entry(b"\x0a\x01x\x10\x01\x1a\x01x"),
        Err(WireError::WrongWireType {
            offset: 0,
            field: "Index",
            found: 2
        })
    ));
}

#[test]
fn proto3_bodies_of_the_fork() {
    // The real fork's join at index 1 in term 0: no Term field.
    let body = b"\x08\x01\x1a\x09raft:join\x22\x02{}";
    let e = decode_entry_proto3(body).unwrap();
    assert_eq!(
        (e.index, e.term, e.name, e.command, e.canonical),
        (1, 0, &b"raft:join"[..], Some(&b"{}"[..]), true)
    );
    assert_eq!(
        decode_entry(body),
        Err(WireError::MissingRequired {
            message: "LogEntry",
            field: "Term"
        })
    );
    assert_eq!(check_as(body, &LOG_ENTRY, Syntax::Proto3), Ok(vec![]));
    // An empty body is an entry of index 0 under proto3.
    assert_eq!(decode_entry_proto3(b"").map(|e| e.index), Ok(0));
    // A zero written is read, but is not what the fork writes.
    let body = b"\x08\x02\x10\x00\x1a\x08raft:nop";
    let e = decode_entry_proto3(body).unwrap();
    assert_eq!((e.term, e.canonical), (0, false));
    assert_eq!(
        check_as(body, &LOG_ENTRY, Syntax::Proto3),
        Ok(vec![WireQuirk::ZeroWritten {
            offset: 2,
            field: "Term"
        }])
    );
    // proto3 rejects a CommandName that is not UTF-8; proto2 only notes it.
    let body = b"\x08\x02\x1a\x02\xff\xfe";
    assert_eq!(
        decode_entry_proto3(body),
        Err(WireError::InvalidUtf8 {
            offset: 2,
            field: "CommandName"
        })
    );
    assert!(check_as(body, &LOG_ENTRY, Syntax::Proto3).is_err());
}

proptest! {
    #[test]
    fn proto3_encode_decode_round_trip(index in 1u64.., term: u64, name in ".{0,20}", command in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))) {
        let mut body = Vec::new();
        encode_entry_proto3(index, term, name.as_bytes(), command.as_deref(), &mut body);
        prop_assert_eq!(body.len(), proto3_entry_len(index, term, name.as_bytes(), command.as_deref()));
        let e = decode_entry_proto3(&body).unwrap();
        let want_command = command.as_deref().filter(|c| !c.is_empty());
        prop_assert_eq!((e.index, e.term, e.name, e.command, e.canonical), (index, term, name.as_bytes(), want_command, true));
        prop_assert_eq!(check_as(&body, &LOG_ENTRY, Syntax::Proto3), Ok(vec![]));
        // With a non-zero term and a command, both encodings write the same bytes.
        if term != 0 && !name.is_empty() && want_command.is_some() {
            let mut proto2 = Vec::new();
            encode_entry(index, term, name.as_bytes(), want_command, &mut proto2);
            prop_assert_eq!(proto2, body);
        }
    }

    #[test]
    fn the_proto3_fast_path_agrees_with_the_reference(body in proptest::collection::vec(any::<u8>(), 0..48), tweak in proptest::option::of((0usize..48, any::<u8>()))) {
        let mut body = body;
        // Start from a fork-written body now and then, so that the fast path is taken.
        if let Some((at, byte)) = tweak {
            body = Vec::new();
            encode_entry_proto3(3, u64::from(byte % 3), b"MaxVolumeId", Some(b"{}"), &mut body);
            if at < body.len() { body[at] = byte; }
        }
        let reference = decode_general_proto3(&body);
        if let Some(fast) = decode_proto3_canonical(&body) {
            let slow = reference.clone().unwrap();
            prop_assert_eq!((fast.index, fast.term, fast.name, fast.command), (slow.index, slow.term, slow.name, slow.command));
        }
        let read = decode_entry_proto3(&body);
        prop_assert_eq!(read.is_ok(), reference.is_ok());
        // Go's proto3 decoder and the strict checker agree on what is accepted.
        prop_assert_eq!(read.is_ok(), check_as(&body, &LOG_ENTRY, Syntax::Proto3).is_ok(), "{:?}", read);
    }

    #[test]
    fn encode_decode_round_trip(index: u64, term: u64, name in ".{0,20}", command in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))) {
        let mut body = Vec::new();
        encode_entry(index, term, name.as_bytes(), command.as_deref(), &mut body);
        let e = decode_entry(&body).unwrap();
        prop_assert_eq!((e.index, e.term, e.name, e.command, e.canonical), (index, term, name.as_bytes(), command.as_deref(), true));
        prop_assert_eq!(check(&body, &LOG_ENTRY), Ok(vec![]));
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let fast = decode_entry(&body);
        let strict = check(&body, &LOG_ENTRY);
        // Both agree on whether Go would accept the body.
        prop_assert_eq!(fast.is_ok(), strict.is_ok(), "{:?} vs {:?}", fast, strict);
    }
}
