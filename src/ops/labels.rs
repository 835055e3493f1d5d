//! Writing label revisions and reading them with their lineage.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use super::assets::live;
use crate::engine::{load_label, read_history, Db, Staged, Txn};
use crate::model::asset::{AssetId, Status};
use crate::model::error::{Error, Result};
use crate::model::event::Action;
use crate::model::label::{Label, LabelId, LabelKind, NewLabel, Source};
use crate::model::project::{Project, Settings};
use crate::store::keys;

impl Db {
    /// Writes a new label revision on an asset. The actor is the label's source.
    ///
    /// A human annotation moves a `TODO`/`ONGOING` asset on (see [`Status`]). With
    /// `label.parent` set, the write is refused with [`Error::Conflict`] unless that is
    /// still the latest revision of the same source.
    pub fn add_label(&self, id: AssetId, label: NewLabel) -> Result<LabelId> {
        self.write(|txn| {
            let (mut staged, project) = self.stage_live(txn, id)?;
            let lid = write_label(txn, &mut staged, &project, label)?;
            txn.put_asset(staged)?;
            Ok(lid)
        })
    }

    /// Writes many label revisions in one atomic write, in input order (labels of one
    /// asset become consecutive revisions, as separate `add_label` calls would make
    /// them). A label equal to the latest of its source on the asset (same kind,
    /// answers, scores and verdict) is not written again and is reported as unchanged,
    /// so re-running a bulk pre-annotation writes nothing. Any bad item — an unknown or
    /// deleted asset, a job or class outside the schema, a conflict — refuses the whole
    /// batch with [`Error::InBatch`] naming the item, and nothing is written.
    ///
    /// The assets the batch touches are held in memory until it lands: batches of some
    /// thousands of labels (as `import --mode add-labels` writes) keep that small.
    pub fn add_labels(&self, labels: Vec<(AssetId, NewLabel)>) -> Result<LabelReport> {
        self.write(|txn| {
            let mut report = LabelReport::default();
            // Each touched asset, its project, and whether a label was written on it.
            let mut staged: Vec<(Staged, Arc<Project>, bool)> = Vec::new();
            let mut position: HashMap<AssetId, usize> = HashMap::new();
            for (index, (id, label)) in labels.into_iter().enumerate() {
                let at = |cause: Error| Error::InBatch {
                    index,
                    cause: Box::new(cause),
                };
                let i = match position.get(&id) {
                    Some(&i) => i,
                    None => {
                        let (asset, project) = self.stage_live(txn, id).map_err(at)?;
                        staged.push((asset, project, false));
                        position.insert(id, staged.len() - 1);
                        staged.len() - 1
                    }
                };
                let (asset, project, written) = &mut staged[i];
                if repeats_latest(&asset.history, &label) {
                    report.results.push(None);
                    report.unchanged += 1;
                    continue;
                }
                let lid = write_label(txn, asset, project, label).map_err(at)?;
                *written = true;
                report.results.push(Some(lid));
                report.labels += 1;
            }
            for (asset, _, written) in staged {
                if written {
                    txn.put_asset(asset)?;
                }
            }
            Ok(report)
        })
    }

    /// A live asset staged for a label, with its project.
    fn stage_live(&self, txn: &Txn<'_>, id: AssetId) -> Result<(Staged, Arc<Project>)> {
        let staged = txn.stage(id)?;
        live(&staged.asset)?;
        let project = self.project_by_id(staged.asset.project)?;
        Ok((staged, project))
    }

    /// The label revision with this id.
    pub fn label(&self, id: LabelId) -> Result<Label> {
        load_label(self.store(), id)?.ok_or(Error::UnknownLabel(id))
    }

    /// Every label revision of an asset, oldest first.
    pub fn history(&self, asset: AssetId) -> Result<Vec<Label>> {
        read_history(self.store(), asset)
    }

    /// A label's ancestors: its parent and derived-from chains, nearest first, each once.
    pub fn ancestors(&self, id: LabelId) -> Result<Vec<Label>> {
        let start = self.label(id)?;
        let mut out = Vec::new();
        let mut seen = BTreeSet::from([id]);
        let mut queue: VecDeque<LabelId> = start.parent.into_iter().chain(start.derived_from).collect();
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

    /// Every label written by a model version or a rule version, by id, read as the
    /// caller iterates.
    /// Human sources are answered by [`Db::audit_actor`] (and the author index).
    pub fn labels_from(&self, source: &Source) -> Result<impl Iterator<Item = Result<Label>> + '_> {
        let Some(prefix) = keys::source_labels(source) else {
            return Err(Error::invalid("source", "labels_from takes a model or rule source"));
        };
        Ok(self.store().scan_keys(&prefix).map(|k| {
            let k = k?;
            let id = keys::u64_suffix(&k).ok_or_else(|| Error::Corruption {
                key: keys::describe(&k),
                reason: "short source index key".into(),
            })?;
            self.label(LabelId(id))
        }))
    }
}

/// What [`Db::add_labels`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelReport {
    /// Per input item, in input order: the new revision's id, or `None` where the label
    /// equals the latest of its source on the asset and was not written again.
    pub results: Vec<Option<LabelId>>,
    /// Labels written.
    pub labels: u64,
    /// Labels equal to the latest of their source: not written.
    pub unchanged: u64,
}

/// Whether `label` says again what the latest label of its source and kind on the asset
/// says (answers, scores and verdict).
fn repeats_latest(history: &[Label], label: &NewLabel) -> bool {
    history
        .iter()
        .rev()
        .find(|l| l.source == label.source && l.kind == label.kind)
        .is_some_and(|l| l.answers == label.answers && l.scores == label.scores && l.verdict == label.verdict)
}

/// Validates a label against a staged live asset and its project, and writes it as the
/// asset's next revision with its event (the caller puts the asset back).
fn write_label(txn: &mut Txn<'_>, staged: &mut Staged, project: &Project, label: NewLabel) -> Result<LabelId> {
    let id = staged.asset.id;
    let actor = label.source.actor();
    let (asset, history) = (&staged.asset, &staged.history);
    label.validate(&project.schema, &asset.external_id, &asset.content)?;
    let latest = history.iter().rev().find(|l| l.source == label.source).map(|l| l.id);
    if label.parent.is_some() && label.parent != latest {
        return Err(Error::Conflict {
            asset: asset.external_id.clone(),
            what: format!("latest revision of {}", label.source),
            expected: label.parent,
            actual: latest,
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
        }
    }
    if let Some((_, after)) = status {
        staged.asset.status = after;
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
        created_at: txn.now(),
        seconds: label.seconds,
    };
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
    txn.push_label(staged, stored);
    Ok(lid)
}

/// The status an asset reaches when it has `annotators` distinct human annotators.
pub(super) fn status_after_annotations(current: Status, annotators: usize, settings: &Settings) -> Status {
    match current {
        Status::Todo | Status::Ongoing if annotators == 0 => current,
        Status::Todo | Status::Ongoing if annotators >= settings.consensus.max(1) as usize => Status::Labeled,
        Status::Todo | Status::Ongoing => Status::Ongoing,
        other => other,
    }
}
