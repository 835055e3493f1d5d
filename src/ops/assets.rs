//! Adding, reading and changing assets.

use std::collections::BTreeSet;

use super::labels::status_after_annotations;
use crate::engine::{load_asset, Db};
use crate::model::asset::{
    check_meta, check_priority, validate_new_asset, Asset, AssetId, MetaValue, NewAsset, Status,
};
use crate::model::error::{Error, Result};
use crate::model::event::{Action, Seq};
use crate::model::label::{Label, LabelId, LabelKind};
use crate::model::project::{check_name, Project};

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

impl Db {
    /// Adds one asset (with its labels). An existing external id is an error here;
    /// [`Db::add_assets`] skips them instead.
    pub fn add_asset(&self, actor: &str, project: &str, asset: NewAsset) -> Result<AssetId> {
        let external_id = asset.external_id.clone();
        let report = self.add_assets(actor, project, vec![asset])?;
        report.added.first().copied().ok_or_else(|| Error::AssetExists {
            project: project.to_string(),
            external_id,
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
                let existing = txn.external_ids()?;
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
            let first = txn.counters().next_asset;
            let count = u32::try_from(fresh.len())
                .ok()
                .filter(|n| first.checked_add(*n).is_some());
            let Some(count) = count else {
                return Err(Error::DatabaseFull {
                    what: "asset ids",
                    limit: u64::from(u32::MAX) + 1,
                });
            };
            txn.counters().next_asset = first + count;
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
            let now = txn.now();
            let stored: Vec<(Asset, Vec<Label>)> = fresh
                .into_iter()
                .enumerate()
                .map(|(i, a)| new_asset(project, AssetId(first + i as u32), a, now, seq))
                .collect();
            report.added = stored.iter().map(|(a, _)| a.id).collect();
            txn.insert_assets(AssetId(first), stored)?;
            Ok(report)
        })
    }

    /// The asset with this id.
    pub fn asset(&self, id: AssetId) -> Result<Asset> {
        load_asset(self.store(), id)?.ok_or(Error::UnknownAsset(id))
    }

    /// The asset with this external id in the project.
    pub fn asset_by_external_id(&self, project: &str, external_id: &str) -> Result<Asset> {
        let p = self.project(project)?;
        let id = self
            .external_ids()?
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
        let index = self.indexes();
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
            let mut staged = txn.stage(id)?;
            let Some(action) = f(&mut staged.asset)? else {
                return Ok(());
            };
            txn.put_asset(staged)?;
            txn.event(actor, action);
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
}

/// A new asset as stored: its id, its labels' ids and parents, and its status (given,
/// or reached by its annotations).
fn new_asset(project: &Project, id: AssetId, a: NewAsset, now: u64, seq: Seq) -> (Asset, Vec<Label>) {
    let revisions = a.labels.len() as u32;
    let mut stored: Vec<Label> = Vec::with_capacity(a.labels.len());
    for (rev, l) in a.labels.into_iter().enumerate() {
        // An asset comes with few labels: a scan finds the parent.
        let parent = stored.iter().rev().find(|p| p.source == l.source).map(|p| p.id);
        stored.push(Label {
            id: LabelId::new(id, rev as u32),
            kind: l.kind,
            source: l.source,
            parent,
            derived_from: None,
            answers: l.answers,
            scores: l.scores,
            verdict: l.verdict,
            created_at: now,
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
        created_at: now,
        created_seq: seq,
    };
    (asset, stored)
}

pub(super) fn live(a: &Asset) -> Result<()> {
    if a.deleted {
        return Err(Error::AssetDeleted(a.external_id.clone()));
    }
    Ok(())
}
