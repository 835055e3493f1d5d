//! Asset runs: the assets that one write adds, packed many to a record.
//!
//! sled's cost is per key (about 10 µs an insert here, whatever the value's size), so a
//! layout of one key per asset caps a bulk load near 100k assets/s. Since format 3
//! `insert_assets` writes each new asset — its record as added and the labels it came
//! with — into a RUN record (`13‖first id`) that holds the consecutive ids of one write
//! within one block of [`BLOCK`] ids. A run is written once, and rewritten only to drop
//! a purged asset's entry.
//!
//! What changes later lives in the per-asset records, which take precedence:
//! - an ASSET record (`03‖id`), written by every later change of the asset, replaces the
//!   run's copy of it;
//! - LABEL records (`05‖id‖rev`) hold the revisions added later; the run holds
//!   revisions `0..n`, the LABEL records `n..`.
//!
//! So an asset is its ASSET record if it has one, else its run entry; its history is its
//! run entry's labels followed by its LABEL records. Databases written before format 3
//! have no runs: every asset there is an ASSET record, which reads the same way.

use serde::{Deserialize, Serialize};

use crate::model::asset::{Asset, AssetId};
use crate::model::error::Result;
use crate::model::label::Label;
use crate::store::codec::{self, Bytes};
use crate::store::{keys, Batch, Raw, Store};

/// A run never crosses a block of `1 << SHIFT` ids, so the run holding an id starts in
/// that id's block.
pub(crate) const SHIFT: u32 = 6;
/// Ids per block: the most entries a run holds.
pub(crate) const BLOCK: u32 = 1 << SHIFT;

/// A RUN record: entry `i` is asset `first + i` (`first` is in the key) as it was added,
/// or empty once that asset was purged. `body` holds the entries' bare bincode payloads
/// end to end; `offsets` holds `n + 1` little-endian `u32` offsets into it, from 0 to its
/// length, entry `i` being `body[offsets[i]..offsets[i + 1]]`. So a point read looks up
/// two offsets and decodes one entry: format 3 stored a list of entries, whose decoding
/// touched a cache line per entry and was most of a random read's time. `layout` is
/// always [`LAYOUT`]. `B` is [`Bytes`] where it is written and `&[u8]` where it is read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Run<B = Bytes> {
    layout: u8,
    offsets: B,
    body: B,
}

/// The first byte of a run's payload: a varint that bincode never writes, so that no
/// format-3 run (which starts with its entry count, 1 to 64) reads as one of these, nor
/// one of these as a format-3 run.
const LAYOUT: u8 = 0xff;

impl Run {
    /// Packs entries (`None`: a purged asset).
    fn pack(entries: impl IntoIterator<Item = Option<Entry>>) -> Run {
        let mut offsets = vec![0u8; 4];
        let mut body = Vec::new();
        for e in entries {
            if let Some(e) = e {
                codec::canonical_into(&mut body, &e);
            }
            // `put` ends a run before it passes MAX_BYTES, far below 4 GiB (one entry
            // alone cannot come near it: it is an asset of at most 16 MiB of text and
            // the labels it came with, all held in memory by the add).
            offsets.extend_from_slice(&(body.len() as u32).to_le_bytes());
        }
        Run {
            layout: LAYOUT,
            offsets: Bytes(offsets),
            body: Bytes(body),
        }
    }
}

impl<'a> Run<&'a [u8]> {
    /// How many entries the run has room for (purged ones included).
    pub(crate) fn len(&self) -> usize {
        (self.offsets.len() / 4).saturating_sub(1)
    }

    fn offset(&self, i: usize) -> Option<usize> {
        let bytes = self.offsets.get(4 * i..4 * i + 4)?;
        <[u8; 4]>::try_from(bytes).ok().map(|b| u32::from_le_bytes(b) as usize)
    }

