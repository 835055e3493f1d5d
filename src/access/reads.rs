//! A session's reads: what `Db` reads, authorized, cut to the caller's data scope and,
//! for blind consensus, to their own labels.

use std::sync::Arc;

use super::policy::{Grant, Operation};
use super::session::{Access, Session, Target};
use crate::model::asset::{Asset, AssetId};
use crate::model::error::{Error, Result};
use crate::model::event::{Event, Seq};
use crate::model::label::{Label, LabelId};
use crate::model::project::{Member, Project};
use crate::ops::stats::Stats;
use crate::query::{self, AssetSet, Facets, Filter, Hit, Page, Sort};
use crate::snapshot::{ModelInfo, Snapshot, SnapshotInfo};

impl Session {
    /// The project by name. Members who may not list the members see themselves alone.
    pub fn project(&self, name: &str) -> Result<Arc<Project>> {
        let access = self.authorize(Operation::Read, Target::Project(name))?;
        let lists_members = access
            .role
            .is_none_or(|r| super::policy::grant(r, Operation::ReadMembers) != Grant::Deny);
        if lists_members {
            return Ok(access.project);
        }
        let mut p = (*access.project).clone();
        p.members.retain(|user, _| Some(user.as_str()) == self.user());
        Ok(Arc::new(p))
    }

    /// The asset with this id, when it is in the caller's scope. A blind view does not
    /// see how many revisions others wrote: `revisions` and `version` read 0.
    pub fn asset(&self, id: AssetId) -> Result<Asset> {
        seen_asset(self.authorize(Operation::Read, Target::Asset(id))?, id)
    }

    /// The asset with this external id in the project, when it is in the caller's scope.
    pub fn asset_by_external_id(&self, project: &str, external_id: &str) -> Result<Asset> {
        self.authorize(Operation::Read, Target::Project(project))?;
        let id = self.db.asset_by_external_id(project, external_id)?.id;
        self.asset(id)
    }

    /// Ids of the project's assets in the caller's scope (soft-deleted ones included).
    pub fn asset_ids(&self, project: &str) -> Result<Vec<AssetId>> {
        let access = self.authorize(Operation::Read, Target::Project(project))?;
        let mut ids = self.db.asset_ids(project)?;
        ids.retain(|id| access.sees(*id));
        Ok(ids)
    }

    /// A label revision, when the caller may see it.
    pub fn label(&self, id: LabelId) -> Result<Label> {
        let access = self.authorize(Operation::Read, Target::Asset(id.asset()))?;
        let label = self.db.label(id)?;
        if !self.sees_label(&access, &label) {
            return Err(self.deny("read", Some(access.project.id), format!("label {id}")));
        }
        Ok(label)
    }

    /// The labels of an asset that the caller may see, oldest first.
    pub fn history(&self, asset: AssetId) -> Result<Vec<Label>> {
        let access = self.authorize(Operation::Read, Target::Asset(asset))?;
        let mut history = self.db.history(asset)?;
        history.retain(|l| self.sees_label(&access, l));
        Ok(history)
    }

    /// A visible label's ancestors that the caller may see (see [`crate::Db::ancestors`]).
    pub fn ancestors(&self, id: LabelId) -> Result<Vec<Label>> {
        let access = self.authorize(Operation::Read, Target::Asset(id.asset()))?;
        self.label(id)?;
        let mut out = self.db.ancestors(id)?;
        out.retain(|l| access.sees(l.asset()) && self.sees_label(&access, l));
        Ok(out)
    }

    /// [`crate::Db::query`] over what the caller sees.
    pub fn query(&self, project: &str, q: &str) -> Result<AssetSet> {
        self.select(project, &query::parse(q)?)
    }

    /// [`crate::Db::select`] over what the caller sees.
    pub fn select(&self, project: &str, filter: &Filter) -> Result<AssetSet> {
        let access = self.authorize(Operation::Read, Target::Project(project))?;
        self.db
            .select_viewed(&access.project, filter, access.view(self.user()).as_ref())
    }

    /// [`crate::Db::count`] over what the caller sees.
    pub fn count(&self, project: &str, filter: &Filter) -> Result<u64> {
        let access = self.authorize(Operation::Read, Target::Project(project))?;
        self.db
            .count_viewed(&access.project, filter, access.view(self.user()).as_ref())
    }

    /// [`crate::Db::search`] over what the caller sees.
    pub fn search(&self, project: &str, text: &str, filter: Option<&Filter>, limit: usize) -> Result<(u64, Vec<Hit>)> {
        self.ranked(project, &query::search_filter(text, filter)?, limit)
    }

    /// [`crate::Db::ranked`] over what the caller sees.
    pub fn ranked(&self, project: &str, filter: &Filter, limit: usize) -> Result<(u64, Vec<Hit>)> {
        let access = self.authorize(Operation::Read, Target::Project(project))?;
        self.db
            .ranked_viewed(&access.project, filter, limit, access.view(self.user()).as_ref())
    }

    /// [`crate::Db::top`] over what the caller sees.
    pub fn top(&self, project: &str, filter: &Filter, limit: usize) -> Result<Vec<(AssetId, f32)>> {
        let access = self.authorize(Operation::Read, Target::Project(project))?;
        self.db
            .top_viewed(&access.project, filter, limit, access.view(self.user()).as_ref())
    }

