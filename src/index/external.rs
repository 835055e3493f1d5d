//! The external-id map: (project, external id) → asset id, held in memory.
//!
//! Up to format 2 every asset had an EXTERNAL record; at sled's per-key cost that record
//! alone took as long as SQLite's whole load of the same assets. Since format 3 the map
//! is built on first use (not on open: a reopen for queries should not pay ~0.6 s per
//! million assets), under the writer lock, from the FACTS blocks of the selection
//! columns (each asset's project and external id, 256 assets to a record, written in
//! the same batch as the asset), and the writer updates it after each write lands. Should
//! a FACTS block not decode, the map is built from the asset records instead, so that uniqueness never rests on a damaged record.

use std::collections::HashMap;

use crate::index::columns::{self, Block, Facts};
use crate::index::FastMap;
use crate::model::asset::{Asset, AssetId};
use crate::model::error::Result;
use crate::model::project::ProjectId;
use crate::store::{keys, Store};

/// External id → asset id, per project.
#[derive(Default, PartialEq, Eq)]
pub(crate) struct ExternalIds {
    by_project: HashMap<ProjectId, FastMap<Box<str>, AssetId>>,
}

impl ExternalIds {
    /// Builds the map from the FACTS blocks, or from every asset (`records`) should one
    /// of them not decode.
    pub(crate) fn load<I: Iterator<Item = Asset>>(store: &Store, records: impl FnOnce() -> I) -> Result<ExternalIds> {
        let mut map = ExternalIds::default();
        for raw in store.scan_undecoded(&[keys::tag::FACTS]) {
            let raw = raw?;
            let block = keys::u32_at(raw.key(), 1);
            let Some((block, facts)) = block.zip(raw.decode::<Block<Facts<&str>>>().ok()) else {
                return Ok(ExternalIds::from_assets(records()));
            };
            for (slot, f) in &facts.entries {
                map.insert(f.project, f.external_id, columns::asset_at(block, *slot));
            }
        }
        Ok(map)
    }

    /// Builds the map from the assets.
    pub(crate) fn from_assets(assets: impl Iterator<Item = Asset>) -> ExternalIds {
        let mut map = ExternalIds::default();
        for asset in assets {
            map.insert(asset.project, asset.external_id, asset.id);
        }
        map
    }

    pub(crate) fn get(&self, project: ProjectId, external_id: &str) -> Option<AssetId> {
        self.by_project.get(&project)?.get(external_id).copied()
    }

    /// Maps an external id (borrowed, or owned: then it is not copied) to `id`.
    pub(crate) fn insert(&mut self, project: ProjectId, external_id: impl Into<Box<str>>, id: AssetId) {
        self.by_project
            .entry(project)
            .or_default()
            .insert(external_id.into(), id);
    }

    pub(crate) fn remove(&mut self, project: ProjectId, external_id: &str) {
        if let Some(ids) = self.by_project.get_mut(&project) {
            ids.remove(external_id);
        }
    }

    /// How many ids the map holds.
    pub(crate) fn len(&self) -> usize {
        self.by_project.values().map(FastMap::len).sum()
    }
}
