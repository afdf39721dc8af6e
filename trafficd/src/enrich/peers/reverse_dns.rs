//! Reverse DNS (`--reverse-dns`): PTR names for remote addresses, never on the drain's path.
//!
//! [`ReverseDns::name`] answers from a bounded LRU cache and never waits: an address it has
//! not seen is put on a bounded queue and named by a later call, once a background task got
//! the answer. A full queue drops the request (asked again on a later call), so a burst of
//! new peers costs memory bounded by the queue and the cache, never a stalled drain. Failed
//! lookups are cached too (negative caching), so a silent name server is asked about each
//! address once per `negative_ttl`, and its silence is logged once, not once per address.
//!
//! hickory-resolver does the lookups: it talks to a chosen server (tests point it at a local
//! socket) with per-query timeouts, which getnameinfo(3) offers neither of.

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroUsize,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts},
    net::runtime::TokioRuntimeProvider,
    proto::rr::RData,
    TokioResolver,
};
use lru::LruCache;
use tokio::sync::{mpsc, Semaphore};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// Limits of the reverse DNS source.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The name server to ask; `None` reads /etc/resolv.conf.
    pub server: Option<SocketAddr>,
    /// How long one query may take before the address is cached as unnamed.
    pub timeout: Duration,
    /// Addresses remembered, named or not.
    pub cache_size: NonZeroUsize,
    /// Addresses waiting for a lookup; more are dropped and asked for again later.
    pub queue: usize,
    /// Lookups in flight at once.
    pub concurrency: usize,
    /// How long an address without a name stays without one before it is asked again.
    pub negative_ttl: Duration,
    /// Bounds on how long a name is kept, whatever TTL the server gave it.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            server: None,
            timeout: Duration::from_secs(2),
            cache_size: NonZeroUsize::new(65_536).unwrap_or(NonZeroUsize::MIN),
            queue: 1024,
            concurrency: 8,
            negative_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
        }
    }
}

/// What is known of one address.
#[derive(Clone, Debug)]
enum Entry {
    /// Queued or being looked up.
    Pending,
    Named {
        name: Arc<str>,
        until: Instant,
    },
    Unnamed {
        until: Instant,
    },
    /// A name past its TTL, still shown while it is looked up again, so that names do not
    /// blink out of /top every TTL.
    Refreshing {
        name: Arc<str>,
    },
}

struct Shared {
    cache: Mutex<LruCache<IpAddr, Entry>>,
    /// Set while the server is failing, so the failure is logged once until it recovers.
    failing: AtomicBool,
    /// Failure lines logged, for tests and self-metrics.
    failures_logged: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn cache(&self) -> MutexGuard<'_, LruCache<IpAddr, Entry>> {
        // A panic while holding the lock cannot leave the cache half-updated (each access is
        // one LRU call), so a poisoned lock is safe to keep using.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Handle to the reverse DNS cache and its background lookups. Cheap to clone.
#[derive(Clone)]
pub struct ReverseDns {
    shared: Arc<Shared>,
    queue: mpsc::Sender<IpAddr>,
}

impl ReverseDns {
    /// Builds the resolver and starts the lookup task on `runtime`.
    pub fn start(config: DnsConfig, runtime: &tokio::runtime::Handle) -> Result<ReverseDns> {
        let (resolver, server) = resolver(&config)?;
        let shared = Arc::new(Shared {
            cache: Mutex::new(LruCache::new(config.cache_size)),
            failing: AtomicBool::new(false),
            failures_logged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let (queue, requests) = mpsc::channel(config.queue.max(1));
        let lookups = Lookups {
            resolver: Arc::new(resolver),
            server: Arc::from(server),
            config,
            shared: shared.clone(),
        };
        runtime.spawn(lookups.run(requests));
        Ok(ReverseDns { shared, queue })
    }

    /// The PTR name of `ip` if already known. Never waits: an address not asked about yet (or
    /// whose answer expired) is queued for the background task; an expired name is still
    /// given meanwhile.
    pub fn name(&self, ip: IpAddr) -> Option<Arc<str>> {
        let now = Instant::now();
        let mut cache = self.shared.cache();
        let stale = match cache.get(&ip) {
            Some(Entry::Pending) => return None,
            Some(Entry::Refreshing { name }) => return Some(name.clone()),
            Some(Entry::Named { name, until }) if *until > now => return Some(name.clone()),
            Some(Entry::Unnamed { until }) if *until > now => return None,
            Some(Entry::Named { name, .. }) => Some(name.clone()),
            _ => None,
        };
        if self.queue.try_send(ip).is_ok() {
            let waiting = match &stale {
                Some(name) => Entry::Refreshing { name: name.clone() },
                None => Entry::Pending,
            };
            cache.put(ip, waiting);
        } else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        stale
    }

    /// How many times a failing name server was logged.
    pub fn failures_logged(&self) -> u64 {
        self.shared.failures_logged.load(Ordering::Relaxed)
    }

    /// Requests dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// The resolver, and the server it asks as shown in a log line.
fn resolver(config: &DnsConfig) -> Result<(TokioResolver, String)> {
    let fail = |reason: String| Error::ResolverConfig { reason };
    let provider = TokioRuntimeProvider::default();
    let mut builder = match config.server {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let name_server = NameServerConfig::new(server.ip(), true, vec![udp]);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![name_server]),
                provider,
            )
        }
        None => TokioResolver::builder(provider).map_err(|e| fail(e.to_string()))?,
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.timeout = config.timeout;
    options.attempts = 1;
    // Names are cached here, with the negative entries and bounds this module needs.
    options.cache_size = 0;
    let server = match config.server {
        Some(server) => server.to_string(),
        None => "the name servers in /etc/resolv.conf".to_owned(),
    };
    let resolver = builder.build().map_err(|e| fail(e.to_string()))?;
    Ok((resolver, server))
}

/// The background side: takes queued addresses and looks them up, a few at a time.
struct Lookups {
    resolver: Arc<TokioResolver>,
    server: Arc<str>,
    config: DnsConfig,
    shared: Arc<Shared>,
}

impl Lookups {
    async fn run(self, mut requests: mpsc::Receiver<IpAddr>) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let this = Arc::new(self);
        while let Some(ip) = requests.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let this = this.clone();
            tokio::spawn(async move {
                let answer = this.lookup(ip).await;
                this.settle(ip, answer);
                drop(slot);
            });
        }
    }

