//! What every container runtime's client gives the engine task: its containers, one by id,
//! and a stream of their events. Each runtime implements [`RuntimeClient`] in a file of its own.

use std::{future::Future, path::Path, sync::Arc};

use futures_util::stream::BoxStream;

use super::{ContainerMeta, Runtime};

/// What a runtime's event means for the directory.
#[derive(Debug, PartialEq, Eq)]
pub enum ContainerEvent {
    /// Created, started or renamed: its metadata as the event carried it.
    Appeared(ContainerMeta),
    /// Created, with an event that carries only the id: the engine is asked for the rest.
    Created(Arc<str>),
    Removed(Arc<str>),
}

/// A stream of a runtime's container events; `Ok(None)` for events that change nothing.
pub type Events = BoxStream<'static, Result<Option<ContainerEvent>, String>>;

/// One runtime's API, as the engine task uses it. Errors are the engine's own words: the task
/// puts them in one line with the runtime and the socket.
pub trait RuntimeClient: Sized + Send + Sync {
    fn connect(
        socket: &Path,
        runtime: Runtime,
    ) -> impl Future<Output = Result<Self, String>> + Send;
    /// Every container it knows, running or not: a stopped one may still have counters to
    /// drain.
    fn list(&self) -> impl Future<Output = Result<Vec<ContainerMeta>, String>> + Send;
    /// One container, `None` when the engine does not know the id.
    fn inspect(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ContainerMeta>, String>> + Send;
    /// Container events from `since` (unix seconds) on where the API can replay them, else from
    /// now: the task subscribes before it lists, so nothing in between is missed.
    fn events(&self, since: i64) -> impl Future<Output = Result<Events, String>> + Send;
}
