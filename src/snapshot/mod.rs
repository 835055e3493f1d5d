//! Snapshots: immutable, provably reproducible dataset versions for training.
//!
//! A snapshot stores, for every member asset, the label revision a selection policy chose
//! when it was made, in external-id order, in crc-checked chunks; plus a roaring bitmap of
//! its members, the seq watermark, the schema and a digest over (external id, content
//! digest, chosen answers) that anyone can recompute. Assets and labels are immutable
//! (content never changes, revisions are never overwritten) and an asset that a
//! snapshot references cannot be purged, so a snapshot returns the same examples forever.

mod json;
mod reader;
mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;

use croaring::Bitmap;
use serde::{Deserialize, Serialize};

use crate::engine::{dense, id_range, read_history, Db};
use crate::index::columns::{self, answers_bytes, choose, hash64, Facts};
use crate::model::asset::{AssetId, Digest};
use crate::model::error::{Error, Result};
use crate::model::event::{Action, Seq};
use crate::model::label::LabelId;
use crate::model::project::{check_name, Project, ProjectId, Schema};
use crate::model::selection::Selection;
use crate::query::{to_query_string, Filter};
use crate::store::run;
use crate::store::{keys, Raw, Store};

pub use json::{diff_json, snapshot_json};
pub use reader::{Diff, Example, Examples, Relabel, Snapshot};
pub use spec::{Ratios, Shard};

/// Members per stored chunk.
const CHUNK: usize = 65_536;

/// What a snapshot is: everything but its members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Internal id (keys of its chunks).
    pub id: u32,
    /// The project.
    pub project: ProjectId,
    /// Its name, unique in the project.
    pub name: String,
    /// The filter that chose its assets, in the query language.
    pub filter: String,
    /// The label selection policy.
    pub selection: Selection,
    /// The event-log seq it reflects.
    pub seq: Seq,
    /// The project's schema when it was made.
    pub schema: Schema,
    /// Who made it.
    pub created_by: String,
    /// When, milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Number of member assets.
    pub assets: u64,
    /// Digest over (external id, content digest, chosen answers) in external-id order.
    pub digest: Digest,
    /// Number of stored member chunks.
    pub chunks: u32,
}

/// One member: the asset and the chosen revision, with hashes for diffs and splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Member {
    pub asset: u32,
    pub revision: u32,
    /// Hash of the chosen answers (diffs compare it).
    pub answers_hash: u64,
    /// Hash of the external id (deterministic splits use it).
    pub split_hash: u64,
    /// How many revisions the asset had when the snapshot was made (`verify_snapshot`
    /// re-runs the selection over exactly those).
    pub upto: u32,
}

/// A model version registered with the snapshot it was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The project.
    pub project: ProjectId,
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// The snapshot it was trained on.
    pub trained_on: String,
    /// That snapshot's digest.
    pub trained_on_digest: Digest,
    /// When it was registered.
    pub registered_at: u64,
}

/// What the digest hashes first.
const DIGEST_PREFIX: &[u8] = b"labeldb-snapshot-v1\0";

/// Appends what the digest hashes of one member.
fn member_bytes(out: &mut Vec<u8>, external_id: &str, content: &Digest, answers: &[u8]) {
    out.extend_from_slice(&(external_id.len() as u64).to_be_bytes());
    out.extend_from_slice(external_id.as_bytes());
    out.extend_from_slice(&content.0);
    out.extend_from_slice(&(answers.len() as u64).to_be_bytes());
    out.extend_from_slice(answers);
}