    /// Caches the answer. Without one (the server failed), a name being refreshed is kept
    /// for another `negative_ttl`: a flaky server must not unname known peers.
    fn settle(&self, ip: IpAddr, answer: Option<Entry>) {
        let until = Instant::now() + self.config.negative_ttl;
        let mut cache = self.shared.cache();
        let entry = answer.unwrap_or_else(|| match cache.peek(&ip) {
            Some(Entry::Refreshing { name }) => Entry::Named {
                name: name.clone(),
                until,
            },
            _ => Entry::Unnamed { until },
        });
        cache.put(ip, entry);
    }

    /// What the server says of `ip`; `None` when it did not answer.
    async fn lookup(&self, ip: IpAddr) -> Option<Entry> {
        // The resolver has its own timeout; this one bounds the whole call whatever it does.
        let deadline = self.config.timeout + self.config.timeout / 2;
        let answer = tokio::time::timeout(deadline, self.resolver.reverse_lookup(ip)).await;
        let now = Instant::now();
        let unnamed = Entry::Unnamed {
            until: now + self.config.negative_ttl,
        };
        let lookup = match answer {
            Ok(Ok(lookup)) => lookup,
            Ok(Err(err)) if err.is_no_records_found() || err.is_nx_domain() => {
                self.answered();
                return Some(unnamed);
            }
            Ok(Err(err)) => {
                self.failed(ip, err.to_string());
                return None;
            }
            Err(_) => {
                self.failed(ip, format!("no answer within {deadline:?}"));
                return None;
            }
        };
        self.answered();
        let found = lookup
            .answers()
            .iter()
            .find_map(|record| match &record.data {
                RData::PTR(ptr) => Some((ptr.0.to_utf8(), record.ttl)),
                _ => None,
            });
        Some(match found {
            Some((name, ttl)) => {
                let ttl = Duration::from_secs(u64::from(ttl))
                    .clamp(self.config.min_ttl, self.config.max_ttl);
                Entry::Named {
                    name: Arc::from(name.trim_end_matches('.')),
                    until: now + ttl,
                }
            }
            None => unnamed,
        })
    }

    /// The server answered: if it was failing, say once that it is back.
    fn answered(&self) {
        if self.shared.failing.swap(false, Ordering::Relaxed) {
            info!(server = %self.server, "reverse DNS answers again");
        }
    }

    /// One line when the server starts failing, none for the addresses after it.
    fn failed(&self, ip: IpAddr, reason: String) {
        if !self.shared.failing.swap(true, Ordering::Relaxed) {
            self.shared.failures_logged.fetch_add(1, Ordering::Relaxed);
            let err = Error::ReverseDns {
                ip,
                server: self.server.to_string(),
                reason,
            };
            warn!("{err}");
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