    /// Entry `i`: `None` if the asset was purged or `i` is past the end; `key` names the
    /// run in an error.
    pub(crate) fn entry(&self, i: usize, key: &[u8]) -> Result<Option<Entry<&'a [u8]>>> {
        if self.layout != LAYOUT {
            return Err(codec::corrupt(key, format!("run layout {:#04x}", self.layout)));
        }
        let (Some(start), Some(end)) = (self.offset(i), self.offset(i + 1)) else {
            return Ok(None);
        };
        let Some(bytes) = self.body.get(start..end) else {
            return Err(codec::corrupt(
                key,
                format!(
                    "entry {i} at {start}..{end} lies outside the run's {} bytes",
                    self.body.len()
                ),
            ));
        };
        if bytes.is_empty() {
            return Ok(None);
        }
        codec::decode_payload(key, bytes).map(Some)
    }

    /// Every entry in order.
    pub(crate) fn entries<'k>(&self, key: &'k [u8]) -> impl Iterator<Item = Result<Option<Entry<&'a [u8]>>>> + 'k
    where
        'a: 'k,
    {
        let run = self.clone();
        (0..self.len()).map(move |i| run.entry(i, key))
    }

    /// What is wrong with the run's shape, if anything: its layout byte, an offset table
    /// that is not whole `u32`s, holds no entry, or does not ascend from 0 to the body's
    /// length.
    pub(crate) fn shape_problem(&self) -> Option<String> {
        if self.layout != LAYOUT {
            return Some(format!("layout {:#04x}, expected {LAYOUT:#04x}", self.layout));
        }
        if !self.offsets.len().is_multiple_of(4) || self.len() == 0 {
            return Some(format!("an offset table of {} bytes", self.offsets.len()));
        }
        let offsets: Vec<usize> = (0..=self.len()).filter_map(|i| self.offset(i)).collect();
        let ascending = offsets.windows(2).all(|w| w[0] <= w[1]);
        if offsets.first() != Some(&0) || offsets.last() != Some(&self.body.len()) || !ascending {
            return Some(format!(
                "offsets {offsets:?} do not ascend from 0 to the body's {} bytes",
                self.body.len()
            ));
        }
        None
    }
}

/// The layout of format 3, read only to upgrade it (and written by a test hook).
#[derive(Serialize, Deserialize)]
struct Format3Run<B> {
    entries: Vec<Option<Entry<B>>>,
}

#[cfg(feature = "testing")]
/// Test hook: rewrites every run in format 3's layout.
pub(crate) fn downgrade_to_format_3(store: &Store) -> Result<()> {
    let mut batch = Batch::default();
    for raw in store.scan_undecoded(&[keys::tag::RUN]) {
        let raw = raw?;
        let run: Run<&[u8]> = raw.decode()?;
        let entries = run.entries(raw.key()).collect::<Result<Vec<_>>>()?;
        batch.put(raw.key().to_vec(), &Format3Run { entries });
    }
    store.apply(batch)
}

