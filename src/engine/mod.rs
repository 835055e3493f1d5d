//! The database handle and its write path.
//!
//! One writer at a time (a `parking_lot` mutex around the counters); every logical write
//! builds one [`Batch`] holding its records, its event-log entry and the new counters,
//! and applies it atomically. Readers go straight to sled and never take the mutex.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};

use crate::index::columns;
use crate::index::external::ExternalIds;
use crate::index::text::{TextIndex, TextOp};
use crate::index::{self, Delta, Indexes};
use crate::model::asset::{
    Asset, AssetId, Content, MetaValue, NewAsset, Status, MAX_EXTERNAL_ID_LEN, MAX_META_KEY_LEN, MAX_META_VALUE_LEN,
    MAX_TEXT_LEN,
};
use crate::model::error::{Error, Result};
use crate::model::event::{Action, Event, Seq};
use crate::model::label::{Label, LabelId, LabelKind, NewLabel, Source};
use crate::model::project::{check_name, Project, ProjectId, Schema, Settings};
use crate::model::selection::Selection;
use crate::store::run;
use crate::store::{codec, keys, Batch, Counters, Store, FORMAT_VERSION};

/// When writes become durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Writes are visible at once and durable after [`Db::flush`]. sled also flushes in
    /// the background every 500 ms, so a crash loses at most the writes of the last
    /// half second that were not flushed — each one whole, never half of one.
    #[default]
    Eventual,
    /// Every write is flushed before it returns.
    Immediate,
}

/// Options for opening a [`Db`].
#[derive(Clone, Debug)]
pub struct DbBuilder {
    durability: Durability,
    cache_bytes: u64,
    commit_interval: Duration,
}

impl Default for DbBuilder {
    fn default() -> DbBuilder {
        DbBuilder {
            durability: Durability::Eventual,
            cache_bytes: 256 << 20,
            commit_interval: Duration::from_secs(1),
        }
    }
}

impl DbBuilder {
    /// When writes become durable (default [`Durability::Eventual`]).
    pub fn durability(mut self, durability: Durability) -> DbBuilder {
        self.durability = durability;
        self
    }

    /// sled's page cache size in bytes (default 256 MiB).
    pub fn cache_bytes(mut self, bytes: u64) -> DbBuilder {
        self.cache_bytes = bytes;
        self
    }

    /// How often the full-text index commits in the background (default 1 s). Text
    /// search sees a write after the next commit; `Db::flush` commits at once.
    pub fn commit_interval(mut self, interval: Duration) -> DbBuilder {
        self.commit_interval = interval;
        self
    }

    /// Opens or creates the database in directory `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Db> {
        let path = path.as_ref().to_path_buf();
        let (store, format) = Store::open(&path, self.cache_bytes)?;
        let upgraded_from = (format < FORMAT_VERSION).then_some(format);
        if let Some(format) = upgraded_from {
            upgrade(&store, format)?;
        }
        let counters = store.counters()?;
        let mut projects = Projects::default();
        for kv in store.scan::<Project>(&[keys::tag::PROJECT]) {
            let (_, p) = kv?;
            projects.insert(Arc::new(p));
        }
        let (index, mut info) = load_indexes(&store, counters.last_seq)?;
        info.upgraded_from = upgraded_from;
        let text = Arc::new(load_text(&store, &path, counters.last_seq, &mut info)?);
        let committer = spawn_committer(text.clone(), store.clone(), self.commit_interval);
        Ok(Db {
            inner: Arc::new(Inner {
                store,
                path,
                durability: self.durability,
                writer: Mutex::new(counters),
                projects: RwLock::new(projects),
                external: RwLock::new(None),
                // After a rebuild or a replay the checkpoint is stale: the next flush rewrites it.
                checkpointed: Mutex::new(if info.rebuilt.is_some() || info.replayed_events > 0 {
                    Seq::MAX
                } else {
                    info.checkpoint_seq
                }),
                index: RwLock::new(index),
                text,
                committer: Mutex::new(Some(committer)),
                open_info: info,
            }),
        })
    }
}

/// Brings a database of an older format to [`FORMAT_VERSION`], writing the new format
/// version in the last batch (an interrupted upgrade runs again on the next open).
/// Format 1 had no selection columns and format 2's FACTS had no project: their columns
/// are derived again, and their EXTERNAL records removed (format 3 keeps external ids in
/// memory); their asset and label records stay, read as they are. Format 3's runs listed
/// their entries; format 4's have an offset table: the runs are rewritten.
fn upgrade(store: &Store, from: u32) -> Result<()> {
    let format_record = |b: &mut Batch| b.put(keys::meta(keys::meta::FORMAT), &FORMAT_VERSION);
    if from >= 3 {
        run::upgrade(store, 256)?;
        let mut b = Batch::default();
        format_record(&mut b);
        store.apply(b)?;
        return store.flush();
    }
    let mut external = Vec::new();
    for k in store.scan_keys(&[keys::tag::EXTERNAL]) {
        external.push(k?);
    }
    columns::rebuild(store, assets_with_labels(store), |b| {
        for k in external {
            b.remove(k);
        }
        format_record(b);
    })?;
    store.flush()
}

/// A labeldb database. Cheap to clone; `Send + Sync`; readers never block on the writer.
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    path: PathBuf,
    durability: Durability,
    /// The writer lock. It guards the counters, which only a writer advances.
    pub(crate) writer: Mutex<Counters>,
    projects: RwLock<Projects>,
    /// External id → asset id, built on first use (see [`Inner::external`]); written
    /// only by the holder of `writer`.
    pub(crate) external: RwLock<Option<ExternalIds>>,
    /// The bitmap indexes; written only by the holder of `writer`.
    pub(crate) index: RwLock<Indexes>,
    /// The seq of the last index checkpoint written.
    checkpointed: Mutex<Seq>,
    /// The full-text index.
    pub(crate) text: Arc<TextIndex>,
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
            *self.external.write() = Some(ExternalIds::load(&self.store)?);
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

