//! The cluster token: who may call `/join` and `/raft/*`.
//!
//! A node listening on a non-loopback address requires a shared secret read from a file that
//! only its owner can read (`--token-file`). raftdump's own clients (the transport, the join
//! client and `--forward`) send it as the [`TOKEN_HEADER`] header; the server compares it in
//! constant time. Original goraft nodes cannot send it: mixed clusters run with
//! `--insecure-no-token`.

use std::path::{Path, PathBuf};

/// The request header that carries the cluster token.
pub const TOKEN_HEADER: &str = "X-Raftdump-Token";

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The file cannot be read.
    #[error("cannot read the token file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error(
        "the token file {path} has mode {mode:04o}: group and others must have no access \
         (chmod 600)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Empty, or not a single line of visible ASCII.
    #[error(
        "the token file {path} must hold one line of 16 to 4096 visible ASCII characters \
         (found {len} bytes{bad})"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The token's length after trimming.
        len: usize,
        /// ", with a character that is not visible ASCII" when that is the problem.
        bad: &'static str,
    },
}

/// Reads the token from `path`: the file must not be accessible to group or others, and hold
/// one line of 16 to 4096 visible ASCII characters (surrounding whitespace is trimmed).
pub fn load_token(path: &Path) -> Result<String, TokenError> {
    let io = |error| TokenError::Io {
        path: path.to_owned(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    // A FIFO here must not hang the start, nor a huge file fill memory.
    let raw = crate::datadir::files::read_capped(path, 64 << 10, "a token file").map_err(io)?;
    let token = raw.trim_ascii();
    let visible = token.iter().all(|b| b.is_ascii_graphic());
    if !(16..=4096).contains(&token.len()) || !visible {
        return Err(TokenError::Malformed {
            path: path.to_owned(),
            len: token.len(),
            bad: if visible {
                ""
            } else {
                ", with a character that is not visible ASCII"
            },
        });
    }
    // Visible ASCII only: valid UTF-8.
    Ok(token.iter().map(|&b| b as char).collect())
}

/// What a node listening on `ip` does about the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Check the token given (a token file was given: enforced on any address).
    Enforce,
    /// No token: a loopback address, reachable only from this machine.
    LoopbackOnly,
    /// No token on a reachable address, as asked (`--insecure-no-token`).
    Insecure,
    /// Refuse to start: a reachable address and no token.
    Refuse,
}

/// The token policy for a node listening on `ip`.
pub fn policy(ip: std::net::IpAddr, token_file_given: bool, insecure: bool) -> Policy {
    match (token_file_given, ip.is_loopback(), insecure) {
        (true, _, _) => Policy::Enforce,
        (false, true, _) => Policy::LoopbackOnly,
        (false, false, true) => Policy::Insecure,
        (false, false, false) => Policy::Refuse,
    }
}

/// Compares two byte strings in time that depends only on their lengths, never on where
/// they differ.
pub fn token_matches(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    // Walk the expected token's length whatever `given` is, so that the loop's duration
    // says nothing about the secret's content.
    for (i, &e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= e ^ g;
    }
    std::hint::black_box(diff) == 0
}

/// Whether a decoded request path is one the token guards (`/join` and `/raft/*`).
pub fn guarded(decoded_path: &[u8]) -> bool {
    decoded_path == b"/join"
        || decoded_path.starts_with(b"/raft/")
        || decoded_path.starts_with(b"/members/")
}

/// An agent builder whose requests carry `token` in [`TOKEN_HEADER`] (unchanged when `None`).
// The middleware's signature, ureq's large error type included, is ureq's.
#[allow(clippy::result_large_err)]
pub fn with_token(builder: ureq::AgentBuilder, token: Option<&str>) -> ureq::AgentBuilder {
    match token {
        None => builder,
        Some(t) => {
            let t = t.to_owned();
            builder.middleware(move |req: ureq::Request, next: ureq::MiddlewareNext<'_>| {
                next.handle(req.set(TOKEN_HEADER, &t))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_the_same_bytes() {
        assert!(token_matches(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!token_matches(b"0123456789abcdef", b"0123456789abcdeF"));
        assert!(!token_matches(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!token_matches(b"0123456789abcdef", b"0123456789abcdef0"));
        assert!(!token_matches(b"0123456789abcdef", b""));
        assert!(token_matches(b"", b""));
    }

    #[test]
    fn policy_requires_a_token_off_loopback() {
        let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let lo6: std::net::IpAddr = "::1".parse().unwrap();
        let any: std::net::IpAddr = "0.0.0.0".parse().unwrap();
        let lan: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(policy(lo, false, false), Policy::LoopbackOnly);
        assert_eq!(policy(lo6, false, false), Policy::LoopbackOnly);
        assert_eq!(policy(lo, true, false), Policy::Enforce);
        assert_eq!(policy(any, false, false), Policy::Refuse);
        assert_eq!(policy(lan, false, false), Policy::Refuse);
        assert_eq!(policy(lan, false, true), Policy::Insecure);
        assert_eq!(policy(any, true, false), Policy::Enforce);
    }

    #[test]
    fn guarded_paths_are_join_and_raft() {
        assert!(guarded(b"/join"));
        assert!(guarded(b"/raft/appendEntries"));
        assert!(guarded(b"/raft/anything"));
        assert!(guarded(b"/members/2832bfa"));
        assert!(!guarded(b"/members"));
        assert!(!guarded(b"/db/join"));
        assert!(!guarded(b"/joins"));
        assert!(!guarded(b"/state"));
    }

    #[cfg(unix)]
    #[test]
    fn load_token_checks_mode_and_content() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("token");
        std::fs::write(&p, "  s3cret-token-0123456789\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_token(&p).unwrap(), "s3cret-token-0123456789");

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_token(&p).unwrap_err().to_string();
        assert!(e.ends_with("has mode 0640: group and others must have no access (chmod 600)"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(matches!(
            load_token(&p),
            Err(TokenError::Permissions { mode: 0o604, .. })
        ));

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "short\n").unwrap();
        assert!(matches!(
            load_token(&p),
            Err(TokenError::Malformed {
                len: 5,
                bad: "",
                ..
            })
        ));
        std::fs::write(&p, "with a space inside it\n").unwrap();
        assert!(matches!(
            load_token(&p),
            Err(TokenError::Malformed { len: 22, .. })
        ));
        assert!(matches!(
            load_token(&tmp.path().join("missing")),
            Err(TokenError::Io { .. })
        ));
    }
}
