//! Project statistics: counts by status, label kind and source, and class counts.

use std::collections::{BTreeMap, HashMap};

use crate::asset::Status;
use crate::db::Db;
use crate::error::Result;
use crate::label::{LabelKind, Source};

/// Counts over one project.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Live (not soft-deleted) assets.
    pub assets: u64,
    /// Soft-deleted assets.
    pub deleted: u64,
    /// Label revisions of live assets, all kinds.
    pub labels: u64,
    /// Live assets per status.
    pub by_status: BTreeMap<Status, u64>,
    /// Label revisions per kind.
    pub by_kind: BTreeMap<LabelKind, u64>,
    /// Label revisions per source (`alice`, `model:clf@3`, `rule:products@1`).
    pub by_source: BTreeMap<String, u64>,
    /// job → class → answers with that class (each chosen class, span or box counts
    /// once), over each live asset's latest human annotation per author.
    pub classes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Seconds humans spent on annotations.
    pub human_seconds: f64,
}

impl Db {
    /// Counts over the project's assets and labels.
    pub fn stats(&self, project: &str) -> Result<Stats> {
        let mut s = Stats::default();
        for status in Status::ALL {
            s.by_status.insert(status, 0);
        }
        for id in self.asset_ids(project)? {
            let asset = self.asset(id)?;
            if asset.deleted {
                s.deleted += 1;
                continue;
            }
            s.assets += 1;
            *s.by_status.entry(asset.status).or_default() += 1;
            let history = self.history(id)?;
            let mut latest_by_author: HashMap<&Source, usize> = HashMap::new();
            for (i, l) in history.iter().enumerate() {
                s.labels += 1;
                *s.by_kind.entry(l.kind).or_default() += 1;
                *s.by_source.entry(l.source.to_string()).or_default() += 1;
                if l.kind == LabelKind::Annotation {
                    latest_by_author.insert(&l.source, i);
                    s.human_seconds += f64::from(l.seconds);
                }
            }
            for i in latest_by_author.into_values() {
                for (job, answer) in &history[i].answers {
                    let per_class = s.classes.entry(job.clone()).or_default();
                    for class in answer.class_occurrences() {
                        *per_class.entry(class.to_string()).or_default() += 1;
                    }
                }
            }
        }
        Ok(s)
    }
}