/// Commits the text index every `interval` while it has uncommitted changes.
fn spawn_committer(text: Arc<TextIndex>, store: Store, interval: Duration) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || loop {
        match stopped.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if text.dirty() {
                    // A failed commit is retried at the next tick; `flush` reports errors.
                    let _ = text.commit(|| store.flush(), false);
                }
            }
            _ => return,
        }
    });
    (stop, thread)
}

/// Opens the text index and brings it to `last_seq`: replays the log after its commit,
/// or rebuilds it when it has no usable commit or is ahead of the log.
fn load_text(store: &Store, path: &Path, last_seq: Seq, info: &mut IndexInfo) -> Result<TextIndex> {
    let (text, found) = TextIndex::open(&TextIndex::dir(path))?;
    let touched = match found {
        Ok(Some(s)) if s <= last_seq => touched_since(store, s)?
            .map(|(t, _)| t)
            .ok_or_else(|| "a damaged event in the log tail".to_string()),
        Ok(None) if last_seq == 0 => Ok(croaring::Bitmap::new()),
        // The text index commits only after sled is flushed: being ahead means writes that
        // were durable are gone. Say so rather than quietly rebuilding over the loss.
        Ok(Some(s)) => {
            return Err(Error::Corruption {
                key: TextIndex::dir(path).display().to_string(),
                reason: format!(
                    "the text index reflects seq {s} but the event log ends at {last_seq}: flushed writes were lost \
                     (delete the text directory to open what remains)"
                ),
            })
        }
        Ok(None) => Err("the text index has no usable commit".to_string()),
        Err(damaged) => Err(damaged),
    };
    match touched {
        Ok(touched) => {
            let mut ops = Vec::new();
            for id in touched.iter() {
                let id = AssetId(id);
                ops.push(TextOp::Delete(id));
                if let Some((asset, _)) = read_for_index(store, id) {
                    ops.extend(TextOp::for_asset(&asset));
                }
            }
            text.apply(ops, last_seq)?;
        }
        Err(why) => {
            info.text_rebuilt = Some(why);
            rebuild_text(store, &text, last_seq)?;
        }
    }
    // A replay or a rebuild moved the index: commit it now. A clean reopen has nothing
    // to commit (a forced commit there cost a tantivy commit and fsyncs on every open).
    text.commit(|| store.flush(), info.text_rebuilt.is_some())?;
    Ok(text)
}

/// Re-adds every live text asset to an emptied text index.
pub(crate) fn rebuild_text(store: &Store, text: &TextIndex, seq: Seq) -> Result<()> {
    text.clear()?;
    let mut ops = Vec::with_capacity(4096);
    for (asset, _) in assets_with_labels(store) {
        ops.extend(TextOp::for_asset(&asset));
        if ops.len() >= 4096 {
            text.apply(std::mem::take(&mut ops), 0)?;
        }
    }
    text.apply(ops, seq)
}

/// A stored record, for the test hooks [`Db::damage_record`] and [`Db::raw_record`].
#[doc(hidden)]
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

/// What opening found: the database's format, and the state of its indexes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexInfo {
    /// The format version the database was upgraded from to [`crate::FORMAT_VERSION`],
    /// if it was.
    pub upgraded_from: Option<u32>,
    /// The seq of the checkpoint loaded (0: none).
    pub checkpoint_seq: Seq,
    /// Events replayed after the checkpoint.
    pub replayed_events: u64,
    /// Why the indexes were rebuilt from primary data instead, if they were.
    pub rebuilt: Option<String>,
    /// Why the text index was rebuilt from primary data, if it was.
    pub text_rebuilt: Option<String>,
}

