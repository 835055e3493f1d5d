//! Assets: the items being labelled, their immutable content and their mutable state.
//!
//! An asset's content (text, or an image reference with its size) and its digest never
//! change after import. Its state — status, metadata, priority, honeypot and soft-deletion
//! flags — changes through [`crate::Db`] writes, each recorded in the event log.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::error::{Error, Result};
use crate::model::event::Seq;
use crate::model::label::NewLabel;
use crate::model::project::{ProjectId, Schema};

/// Dense identifier of an asset, unique in the database (roaring bitmaps index `u32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AssetId(pub u32);

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Longest external id accepted, in bytes.
pub const MAX_EXTERNAL_ID_LEN: usize = 512;
/// Largest text content accepted, in bytes.
pub const MAX_TEXT_LEN: usize = 16 << 20;
/// Longest metadata key accepted, in bytes.
pub const MAX_META_KEY_LEN: usize = 128;
/// Longest metadata string value accepted, in bytes.
pub const MAX_META_VALUE_LEN: usize = 4096;

/// The immutable content of an asset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Content {
    /// A text, stored inline. Span offsets index its UTF-8 bytes.
    Text(String),
    /// An image stored elsewhere, referenced by URI, with its size in pixels.
    Image {
        /// Where the image lives (path or URL).
        uri: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl Content {
    /// The text, if this is a text asset.
    pub fn text(&self) -> Option<&str> {
        match self {
            Content::Text(t) => Some(t),
            Content::Image { .. } => None,
        }
    }

    /// The asset kind of this content.
    pub fn kind(&self) -> AssetKind {
        match self {
            Content::Text(_) => AssetKind::Text,
            Content::Image { .. } => AssetKind::Image,
        }
    }

    /// The content digest: blake3 over a kind tag and the content bytes.
    pub fn digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        match self {
            Content::Text(t) => {
                h.update(b"text\0");
                h.update(t.as_bytes());
            }
            Content::Image { uri, width, height } => {
                h.update(b"image\0");
                h.update(&width.to_be_bytes());
                h.update(&height.to_be_bytes());
                h.update(uri.as_bytes());
            }
        }
        Digest(*h.finalize().as_bytes())
    }
}

/// Whether an asset is a text or an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssetKind {
    /// Text content.
    Text,
    /// Image content.
    Image,
}

/// A 32-byte blake3 digest, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A metadata value: metadata is mutable and indexed for `meta.key:value` queries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MetaValue {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::Str(s) => f.write_str(s),
            MetaValue::Num(n) => write!(f, "{n}"),
            MetaValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The workflow status of an asset (Kili's states).
///
/// Legal transitions (anything else, including a status to itself, is
/// [`Error::IllegalTransition`]):
///
/// | from        | to                                   |
/// |-------------|--------------------------------------|
/// | `TODO`      | `ONGOING`, `LABELED`                 |
/// | `ONGOING`   | `TODO`, `LABELED`                    |
/// | `LABELED`   | `TODO`, `ONGOING`, `TO_REVIEW`, `REVIEWED` |
/// | `TO_REVIEW` | `TODO`, `ONGOING`, `LABELED`, `REVIEWED` |
/// | `REVIEWED`  | `TODO`, `TO_REVIEW`                  |
///
/// Adding a human annotation moves a `TODO` or `ONGOING` asset to `LABELED` once it has
/// as many distinct human annotators as the project's consensus count, else to `ONGOING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    /// Not started.
    Todo,
    /// Started, not yet labelled by enough annotators.
    Ongoing,
    /// Labelled.
    Labeled,
    /// Waiting for a reviewer.
    ToReview,
    /// Reviewed.
    Reviewed,
}

impl Status {
    /// All statuses, in workflow order.
    pub const ALL: [Status; 5] = [
        Status::Todo,
        Status::Ongoing,
        Status::Labeled,
        Status::ToReview,
        Status::Reviewed,
    ];

    /// The canonical upper-case name (`TO_REVIEW`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Todo => "TODO",
            Status::Ongoing => "ONGOING",
            Status::Labeled => "LABELED",
            Status::ToReview => "TO_REVIEW",
            Status::Reviewed => "REVIEWED",
        }
    }

    /// Whether the transition `self → to` is legal (see the table on [`Status`]).
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Todo, Ongoing | Labeled)
                | (Ongoing, Todo | Labeled)
                | (Labeled, Todo | Ongoing | ToReview | Reviewed)
                | (ToReview, Todo | Ongoing | Labeled | Reviewed)
                | (Reviewed, Todo | ToReview)
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;

    /// Parses a status case-insensitively; `TO_REVIEW`, `to-review` and `toreview` all work.
    fn from_str(s: &str) -> Result<Status> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        Ok(match norm.as_str() {
            "TODO" => Status::Todo,
            "ONGOING" => Status::Ongoing,
            "LABELED" | "LABELLED" => Status::Labeled,
            "TOREVIEW" => Status::ToReview,
            "REVIEWED" => Status::Reviewed,
            _ => {
                return Err(Error::InvalidInput {
                    what: "status".into(),
                    reason: format!("unknown status {s:?} (expected TODO, ONGOING, LABELED, TO_REVIEW or REVIEWED)"),
                })
            }
        })
    }
}

