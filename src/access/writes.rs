//! A session's writes: what `Db` writes, authorized, recorded as the session's actor.

use std::io::BufRead;
use std::path::Path;

use super::policy::Operation;
use super::session::{Session, Target};
use crate::formats::{ImportOptions, ImportReport, LabelImportReport};
use crate::model::asset::{AssetId, MetaValue, NewAsset, Status};
use crate::model::error::Result;
use crate::model::label::{LabelId, LabelKind, NewLabel, Source};
use crate::model::project::{Role, Settings};
use crate::model::selection::Selection;
use crate::ops::assets::AddReport;
use crate::ops::labels::LabelReport;
use crate::query::{self, Filter};
use crate::snapshot::{ModelInfo, SnapshotInfo};

impl Session {
    /// Writes a label. An annotation in one's own name is `annotate`, a review in one's
    /// own name `review` — refused on an asset one has annotated —, anything else
    /// (predictions, inferences, another's name) `predict`.
    pub fn add_label(&self, asset: AssetId, label: NewLabel) -> Result<LabelId> {
        self.authorize_label(asset, &label)?;
        self.db.add_label(asset, label)
    }

    /// Writes many labels in one atomic write ([`crate::Db::add_labels`]), each item
    /// authorized as [`Session::add_label`] would be; one refused item refuses the batch.
    pub fn add_labels(&self, labels: Vec<(AssetId, NewLabel)>) -> Result<LabelReport> {
        for (asset, label) in &labels {
            self.authorize_label(*asset, label)?;
        }
        self.db.add_labels(labels)
    }

    /// The check of a label write (see [`Session::add_label`]).
    fn authorize_label(&self, asset: AssetId, label: &NewLabel) -> Result<()> {
        let own = matches!((&label.source, self.user()), (Source::Human { user }, Some(me)) if user == me);
        let op = match label.kind {
            LabelKind::Annotation if own => Operation::Annotate,
            LabelKind::Review if own => Operation::Review,
            _ => Operation::Predict,
        };
        let access = self.authorize(op, Target::Asset(asset))?;
        if let (Operation::Review, Some(me)) = (op, self.user()) {
            let annotated =
                self.db.history(asset)?.iter().any(|l| {
                    l.kind == LabelKind::Annotation && matches!(&l.source, Source::Human { user } if user == me)
                });
            if annotated {
                return Err(self.deny(
                    "review their own annotation on",
                    Some(access.project.id),
                    format!("asset {asset}"),
                ));
            }
        }
        Ok(())
    }

    /// Adds an asset.
    pub fn add_asset(&self, project: &str, asset: NewAsset) -> Result<AssetId> {
        self.authorize(Operation::EditAssets, Target::Project(project))?;
        self.db.add_asset(self.actor(), project, asset)
    }

    /// Adds assets (see [`crate::Db::add_assets`]).
    pub fn add_assets(&self, project: &str, assets: Vec<NewAsset>) -> Result<AddReport> {
        self.authorize(Operation::EditAssets, Target::Project(project))?;
        self.db.add_assets(self.actor(), project, assets)
    }

    /// Imports a file (its labels are written in their authors' names: `predict` too).
    pub fn import_file(
        &self,
        project: &str,
        path: &Path,
        options: &ImportOptions,
        progress: impl FnMut(&ImportReport),
    ) -> Result<ImportReport> {
        self.authorize(Operation::EditAssets, Target::Project(project))?;
        self.authorize(Operation::Predict, Target::Project(project))?;
        self.db.import_file(self.actor(), project, path, options, progress)
    }

    /// Imports from a reader (see [`Session::import_file`]).
    pub fn import_reader(
        &self,
        project: &str,
        reader: impl BufRead,
        file_name: &str,
        options: &ImportOptions,
        progress: impl FnMut(&ImportReport),
    ) -> Result<ImportReport> {
        self.authorize(Operation::EditAssets, Target::Project(project))?;
        self.authorize(Operation::Predict, Target::Project(project))?;
        self.db
            .import_reader(self.actor(), project, reader, file_name, options, progress)
    }

    /// Adds the labels of a file of `add-labels` lines ([`crate::Db::import_labels_file`]),
    /// each batch's labels authorized as [`Session::add_labels`] authorizes them.
    pub fn import_labels_file(
        &self,
        project: &str,
        path: &Path,
        options: &ImportOptions,
        progress: impl FnMut(&LabelImportReport),
    ) -> Result<LabelImportReport> {
        let (reader, name) = crate::formats::open(path)?;
        self.import_labels_reader(project, reader, &name, options, progress)
    }

    /// [`Session::import_labels_file`] from a reader; `file_name` names it in errors.
    pub fn import_labels_reader(
        &self,
        project: &str,
        reader: impl BufRead,
        file_name: &str,
        options: &ImportOptions,
        progress: impl FnMut(&LabelImportReport),
    ) -> Result<LabelImportReport> {
        let access = self.authorize(Operation::Read, Target::Project(project))?;
        self.db
            .import_labels_with(&access.project, reader, file_name, options, progress, |batch| {
                self.add_labels(batch).map(|r| (r.labels, r.unchanged))
            })
    }

