//! Rules across nodes: Log Matching, agreement of the committed prefix (State Machine Safety),
//! Election Safety, membership and name agreement.
//!
//! Built on the index-aligned comparison in `crate::diff`. Pure: it takes opened data dirs and
//! returns findings.

use super::Finding;
use crate::datadir::DataDir;

/// Checks the invariants that involve more than one node. With fewer than two nodes there is
/// nothing to compare and the result is empty.
pub fn check(nodes: &[DataDir]) -> Vec<Finding> {
    if nodes.len() < 2 {
        return Vec::new();
    }
    // Filled in by the cluster rules (see the verify and diff issues).
    Vec::new()
}
