//! `verify`: decodes every record and checks every invariant between them.

use std::collections::{HashMap, HashSet};

use crate::engine::{assets_with_labels, Db};
use crate::index::columns;
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
    /// Each problem, naming the key or record (at most 1,000).
    pub problems: Vec<Problem>,
    /// Problems found past the first 1,000, counted but not listed.
    pub unlisted: u64,
}

/// One inconsistency that [`Db::verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What kind of inconsistency.
    pub kind: ProblemKind,
    /// What is wrong, naming the key or record.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kinds of [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A record fails its checksum or does not decode (the disk damaged it).
    Damaged,
    /// A record is stored under a key it does not match, or the key is unknown.
    Misplaced,
    /// Two stored copies of what never changes disagree.
    Mismatch,
    /// A record refers to one that does not exist.
    Dangling,
    /// An id that must be unique is not.
    Duplicate,
    /// A record breaks its schema or its lineage rules.
    Invalid,
    /// A sequence that must be contiguous (events, revisions) has a gap.
    Gap,
    /// The counters are missing or behind the ids in use.
    Counters,
    /// The format version record is missing or not this build's.
    Format,
    /// A derived structure (bitmap or text index, selection columns, external-id map,
    /// source index) differs from the primary data; `repair_indexes` fixes it.
    Derived,
    /// A snapshot fails its own check ([`Db::verify_snapshot`]).
    Snapshot,
}

impl VerifyReport {
    /// Whether every record decoded and every invariant held.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.unlisted == 0
    }

    /// Problems found, listed or not.
    pub fn total(&self) -> u64 {
        self.problems.len() as u64 + self.unlisted
    }

    /// One line per listed problem, then `... and N more problems` if some were not
    /// listed (the CLI's output).
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
        if self.unlisted > 0 {
            lines.push(format!("... and {} more problems", self.unlisted));
        }
        lines
    }
}

/// The most problems listed; past it only the count grows.
const MAX_PROBLEMS: usize = 1000;

struct Checker {
    report: VerifyReport,
}