    /// Moves an asset to a new status.
    pub fn set_status(&self, id: AssetId, to: Status) -> Result<()> {
        self.authorize(Operation::EditAssets, Target::Asset(id))?;
        self.db.set_status(self.actor(), id, to)
    }

    /// Sets or removes a metadata key.
    pub fn set_meta(&self, id: AssetId, key: &str, value: Option<MetaValue>) -> Result<()> {
        self.authorize(Operation::EditAssets, Target::Asset(id))?;
        self.db.set_meta(self.actor(), id, key, value)
    }

    /// Sets the queue priority.
    pub fn set_priority(&self, id: AssetId, priority: f64) -> Result<()> {
        self.authorize(Operation::EditAssets, Target::Asset(id))?;
        self.db.set_priority(self.actor(), id, priority)
    }

    /// Marks or unmarks a honeypot.
    pub fn set_honeypot(&self, id: AssetId, honeypot: bool) -> Result<()> {
        self.authorize(Operation::EditAssets, Target::Asset(id))?;
        self.db.set_honeypot(self.actor(), id, honeypot)
    }

    /// Soft-deletes an asset.
    pub fn delete_asset(&self, id: AssetId) -> Result<()> {
        self.authorize(Operation::DeleteAssets, Target::Asset(id))?;
        self.db.delete_asset(self.actor(), id)
    }

    /// Restores a soft-deleted asset.
    pub fn restore_asset(&self, id: AssetId) -> Result<()> {
        self.authorize(Operation::DeleteAssets, Target::Asset(id))?;
        self.db.restore_asset(self.actor(), id)
    }

    /// Removes an asset for good (see [`crate::Db::purge_asset`]).
    pub fn purge_asset(&self, id: AssetId) -> Result<()> {
        self.authorize(Operation::DeleteAssets, Target::Asset(id))?;
        self.db.purge_asset(self.actor(), id)
    }

    /// Creates a snapshot; a member with a data scope snapshots assets in it only.
    pub fn create_snapshot(
        &self,
        project: &str,
        name: &str,
        filter: &Filter,
        selection: &Selection,
    ) -> Result<SnapshotInfo> {
        let access = self.authorize(Operation::WriteSnapshots, Target::Project(project))?;
        let member_scope = self
            .user()
            .and_then(|u| access.project.members.get(u))
            .and_then(|m| m.scope.as_deref());
        let filter = match member_scope {
            Some(q) => filter.clone().and(query::parse(q)?),
            None => filter.clone(),
        };
        self.db.create_snapshot(self.actor(), project, name, &filter, selection)
    }

    /// Points a tag at a snapshot.
    pub fn tag_snapshot(&self, project: &str, tag: &str, name: &str) -> Result<()> {
        self.authorize(Operation::WriteSnapshots, Target::Project(project))?;
        self.db.tag_snapshot(self.actor(), project, tag, name)
    }

    /// Deletes a snapshot.
    pub fn delete_snapshot(&self, project: &str, name: &str) -> Result<()> {
        self.authorize(Operation::DeleteSnapshots, Target::Project(project))?;
        self.db.delete_snapshot(self.actor(), project, name)
    }

    /// Registers a model version as trained on a snapshot.
    pub fn register_model(&self, project: &str, name: &str, version: &str, trained_on: &str) -> Result<ModelInfo> {
        self.authorize(Operation::WriteSnapshots, Target::Project(project))?;
        self.db.register_model(self.actor(), project, name, version, trained_on)
    }

    /// Changes the project's settings (see [`crate::Db::change_settings`]).
    pub fn change_settings(&self, project: &str, f: impl FnOnce(&mut Settings)) -> Result<Vec<String>> {
        self.authorize(Operation::ChangeSettings, Target::Project(project))?;
        self.db.change_settings(self.actor(), project, f)
    }

    /// Makes `user` a member or changes their role or scope. Team managers manage
    /// labelers and reviewers only.
    pub fn set_member(&self, project: &str, user: &str, role: Role, scope: Option<&str>) -> Result<()> {
        self.authorize_member_change(project, user, Some(role))?;
        self.db.set_member(self.actor(), project, user, role, scope)
    }

    /// Removes `user` from the members (team managers: labelers and reviewers only).
    pub fn remove_member(&self, project: &str, user: &str) -> Result<()> {
        self.authorize_member_change(project, user, None)?;
        self.db.remove_member(self.actor(), project, user)
    }

    /// `manage-members`, and for a team manager: the member's current and new roles are
    /// labeler or reviewer.
    fn authorize_member_change(&self, project: &str, user: &str, role: Option<Role>) -> Result<()> {
        let access = self.authorize(Operation::ManageMembers, Target::Project(project))?;
        if access.role != Some(Role::TeamManager) {
            return Ok(());
        }
        let managed = |r: Role| matches!(r, Role::Labeler | Role::Reviewer);
        let current = access.project.members.get(user).map(|m| m.role);
        if current.is_some_and(|r| !managed(r)) || role.is_some_and(|r| !managed(r)) {
            let what = role.map_or("remove".to_string(), |r| format!("make {r}"));
            return Err(self.deny(
                "manage-members",
                Some(access.project.id),
                format!("member {user:?} of project {project:?} ({what})"),
            ));
        }
        Ok(())
    }
}