/// The digest of rows in external-id order, hashed in large pieces (blake3 is several
/// times faster on long inputs than on one small update per field).
fn digest_rows(rows: &[Row]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(DIGEST_PREFIX);
    let mut buf = Vec::with_capacity(1 << 16);
    for (facts, choice, _) in rows {
        member_bytes(&mut buf, facts.external_id, &facts.content, choice.answers);
        if buf.len() >= 1 << 16 {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
    Digest(*h.finalize().as_bytes())
}

/// Stored members of a snapshot, in order, checked chunk by chunk.
pub(crate) fn load_members(db: &Db, info: &SnapshotInfo) -> Result<Vec<Member>> {
    let mut members = Vec::with_capacity(info.assets as usize);
    for n in 0..info.chunks {
        let key = keys::snapshot_chunk(info.id, n);
        let chunk: Vec<Member> = db.store().get(&key)?.ok_or_else(|| Error::Corruption {
            key: keys::describe(&key),
            reason: "missing snapshot chunk".into(),
        })?;
        members.extend(chunk);
    }
    if members.len() as u64 != info.assets {
        return Err(Error::Corruption {
            key: keys::describe(&keys::snapshot(info.project, &info.name)),
            reason: format!("{} members stored, {} expected", members.len(), info.assets),
        });
    }
    Ok(members)
}

/// The stored records of one snapshot member (see [`Db::fetch`]): its ASSET record if
/// it has one, its run entry (with the run's key) if a run holds it, and LABEL records
/// of the asset (all of them, or the chosen one; none when the run holds it).
#[derive(Default)]
pub(crate) struct Fetched {
    pub asset: Option<Raw>,
    pub entry: Option<(Vec<u8>, run::Entry)>,
    pub labels: Vec<Raw>,
}

impl Fetched {
    /// `None` when neither an ASSET record nor a run entry was found.
    fn found(self) -> Option<Fetched> {
        (self.asset.is_some() || self.entry.is_some()).then_some(self)
    }
}

/// The computed content of a snapshot: members in external-id order, and its digest.
struct Computed {
    members: Vec<Member>,
    bitmap: Bitmap,
    digest: Digest,
}

/// One member being computed: its facts and choice in the decoded blocks, and its id.
type Row<'a> = (&'a Facts<&'a str>, &'a columns::Choice<&'a [u8]>, u32);

/// The stored blocks of one column in `[start, end)`.
fn read_blocks(store: &Store, start: &[u8], end: &[u8]) -> Result<Vec<Raw>> {
    store.range_undecoded(start, end).collect()
}

/// The entries of block `b` among decoded blocks (sorted by block number).
fn entries_at<T>(blocks: &[(u32, columns::Block<T>)], b: u32) -> &[(u8, T)] {
    blocks
        .binary_search_by_key(&b, |(n, _)| *n)
        .map_or(&[], |i| &blocks[i].1.entries)
}

/// The entry at `slot` in a block's entries, moving `i` on: slots are sought in
/// ascending order, so one walk over the entries serves a whole block.
fn seek<'a, T>(entries: &'a [(u8, T)], i: &mut usize, slot: u8) -> Option<&'a T> {
    while entries.get(*i).is_some_and(|(s, _)| *s < slot) {
        *i += 1;
    }
    entries.get(*i).filter(|(s, _)| *s == slot).map(|(_, t)| t)
}

/// Sorts rows by external id, bytewise. Comparing the ids themselves costs a pointer
/// chase and a memcmp per comparison (0.4 s at 1M ids in random order); instead the rows
/// are sorted by the 8 bytes that follow the common prefix of all ids, read as a
/// big-endian integer (zero-padded), and only rows with equal keys by the whole id. That
/// is the same order: where two keys differ, the ids differ first at the same byte.
fn sort_by_external_id(rows: &mut Vec<Row>) {
    let ids = rows.iter().map(|r| r.0.external_id.as_bytes());
    let (Some(min), Some(max)) = (ids.clone().min(), ids.max()) else {
        return;
    };
    let common = min.iter().zip(max).take_while(|(a, b)| a == b).count();
    let key = |id: &str| {
        let rest = id.as_bytes().get(common..).unwrap_or_default();
        let mut k = [0u8; 8];
        let n = rest.len().min(8);
        k[..n].copy_from_slice(&rest[..n]);
        u64::from_be_bytes(k)
    };
    let mut keyed: Vec<(u64, Row)> = rows.drain(..).map(|r| (key(r.0.external_id), r)).collect();
    keyed.sort_unstable_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| a.0.external_id.cmp(b.0.external_id)));
    rows.extend(keyed.into_iter().map(|(_, r)| r));
}

/// Decodes stored blocks (borrowing from them) with their block numbers.
fn decode_blocks<'a, T: Deserialize<'a>>(raw: &'a [Raw]) -> Result<Vec<(u32, columns::Block<T>)>> {
    raw.iter()
        .map(|r| {
            let block: columns::Block<T> = r.decode()?;
            let k = r.key();
            let corrupt = |reason: &str| Error::Corruption {
                key: keys::describe(k),
                reason: reason.into(),
            };
            if !block.is_ordered() {
                return Err(corrupt("slots out of order"));
            }
            let b = k.len().checked_sub(4).and_then(|at| keys::u32_at(k, at));
            Ok((b.ok_or_else(|| corrupt("short key"))?, block))
        })
        .collect()
}

