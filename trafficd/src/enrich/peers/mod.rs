//! Peer names: who a remote address is, in the words the operator already uses.
//!
//! A flow's remote is an address; this folder turns it into a name from the sources a user
//! already keeps: a labels file (`--labels`), OpenVPN status files (`--openvpn-status`) and,
//! when asked, reverse DNS (`--reverse-dns`). Each source is one file here; every address also
//! gets its [`AddressClass`].

pub mod address_class;
pub mod labels;
pub mod openvpn;
pub mod reverse_dns;

pub use address_class::{is_external, AddressClass};
