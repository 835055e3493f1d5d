//! Reading a snapshot for training: random access, iteration, deterministic shuffles,
//! shards and splits, diffs, and JSONL export.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use serde_json::json;

use super::{Member, SnapshotInfo};
use crate::asset::{AssetId, Content};
use crate::db::Db;
use crate::demo::Rng;
use crate::error::{Error, Result};
use crate::json::label_json;
use crate::label::{Answer, Label, LabelId};

/// One training example: an asset's content and the chosen answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// External id.
    pub external_id: String,
    /// Internal id.
    pub asset: AssetId,
    /// Immutable content.
    pub content: Content,
    /// The chosen label revision.
    pub label: LabelId,
    /// The chosen answers (for `latest-reviewed`, those the review accepted).
    pub answers: BTreeMap<String, Answer>,
}

/// A snapshot, or a view of one (shuffled, sharded, split). Cheap to clone.
///
/// It holds a handle on its database: the database stays open (and cannot be opened
/// again by the same process) until every `Snapshot` of it is dropped.
#[derive(Clone)]
pub struct Snapshot {
    db: Db,
    info: Arc<SnapshotInfo>,
    members: Arc<Vec<Member>>,
    /// Positions into `members`, when this is a view.
    view: Option<Arc<Vec<u32>>>,
}

/// An asset whose chosen answers differ between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relabel {
    /// External id.
    pub external_id: String,
    /// The revision in the first snapshot.
    pub before: LabelId,
    /// The revision in the second.
    pub after: LabelId,
}

/// What changed from one snapshot to another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// External ids only in the second.
    pub added: Vec<String>,
    /// External ids only in the first.
    pub removed: Vec<String>,
    /// Assets in both whose chosen answers differ.
    pub relabelled: Vec<Relabel>,
}

impl Snapshot {
    pub(crate) fn new(db: Db, info: Arc<SnapshotInfo>, members: Arc<Vec<Member>>) -> Snapshot {
        Snapshot {
            db,
            info,
            members,
            view: None,
        }
    }

    /// What the snapshot is (name, filter, selection, watermark, digest, ...).
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    /// Number of examples in this snapshot or view.
    pub fn len(&self) -> usize {
        self.view.as_ref().map_or(self.members.len(), |v| v.len())
    }

