//! Derived indexes: roaring bitmaps of asset ids per project, kept in memory.
//!
//! The writer updates them in the same logical write as the primary data (after its
//! batch is applied, still holding the writer lock). They are checkpointed to sled with
//! the event-log seq they reflect on `flush` and on close, and caught up on open by
//! re-deriving every asset that the log touched after that seq. `verify` compares them
//! with a rebuild from primary data.

pub(crate) mod columns;
pub(crate) mod entry;
pub(crate) mod external;
pub(crate) mod meta;
pub(crate) mod numeric;
pub(crate) mod text;

use std::collections::{BTreeMap, HashMap};

use croaring::{Bitmap, Portable};
use serde::{Deserialize, Serialize};

use crate::model::asset::AssetId;
use crate::model::event::Seq;
use crate::model::project::ProjectId;
use crate::store::codec::Bytes;

pub(crate) use entry::{derive, top_scores, Entry, Key, MetaKey, NumKey};
pub(crate) use meta::{Ids, MetaIndex};
pub(crate) use numeric::NumIndex;

/// The indexes of one project.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProjectIndex {
    /// Every asset of the project, deleted ones included.
    pub all: Bitmap,
    /// Every key but metadata.
    pub bitmaps: FastMap<Key, Bitmap>,
    /// `Key::Meta` keys.
    pub meta: MetaIndex,
    pub nums: FastMap<NumKey, NumIndex>,
}

/// A hash map with foldhash's fast hasher (randomly seeded per map): the writer probes
/// these maps several times per asset, and SipHash was a few percent of a bulk load.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

impl ProjectIndex {
    pub(crate) fn bitmap(&self, key: &Key) -> Option<&Bitmap> {
        self.bitmaps.get(key)
    }

    /// Adds assets to a key's set.
    fn add_many(&mut self, key: &Key, ids: &[u32]) {
        // Keys are cloned only when new: most exist already, and a clone allocates.
        match key {
            Key::Meta(name, value) => self.meta.add_many(name, value, ids),
            _ => match self.bitmaps.get_mut(key) {
                Some(bm) => bm.add_many(ids),
                None => {
                    self.bitmaps.insert(key.clone(), Bitmap::of(ids));
                }
            },
        }
    }

    fn add(&mut self, id: u32, e: &Entry) {
        self.all.add(id);
        for k in &e.keys {
            self.add_many(k, &[id]);
        }
        for (k, v) in &e.nums {
            match self.nums.get_mut(k) {
                Some(ix) => ix.insert(id, *v),
                None => self.nums.entry(k.clone()).or_default().insert(id, *v),
            }
        }
    }

    fn remove(&mut self, id: u32, e: &Entry) {
        for k in &e.keys {
            if let Key::Meta(name, value) = k {
                self.meta.remove(name, value, id);
            } else if let Some(bm) = self.bitmaps.get_mut(k) {
                bm.remove(id);
                if bm.is_empty() {
                    self.bitmaps.remove(k);
                }
            }
        }
        for (k, v) in &e.nums {
            if let Some(ix) = self.nums.get_mut(k) {
                ix.remove(id, *v);
                if ix.buckets.is_empty() {
                    self.nums.remove(k);
                }
            }
        }
    }

    /// Removes a set of assets from every bitmap (replay: their old entries are unknown).
    fn forget(&mut self, ids: &Bitmap) {
        self.all -= ids;
        self.bitmaps.retain(|_, bm| {
            *bm -= ids;
            !bm.is_empty()
        });
        self.meta.forget(ids);
        self.nums.retain(|_, ix| {
            ix.buckets.retain(|_, bm| {
                *bm -= ids;
                !bm.is_empty()
            });
            !ix.buckets.is_empty()
        });
    }

    /// Heap bytes the bitmaps hold (see [`allocated`]), with the maps' entries.
    pub(crate) fn memory(&self) -> usize {
        allocated(&self.all)
            + self
                .bitmaps
                .iter()
                .map(|(k, b)| allocated(b) + size_of_val(k))
                .sum::<usize>()
            + self.meta.memory()
            + self.nums.values().map(NumIndex::memory).sum::<usize>()
    }
}

