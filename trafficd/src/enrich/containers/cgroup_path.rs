//! Cgroup path -> who owns it, from the path alone: the runtimes and systemd name their cgroups
//! after the container id, the pod UID or the unit, so the path answers without any API call.
//! A layout not recognised here answers `None`: the caller shows the path rather than a guess.

use super::Runtime;

/// What a cgroup path says about its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathOwner {
    /// The cgroup2 root: processes outside any container or unit.
    Host,
    /// A systemd unit or slice (`nginx.service`, `session-3.scope`, `user@1000.service`).
    Unit(String),
    /// A Kubernetes pod's own cgroup, not one of its containers (e.g. the pod's slice).
    Pod { uid: String },
    /// A container. `runtime` is `None` where the layout does not say (kubepods under the
    /// cgroupfs driver name only the id); `pod_uid` is set for a container of a Kubernetes pod.
    Container {
        runtime: Option<Runtime>,
        id: String,
        pod_uid: Option<String>,
    },
}

/// Parses a cgroup path relative to the cgroup mount (`/docker/<id>`,
/// `/system.slice/nginx.service`...). `None` for a layout not known here.
pub fn parse(path: &str) -> Option<PathOwner> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // A runtime that enables a cgroup namespace may nest the container's processes one level
    // down (Podman's `.../libpod-<id>.scope/container`); the owner is the level above.
    let parts = match parts.split_last() {
        Some((&"container", rest)) if !rest.is_empty() => rest,
        _ => &parts[..],
    };
    let Some(&last) = parts.last() else {
        return Some(PathOwner::Host);
    };
    if let Some(kube) = parts.iter().position(|p| is_kubepods(p)) {
        return kubepods(&parts[kube + 1..]);
    }
    if let Some(owner) = container_leaf(parts) {
        return Some(owner);
    }
    if let Some(unit) = unit_of(parts) {
        return Some(PathOwner::Unit(unit.to_string()));
    }
    if last.ends_with(".slice") {
        return Some(PathOwner::Unit(last.to_string()));
    }
    None
}

/// A container named by the last component alone, outside Kubernetes.
fn container_leaf(parts: &[&str]) -> Option<PathOwner> {
    let last = *parts.last()?;
    let parent = parts.len().checked_sub(2).map(|i| parts[i]);
    let container = |runtime, id: &str| PathOwner::Container {
        runtime: Some(runtime),
        id: id.to_string(),
        pod_uid: None,
    };
    if let Some((runtime, id)) = scope_container(last) {
        return Some(container(runtime, id));
    }
    match (parent, last) {
        // Docker's cgroupfs driver (the default without systemd): `/docker/<id>`.
        (Some("docker"), id) if is_container_id(id) => Some(container(Runtime::Docker, id)),
        // Podman's cgroupfs manager: `/libpod_parent/libpod-<id>`.
        (Some("libpod_parent"), leaf) => leaf
            .strip_prefix("libpod-")
            .filter(|id| is_container_id(id))
            .map(|id| container(Runtime::Podman, id)),
        // containerd (ctr, nerdctl) places a task at `/<namespace>/<id>`; only a full-length id
        // is taken, so an ordinary two-level cgroup is never mistaken for a container.
        (Some(ns), id) if parts.len() == 2 && is_container_id(id) && !is_systemd(ns) => {
            Some(container(Runtime::Containerd, id))
        }
        _ => None,
    }
}

/// A systemd scope that a runtime created for one container: `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`. The runtimes' helper
/// scopes (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) are units, not containers.
fn scope_container(leaf: &str) -> Option<(Runtime, &str)> {
    let stem = leaf.strip_suffix(".scope")?;
    const PREFIXES: [(&str, Runtime); 4] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
    ];
    PREFIXES.iter().find_map(|(prefix, runtime)| {
        stem.strip_prefix(prefix)
            .filter(|id| is_container_id(id))
            .map(|id| (*runtime, id))
    })
}