    /// [`crate::Db::page`] over the part of `set` the caller sees. A blind view that
    /// hides predictions pages a score sort by id.
    pub fn page(&self, project: &str, set: &AssetSet, sort: Sort, limit: usize, after: Option<&str>) -> Result<Page> {
        let access = self.authorize(Operation::Read, Target::Project(project))?;
        let sort = match sort {
            Sort::Score if access.grant == Grant::Blind && !access.project.settings.show_predictions_to_labelers => {
                Sort::Id
            }
            other => other,
        };
        match &access.scope {
            Some(scope) => {
                let cut = AssetSet::from_bitmap(set.bitmap() & &scope.visible);
                self.db.page(project, &cut, sort, limit, after)
            }
            None => self.db.page(project, set, sort, limit, after),
        }
    }

    /// [`crate::Db::facets`] over the part of `set` the caller sees; a blind view counts
    /// its own annotations and itself as the only author.
    pub fn facets(&self, project: &str, set: &AssetSet) -> Result<Facets> {
        let access = self.authorize(Operation::Read, Target::Project(project))?;
        self.db
            .facets_viewed(&access.project, set, access.view(self.user()).as_ref())
    }

    /// [`crate::Db::stats`] over the assets in the caller's scope and the labels they see.
    pub fn stats(&self, project: &str) -> Result<Stats> {
        let access = self.authorize(Operation::Read, Target::Project(project))?;
        self.db
            .stats_where(project, |id| access.sees(id), |l| self.sees_label(&access, l))
    }

    /// The events about an asset in the caller's scope.
    pub fn audit_asset(&self, id: AssetId) -> Result<Vec<Event>> {
        self.authorize(Operation::ReadAudit, Target::Asset(id))?;
        self.db.audit_asset(id)
    }

    /// The project's events after `since` (by one actor or all) that are about the
    /// project itself or about an asset in the caller's scope.
    pub fn audit_project(&self, project: &str, actor: Option<&str>, since: Seq) -> Result<Vec<Event>> {
        let access = self.authorize(Operation::ReadAudit, Target::Project(project))?;
        let mut events = self.db.audit_project(project, actor, since)?;
        if access.scope.is_some() {
            events.retain(|e| {
                let mut assets = e.action.assets().peekable();
                assets.peek().is_none() || assets.any(|a| access.sees(a))
            });
        }
        Ok(events)
    }

    /// The project's members by user name.
    pub fn members(&self, project: &str) -> Result<Vec<(String, Member)>> {
        self.authorize(Operation::ReadMembers, Target::Project(project))?;
        self.db.members(project)
    }

    /// The project's snapshots with their tags.
    pub fn snapshots(&self, project: &str) -> Result<Vec<(SnapshotInfo, Vec<String>)>> {
        self.authorize(Operation::ReadSnapshots, Target::Project(project))?;
        self.db.snapshots(project)
    }

    /// A snapshot's reader, cut to the examples whose asset is in the caller's scope
    /// (its [`Snapshot::info`] still describes the whole snapshot).
    pub fn snapshot(&self, project: &str, name_or_tag: &str) -> Result<Snapshot> {
        let access = self.authorize(Operation::ReadSnapshots, Target::Project(project))?;
        let snapshot = self.db.snapshot(project, name_or_tag)?;
        Ok(match &access.scope {
            Some(scope) => snapshot.within(&scope.visible),
            None => snapshot,
        })
    }

    /// What a snapshot is.
    pub fn snapshot_info(&self, project: &str, name_or_tag: &str) -> Result<SnapshotInfo> {
        self.authorize(Operation::ReadSnapshots, Target::Project(project))?;
        self.db.snapshot_info(project, name_or_tag)
    }

    /// The tags naming a snapshot.
    pub fn snapshot_tags(&self, project: &str, name_or_tag: &str) -> Result<Vec<String>> {
        self.authorize(Operation::ReadSnapshots, Target::Project(project))?;
        self.db.snapshot_tags(project, name_or_tag)
    }

    /// The snapshots holding an asset in the caller's scope.
    pub fn snapshots_holding(&self, asset: AssetId) -> Result<Vec<String>> {
        let access = self.authorize(Operation::ReadSnapshots, Target::Asset(asset))?;
        self.db.snapshots_holding(&access.project.name, asset)
    }

    /// Checks a snapshot against the database (see [`crate::Db::verify_snapshot`]).
    pub fn verify_snapshot(&self, project: &str, name: &str) -> Result<Vec<String>> {
        self.authorize(Operation::ReadSnapshots, Target::Project(project))?;
        self.db.verify_snapshot(project, name)
    }

    /// A registered model version.
    pub fn model_info(&self, project: &str, name: &str, version: &str) -> Result<Option<ModelInfo>> {
        self.authorize(Operation::ReadSnapshots, Target::Project(project))?;
        self.db.model_info(project, name, version)
    }

    fn sees_label(&self, access: &Access, label: &Label) -> bool {
        access.sees_label(self.user().unwrap_or(""), label)
    }
}

/// The asset as the caller may see it.
fn seen_asset(access: Access, id: AssetId) -> Result<Asset> {
    let blind = access.grant == Grant::Blind;
    let mut asset = access.asset.ok_or(Error::UnknownAsset(id))?;
    if blind {
        asset.revisions = 0;
        asset.version = 0;
    }
    Ok(asset)
}
