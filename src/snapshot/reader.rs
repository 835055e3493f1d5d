//! Reading a snapshot for training: random access, iteration, deterministic shuffles,
//! shards and splits, diffs, and JSONL export.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use serde_json::json;

use super::{Fetched, Member, SnapshotInfo};
use crate::engine::Db;
use crate::formats::json::label_json;
use crate::model::asset::{Asset, AssetId, Content};
use crate::model::error::{Error, Result};
use crate::model::label::{Answer, Label, LabelId, LabelKind};
use crate::rng::Rng;
use crate::store::keys;

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
        self.record(m, None).map(Example::from)
    }

    /// A member's asset and chosen label, whose answers are the chosen ones: a review
    /// without answers takes those of the revision it reviewed. Records are decoded
    /// from `fetched`, read with point reads when it is `None`.
    fn record(&self, m: &Member, fetched: Option<Fetched>) -> Result<(Asset, Label)> {
        let id = AssetId(m.asset);
        let chosen = LabelId::new(id, m.revision);
        let f = match fetched {
            Some(f) => f,
            None => self.db.fetch_one(m)?.ok_or(Error::UnknownAsset(id))?,
        };
        let entry = f.entry.as_ref().map(|(key, e)| (key.as_slice(), e.as_ref()));
        let asset = match (&f.asset, &entry) {
            (Some(raw), _) => raw.decode()?,
            (None, Some((key, e))) => e.asset(key)?,
            (None, None) => return Err(Error::UnknownAsset(id)),
        };
        let label_of = |lid: LabelId| -> Result<Label> {
            let key = keys::label(lid);
            if let Some(raw) = f.labels.iter().find(|r| r.key() == key.as_slice()) {
                return raw.decode();
            }
            if let Some((key, e)) = &entry {
                if let Some(l) = e.labels(key)?.into_iter().nth(lid.revision() as usize) {
                    return Ok(l);
                }
            }
            self.db.label(lid)
        };
        let mut label = label_of(chosen)?;
        if let Some(reviewed) = label.derived_from {
            if label.answers.is_empty() && label.kind == LabelKind::Review {
                label.answers = label_of(reviewed)?.answers;
            }
        }
        Ok((asset, label))
    }

    /// The members at `positions` with their stored records, read with range scans
    /// where the block's assets are dense (see [`Db::fetch`]); decoding is left to the
    /// consumer, so the allocations of an example are made and freed on one thread.
    fn read_block(&self, positions: Range<usize>) -> Block {
        let members: Vec<Member> = positions.filter_map(|i| self.member(i).copied()).collect();
        // A failed scan leaves every member to point reads, which name what failed.
        let mut fetched = self.db.fetch(&members).unwrap_or_default().into_iter();
        members.into_iter().map(|m| (m, fetched.next().flatten())).collect()
    }

    /// Every example in order. Blocks of examples are read ahead on background threads
    /// (one per core, up to 4), each with sequential scans where the block's assets are
    /// dense, so a training loop rarely waits on storage.
    pub fn iter(&self) -> Examples {
        Examples(Records::new(self.clone()))
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

    /// The examples whose asset is in `visible` (a member's data scope), in the same order.
    pub(crate) fn within(&self, visible: &croaring::Bitmap) -> Snapshot {
        let p = self
            .positions()
            .into_iter()
            .filter(|&i| self.members.get(i as usize).is_some_and(|m| visible.contains(m.asset)))
            .collect();
        self.with_view(p)
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
        for record in Records::new(self.clone()) {
            let (asset, label) = record?;
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

/// Positions per block read ahead.
const BLOCK: usize = 1024;

/// The positions of block `b` of `len`.
fn block_range(b: usize, len: usize) -> Range<usize> {
    b * BLOCK..((b + 1) * BLOCK).min(len)
}

/// The records of a snapshot in order, read ahead in blocks by worker threads: worker
/// `w` of `W` reads blocks `w`, `w + W`, ... into its own channel of one block, and the
/// consumer takes the blocks round-robin, so the order is the snapshot's.
struct Records {
    snapshot: Snapshot,
    blocks: usize,
    next: usize,
    current: std::vec::IntoIter<(Member, Option<Fetched>)>,
    /// One channel per worker; none when no thread could be started, and blocks are
    /// then read on the caller's thread.
    workers: Vec<Receiver<Block>>,
}

/// The members of one block, in order, with their stored records.
type Block = Vec<(Member, Option<Fetched>)>;

impl Records {
    fn new(snapshot: Snapshot) -> Records {
        let len = snapshot.len();
        let blocks = len.div_ceil(BLOCK);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(blocks.max(1));
        let mut workers = Vec::with_capacity(threads);
        for w in 0..threads {
            let (tx, rx) = sync_channel(1);
            let snap = snapshot.clone();
            let started = std::thread::Builder::new()
                .name("labeldb-snapshot-read".into())
                .spawn(move || {
                    for b in (w..blocks).step_by(threads) {
                        let block = snap.read_block(block_range(b, len));
                        if tx.send(block).is_err() {
                            return; // the iterator was dropped
                        }
                    }
                });
            if started.is_err() {
                workers.clear();
                break;
            }
            workers.push(rx);
        }
        Records {
            snapshot,
            blocks,
            next: 0,
            current: Vec::new().into_iter(),
            workers,
        }
    }
}

impl Iterator for Records {
    type Item = Result<(Asset, Label)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((m, fetched)) = self.current.next() {
                return Some(self.snapshot.record(&m, fetched));
            }
            if self.next >= self.blocks {
                return None;
            }
            let b = self.next;
            self.next += 1;
            let block = match self.workers.len() {
                0 => Ok(self.snapshot.read_block(block_range(b, self.snapshot.len()))),
                n => self.workers[b % n].recv(),
            };
            match block {
                Ok(block) => self.current = block.into_iter(),
                Err(_) => {
                    self.next = self.blocks;
                    return Some(Err(Error::storage("a snapshot reader thread stopped")));
                }
            }
        }
    }
}

/// The examples of a snapshot or view, in order (see [`Snapshot::iter`]).
pub struct Examples(Records);

impl Iterator for Examples {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Result<Example>> {
        self.0.next().map(|r| r.map(Example::from))
    }
}

impl From<(Asset, Label)> for Example {
    fn from((asset, label): (Asset, Label)) -> Example {
        Example {
            external_id: asset.external_id,
            asset: asset.id,
            content: asset.content,
            label: label.id,
            answers: label.answers,
        }
    }
}
