use super::*;

#[test]
fn ids_and_descriptions() {
    assert_eq!(
        (node_id(0), node_id(25), node_id(26)),
        ("A".into(), "Z".into(), "n27".into())
    );
    let e = Entry {
        index: 3,
        term: 1,
        name: "write".into(),
        payload: Some(b"{\"key\":\"k\",\"value\":\"a\\nb\"}\n".to_vec()),
    };
    assert_eq!(describe(&e), "t1 write k = a\\nb");
    let nop = Entry {
        index: 4,
        term: 2,
        name: "raft:nop".into(),
        payload: None,
    };
    assert_eq!(describe(&nop), "t2 raft:nop");
}

#[test]
fn paint_only_when_asked() {
    assert_eq!(Paint(false).bad("x"), "x");
    assert_eq!(Paint(true).good("x"), "\u{1b}[32mx\u{1b}[0m");
}
