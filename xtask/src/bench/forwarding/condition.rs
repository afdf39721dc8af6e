//! What watches the forwarding path during a transfer: the three conditions every forwarding
//! measurement compares.

use serde::{Deserialize, Serialize};

/// What watches the host's two veths during a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    None,
    /// Empty programs on every hook trafficd uses: tc ingress and egress of both veths, and
    /// the socket hooks (cgroup_skb on the cgroup2 root, the sock tracepoints).
    Empty,
    Trafficd,
}

impl Condition {
    /// The conditions in the order round `round` runs them: each goes first, second and third
    /// in turn, so none always follows the same one (a daemon just stopped, programs just
    /// detached).
    pub(super) fn order_in(round: usize) -> [Condition; 3] {
        let mut order = [Condition::None, Condition::Empty, Condition::Trafficd];
        let turn = round % order.len();
        order.rotate_left(turn);
        order
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Condition::None => "none",
            Condition::Empty => "empty programs",
            Condition::Trafficd => "trafficd",
        }
    }
}
