//! The engine: the database handle, opening and recovery, the one write path and the
//! record read layer. Everything above it (ops, query, snapshot, formats) reads and
//! writes through what this module exposes; only the engine and `store/` know how records
//! are laid out, and only `store/` touches sled.
//!
//! One writer at a time (a `parking_lot` mutex around the counters); every logical write
//! builds one [`Batch`](crate::store::Batch) holding its records, its event-log entry and
//! the new counters, and applies it atomically ([`txn`]). Readers go straight to sled and
//! never take the mutex.

mod compact;
#[cfg(feature = "testing")]
mod hooks;
mod open;
mod read;
mod rebuild;
mod txn;
mod upgrade;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};

use crate::index::external::ExternalIds;
use crate::index::text::TextIndex;
use crate::index::Indexes;
use crate::model::error::{Error, Result};
use crate::model::event::Seq;
use crate::model::project::{Project, ProjectId};
use crate::store::{codec, Counters, Store};

pub use compact::{compact, CompactReport};
#[cfg(feature = "testing")]
pub use compact::{compact_until, CompactStage};
#[cfg(feature = "testing")]
pub use hooks::RecordRef;
pub use open::{DbBuilder, Durability, IndexInfo};
pub(crate) use read::{
    assets_with_labels, assets_with_labels_in, dense, id_range, load_asset, load_label, read_history,
};
pub(crate) use txn::{Staged, Txn};
pub(crate) use upgrade::decode_legacy_project;

/// What a database directory holds on disk ([`Db::disk_usage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes of its files.
    pub on_disk: u64,
    /// Bytes of its records (keys and values) and of its text index.
    pub live: u64,
}

/// A labeldb database. Cheap to clone; `Send + Sync`; readers never block on the writer.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    path: PathBuf,
    durability: Durability,
    /// The writer lock. It guards the counters, which only a writer advances.
    writer: Mutex<Counters>,
    projects: RwLock<Projects>,
    /// External id → asset id, built on first use (see [`Inner::external`]); written
    /// only by the holder of `writer`.
    external: RwLock<Option<ExternalIds>>,
    /// The bitmap indexes; written only by the holder of `writer`.
    index: RwLock<Indexes>,
    /// The seq of the last index checkpoint written.
    checkpointed: Mutex<Seq>,
    /// The full-text index.
    text: Arc<TextIndex>,
    /// The background text committer: a stop signal and its thread.
    committer: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    open_info: IndexInfo,
}

impl Inner {
    /// Checkpoints the indexes if they moved since the last checkpoint, then flushes.
    fn flush(&self) -> Result<()> {
        let guard = self.writer.lock();
        let mut checkpointed = self.checkpointed.lock();
        let index = self.index.read();
        if index.seq != *checkpointed {
            self.store.write_checkpoint(&codec::encode(&index.image()))?;
            *checkpointed = index.seq;
        }
        drop(index);
        drop(guard);
        self.text.commit(|| self.store.flush(), false)?;
        self.store.flush()
    }
}

