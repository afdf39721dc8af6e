//! Root check: the tests load BPF programs, create namespaces and cgroups.

/// True when the effective uid is 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[doc(hidden)]
pub fn skip_or_fail_without_root() -> bool {
    if is_root() {
        return false;
    }
    if std::env::var_os("TRAFFICD_TESTS_NO_SKIP").is_some() {
        panic!("needs root (loads BPF programs), and TRAFFICD_TESTS_NO_SKIP is set");
    }
    eprintln!("skipped: needs root (loads BPF programs)");
    true
}

/// First line of every test: returns from the test (which then passes) with
/// "skipped: needs root (loads BPF programs)" on stderr when not run as root.
/// With `TRAFFICD_TESTS_NO_SKIP` set in the environment it fails instead, so a
/// CI job that is meant to run them cannot silently skip them all.
#[macro_export]
macro_rules! require_root {
    () => {
        if $crate::__skip_or_fail_without_root() {
            return;
        }
    };
}

#[doc(hidden)]
pub use skip_or_fail_without_root as __skip_or_fail_without_root;
