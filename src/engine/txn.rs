//! The one write path: [`Db::write`] runs a closure over a [`Txn`], which gathers the
//! records, the event-log entry, the index and column changes and the text operations of
//! one logical write, then applies the records and the new counters in one atomic batch
//! and publishes the derived changes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::MappedRwLockReadGuard;

use super::read::load_with_history;
use super::{Db, Durability, Inner};
use crate::index::columns;
use crate::index::external::ExternalIds;
use crate::index::text::TextOp;
use crate::index::{self, Delta, Entry};
use crate::model::asset::{Asset, AssetId, Content};
use crate::model::error::{Error, Result};
use crate::model::event::{Action, Event, Seq};
use crate::model::label::Label;
use crate::model::project::{Project, ProjectId};
use crate::store::{keys, run, Batch, Counters, Store};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One logical write in progress: its batch and the counters it advances.
pub(crate) struct Txn<'a> {
    inner: &'a Inner,
    batch: Batch,
    counters: Counters,
    now: u64,
    index: index::Changes,
    text_ops: Vec<TextOp>,
    columns: columns::Pending,
    /// External ids this write adds (`Some`) or removes (`None`).
    external: Vec<(ProjectId, String, Option<AssetId>)>,
    /// Projects this write creates or changes, published to readers once it lands.
    projects: Vec<Project>,
}

/// An asset taken out for a change inside a [`Txn`]: change `asset`, push labels with
/// [`Txn::push_label`], then hand it back with [`Txn::put_asset`].
pub(crate) struct Staged {
    /// The asset as it will be stored.
    pub(crate) asset: Asset,
    /// Its label revisions, oldest first.
    pub(crate) history: Vec<Label>,
    before: Entry,
    was_deleted: bool,
    stored_labels: usize,
}

impl<'a> Txn<'a> {
    /// The record store, as of before this write.
    pub(crate) fn store(&self) -> &'a Store {
        &self.inner.store
    }

    /// The batch of records this write applies.
    pub(crate) fn batch(&mut self) -> &mut Batch {
        &mut self.batch
    }

    /// The counters this write advances.
    pub(crate) fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// The write's clock reading, in milliseconds since the Unix epoch.
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// The external-id map as of before this write.
    pub(crate) fn external_ids(&self) -> Result<MappedRwLockReadGuard<'a, ExternalIds>> {
        self.inner.external(&self.counters)
    }

    /// Loads an asset and its history for a change.
    pub(crate) fn stage(&self, id: AssetId) -> Result<Staged> {
        let (asset, history) = load_with_history(self.store(), id)?.ok_or(Error::UnknownAsset(id))?;
        Ok(Staged {
            before: index::derive(&asset, &history),
            was_deleted: asset.deleted,
            stored_labels: history.len(),
            asset,
            history,
        })
    }

    /// Writes a new label revision of a staged asset.
    pub(crate) fn push_label(&mut self, staged: &mut Staged, label: Label) {
        if let Some(k) = keys::source_label(&label.source, label.id) {
            self.batch.mark(k);
        }
        self.batch.put(keys::label(label.id), &label);
        staged.asset.revisions += 1;
        staged.history.push(label);
    }

    /// Stores a staged asset as a new version, with its index, column and text changes.
    pub(crate) fn put_asset(&mut self, staged: Staged) -> Result<()> {
        let Staged {
            mut asset,
            history,
            before,
            was_deleted,
            stored_labels,
        } = staged;
        let id = asset.id;
        if asset.deleted != was_deleted {
            self.text_ops.push(TextOp::Delete(id));
            self.text_ops.extend(TextOp::for_asset(&asset));
        }
        if history.len() != stored_labels {
            self.columns.add_labels(id, &history, stored_labels);
        }
        asset.version += 1;
        self.batch.put(keys::asset(id), &asset);
        self.index.push(Delta {
            project: asset.project,
            asset: id,
            before: Some(before),
            after: Some(index::derive(&asset, &history)),
        });
        Ok(())
    }

    /// Stores new assets with consecutive ids from `first`, each with its labels (whose
    /// ids and parents are set), as one run.
    pub(crate) fn insert_assets(&mut self, first: AssetId, assets: Vec<(Asset, Vec<Label>)>) -> Result<()> {
        let mut entries = Vec::with_capacity(assets.len());
        for (asset, labels) in assets {
            for l in &labels {
                if let Some(k) = keys::source_label(&l.source, l.id) {
                    self.batch.mark(k);
                }
            }
            self.columns.add_asset(self.store(), &asset, &labels)?;
            self.index.add(asset.project, asset.id, index::derive(&asset, &labels));
            entries.push(run::Entry::new(&asset, &labels));
            // The asset is stored: its external id and text move on without a copy.
            let Asset {
                id,
                project,
                external_id,
                content,
                ..
            } = asset;
            self.external.push((project, external_id, Some(id)));
            if let Content::Text(text) = content {
                // A new asset has no document to delete first.
                self.text_ops.push(TextOp::Insert(id, text));
            }
        }
        run::put(&mut self.batch, first, entries);
        Ok(())
    }

    /// Removes an asset, whose labels are `history`, with its records, its external id,
    /// its index entries, its columns and its text.
    pub(crate) fn forget(&mut self, asset: &Asset, history: &[Label]) -> Result<()> {
        for l in history {
            self.batch.remove(keys::label(l.id));
            if let Some(k) = keys::source_label(&l.source, l.id) {
                self.batch.remove(k);
            }
        }
        self.batch.remove(keys::asset(asset.id));
        run::remove(self.store(), &mut self.batch, asset.id)?;
        self.external.push((asset.project, asset.external_id.clone(), None));
        self.columns.remove_asset(self.store(), asset.id, history)?;
        self.text_ops.push(TextOp::Delete(asset.id));
        self.index.push(Delta {
            project: asset.project,
            asset: asset.id,
            before: Some(index::derive(asset, history)),
            after: None,
        });
        Ok(())
    }

    /// Stores a project record, and publishes it to readers when the write lands (still
    /// under the writer lock, so that writes publish in the order they land).
    pub(crate) fn put_project(&mut self, project: Project) {
        self.batch.put(keys::project(project.id), &project);
        self.projects.push(project);
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
}

