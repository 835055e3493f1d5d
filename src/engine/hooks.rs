//! Test and benchmark hooks (the `testing` feature): raw record access to simulate
//! damage, and downgrades to earlier formats to exercise the upgrade.

use super::read::assets_with_labels;
use super::Db;
use crate::index::columns;
use crate::model::asset::AssetId;
use crate::model::error::Result;
use crate::model::event::Seq;
use crate::model::label::LabelId;
use crate::model::project::ProjectId;
use crate::model::selection::Selection;
use crate::store::{codec, keys, run, Batch};

/// A stored record, for the test hooks [`Db::damage_record`] and [`Db::raw_record`].
#[derive(Clone, Debug)]
pub enum RecordRef {
    /// An asset record (written when the asset changes after it was added).
    Asset(AssetId),
    /// The run record whose first asset is this one (see `run`).
    Run(AssetId),
    /// A label record.
    Label(LabelId),
    /// An event record.
    Event(Seq),
    /// A project record.
    Project(ProjectId),
    /// The first chunk of the index checkpoint.
    IndexCheckpoint,
    /// The FACTS block of the selection columns holding an asset.
    Facts(AssetId),
    /// The CHOICES block of a selection holding an asset.
    Choices(Selection, AssetId),
    /// A chunk of a snapshot's members.
    SnapshotChunk {
        /// `SnapshotInfo::id`.
        snapshot: u32,
        /// Chunk number from 0.
        chunk: u32,
    },
}

impl RecordRef {
    fn key(self) -> Vec<u8> {
        match self {
            RecordRef::Asset(id) => keys::asset(id),
            RecordRef::Run(id) => keys::run(id),
            RecordRef::Label(id) => keys::label(id),
            RecordRef::Event(seq) => keys::event(seq),
            RecordRef::Project(id) => keys::project(id),
            RecordRef::IndexCheckpoint => keys::index_chunk(0),
            RecordRef::Facts(id) => keys::facts(id.0 >> columns::BLOCK_SHIFT),
            RecordRef::Choices(s, id) => keys::choices(&s, id.0 >> columns::BLOCK_SHIFT),
            RecordRef::SnapshotChunk { snapshot, chunk } => keys::snapshot_chunk(snapshot, chunk),
        }
    }
}

/// Hooks for the tests and benchmarks; not part of the stable API.
impl Db {
    /// Test hook: overwrites the raw bytes of a stored record, bypassing the codec, to
    /// simulate disk damage.
    pub fn damage_record(&self, record: RecordRef, bytes: &[u8]) -> Result<()> {
        self.inner.store.put_raw(&record.key(), bytes)
    }

    /// Test hook: makes the database look as format 1 wrote it (an ASSET, an EXTERNAL
    /// and LABEL records per asset; no runs, no selection columns), for the upgrade on
    /// the next open.
    pub fn downgrade_to_format_1(&self) -> Result<()> {
        let _writer = self.inner.writer.lock();
        let store = &self.inner.store;
        let mut b = Batch::default();
        for (asset, history) in assets_with_labels(store) {
            b.put(keys::external(asset.project, &asset.external_id), &asset.id);
            b.put(keys::asset(asset.id), &asset);
            for l in &history {
                b.put(keys::label(l.id), l);
            }
        }
        for t in [
            keys::tag::FACTS,
            keys::tag::CHOICES,
            keys::tag::CHOICE_DELTA,
            keys::tag::RUN,
        ] {
            for k in store.scan_keys(&[t]) {
                b.remove(k?);
            }
        }
        super::upgrade::downgrade_projects(store, &mut b)?;
        b.put(keys::meta(keys::meta::FORMAT), &1u32);
        store.apply(b)?;
        store.flush()
    }

    /// Test hook: makes the database look as format 4 wrote it (settings as bincode
    /// fields of the project records), for the upgrade on the next open.
    pub fn downgrade_to_format_4(&self) -> Result<()> {
        let _writer = self.inner.writer.lock();
        let store = &self.inner.store;
        let mut b = Batch::default();
        super::upgrade::downgrade_projects(store, &mut b)?;
        b.put(keys::meta(keys::meta::FORMAT), &4u32);
        store.apply(b)?;
        store.flush()
    }

    /// Test hook: writes the runs in format 3's layout and marks the database format 3,
    /// as format 3 left it, for the upgrade on the next open to convert.
    pub fn downgrade_to_format_3(&self) -> Result<()> {
        let _writer = self.inner.writer.lock();
        let store = &self.inner.store;
        run::downgrade_to_format_3(store)?;
        let mut b = Batch::default();
        super::upgrade::downgrade_projects(store, &mut b)?;
        b.put(keys::meta(keys::meta::FORMAT), &3u32);
        store.apply(b)?;
        store.flush()
    }

    /// Benchmark hook: an asset and its labels encoded as records (version byte, bincode,
    /// crc32), as a layout of one key per record would store them (formats 1–2 did; runs
    /// hold the same payloads).
    pub fn encoded_records(&self, id: AssetId) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
        let history = self.history(id)?;
        Ok((
            codec::encode(&self.asset(id)?),
            history.iter().map(codec::encode).collect(),
        ))
    }

    /// Test hook: the raw bytes of a stored record.
    pub fn raw_record(&self, record: RecordRef) -> Result<Option<Vec<u8>>> {
        self.inner.store.get_raw(&record.key())
    }
}