/// Decodes CHOICE_DELTA records (borrowed) as (block, slot, entry).
fn decode_deltas<'a, T: Deserialize<'a>>(raw: &'a [Raw]) -> Result<Vec<(u32, u8, Option<T>)>> {
    raw.iter()
        .map(|r| {
            let k = r.key();
            let at = k.len().checked_sub(5);
            let block = at.and_then(|at| keys::u32_at(k, at));
            let (Some(block), Some(&slot)) = (block, k.last()) else {
                return Err(Error::Corruption {
                    key: keys::describe(k),
                    reason: "short key".into(),
                });
            };
            Ok((block, slot, r.decode()?))
        })
        .collect()
}

impl Db {
    /// The stored records of `members`, in their order, not yet decoded (`None`: not
    /// found, for the caller's point read to report). When their assets form a dense id
    /// range (as for a snapshot of most of a project, in any order), they are read with
    /// three sequential scans (runs, ASSET records, LABEL records), and every label record
    /// of each asset comes along; otherwise with point reads.
    pub(crate) fn fetch(&self, members: &[Member]) -> Result<Vec<Option<Fetched>>> {
        let store = self.store();
        let mut ids: Vec<u32> = members.iter().map(|m| m.asset).collect();
        ids.sort_unstable();
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            return Ok(Vec::new());
        };
        if !dense(first, last, ids.len()) {
            return members.iter().map(|m| self.fetch_one(m)).collect();
        }
        let slot = |id: u32| ids.binary_search(&id).ok();
        let slot_of_key = |key: &[u8]| keys::asset_of(key).and_then(|id| slot(id.0));
        let [runs, assets, labels] = id_range(first, last);
        let mut fetched: Vec<Fetched> = std::iter::repeat_with(Fetched::default).take(ids.len()).collect();
        for raw in store.range_undecoded(&runs.0, &runs.1) {
            let raw = raw?;
            let Some(start) = run::first_of(raw.key()) else {
                continue;
            };
            let run: run::Run<&[u8]> = raw.decode()?;
            for (entry, id) in run.entries(raw.key()).zip(start..) {
                if let (Some(e), Some(i)) = (entry?, slot(id)) {
                    fetched[i].entry = Some((raw.key().to_vec(), e.to_owned()));
                }
            }
        }
        for raw in store.range_undecoded(&assets.0, &assets.1) {
            let raw = raw?;
            if let Some(i) = slot_of_key(raw.key()) {
                fetched[i].asset = Some(raw);
            }
        }
        for raw in store.range_undecoded(&labels.0, &labels.1) {
            let raw = raw?;
            if let Some(i) = slot_of_key(raw.key()) {
                fetched[i].labels.push(raw);
            }
        }
        Ok(members
            .iter()
            .map(|m| std::mem::take(&mut fetched[slot(m.asset)?]).found())
            .collect())
    }

    /// The stored records of one member with point reads: its ASSET record, its run
    /// entry and, unless the run holds it, its chosen LABEL record (`None`: the asset is
    /// not found).
    pub(crate) fn fetch_one(&self, m: &Member) -> Result<Option<Fetched>> {
        let store = self.store();
        let id = AssetId(m.asset);
        let entry = run::entry(store, id)?;
        let in_run = entry
            .as_ref()
            .and_then(|(_, e)| e.as_ref().label_count())
            .is_some_and(|n| u64::from(m.revision) < n);
        let label = if in_run {
            None
        } else {
            store.get_undecoded(&keys::label(LabelId::new(id, m.revision)))?
        };
        Ok(Fetched {
            asset: store.get_undecoded(&keys::asset(id))?,
            entry,
            labels: label.into_iter().collect(),
        }
        .found())
    }

    /// Computes members and digest from the selection columns (see [`column`]): the
    /// FACTS blocks and the selection's CHOICES blocks (and its base's) over the id range
    /// of `ids`, read and decoded on two threads, joined by asset id.
    fn compute_snapshot(&self, ids: &Bitmap, selection: &Selection) -> Result<Computed> {
        let (Some(first), Some(last)) = (ids.minimum(), ids.maximum()) else {
            return Ok(Computed {
                members: Vec::new(),
                bitmap: Bitmap::new(),
                digest: digest_rows(&[]),
            });
        };
        let (first, last) = (first >> columns::BLOCK_SHIFT, last >> columns::BLOCK_SHIFT);
        let store = self.store();
        let base = columns::base_of(selection);
        let mut ranges = vec![(keys::facts(first), keys::facts(last + 1))];
        let selections: Vec<&Selection> = std::iter::once(selection).chain(base.as_ref()).collect();
        for s in &selections {
            ranges.push((keys::choices(s, first), keys::choices(s, last + 1)));
        }
        // Each selection's deltas, applied over its blocks (see `columns::Pending`).
        for s in &selections {
            ranges.push((
                keys::choice_deltas(&keys::choices(s, first)),
                keys::choice_deltas(&keys::choices(s, last + 1)),
            ));
        }
        let panicked = || Error::storage("a snapshot column reader panicked");
        let raw = std::thread::scope(|scope| {
            let readers: Vec<_> = ranges
                .iter()
                .map(|(start, end)| scope.spawn(|| read_blocks(store, start, end)))
                .collect();
            readers
                .into_iter()
                .map(|r| r.join().unwrap_or_else(|_| Err(panicked())))
                .collect::<Result<Vec<_>>>()
        })?;
        let (facts, choices) = std::thread::scope(|scope| {
            let facts = scope.spawn(|| decode_blocks::<Facts<&str>>(&raw[0]));
            let n = selections.len();
            let choices: Result<Vec<_>> = raw[1..=n]
                .iter()
                .zip(&raw[1 + n..])
                .map(|(blocks, deltas)| {
                    let mut blocks = decode_blocks::<columns::Choice<&[u8]>>(blocks)?;
                    columns::apply_deltas(&mut blocks, decode_deltas(deltas)?);
                    Ok(blocks)
                })
                .collect();
            (facts.join().unwrap_or_else(|_| Err(panicked())), choices)
        });
        let (facts, choices) = (facts?, choices?);
        // With a base, walk its entries, taking the selection's own where it has one.
        let own = &choices[0];
        let (walk, overrides) = match choices.get(1) {
            Some(base) => (base, Some(own)),
            None => (own, None),
        };
        let mut rows: Vec<Row> = Vec::with_capacity(ids.cardinality() as usize);
        for (b, block) in walk {
            let facts_here = entries_at(&facts, *b);
            let overrides_here = overrides.map_or(&[][..], |o| entries_at(o, *b));
            let (mut f, mut o) = (0, 0);
            for (slot, choice) in &block.entries {
                let asset = columns::asset_at(*b, *slot);
                if !ids.contains(asset.0) {
                    continue;
                }
                let choice = seek(overrides_here, &mut o, *slot).unwrap_or(choice);
                let Some(facts) = seek(facts_here, &mut f, *slot) else {
                    return Err(Error::Corruption {
                        key: keys::describe(&keys::facts(*b)),
                        reason: format!("no facts of asset {asset}, which {selection} chooses a label of"),
                    });
                };
                rows.push((facts, choice, asset.0));
            }
        }
        let mut bitmap = Bitmap::new();
        bitmap.add_many(&rows.iter().map(|r| r.2).collect::<Vec<_>>());
        sort_by_external_id(&mut rows);
        let members = rows
            .iter()
            .map(|(facts, choice, asset)| Member {
                asset: *asset,
                revision: choice.revision,
                answers_hash: choice.answers_hash,
                split_hash: facts.split_hash,
                upto: choice.upto,
            })
            .collect();
        Ok(Computed {
            digest: digest_rows(&rows),
            members,
            bitmap,
        })
    }

    /// Creates a snapshot of the assets matching `filter`, each with the label revision
    /// `selection` chooses (assets without one are left out). Names are unique per
    /// project and may not equal a tag.
    pub fn create_snapshot(
        &self,
        actor: &str,
        project: &str,
        name: &str,
        filter: &Filter,
        selection: &Selection,
    ) -> Result<SnapshotInfo> {
        check_name("snapshot name", name)?;
        check_name("actor", actor)?;
        let project = self.project(project)?;
        self.write(|txn| {
            if txn.store().contains(&keys::snapshot(project.id, name))? {
                return Err(Error::SnapshotExists {
                    project: project.name.clone(),
                    name: name.to_string(),
                });
            }
            if txn.store().contains(&keys::snapshot_tag(project.id, name))? {
                return Err(Error::invalid(
                    "snapshot name",
                    format!("{name:?} is a tag in {:?}", project.name),
                ));
            }
            let set = self.select(&project.name, filter)?;
            let computed = self.compute_snapshot(set.bitmap(), selection)?;
            let id = txn.counters().next_snapshot;
            txn.counters().next_snapshot = id.checked_add(1).ok_or(Error::DatabaseFull {
                what: "snapshots",
                limit: u64::from(u32::MAX) + 1,
            })?;
            let chunks = computed.members.chunks(CHUNK);
            let info = SnapshotInfo {
                id,
                project: project.id,
                name: name.to_string(),
                filter: to_query_string(filter),
                selection: selection.clone(),
                seq: txn.counters().last_seq + 1,
                schema: project.schema.clone(),
                created_by: actor.to_string(),
                created_at: txn.now(),
                assets: computed.members.len() as u64,
                digest: computed.digest,
                chunks: chunks.len() as u32,
            };
            for (n, chunk) in chunks.enumerate() {
                txn.batch().put(keys::snapshot_chunk(id, n as u32), &chunk);
            }
            txn.batch()
                .put(keys::snapshot_members(id), &crate::index::to_bytes(&computed.bitmap));
            txn.batch().put(keys::snapshot(project.id, name), &info);
            txn.event(
                actor,
                Action::SnapshotCreated {
                    project: project.id,
                    name: name.to_string(),
                    assets: info.assets,
                    digest: info.digest,
                },
            );
            Ok(info)
        })
    }

    /// The snapshot with this name or tag.
    pub fn snapshot(&self, project: &str, name_or_tag: &str) -> Result<Snapshot> {
        let info = self.snapshot_info(project, name_or_tag)?;
        let members = load_members(self, &info)?;
        Ok(Snapshot::new(self.clone(), Arc::new(info), Arc::new(members)))
    }

    /// A snapshot's description, by name or tag.
    pub fn snapshot_info(&self, project: &str, name_or_tag: &str) -> Result<SnapshotInfo> {
        let p = self.project(project)?;
        if let Some(info) = self.store().get(&keys::snapshot(p.id, name_or_tag))? {
            return Ok(info);
        }
        if let Some(name) = self.store().get::<String>(&keys::snapshot_tag(p.id, name_or_tag))? {
            if let Some(info) = self.store().get(&keys::snapshot(p.id, &name))? {
                return Ok(info);
            }
        }
        Err(Error::invalid(
            "snapshot",
            format!("no snapshot or tag {name_or_tag:?} in {project:?}"),
        ))
    }

    /// Every snapshot of a project, by name, with the tags that point to each.
    pub fn snapshots(&self, project: &str) -> Result<Vec<(SnapshotInfo, Vec<String>)>> {
        let p = self.project(project)?;
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let prefix = keys::snapshot_tags(p.id);
        for kv in self.store().scan::<String>(&prefix) {
            let (k, name) = kv?;
            tags.entry(name)
                .or_default()
                .push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        self.store()
            .scan::<SnapshotInfo>(&keys::snapshots(p.id))
            .map(|kv| {
                let (_, info) = kv?;
                let t = tags.remove(&info.name).unwrap_or_default();
                Ok((info, t))
            })
            .collect()
    }

    /// The tags that point to a snapshot (named by its name or one of its tags), sorted.
    pub fn snapshot_tags(&self, project: &str, name_or_tag: &str) -> Result<Vec<String>> {
        let info = self.snapshot_info(project, name_or_tag)?;
        let p = self.project(project)?;
        let prefix = keys::snapshot_tags(p.id);
        let mut tags = Vec::new();
        for kv in self.store().scan::<String>(&prefix) {
            let (k, name) = kv?;
            if name == info.name {
                tags.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
            }
        }
        Ok(tags)
    }

    /// Points a tag (`latest`, `prod-2026-11`) at a snapshot, moving it if it exists.
    pub fn tag_snapshot(&self, actor: &str, project: &str, tag: &str, name: &str) -> Result<()> {
        check_name("actor", actor)?;
        check_name("tag", tag)?;
        let p = self.project(project)?;
        self.write(|txn| {
            if !txn.store().contains(&keys::snapshot(p.id, name))? {
                return Err(Error::invalid(
                    "snapshot",
                    format!("no snapshot {name:?} in {project:?}"),
                ));
            }
            if txn.store().contains(&keys::snapshot(p.id, tag))? {
                return Err(Error::invalid("tag", format!("{tag:?} is the name of a snapshot")));
            }
            txn.batch().put(keys::snapshot_tag(p.id, tag), &name.to_string());
            txn.event(
                actor,
                Action::SnapshotTagged {
                    project: p.id,
                    tag: tag.to_string(),
                    name: name.to_string(),
                },
            );
            Ok(())
        })
    }

    /// Deletes a snapshot and the tags that point to it. Refused while a registered
    /// model names it as its training set.
    pub fn delete_snapshot(&self, actor: &str, project: &str, name: &str) -> Result<()> {
        check_name("actor", actor)?;
        let p = self.project(project)?;
        self.write(|txn| {
            let info: SnapshotInfo = txn
                .store()
                .get(&keys::snapshot(p.id, name))?
                .ok_or_else(|| Error::invalid("snapshot", format!("no snapshot {name:?} in {project:?}")))?;
            for kv in txn.store().scan::<ModelInfo>(&keys::models(p.id)) {
                let (_, m) = kv?;
                if m.trained_on == name {
                    return Err(Error::invalid(
                        "snapshot",
                        format!("{name:?} is the training set of model {}@{}", m.name, m.version),
                    ));
                }
            }
            for n in 0..info.chunks {
                txn.batch().remove(keys::snapshot_chunk(info.id, n));
            }
            txn.batch().remove(keys::snapshot_members(info.id));
            txn.batch().remove(keys::snapshot(p.id, name));
            let prefix = keys::snapshot_tags(p.id);
            for kv in txn.store().scan::<String>(&prefix) {
                let (k, target) = kv?;
                if target == name {
                    txn.batch().remove(k);
                }
            }
            txn.event(
                actor,
                Action::SnapshotDeleted {
                    project: p.id,
                    name: name.to_string(),
                },
            );
            Ok(())
        })
    }

    /// Names of the project's snapshots that hold an asset.
    pub fn snapshots_holding(&self, project: &str, asset: AssetId) -> Result<Vec<String>> {
        self.snapshots_holding_in(self.project(project)?.id, asset)
    }

    fn snapshots_holding_in(&self, project: ProjectId, asset: AssetId) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for kv in self.store().scan::<SnapshotInfo>(&keys::snapshots(project)) {
            let (_, info) = kv?;
            let key = keys::snapshot_members(info.id);
            let bytes: Vec<u8> = self.store().get(&key)?.ok_or_else(|| Error::Corruption {
                key: keys::describe(&key),
                reason: "missing member bitmap".into(),
            })?;
            let bm = crate::index::from_bytes(&bytes).ok_or_else(|| Error::Corruption {
                key: keys::describe(&key),
                reason: "bad member bitmap".into(),
            })?;
            if bm.contains(asset.0) {
                out.push(info.name);
            }
        }
        Ok(out)
    }

    /// Recomputes a snapshot's members and digest from the stored data and compares them
    /// with what was stored. Returns the problems found (none: the snapshot is intact).
    pub fn verify_snapshot(&self, project: &str, name: &str) -> Result<Vec<String>> {
        let info = self.snapshot_info(project, name)?;
        let mut problems = Vec::new();
        let members = match load_members(self, &info) {
            Ok(m) => m,
            Err(e) => return Ok(vec![e.to_string()]),
        };
        let mut rows = Vec::with_capacity(members.len());
        let mut h = blake3::Hasher::new();
        h.update(DIGEST_PREFIX);
        let mut buf = Vec::new();
        for m in &members {
            let asset = match self.asset(AssetId(m.asset)) {
                Ok(a) => a,
                Err(e) => {
                    problems.push(format!("member {}: {e}", m.asset));
                    continue;
                }
            };
            let label = match self.label(crate::model::label::LabelId::new(AssetId(m.asset), m.revision)) {
                Ok(l) => l,
                Err(e) => {
                    problems.push(format!("member {:?}: {e}", asset.external_id));
                    continue;
                }
            };
            let history = read_history(self.store(), asset.id)?;
            let upto = (m.upto as usize).min(history.len());
            let answers = match choose(&info.selection, &history[..upto]) {
                Some((rev, a)) if rev == m.revision => a,
                _ => {
                    problems.push(format!(
                        "member {:?}: revision {} is not what the selection chooses",
                        asset.external_id, label.id
                    ));
                    &label.answers
                }
            };
            let bytes = answers_bytes(answers);
            if hash64(&bytes) != m.answers_hash {
                problems.push(format!("member {:?}: answers hash differs", asset.external_id));
            }
            buf.clear();
            member_bytes(&mut buf, &asset.external_id, &asset.digest, &bytes);
            h.update(&buf);
            rows.push(asset.external_id);
        }
        if rows.windows(2).any(|w| w[0] >= w[1]) {
            problems.push("members are not in external-id order".into());
        }
        let digest = Digest(*h.finalize().as_bytes());
        if digest != info.digest {
            problems.push(format!("digest {digest} differs from the stored {}", info.digest));
        }
        Ok(problems)
    }

    /// Registers a model version as trained on a snapshot, so the lineage of its
    /// predictions reaches that snapshot.
    pub fn register_model(
        &self,
        actor: &str,
        project: &str,
        name: &str,
        version: &str,
        trained_on: &str,
    ) -> Result<ModelInfo> {
        check_name("actor", actor)?;
        check_name("model name", name)?;
        check_name("model version", version)?;
        let p: Arc<Project> = self.project(project)?;
        let snap = self.snapshot_info(project, trained_on)?;
        self.write(|txn| {
            let key = keys::model(p.id, name, version);
            if txn.store().contains(&key)? {
                return Err(Error::ModelExists {
                    project: p.name.clone(),
                    model: format!("{name}@{version}"),
                });
            }
            let info = ModelInfo {
                project: p.id,
                name: name.to_string(),
                version: version.to_string(),
                trained_on: snap.name.clone(),
                trained_on_digest: snap.digest,
                registered_at: txn.now(),
            };
            txn.batch().put(key, &info);
            txn.event(
                actor,
                Action::ModelRegistered {
                    project: p.id,
                    model: format!("{name}@{version}"),
                    trained_on: snap.name.clone(),
                },
            );
            Ok(info)
        })
    }

    /// The registration of a model version, if it was registered.
    pub fn model_info(&self, project: &str, name: &str, version: &str) -> Result<Option<ModelInfo>> {
        self.store().get(&keys::model(self.project(project)?.id, name, version))
    }

    /// Removes an asset for good: its record, labels and index entries (its events stay
    /// in the log). Refused while a snapshot holds it, naming the snapshots.
    pub fn purge_asset(&self, actor: &str, id: AssetId) -> Result<()> {
        check_name("actor", actor)?;
        let asset = self.asset(id)?;
        self.write(|txn| {
            let holders = self.snapshots_holding_in(asset.project, id)?;
            if !holders.is_empty() {
                return Err(Error::HeldBySnapshots {
                    asset: asset.external_id.clone(),
                    snapshots: holders,
                });
            }
            let history = read_history(txn.store(), id)?;
            for k in txn.store().scan_keys(&keys::asset_events(id)) {
                txn.batch().remove(k?);
            }
            txn.event(
                actor,
                Action::AssetPurged {
                    project: asset.project,
                    asset: id,
                    external_id: asset.external_id.clone(),
                },
            );
            txn.forget(&asset, &history)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Ids over a small alphabet with NUL, shared prefixes and lengths around the
        /// 8-byte key, so that keys tie, ids end inside the key and prefixes nest.
        #[test]
        fn rows_sort_in_bytewise_external_id_order(
            prefix in "(email-0{0,6})?",
            tails in prop::collection::vec("[a\\x00b]{0,11}", 0..60),
        ) {
            let ids: Vec<String> = tails.iter().map(|t| format!("{prefix}{t}")).collect();
            let facts: Vec<Facts<&str>> = ids
                .iter()
                .map(|id| Facts {
                    project: crate::model::project::ProjectId(1),
                    external_id: id.as_str(),
                    content: Digest([0; 32]),
                    split_hash: 0,
                })
                .collect();
            let choice = columns::Choice { revision: 0, upto: 1, answers_hash: 0, answers: &[][..] };
            let mut rows: Vec<Row> = facts.iter().enumerate().map(|(i, f)| (f, &choice, i as u32)).collect();
            sort_by_external_id(&mut rows);
            let got: Vec<&str> = rows.iter().map(|r| r.0.external_id).collect();
            let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }
}