/// The deepest `.service` or `.scope` component. A unit's `init.scope` (where systemd --user
/// itself runs inside `user@1000.service`) belongs to the unit above it.
fn unit_of<'a>(parts: &[&'a str]) -> Option<&'a str> {
    let is_unit = |p: &&str| p.ends_with(".service") || p.ends_with(".scope");
    let at = parts.iter().rposition(is_unit)?;
    if parts[at] == "init.scope" && at > 0 && parts[at - 1].ends_with(".service") {
        return Some(parts[at - 1]);
    }
    Some(parts[at])
}

fn is_systemd(part: &str) -> bool {
    [".slice", ".service", ".scope"]
        .iter()
        .any(|suffix| part.ends_with(suffix))
}

fn is_kubepods(part: &str) -> bool {
    part == "kubepods" || part == "kubepods.slice"
}

/// The part of a path below `kubepods[.slice]`: an optional QoS level, the pod, the container.
fn kubepods(rest: &[&str]) -> Option<PathOwner> {
    let rest = match rest.first() {
        Some(&qos) if is_qos(qos) => &rest[1..],
        _ => rest,
    };
    let (pod, container) = match rest {
        [pod] => (*pod, None),
        [pod, container] => (*pod, Some(*container)),
        _ => return None,
    };
    let uid = pod_uid(pod)?;
    let Some(leaf) = container else {
        return Some(PathOwner::Pod { uid });
    };
    let (runtime, id) = match scope_container(leaf) {
        Some((runtime, id)) => (Some(runtime), id),
        // The cgroupfs driver: the bare id (containerd, Docker) or `crio-<id>` (CRI-O).
        None => match leaf.strip_prefix("crio-") {
            Some(id) => (Some(Runtime::CriO), id),
            None => (None, leaf),
        },
    };
    is_container_id(id).then(|| PathOwner::Container {
        runtime,
        id: id.to_string(),
        pod_uid: Some(uid),
    })
}

/// `burstable`, `besteffort` (cgroupfs) or `kubepods-burstable.slice`... (systemd). Guaranteed
/// pods have no QoS level: they sit right under kubepods.
fn is_qos(part: &str) -> bool {
    matches!(
        part,
        "burstable" | "besteffort" | "kubepods-burstable.slice" | "kubepods-besteffort.slice"
    )
}

/// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid with _ for ->.slice` (systemd) -> the
/// pod UID as the API server spells it, with dashes.
fn pod_uid(part: &str) -> Option<String> {
    let uid = match part.strip_suffix(".slice") {
        Some(stem) => stem.rsplit_once("-pod")?.1.replace('_', "-"),
        None => part.strip_prefix("pod")?.to_string(),
    };
    let is_uid = uid.len() == 36
        && uid.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    is_uid.then_some(uid)
}