/// An asset as stored: immutable content plus mutable state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    /// Its id.
    pub id: AssetId,
    /// The project it belongs to.
    pub project: ProjectId,
    /// Its id in the user's world, unique within the project.
    pub external_id: String,
    /// Immutable content.
    pub content: Content,
    /// Digest of the content.
    pub digest: Digest,
    /// Mutable metadata.
    pub meta: BTreeMap<String, MetaValue>,
    /// Workflow status.
    pub status: Status,
    /// Queue priority; higher is labelled first.
    pub priority: f64,
    /// Whether this asset is a honeypot (gold question for annotator quality).
    pub honeypot: bool,
    /// Soft-deleted assets leave queries but keep their history.
    pub deleted: bool,
    /// Number of label revisions written for this asset (the next revision number).
    pub revisions: u32,
    /// Bumped on every change of the asset's state, for optimistic concurrency.
    pub version: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: u64,
    /// The event that created the asset.
    pub created_seq: Seq,
}

/// An asset to add: what the caller supplies.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAsset {
    /// External id, unique within the project.
    pub external_id: String,
    /// Immutable content.
    pub content: Content,
    /// Initial metadata.
    pub meta: BTreeMap<String, MetaValue>,
    /// Initial status; `None` derives it from the labels (see [`Status`]).
    pub status: Option<Status>,
    /// Queue priority.
    pub priority: f64,
    /// Honeypot flag.
    pub honeypot: bool,
    /// Labels written with the asset, in order.
    pub labels: Vec<NewLabel>,
}

impl NewAsset {
    /// A text asset with no metadata and no labels.
    pub fn text(external_id: impl Into<String>, text: impl Into<String>) -> NewAsset {
        NewAsset::new(external_id, Content::Text(text.into()))
    }

    /// An image asset with no metadata and no labels.
    pub fn image(external_id: impl Into<String>, uri: impl Into<String>, width: u32, height: u32) -> NewAsset {
        NewAsset::new(
            external_id,
            Content::Image {
                uri: uri.into(),
                width,
                height,
            },
        )
    }

    fn new(external_id: impl Into<String>, content: Content) -> NewAsset {
        NewAsset {
            external_id: external_id.into(),
            content,
            meta: BTreeMap::new(),
            status: None,
            priority: 0.0,
            honeypot: false,
            labels: Vec::new(),
        }
    }

    /// Adds a label (builder style).
    pub fn with_label(mut self, label: NewLabel) -> NewAsset {
        self.labels.push(label);
        self
    }

    /// Sets a metadata value (builder style).
    pub fn with_meta(mut self, key: impl Into<String>, value: MetaValue) -> NewAsset {
        self.meta.insert(key.into(), value);
        self
    }
}

pub(crate) fn check_priority(p: f64) -> Result<()> {
    if !p.is_finite() {
        return Err(Error::invalid("priority", format!("{p} is not a finite number")));
    }
    Ok(())
}

pub(crate) fn check_meta(key: &str, value: Option<&MetaValue>) -> Result<()> {
    if key.is_empty() || key.len() > MAX_META_KEY_LEN || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            "metadata key",
            format!("{key:?} must be 1 to {MAX_META_KEY_LEN} bytes without spaces or control characters"),
        ));
    }
    match value {
        Some(MetaValue::Str(s)) if s.len() > MAX_META_VALUE_LEN => Err(Error::invalid(
            format!("metadata {key:?}"),
            format!("{} bytes, over the limit of {MAX_META_VALUE_LEN}", s.len()),
        )),
        Some(MetaValue::Num(n)) if !n.is_finite() => Err(Error::invalid(
            format!("metadata {key:?}"),
            format!("{n} is not a finite number"),
        )),
        _ => Ok(()),
    }
}

/// Checks a new asset and its labels against the schema and the documented limits.
pub fn validate_new_asset(schema: &Schema, a: &NewAsset) -> Result<()> {
    let ext = &a.external_id;
    if ext.is_empty() || ext.len() > MAX_EXTERNAL_ID_LEN || ext.chars().any(char::is_control) {
        return Err(Error::invalid(
            "external id",
            format!(
                "{:?} must be 1 to {MAX_EXTERNAL_ID_LEN} bytes without control characters",
                ext.chars().take(80).collect::<String>()
            ),
        ));
    }
    match &a.content {
        Content::Text(t) if t.len() > MAX_TEXT_LEN => {
            return Err(Error::invalid(
                format!("text of {ext:?}"),
                format!("{} bytes, over the limit of {MAX_TEXT_LEN}", t.len()),
            ))
        }
        Content::Image { uri, width, height } => {
            if uri.is_empty() || uri.len() > MAX_META_VALUE_LEN {
                return Err(Error::invalid(
                    format!("image uri of {ext:?}"),
                    format!("must be 1 to {MAX_META_VALUE_LEN} bytes"),
                ));
            }
            if *width == 0 || *height == 0 {
                return Err(Error::invalid(
                    format!("image of {ext:?}"),
                    format!("size {width}x{height} must be positive"),
                ));
            }
        }
        Content::Text(_) => {}
    }
    for (k, v) in &a.meta {
        check_meta(k, Some(v))?;
    }
    check_priority(a.priority)?;
    for l in &a.labels {
        if l.parent.is_some() || l.derived_from.is_some() {
            return Err(Error::invalid(
                format!("label of {ext:?}"),
                "labels written with a new asset cannot name a parent or derived-from revision",
            ));
        }
        l.validate(schema, ext, &a.content)?;
    }
    Ok(())
}
