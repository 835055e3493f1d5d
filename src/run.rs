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

use crate::asset::{Asset, AssetId};
use crate::error::Result;
use crate::label::Label;
use crate::store::codec::{self, Bytes};
use crate::store::{keys, Batch, Raw, Store};

/// A run never crosses a block of `1 << SHIFT` ids, so the run holding an id starts in
/// that id's block.
pub(crate) const SHIFT: u32 = 6;
/// Ids per block: the most entries a run holds.
pub(crate) const BLOCK: u32 = 1 << SHIFT;

/// A RUN record: entry `i` is asset `first + i` (`first` is in the key) as it was added,
/// or `None` once that asset was purged. `B` is [`Bytes`] where it is written (encoded
/// as one byte string, not byte by byte) and `&[u8]` where it is read, so that reading
/// one asset decodes only its entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Run<B = Bytes> {
    pub entries: Vec<Option<Entry<B>>>,
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

/// Puts the entries of consecutive assets from `first` into the batch, one run per
/// block they touch.
pub(crate) fn put(batch: &mut Batch, first: AssetId, entries: Vec<Entry>) {
    let mut id = first.0;
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let room = BLOCK - (id & (BLOCK - 1));
        let run = Run {
            entries: entries.by_ref().take(room as usize).map(Some).collect(),
        };
        batch.put(keys::run(AssetId(id)), &run);
        id = id.wrapping_add(room);
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
    match slot(raw.key(), id).and_then(|i| run.entries.get(i)) {
        Some(Some(entry)) => f(entry, raw.key()).map(Some),
        _ => Ok(None),
    }
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
    let mut run: Run = raw.decode()?;
    if let Some(entry) = slot(raw.key(), id).and_then(|i| run.entries.get_mut(i)) {
        *entry = None;
    }
    if run.entries.iter().all(Option::is_none) {
        batch.remove(raw.key().to_vec());
    } else {
        batch.put(raw.key().to_vec(), &run);
    }
    Ok(())
}

/// Every run entry in id order, as (id, asset as added, its first labels). Entries and
/// runs that fail to decode are left out: `verify` names them.
pub(crate) fn scan(store: &Store) -> impl Iterator<Item = (AssetId, Asset, Vec<Label>)> + '_ {
    store
        .scan_undecoded(&[keys::tag::RUN])
        .filter_map(|raw| raw.ok())
        .flat_map(|raw| {
            let first = first_of(raw.key());
            let decoded: Vec<_> = match (first, raw.decode::<Run<&[u8]>>()) {
                (Some(first), Ok(run)) => run
                    .entries
                    .iter()
                    .zip(first..)
                    .filter_map(|(e, id)| {
                        let e = e.as_ref()?;
                        Some((AssetId(id), e.asset(raw.key()).ok()?, e.labels(raw.key()).ok()?))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            decoded
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                (first_of(raw.key()).unwrap(), run.entries.len())
            })
            .collect();
        assert_eq!(runs, [(60, 4), (64, 64), (128, 2)]);
        let holder = |id| find(&store, AssetId(id)).unwrap().map(|r| first_of(r.key()).unwrap());
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