/// Docker, Podman, containerd (CRI) and CRI-O all name a container by 64 hex digits.
pub fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const UID: &str = "0b4d2c6e-8f1a-4b3c-9d7e-5a6f1e2d3c4b";
    const UID_: &str = "0b4d2c6e_8f1a_4b3c_9d7e_5a6f1e2d3c4b";

    fn container(runtime: Option<Runtime>, pod: bool) -> Option<PathOwner> {
        Some(PathOwner::Container {
            runtime,
            id: ID.into(),
            pod_uid: pod.then(|| UID.into()),
        })
    }

    fn unit(name: &str) -> Option<PathOwner> {
        Some(PathOwner::Unit(name.into()))
    }

    #[test]
    fn every_layout() {
        use Runtime::*;
        let pod = Some(PathOwner::Pod { uid: UID.into() });
        let table: Vec<(String, Option<PathOwner>)> = vec![
            // Host and systemd.
            ("/".into(), Some(PathOwner::Host)),
            ("".into(), Some(PathOwner::Host)),
            ("/init.scope".into(), unit("init.scope")),
            ("/system.slice/nginx.service".into(), unit("nginx.service")),
            ("/system.slice/system-getty.slice/getty@tty1.service".into(), unit("getty@tty1.service")),
            ("/user.slice/user-1000.slice/session-3.scope".into(), unit("session-3.scope")),
            ("/user.slice/user-1000.slice/user@1000.service/init.scope".into(), unit("user@1000.service")),
            ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-123.scope".into(), unit("app-firefox-123.scope")),
            ("/user.slice/user-1000.slice".into(), unit("user-1000.slice")),
            ("/system.slice".into(), unit("system.slice")),
            // Docker: cgroupfs and systemd drivers, rootless under the user's manager.
            (format!("/docker/{ID}"), container(Some(Docker), false)),
            (format!("/system.slice/docker-{ID}.scope"), container(Some(Docker), false)),
            (format!("/user.slice/user-1000.slice/user@1000.service/docker-{ID}.scope"), container(Some(Docker), false)),
            // The engine's own service is a unit, not a container.
            ("/system.slice/docker.service".into(), unit("docker.service")),
            // Podman: cgroupfs manager, systemd (machine.slice, pods, nested `container`).
            (format!("/libpod_parent/libpod-{ID}"), container(Some(Podman), false)),
            (format!("/machine.slice/libpod-{ID}.scope"), container(Some(Podman), false)),
            (format!("/machine.slice/libpod-{ID}.scope/container"), container(Some(Podman), false)),
            (format!("/machine.slice/machine-libpod_pod_{}.slice/libpod-{ID}.scope", &ID[..64]), container(Some(Podman), false)),
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), unit(&format!("libpod-conmon-{ID}.scope"))),
            // containerd outside Kubernetes: `/<namespace>/<id>`, and its systemd scope.
            (format!("/default/{ID}"), container(Some(Containerd), false)),
            (format!("/k8s.io/{ID}"), container(Some(Containerd), false)),
            (format!("/system.slice/cri-containerd-{ID}.scope"), container(Some(Containerd), false)),
            // CRI-O outside a pod, and its conmon helper.
            (format!("/system.slice/crio-{ID}.scope"), container(Some(CriO), false)),
            (format!("/system.slice/crio-conmon-{ID}.scope"), unit(&format!("crio-conmon-{ID}.scope"))),
            // Kubernetes, cgroupfs driver (cgroup v1 hierarchies and v2 alike).
            (format!("/kubepods/pod{UID}/{ID}"), container(None, true)),
            (format!("/kubepods/burstable/pod{UID}/{ID}"), container(None, true)),
            (format!("/kubepods/besteffort/pod{UID}/{ID}"), container(None, true)),
            (format!("/kubepods/burstable/pod{UID}/crio-{ID}"), container(Some(CriO), true)),
            (format!("/kubepods/burstable/pod{UID}"), pod.clone()),
            // Kubernetes, systemd driver: the pod UID with `_` for `-`.
            (format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"), container(Some(Containerd), true)),
            (format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"), container(Some(Containerd), true)),
            (format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"), container(Some(CriO), true)),
            (format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope"), container(Some(Docker), true)),
            (format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"), pod),
            // Kubernetes nested under another manager (kind, k3s in a container).
            (format!("/kubelet.slice/kubelet-kubepods.slice/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"), container(Some(Containerd), true)),
            // Unknown layouts: no owner rather than a wrong one.
            ("/trafficd-test-12-0-cgroup".into(), None),
            ("/docker/not-an-id".into(), None),
            (format!("/docker/{}", &ID[..12]), None),
            (format!("/docker/{ID}/extra"), None),
            (format!("/kubepods/burstable/pod{UID}/short"), None),
            ("/kubepods/burstable/podnot-a-uid/x".into(), None),
            ("/a/b".into(), None),
            (format!("/a/b/{ID}"), None),
            (format!("/docker-{ID}.scope.bak"), None),
        ];
        for (path, want) in table {
            assert_eq!(parse(&path), want, "{path}");
        }
    }
}