/// Rewrites every format-3 run in the current layout, in batches of `batch_size` runs.
/// A run that is in the current layout already (an interrupted upgrade) or that does not
/// decode (`verify` names it) stays as it is.
pub(crate) fn upgrade(store: &Store, batch_size: usize) -> Result<()> {
    let mut batch = Batch::default();
    let mut pending = 0;
    for raw in store.scan_undecoded(&[keys::tag::RUN]) {
        let raw = raw?;
        let Ok(old) = raw.decode::<Format3Run<&[u8]>>() else {
            continue;
        };
        let run = Run::pack(old.entries.iter().map(|e| e.as_ref().map(Entry::to_owned)));
        batch.put(raw.key().to_vec(), &run);
        pending += 1;
        if pending == batch_size {
            store.apply(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    store.apply(batch)
}

/// One asset of a run: its record and its first labels, each a bare bincode payload
/// ([`codec::canonical`]), and the crc32 of the two. The run's crc covers the whole
/// record for a scan; a point read of one asset checks only its entry's crc, so that it
/// does not hash the other 63 assets of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry<B = Bytes> {
    pub asset: B,
    pub labels: B,
    pub crc: u32,
}

impl Entry {
    pub(crate) fn new(asset: &Asset, labels: &[Label]) -> Entry {
        let asset = codec::canonical(asset);
        let labels = codec::canonical(&labels);
        let crc = entry_crc(&asset, &labels);
        Entry {
            asset: Bytes(asset),
            labels: Bytes(labels),
            crc,
        }
    }
}

impl Entry {
    /// The entry borrowed, to decode.
    pub(crate) fn as_ref(&self) -> Entry<&[u8]> {
        Entry {
            asset: &self.asset.0,
            labels: &self.labels.0,
            crc: self.crc,
        }
    }
}

fn entry_crc(asset: &[u8], labels: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(asset);
    h.update(labels);
    h.finalize()
}

impl Entry<&[u8]> {
    /// Checks the entry's crc; `key` names the run in an error.
    pub(crate) fn check(&self, key: &[u8]) -> Result<()> {
        let actual = entry_crc(self.asset, self.labels);
        if actual == self.crc {
            return Ok(());
        }
        Err(codec::corrupt(
            key,
            format!("entry crc32 mismatch (stored {:08x}, computed {actual:08x})", self.crc),
        ))
    }

    /// The asset; `key` names the run in an error.
    pub(crate) fn asset(&self, key: &[u8]) -> Result<Asset> {
        self.check(key)?;
        codec::decode_payload(key, self.asset)
    }

    /// The labels the asset came with; `key` names the run in an error.
    pub(crate) fn labels(&self, key: &[u8]) -> Result<Vec<Label>> {
        self.check(key)?;
        codec::decode_payload(key, self.labels)
    }

    /// How many labels the asset came with, read from the length prefix alone.
    pub(crate) fn label_count(&self) -> Option<u64> {
        codec::sequence_len(self.labels)
    }

    pub(crate) fn to_owned(&self) -> Entry {
        Entry {
            asset: Bytes(self.asset.to_vec()),
            labels: Bytes(self.labels.to_vec()),
            crc: self.crc,
        }
    }
}

/// The most entry bytes a run takes before the next entry starts another run.
const MAX_BYTES: usize = 64 << 20;

/// Puts the entries of consecutive assets from `first` into the batch: one run per block
/// they touch, or more where a run would pass `max_bytes`.
pub(crate) fn put(batch: &mut Batch, first: AssetId, entries: Vec<Entry>) {
    put_within(batch, first, entries, MAX_BYTES);
}

fn put_within(batch: &mut Batch, first: AssetId, entries: Vec<Entry>, max_bytes: usize) {
    let mut start = first.0;
    let mut run = Vec::new();
    let mut bytes = 0;
    for (e, id) in entries.into_iter().zip(first.0..) {
        let size = e.asset.0.len() + e.labels.0.len();
        if !run.is_empty() && (id & (BLOCK - 1) == 0 || bytes + size > max_bytes) {
            batch.put(keys::run(AssetId(start)), &Run::pack(run.drain(..).map(Some)));
            (start, bytes) = (id, 0);
        }
        bytes += size;
        run.push(e);
    }
    if !run.is_empty() {
        batch.put(keys::run(AssetId(start)), &Run::pack(run.into_iter().map(Some)));
    }
}

/// The first id of the run stored under `key`.
pub(crate) fn first_of(key: &[u8]) -> Option<u32> {
    keys::u32_at(key, 1)
}

/// The run record that holds `id`'s entry, undecoded, if there is one: the last run
/// from the start of `id`'s block up to `id` (walked forward: a block holds one run or
/// a few, and sled walks forward faster).
fn find(store: &Store, id: AssetId) -> Result<Option<Raw>> {
    let start = keys::run(AssetId(id.0 & !(BLOCK - 1)));
    let mut end = keys::run(id);
    end.push(0); // just past `id`'s own key
    store.range_undecoded(&start, &end).last().transpose()
}

/// The position of `id`'s entry in the run stored under `key`.
fn slot(key: &[u8], id: AssetId) -> Option<usize> {
    first_of(key)
        .and_then(|first| id.0.checked_sub(first))
        .map(|i| i as usize)
}

/// Calls `f` with `id`'s entry and its run's key; `None` if no run holds it. The run is
/// decoded without its crc: `f` reads the entry through its own (see [`Entry`]).
fn with_entry<T>(store: &Store, id: AssetId, f: impl FnOnce(&Entry<&[u8]>, &[u8]) -> Result<T>) -> Result<Option<T>> {
    let Some(raw) = find(store, id)? else {
        return Ok(None);
    };
    let run: Run<&[u8]> = codec::decode_without_crc(raw.key(), raw.value())?;
    let entry = match slot(raw.key(), id) {
        Some(i) => run.entry(i, raw.key())?,
        None => None,
    };
    entry.map(|e| f(&e, raw.key())).transpose()
}

/// `id`'s run entry, copied out, with its run's key; `None` if no run holds it.
pub(crate) fn entry(store: &Store, id: AssetId) -> Result<Option<(Vec<u8>, Entry)>> {
    with_entry(store, id, |e, key| Ok((key.to_vec(), e.to_owned())))
}

/// Asset `id` as it was added, if a run holds it.
pub(crate) fn asset(store: &Store, id: AssetId) -> Result<Option<Asset>> {
    with_entry(store, id, |e, key| e.asset(key))
}

/// Asset `id` as it was added and the labels it came with, if a run holds it (one
/// lookup for both).
pub(crate) fn asset_and_labels(store: &Store, id: AssetId) -> Result<Option<(Asset, Vec<Label>)>> {
    with_entry(store, id, |e, key| Ok((e.asset(key)?, e.labels(key)?)))
}

/// The labels asset `id` was added with (none if no run holds it).
pub(crate) fn labels(store: &Store, id: AssetId) -> Result<Vec<Label>> {
    Ok(with_entry(store, id, |e, key| e.labels(key))?.unwrap_or_default())
}

/// Drops `id`'s entry from its run (a purge), removing a run left empty.
pub(crate) fn remove(store: &Store, batch: &mut Batch, id: AssetId) -> Result<()> {
    let Some(raw) = find(store, id)? else {
        return Ok(());
    };
    let run: Run<&[u8]> = raw.decode()?;
    let purged = slot(raw.key(), id);
    let mut entries = Vec::with_capacity(run.len());
    for (i, e) in run.entries(raw.key()).enumerate() {
        entries.push(if Some(i) == purged {
            None
        } else {
            e?.map(|e| e.to_owned())
        });
    }
    if entries.iter().all(Option::is_none) {
        batch.remove(raw.key().to_vec());
    } else {
        batch.put(raw.key().to_vec(), &Run::pack(entries));
    }
    Ok(())
}

/// The run entries of the assets `ids` in id order, as (id, asset as added, its first
/// labels), from the runs in `[start, end)` (which must hold every run that may hold one
/// of `ids`). A run or an entry that fails to read or decode is an `Err` item, and the
/// scan goes on after it.
pub(crate) fn scan_range<'s>(
    store: &'s Store,
    (start, end): &(Vec<u8>, Vec<u8>),
    ids: std::ops::RangeInclusive<u32>,
) -> impl Iterator<Item = Result<(AssetId, Asset, Vec<Label>)>> + 's {
    store
        .range_undecoded(start, end)
        .flat_map(move |raw| entries_of(raw, &ids))
}

