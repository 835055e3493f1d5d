//! The data model, at the bottom of the layers: what labeldb stores and what its API
//! speaks of — assets, label revisions, projects and schemas, events, label-selection
//! policies, and the one error type. Nothing here reads or writes storage.

pub(crate) mod asset;
pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod label;
pub(crate) mod project;
pub(crate) mod selection;