/// Loads the index checkpoint and replays the log after it, or rebuilds.
fn load_indexes(store: &Store, last_seq: Seq) -> Result<(Indexes, IndexInfo)> {
    let mut info = IndexInfo::default();
    let loaded = match store.read_checkpoint() {
        Ok(Some(bytes)) => match codec::decode::<index::Image<&[u8]>>(&keys::index_head(), &bytes) {
            Ok(image) => Indexes::from_image(image).map_err(|e| format!("checkpoint does not decode: {e}")),
            Err(e) => Err(e.to_string()),
        },
        Ok(None) if last_seq == 0 => Ok(Indexes::default()),
        Ok(None) => Err("no checkpoint".to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut idx = match loaded {
        Ok(i) if i.seq <= last_seq => i,
        Ok(i) => {
            info.rebuilt = Some(format!("checkpoint at seq {} is ahead of the log ({last_seq})", i.seq));
            rebuild_indexes(store, last_seq)?
        }
        Err(reason) => {
            info.rebuilt = Some(reason);
            rebuild_indexes(store, last_seq)?
        }
    };
    info.checkpoint_seq = idx.seq;
    if idx.seq < last_seq {
        // A damaged event cannot say what it touched: rebuild everything instead.
        let Some((touched, events)) = touched_since(store, idx.seq)? else {
            info.rebuilt = Some("a damaged event in the log tail".into());
            return Ok((rebuild_indexes(store, last_seq)?, info));
        };
        info.replayed_events = events;
        idx.forget(&touched);
        add_derived(
            &mut idx,
            touched.iter().filter_map(|id| read_for_index(store, AssetId(id))),
        );
        idx.seq = last_seq;
    }
    Ok((idx, info))
}

/// The assets touched by the events after `seq`, and how many events there were;
/// `None` if one of those events is damaged (it cannot say what it touched).
fn touched_since(store: &Store, seq: Seq) -> Result<Option<(croaring::Bitmap, u64)>> {
    let mut touched = croaring::Bitmap::new();
    let mut events = 0;
    for kv in store.range::<Event>(&keys::event(seq + 1), &[keys::tag::EVENT + 1]) {
        let Ok((_, e)) = kv else { return Ok(None) };
        events += 1;
        touched.extend(e.action.assets().map(|a| a.0));
    }
    Ok(Some((touched, events)))
}

/// Whether `n` ids from `first` to `last` are dense enough that range scans over the
/// span (reading at most 4 records per wanted one) beat point reads.
pub(crate) fn dense(first: u32, last: u32, n: usize) -> bool {
    u64::from(last - first) < 4 * n as u64
}

/// The key ranges `[start, end)` of the runs, the asset records and the label records
/// that hold the assets `first..=last`.
pub(crate) fn id_range(first: u32, last: u32) -> [(Vec<u8>, Vec<u8>); 3] {
    let end = |k: Vec<u8>| if last == u32::MAX { vec![k[0] + 1] } else { k };
    let next = AssetId(last.wrapping_add(1));
    [
        (keys::run(AssetId(first & !(run::BLOCK - 1))), end(keys::run(next))),
        (keys::asset(AssetId(first)), end(keys::asset(next))),
        (keys::labels_of(AssetId(first)), end(keys::labels_of(next))),
    ]
}

/// Every asset with its labels, in id order: one merged pass over the runs, the ASSET
/// records and the LABEL records (all ordered by asset id; see [`run`] for how they
/// combine). Records that fail to decode are left out (`verify` names them), so that a
/// damaged record never stops a rebuild.
pub(crate) fn assets_with_labels(store: &Store) -> impl Iterator<Item = (Asset, Vec<Label>)> + '_ {
    assets_with_labels_in(store, 0, u32::MAX).filter_map(Result::ok)
}

/// The assets `first..=last` with their labels, read as [`assets_with_labels`] reads
/// them, except that a record that fails to read or decode is an `Err` item where the
/// merge meets it (the merge goes on after it; an asset may then lack that label).
pub(crate) fn assets_with_labels_in(
    store: &Store,
    first: u32,
    last: u32,
) -> impl Iterator<Item = Result<(Asset, Vec<Label>)>> + '_ {
    let [runs, assets, labels] = id_range(first, last);
    let mut runs = run::scan_range(store, &runs, first..=last).peekable();
    let mut records = store
        .range::<Asset>(&assets.0, &assets.1)
        .map(|kv| kv.map(|(_, a)| a))
        .peekable();
    let mut labels = store
        .range::<Label>(&labels.0, &labels.1)
        .map(|kv| kv.map(|(_, l)| l))
        .peekable();
    std::iter::from_fn(move || {
        if let Some(Err(e)) = runs.next_if(Result::is_err) {
            return Some(Err(e));
        }
        if let Some(Err(e)) = records.next_if(Result::is_err) {
            return Some(Err(e));
        }
        if let Some(Err(e)) = labels.next_if(Result::is_err) {
            return Some(Err(e));
        }
        let next_run = runs.peek().and_then(|r| r.as_ref().ok()).map(|r| r.0);
        let next_record = records.peek().and_then(|a| a.as_ref().ok()).map(|a| a.id);
        let id = match (next_run, next_record) {
            (Some(r), Some(a)) => r.min(a),
            (r, a) => r.or(a)?,
        };
        let from_run = runs
            .next_if(|r| r.as_ref().is_ok_and(|r| r.0 == id))
            .and_then(Result::ok);
        let record = records
            .next_if(|a| a.as_ref().is_ok_and(|a| a.id == id))
            .and_then(Result::ok);
        let (asset, mut history) = match (record, from_run) {
            (Some(a), run) => (a, run.map(|r| r.2).unwrap_or_default()),
            (None, Some((_, a, h))) => (a, h),
            (None, None) => unreachable!("the id came from one of the two"),
        };
        while let Some(Ok(l)) = labels.next_if(|l| l.as_ref().is_ok_and(|l| l.asset() <= id)) {
            if l.asset() == id {
                history.push(l);
            }
        }
        Some(Ok((asset, history)))
    })
}

/// Derives every asset's entry from primary data.
pub(crate) fn rebuild_indexes(store: &Store, seq: Seq) -> Result<Indexes> {
    let mut idx = Indexes {
        seq,
        ..Indexes::default()
    };
    add_derived(&mut idx, assets_with_labels(store));
    Ok(idx)
}

/// Adds the entries of assets that the indexes do not hold (a rebuild's, or a replay's
/// once it forgot them), in bulk, a chunk at a time.
fn add_derived(idx: &mut Indexes, assets: impl Iterator<Item = (Asset, Vec<Label>)>) {
    let mut changes = index::Changes::default();
    for (asset, history) in assets {
        changes.add(asset.project, asset.id, index::derive(&asset, &history));
        if changes.len() == index::REBUILD_CHUNK {
            idx.apply_changes(std::mem::take(&mut changes));
        }
    }
    idx.apply_changes(changes);
}

/// An asset and its history for re-deriving its index entries; `None` if it is gone or
/// damaged (a damaged record is reported by `verify`, not by opening).
fn read_for_index(store: &Store, id: AssetId) -> Option<(Asset, Vec<Label>)> {
    load_with_history(store, id).ok().flatten()
}