impl Inner {
    /// The external-id map, built from the FACTS blocks on first use rather than on
    /// open (about 0.6 s per million assets, which a reopen for queries does not need).
    /// Only a holder of the writer lock calls this (the writer inside [`Db::write`], whose
    /// counters it passes; [`Inner::external_for_read`] after taking the lock), so no
    /// write lands while the map is built; a write before it is built leaves it unbuilt,
    /// and the build then reads that write.
    pub(crate) fn external(&self, _writer: &Counters) -> Result<MappedRwLockReadGuard<'_, ExternalIds>> {
        loop {
            if let Some(map) = self.built_external() {
                return Ok(map);
            }
            // Only `repair_indexes`, which holds the writer lock too, unbuilds it: this
            // runs once.
            *self.external.write() = Some(ExternalIds::load(&self.store, || {
                read::assets_with_labels(&self.store).map(|(a, _)| a)
            })?);
        }
    }

    /// [`Inner::external`] for a reader: takes the writer lock only to build the map.
    pub(crate) fn external_for_read(&self) -> Result<MappedRwLockReadGuard<'_, ExternalIds>> {
        match self.built_external() {
            Some(map) => Ok(map),
            None => self.external(&self.writer.lock()),
        }
    }

    fn built_external(&self) -> Option<MappedRwLockReadGuard<'_, ExternalIds>> {
        RwLockReadGuard::try_map(self.external.read(), Option::as_ref).ok()
    }

    /// Writes a checkpoint even if the seq did not move (after a repair).
    pub(crate) fn force_checkpoint(&self) -> Result<()> {
        *self.checkpointed.lock() = Seq::MAX;
        self.flush()?;
        self.text.commit(|| self.store.flush(), true)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.committer.lock().take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
        // Best effort: a failure here has nowhere to go; `flush` reports it to callers.
        let _ = self.flush();
    }
}

#[derive(Default)]
struct Projects {
    by_name: HashMap<String, Arc<Project>>,
    by_id: HashMap<ProjectId, Arc<Project>>,
}

impl Projects {
    fn insert(&mut self, p: Arc<Project>) {
        self.by_id.insert(p.id, p.clone());
        self.by_name.insert(p.name.clone(), p);
    }
}

impl Db {
    /// Opens or creates the database in directory `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        DbBuilder::default().open(path)
    }

    /// Options for opening a database.
    pub fn builder() -> DbBuilder {
        DbBuilder::default()
    }

    /// The directory of the database.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// What opening found: a format upgrade, and the indexes' checkpoint, replay or
    /// rebuild.
    pub fn index_info(&self) -> IndexInfo {
        self.inner.open_info.clone()
    }

    /// Heap bytes the bitmap indexes hold, computed from CRoaring's container statistics
    /// (containers, their headers and payloads, allocator headers).
    pub fn index_memory(&self) -> usize {
        self.inner.index.read().memory()
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.inner.store.size_on_disk()
    }

    /// The database directory's bytes on disk (records, log garbage and the text index)
    /// and its live bytes (every record's key and value, plus the text index's files):
    /// their ratio says how much [`compact`] would give back. Scans every record.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let text = self.path().join("text");
        let text_bytes = if text.exists() { compact::dir_size(&text)? } else { 0 };
        Ok(DiskUsage {
            on_disk: compact::dir_size(self.path())?,
            live: self.inner.store.live_bytes()? + text_bytes,
        })
    }

    /// The seq of the last event written (0 for none).
    pub fn last_seq(&self) -> Seq {
        self.inner.writer.lock().last_seq
    }

    /// The project with this name.
    pub fn project(&self, name: &str) -> Result<Arc<Project>> {
        let projects = self.inner.projects.read();
        projects
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownProject(name.to_string()))
    }

    /// The project with this id.
    pub fn project_by_id(&self, id: ProjectId) -> Result<Arc<Project>> {
        let projects = self.inner.projects.read();
        projects
            .by_id
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::UnknownProject(id.to_string()))
    }

    /// Every project, by name.
    pub fn projects(&self) -> Vec<Arc<Project>> {
        let mut v: Vec<_> = self.inner.projects.read().by_id.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// The engine's own surface for the layers above: the store to read records from, the
/// derived indexes, and the locks that `verify` and repair need.
impl Db {
    /// The record store (reads only; writes go through [`Db::write`]).
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The bitmap indexes, for reading.
    pub(crate) fn indexes(&self) -> RwLockReadGuard<'_, Indexes> {
        self.inner.index.read()
    }

    /// The full-text index.
    pub(crate) fn text(&self) -> &TextIndex {
        &self.inner.text
    }

    /// The external-id map, built on first use.
    pub(crate) fn external_ids(&self) -> Result<MappedRwLockReadGuard<'_, ExternalIds>> {
        self.inner.external_for_read()
    }
}