impl Checker {
    fn problem(&mut self, kind: ProblemKind, message: String) {
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(Problem { kind, message });
        } else {
            self.report.unlisted += 1;
        }
    }

    fn decode<'v, T: serde::Deserialize<'v>>(&mut self, k: &[u8], v: &'v [u8]) -> Option<T> {
        match codec::decode(k, v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(ProblemKind::Damaged, e.to_string());
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
        let store = self.store();
        let mut c = Checker {
            report: VerifyReport::default(),
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
                c.problem(ProblemKind::Misplaced, "an empty key".into());
                continue;
            };
            match t {
                tag::META => {
                    if k == keys::meta(keys::meta::FORMAT) {
                        format = c.decode::<u32>(&k, &v);
                    } else if k == keys::meta(keys::meta::COUNTERS) {
                        counters = c.decode::<Counters>(&k, &v);
                    } else {
                        c.problem(
                            ProblemKind::Misplaced,
                            format!("unknown meta record {}", keys::describe(&k)),
                        );
                    }
                }
                tag::PROJECT => {
                    // Formats up to 4 stored settings as bincode fields (see the upgrade).
                    let p = match format {
                        Some(f) if f < 5 => crate::engine::decode_legacy_project(&k, &v)
                            .map_err(|e| c.problem(ProblemKind::Damaged, e.to_string()))
                            .ok(),
                        _ => c.decode::<Project>(&k, &v),
                    };
                    if let Some(p) = p {
                        if k != keys::project(p.id) {
                            c.problem(
                                ProblemKind::Misplaced,
                                format!("{} holds project {}", keys::describe(&k), p.id),
                            );
                        }
                        for (user, m) in &p.members {
                            if let Some(Err(e)) = m.scope.as_deref().map(crate::query::parse) {
                                c.problem(
                                    ProblemKind::Invalid,
                                    format!("project {:?}: the scope of member {user:?} does not parse: {e}", p.name),
                                );
                            }
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
                            c.problem(
                                ProblemKind::Misplaced,
                                format!("{} holds asset {}", keys::describe(&k), a.id),
                            );
                        }
                        // A changed asset agrees with its run entry on what never changes
                        // (a damaged run is named when the scan reaches it).
                        if let Ok(Some(added)) = run::asset(store, a.id) {
                            if immutable(&added) != immutable(&a) {
                                c.problem(
                                    ProblemKind::Mismatch,
                                    format!(
                                        "asset {}: its record and its run entry differ in what never changes",
                                        a.id
                                    ),
                                );
                            }
                        }
                    }
                }
                tag::LABEL => {
                    if let Some(l) = c.decode::<Label>(&k, &v) {
                        if k != keys::label(l.id) {
                            c.problem(
                                ProblemKind::Misplaced,
                                format!("{} holds label {}", keys::describe(&k), l.id),
                            );
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
                            c.problem(
                                ProblemKind::Misplaced,
                                format!("{} holds event {}", keys::describe(&k), e.seq),
                            );
                        }
                        seqs.push(e.seq);
                    }
                }
                tag::ASSET_EVENT | tag::ACTOR_EVENT => match keys::u64_suffix(&k) {
                    Some(seq) => event_refs.push((k, seq)),
                    None => c.problem(
                        ProblemKind::Misplaced,
                        format!("{}: short index key", keys::describe(&k)),
                    ),
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
                        c.problem(
                            ProblemKind::Misplaced,
                            format!("{}: slots out of order", keys::describe(&k)),
                        );
                    }
                    // Compared with what the assets give once the merged pass below has
                    // read them (runs sort after the columns).
                }
                tag::CHOICE_DELTA => {
                    c.decode::<Option<columns::Choice>>(&k, &v);
                    if keys::parse_choice_delta(&k).is_none() {
                        c.problem(ProblemKind::Misplaced, format!("{}: malformed key", keys::describe(&k)));
                    }
                }
                _ => c.problem(ProblemKind::Misplaced, format!("unknown key {}", keys::describe(&k))),
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
                c.problem(
                    ProblemKind::Dangling,
                    format!("asset {} belongs to missing {}", a.id, a.project),
                );
            }
            if !external_ids.insert((a.project, a.external_id.clone())) {
                c.problem(
                    ProblemKind::Duplicate,
                    format!(
                        "asset {}: external id {:?} is not unique in {}",
                        a.id, a.external_id, a.project
                    ),
                );
            }
            assets.insert(a.id);
        }
        for id in &labelled {
            if !assets.contains(id) {
                c.problem(ProblemKind::Dangling, format!("labels belong to missing asset {id}"));
            }
        }
        // Read again rather than held since the raw scan: they are ~100 bytes an asset.
        for raw in store.scan_undecoded(&[tag::FACTS]) {
            let raw = raw?;
            if let Some(p) = columns.stored(raw.key(), raw.value()) {
                c.problem(ProblemKind::Derived, p);
            }
        }
        for p in columns.stored_choices(store)? {
            c.problem(ProblemKind::Derived, p);
        }
        for p in columns.missing() {
            c.problem(ProblemKind::Derived, p);
        }
        match format {
            Some(FORMAT_VERSION) => {}
            Some(v) => c.problem(
                ProblemKind::Format,
                format!("format version {v}, expected {FORMAT_VERSION}"),
            ),
            None => c.problem(ProblemKind::Format, "no format version record".into()),
        }
        for (k, id) in project_names {
            match projects.get(&id) {
                Some(p) if keys::project_name(&p.name) == k => {}
                _ => c.problem(
                    ProblemKind::Dangling,
                    format!("{} points to {id}, which does not have that name", keys::describe(&k)),
                ),
            }
        }
        for (sk, id) in &labels_with_source {
            if !source_index.remove(sk) {
                c.problem(
                    ProblemKind::Derived,
                    format!("label {id} is missing from the source index"),
                );
            }
        }
        for k in source_index {
            c.problem(ProblemKind::Derived, format!("{} indexes no label", keys::describe(&k)));
        }
        seqs.sort_unstable();
        let seq_set: HashSet<u64> = seqs.iter().copied().collect();
        for (i, s) in seqs.iter().enumerate() {
            if *s != i as u64 + 1 {
                c.problem(ProblemKind::Gap, format!("event log has a gap before seq {s}"));
                break;
            }
        }
        for (k, seq) in event_refs {
            if !seq_set.contains(&seq) {
                c.problem(
                    ProblemKind::Dangling,
                    format!("{} points to missing event {seq}", keys::describe(&k)),
                );
            }
        }
        if let Some(counters) = counters {
            let last = seqs.last().copied().unwrap_or(0);
            if counters.last_seq != last {
                c.problem(
                    ProblemKind::Counters,
                    format!("counter last_seq {} but the last event is {last}", counters.last_seq),
                );
            }
            if let Some(max) = assets.iter().max() {
                if counters.next_asset <= max.0 {
                    c.problem(
                        ProblemKind::Counters,
                        format!("counter next_asset {} is not past asset {max}", counters.next_asset),
                    );
                }
            }
            if let Some(max) = projects.keys().max() {
                if counters.next_project <= max.0 {
                    c.problem(
                        ProblemKind::Counters,
                        format!("counter next_project {} is not past {max}", counters.next_project),
                    );
                }
            }
        } else {
            c.problem(ProblemKind::Counters, "no counters record".into());
        }
        for info in &snapshots {
            let project = projects
                .get(&info.project)
                .map_or_else(|| info.project.to_string(), |p| p.name.clone());
            if !projects.contains_key(&info.project) {
                c.problem(
                    ProblemKind::Dangling,
                    format!("snapshot {:?} belongs to missing {}", info.name, info.project),
                );
                continue;
            }
            for p in self.verify_snapshot(&project, &info.name)? {
                c.problem(ProblemKind::Snapshot, format!("snapshot {:?}: {p}", info.name));
            }
        }
        for p in self.index_differences()? {
            c.problem(ProblemKind::Derived, p);
        }
        if let Some(p) = self.external_difference()? {
            c.problem(ProblemKind::Derived, p);
        }
        for p in self.text_differences(&live_text)? {
            c.problem(ProblemKind::Derived, p);
        }
        Ok(c.report)
    }

    /// Rebuilds the bitmap indexes, the text index, the selection columns and the
    /// external-id map from primary data and checkpoints the indexes (`labeldb verify
    /// --repair`). Returns the number of bitmap differences fixed.
    pub fn repair_indexes(&self) -> Result<usize> {
        self.rebuild_derived()
    }

    /// Checks one asset and its labels against its project's schema.
    fn check_asset(&self, c: &mut Checker, a: &Asset, history: &[Label]) {
        if a.content.digest() != a.digest {
            c.problem(
                ProblemKind::Invalid,
                format!(
                    "asset {} ({:?}): content does not match its digest",
                    a.id, a.external_id
                ),
            );
        }
        if a.revisions as usize != history.len() {
            c.problem(
                ProblemKind::Gap,
                format!(
                    "asset {} records {} revisions but has {} labels",
                    a.id,
                    a.revisions,
                    history.len()
                ),
            );
        }
        let Ok(project) = self.project_by_id(a.project) else {
            return;
        };
        for (rev, l) in history.iter().enumerate() {
            if l.id.revision() as usize != rev {
                c.problem(
                    ProblemKind::Misplaced,
                    format!("asset {}: revision {} is stored at position {rev}", a.id, l.id),
                );
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
                c.problem(ProblemKind::Invalid, format!("label {}: {e}", l.id));
            }
            let expected_parent = history[..rev].iter().rev().find(|p| p.source == l.source).map(|p| p.id);
            if l.parent != expected_parent {
                c.problem(
                    ProblemKind::Invalid,
                    format!("label {}: parent {:?}, expected {:?}", l.id, l.parent, expected_parent),
                );
            }
            if let Some(d) = l.derived_from {
                if d.asset() != a.id || d.revision() as usize >= rev {
                    c.problem(
                        ProblemKind::Invalid,
                        format!("label {}: derived from {d}, not an earlier revision of its asset", l.id),
                    );
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
        c.problem(ProblemKind::Damaged, format!("{name}: short key"));
        return;
    };
    if let Some(problem) = run.shape_problem() {
        c.problem(ProblemKind::Damaged, format!("{name}: {problem}"));
        return;
    }
    let len = run.len() as u64;
    if u64::from(first & (run::BLOCK - 1)) + len > u64::from(run::BLOCK) {
        c.problem(
            ProblemKind::Misplaced,
            format!("{name}: {len} entries do not fit its block"),
        );
    }
    for (entry, id) in run.entries(k).zip(first..) {
        let e = match entry {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(err) => {
                c.problem(ProblemKind::Damaged, err.to_string());
                continue;
            }
        };
        let decoded = e.asset(k).and_then(|a| Ok((a, e.labels(k)?)));
        let (a, labels) = match decoded {
            Ok(d) => d,
            Err(err) => {
                c.problem(ProblemKind::Damaged, err.to_string());
                continue;
            }
        };
        if a.id.0 != id {
            c.problem(
                ProblemKind::Misplaced,
                format!("{name}: entry of asset {id} holds asset {}", a.id),
            );
        }
        for (rev, l) in labels.iter().enumerate() {
            if l.id != LabelId::new(a.id, rev as u32) {
                c.problem(
                    ProblemKind::Misplaced,
                    format!("{name}: asset {}'s label at {rev} is {}", a.id, l.id),
                );
            }
            if let Some(sk) = keys::source_label(&l.source, l.id) {
                labels_with_source.push((sk, l.id));
            }
        }
    }
}