/// An asset and its history (as [`load_asset`] and [`read_history`] give them) with one
/// lookup of its run.
pub(crate) fn load_with_history(store: &Store, id: AssetId) -> Result<Option<(Asset, Vec<Label>)>> {
    let (added, mut history) = match run::asset_and_labels(store, id)? {
        Some((asset, labels)) => (Some(asset), labels),
        None => (None, Vec::new()),
    };
    let Some(asset) = store.get(&keys::asset(id))?.or(added) else {
        return Ok(None);
    };
    push_later_labels(store, id, &mut history)?;
    Ok(Some((asset, history)))
}

/// An asset: its ASSET record if it changed since it was added, else its run entry.
pub(crate) fn load_asset(store: &Store, id: AssetId) -> Result<Option<Asset>> {
    match store.get(&keys::asset(id))? {
        Some(a) => Ok(Some(a)),
        None => run::asset(store, id),
    }
}

/// An asset's labels in revision order: those it was added with, then its LABEL records.
pub(crate) fn read_history(store: &Store, asset: AssetId) -> Result<Vec<Label>> {
    let mut history = run::labels(store, asset)?;
    push_later_labels(store, asset, &mut history)?;
    Ok(history)
}

/// Appends an asset's LABEL records (the revisions added after the asset) to `history`.
fn push_later_labels(store: &Store, asset: AssetId, history: &mut Vec<Label>) -> Result<()> {
    for kv in store.scan::<Label>(&keys::labels_of(asset)) {
        history.push(kv?.1);
    }
    Ok(())
}