/// How an asset's entry changed in one write.
pub(crate) struct Delta {
    pub project: ProjectId,
    pub asset: AssetId,
    pub before: Option<Entry>,
    /// `None`: the asset was purged.
    pub after: Option<Entry>,
}

/// The index changes of one write (or of a rebuild), applied when its batch has landed:
/// new assets grouped by key, so that a bulk add of N assets updates each bitmap once
/// with N sorted ids instead of N times, then changes to existing assets in order.
#[derive(Default)]
pub(crate) struct Changes {
    added: BTreeMap<ProjectId, Added>,
    deltas: Vec<Delta>,
}

/// New assets of one project, by key.
#[derive(Default)]
struct Added {
    all: Vec<u32>,
    keys: FastMap<Key, Vec<u32>>,
    nums: FastMap<NumKey, Vec<(u32, f64)>>,
}

impl Changes {
    /// An asset that no index holds yet (new, or forgotten by a replay). Ascending ids
    /// make the bulk insert cheapest.
    pub(crate) fn add(&mut self, project: ProjectId, asset: AssetId, e: Entry) {
        let added = self.added.entry(project).or_default();
        let id = asset.0;
        added.all.push(id);
        for k in e.keys {
            match added.keys.get_mut(&k) {
                Some(ids) => ids.push(id),
                None => {
                    added.keys.insert(k, vec![id]);
                }
            }
        }
        for (k, v) in e.nums {
            match added.nums.get_mut(&k) {
                Some(values) => values.push((id, v)),
                None => {
                    added.nums.insert(k, vec![(id, v)]);
                }
            }
        }
    }

    /// A change to an asset.
    pub(crate) fn push(&mut self, delta: Delta) {
        self.deltas.push(delta);
    }

    /// How many assets the changes hold.
    pub(crate) fn len(&self) -> usize {
        self.added.values().map(|a| a.all.len()).sum::<usize>() + self.deltas.len()
    }
}

/// How many new assets a rebuild groups before it applies them: enough for bulk adds,
/// few enough that the grouped ids stay small (~100 bytes an asset).
pub(crate) const REBUILD_CHUNK: usize = 1 << 16;

/// All derived bitmap indexes and the seq they reflect.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Indexes {
    pub seq: Seq,
    pub projects: BTreeMap<ProjectId, ProjectIndex>,
}

impl Indexes {
    /// Applies one write's changes: its new assets first (no delta of the same write
    /// can precede an asset's creation), then its deltas in order.
    pub(crate) fn apply_changes(&mut self, changes: Changes) {
        for (project, added) in changes.added {
            let p = self.projects.entry(project).or_default();
            p.all.add_many(&added.all);
            for (k, ids) in added.keys {
                p.add_many(&k, &ids);
            }
            for (k, values) in added.nums {
                p.nums.entry(k).or_default().insert_many(&values);
            }
        }
        for d in &changes.deltas {
            self.apply(d);
        }
    }

    pub(crate) fn apply(&mut self, d: &Delta) {
        let p = self.projects.entry(d.project).or_default();
        if let Some(before) = &d.before {
            p.remove(d.asset.0, before);
        }
        match &d.after {
            Some(after) => p.add(d.asset.0, after),
            None => {
                p.all.remove(d.asset.0);
            }
        }
    }

    pub(crate) fn forget(&mut self, ids: &Bitmap) {
        for p in self.projects.values_mut() {
            p.forget(ids);
        }
    }

    pub(crate) fn memory(&self) -> usize {
        self.projects.values().map(ProjectIndex::memory).sum()
    }