impl Db {
    /// Runs one logical write: `f` fills a batch, which is applied atomically with the
    /// advanced counters. If `f` fails nothing is written; if it records no event,
    /// nothing changed and nothing is written.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R>) -> Result<R> {
        let inner = &*self.inner;
        let mut guard = inner.writer.lock();
        let mut txn = Txn {
            inner,
            batch: Batch::default(),
            counters: *guard,
            now: now_ms(),
            index: index::Changes::default(),
            text_ops: Vec::new(),
            columns: columns::Pending::default(),
            external: Vec::new(),
            projects: Vec::new(),
        };
        let out = f(&mut txn)?;
        if txn.counters.last_seq == guard.last_seq {
            return Ok(out);
        }
        let Txn {
            mut batch,
            counters,
            index: changes,
            text_ops,
            columns,
            external,
            projects,
            ..
        } = txn;
        columns.write(&inner.store, &mut batch)?;
        batch.put(keys::meta(keys::meta::COUNTERS), &counters);
        inner.store.apply(batch)?;
        // An unbuilt map stays unbuilt: building it reads this write.
        if let Some(map) = inner.external.write().as_mut() {
            for (project, external_id, id) in external {
                match id {
                    Some(id) => map.insert(project, external_id, id),
                    None => map.remove(project, &external_id),
                }
            }
        }
        {
            let mut index = inner.index.write();
            index.apply_changes(changes);
            index.seq = counters.last_seq;
        }
        for p in projects {
            inner.projects.write().insert(Arc::new(p));
        }
        // The text writer only fails when its thread died; the primary write has landed,
        // so the error is reported rather than returned, and `verify` will catch the gap.
        if let Err(e) = inner.text.apply(text_ops, counters.last_seq) {
            inner.text.mark_broken(e.to_string());
        }
        *guard = counters;
        drop(guard);
        if inner.durability == Durability::Immediate {
            self.flush()?;
        }
        Ok(out)
    }
}