/// The decoded entries of one run for [`scan_range`].
fn entries_of(raw: Result<Raw>, ids: &std::ops::RangeInclusive<u32>) -> Vec<Result<(AssetId, Asset, Vec<Label>)>> {
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => return vec![Err(e)],
    };
    let key = raw.key();
    let Some(first) = first_of(key) else {
        return vec![Err(codec::corrupt(key, "a run key without its first asset id".into()))];
    };
    let run: Run<&[u8]> = match raw.decode() {
        Ok(run) => run,
        Err(e) => return vec![Err(e)],
    };
    run.entries(key)
        .zip(first..)
        .filter(|(_, id)| ids.contains(id))
        .filter_map(|(entry, id)| match entry {
            Err(e) => Some(Err(e)),
            Ok(None) => None, // purged
            Ok(Some(e)) => Some(e.asset(key).and_then(|a| Ok((AssetId(id), a, e.labels(key)?)))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever entries a run packs (purged ones included) read back one by one,
        /// through the stored encoding, and the run's shape checks out.
        #[test]
        fn packed_entries_read_back_one_by_one(
            entries in prop::collection::vec(
                prop::option::of((prop::collection::vec(any::<u8>(), 0..40), prop::collection::vec(any::<u8>(), 0..40))),
                1..=64,
            )
        ) {
            let entries: Vec<Option<Entry>> = entries
                .into_iter()
                .map(|e| {
                    e.map(|(asset, labels)| Entry {
                        crc: entry_crc(&asset, &labels),
                        asset: Bytes(asset),
                        labels: Bytes(labels),
                    })
                })
                .collect();
            let stored = codec::encode(&Run::pack(entries.clone()));
            let run: Run<&[u8]> = codec::decode(b"\x13test", &stored).unwrap();
            prop_assert_eq!(run.shape_problem(), None);
            prop_assert_eq!(run.len(), entries.len());
            for (i, want) in entries.iter().enumerate() {
                let got = run.entry(i, b"\x13test").unwrap().map(|e| e.to_owned());
                prop_assert_eq!(&got, want);
            }
            prop_assert_eq!(run.entry(entries.len(), b"\x13test").unwrap(), None);
        }
    }

    #[test]
    fn runs_split_at_block_boundaries() {
        let entry = Entry {
            asset: Bytes(vec![1]),
            labels: Bytes(vec![0]),
            crc: entry_crc(&[1], &[0]),
        };
        let mut batch = Batch::default();
        put(&mut batch, AssetId(60), vec![entry.clone(); 70]);
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), 1 << 20).unwrap();
        store.apply(batch).unwrap();
        let runs: Vec<(u32, usize)> = store
            .scan_undecoded(&[keys::tag::RUN])
            .map(|raw| {
                let raw = raw.unwrap();
                let run: Run<&[u8]> = raw.decode().unwrap();
                assert_eq!(run.shape_problem(), None);
                (first_of(raw.key()).unwrap(), run.len())
            })
            .collect();
        assert_eq!(runs, [(60, 4), (64, 64), (128, 2)]);
        // A byte limit starts a run early: two entries of 2 bytes fit in 5, a third not.
        let mut batch = Batch::default();
        put_within(&mut batch, AssetId(200), vec![entry.clone(); 5], 5);
        store.apply(batch).unwrap();
        let firsts: Vec<u32> = store
            .scan_keys(&[keys::tag::RUN])
            .filter_map(|k| first_of(&k.unwrap()))
            .filter(|&first| first >= 200)
            .collect();
        assert_eq!(firsts, [200, 202, 204]);
        let holder = |id| find(&store, AssetId(id)).unwrap().map(|r| first_of(r.key()).unwrap());
        assert_eq!(holder(203), Some(202));
        assert_eq!(holder(59), None);
        assert_eq!(holder(63), Some(60));
        assert_eq!(holder(64), Some(64));
        assert_eq!(holder(127), Some(64));
        assert_eq!(holder(129), Some(128));
        // Past the end of the last run: the run is found, the entry is not.
        assert_eq!(holder(130), Some(128));
        let none = with_entry(&store, AssetId(130), |_, _| Ok(())).unwrap();
        assert!(none.is_none());
    }
}
