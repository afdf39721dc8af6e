//! One file per hook.
mod cgroup_skb;
mod hand_back;
mod sock_length;
mod sock_release;
mod tc_forward;
mod tcp_state;
mod tcp_sweep;
