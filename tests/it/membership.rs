//! Membership on real processes: joins that would cost the quorum are refused, members are
//! removed with `DELETE /members/NAME` (a follower, a dead node, the leader), a removed node
//! takes no writes and says why, and a dead node is replaced (remove, then join a new one).
//! Every acknowledged write stays readable; `verify` is clean on every dir at the end.

use std::process::Command;

use crate::node::{assert_log_clean, name_of, spawn_node, text, Node};
use crate::{eventually, verify_clean};

const BIN: &str = env!("CARGO_BIN_EXE_raftdump");

fn role(n: &Node) -> String {
    let (_, s) = text("GET", &format!("{}/state", n.url), "");
    s.split("State: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("")
        .to_string()
}

fn members(n: &Node) -> Vec<String> {
    let (s, b) = text("GET", &format!("{}/members", n.url), "");
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let mut m: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    m.push(name_of(n));
    m.sort();
    m
}

fn fake_join(leader: &Node, name: &str) -> (u16, String) {
    let body = format!(r#"{{"name":"{name}","connectionString":"http://127.0.0.1:9"}}"#);
    text("POST", &format!("{}/join", leader.url), &body)
}

fn remove(n: &Node, name: &str) -> (u16, String) {
    text("DELETE", &format!("{}/members/{name}", n.url), "")
}

fn write(n: &Node, k: &str, v: &str) {
    let (s, b) = text("POST", &format!("{}/db/{k}", n.url), v);
    assert_eq!((s, b.as_str()), (200, ""), "POST {k} to {}", n.url);
}

fn read(n: &Node, k: &str) -> String {
    text("GET", &format!("{}/db/{k}", n.url), "").1
}

#[test]
fn fake_joins_are_refused_and_members_are_removed_and_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let local = ["--read-mode", "local"];
    let n1 = spawn_node(&tmp.path().join("n1"), 0, &local);
    let join = format!("127.0.0.1:{}", n1.port);
    let args = ["--read-mode", "local", "--join", join.as_str()];
    let n2 = spawn_node(&tmp.path().join("n2"), 0, &args);
    let mut n3 = spawn_node(&tmp.path().join("n3"), 0, &args);
    write(&n1, "k1", "v1");

    // Three joins of unreachable nodes: the first keeps a quorum (3 live of 4), the next ones
    // wait for it to catch up, which it never does. The cluster stays writable.
    // (The first waits, as `serve --join` does, until n3 has caught up with its own join.)
    eventually(10, "the first fake join accepted", || {
        (fake_join(&n1, "fake1").0 == 200).then_some(())
    });
    for fake in ["fake2", "fake3"] {
        let (s, b) = fake_join(&n1, fake);
        assert_eq!(s, 503, "{b}");
        assert!(b.contains("\"fake1\" joined at index"), "{b}");
    }
    write(&n1, "k2", "v2");
    assert_eq!(members(&n1).len(), 4);

    // The unreachable member is removed; a name that is no member is a 404.
    assert_eq!(remove(&n1, "fake1"), (200, String::new()));
    assert_eq!(remove(&n1, "fake1").0, 404);
    assert_eq!(members(&n1).len(), 3);

    // A dead node is removed, then replaced by a new one that catches up.
    let name3 = name_of(&n3);
    n3.kill9();
    assert_eq!(remove(&n1, &name3), (200, String::new()));
    let n4 = spawn_node(&tmp.path().join("n4"), 0, &args);
    write(&n1, "k3", "v3");
    eventually(10, "n4 holding k3", || {
        (read(&n4, "k3") == "v3").then_some(())
    });

    // A follower is removed: it learns of it, and refuses writes saying why.
    let name2 = name_of(&n2);
    assert_eq!(remove(&n1, &name2), (200, String::new()));
    let b = eventually(10, "the removed node refusing writes", || {
        let (s, b) = text("POST", &format!("{}/db/k", n2.url), "v");
        (s == 410).then_some(b)
    });
    assert!(b.contains("removed from the cluster"), "{b}");
    write(&n1, "k4", "v4");

    // The leader is removed: it steps down once the leave is committed, and n4, alone, leads.
    let name1 = name_of(&n1);
    assert_eq!(role(&n1), "leader");
    assert_eq!(remove(&n1, &name1), (200, String::new()));
    eventually(10, "n4 leading alone", || {
        (role(&n4) == "leader").then_some(())
    });
    assert_eq!(members(&n4), [name_of(&n4)]);
    write(&n4, "k5", "v5");
    for (k, v) in [
        ("k1", "v1"),
        ("k2", "v2"),
        ("k3", "v3"),
        ("k4", "v4"),
        ("k5", "v5"),
    ] {
        assert_eq!(read(&n4, k), v, "{k} on n4");
    }
    for n in [&n1, &n2, &n3, &n4] {
        assert_log_clean(&n.dir);
        verify_clean(&n.dir);
    }
    // `diff` shows the removals in its membership line (n4's log holds them all).
    let out = Command::new(BIN)
        .args(["diff", "--json"])
        .arg(&n4.dir)
        .arg(&n1.dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let node = text.lines().next().unwrap();
    for gone in ["fake1", &name3, &name2, &name1] {
        assert!(
            node.contains(&format!("{{\"name\":\"{gone}\",\"index\":")),
            "{node}"
        );
    }
}
