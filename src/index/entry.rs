//! What one asset contributes to the indexes, derived from its primary data alone.
//!
//! The writer derives an asset's [`Entry`] before and after each change and applies the
//! difference; replay and rebuild derive it afresh. Both paths use this one function, so
//! the indexes can always be proven equal to a rebuild.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::asset::{Asset, MetaValue, Status};
use crate::model::label::{Label, LabelKind, Source};

/// A bitmap key: the assets that have this property.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Key {
    Status(Status),
    /// Classes in the latest label of each source of this kind (for reviews: the latest review).
    Class(LabelKind, String, String),
    /// Human annotators.
    Author(String),
    /// `name@version` of models with a label on the asset.
    Model(String),
    /// `name@version` of rules with a label on the asset.
    Rule(String),
    /// Metadata equality; numbers are indexed by their decimal text.
    Meta(String, MetaKey),
    Honeypot,
    Deleted,
    /// The latest labels of this kind score exactly this one job. The job's score is
    /// then the job-less one, and only `NumKey::Score(kind, None)` holds it.
    ScoredOnly(LabelKind, String),
}

/// An indexed metadata value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum MetaKey {
    Str(String),
    Bool(bool),
}

impl MetaKey {
    pub(crate) fn of(v: &MetaValue) -> MetaKey {
        match v {
            MetaValue::Str(s) => MetaKey::Str(s.clone()),
            MetaValue::Num(n) => MetaKey::Str(n.to_string()),
            MetaValue::Bool(b) => MetaKey::Bool(*b),
        }
    }
}

/// A numeric field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum NumKey {
    /// Top class score of the latest label of this kind with scores for the job; with
    /// no job, the lowest of those over the jobs. Per-job values are stored only for
    /// assets with two or more scored jobs (see `Key::ScoredOnly`): most assets have
    /// one, and two copies of the same index would double its memory.
    Score(LabelKind, Option<String>),
    Priority,
    /// Seconds spent on all human annotation revisions.
    Seconds,
    /// Creation time in milliseconds.
    Created,
    /// Distinct human annotators.
    Labels,
}

/// The index keys and numeric values of one asset.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Entry {
    pub keys: BTreeSet<Key>,
    pub nums: BTreeMap<NumKey, f64>,
}

/// Derives an asset's entry from the asset and its full label history (oldest first).
pub(crate) fn derive(asset: &Asset, history: &[Label]) -> Entry {
    let mut e = Entry::default();
    e.keys.insert(Key::Status(asset.status));
    if asset.honeypot {
        e.keys.insert(Key::Honeypot);
    }
    if asset.deleted {
        e.keys.insert(Key::Deleted);
    }
    for (k, v) in &asset.meta {
        e.keys.insert(Key::Meta(k.clone(), MetaKey::of(v)));
    }
    e.nums.insert(NumKey::Priority, asset.priority);
    e.nums.insert(NumKey::Created, asset.created_at as f64);

    // The latest label per (kind, source); reviews count once, whoever wrote them.
    let mut latest: BTreeMap<(LabelKind, Option<&Source>), &Label> = BTreeMap::new();
    let mut seconds = 0.0f64;
    for l in history {
        let source = (l.kind != LabelKind::Review).then_some(&l.source);
        latest.insert((l.kind, source), l);
        match &l.source {
            Source::Human { user } if l.kind == LabelKind::Annotation => {
                e.keys.insert(Key::Author(user.clone()));
                seconds += f64::from(l.seconds);
            }
            Source::Model { name, version } => {
                e.keys.insert(Key::Model(format!("{name}@{version}")));
            }
            Source::Rule { name, version } => {
                e.keys.insert(Key::Rule(format!("{name}@{version}")));
            }
            Source::Human { .. } => {}
        }
    }
    let annotators = latest.keys().filter(|(k, _)| *k == LabelKind::Annotation).count();
    e.nums.insert(NumKey::Seconds, seconds);
    e.nums.insert(NumKey::Labels, annotators as f64);
    for ((kind, _), l) in &latest {
        for (job, answer) in &l.answers {
            for class in answer.class_occurrences() {
                e.keys.insert(Key::Class(*kind, job.clone(), class.to_string()));
            }
        }
    }
    for kind in [LabelKind::Prediction, LabelKind::Inference] {
        let per_job = top_scores(history, kind);
        if let Some(min) = per_job.values().copied().reduce(f32::min) {
            e.nums.insert(NumKey::Score(kind, None), f64::from(min));
        }
        let mut jobs = per_job.keys();
        match (jobs.next(), jobs.next()) {
            (Some(only), None) => {
                e.keys.insert(Key::ScoredOnly(kind, only.to_string()));
            }
            _ => {
                for (job, top) in &per_job {
                    e.nums
                        .insert(NumKey::Score(kind, Some(job.to_string())), f64::from(*top));
                }
            }
        }
    }
    e
}

/// Per job, the top class score of the latest label of this kind that scores the job.
pub(crate) fn top_scores(history: &[Label], kind: LabelKind) -> BTreeMap<&str, f32> {
    let mut per_job = BTreeMap::new();
    for l in history.iter().filter(|l| l.kind == kind) {
        per_job.extend(l.top_scores());
    }
    per_job
}
