//! Enrichment sources: what the drain joins to its counters.

// Built and tested on its own; the drain starts reading it when the enrichment sources share
// one interface.
#[allow(dead_code, unused_imports)]
pub mod containers;
