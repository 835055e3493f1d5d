//! labeldb — an embedded data-labelling database engine.
//!
//! It keeps assets, versioned annotations with their lineage, an event log that is the
//! audit trail and change feed, and imports the common labelling formats. A [`Db`] is a
//! directory; open it, create a project with a schema of jobs, add assets and labels:
//!
//! ```
//! use labeldb::{Answer, Db, NewAsset, NewLabel, Schema, Status};
//!
//! # fn main() -> labeldb::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let db = Db::open(dir.path().join("db"))?;
//! let schema = Schema::from_json(
//!     r#"{"jobs": [{"name": "category", "kind": "classification", "classes": ["order", "complaint"]}]}"#,
//! )?;
//! db.create_project("admin", "emails", schema)?;
//! let id = db.add_asset("admin", "emails", NewAsset::text("email-1", "Please send 3 boxes"))?;
//! let label = db.add_label(id, NewLabel::annotation("alice").answer("category", Answer::class("order")))?;
//! assert_eq!(db.asset(id)?.status, Status::Labeled);
//! assert_eq!(db.history(id)?[0].id, label);
//! db.flush()?; // durable from here on
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod asset;
mod db;
pub mod demo;
mod error;
mod event;
mod external;
#[doc(hidden)]
pub mod fuzzing;
mod import;
mod index;
pub mod json;
mod label;
mod project;
pub mod query;
mod run;
pub mod snapshot;
mod stats;
mod store;
mod verify;

pub use asset::{
    Asset, AssetId, AssetKind, Content, Digest, MetaValue, NewAsset, Status, MAX_EXTERNAL_ID_LEN, MAX_META_KEY_LEN,
    MAX_META_VALUE_LEN, MAX_TEXT_LEN,
};
pub use db::{validate_new_asset, AddReport, Db, DbBuilder, Durability, IndexInfo, RecordRef};
pub use error::{Error, Result};
pub use event::{Action, Event, Seq};
pub use import::{parse_jsonl_line, to_byte_offset, to_codepoint, Format, ImportOptions, ImportReport};
pub use label::{Answer, BBox, Label, LabelId, LabelKind, NewLabel, Scores, Source, Span, Verdict};
pub use project::{Job, JobKind, Project, ProjectId, Role, Schema, Settings, MAX_CLASSES, MAX_NAME_LEN};
pub use query::{AssetSet, Facets, Filter, Hit, Page, Sort};
pub use snapshot::{Diff, Example, Examples, ModelInfo, Selection, Snapshot, SnapshotInfo};
pub use stats::Stats;
pub use store::FORMAT_VERSION;
pub use verify::VerifyReport;
