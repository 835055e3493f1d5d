//! `verify`: decodes every record and checks every invariant between them.

use std::collections::{HashMap, HashSet};

use crate::engine::{assets_with_labels, rebuild_indexes, Db};
use crate::index::columns;
use crate::index::external::ExternalIds;
use crate::model::asset::{Asset, AssetId};
use crate::model::error::Result;
use crate::model::event::Event;
use crate::model::label::{Label, LabelId};
use crate::model::project::{Project, ProjectId};
use crate::snapshot::SnapshotInfo;
use crate::store::run::{self, Run};
use crate::store::{codec, keys, keys::tag, Counters, FORMAT_VERSION};

/// What [`Db::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read.
    pub records: u64,
    /// Each problem, naming the key or record.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether every record decoded and every invariant held.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The most problems listed; past it only the count grows.
const MAX_PROBLEMS: usize = 1000;

struct Checker {
    report: VerifyReport,
    hidden: u64,
}

impl Checker {
    fn problem(&mut self, p: String) {
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(p);
        } else {
            self.hidden += 1;
        }
    }

    fn decode<'v, T: serde::Deserialize<'v>>(&mut self, k: &[u8], v: &'v [u8]) -> Option<T> {
        match codec::decode(k, v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(e.to_string());
                None
            }
        }
    }
}

