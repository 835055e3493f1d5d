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

mod access;
mod engine;
mod formats;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod model;
mod ops;
pub mod query;
mod rng;
mod snapshot;
mod store;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use access::policy::{grant, policy_table, Grant, Operation};
pub use access::session::Session;
#[cfg(feature = "testing")]
pub use engine::RecordRef;
pub use engine::{compact, CompactReport, Db, DbBuilder, DiskUsage, Durability, IndexInfo};
#[cfg(feature = "testing")]
#[doc(hidden)]
pub use engine::{compact_until, CompactStage};
pub use formats::json::{asset_json, event_json, facets_json, label_json, meta_json, project_json};
pub use formats::{
    parse_jsonl_line, to_byte_offset, to_codepoint, Format, ImportOptions, ImportReport, LabelImportReport,
};
pub use model::asset::{
    validate_new_asset, Asset, AssetId, AssetKind, Content, Digest, MetaValue, NewAsset, Status, MAX_EXTERNAL_ID_LEN,
    MAX_META_KEY_LEN, MAX_META_VALUE_LEN, MAX_TEXT_LEN,
};
pub use model::error::{Error, Result};
pub use model::event::{Action, Event, Seq};
pub use model::label::{Answer, BBox, Label, LabelId, LabelKind, NewLabel, Scores, Source, Span, Verdict};
pub use model::project::{Job, JobKind, Member, Project, ProjectId, Role, Schema, Settings, MAX_CLASSES, MAX_NAME_LEN};
pub use model::selection::Selection;
pub use ops::assets::AddReport;
pub use ops::labels::LabelReport;
pub use ops::stats::{stats_json, Stats};
pub use ops::verify::{Problem, ProblemKind, VerifyReport};
pub use query::{AssetSet, Facets, Filter, Hit, Page, Sort};
pub use snapshot::{
    diff_json, snapshot_json, Diff, Example, Examples, ModelInfo, Ratios, Relabel, Shard, Snapshot, SnapshotInfo,
};
pub use store::FORMAT_VERSION;
