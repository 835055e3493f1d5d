//! The crash child's side of the crash suite (tests/it/crash.rs) shared with its parent:
//! the operations it plans, the expected-state file it writes them to, and the lines it
//! prints on stdout.
//!
//! Before each operation the child appends a [`Line::Start`] to the expected-state file,
//! after it (and `Db::flush`) a [`Line::Ack`]; each line is written with one `write` and
//! synced before the child goes on, so the file outlives a SIGKILL and tells the parent
//! which operation was in flight.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::asset::{MetaValue, NewAsset, Status};
use crate::model::label::{Answer, LabelId, NewLabel};

/// An error of the crash child or of its parent's checks.
pub type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What the child prints once its database is open.
pub const READY: &str = "ready";
/// What the child prints once the start of operation `n` is on disk: `started n`.
pub const STARTED: &str = "started ";
/// What the checkpoint scenario prints before the `Db::flush` of operation `n`: `flushing n`.
pub const FLUSHING: &str = "flushing ";
/// What the child prints once operation `n` is acknowledged on disk: `acked n`.
pub const ACKED: &str = "acked ";

/// The project of the random, label, snapshot and checkpoint scenarios.
pub const PROJECT: &str = "crash";
/// Its schema.
pub const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["ham", "spam", "other"]},
    {"name": "tags", "kind": "multi-classification", "classes": ["short", "long", "url", "money"]}
]}"#;
/// The classes of `category`.
pub const CATEGORIES: [&str; 3] = ["ham", "spam", "other"];
/// The classes of `tags`.
pub const TAGS: [&str; 4] = ["short", "long", "url", "money"];
/// The annotators of planned labels.
pub const ANNOTATORS: [&str; 3] = ["ann0", "ann1", "ann2"];
/// The queries of planned snapshots.
pub const SNAPSHOT_QUERIES: [&str; 4] = [
    "status:reviewed",
    "status:to_review",
    "meta.flag:true",
    "label.category:spam AND status:labeled",
];

/// The project of the import scenario.
pub const BULK: &str = "bulk";

/// An asset the child adds (by `add_assets` or by importing JSONL).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedAsset {
    /// Its external id.
    pub ext: String,
    /// Index of its text in the texts (the SMS Spam Collection).
    pub sms: usize,
    /// The category of the annotation written with it, if any.
    pub category: Option<String>,
}

impl PlannedAsset {
    /// The asset as `add_assets` takes it (its label is by `adder`).
    pub fn new_asset(&self, texts: &[String]) -> NewAsset {
        let asset = NewAsset::text(self.ext.as_str(), texts[self.sms].as_str());
        match &self.category {
            Some(c) => asset.with_label(NewLabel::annotation("adder").answer("category", Answer::class(c.as_str()))),
            None => asset,
        }
    }

    /// Its JSONL line (its label is by `importer`, with a `src` meta).
    pub fn jsonl_line(&self, texts: &[String]) -> String {
        let labels: Vec<serde_json::Value> = self
            .category
            .iter()
            .map(|c| serde_json::json!({"author": "importer", "answers": {"category": c}}))
            .collect();
        serde_json::json!({"id": self.ext, "text": texts[self.sms], "meta": {"src": "jsonl"}, "labels": labels})
            .to_string()
    }
}

/// A label the child writes: a human annotation, or a prediction by `clf@1`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedLabel {
    /// The annotator; `None` for a prediction.
    pub annotator: Option<String>,
    /// The `category` answer.
    pub category: String,
    /// The `tags` answer.
    pub tags: Vec<String>,
    /// The prediction's score of `category`.
    pub score: f32,
}

impl PlannedLabel {
    /// The label as `add_label` takes it.
    pub fn new_label(&self) -> NewLabel {
        let answers = |l: NewLabel| {
            l.answer("category", Answer::class(self.category.as_str()))
                .answer("tags", Answer::Classes(self.tags.clone()))
        };
        match &self.annotator {
            Some(user) => answers(NewLabel::annotation(user.as_str())),
            None => answers(NewLabel::prediction("clf", "1")).score("category", self.category.as_str(), self.score),
        }
    }
}

