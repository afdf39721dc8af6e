//! The HTTP API's types, defined once for both ends: the server (`http`) builds and
//! serializes them, `trafficd top` (`cli`, `table`) parses its flags into them and
//! deserializes the answers. A field renamed here is renamed on the wire and in the CLI
//! together.

mod choices;
mod error;
mod explain;
mod exposure;
mod health;
mod interface;
mod owner;
mod query;
mod top;

pub use choices::{By, Sort, Window};
pub use error::{ApiError, ErrorBody};
pub use explain::{
    ExplainedFlow, ExplainedHop, ExplainedInterface, ExplainedProcess, Explanation, InboundPeer,
    WindowRates,
};
pub use exposure::{ExposedListener, ExposedPeer, ExposureResponse};
pub use health::Health;
pub use interface::{FlowPath, InterfaceItem, NatHop, Parts, Split, Tuple, UnattributedParts};
pub use owner::Owner;
pub use query::{Limit, TopQuery, MAX_LIMIT};
pub use top::{
    CgroupItem, ContainerItem, FlowItem, Item, Items, PeerItem, ProcessItem, Rates, RemoteItem,
    TopResponse,
};
