//! The one error type of the library. Every variant names what failed.

use std::fmt;
use std::path::PathBuf;

use crate::model::asset::{AssetId, Status};
use crate::model::label::LabelId;

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in labeldb.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage engine failed (I/O, or sled's or tantivy's own error).
    #[error("storage error: {source}")]
    Storage {
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Another process has the database open (one process at a time holds its lock).
    #[error("database {} is in use by another process", path.display())]
    InUse {
        /// The database directory.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("I/O error on {path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        cause: std::io::Error,
    },
    /// An id space is used up.
    #[error("the database is full: it holds at most {limit} {what}")]
    DatabaseFull {
        /// The ids (`asset ids`, `snapshot ids`).
        what: &'static str,
        /// How many there can be.
        limit: u64,
    },
    /// Access control refused a user's call ([`Session`](crate::Session)); nothing was
    /// written but an `AccessDenied` event.
    #[error("{user:?} may not {action} {resource}")]
    Denied {
        /// The user.
        user: String,
        /// What they tried (`annotate`, `read`, `manage-members`, ...).
        action: String,
        /// What they tried it on (`asset 42`, `project "mail"`).
        resource: String,
    },
    /// A stored record failed its checksum or could not be decoded.
    #[error("data corruption at key {key}: {reason}")]
    Corruption {
        /// The key, printed readably.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The database was written by a newer labeldb.
    #[error("database format version {found} is newer than this labeldb supports ({supported}); upgrade labeldb")]
    FormatTooNew {
        /// Version in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// No project has this name.
    #[error("unknown project {0:?}")]
    UnknownProject(String),
    /// A project with this name already exists.
    #[error("project {0:?} already exists")]
    ProjectExists(String),
    /// The schema is not valid.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// No asset has this id.
    #[error("unknown asset {0}")]
    UnknownAsset(AssetId),
    /// No asset has this external id in the project.
    #[error("unknown asset {external_id:?} in project {project:?}")]
    UnknownExternalId {
        /// Project name.
        project: String,
        /// External id looked up.
        external_id: String,
    },
    /// No label has this id.
    #[error("unknown label {0}")]
    UnknownLabel(LabelId),
    /// A label answers a job the schema does not have.
    #[error("asset {asset:?}: unknown job {job:?}")]
    UnknownJob {
        /// External id of the asset.
        asset: String,
        /// The job named.
        job: String,
    },
    /// A label uses a class its job does not have.
    #[error("asset {asset:?}, job {job:?}: unknown class {class:?}")]
    UnknownClass {
        /// External id of the asset.
        asset: String,
        /// The job.
        job: String,
        /// The class named.
        class: String,
    },
    /// An answer or score does not fit its job (wrong shape, bad span or box, bad score).
    #[error("asset {asset:?}, job {job:?}{}: {reason}", class.as_ref().map(|c| format!(", class {c:?}")).unwrap_or_default())]
    InvalidAnswer {
        /// External id of the asset.
        asset: String,
        /// The job.
        job: String,
        /// The class concerned, when there is one.
        class: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A status change that the transition table forbids.
    #[error("asset {asset:?}: illegal status transition {from} -> {to}")]
    IllegalTransition {
        /// External id of the asset.
        asset: String,
        /// Current status.
        from: Status,
        /// Requested status.
        to: Status,
    },
    /// An asset with this external id already exists in the project
    /// ([`Db::add_asset`](crate::Db::add_asset); `add_assets` skips it instead).
    #[error("external id {external_id:?} already exists in project {project:?}")]
    AssetExists {
        /// Project name.
        project: String,
        /// The external id.
        external_id: String,
    },
    /// A purge was refused: snapshots hold the asset.
    #[error("asset {asset:?} is held by snapshots {}", snapshots.join(", "))]
    HeldBySnapshots {
        /// External id of the asset.
        asset: String,
        /// The snapshots holding it, by name.
        snapshots: Vec<String>,
    },
    /// A snapshot (or a tag) of this name already exists in the project.
    #[error("snapshot {name:?} already exists in project {project:?}")]
    SnapshotExists {
        /// Project name.
        project: String,
        /// The snapshot name.
        name: String,
    },
    /// This model version is already registered in the project.
    #[error("model {model} is already registered in project {project:?}")]
    ModelExists {
        /// Project name.
        project: String,
        /// `NAME@VERSION`.
        model: String,
    },
    /// The user is not a member of the project.
    #[error("{user:?} is not a member of project {project:?}")]
    UnknownMember {
        /// Project name.
        project: String,
        /// The user.
        user: String,
    },
    /// The change would leave a project that has admins without one.
    #[error("{user:?} is the last admin of project {project:?}: make another member admin first")]
    LastAdmin {
        /// Project name.
        project: String,
        /// The admin.
        user: String,
    },
    /// The asset is soft-deleted; it must be restored before it changes.
    #[error("asset {0:?} is deleted")]
    AssetDeleted(String),
    /// Optimistic concurrency: the asset changed since the caller read it.
    #[error(
        "conflict on asset {asset:?}: expected {what} {}, found {}",
        fmt_rev(expected),
        fmt_rev(actual)
    )]
    Conflict {
        /// External id of the asset.
        asset: String,
        /// What was compared (`latest revision of alice`, `version`).
        what: String,
        /// The label the caller expected.
        expected: Option<LabelId>,
        /// The label stored.
        actual: Option<LabelId>,
    },
    /// The same external id appears twice in one import.
    #[error("duplicate external id {0:?} in this import")]
    DuplicateExternalId(String),
    /// A value is malformed or over a documented limit.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// The field or value.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// An import stopped at a bad line; nothing of its batch was written.
    #[error("{file}:{line}: {cause}")]
    Import {
        /// The file name.
        file: String,
        /// 1-based line number.
        line: u64,
        /// The cause.
        cause: Box<Error>,
    },
    /// One item of a batch was refused, so the whole batch was; nothing was written.
    #[error("item {index} of the batch: {cause}")]
    InBatch {
        /// 0-based position of the item in the batch.
        index: usize,
        /// Why it was refused.
        cause: Box<Error>,
    },
    /// A query could not be parsed.
    #[error("query error at position {pos}: expected {expected}, found {found}")]
    Query {
        /// 0-based byte offset in the query.
        pos: usize,
        /// What the parser expected.
        expected: String,
        /// What it found.
        found: String,
    },
    /// Full-text search is not available in this build.
    #[error("full-text search is not available yet: {0:?} needs the text index")]
    TextSearchUnavailable(String),
}

fn fmt_rev(r: &Option<LabelId>) -> String {
    match r {
        Some(id) => id.to_string(),
        None => "none".to_string(),
    }
}

impl Error {
    /// Builds an [`Error::Storage`] from an error of the storage layer or a description.
    pub(crate) fn storage(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Error {
        Error::Storage { source: source.into() }
    }

    /// Builds an [`Error::InvalidInput`].
    pub(crate) fn invalid(what: impl fmt::Display, reason: impl fmt::Display) -> Error {
        Error::InvalidInput {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}
