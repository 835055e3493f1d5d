//! Rebuilding derived state from primary data: the bitmap indexes and the text index.

use super::read::{assets_with_labels, load_with_history};
use super::Db;
use crate::index::columns;
use crate::index::external::ExternalIds;
use crate::index::text::{TextIndex, TextOp};
use crate::index::{self, Indexes};
use crate::model::asset::{Asset, AssetId};
use crate::model::error::Result;
use crate::model::event::Seq;
use crate::model::label::Label;
use crate::store::Store;

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
pub(super) fn add_derived(idx: &mut Indexes, assets: impl Iterator<Item = (Asset, Vec<Label>)>) {
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
pub(super) fn read_for_index(store: &Store, id: AssetId) -> Option<(Asset, Vec<Label>)> {
    load_with_history(store, id).ok().flatten()
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

/// The derived structures checked against, and rebuilt from, primary data (`verify`).
impl Db {
    /// Differences between the in-memory bitmap indexes and a rebuild from primary data.
    /// Holds the writer lock so that no write lands between the two.
    pub(crate) fn index_differences(&self) -> Result<Vec<String>> {
        let _writer = self.inner.writer.lock();
        let index = self.inner.index.read();
        let rebuilt = rebuild_indexes(&self.inner.store, index.seq)?;
        Ok(index.differences(&rebuilt))
    }

    /// Whether the in-memory external-id map, if it was built, differs from one built
    /// from the FACTS blocks (which the column check above compares with the records).
    /// Holds the writer lock so that no write lands between the two.
    pub(crate) fn external_difference(&self) -> Result<Option<String>> {
        let _writer = self.inner.writer.lock();
        let map = self.inner.external.read();
        let Some(map) = map.as_ref() else {
            return Ok(None);
        };
        let loaded = ExternalIds::load(&self.inner.store, || {
            assets_with_labels(&self.inner.store).map(|(a, _)| a)
        })?;
        Ok((*map != loaded).then(|| {
            format!(
                "the external-id map ({} ids) differs from the stored FACTS blocks ({} ids)",
                map.len(),
                loaded.len()
            )
        }))
    }

    /// Differences between the text index (after a commit) and the live text assets.
    pub(crate) fn text_differences(&self, live_text: &croaring::Bitmap) -> Result<Vec<String>> {
        let text = &self.inner.text;
        let mut out = Vec::new();
        if let Some(why) = text.broken() {
            out.push(format!("text index writer failed ({why}); run verify --repair"));
        }
        let _writer = self.inner.writer.lock();
        text.commit(|| self.inner.store.flush(), false)?;
        out.extend(text.check_all_files());
        let indexed = text.all()?;
        if &indexed != live_text {
            out.push(format!(
                "text index: {} live text assets missing, {} extra ids",
                (live_text - &indexed).cardinality(),
                (&indexed - live_text).cardinality()
            ));
        }
        Ok(out)
    }

    /// Rebuilds every derived structure from primary data and checkpoints the indexes;
    /// returns the number of bitmap differences fixed.
    pub(crate) fn rebuild_derived(&self) -> Result<usize> {
        let fixed = {
            let _writer = self.inner.writer.lock();
            columns::rebuild(&self.inner.store, assets_with_labels(&self.inner.store), |_| {})?;
            // Built again from the rebuilt FACTS blocks on first use.
            *self.inner.external.write() = None;
            let mut index = self.inner.index.write();
            let rebuilt = rebuild_indexes(&self.inner.store, index.seq)?;
            let fixed = index.differences(&rebuilt).len();
            *index = rebuilt;
            rebuild_text(&self.inner.store, &self.inner.text, index.seq)?;
            fixed
        };
        self.inner.force_checkpoint()?;
        Ok(fixed)
    }
}