/// One operation of the child.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Op {
    /// `add_assets`.
    Add {
        /// The assets, in one call.
        assets: Vec<PlannedAsset>,
    },
    /// `import_reader` of their JSONL lines.
    Import {
        /// The assets, in file order.
        assets: Vec<PlannedAsset>,
        /// The import's batch size.
        batch: usize,
    },
    /// One batch of the import scenario's `import_file`: lines `from..from + count` of
    /// the generated file.
    ImportBatch {
        /// The first line (0-based).
        from: u64,
        /// Lines in the batch.
        count: u64,
    },
    /// `add_label`.
    Label {
        /// The asset's external id.
        asset: String,
        /// The label.
        label: PlannedLabel,
    },
    /// `add_labels` of human annotations, on distinct assets, in one batch.
    Labels {
        /// The assets' external ids and their labels.
        items: Vec<(String, PlannedLabel)>,
    },
    /// `set_status`.
    Status {
        /// The asset's external id.
        asset: String,
        /// The new status.
        to: Status,
    },
    /// `set_meta`.
    Meta {
        /// The asset's external id.
        asset: String,
        /// The key.
        key: String,
        /// The value; `None` removes the key.
        value: Option<MetaValue>,
    },
    /// `set_member` (never an admin, so never refused as the last admin's change).
    Member {
        /// The user.
        user: String,
        /// The role's name.
        role: String,
        /// The scope query.
        scope: Option<String>,
    },
    /// A status change through the session of a user who is no member: refused, with an
    /// `AccessDenied` event and nothing else written.
    Denied {
        /// The asset's external id.
        asset: String,
    },
    /// `create_snapshot`.
    Snapshot {
        /// Its name.
        name: String,
        /// Its query.
        query: String,
        /// Its selection policy.
        selection: String,
    },
    /// Label and status writes on distinct assets, one by one, then one `Db::flush` (the
    /// index checkpoint).
    Writes {
        /// The writes ([`Op::Label`] and [`Op::Status`]), each on its own asset.
        ops: Vec<Op>,
    },
}

/// What the child saw when an operation returned.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "ack")]
pub enum Ack {
    /// Assets added.
    Added {
        /// How many.
        count: usize,
    },
    /// A label written.
    Label {
        /// Its id.
        id: LabelId,
        /// The asset's status after it.
        status: Status,
    },
    /// An `add_labels` batch written: per item, the label's id, or `None` where it
    /// repeated the latest of its source and was not written.
    Labels {
        /// One per item.
        ids: Vec<Option<LabelId>>,
    },
    /// Done, nothing to report.
    Done,
    /// A snapshot created.
    Snapshot(SnapshotSeen),
    /// Each write of an [`Op::Writes`].
    Writes {
        /// One acknowledgement per write.
        acks: Vec<Ack>,
    },
}

/// A snapshot as the child saw it after creating it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSeen {
    /// Its name.
    pub name: String,
    /// Its digest.
    pub digest: String,
    /// Its number of assets.
    pub assets: u64,
    /// External id and label of the first few examples.
    pub examples: Vec<(String, LabelId)>,
}

impl SnapshotSeen {
    /// The snapshot `name` of `project` as it reads now.
    pub fn read(db: &crate::engine::Db, project: &str, name: &str) -> crate::model::error::Result<SnapshotSeen> {
        let snap = db.snapshot(project, name)?;
        let examples = (0..snap.len().min(3))
            .map(|i| snap.get(i).map(|e| (e.external_id, e.label)))
            .collect::<crate::model::error::Result<_>>()?;
        Ok(SnapshotSeen {
            name: name.to_string(),
            digest: snap.info().digest.to_string(),
            assets: snap.info().assets,
            examples,
        })
    }
}

/// A line of the expected-state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum Line {
    /// Operation `n` starts.
    Start {
        /// Its number, counted over all the children of a test.
        n: u64,
        /// The operation.
        op: Op,
    },
    /// Operation `n` returned and was flushed.
    Ack {
        /// Its number.
        n: u64,
        /// What the child saw.
        ack: Ack,
    },
}

/// The child's side of the expected-state file: every line is synced before the child
/// goes on.
pub struct StateLog(File);

impl StateLog {
    /// Opens the file to append to it.
    pub fn open(path: &Path) -> Res<StateLog> {
        Ok(StateLog(OpenOptions::new().create(true).append(true).open(path)?))
    }

    /// Appends a line and syncs it.
    pub fn record(&mut self, line: &Line) -> Res<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        // One write call per line: a kill leaves at most a partial last line.
        self.0.write_all(text.as_bytes())?;
        self.0.sync_data()?;
        Ok(())
    }
}

/// The complete lines of the expected-state file (a partial last line was never written).
pub fn read_state(path: &Path) -> Res<Vec<Line>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.pop(); // what follows the last newline: empty, or a line cut by the kill
    lines
        .into_iter()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("state line {l:?}: {e}").into()))
        .collect()
}

/// Line `i` of the import scenario's generated file: external id `imp-{i}`, an SMS text,
/// a `line` meta and a `gold` annotation (and a `clf@2` prediction on every 7th).
pub fn bulk_line(i: u64, texts: &[String]) -> String {
    let category = if i.is_multiple_of(9) { "spam" } else { "ham" };
    let mut labels = vec![serde_json::json!({"author": "gold", "answers": {"category": category}})];
    if i.is_multiple_of(7) {
        labels.push(serde_json::json!({"model": "clf@2", "answers": {"category": "spam"},
                                       "scores": {"category": {"spam": 0.5}}}));
    }
    let text = &texts[i as usize % texts.len()];
    serde_json::json!({"id": format!("imp-{i}"), "text": text, "meta": {"line": i}, "labels": labels}).to_string()
}
