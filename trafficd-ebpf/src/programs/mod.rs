//! One file per hook.
mod cgroup_skb;
mod sock_length;
mod sock_release;
