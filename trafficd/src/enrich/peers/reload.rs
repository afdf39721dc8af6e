//! Reloading the labels and OpenVPN status files when they change, on a thread of their own.
//!
//! Each file is polled by its identity (device, inode, length, modification time): a file
//! replaced by rename (how editors and OpenVPN write) or rewritten in place both show. A
//! version that cannot be read or does not parse is logged once and the last good one stays,
//! so an edit in progress or a status file caught mid-rewrite never removes names.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    thread,
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use tracing::{info, warn};

use super::{labels::Labels, openvpn::VpnClients, Snapshot};
use crate::error::Error;

/// What tells one version of a file from the next without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    length: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        let metadata = fs::metadata(path)?;
        Ok(Stamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            length: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

/// One file, the version last read and the problem last logged.
pub struct WatchedFile {
    path: PathBuf,
    seen: Option<Stamp>,
    problem: Option<String>,
    /// Problems logged, for tests.
    reports: u64,
}

impl WatchedFile {
    pub fn new(path: PathBuf) -> WatchedFile {
        WatchedFile {
            path,
            seen: None,
            problem: None,
            reports: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text if it changed since the last call. A file still changing while it was
    /// read is left for the next call.
    fn changed(&mut self) -> Result<Option<String>, Error> {
        let fail = |path: &Path, source| Error::PeerFile {
            path: path.to_owned(),
            source,
        };
        let before = Stamp::of(&self.path).map_err(|e| {
            // Read it whole again once it is back, even if it comes back unchanged.
            self.seen = None;
            fail(&self.path, e)
        })?;
        if self.seen == Some(before) {
            return Ok(None);
        }
        let text = fs::read_to_string(&self.path).map_err(|e| fail(&self.path, e))?;
        if Stamp::of(&self.path).ok() != Some(before) {
            return Ok(None);
        }
        self.seen = Some(before);
        Ok(Some(text))
    }

    /// Logs a problem unless it is the one logged last; says once when the file is good again.
    fn report(&mut self, outcome: Result<(), Error>) {
        match outcome {
            Ok(()) => {
                if self.problem.take().is_some() {
                    info!(path = %self.path.display(), "usable again, names reloaded");
                }
            }
            Err(err) => {
                let line = err.to_string();
                if self.problem.as_deref() != Some(line.as_str()) {
                    warn!("{line}");
                    self.reports += 1;
                    self.problem = Some(line);
                }
            }
        }
    }

    #[cfg(test)]
    pub fn reports(&self) -> u64 {
        self.reports
    }
}

/// Every name file and the last good version of each.
pub struct Reloader {
    labels: Option<(WatchedFile, Arc<Labels>)>,
    openvpn: Vec<(WatchedFile, Arc<VpnClients>)>,
}

impl Reloader {
    pub fn new(labels: Option<PathBuf>, openvpn: Vec<PathBuf>) -> Reloader {
        Reloader {
            labels: labels.map(|p| (WatchedFile::new(p), Arc::new(Labels::default()))),
            openvpn: openvpn
                .into_iter()
                .map(|p| (WatchedFile::new(p), Arc::new(VpnClients::default())))
                .collect(),
        }
    }

    /// Reads the files that changed; true if any name changed.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        if let Some((file, current)) = &mut self.labels {
            changed |= reload(file, current, |path, text| {
                Labels::parse(text).map_err(|e| Error::LabelsLine {
                    path: path.to_owned(),
                    line: e.line,
                    reason: e.reason,
                })
            });
        }
        for (file, current) in &mut self.openvpn {
            changed |= reload(file, current, |path, text| {
                VpnClients::parse(text).map_err(|reason| Error::OpenvpnStatus {
                    path: path.to_owned(),
                    reason,
                })
            });
        }
        changed
    }

    /// The names as of the last poll.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            labels: self.labels.as_ref().map(|(_, labels)| labels.clone()),
            openvpn: self.openvpn.iter().map(|(_, c)| c.clone()).collect(),
        }
    }

    /// Polls every `every` and publishes to `target`, until every handle to it is dropped.
    pub fn spawn(
        mut self,
        every: Duration,
        target: Weak<ArcSwap<Snapshot>>,
    ) -> std::io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("peer-names".into())
            .spawn(move || loop {
                thread::sleep(every);
                let Some(target) = target.upgrade() else {
                    return;
                };
                if self.poll() {
                    target.store(Arc::new(self.snapshot()));
                }
            })
    }

    #[cfg(test)]
    pub fn reports(&self) -> u64 {
        let labels = self.labels.as_ref().map_or(0, |(f, _)| f.reports());
        labels + self.openvpn.iter().map(|(f, _)| f.reports()).sum::<u64>()
    }
}

/// Replaces `current` with the file's new version if it changed and parses.
fn reload<T>(
    file: &mut WatchedFile,
    current: &mut Arc<T>,
    parse: impl FnOnce(&Path, &str) -> Result<T, Error>,
) -> bool {
    let outcome = file
        .changed()
        .and_then(|text| text.map(|t| parse(file.path(), &t)).transpose());
    match outcome {
        Ok(Some(parsed)) => {
            *current = Arc::new(parsed);
            file.report(Ok(()));
            true
        }
        Ok(None) => false,
        Err(err) => {
            file.report(Err(err));
            false
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
