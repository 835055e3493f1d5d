//! Opening a database: options, the format upgrade, loading the index checkpoint and
//! replaying the event-log tail after it (or rebuilding), and the background text
//! committer.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::rebuild::{add_derived, read_for_index, rebuild_indexes, rebuild_text};
use super::{Db, Inner, Projects};
use crate::index::text::{TextIndex, TextOp};
use crate::index::{self, Indexes};
use crate::model::asset::AssetId;
use crate::model::error::{Error, Result};
use crate::model::event::{Event, Seq};
use crate::model::project::Project;
use crate::store::{codec, keys, Store, FORMAT_VERSION};

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
        super::compact::recover(&path)?;
        let (store, format) = Store::open(&path, self.cache_bytes)?;
        let upgraded_from = (format < FORMAT_VERSION).then_some(format);
        if let Some(format) = upgraded_from {
            super::upgrade::upgrade(&store, format)?;
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
