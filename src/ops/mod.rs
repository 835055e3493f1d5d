//! Operations: what an application does with a database — projects, assets, labels,
//! the audit trail, counts and the consistency check — each written through the engine's
//! one write path ([`crate::engine::Txn`]) and read through its record read layer.

pub(crate) mod assets;
mod audit;
pub(crate) mod labels;
mod projects;
pub(crate) mod stats;
pub(crate) mod verify;