/// One label: its LABEL record, or its entry in its asset's run.
pub(crate) fn load_label(store: &Store, id: LabelId) -> Result<Option<Label>> {
    match store.get(&keys::label(id))? {
        Some(l) => Ok(Some(l)),
        None => Ok(run::labels(store, id.asset())?.into_iter().nth(id.revision() as usize)),
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

/// What [`Db::add_assets`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddReport {
    /// Ids of the new assets, in input order.
    pub added: Vec<AssetId>,
    /// External ids that already existed and were skipped (re-imports are idempotent).
    pub duplicates: Vec<String>,
    /// Labels written.
    pub labels: u64,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One logical write in progress: its batch and the counters it advances.
pub(crate) struct Txn<'a> {
    store: &'a Store,
    batch: Batch,
    counters: Counters,
    now: u64,
    index: index::Changes,
    text_ops: Vec<TextOp>,
    columns: columns::Pending,
    /// External ids this write adds (`Some`) or removes (`None`).
    external: Vec<(ProjectId, String, Option<AssetId>)>,
}

impl<'a> Txn<'a> {
    pub(crate) fn store(&self) -> &'a Store {
        self.store
    }

    pub(crate) fn batch(&mut self) -> &mut Batch {
        &mut self.batch
    }

    pub(crate) fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }

    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// Removes an asset, whose labels are `history`, from the indexes and the selection
    /// columns when this write lands.
    pub(crate) fn forget(&mut self, asset: &Asset, history: &[Label]) -> Result<()> {
        for l in history {
            self.batch.remove(keys::label(l.id));
            if let Some(k) = keys::source_label(&l.source, l.id) {
                self.batch.remove(k);
            }
        }
        self.batch.remove(keys::asset(asset.id));
        run::remove(self.store, &mut self.batch, asset.id)?;
        self.external.push((asset.project, asset.external_id.clone(), None));
        self.columns.remove_asset(self.store, asset.id, history)?;
        self.text_ops.push(TextOp::Delete(asset.id));
        self.index.push(Delta {
            project: asset.project,
            asset: asset.id,
            before: Some(index::derive(asset, history)),
            after: None,
        });
        Ok(())
    }

    /// Appends an event, with its actor and asset index entries.
    pub(crate) fn event(&mut self, actor: &str, action: Action) -> Seq {
        let seq = self.counters.last_seq + 1;
        self.counters.last_seq = seq;
        self.batch.mark(keys::actor_event(actor, seq));
        if let Some(asset) = action.asset() {
            self.batch.mark(keys::asset_event(asset, seq));
        }
        let event = Event {
            seq,
            at: self.now,
            actor: actor.to_string(),
            action,
        };
        self.batch.put(keys::event(seq), &event);
        seq
    }

    fn put_label(&mut self, label: &Label) {
        if let Some(k) = keys::source_label(&label.source, label.id) {
            self.batch.mark(k);
        }
        self.batch.put(keys::label(label.id), label);
    }

    fn asset_with_history(&self, id: AssetId) -> Result<(Asset, Vec<Label>)> {
        load_with_history(self.store, id)?.ok_or(Error::UnknownAsset(id))
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

    /// Test hook: overwrites the raw bytes of a stored record, bypassing the codec, to
    /// simulate disk damage. Not part of the stable API.
    #[doc(hidden)]
    pub fn damage_record(&self, record: RecordRef, bytes: &[u8]) -> Result<()> {
        self.inner.store.put_raw(&record.key(), bytes)
    }

    /// Test hook: makes the database look as format 1 wrote it (an ASSET, an EXTERNAL
    /// and LABEL records per asset; no runs, no selection columns), for the upgrade on
    /// the next open. Not part of the stable API.
    #[doc(hidden)]
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
        for t in [keys::tag::FACTS, keys::tag::CHOICES, keys::tag::RUN] {
            for k in store.scan_keys(&[t]) {
                b.remove(k?);
            }
        }
        b.put(keys::meta(keys::meta::FORMAT), &1u32);
        store.apply(b)?;
        store.flush()
    }

    /// Test hook: writes the runs in format 3's layout and marks the database format 3,
    /// as format 3 left it, for the upgrade on the next open to convert. Not part of the
    /// stable API.
    #[doc(hidden)]
    pub fn downgrade_to_format_3(&self) -> Result<()> {
        let _writer = self.inner.writer.lock();
        let store = &self.inner.store;
        run::downgrade_to_format_3(store)?;
        let mut b = Batch::default();
        b.put(keys::meta(keys::meta::FORMAT), &3u32);
        store.apply(b)?;
        store.flush()
    }

    /// Benchmark hook: an asset and its labels encoded as records (version byte, bincode,
    /// crc32), as a layout of one key per record would store them (formats 1–2 did; runs
    /// hold the same payloads). Not part of the stable API.
    #[doc(hidden)]
    pub fn encoded_records(&self, id: AssetId) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
        let history = self.history(id)?;
        Ok((
            codec::encode(&self.asset(id)?),
            history.iter().map(codec::encode).collect(),
        ))
    }

    /// Test hook: the raw bytes of a stored record. Not part of the stable API.
    #[doc(hidden)]
    pub fn raw_record(&self, record: RecordRef) -> Result<Option<Vec<u8>>> {
        self.inner.store.get_raw(&record.key())
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

    /// The seq of the last event written (0 for none).
    pub fn last_seq(&self) -> Seq {
        self.inner.writer.lock().last_seq
    }

    /// Runs one logical write: `f` fills a batch, which is applied atomically with the
    /// advanced counters. If `f` fails nothing is written.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R>) -> Result<R> {
        let mut guard = self.inner.writer.lock();
        let mut txn = Txn {
            store: &self.inner.store,
            batch: Batch::default(),
            counters: *guard,
            now: now_ms(),
            index: index::Changes::default(),
            text_ops: Vec::new(),
            columns: columns::Pending::default(),
            external: Vec::new(),
        };
        let out = f(&mut txn)?;
        if txn.counters.last_seq == guard.last_seq {
            // No event: nothing changed, nothing to write.
            return Ok(out);
        }
        let Txn {
            mut batch,
            counters,
            index: changes,
            text_ops,
            columns,
            external,
            ..
        } = txn;
        columns.write(&mut batch);
        batch.put(keys::meta(keys::meta::COUNTERS), &counters);
        self.inner.store.apply(batch)?;
        // An unbuilt map stays unbuilt: building it reads this write.
        if let Some(map) = self.inner.external.write().as_mut() {
            for (project, external_id, id) in external {
                match id {
                    Some(id) => map.insert(project, external_id, id),
                    None => map.remove(project, &external_id),
                }
            }
        }
        {
            let mut index = self.inner.index.write();
            index.apply_changes(changes);
            index.seq = counters.last_seq;
        }
        // The text writer only fails when its thread died; the primary write has landed,
        // so the error is reported rather than returned, and `verify` will catch the gap.
        if let Err(e) = self.inner.text.apply(text_ops, counters.last_seq) {
            self.inner.text.mark_broken(e.to_string());
        }
        *guard = counters;
        drop(guard);
        if self.inner.durability == Durability::Immediate {
            self.flush()?;
        }
        Ok(out)
    }

    // ---- projects ----

    /// Creates a project with this schema and default settings.
    pub fn create_project(&self, actor: &str, name: &str, schema: Schema) -> Result<ProjectId> {
        check_name("project name", name)?;
        check_name("actor", actor)?;
        schema.validate()?;
        let project = self.write(|txn| {
            if txn.store.contains(&keys::project_name(name))? {
                return Err(Error::ProjectExists(name.to_string()));
            }
            let id = ProjectId(txn.counters.next_project);
            txn.counters.next_project += 1;
            let project = Project {
                id,
                name: name.to_string(),
                schema,
                members: BTreeMap::new(),
                settings: Settings::default(),
                created_at: txn.now,
            };
            txn.batch.put(keys::project(id), &project);
            txn.batch.put(keys::project_name(name), &id);
            txn.event(
                actor,
                Action::ProjectCreated {
                    project: id,
                    name: name.to_string(),
                },
            );
            Ok(project)
        })?;
        let id = project.id;
        self.inner.projects.write().insert(Arc::new(project));
        Ok(id)
    }

    /// The project with this name.
    pub fn project(&self, name: &str) -> Result<Arc<Project>> {
        self.inner
            .projects
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownProject(name.to_string()))
    }

    /// The project with this id.
    pub fn project_by_id(&self, id: ProjectId) -> Result<Arc<Project>> {
        self.inner
            .projects
            .read()
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

    // ---- assets ----

    /// Adds one asset (with its labels). An existing external id is an error here;
    /// [`Db::add_assets`] skips them instead.
    pub fn add_asset(&self, actor: &str, project: &str, asset: NewAsset) -> Result<AssetId> {
        let external_id = asset.external_id.clone();
        let report = self.add_assets(actor, project, vec![asset])?;
        report.added.first().copied().ok_or(Error::InvalidInput {
            what: "external id".into(),
            reason: format!("{external_id:?} already exists in project {project:?}"),
        })
    }

    /// Adds assets and their labels in one atomic write. Everything is validated first;
    /// any error writes nothing. External ids that already exist are skipped and
    /// reported as duplicates, so re-running an import is idempotent.
    pub fn add_assets(&self, actor: &str, project: &str, assets: Vec<NewAsset>) -> Result<AddReport> {
        let project = self.project(project)?;
        check_name("actor", actor)?;
        let mut seen = BTreeSet::new();
        for a in &assets {
            validate_new_asset(&project.schema, a)?;
            if !seen.insert(a.external_id.as_str()) {
                return Err(Error::DuplicateExternalId(a.external_id.clone()));
            }
        }
        self.insert_assets(actor, &project, assets)
    }

    /// [`Db::add_assets`] without validation: the caller has validated every asset with
    /// [`validate_new_asset`] and removed duplicates within the input.
    pub(crate) fn insert_assets(&self, actor: &str, project: &Project, assets: Vec<NewAsset>) -> Result<AddReport> {
        self.write(|txn| {
            let mut report = AddReport::default();
            let mut fresh = Vec::with_capacity(assets.len());
            {
                let existing = self.inner.external(&txn.counters)?;
                for a in assets {
                    if existing.get(project.id, &a.external_id).is_some() {
                        report.duplicates.push(a.external_id);
                    } else {
                        fresh.push(a);
                    }
                }
            }
            if fresh.is_empty() {
                return Ok(report);
            }
            let first = txn.counters.next_asset;
            let count = u32::try_from(fresh.len())
                .ok()
                .filter(|n| first.checked_add(*n).is_some());
            let Some(count) = count else {
                return Err(Error::invalid("asset count", "the database is full (2^32 asset ids)"));
            };
            txn.counters.next_asset = first + count;
            let labels: u64 = fresh.iter().map(|a| a.labels.len() as u64).sum();
            let seq = txn.event(
                actor,
                Action::AssetsAdded {
                    project: project.id,
                    first: AssetId(first),
                    last: AssetId(first + count - 1),
                    labels,
                },
            );
            report.labels = labels;
            let mut entries = Vec::with_capacity(fresh.len());
            for (i, a) in fresh.into_iter().enumerate() {
                let id = AssetId(first + i as u32);
                let revisions = a.labels.len() as u32;
                let mut stored: Vec<Label> = Vec::with_capacity(a.labels.len());
                for (rev, l) in a.labels.into_iter().enumerate() {
                    let lid = LabelId::new(id, rev as u32);
                    if let Some(k) = keys::source_label(&l.source, lid) {
                        txn.batch.mark(k);
                    }
                    // An asset comes with few labels: a scan finds the parent.
                    let parent = stored.iter().rev().find(|p| p.source == l.source).map(|p| p.id);
                    stored.push(Label {
                        id: lid,
                        kind: l.kind,
                        source: l.source,
                        parent,
                        derived_from: None,
                        answers: l.answers,
                        scores: l.scores,
                        verdict: l.verdict,
                        created_at: txn.now,
                        seconds: l.seconds,
                    });
                }
                let status = a.status.unwrap_or_else(|| {
                    let annotators = stored
                        .iter()
                        .enumerate()
                        .filter(|(i, l)| {
                            l.kind == LabelKind::Annotation
                                && !stored[..*i]
                                    .iter()
                                    .any(|p| p.kind == LabelKind::Annotation && p.source == l.source)
                        })
                        .count();
                    status_after_annotations(Status::Todo, annotators, &project.settings)
                });
                let digest = a.content.digest();
                let asset = Asset {
                    id,
                    project: project.id,
                    external_id: a.external_id,
                    content: a.content,
                    digest,
                    meta: a.meta,
                    status,
                    priority: a.priority,
                    honeypot: a.honeypot,
                    deleted: false,
                    revisions,
                    version: 0,
                    created_at: txn.now,
                    created_seq: seq,
                };
                txn.columns.add_asset(txn.store, &asset, &stored)?;
                txn.index.add(project.id, id, index::derive(&asset, &stored));
                entries.push(run::Entry::new(&asset, &stored));
                report.added.push(id);
                // The asset is stored: its external id and text move on without a copy.
                let Asset {
                    external_id, content, ..
                } = asset;
                txn.external.push((project.id, external_id, Some(id)));
                if let Content::Text(text) = content {
                    // A new asset has no document to delete first.
                    txn.text_ops.push(TextOp::Insert(id, text));
                }
            }
            run::put(&mut txn.batch, AssetId(first), entries);
            Ok(report)
        })
    }

    /// The asset with this id.
    pub fn asset(&self, id: AssetId) -> Result<Asset> {
        load_asset(&self.inner.store, id)?.ok_or(Error::UnknownAsset(id))
    }

    /// The asset with this external id in the project.
    pub fn asset_by_external_id(&self, project: &str, external_id: &str) -> Result<Asset> {
        let p = self.project(project)?;
        let id = self
            .inner
            .external_for_read()?
            .get(p.id, external_id)
            .ok_or_else(|| Error::UnknownExternalId {
                project: project.to_string(),
                external_id: external_id.to_string(),
            })?;
        self.asset(id)
    }

    /// Ids of every asset of the project (including soft-deleted ones), ascending.
    pub fn asset_ids(&self, project: &str) -> Result<Vec<AssetId>> {
        let p = self.project(project)?;
        let index = self.inner.index.read();
        Ok(index
            .projects
            .get(&p.id)
            .map(|pi| pi.all.iter().map(AssetId).collect())
            .unwrap_or_default())
    }

    /// Changes an asset's state through `f`, which returns the event to record.
    fn update_asset(
        &self,
        actor: &str,
        id: AssetId,
        f: impl FnOnce(&mut Asset) -> Result<Option<Action>>,
    ) -> Result<()> {
        check_name("actor", actor)?;
        self.write(|txn| {
            let (mut asset, history) = txn.asset_with_history(id)?;
            let before = index::derive(&asset, &history);
            let was_deleted = asset.deleted;
            let Some(action) = f(&mut asset)? else {
                return Ok(());
            };
            if asset.deleted != was_deleted {
                txn.text_ops.push(TextOp::Delete(id));
                txn.text_ops.extend(TextOp::for_asset(&asset));
            }
            asset.version += 1;
            txn.batch.put(keys::asset(id), &asset);
            txn.event(actor, action);
            txn.index.push(Delta {
                project: asset.project,
                asset: id,
                before: Some(before),
                after: Some(index::derive(&asset, &history)),
            });
            Ok(())
        })
    }

    /// Moves an asset to a new status; illegal transitions (see [`Status`]) are errors.
    pub fn set_status(&self, actor: &str, id: AssetId, to: Status) -> Result<()> {
        self.update_asset(actor, id, |a| {
            live(a)?;
            if !a.status.can_become(to) {
                return Err(Error::IllegalTransition {
                    asset: a.external_id.clone(),
                    from: a.status,
                    to,
                });
            }
            let before = std::mem::replace(&mut a.status, to);
            Ok(Some(Action::StatusChanged {
                asset: id,
                before,
                after: to,
            }))
        })
    }

    /// Sets (`Some`) or removes (`None`) a metadata value.
    pub fn set_meta(&self, actor: &str, id: AssetId, key: &str, value: Option<MetaValue>) -> Result<()> {
        check_meta(key, value.as_ref())?;
        self.update_asset(actor, id, |a| {
            live(a)?;
            let before = match &value {
                Some(v) => a.meta.insert(key.to_string(), v.clone()),
                None => a.meta.remove(key),
            };
            if before == value {
                return Ok(None);
            }
            Ok(Some(Action::MetaChanged {
                asset: id,
                key: key.to_string(),
                before,
                after: value,
            }))
        })
    }

    /// Sets the queue priority.
    pub fn set_priority(&self, actor: &str, id: AssetId, priority: f64) -> Result<()> {
        check_priority(priority)?;
        self.update_asset(actor, id, |a| {
            live(a)?;
            let before = std::mem::replace(&mut a.priority, priority);
            Ok((before != priority).then_some(Action::PriorityChanged {
                asset: id,
                before,
                after: priority,
            }))
        })
    }

    /// Marks or unmarks an asset as a honeypot.
    pub fn set_honeypot(&self, actor: &str, id: AssetId, honeypot: bool) -> Result<()> {
        self.update_asset(actor, id, |a| {
            live(a)?;
            let before = std::mem::replace(&mut a.honeypot, honeypot);
            Ok((before != honeypot).then_some(Action::HoneypotChanged {
                asset: id,
                after: honeypot,
            }))
        })
    }

    /// Soft-deletes an asset: it leaves queries, keeps its history, and can be restored.
    pub fn delete_asset(&self, actor: &str, id: AssetId) -> Result<()> {
        self.set_deleted(actor, id, true)
    }

    /// Restores a soft-deleted asset.
    pub fn restore_asset(&self, actor: &str, id: AssetId) -> Result<()> {
        self.set_deleted(actor, id, false)
    }

    fn set_deleted(&self, actor: &str, id: AssetId, deleted: bool) -> Result<()> {
        self.update_asset(actor, id, |a| {
            let before = std::mem::replace(&mut a.deleted, deleted);
            Ok((before != deleted).then_some(Action::DeletedChanged {
                asset: id,
                after: deleted,
            }))
        })
    }

    // ---- labels ----

    /// Writes a new label revision on an asset. The actor is the label's source.
    ///
    /// A human annotation moves a `TODO`/`ONGOING` asset on (see [`Status`]). With
    /// `label.parent` set, the write is refused with [`Error::Conflict`] unless that is
    /// still the latest revision of the same source.
    pub fn add_label(&self, id: AssetId, label: NewLabel) -> Result<LabelId> {
        let actor = label.source.actor();
        self.write(|txn| {
            let (mut asset, mut history) = txn.asset_with_history(id)?;
            live(&asset)?;
            let project = self.project_by_id(asset.project)?;
            label.validate(&project.schema, &asset.external_id, &asset.content)?;
            let before = index::derive(&asset, &history);
            let latest = history.iter().rev().find(|l| l.source == label.source).map(|l| l.id);
            if label.parent.is_some() && label.parent != latest {
                return Err(Error::Conflict {
                    asset: asset.external_id.clone(),
                    what: format!("latest revision of {}", label.source),
                    expected: label.parent.map(|l| l.0),
                    actual: latest.map(|l| l.0),
                });
            }
            if let Some(d) = label.derived_from {
                if d.asset() != id || d.revision() >= asset.revisions {
                    return Err(Error::invalid(
                        "derived_from",
                        format!("label {d} is not a revision of asset {:?}", asset.external_id),
                    ));
                }
            }
            let lid = LabelId::new(id, asset.revisions);
            let mut status = None;
            if label.kind == LabelKind::Annotation {
                let mut annotators: BTreeSet<&Source> = history
                    .iter()
                    .filter(|l| l.kind == LabelKind::Annotation)
                    .map(|l| &l.source)
                    .collect();
                annotators.insert(&label.source);
                let after = status_after_annotations(asset.status, annotators.len(), &project.settings);
                if after != asset.status {
                    status = Some((asset.status, after));
                    asset.status = after;
                }
            }
            let stored = Label {
                id: lid,
                kind: label.kind,
                source: label.source.clone(),
                parent: latest,
                derived_from: label.derived_from,
                answers: label.answers,
                scores: label.scores,
                verdict: label.verdict,
                created_at: txn.now,
                seconds: label.seconds,
            };
            txn.put_label(&stored);
            asset.revisions += 1;
            asset.version += 1;
            txn.batch.put(keys::asset(id), &asset);
            txn.event(
                &actor,
                Action::LabelAdded {
                    asset: id,
                    label: lid,
                    kind: stored.kind,
                    source: stored.source.clone(),
                    status,
                },
            );
            history.push(stored);
            txn.columns.add_label(txn.store, id, &history)?;
            txn.index.push(Delta {
                project: asset.project,
                asset: id,
                before: Some(before),
                after: Some(index::derive(&asset, &history)),
            });
            Ok(lid)
        })
    }

    /// The label revision with this id.
    pub fn label(&self, id: LabelId) -> Result<Label> {
        load_label(&self.inner.store, id)?.ok_or(Error::UnknownLabel(id))
    }

    /// Every label revision of an asset, oldest first.
    pub fn history(&self, asset: AssetId) -> Result<Vec<Label>> {
        read_history(&self.inner.store, asset)
    }

    /// A label's ancestors: its parent and derived-from chains, nearest first, each once.
    pub fn ancestors(&self, id: LabelId) -> Result<Vec<Label>> {
        let start = self.label(id)?;
        let mut out = Vec::new();
        let mut seen = BTreeSet::from([id]);
        let mut queue: std::collections::VecDeque<LabelId> =
            start.parent.into_iter().chain(start.derived_from).collect();
        while let Some(next) = queue.pop_front() {
            if !seen.insert(next) {
                continue;
            }
            let l = self.label(next)?;
            queue.extend(l.parent.into_iter().chain(l.derived_from));
            out.push(l);
        }
        Ok(out)
    }

    /// Every label written by a model version or a rule version, by id.
    /// Human sources are answered by [`Db::audit_actor`] (and the author index).
    pub fn labels_from(&self, source: &Source) -> Result<Vec<Label>> {
        let Some(prefix) = keys::source_labels(source) else {
            return Err(Error::invalid("source", "labels_from takes a model or rule source"));
        };
        self.inner
            .store
            .scan_keys(&prefix)
            .map(|k| {
                let k = k?;
                let id = keys::u64_suffix(&k).ok_or_else(|| Error::Corruption {
                    key: keys::describe(&k),
                    reason: "short source index key".into(),
                })?;
                self.label(LabelId(id))
            })
            .collect()
    }

    // ---- event log ----

    /// Every event after `seq`, in order: the change feed.
    pub fn changes_since(&self, seq: Seq) -> impl Iterator<Item = Result<Event>> + '_ {
        self.inner
            .store
            .range::<Event>(&keys::event(seq.saturating_add(1)), &[keys::tag::EVENT + 1])
            .map(|kv| kv.map(|(_, e)| e))
    }

    /// The event with this seq.
    pub fn event(&self, seq: Seq) -> Result<Option<Event>> {
        self.inner.store.get(&keys::event(seq))
    }

    /// Every event about an asset, oldest first, starting with the one that created it.
    pub fn audit_asset(&self, id: AssetId) -> Result<Vec<Event>> {
        let asset = self.asset(id)?;
        let mut seqs = vec![asset.created_seq];
        for k in self.inner.store.scan_keys(&keys::asset_events(id)) {
            let k = k?;
            seqs.extend(keys::u64_suffix(&k));
        }
        self.events(seqs)
    }

    /// Every event by an actor with seq > `since`, oldest first.
    pub fn audit_actor(&self, actor: &str, since: Seq) -> Result<Vec<Event>> {
        let mut seqs = Vec::new();
        for k in self.inner.store.scan_keys(&keys::actor_events(actor)) {
            let k = k?;
            seqs.extend(keys::u64_suffix(&k).filter(|s| *s > since));
        }
        self.events(seqs)
    }

    /// The project an event belongs to.
    pub fn event_project(&self, e: &Event) -> Result<Option<ProjectId>> {
        Ok(match &e.action {
            Action::ProjectCreated { project, .. }
            | Action::AssetsAdded { project, .. }
            | Action::AssetPurged { project, .. }
            | Action::SnapshotCreated { project, .. }
            | Action::SnapshotDeleted { project, .. }
            | Action::SnapshotTagged { project, .. }
            | Action::ModelRegistered { project, .. } => Some(*project),
            other => match other.asset().map(|a| self.asset(a)) {
                Some(Ok(a)) => Some(a.project),
                // A purged asset's events stay in the log; its project is no longer known.
                Some(Err(Error::UnknownAsset(_))) | None => None,
                Some(Err(e)) => return Err(e),
            },
        })
    }

    fn events(&self, seqs: Vec<Seq>) -> Result<Vec<Event>> {
        seqs.into_iter()
            .map(|s| {
                self.event(s)?.ok_or_else(|| Error::Corruption {
                    key: keys::describe(&keys::event(s)),
                    reason: "an index entry points to a missing event".into(),
                })
            })
            .collect()
    }
}

fn live(a: &Asset) -> Result<()> {
    if a.deleted {
        return Err(Error::AssetDeleted(a.external_id.clone()));
    }
    Ok(())
}

/// The status an asset reaches when it has `annotators` distinct human annotators.
fn status_after_annotations(current: Status, annotators: usize, settings: &Settings) -> Status {
    match current {
        Status::Todo | Status::Ongoing if annotators == 0 => current,
        Status::Todo | Status::Ongoing if annotators >= settings.consensus.max(1) as usize => Status::Labeled,
        Status::Todo | Status::Ongoing => Status::Ongoing,
        other => other,
    }
}

fn check_priority(p: f64) -> Result<()> {
    if !p.is_finite() {
        return Err(Error::invalid("priority", format!("{p} is not a finite number")));
    }
    Ok(())
}

fn check_meta(key: &str, value: Option<&MetaValue>) -> Result<()> {
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