impl Db {
    /// Reads every record, checking its crc and decoding it, then checks the invariants
    /// between records: indexes point to what they index, ids match their keys, labels
    /// are valid against their schema, revisions and events are contiguous, counters are
    /// ahead of every id. It changes nothing.
    pub fn verify(&self) -> Result<VerifyReport> {
        let store = &self.inner.store;
        let mut c = Checker {
            report: VerifyReport::default(),
            hidden: 0,
        };
        let mut projects: HashMap<ProjectId, Project> = HashMap::new();
        let mut project_names: Vec<(Vec<u8>, ProjectId)> = Vec::new();
        let mut assets: HashSet<AssetId> = HashSet::new();
        let mut external_ids: HashSet<(ProjectId, String)> = HashSet::new();
        let mut labelled: HashSet<AssetId> = HashSet::new();
        let mut source_index: HashSet<Vec<u8>> = HashSet::new();
        let mut labels_with_source: Vec<(Vec<u8>, LabelId)> = Vec::new();
        let mut event_refs: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut seqs: Vec<u64> = Vec::new();
        let mut counters = None;
        let mut snapshots: Vec<SnapshotInfo> = Vec::new();
        let mut live_text = croaring::Bitmap::new();
        let mut format = None;
        let mut columns = columns::Check::default();

        for kv in store.raw() {
            let (k, v) = kv?;
            c.report.records += 1;
            let Some(&t) = k.first() else {
                c.problem("an empty key".into());
                continue;
            };
            match t {
                tag::META => {
                    if k == keys::meta(keys::meta::FORMAT) {
                        format = c.decode::<u32>(&k, &v);
                    } else if k == keys::meta(keys::meta::COUNTERS) {
                        counters = c.decode::<Counters>(&k, &v);
                    } else {
                        c.problem(format!("unknown meta record {}", keys::describe(&k)));
                    }
                }
                tag::PROJECT => {
                    if let Some(p) = c.decode::<Project>(&k, &v) {
                        if k != keys::project(p.id) {
                            c.problem(format!("{} holds project {}", keys::describe(&k), p.id));
                        }
                        projects.insert(p.id, p);
                    }
                }
                tag::PROJECT_NAME => {
                    if let Some(id) = c.decode::<ProjectId>(&k, &v) {
                        project_names.push((k, id));
                    }
                }
                tag::ASSET => {
                    if let Some(a) = c.decode::<Asset>(&k, &v) {
                        if k != keys::asset(a.id) {
                            c.problem(format!("{} holds asset {}", keys::describe(&k), a.id));
                        }
                        // A changed asset agrees with its run entry on what never changes
                        // (a damaged run is named when the scan reaches it).
                        if let Ok(Some(added)) = run::asset(store, a.id) {
                            if immutable(&added) != immutable(&a) {
                                c.problem(format!(
                                    "asset {}: its record and its run entry differ in what never changes",
                                    a.id
                                ));
                            }
                        }
                    }
                }
                tag::LABEL => {
                    if let Some(l) = c.decode::<Label>(&k, &v) {
                        if k != keys::label(l.id) {
                            c.problem(format!("{} holds label {}", keys::describe(&k), l.id));
                        }
                        labelled.insert(l.asset());
                        if let Some(sk) = keys::source_label(&l.source, l.id) {
                            labels_with_source.push((sk, l.id));
                        }
                    }
                }
                tag::RUN => {
                    if let Some(run) = c.decode::<Run<&[u8]>>(&k, &v) {
                        check_run(&mut c, &k, &run, &mut labels_with_source);
                    }
                }
                tag::EVENT => {
                    if let Some(e) = c.decode::<Event>(&k, &v) {
                        if k != keys::event(e.seq) {
                            c.problem(format!("{} holds event {}", keys::describe(&k), e.seq));
                        }
                        seqs.push(e.seq);
                    }
                }
                tag::ASSET_EVENT | tag::ACTOR_EVENT => match keys::u64_suffix(&k) {
                    Some(seq) => event_refs.push((k, seq)),
                    None => c.problem(format!("{}: short index key", keys::describe(&k))),
                },
                tag::SOURCE_LABEL => {
                    source_index.insert(k);
                }
                // Decoded here for their crc; their content is checked against a rebuild below.
                tag::INDEX_HEAD => {
                    c.decode::<crate::store::ChunkedHead>(&k, &v);
                }
                tag::INDEX_CHUNK | tag::SNAPSHOT_MEMBERS => {
                    c.decode::<Vec<u8>>(&k, &v);
                }
                tag::SNAPSHOT => {
                    if let Some(info) = c.decode::<SnapshotInfo>(&k, &v) {
                        snapshots.push(info);
                    }
                }
                tag::SNAPSHOT_CHUNK => {
                    c.decode::<Vec<crate::snapshot::Member>>(&k, &v);
                }
                tag::SNAPSHOT_TAG => {
                    c.decode::<String>(&k, &v);
                }
                tag::MODEL => {
                    c.decode::<crate::snapshot::ModelInfo>(&k, &v);
                }
                tag::FACTS | tag::CHOICES => {
                    let ordered = if t == tag::FACTS {
                        c.decode::<columns::Block<columns::Facts>>(&k, &v)
                            .map(|b| b.is_ordered())
                    } else {
                        c.decode::<columns::Block<columns::Choice>>(&k, &v)
                            .map(|b| b.is_ordered())
                    };
                    if ordered == Some(false) {
                        c.problem(format!("{}: slots out of order", keys::describe(&k)));
                    }
                    // Compared with what the assets give once the merged pass below has
                    // read them (runs sort after the columns).
                }
                _ => c.problem(format!("unknown key {}", keys::describe(&k))),
            }
        }

        // Every asset with its history, as the engine reads them (runs, then ASSET and
        // LABEL records); records that did not decode were named above.
        for (a, history) in assets_with_labels(store) {
            self.check_asset(&mut c, &a, &history);
            columns.asset(&a, &history);
            if crate::index::text::TextOp::for_asset(&a).is_some() {
                live_text.add(a.id.0);
            }
            if !projects.contains_key(&a.project) {
                c.problem(format!("asset {} belongs to missing {}", a.id, a.project));
            }
            if !external_ids.insert((a.project, a.external_id.clone())) {
                c.problem(format!(
                    "asset {}: external id {:?} is not unique in {}",
                    a.id, a.external_id, a.project
                ));
            }
            assets.insert(a.id);
        }
        for id in &labelled {
            if !assets.contains(id) {
                c.problem(format!("labels belong to missing asset {id}"));
            }
        }
        // Read again rather than held since the raw scan: they are ~100 bytes an asset.
        for t in [tag::FACTS, tag::CHOICES] {
            for raw in store.scan_undecoded(&[t]) {
                let raw = raw?;
                if let Some(p) = columns.stored(raw.key(), raw.value()) {
                    c.problem(p);
                }
            }
        }
        for p in columns.missing() {
            c.problem(p);
        }
        match format {
            Some(FORMAT_VERSION) => {}
            Some(v) => c.problem(format!("format version {v}, expected {FORMAT_VERSION}")),
            None => c.problem("no format version record".into()),
        }
        for (k, id) in project_names {
            match projects.get(&id) {
                Some(p) if keys::project_name(&p.name) == k => {}
                _ => c.problem(format!(
                    "{} points to {id}, which does not have that name",
                    keys::describe(&k)
                )),
            }
        }
        for (sk, id) in &labels_with_source {
            if !source_index.remove(sk) {
                c.problem(format!("label {id} is missing from the source index"));
            }
        }
        for k in source_index {
            c.problem(format!("{} indexes no label", keys::describe(&k)));
        }
        seqs.sort_unstable();
        let seq_set: HashSet<u64> = seqs.iter().copied().collect();
        for (i, s) in seqs.iter().enumerate() {
            if *s != i as u64 + 1 {
                c.problem(format!("event log has a gap before seq {s}"));
                break;
            }
        }
        for (k, seq) in event_refs {
            if !seq_set.contains(&seq) {
                c.problem(format!("{} points to missing event {seq}", keys::describe(&k)));
            }
        }
        if let Some(counters) = counters {
            let last = seqs.last().copied().unwrap_or(0);
            if counters.last_seq != last {
                c.problem(format!(
                    "counter last_seq {} but the last event is {last}",
                    counters.last_seq
                ));
            }
            if let Some(max) = assets.iter().max() {
                if counters.next_asset <= max.0 {
                    c.problem(format!(
                        "counter next_asset {} is not past asset {max}",
                        counters.next_asset
                    ));
                }
            }
            if let Some(max) = projects.keys().max() {
                if counters.next_project <= max.0 {
                    c.problem(format!(
                        "counter next_project {} is not past {max}",
                        counters.next_project
                    ));
                }
            }
        } else {
            c.problem("no counters record".into());
        }
        for info in &snapshots {
            let project = projects
                .get(&info.project)
                .map_or_else(|| info.project.to_string(), |p| p.name.clone());
            if !projects.contains_key(&info.project) {
                c.problem(format!("snapshot {:?} belongs to missing {}", info.name, info.project));
                continue;
            }
            for p in self.verify_snapshot(&project, &info.name)? {
                c.problem(format!("snapshot {:?}: {p}", info.name));
            }
        }
        for p in self.index_differences()? {
            c.problem(p);
        }
        if let Some(p) = self.external_difference()? {
            c.problem(p);
        }
        for p in self.text_differences(&live_text)? {
            c.problem(p);
        }
        if c.hidden > 0 {
            c.report.problems.push(format!("... and {} more problems", c.hidden));
        }
        Ok(c.report)
    }