    /// The serializable image of the indexes.
    pub(crate) fn image(&self) -> Image {
        Image {
            layout: LAYOUT,
            seq: self.seq,
            projects: self
                .projects
                .iter()
                .map(|(id, p)| ProjectImage {
                    project: *id,
                    all: Bytes(to_bytes(&p.all)),
                    // Metadata sets are stored as the other keys' bitmaps are.
                    bitmaps: p
                        .bitmaps
                        .iter()
                        .map(|(k, bm)| (k.clone(), Bytes(to_bytes(bm))))
                        .chain(p.meta.iter().map(|(name, value, ids)| {
                            (Key::Meta(name.clone(), value.clone()), Bytes(to_bytes(&ids.bitmap())))
                        }))
                        .collect(),
                    nums: p
                        .nums
                        .iter()
                        .map(|(k, ix)| {
                            let buckets = ix.buckets.iter().map(|(b, bm)| (*b, Bytes(to_bytes(bm)))).collect();
                            (k.clone(), buckets)
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Rebuilds indexes from an image (decoded borrowing its bitmaps' bytes, or owned);
    /// `Err` names what failed to decode.
    pub(crate) fn from_image<B: AsRef<[u8]>>(image: Image<B>) -> Result<Indexes, String> {
        if image.layout != LAYOUT {
            return Err(format!(
                "checkpoint has index layout {}, this build uses {LAYOUT}",
                image.layout
            ));
        }
        let de = |bytes: &[u8]| from_bytes(bytes).ok_or_else(|| "bad bitmap".to_string());
        let mut out = Indexes {
            seq: image.seq,
            projects: BTreeMap::new(),
        };
        for p in image.projects {
            let mut ix = ProjectIndex {
                all: de(p.all.as_ref())?,
                ..ProjectIndex::default()
            };
            let mut meta = Vec::new();
            for (k, bytes) in p.bitmaps {
                match k {
                    Key::Meta(name, value) => {
                        let set = Ids::from_bytes(bytes.as_ref()).ok_or_else(|| "bad bitmap".to_string())?;
                        meta.push((name, value, set));
                    }
                    k => {
                        ix.bitmaps.insert(k, de(bytes.as_ref())?);
                    }
                }
            }
            ix.meta = MetaIndex::from_sets(meta);
            for (k, buckets) in p.nums {
                let mut n = NumIndex::default();
                for (b, bytes) in buckets {
                    n.buckets.insert(b, de(bytes.as_ref())?);
                }
                ix.nums.insert(k, n);
            }
            out.projects.insert(p.project, ix);
        }
        Ok(out)
    }

    /// Human-readable differences from `other` (the rebuild), for `verify`.
    pub(crate) fn differences(&self, rebuilt: &Indexes) -> Vec<String> {
        let mut out = Vec::new();
        let empty = ProjectIndex::default();
        let ids: std::collections::BTreeSet<_> = self.projects.keys().chain(rebuilt.projects.keys()).collect();
        for id in ids {
            let mine = self.projects.get(id).unwrap_or(&empty);
            let truth = rebuilt.projects.get(id).unwrap_or(&empty);
            let mut diff = |what: String, a: Option<&Bitmap>, b: Option<&Bitmap>| {
                let e = Bitmap::new();
                let (a, b) = (a.unwrap_or(&e), b.unwrap_or(&e));
                if a != b {
                    out.push(format!(
                        "index {id} {what}: {} ids missing, {} extra compared with a rebuild",
                        (b - a).cardinality(),
                        (a - b).cardinality()
                    ));
                }
            };
            diff("all assets".into(), Some(&mine.all), Some(&truth.all));
            let keys: std::collections::BTreeSet<_> = mine.bitmaps.keys().chain(truth.bitmaps.keys()).collect();
            for k in keys {
                diff(format!("{k:?}"), mine.bitmaps.get(k), truth.bitmaps.get(k));
            }
            // Sets are canonical, so equal sets are equal `Ids`: only differing ones are
            // turned into bitmaps.
            for (name, value, ids) in mine.meta.iter() {
                let other = truth.meta.get(name, value);
                if other != Some(ids) {
                    let what = format!("{:?}", Key::Meta(name.clone(), value.clone()));
                    diff(what, Some(&ids.bitmap()), other.map(|o| o.bitmap()).as_deref());
                }
            }
            for (name, value, ids) in truth.meta.iter() {
                if mine.meta.get(name, value).is_none() {
                    let what = format!("{:?}", Key::Meta(name.clone(), value.clone()));
                    diff(what, None, Some(&ids.bitmap()));
                }
            }
            let nkeys: std::collections::BTreeSet<_> = mine.nums.keys().chain(truth.nums.keys()).collect();
            for k in nkeys {
                let en = NumIndex::default();
                let (a, b) = (mine.nums.get(k).unwrap_or(&en), truth.nums.get(k).unwrap_or(&en));
                let buckets: std::collections::BTreeSet<_> = a.buckets.keys().chain(b.buckets.keys()).collect();
                for bk in buckets {
                    diff(format!("{k:?} bucket {bk:06x}"), a.buckets.get(bk), b.buckets.get(bk));
                }
            }
        }
        out
    }
}

/// A bitmap in the portable roaring format (the one every roaring implementation reads).
pub(crate) fn to_bytes(bm: &Bitmap) -> Vec<u8> {
    bm.serialize::<Portable>()
}

/// A bitmap from the portable roaring format; `None` when the bytes are not a valid one.
pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Bitmap> {
    Bitmap::try_deserialize::<Portable>(bytes)
}

/// The heap bytes a bitmap holds, from CRoaring's container statistics: its container
/// directory (key, pointer and type code per container), each container's header and
/// payload, and an allocator header of 16 bytes per allocation.
pub(crate) fn allocated(bm: &Bitmap) -> usize {
    const ALLOC_HEADER: usize = 16;
    const CONTAINER_HEADER: usize = 16;
    let s = bm.statistics();
    let containers = s.n_containers as usize;
    let directory = containers * (2 + 8 + 1) + 3 * ALLOC_HEADER;
    let payload = s.n_bytes_array_containers + s.n_bytes_run_containers + s.n_bytes_bitset_containers;
    directory + containers * (CONTAINER_HEADER + 2 * ALLOC_HEADER) + payload as usize
}

/// The layout of the derived indexes: what [`derive`] emits and how numeric buckets
/// are cut. A checkpoint of another layout is rebuilt rather than loaded.
pub(crate) const LAYOUT: u32 = 2;

/// The checkpointed form of [`Indexes`].
#[derive(Serialize, Deserialize)]
pub(crate) struct Image<B = Bytes> {
    pub layout: u32,
    pub seq: Seq,
    pub projects: Vec<ProjectImage<B>>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ProjectImage<B = Bytes> {
    pub project: ProjectId,
    pub all: B,
    pub bitmaps: Vec<(Key, B)>,
    /// A numeric index's buckets: bucket number and serialized bitmap.
    pub nums: Vec<(NumKey, Vec<(u32, B)>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Indexes {
        let mut ix = Indexes {
            seq: 7,
            ..Indexes::default()
        };
        let p = ix.projects.entry(ProjectId(1)).or_default();
        p.all = Bitmap::of(&[1, 2, 70_000]);
        p.bitmaps.insert(Key::Honeypot, Bitmap::of(&[2]));
        p.meta.add_many("file", &MetaKey::Str("a.jpg".into()), &[1]);
        p.meta.add_many("source", &MetaKey::Bool(true), &[1, 2]);
        p.nums.entry(NumKey::Priority).or_default().insert(1, 5.0);
        ix
    }

    #[test]
    fn an_image_round_trips_and_another_layout_is_refused() {
        let ix = sample();
        assert_eq!(Indexes::from_image(ix.image()), Ok(ix.clone()));
        let mut old = ix.image();
        old.layout = LAYOUT - 1;
        let err = Indexes::from_image(old).expect_err("an older layout must be rebuilt, not loaded");
        assert!(err.contains(&format!("layout {}", LAYOUT - 1)), "{err}");
    }

    #[test]
    fn differences_name_each_metadata_value_whose_assets_differ_either_way() {
        let live = sample();
        assert_eq!(live.differences(&sample()), Vec::<String>::new());
        let mut rebuilt = sample();
        let p = rebuilt.projects.get_mut(&ProjectId(1)).expect("the sample's project");
        p.meta.add_many("file", &MetaKey::Str("a.jpg".into()), &[2]);
        p.meta.add_many("file", &MetaKey::Str("b.jpg".into()), &[70_000]);
        let diffs = live.differences(&rebuilt);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(
            diffs
                .iter()
                .any(|d| d.contains("a.jpg") && d.contains("1 ids missing, 0 extra")),
            "{diffs:?}"
        );
        assert!(
            diffs.iter().any(|d| d.contains("b.jpg") && d.contains("1 ids missing")),
            "{diffs:?}"
        );
        let reverse = rebuilt.differences(&live);
        assert!(
            reverse
                .iter()
                .any(|d| d.contains("b.jpg") && d.contains("0 ids missing, 1 extra")),
            "{reverse:?}"
        );
    }

    /// An entry that varies with `i`: shared and rare keys, values in shared and in
    /// distinct numeric buckets.
    fn entry(i: u32) -> Entry {
        use crate::model::asset::Status;
        let mut e = Entry::default();
        e.keys
            .insert(Key::Status([Status::Todo, Status::Labeled][i as usize % 2]));
        e.keys.insert(Key::Author(format!("a{}", i % 3)));
        if i.is_multiple_of(7) {
            e.keys.insert(Key::Honeypot);
        }
        // A metadata value per asset, and one that half the assets share.
        e.keys.insert(Key::Meta("file".into(), MetaKey::Str(format!("f{i}"))));
        e.keys
            .insert(Key::Meta("source".into(), MetaKey::Str(format!("s{}", i % 2))));
        e.nums.insert(NumKey::Priority, 1.0);
        e.nums.insert(NumKey::Seconds, f64::from(i) * 1.5);
        if i.is_multiple_of(5) {
            e.nums.insert(NumKey::Labels, f64::from(i % 2));
        }
        e
    }

    #[test]
    fn bulk_added_assets_index_as_one_by_one_and_later_deltas_apply_after_them() {
        let project = ProjectId(3);
        // Ids across two bitmap containers, and a later write's delta to one of them.
        let ids: Vec<u32> = (0..300).chain(65_530..65_560).collect();
        let delta = || Delta {
            project,
            asset: AssetId(5),
            before: Some(entry(5)),
            after: Some(entry(6)),
        };
        let mut one_by_one = Indexes::default();
        for &id in &ids {
            one_by_one.apply(&Delta {
                project,
                asset: AssetId(id),
                before: None,
                after: Some(entry(id)),
            });
        }
        one_by_one.apply(&delta());
        let mut bulk = Indexes::default();
        let mut changes = Changes::default();
        for &id in &ids {
            changes.add(project, AssetId(id), entry(id));
        }
        changes.push(delta());
        bulk.apply_changes(changes);
        assert_eq!(bulk, one_by_one);
        let p = &bulk.projects[&project];
        assert_eq!(p.all.cardinality(), ids.len() as u64);
        let status = |s| p.bitmaps[&Key::Status(s)].contains(5);
        use crate::model::asset::Status;
        assert!(
            status(Status::Todo) && !status(Status::Labeled),
            "the delta applied last"
        );
        let file = |f: &str| {
            p.meta
                .get("file", &MetaKey::Str(f.into()))
                .map(|ids| ids.bitmap().to_vec())
        };
        assert_eq!(file("f5"), None, "the delta moved asset 5 from f5 to f6");
        assert_eq!(file("f6"), Some(vec![5, 6]));
        assert_eq!(file("f7"), Some(vec![7]));
        assert_eq!(Indexes::from_image(bulk.image()).as_ref(), Ok(&bulk), "and round trips");
        assert_eq!(p.nums[&NumKey::Priority].buckets.len(), 1, "one value, one bucket");
        assert!(
            p.nums[&NumKey::Seconds].buckets.len() > 100,
            "values spread over buckets"
        );
    }

    #[test]
    fn allocated_bytes_grow_with_containers_and_payload() {
        let small = Bitmap::of(&[1]);
        let spread: Bitmap = (0..16u32).map(|i| i << 16).collect();
        assert!(
            allocated(&spread) > allocated(&small) + 15 * 32,
            "a container costs its header"
        );
        let dense: Bitmap = (0..60_000u32).collect();
        assert!(allocated(&dense) >= 8192, "a bitset container holds 8 KiB");
    }
}
