//! The shared map the enrichment tasks write and the drain reads: container id -> what a
//! runtime said about it, pod UID -> what the API server said. The drain holds a
//! [`ContainerDirectory`], which answers from its own cache and takes a read lock only when the
//! store changed since, so a busy engine never stalls a drain.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{
    cgroup_path::{self, PathOwner},
    ContainerMeta, Owner, OwnerKind, PodMeta, Runtime,
};

/// How long the name of a removed container is kept: its last counters are drained and shown
/// in windows after it has gone.
pub const KEEP_REMOVED: Duration = Duration::from_secs(600);
/// Bounds the memory of a host that churns containers: past this many removed containers the
/// oldest are forgotten first.
const MAX_REMOVED: usize = 4096;
/// Bounds a reader's cache; it is rebuilt from the store when it overflows.
const MAX_CACHED_PATHS: usize = 65536;

struct Entry {
    meta: Arc<ContainerMeta>,
    removed_at: Option<Instant>,
}

#[derive(Default)]
struct Store {
    containers: RwLock<HashMap<Arc<str>, Entry>>,
    pods: RwLock<HashMap<Arc<str>, Arc<PodMeta>>>,
    /// Bumped on every change, so readers know when their cached owners are stale.
    generation: AtomicU64,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A writer that panicked left a map that is still consistent (every write is one insert or
    // remove), so the poison is ignored rather than taking the drain down.
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A request to an engine task: look this container id up now.
pub type Lookup = Arc<str>;

/// The writing side, held by the engine and Kubernetes tasks.
#[derive(Clone, Default)]
pub struct Writer {
    store: Arc<Store>,
}

impl Writer {
    /// Adds or updates a container. Fields the new record lacks keep their known value: a
    /// `rename` event, say, may carry less than the `create` before it.
    pub fn upsert_container(&self, meta: ContainerMeta) {
        let mut containers = write(&self.store.containers);
        let meta = match containers.get(&meta.id) {
            Some(old) => merge(&old.meta, meta),
            None => meta,
        };
        let entry = Entry {
            meta: Arc::new(meta),
            removed_at: None,
        };
        containers.insert(entry.meta.id.clone(), entry);
        drop(containers);
        self.bump();
    }

    /// After a fresh list from the engine of `runtime`: its containers missing from `listed`
    /// were removed while the engine was out of reach.
    pub fn listed(&self, runtime: Runtime, listed: Vec<ContainerMeta>) {
        let now = Instant::now();
        let mut containers = write(&self.store.containers);
        let ids: std::collections::HashSet<Arc<str>> =
            listed.iter().map(|m| m.id.clone()).collect();
        for (id, entry) in containers.iter_mut() {
            if entry.meta.runtime == Some(runtime) && !ids.contains(id) {
                entry.removed_at.get_or_insert(now);
            }
        }
        drop(containers);
        for meta in listed {
            self.upsert_container(meta);
        }
    }

    pub fn knows_container(&self, id: &str) -> bool {
        read(&self.store.containers).contains_key(id)
    }

    /// Marks a container removed: its name is kept for [`KEEP_REMOVED`].
    pub fn container_removed(&self, id: &str) {
        let mut containers = write(&self.store.containers);
        if let Some(entry) = containers.get_mut(id) {
            entry.removed_at.get_or_insert_with(Instant::now);
        }
        prune(&mut containers, Instant::now());
        drop(containers);
        self.bump();
    }

    pub fn upsert_pod(&self, pod: PodMeta) {
        write(&self.store.pods).insert(pod.uid.clone(), Arc::new(pod));
        self.bump();
    }

    pub fn remove_pod(&self, uid: &str) {
        write(&self.store.pods).remove(uid);
        self.bump();
    }

    /// Replaces all pods after a fresh list.
    pub fn replace_pods(&self, pods: Vec<PodMeta>) {
        let pods = pods
            .into_iter()
            .map(|pod| (pod.uid.clone(), Arc::new(pod)))
            .collect();
        *write(&self.store.pods) = pods;
        self.bump();
    }

    fn bump(&self) {
        self.store.generation.fetch_add(1, Ordering::Release);
    }
}

fn merge(old: &ContainerMeta, new: ContainerMeta) -> ContainerMeta {
    let keep = |new: Option<Arc<str>>, old: &Option<Arc<str>>| new.or_else(|| old.clone());
    ContainerMeta {
        name: keep(new.name, &old.name),
        image: keep(new.image, &old.image),
        runtime: new.runtime.or(old.runtime),
        compose_project: keep(new.compose_project, &old.compose_project),
        compose_service: keep(new.compose_service, &old.compose_service),
        pod_name: keep(new.pod_name, &old.pod_name),
        pod_namespace: keep(new.pod_namespace, &old.pod_namespace),
        pod_uid: keep(new.pod_uid, &old.pod_uid),
        id: new.id,
    }
}

/// Drops removed containers older than [`KEEP_REMOVED`], and the oldest past [`MAX_REMOVED`].
fn prune(containers: &mut HashMap<Arc<str>, Entry>, now: Instant) {
    containers.retain(|_, e| e.removed_at.is_none_or(|at| now - at < KEEP_REMOVED));
    let mut removed: Vec<(Instant, Arc<str>)> = containers
        .iter()
        .filter_map(|(id, e)| e.removed_at.map(|at| (at, id.clone())))
        .collect();
    if removed.len() > MAX_REMOVED {
        removed.sort_unstable();
        for (_, id) in &removed[..removed.len() - MAX_REMOVED] {
            containers.remove(id);
        }
    }
}

/// The drain's read handle: cgroup path -> owner. Cheap to clone (each clone has its own cache).
#[derive(Clone)]
pub struct ContainerDirectory {
    store: Arc<Store>,
    /// One channel per engine task, with the runtime it serves.
    lookups: Vec<(Runtime, mpsc::Sender<Lookup>)>,
    cache: HashMap<Box<str>, Arc<Owner>>,
    cached_generation: u64,
    /// Ids already sent for lookup, so an id no engine knows is asked once.
    asked: std::collections::HashSet<Arc<str>>,
}

impl ContainerDirectory {
    pub fn new(writer: &Writer, lookups: Vec<(Runtime, mpsc::Sender<Lookup>)>) -> Self {
        ContainerDirectory {
            store: writer.store.clone(),
            lookups,
            cache: HashMap::new(),
            cached_generation: 0,
            asked: Default::default(),
        }
    }

    /// Bumped whenever an engine or the API server told something new.
    pub fn generation(&self) -> u64 {
        self.store.generation.load(Ordering::Acquire)
    }

    /// The owner of the cgroup at `path` (relative to the cgroup2 mount). Never blocks on a
    /// runtime: an id no engine has named yet is shown by its id, and looked up in the
    /// background.
    pub fn owner(&mut self, path: &str) -> Arc<Owner> {
        let generation = self.store.generation.load(Ordering::Acquire);
        if generation != self.cached_generation || self.cache.len() >= MAX_CACHED_PATHS {
            self.cache.clear();
            self.cached_generation = generation;
        }
        if let Some(owner) = self.cache.get(path) {
            return owner.clone();
        }
        let owner = Arc::new(self.resolve(path));
        self.cache.insert(path.into(), owner.clone());
        owner
    }

    fn resolve(&mut self, path: &str) -> Owner {
        match cgroup_path::parse(path) {
            None => Owner::of_kind(OwnerKind::Unknown),
            Some(PathOwner::Host) => Owner::of_kind(OwnerKind::Host),
            Some(PathOwner::Unit(unit)) => Owner {
                unit: Some(unit.into()),
                ..Owner::of_kind(OwnerKind::Unit)
            },
            Some(PathOwner::Pod { uid }) => {
                let mut owner = Owner::of_kind(OwnerKind::Pod);
                self.join_pod(&mut owner, uid.into());
                owner
            }
            Some(PathOwner::Container {
                runtime,
                id,
                pod_uid,
            }) => self.container(runtime, &id, pod_uid),
        }
    }

    fn container(&mut self, runtime: Option<Runtime>, id: &str, pod_uid: Option<String>) -> Owner {
        let meta = read(&self.store.containers)
            .get(id)
            .map(|entry| entry.meta.clone());
        let id: Arc<str> = Arc::from(id);
        let mut owner = Owner {
            runtime,
            container_short_id: Some(Arc::from(&id[..12])),
            container_id: Some(id.clone()),
            ..Owner::of_kind(OwnerKind::Container)
        };
        match meta {
            Some(meta) => {
                owner.runtime = owner.runtime.or(meta.runtime);
                owner.container_name = meta.name.clone();
                owner.image = meta.image.clone();
                owner.compose_project = meta.compose_project.clone();
                owner.compose_service = meta.compose_service.clone();
                owner.pod_name = meta.pod_name.clone();
                owner.namespace = meta.pod_namespace.clone();
                owner.pod_uid = meta.pod_uid.clone();
            }
            None => self.ask(runtime, id),
        }
        if let Some(uid) = pod_uid.map(Arc::from).or(owner.pod_uid.clone()) {
            self.join_pod(&mut owner, uid);
        }
        owner
    }

    /// Pod name, namespace and labels from the API server, where it answered.
    fn join_pod(&self, owner: &mut Owner, uid: Arc<str>) {
        if let Some(pod) = read(&self.store.pods).get(&uid) {
            owner.pod_name = Some(pod.name.clone());
            owner.namespace = Some(pod.namespace.clone());
            owner.pod_labels = Some(pod.labels.clone());
        }
        owner.pod_uid = Some(uid);
    }

    /// Sends an unknown id to the engines that may know it, once. A full channel drops the
    /// request: the engine is busy, and its event stream will name the container anyway.
    fn ask(&mut self, runtime: Option<Runtime>, id: Arc<str>) {
        if self.asked.len() >= MAX_CACHED_PATHS {
            self.asked.clear();
        }
        if !self.asked.insert(id.clone()) {
            return;
        }
        for (serves, sender) in &self.lookups {
            if runtime.is_none_or(|r| r == *serves) {
                let _ = sender.try_send(id.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const UID: &str = "0b4d2c6e-8f1a-4b3c-9d7e-5a6f1e2d3c4b";

    fn meta() -> ContainerMeta {
        ContainerMeta {
            id: ID.into(),
            name: Some("web".into()),
            image: Some("local/busybox:1".into()),
            runtime: Some(Runtime::Docker),
            ..Default::default()
        }
        .with_labels([
            ("com.docker.compose.project", "shop"),
            ("com.docker.compose.service", "frontend"),
        ])
    }

    #[test]
    fn unknown_id_is_shown_by_id_and_looked_up_once() {
        let writer = Writer::default();
        let (tx, mut rx) = mpsc::channel(4);
        let mut dir = ContainerDirectory::new(&writer, vec![(Runtime::Docker, tx)]);
        let path = format!("/docker/{ID}");
        let owner = dir.owner(&path);
        assert_eq!(owner.display_name(), Some(&ID[..12]));
        assert_eq!(owner.container_name, None);
        assert_eq!(rx.try_recv().as_deref(), Ok(ID));
        // The same id again, after the cache was invalidated, is not asked twice.
        writer.bump();
        dir.owner(&path);
        assert!(rx.try_recv().is_err());
        // The engine answers: the next read sees the name.
        writer.upsert_container(meta());
        let owner = dir.owner(&path);
        assert_eq!(owner.display_name(), Some("web"));
        assert_eq!(owner.image.as_deref(), Some("local/busybox:1"));
        assert_eq!(owner.compose_project.as_deref(), Some("shop"));
        assert_eq!(owner.compose_service.as_deref(), Some("frontend"));
        assert_eq!(owner.runtime, Some(Runtime::Docker));
    }

    #[test]
    fn other_runtimes_are_not_asked() {
        let writer = Writer::default();
        let (tx, mut rx) = mpsc::channel(4);
        let mut dir = ContainerDirectory::new(&writer, vec![(Runtime::Podman, tx)]);
        dir.owner(&format!("/docker/{ID}"));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn removed_containers_keep_their_name_for_a_while() {
        let writer = Writer::default();
        writer.upsert_container(meta());
        writer.container_removed(ID);
        let mut dir = ContainerDirectory::new(&writer, vec![]);
        assert_eq!(
            dir.owner(&format!("/docker/{ID}")).display_name(),
            Some("web")
        );

        let mut containers = write(&writer.store.containers);
        let now = Instant::now();
        prune(&mut containers, now + KEEP_REMOVED);
        assert!(containers.is_empty());
    }

    #[test]
    fn removed_containers_are_bounded() {
        let mut containers = HashMap::new();
        let start = Instant::now();
        for i in 0..MAX_REMOVED + 10 {
            let id: Arc<str> = Arc::from(format!("{i:064x}"));
            let entry = Entry {
                meta: Arc::new(ContainerMeta::default()),
                removed_at: Some(start + Duration::from_millis(i as u64)),
            };
            containers.insert(id, entry);
        }
        prune(&mut containers, start + Duration::from_secs(60));
        assert_eq!(containers.len(), MAX_REMOVED);
        assert!(!containers.contains_key(format!("{:064x}", 9).as_str()));
        assert!(containers.contains_key(format!("{:064x}", 10).as_str()));
    }

    #[test]
    fn pods_join_by_uid() {
        let writer = Writer::default();
        let labels = [("app".to_string(), "shop".to_string())]
            .into_iter()
            .collect();
        writer.upsert_pod(PodMeta {
            uid: UID.into(),
            name: "shop-7d9f".into(),
            namespace: "prod".into(),
            labels: Arc::new(labels),
        });
        let mut dir = ContainerDirectory::new(&writer, vec![]);
        let owner = dir.owner(&format!("/kubepods/burstable/pod{UID}/{ID}"));
        assert_eq!(owner.kind, OwnerKind::Container);
        assert_eq!(owner.pod_name.as_deref(), Some("shop-7d9f"));
        assert_eq!(owner.namespace.as_deref(), Some("prod"));
        assert_eq!(owner.pod_uid.as_deref(), Some(UID));
        assert_eq!(
            owner.pod_labels.as_ref().map(|l| l["app"].as_str()),
            Some("shop")
        );
        let pod = dir.owner(&format!("/kubepods/burstable/pod{UID}"));
        assert_eq!(pod.display_name(), Some("shop-7d9f"));
        writer.remove_pod(UID);
        let owner = dir.owner(&format!("/kubepods/burstable/pod{UID}/{ID}"));
        assert_eq!(owner.pod_name, None);
        assert_eq!(owner.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn host_units_and_unknown() {
        let mut dir = ContainerDirectory::new(&Writer::default(), vec![]);
        assert_eq!(dir.owner("/").display_name(), Some("host"));
        assert_eq!(
            dir.owner("/system.slice/nginx.service").display_name(),
            Some("nginx.service")
        );
        assert_eq!(dir.owner("/trafficd-test-1").kind, OwnerKind::Unknown);
        assert_eq!(dir.owner("/trafficd-test-1").display_name(), None);
    }
}