    /// Differences between the in-memory bitmap indexes and a rebuild from primary data.
    /// Holds the writer lock so that no write lands between the two.
    fn index_differences(&self) -> Result<Vec<String>> {
        let _writer = self.inner.writer.lock();
        let index = self.inner.index.read();
        let rebuilt = rebuild_indexes(&self.inner.store, index.seq)?;
        Ok(index.differences(&rebuilt))
    }

    /// Whether the in-memory external-id map, if it was built, differs from one built
    /// from the FACTS blocks (which the column check above compares with the records).
    /// Holds the writer lock so that no write lands between the two.
    fn external_difference(&self) -> Result<Option<String>> {
        let _writer = self.inner.writer.lock();
        let map = self.inner.external.read();
        let Some(map) = map.as_ref() else {
            return Ok(None);
        };
        let loaded = ExternalIds::load(&self.inner.store)?;
        Ok((*map != loaded).then(|| {
            format!(
                "the external-id map ({} ids) differs from the stored FACTS blocks ({} ids)",
                map.len(),
                loaded.len()
            )
        }))
    }

    /// Differences between the text index (after a commit) and the live text assets.
    fn text_differences(&self, live_text: &croaring::Bitmap) -> Result<Vec<String>> {
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

    /// Rebuilds the bitmap indexes, the text index, the selection columns and the
    /// external-id map from primary data and checkpoints the indexes (`labeldb verify
    /// --repair`). Returns the number of bitmap differences fixed.
    pub fn repair_indexes(&self) -> Result<usize> {
        let fixed = {
            let _writer = self.inner.writer.lock();
            columns::rebuild(&self.inner.store, assets_with_labels(&self.inner.store), |_| {})?;
            // Built again from the rebuilt FACTS blocks on first use.
            *self.inner.external.write() = None;
            let mut index = self.inner.index.write();
            let rebuilt = rebuild_indexes(&self.inner.store, index.seq)?;
            let fixed = index.differences(&rebuilt).len();
            *index = rebuilt;
            crate::engine::rebuild_text(&self.inner.store, &self.inner.text, index.seq)?;
            fixed
        };
        self.inner.force_checkpoint()?;
        Ok(fixed)
    }

    /// Checks one asset and its labels against its project's schema.
    fn check_asset(&self, c: &mut Checker, a: &Asset, history: &[Label]) {
        if a.content.digest() != a.digest {
            c.problem(format!(
                "asset {} ({:?}): content does not match its digest",
                a.id, a.external_id
            ));
        }
        if a.revisions as usize != history.len() {
            c.problem(format!(
                "asset {} records {} revisions but has {} labels",
                a.id,
                a.revisions,
                history.len()
            ));
        }
        let Ok(project) = self.project_by_id(a.project) else {
            return;
        };
        for (rev, l) in history.iter().enumerate() {
            if l.id.revision() as usize != rev {
                c.problem(format!("asset {}: revision {} is stored at position {rev}", a.id, l.id));
            }
            let as_new = crate::model::label::NewLabel {
                kind: l.kind,
                source: l.source.clone(),
                parent: None,
                derived_from: None,
                answers: l.answers.clone(),
                scores: l.scores.clone(),
                verdict: l.verdict,
                seconds: l.seconds,
            };
            if let Err(e) = as_new.validate(&project.schema, &a.external_id, &a.content) {
                c.problem(format!("label {}: {e}", l.id));
            }
            let expected_parent = history[..rev].iter().rev().find(|p| p.source == l.source).map(|p| p.id);
            if l.parent != expected_parent {
                c.problem(format!(
                    "label {}: parent {:?}, expected {:?}",
                    l.id, l.parent, expected_parent
                ));
            }
            if let Some(d) = l.derived_from {
                if d.asset() != a.id || d.revision() as usize >= rev {
                    c.problem(format!(
                        "label {}: derived from {d}, not an earlier revision of its asset",
                        l.id
                    ));
                }
            }
        }
    }
}

/// What never changes about an asset once added.
fn immutable(
    a: &Asset,
) -> (
    ProjectId,
    &str,
    &crate::model::asset::Content,
    crate::model::asset::Digest,
    u64,
) {
    (a.project, &a.external_id, &a.content, a.digest, a.created_seq)
}

/// Checks a run record: well formed, within one block, not empty, every entry decodes
/// and holds the asset of its position and revisions from 0. Adds its labels'
/// source-index keys to `labels_with_source`.
fn check_run(c: &mut Checker, k: &[u8], run: &Run<&[u8]>, labels_with_source: &mut Vec<(Vec<u8>, LabelId)>) {
    let name = keys::describe(k);
    let Some(first) = run::first_of(k) else {
        c.problem(format!("{name}: short key"));
        return;
    };
    if let Some(problem) = run.shape_problem() {
        c.problem(format!("{name}: {problem}"));
        return;
    }
    let len = run.len() as u64;
    if u64::from(first & (run::BLOCK - 1)) + len > u64::from(run::BLOCK) {
        c.problem(format!("{name}: {len} entries do not fit its block"));
    }
    for (entry, id) in run.entries(k).zip(first..) {
        let e = match entry {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(err) => {
                c.problem(err.to_string());
                continue;
            }
        };
        let decoded = e.asset(k).and_then(|a| Ok((a, e.labels(k)?)));
        let (a, labels) = match decoded {
            Ok(d) => d,
            Err(err) => {
                c.problem(err.to_string());
                continue;
            }
        };
        if a.id.0 != id {
            c.problem(format!("{name}: entry of asset {id} holds asset {}", a.id));
        }
        for (rev, l) in labels.iter().enumerate() {
            if l.id != LabelId::new(a.id, rev as u32) {
                c.problem(format!("{name}: asset {}'s label at {rev} is {}", a.id, l.id));
            }
            if let Some(sk) = keys::source_label(&l.source, l.id) {
                labels_with_source.push((sk, l.id));
            }
        }
    }
}