    /// Whether it has no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn member(&self, i: usize) -> Option<&Member> {
        match &self.view {
            Some(v) => v.get(i).and_then(|p| self.members.get(*p as usize)),
            None => self.members.get(i),
        }
    }

    /// The `i`-th example.
    pub fn get(&self, i: usize) -> Result<Example> {
        let m = self
            .member(i)
            .ok_or_else(|| Error::invalid("index", format!("{i} is past the end ({} examples)", self.len())))?;
        let (asset, label) = self.read(m)?;
        let answers = self.answers_of(&label)?;
        Ok(Example {
            external_id: asset.external_id,
            asset: asset.id,
            content: asset.content,
            label: label.id,
            answers,
        })
    }

    fn read(&self, m: &Member) -> Result<(crate::asset::Asset, Label)> {
        let id = AssetId(m.asset);
        Ok((self.db.asset(id)?, self.db.label(LabelId::new(id, m.revision))?))
    }

    /// The chosen answers of a chosen label: a review without answers takes those of the
    /// revision it reviewed.
    fn answers_of(&self, label: &Label) -> Result<BTreeMap<String, Answer>> {
        match label.derived_from {
            Some(reviewed) if label.answers.is_empty() && label.kind == crate::label::LabelKind::Review => {
                Ok(self.db.label(reviewed)?.answers)
            }
            _ => Ok(label.answers.clone()),
        }
    }

    /// Every example in order.
    pub fn iter(&self) -> impl Iterator<Item = Result<Example>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    fn with_view(&self, view: Vec<u32>) -> Snapshot {
        Snapshot {
            view: Some(Arc::new(view)),
            ..self.clone()
        }
    }

    fn positions(&self) -> Vec<u32> {
        match &self.view {
            Some(v) => v.as_ref().clone(),
            None => (0..self.members.len() as u32).collect(),
        }
    }

    /// The same examples in a pseudo-random order fixed by `seed`: a Fisher–Yates shuffle
    /// driven by splitmix64, the same on every machine and in every labeldb version.
    pub fn shuffled(&self, seed: u64) -> Snapshot {
        let mut p = self.positions();
        let mut rng = Rng::new(seed);
        for i in (1..p.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        self.with_view(p)
    }

    /// The examples of worker `rank` out of `world_size`: every `world_size`-th example
    /// starting at `rank`, so shards are disjoint, cover everything and differ in size by
    /// at most one.
    pub fn shard(&self, rank: usize, world_size: usize) -> Result<Snapshot> {
        if world_size == 0 || rank >= world_size {
            return Err(Error::invalid(
                "shard",
                format!("rank {rank} of world size {world_size}"),
            ));
        }
        let p = self.positions().into_iter().skip(rank).step_by(world_size).collect();
        Ok(self.with_view(p))
    }

    /// The examples of split `name` among `ratios` (e.g. train 0.8, val 0.1, test 0.1):
    /// an example belongs to a split by a stable hash of its external id, so adding
    /// assets never moves existing ones between splits.
    pub fn split(&self, name: &str, ratios: &[(&str, f64)]) -> Result<Snapshot> {
        let total: f64 = ratios.iter().map(|r| r.1).sum();
        if ratios.iter().any(|r| !r.1.is_finite() || r.1 < 0.0) || total <= 0.0 {
            return Err(Error::invalid(
                "split ratios",
                "must be non-negative and add up to more than 0",
            ));
        }
        let Some(which) = ratios.iter().position(|r| r.0 == name) else {
            return Err(Error::invalid(
                "split",
                format!("{name:?} is not one of the ratios' names"),
            ));
        };
        let lo: f64 = ratios[..which].iter().map(|r| r.1).sum::<f64>() / total;
        let hi: f64 = lo + ratios[which].1 / total;
        let last = which == ratios.len() - 1;
        let p = self
            .positions()
            .into_iter()
            .filter(|&i| {
                let x = (self.members[i as usize].split_hash >> 11) as f64 / (1u64 << 53) as f64;
                x >= lo && (x < hi || last)
            })
            .collect();
        Ok(self.with_view(p))
    }

    /// Added, removed and relabelled assets from `self` to `other` (whole snapshots,
    /// views are ignored).
    pub fn diff(&self, other: &Snapshot) -> Result<Diff> {
        let index = |s: &Snapshot| -> Result<BTreeMap<String, Member>> {
            s.members
                .iter()
                .map(|m| Ok((s.db.asset(AssetId(m.asset))?.external_id, *m)))
                .collect()
        };
        let (a, b) = (index(self)?, index(other)?);
        let mut d = Diff::default();
        for (ext, ma) in &a {
            match b.get(ext) {
                None => d.removed.push(ext.clone()),
                Some(mb) if mb.answers_hash != ma.answers_hash => d.relabelled.push(Relabel {
                    external_id: ext.clone(),
                    before: LabelId::new(AssetId(ma.asset), ma.revision),
                    after: LabelId::new(AssetId(mb.asset), mb.revision),
                }),
                Some(_) => {}
            }
        }
        d.added = b.keys().filter(|k| !a.contains_key(*k)).cloned().collect();
        Ok(d)
    }

    /// Writes the examples as native JSONL (docs/formats.md), one asset per line with its
    /// chosen label, so that importing the file into a fresh database and snapshotting
    /// with the same selection gives the same digest. Returns the lines written.
    pub fn export_jsonl(&self, out: &mut impl Write) -> Result<u64> {
        let io = |cause| Error::Io {
            path: "export".into(),
            cause,
        };
        let mut n = 0;
        for i in 0..self.len() {
            let Some(m) = self.member(i) else { break };
            let (asset, mut label) = self.read(m)?;
            label.answers = self.answers_of(&label)?;
            let mut l = label_json(&label, &asset.content);
            if let Some(o) = l.as_object_mut() {
                for internal in ["label_id", "parent", "derived_from", "created_at"] {
                    o.remove(internal);
                }
            }
            // Metadata is mutable and not part of a snapshot, so it is not exported.
            let mut line = json!({"id": asset.external_id, "labels": [l]});
            match &asset.content {
                Content::Text(t) => line["text"] = json!(t),
                Content::Image { uri, width, height } => {
                    line["image"] = json!(uri);
                    line["width"] = json!(width);
                    line["height"] = json!(height);
                }
            }
            serde_json::to_writer(&mut *out, &line).map_err(|e| io(e.into()))?;
            out.write_all(b"\n").map_err(io)?;
            n += 1;
        }
        out.flush().map_err(io)?;
        Ok(n)
    }
}
