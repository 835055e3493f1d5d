//! Model-based test of the public API: short random operation sequences — projects,
//! assets (with re-added external ids), labels (valid, invalid, with stale parents),
//! statuses, metadata, priorities, soft deletion, purges, queries with full-text terms,
//! snapshots and reopening — applied both to a `Db` and to a plain in-memory model, and
//! compared after every step: every asset and its history, `last_seq`, a fixed set of
//! queries, and every snapshot's examples and digest.
//!
//! The model states the documented semantics on its own (docs/query.md for filters, the
//! `Status` table, the `Selection` docs, docs/format.md for digests); it never asks the
//! code under test what to expect. Comparisons return `Err` with a description instead of
//! panicking, so that the comparator itself can be tested (last test).
//!
//! `LABELDB_MODEL_CASES` sets the number of cases (default 1000).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use bincode::Options as _;
use labeldb::query::{CmpOp, NumField, TextQuery};
use labeldb::{
    Answer, Asset, AssetId, Content, Db, Digest, Error, Example, Filter, Label, LabelId, LabelKind, Member, MetaValue,
    NewAsset, NewLabel, ProjectId, Role, Selection, Snapshot, Source, Span, Status, Verdict,
};
use proptest::prelude::*;

use crate::{schema, LEGAL};

const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["a", "b", "c"]},
    {"name": "entities", "kind": "spans", "classes": ["x", "y"]}
]}"#;
const PROJECTS: [&str; 2] = ["p0", "p1"];
/// The text vocabulary: tokens `red`, `blue`, `box`, `boxes`, `cafe` (case and accents folded).
const WORDS: [&str; 5] = ["red", "Blue", "box", "boxes", "Café"];
const ABC: [&str; 3] = ["a", "b", "c"];
const XY: [&str; 2] = ["x", "y"];
const HUMANS: [&str; 2] = ["alice", "bob"];
const REVIEWERS: [&str; 2] = ["rita", "alice"];
const MODELS: [(&str, &str); 2] = [("clf", "1"), ("clf", "2")];
const SCORES: [f32; 4] = [0.1, 0.25, 0.5, 0.9];
const SECONDS: [f32; 3] = [0.0, 1.5, 2.0];
const PRIORITIES: [f64; 5] = [-1.0, -0.0, 0.0, 0.5, 2.0];
const NUMBERS: [f64; 8] = [-1.0, -0.0, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0];

// ---- operations ----

/// One step. Assets are addressed by a number below 32: the n-th asset the model knows,
/// or now and then an unknown or purged id (`Model::pick`). Projects by a number below 8:
/// `p0`, which always exists, except 7 for `p1` (`project_name`).
#[derive(Clone, Debug)]
enum Op {
    CreateProject(u8),
    AddAssets {
        project: u8,
        assets: Vec<AssetGen>,
    },
    AddLabel {
        asset: u8,
        label: LabelGen,
    },
    /// One `add_labels` batch (an item repeating the one before it repeats its label).
    AddLabels(Vec<(u8, LabelGen)>),
    SetStatus {
        asset: u8,
        to: Status,
    },
    SetMeta {
        asset: u8,
        key: u8,
        value: Option<MetaValue>,
    },
    SetPriority {
        asset: u8,
        priority: u8,
    },
    Delete(u8),
    Restore(u8),
    Purge(u8),
    Query {
        project: u8,
        filter: Filter,
    },
    Snapshot {
        project: u8,
        name: u8,
        filter: Filter,
        selection: Selection,
    },
    /// `set_member` of `USERS[user]` with `Role::ALL[role]` and scope `SCOPES[scope]`
    /// (the last does not parse).
    SetMember {
        project: u8,
        user: u8,
        role: u8,
        scope: Option<u8>,
    },
    RemoveMember {
        project: u8,
        user: u8,
    },
    /// A write through the session of a user who is no member: denied, and nothing but
    /// an `AccessDenied` event written.
    StrangerWrite(u8),
    Reopen,
}

const USERS: [&str; 3] = ["ua", "ub", "uc"];
const SCOPES: [&str; 3] = ["meta.k0:1", "status:todo AND NOT author:h0", "meta.k0:("];

/// A new text asset: external id `e{ext}`, its words, and labels written with it.
#[derive(Clone, Debug)]
struct AssetGen {
    ext: u8,
    words: Vec<u8>,
    status: Option<Status>,
    priority: u8,
    meta: Option<(u8, MetaValue)>,
    labels: Vec<LabelGen>,
    /// Adds a label with an unknown class: the whole write must be refused.
    bad_label: bool,
}

/// A label: an annotation (by `HUMANS[who]`), a prediction (by `MODELS[who]`) or a
/// review (by `REVIEWERS[who]`).
#[derive(Clone, Debug)]
struct LabelGen {
    kind: LabelKind,
    who: u8,
    /// `ABC[n]` for the classification job.
    category: Option<u8>,
    /// (word, class) spans over whole words of the text.
    spans: Vec<(u8, u8)>,
    /// (job, class, score) of predictions.
    scores: Vec<(u8, u8, u8)>,
    verdict: Option<Verdict>,
    /// A review's `derived_from`: revision `n % revisions`.
    reviewed: Option<u8>,
    seconds: u8,
    parent: ParentGen,
    defect: Option<LabelDefect>,
}

#[derive(Clone, Copy, Debug)]
enum ParentGen {
    None,
    /// The latest revision of the same source: accepted.
    Latest,
    /// Any other revision: `Conflict`.
    Stale(u8),
}

#[derive(Clone, Copy, Debug)]
enum LabelDefect {
    UnknownJob,
    UnknownClass,
    TwoClasses,
    SpanPastEnd,
    ScoreOutOfRange,
    AnnotationFromModel,
    VerdictOnAnnotation,
    DerivedFromFuture,
}

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL.to_vec())
}

fn meta_value() -> impl Strategy<Value = MetaValue> {
    prop_oneof![
        prop::sample::select(vec!["v0", "v1", "2"]).prop_map(|s| MetaValue::Str(s.into())),
        prop::sample::select(vec![2.0, 2.5, -1.0]).prop_map(MetaValue::Num),
        any::<bool>().prop_map(MetaValue::Bool),
    ]
}

/// Labels written with a new asset (`lineage: false`) have no parent, no derived-from
/// and no defect.
fn label_gen(lineage: bool) -> impl Strategy<Value = LabelGen> {
    use LabelKind::*;
    let kind = prop::sample::select(vec![Annotation, Annotation, Prediction, Review]);
    let verdict = prop::option::weighted(0.8, prop::sample::select(vec![Verdict::Accept, Verdict::Reject]));
    let parent = prop_oneof![
        4 => Just(ParentGen::None),
        2 => Just(ParentGen::Latest),
        1 => (0u8..4).prop_map(ParentGen::Stale),
    ];
    let defect = prop::sample::select(vec![
        LabelDefect::UnknownJob,
        LabelDefect::UnknownClass,
        LabelDefect::TwoClasses,
        LabelDefect::SpanPastEnd,
        LabelDefect::ScoreOutOfRange,
        LabelDefect::AnnotationFromModel,
        LabelDefect::VerdictOnAnnotation,
        LabelDefect::DerivedFromFuture,
    ]);
    (
        kind,
        0u8..2,
        prop::option::weighted(0.7, 0u8..3),
        prop::collection::vec((0u8..4, 0u8..2), 0..3),
        prop::collection::vec((0u8..2, 0u8..3, 0u8..4), 0..3),
        verdict,
        prop::option::of(0u8..4),
        0u8..3,
        parent,
        prop::option::weighted(0.15, defect),
    )
        .prop_map(
            move |(kind, who, category, spans, scores, verdict, reviewed, seconds, parent, defect)| LabelGen {
                kind,
                who,
                category,
                spans,
                scores: if kind == Prediction { scores } else { vec![] },
                verdict: if kind == Review { verdict } else { None },
                reviewed: if kind == Review && lineage { reviewed } else { None },
                seconds,
                parent: if lineage { parent } else { ParentGen::None },
                defect: if lineage { defect } else { None },
            },
        )
}

fn asset_gen() -> impl Strategy<Value = AssetGen> {
    (
        0u8..5,
        prop::collection::vec(0u8..5, 1..5),
        prop::option::weighted(0.2, status()),
        0u8..5,
        prop::option::weighted(0.4, (0u8..2, meta_value())),
        prop::collection::vec(label_gen(false), 0..4),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(ext, words, status, priority, meta, labels, bad_label)| AssetGen {
            ext,
            words,
            status,
            priority,
            meta,
            labels,
            bad_label,
        })
}

fn text_query() -> impl Strategy<Value = TextQuery> {
    let term = prop::sample::select(vec![
        "red", "RED", "blue", "box", "boxes", "café", "Cafe", "bo", "green",
    ]);
    let word = prop::sample::select(vec!["red", "blue", "box", "boxes", "cafe"]);
    let prefix = prop::sample::select(vec!["bo", "boxe", "bl", "CAF", "r", "red bo", "box b", "z"]);
    prop_oneof![
        3 => term.prop_map(|t| TextQuery::Term(t.into())),
        2 => prop::collection::vec(word, 2..=2).prop_map(|w| TextQuery::Phrase(w.into_iter().map(String::from).collect())),
        2 => prefix.prop_map(|p| TextQuery::Prefix(p.into())),
    ]
}

fn class_filter(kind: LabelKind, job: &str, class: &str) -> Filter {
    Filter::Class {
        kind,
        job: job.into(),
        class: class.into(),
    }
}

fn numeric(field: NumField, op: CmpOp, value: f64) -> Filter {
    Filter::Numeric { field, op, value }
}

fn score_field(kind: LabelKind, job: Option<&str>) -> NumField {
    NumField::Score {
        kind,
        job: job.map(String::from),
    }
}

/// A leaf of a filter tree; `text` allows full-text leaves.
fn leaf(text: bool) -> BoxedStrategy<Filter> {
    use LabelKind::*;
    let class = (
        prop::sample::select(vec![Annotation, Prediction, Review]),
        prop::sample::select(vec![
            ("category", "a"),
            ("category", "b"),
            ("category", "c"),
            ("entities", "x"),
            ("entities", "y"),
        ]),
    )
        .prop_map(|(kind, (job, class))| class_filter(kind, job, class));
    let author = prop::sample::select(vec!["alice", "bob", "rita"]).prop_map(|a| Filter::Author(a.into()));
    let model = prop::sample::select(vec!["clf", "clf@1", "clf@2", "clf@3"]).prop_map(|m| Filter::Model(m.into()));
    let meta = (0u8..2, meta_value()).prop_map(|(k, value)| Filter::Meta {
        key: format!("k{k}"),
        value,
    });
    let field = prop::sample::select(vec![
        NumField::Priority,
        NumField::Labels,
        NumField::Seconds,
        score_field(Prediction, None),
        score_field(Prediction, Some("category")),
        score_field(Prediction, Some("entities")),
        score_field(Inference, None),
    ]);
    let op = prop::sample::select(vec![CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge, CmpOp::Eq]);
    let num = (field, op, prop::sample::select(NUMBERS.to_vec())).prop_map(|(f, o, v)| numeric(f, o, v));
    // Filters that name what the schema lacks: every evaluation must refuse them.
    let invalid = prop::sample::select(vec![
        class_filter(Annotation, "category", "zzz"),
        class_filter(Prediction, "colour", "a"),
        numeric(score_field(Review, None), CmpOp::Lt, 0.5),
    ]);
    let plain = prop_oneof![
        2 => Just(Filter::All),
        2 => Just(Filter::Deleted),
        6 => status().prop_map(Filter::Status),
        8 => class,
        4 => author,
        2 => model,
        4 => meta,
        6 => num,
        1 => invalid,
    ];
    if text {
        prop_oneof![3 => plain, 1 => text_query().prop_map(Filter::Text)].boxed()
    } else {
        plain.boxed()
    }
}

fn filter() -> impl Strategy<Value = Filter> {
    leaf(true).prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a.and(b)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| a.or(b)),
            inner.prop_map(Filter::not),
        ]
    })
}

/// Mostly broad filters, so that snapshots have members.
fn snapshot_filter() -> impl Strategy<Value = Filter> {
    prop_oneof![
        3 => Just(Filter::All),
        2 => leaf(false),
        2 => filter(),
    ]
}

fn selection() -> impl Strategy<Value = Selection> {
    let model = Selection::Model {
        name: "clf".into(),
        version: "1".into(),
    };
    prop_oneof![
        2 => Just(Selection::LatestReviewed),
        3 => Just(Selection::Majority),
        3 => Just(Selection::LatestHuman),
        1 => Just(model),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Small ranges keep shrunk cases readable; see `Model::pick` and `project_name`.
    let asset = || 0u8..32;
    let project = || 0u8..8;
    prop_oneof![
        1 => (0u8..2).prop_map(Op::CreateProject),
        2 => (project(), prop::collection::vec(asset_gen(), 0..4))
            .prop_map(|(project, assets)| Op::AddAssets { project, assets }),
        5 => (asset(), label_gen(true)).prop_map(|(asset, label)| Op::AddLabel { asset, label }),
        2 => prop::collection::vec((asset(), label_gen(true), any::<bool>()), 1..6).prop_map(|items| {
            let mut out: Vec<(u8, LabelGen)> = Vec::new();
            for (asset, label, repeat) in items {
                let item = match out.last() {
                    Some(previous) if repeat => previous.clone(),
                    _ => (asset, label),
                };
                out.push(item);
            }
            Op::AddLabels(out)
        }),
        2 => (asset(), status()).prop_map(|(asset, to)| Op::SetStatus { asset, to }),
        1 => (asset(), 0u8..2, prop::option::weighted(0.7, meta_value()))
            .prop_map(|(asset, key, value)| Op::SetMeta { asset, key, value }),
        1 => (asset(), 0u8..5).prop_map(|(asset, priority)| Op::SetPriority { asset, priority }),
        1 => asset().prop_map(Op::Delete),
        1 => asset().prop_map(Op::Restore),
        1 => asset().prop_map(Op::Purge),
        3 => (project(), filter()).prop_map(|(project, filter)| Op::Query { project, filter }),
        3 => (project(), 0u8..3, snapshot_filter(), selection())
            .prop_map(|(project, name, filter, selection)| Op::Snapshot { project, name, filter, selection }),
        2 => (project(), 0u8..3, 0u8..5, prop::option::of(0u8..3))
            .prop_map(|(project, user, role, scope)| Op::SetMember { project, user, role, scope }),
        1 => (project(), 0u8..3).prop_map(|(project, user)| Op::RemoveMember { project, user }),
        1 => asset().prop_map(Op::StrangerWrite),
        1 => Just(Op::Reopen),
    ]
}

/// A case: 1 to 3 assets added to `p0` (created before every case), then 1 to 9 operations.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(asset_gen(), 1..4),
        prop::collection::vec(op(), 1..=9),
    )
        .prop_map(|(initial, mut ops)| {
            // Valid and distinct, so that the operations find assets.
            let initial = initial
                .into_iter()
                .enumerate()
                .map(|(i, a)| AssetGen {
                    ext: i as u8,
                    bad_label: false,
                    ..a
                })
                .collect();
            ops.insert(
                0,
                Op::AddAssets {
                    project: 0,
                    assets: initial,
                },
            );
            ops
        })
}

// ---- outcomes ----

type Fallible<T = ()> = Result<T, String>;

/// An error as the model predicts it: the variant and what it names.
#[derive(Clone, Debug, PartialEq)]
enum Fail {
    UnknownProject(String),
    ProjectExists(String),
    UnknownAsset(AssetId),
    UnknownJob(String),
    UnknownClass {
        job: String,
        class: String,
    },
    InvalidAnswer {
        job: String,
    },
    /// `InvalidInput` naming this field.
    Invalid(String),
    IllegalTransition {
        from: Status,
        to: Status,
    },
    AssetDeleted(String),
    Conflict {
        expected: Option<u64>,
        actual: Option<u64>,
    },
    DuplicateExternalId(String),
    /// `HeldBySnapshots`.
    HeldBySnapshots,
    /// `Query` (a scope that does not parse).
    Query,
    /// `UnknownMember` naming this user.
    UnknownMember(String),
    /// `LastAdmin` naming this user.
    LastAdmin(String),
    /// `SnapshotExists` naming this snapshot.
    SnapshotExists(String),
    /// `Denied` for this user.
    Denied(String),
    /// `InBatch`: the item at this index, refused for this.
    InBatch(usize, Box<Fail>),
    /// Anything the model never predicts.
    Unexpected(String),
}

fn fail(e: Error) -> Fail {
    match e {
        Error::UnknownProject(p) => Fail::UnknownProject(p),
        Error::ProjectExists(p) => Fail::ProjectExists(p),
        Error::UnknownAsset(a) => Fail::UnknownAsset(a),
        Error::UnknownJob { job, .. } => Fail::UnknownJob(job),
        Error::UnknownClass { job, class, .. } => Fail::UnknownClass { job, class },
        Error::InvalidAnswer { job, .. } => Fail::InvalidAnswer { job },
        Error::InvalidInput { what, .. } => Fail::Invalid(what),
        Error::IllegalTransition { from, to, .. } => Fail::IllegalTransition { from, to },
        Error::AssetDeleted(a) => Fail::AssetDeleted(a),
        Error::Conflict { expected, actual, .. } => Fail::Conflict {
            expected: expected.map(|l| l.0),
            actual: actual.map(|l| l.0),
        },
        Error::DuplicateExternalId(x) => Fail::DuplicateExternalId(x),
        Error::HeldBySnapshots { .. } => Fail::HeldBySnapshots,
        Error::Query { .. } => Fail::Query,
        Error::UnknownMember { user, .. } => Fail::UnknownMember(user),
        Error::LastAdmin { user, .. } => Fail::LastAdmin(user),
        Error::SnapshotExists { name, .. } => Fail::SnapshotExists(name),
        Error::Denied { user, .. } => Fail::Denied(user),
        Error::InBatch { index, cause } => Fail::InBatch(index, Box::new(fail(*cause))),
        other => Fail::Unexpected(other.to_string()),
    }
}

/// `Err` describing the difference unless `db == model`.
fn same<T: PartialEq + std::fmt::Debug>(what: &str, db: &T, model: &T) -> Fallible {
    if db == model {
        Ok(())
    } else {
        Err(format!("{what}:\n  db:    {db:?}\n  model: {model:?}"))
    }
}

/// A database call that must succeed.
fn ok<T>(what: &str, r: labeldb::Result<T>) -> Fallible<T> {
    r.map_err(|e| format!("{what}: {e}"))
}

// ---- the model ----

#[derive(Clone, Debug)]
struct MSnapshot {
    project: String,
    name: String,
    seq: u64,
    digest: Digest,
    /// What `get(i)` returns, in external-id order.
    examples: Vec<Example>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    projects: Vec<(String, ProjectId)>,
    next_asset: u32,
    last_seq: u64,
    /// Assets as they must read, `created_at` zeroed, with their histories.
    assets: BTreeMap<AssetId, (Asset, Vec<Label>)>,
    purged: Vec<AssetId>,
    snapshots: Vec<MSnapshot>,
    /// Members by project name, then user.
    members: BTreeMap<String, BTreeMap<String, Member>>,
}

fn project_name(n: u8) -> &'static str {
    PROJECTS[usize::from(n % 8 == 7)]
}

/// The words of a text as the text index sees them: split on non-alphanumerics,
/// lower-cased, ASCII-folded (the vocabulary's only accent is `é`).
fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('é', "e"))
        .collect()
}

/// Byte ranges of the words of a text.
fn word_ranges(text: &str) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            out.push((s as u32, i as u32));
        }
    }
    if let Some(s) = start {
        out.push((s as u32, text.len() as u32));
    }
    out
}

fn text_matches(text: &str, q: &TextQuery) -> bool {
    let (query, prefix) = match q {
        TextQuery::Term(w) => (tokens(w), false),
        TextQuery::Phrase(ws) => (tokens(&ws.join(" ")), false),
        TextQuery::Prefix(p) => (tokens(p), true),
    };
    let Some((last, init)) = query.split_last() else {
        return false;
    };
    tokens(text).windows(query.len()).any(|w| {
        w[..init.len()] == *init
            && if prefix {
                w[init.len()].starts_with(last.as_str())
            } else {
                w[init.len()] == *last
            }
    })
}

/// Metadata equality as indexed: numbers by their shortest decimal text.
fn meta_key(v: &MetaValue) -> Result<String, bool> {
    match v {
        MetaValue::Str(s) => Ok(s.clone()),
        MetaValue::Num(n) => Ok(n.to_string()),
        MetaValue::Bool(b) => Err(*b),
    }
}

fn occurrences(a: &Answer) -> Vec<&str> {
    match a {
        Answer::Classes(c) => c.iter().map(String::as_str).collect(),
        Answer::Spans(s) => s.iter().map(|s| s.class.as_str()).collect(),
        Answer::Boxes(b) => b.iter().map(|b| b.class.as_str()).collect(),
    }
}

/// The labels a `kind.JOB:CLASS` filter looks at: the latest of each source, except for
/// reviews, where it is the latest review whoever wrote it.
fn latest_labels(kind: LabelKind, history: &[Label]) -> Vec<&Label> {
    let mut latest: BTreeMap<Option<&Source>, &Label> = BTreeMap::new();
    for l in history.iter().filter(|l| l.kind == kind) {
        latest.insert((kind != LabelKind::Review).then_some(&l.source), l);
    }
    latest.into_values().collect()
}

fn annotators(history: &[Label]) -> BTreeSet<&Source> {
    history
        .iter()
        .filter(|l| l.kind == LabelKind::Annotation)
        .map(|l| &l.source)
        .collect()
}

fn number(a: &Asset, history: &[Label], field: &NumField) -> Option<f64> {
    match field {
        NumField::Priority => Some(a.priority),
        NumField::Labels => Some(annotators(history).len() as f64),
        NumField::Seconds => Some(
            history
                .iter()
                .filter(|l| l.kind == LabelKind::Annotation)
                .map(|l| f64::from(l.seconds))
                .sum(),
        ),
        NumField::Created => None,
        NumField::Score { kind, job } => {
            // Per job, the top class score of the latest label of the kind that scored it.
            let mut per_job: BTreeMap<&str, f32> = BTreeMap::new();
            for l in history.iter().filter(|l| l.kind == *kind) {
                for (j, classes) in &l.scores {
                    if let Some(top) = classes.values().copied().reduce(f32::max) {
                        per_job.insert(j, top);
                    }
                }
            }
            let v = match job {
                Some(j) => per_job.get(j.as_str()).copied(),
                None => per_job.values().copied().reduce(f32::min),
            };
            v.map(f64::from)
        }
    }
}

fn holds(a: &Asset, history: &[Label], f: &Filter) -> bool {
    match f {
        Filter::All => true,
        Filter::Status(s) => a.status == *s,
        Filter::Class { kind, job, class } => latest_labels(*kind, history).iter().any(|l| {
            l.answers
                .get(job)
                .is_some_and(|ans| occurrences(ans).contains(&class.as_str()))
        }),
        Filter::Author(u) => history
            .iter()
            .any(|l| l.kind == LabelKind::Annotation && l.source == Source::human(u)),
        Filter::Model(m) => history.iter().any(|l| match &l.source {
            Source::Model { name, version } => *m == format!("{name}@{version}") || m == name,
            _ => false,
        }),
        Filter::Rule(_) => false,
        Filter::Meta { key, value } => a.meta.get(key).is_some_and(|v| meta_key(v) == meta_key(value)),
        Filter::Honeypot => a.honeypot,
        Filter::Deleted => a.deleted,
        Filter::Numeric { field, op, value } => number(a, history, field).is_some_and(|v| op.holds(v, *value)),
        Filter::Text(q) => !a.deleted && a.content.text().is_some_and(|t| text_matches(t, q)),
        Filter::And(x, y) => holds(a, history, x) && holds(a, history, y),
        Filter::Or(x, y) => holds(a, history, x) || holds(a, history, y),
        Filter::Not(x) => !holds(a, history, x),
    }
}

/// Whether a filter names something the schema lacks (evaluation refuses it).
fn invalid(f: &Filter) -> bool {
    match f {
        Filter::Class { job, class, .. } => match job.as_str() {
            "category" => !ABC.contains(&class.as_str()),
            "entities" => !XY.contains(&class.as_str()),
            _ => true,
        },
        Filter::Numeric {
            field: NumField::Score { kind, .. },
            ..
        } => !matches!(kind, LabelKind::Prediction | LabelKind::Inference),
        Filter::And(x, y) | Filter::Or(x, y) => invalid(x) || invalid(y),
        Filter::Not(x) => invalid(x),
        _ => false,
    }
}

fn mentions(f: &Filter, leaf: &dyn Fn(&Filter) -> bool) -> bool {
    match f {
        Filter::And(x, y) | Filter::Or(x, y) => mentions(x, leaf) || mentions(y, leaf),
        Filter::Not(x) => mentions(x, leaf),
        other => leaf(other),
    }
}

fn mentions_text(f: &Filter) -> bool {
    mentions(f, &|l| matches!(l, Filter::Text(_)))
}

/// The status after a human annotation with `annotators` distinct annotators (project
/// consensus 1, the default).
fn status_after(current: Status, annotators: usize) -> Status {
    match current {
        Status::Todo | Status::Ongoing if annotators >= 1 => Status::Labeled,
        other => other,
    }
}

/// Canonical bytes of answers: the bare bincode payload with varint integers (docs/format.md).
fn answers_bytes(answers: &BTreeMap<String, Answer>) -> Vec<u8> {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .reject_trailing_bytes()
        .serialize(answers)
        .expect("answers serialize")
}

fn content_digest(text: &str) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"text\0");
    h.update(text.as_bytes());
    Digest(*h.finalize().as_bytes())
}

/// The revision a selection takes and its answers, per the `Selection` docs.
fn choose(selection: &Selection, history: &[Label]) -> Option<(u32, BTreeMap<String, Answer>)> {
    let pick = |l: &Label| Some((l.id.revision(), l.answers.clone()));
    match selection {
        Selection::LatestHuman => history
            .iter()
            .rev()
            .find(|l| l.kind == LabelKind::Annotation)
            .and_then(pick),
        Selection::Model { name, version } => {
            let source = Source::Model {
                name: name.clone(),
                version: version.clone(),
            };
            history
                .iter()
                .rev()
                .find(|l| l.kind == LabelKind::Prediction && l.source == source)
                .and_then(pick)
        }
        Selection::LatestReviewed => {
            let review = history.iter().rev().find(|l| l.kind == LabelKind::Review)?;
            if review.verdict != Some(Verdict::Accept) {
                return None;
            }
            let answers = match review.derived_from {
                Some(r) if review.answers.is_empty() => history.iter().find(|l| l.id == r)?.answers.clone(),
                _ => review.answers.clone(),
            };
            Some((review.id.revision(), answers))
        }
        Selection::Majority => {
            let latest = latest_labels(LabelKind::Annotation, history);
            // (answers, votes, most recent label of the group)
            let mut groups: Vec<(&BTreeMap<String, Answer>, usize, &Label)> = Vec::new();
            for l in latest {
                match groups.iter_mut().find(|g| *g.0 == l.answers) {
                    Some(g) => {
                        g.1 += 1;
                        if l.id > g.2.id {
                            g.2 = l;
                        }
                    }
                    None => groups.push((&l.answers, 1, l)),
                }
            }
            groups.into_iter().max_by_key(|g| (g.1, g.2.id)).and_then(|g| pick(g.2))
        }
    }
}

impl Model {
    /// What `set_member` (`Some`) or `remove_member` (`None`) must do, done to the model.
    fn change_member(&mut self, project: &str, user: &str, to: Option<Member>) -> Result<(), Fail> {
        self.project(project)
            .ok_or_else(|| Fail::UnknownProject(project.into()))?;
        if to.as_ref().and_then(|m| m.scope.as_deref()) == Some(SCOPES[2]) {
            return Err(Fail::Query);
        }
        let members = self.members.entry(project.to_string()).or_default();
        if to.is_none() && !members.contains_key(user) {
            return Err(Fail::UnknownMember(user.into()));
        }
        if members.get(user) == to.as_ref() {
            return Ok(());
        }
        let admin = |m: Option<&Member>| m.is_some_and(|m| m.role == Role::Admin);
        let other_admin = members.iter().any(|(u, m)| u != user && m.role == Role::Admin);
        if admin(members.get(user)) && !admin(to.as_ref()) && !other_admin {
            return Err(Fail::LastAdmin(user.into()));
        }
        match to {
            Some(m) => members.insert(user.to_string(), m),
            None => members.remove(user),
        };
        self.last_seq += 1;
        Ok(())
    }

    fn project(&self, name: &str) -> Option<ProjectId> {
        self.projects.iter().find(|p| p.0 == name).map(|p| p.1)
    }

    /// The asset an operation addresses (`n < 32`): 15 is the first purged asset, 31 an id
    /// never used, any other the `n`-th known asset, cyclically.
    fn pick(&self, n: u8) -> AssetId {
        let unknown = AssetId(self.next_asset + 3);
        match n {
            15 => self.purged.first().copied().unwrap_or(unknown),
            31 => unknown,
            _ if self.assets.is_empty() => unknown,
            _ => *self
                .assets
                .keys()
                .nth(usize::from(n) % self.assets.len())
                .expect("in range"),
        }
    }

    fn select(&self, project: &str, f: &Filter) -> Result<BTreeSet<AssetId>, Fail> {
        let pid = self
            .project(project)
            .ok_or_else(|| Fail::UnknownProject(project.into()))?;
        if invalid(f) {
            return Err(Fail::Invalid("query".into()));
        }
        let with_deleted = mentions(f, &|l| matches!(l, Filter::Deleted));
        Ok(self
            .assets
            .values()
            .filter(|(a, h)| a.project == pid && (with_deleted || !a.deleted) && holds(a, h, f))
            .map(|(a, _)| a.id)
            .collect())
    }

    /// A write to a live asset: the asset, or the error the write must give.
    fn live(&self, id: AssetId) -> Result<&Asset, Fail> {
        let (a, _) = self.assets.get(&id).ok_or(Fail::UnknownAsset(id))?;
        if a.deleted {
            return Err(Fail::AssetDeleted(a.external_id.clone()));
        }
        Ok(a)
    }

    /// Records a state change of an asset: its version and the event.
    fn changed(&mut self, id: AssetId, f: impl FnOnce(&mut Asset)) {
        let (a, _) = self.assets.get_mut(&id).expect("known asset");
        f(a);
        a.version += 1;
        self.last_seq += 1;
    }

    /// The snapshot `create_snapshot` must make, or its error.
    fn snapshot(&self, project: &str, name: &str, f: &Filter, selection: &Selection) -> Result<MSnapshot, Fail> {
        self.project(project)
            .ok_or_else(|| Fail::UnknownProject(project.into()))?;
        if self.snapshots.iter().any(|s| s.project == project && s.name == name) {
            return Err(Fail::SnapshotExists(name.into()));
        }
        let mut rows: Vec<(Example, Digest)> = Vec::new();
        for id in self.select(project, f)? {
            let (a, h) = &self.assets[&id];
            let Some((rev, answers)) = choose(selection, h) else {
                continue;
            };
            let example = Example {
                external_id: a.external_id.clone(),
                asset: id,
                content: a.content.clone(),
                label: LabelId::new(id, rev),
                answers,
            };
            rows.push((example, a.digest));
        }
        rows.sort_by(|x, y| x.0.external_id.cmp(&y.0.external_id));
        let mut h = blake3::Hasher::new();
        h.update(b"labeldb-snapshot-v1\0");
        for (e, content) in &rows {
            let answers = answers_bytes(&e.answers);
            h.update(&(e.external_id.len() as u64).to_be_bytes());
            h.update(e.external_id.as_bytes());
            h.update(&content.0);
            h.update(&(answers.len() as u64).to_be_bytes());
            h.update(&answers);
        }
        Ok(MSnapshot {
            project: project.into(),
            name: name.into(),
            seq: self.last_seq + 1,
            digest: Digest(*h.finalize().as_bytes()),
            examples: rows.into_iter().map(|r| r.0).collect(),
        })
    }
}

/// Builds the label a generator describes, for an asset with this text and revision
/// count; the error its defect must cause.
fn realize_label(g: &LabelGen, id: AssetId, text: &str, revisions: u32) -> (NewLabel, Option<Fail>) {
    let who = usize::from(g.who) % 2;
    let mut l = match g.kind {
        LabelKind::Annotation => NewLabel::annotation(HUMANS[who]),
        LabelKind::Prediction => NewLabel::prediction(MODELS[who].0, MODELS[who].1),
        _ => NewLabel::new(LabelKind::Review, Source::human(REVIEWERS[who])),
    };
    l.seconds = SECONDS[usize::from(g.seconds) % 3];
    l.verdict = g.verdict;
    if let Some(c) = g.category {
        l.answers
            .insert("category".into(), Answer::class(ABC[usize::from(c) % 3]));
    }
    let words = word_ranges(text);
    if !words.is_empty() && !g.spans.is_empty() {
        let spans = g
            .spans
            .iter()
            .map(|(w, c)| {
                let (start, end) = words[usize::from(*w) % words.len()];
                Span {
                    start,
                    end,
                    class: XY[usize::from(*c) % 2].into(),
                    score: None,
                }
            })
            .collect();
        l.answers.insert("entities".into(), Answer::Spans(spans));
    }
    for (job, class, score) in &g.scores {
        let (job, class) = if job % 2 == 0 {
            ("category", ABC[usize::from(*class) % 3])
        } else {
            ("entities", XY[usize::from(*class) % 2])
        };
        l = l.score(job, class, SCORES[usize::from(*score) % 4]);
    }
    if let (Some(r), true) = (g.reviewed, revisions > 0) {
        l.derived_from = Some(LabelId::new(id, u32::from(r) % revisions));
    }
    let expect = g.defect.map(|d| match d {
        LabelDefect::UnknownJob => {
            l.answers.insert("colour".into(), Answer::class("a"));
            Fail::UnknownJob("colour".into())
        }
        LabelDefect::UnknownClass => {
            l.answers.insert("category".into(), Answer::class("zzz"));
            Fail::UnknownClass {
                job: "category".into(),
                class: "zzz".into(),
            }
        }
        LabelDefect::TwoClasses => {
            l.answers
                .insert("category".into(), Answer::Classes(vec!["a".into(), "b".into()]));
            Fail::InvalidAnswer { job: "category".into() }
        }
        LabelDefect::SpanPastEnd => {
            let past = Span {
                start: 0,
                end: text.len() as u32 + 1,
                class: "x".into(),
                score: None,
            };
            match l.answers.entry("entities".into()).or_insert(Answer::Spans(vec![])) {
                Answer::Spans(s) => s.push(past),
                other => *other = Answer::Spans(vec![past]),
            }
            Fail::InvalidAnswer { job: "entities".into() }
        }
        LabelDefect::ScoreOutOfRange => {
            l.scores.entry("category".into()).or_default().insert("a".into(), 1.5);
            Fail::InvalidAnswer { job: "category".into() }
        }
        LabelDefect::AnnotationFromModel => {
            l.kind = LabelKind::Annotation;
            l.source = Source::Model {
                name: "clf".into(),
                version: "1".into(),
            };
            l.verdict = None;
            Fail::Invalid("label".into())
        }
        LabelDefect::VerdictOnAnnotation => {
            l.kind = LabelKind::Annotation;
            l.source = Source::human(HUMANS[who]);
            l.verdict = Some(Verdict::Accept);
            Fail::Invalid("verdict".into())
        }
        LabelDefect::DerivedFromFuture => {
            l.derived_from = Some(LabelId::new(id, revisions + 1));
            Fail::Invalid("derived_from".into())
        }
    });
    (l, expect)
}

fn realize_asset(g: &AssetGen) -> (NewAsset, Option<Fail>) {
    let ext = format!("e{}", g.ext);
    let text = g
        .words
        .iter()
        .map(|w| WORDS[usize::from(*w) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ");
    let mut a = NewAsset::text(&ext, &text);
    a.status = g.status;
    a.priority = PRIORITIES[usize::from(g.priority) % PRIORITIES.len()];
    if let Some((k, v)) = &g.meta {
        a.meta.insert(format!("k{k}"), v.clone());
    }
    for l in &g.labels {
        a.labels.push(realize_label(l, AssetId(0), &text, 0).0);
    }
    let mut expect = None;
    if g.bad_label {
        a.labels
            .push(NewLabel::annotation("alice").answer("category", Answer::class("zzz")));
        expect = Some(Fail::UnknownClass {
            job: "category".into(),
            class: "zzz".into(),
        });
    }
    (a, expect)
}

// ---- running ----

fn open(path: &Path) -> labeldb::Result<Db> {
    // sled releases its directory lock asynchronously after the last handle drops (see
    // `crate::reopen`); this retries that one error, with background commits off.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match Db::builder().commit_interval(Duration::from_secs(3600)).open(path) {
            Err(Error::InUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// A temporary directory, in memory where the system has one: this test checks
/// behaviour, not durability, and the `fsync`s of every flush and close would otherwise
/// take two thirds of its time.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())
}

/// Applies one operation (not `Reopen`) to the database and the model and compares the
/// outcomes; `handles` holds an open `Snapshot` per model snapshot.
fn apply(db: &Db, model: &mut Model, handles: &mut Vec<Snapshot>, op: &Op) -> Fallible {
    match op {
        Op::CreateProject(n) => {
            let name = PROJECTS[usize::from(*n) % 2];
            let expected = match model.project(name) {
                Some(_) => Err(Fail::ProjectExists(name.into())),
                None => Ok(ProjectId(model.projects.len() as u32)),
            };
            let actual = db.create_project("admin", name, schema(SCHEMA)).map_err(fail);
            same("create_project", &actual, &expected)?;
            if let Ok(id) = expected {
                model.projects.push((name.into(), id));
                model.last_seq += 1;
            }
        }
        Op::AddAssets { project, assets } => add_assets(db, model, project_name(*project), assets)?,
        Op::AddLabel { asset, label } => {
            let id = model.pick(*asset);
            add_label(db, model, id, label)?;
        }
        Op::AddLabels(items) => add_labels(db, model, items)?,
        Op::SetStatus { asset, to } => {
            let id = model.pick(*asset);
            let expected = model.live(id).and_then(|a| {
                if LEGAL.contains(&(a.status, *to)) {
                    Ok(())
                } else {
                    Err(Fail::IllegalTransition {
                        from: a.status,
                        to: *to,
                    })
                }
            });
            same("set_status", &db.set_status("admin", id, *to).map_err(fail), &expected)?;
            if expected.is_ok() {
                model.changed(id, |a| a.status = *to);
            }
        }
        Op::SetMeta { asset, key, value } => {
            let id = model.pick(*asset);
            let key = format!("k{key}");
            let expected = model.live(id).map(|a| a.meta.get(&key) != value.as_ref());
            let actual = db.set_meta("admin", id, &key, value.clone()).map_err(fail);
            same("set_meta", &actual, &expected.clone().map(|_| ()))?;
            if expected == Ok(true) {
                model.changed(id, |a| {
                    match value {
                        Some(v) => a.meta.insert(key, v.clone()),
                        None => a.meta.remove(&key),
                    };
                });
            }
        }
        Op::SetPriority { asset, priority } => {
            let id = model.pick(*asset);
            let p = PRIORITIES[usize::from(*priority) % PRIORITIES.len()];
            let expected = model.live(id).map(|a| a.priority != p);
            let actual = db.set_priority("admin", id, p).map_err(fail);
            same("set_priority", &actual, &expected.clone().map(|_| ()))?;
            if expected == Ok(true) {
                model.changed(id, |a| a.priority = p);
            }
        }
        Op::Delete(n) | Op::Restore(n) => {
            let id = model.pick(*n);
            let deleted = matches!(op, Op::Delete(_));
            let expected = match model.assets.get(&id) {
                None => Err(Fail::UnknownAsset(id)),
                Some((a, _)) => Ok(a.deleted != deleted),
            };
            let actual = if deleted {
                db.delete_asset("admin", id)
            } else {
                db.restore_asset("admin", id)
            };
            same("delete/restore", &actual.map_err(fail), &expected.clone().map(|_| ()))?;
            if expected == Ok(true) {
                model.changed(id, |a| a.deleted = deleted);
            }
        }
        Op::Purge(n) => {
            let id = model.pick(*n);
            let expected = match model.assets.get(&id) {
                None => Err(Fail::UnknownAsset(id)),
                Some(_) if model.snapshots.iter().any(|s| s.examples.iter().any(|e| e.asset == id)) => {
                    Err(Fail::HeldBySnapshots)
                }
                Some(_) => Ok(()),
            };
            same("purge_asset", &db.purge_asset("admin", id).map_err(fail), &expected)?;
            if expected.is_ok() {
                model.assets.remove(&id);
                model.purged.push(id);
                model.last_seq += 1;
            }
        }
        Op::Query { project, filter } => {
            if mentions_text(filter) {
                // Search sees the state of the last text commit; flush commits.
                ok("flush", db.flush())?;
            }
            compare_select(db, model, project_name(*project), filter)?;
        }
        Op::Snapshot {
            project,
            name,
            filter,
            selection,
        } => {
            let project = project_name(*project);
            let name = format!("s{name}");
            if mentions_text(filter) {
                ok("flush", db.flush())?;
            }
            let expected = model.snapshot(project, &name, filter, selection);
            let actual = db.create_snapshot("admin", project, &name, filter, selection);
            match (actual, expected) {
                (Ok(info), Ok(want)) => {
                    same("snapshot size", &info.assets, &(want.examples.len() as u64))?;
                    same("snapshot digest", &info.digest, &want.digest)?;
                    same("snapshot seq", &info.seq, &want.seq)?;
                    same("snapshot selection", &info.selection, selection)?;
                    handles.push(ok("open snapshot", db.snapshot(project, &name))?);
                    model.snapshots.push(want);
                    model.last_seq += 1;
                }
                (actual, expected) => same(
                    "create_snapshot",
                    &actual.map(|i| i.digest).map_err(fail),
                    &expected.map(|s| s.digest),
                )?,
            }
        }
        Op::SetMember {
            project,
            user,
            role,
            scope,
        } => {
            let (name, user) = (project_name(*project), USERS[usize::from(*user)]);
            let member = Member {
                role: Role::ALL[usize::from(*role)],
                scope: scope.map(|s| SCOPES[usize::from(s)].to_string()),
            };
            let actual = db
                .set_member("admin", name, user, member.role, member.scope.as_deref())
                .map_err(fail);
            let expected = model.change_member(name, user, Some(member));
            same("set_member", &actual, &expected)?;
        }
        Op::RemoveMember { project, user } => {
            let (name, user) = (project_name(*project), USERS[usize::from(*user)]);
            let actual = db.remove_member("admin", name, user).map_err(fail);
            let expected = model.change_member(name, user, None);
            same("remove_member", &actual, &expected)?;
        }
        Op::StrangerWrite(n) => {
            let id = model.pick(*n);
            let expected = match model.live(id) {
                Err(Fail::UnknownAsset(a)) => Err(Fail::UnknownAsset(a)),
                _ => Err(Fail::Denied("mallory".into())),
            };
            let actual = db
                .as_user("mallory")
                .and_then(|s| s.set_priority(id, 7.0))
                .map_err(fail);
            same("set_priority as a stranger", &actual, &expected)?;
            if expected == Err(Fail::Denied("mallory".into())) {
                // The refusal is recorded: one `AccessDenied` event.
                model.last_seq += 1;
            }
        }
        Op::Reopen => unreachable!("run() reopens"),
    }
    Ok(())
}

fn add_assets(db: &Db, model: &mut Model, project: &str, gens: &[AssetGen]) -> Fallible {
    let realized: Vec<(NewAsset, Option<Fail>)> = gens.iter().map(realize_asset).collect();
    let plan = (|| {
        let pid = model
            .project(project)
            .ok_or_else(|| Fail::UnknownProject(project.into()))?;
        let mut seen = BTreeSet::new();
        for (a, defect) in &realized {
            if let Some(f) = defect {
                return Err(f.clone());
            }
            if !seen.insert(&a.external_id) {
                return Err(Fail::DuplicateExternalId(a.external_id.clone()));
            }
        }
        let mut duplicates = Vec::new();
        let mut fresh = Vec::new();
        for (a, _) in &realized {
            let exists = model
                .assets
                .values()
                .any(|(m, _)| m.project == pid && m.external_id == a.external_id);
            if exists {
                duplicates.push(a.external_id.clone());
            } else {
                fresh.push(a);
            }
        }
        let seq = model.last_seq + 1;
        let mut added = Vec::new();
        for (i, a) in fresh.into_iter().enumerate() {
            let id = AssetId(model.next_asset + i as u32);
            let mut history: Vec<Label> = Vec::new();
            for (rev, l) in a.labels.iter().enumerate() {
                history.push(Label {
                    id: LabelId::new(id, rev as u32),
                    kind: l.kind,
                    source: l.source.clone(),
                    parent: history.iter().rev().find(|h| h.source == l.source).map(|h| h.id),
                    derived_from: None,
                    answers: l.answers.clone(),
                    scores: l.scores.clone(),
                    verdict: l.verdict,
                    created_at: 0,
                    seconds: l.seconds,
                });
            }
            let text = a.content.text().expect("text asset");
            let asset = Asset {
                id,
                project: pid,
                external_id: a.external_id.clone(),
                content: a.content.clone(),
                digest: content_digest(text),
                meta: a.meta.clone(),
                status: a
                    .status
                    .unwrap_or_else(|| status_after(Status::Todo, annotators(&history).len())),
                priority: a.priority,
                honeypot: false,
                deleted: false,
                revisions: history.len() as u32,
                version: 0,
                created_at: 0,
                created_seq: seq,
            };
            added.push((asset, history));
        }
        Ok((added, duplicates))
    })();
    let news: Vec<NewAsset> = realized.into_iter().map(|r| r.0).collect();
    let actual = db
        .add_assets("loader", project, news)
        .map(|r| (r.added, r.duplicates, r.labels))
        .map_err(fail);
    let expected = plan.as_ref().map(|(added, duplicates)| {
        let ids = added.iter().map(|(a, _)| a.id).collect::<Vec<_>>();
        let labels = added.iter().map(|(_, h)| h.len() as u64).sum::<u64>();
        (ids, duplicates.clone(), labels)
    });
    same("add_assets", &actual, &expected.map_err(Clone::clone))?;
    if let Ok((added, _)) = plan {
        if !added.is_empty() {
            model.last_seq += 1;
            model.next_asset += added.len() as u32;
        }
        for (a, h) in added {
            model.assets.insert(a.id, (a, h));
        }
    }
    Ok(())
}

fn add_label(db: &Db, model: &mut Model, id: AssetId, g: &LabelGen) -> Fallible {
    let (new, expected, latest) = plan_label(model, id, g);
    same("add_label", &db.add_label(id, new.clone()).map_err(fail), &expected)?;
    if let Ok(lid) = expected {
        record_label(model, id, new, lid, latest);
        if let Some((a, _)) = model.assets.get_mut(&id) {
            a.version += 1;
        }
    }
    Ok(())
}

/// A generated label for an asset as the model's state stands: the label, what writing
/// it must give, and the latest revision of its source.
fn plan_label(model: &Model, id: AssetId, g: &LabelGen) -> (NewLabel, Result<LabelId, Fail>, Option<LabelId>) {
    let (text, history) = match model.assets.get(&id) {
        Some((a, h)) => (a.content.text().unwrap_or("").to_string(), h.clone()),
        None => ("red".to_string(), Vec::new()),
    };
    let revisions = history.len() as u32;
    let (mut new, defect) = realize_label(g, id, &text, revisions);
    let latest = history.iter().rev().find(|l| l.source == new.source).map(|l| l.id);
    new.parent = match g.parent {
        ParentGen::None => None,
        ParentGen::Latest => latest,
        ParentGen::Stale(n) => {
            let others: Vec<LabelId> = history.iter().map(|l| l.id).filter(|l| Some(*l) != latest).collect();
            match others.len() {
                0 => Some(LabelId::new(id, revisions + 1 + u32::from(n))),
                len => Some(others[usize::from(n) % len]),
            }
        }
    };
    // The order of the checks: asset, liveness, the label itself, the parent, derived_from.
    let late = matches!(g.defect, Some(LabelDefect::DerivedFromFuture));
    let expected = model.live(id).and_then(|_| {
        match defect.clone() {
            Some(f) if !late => return Err(f),
            _ => {}
        }
        if new.parent.is_some() && new.parent != latest {
            return Err(Fail::Conflict {
                expected: new.parent.map(|l| l.0),
                actual: latest.map(|l| l.0),
            });
        }
        match defect {
            Some(f) => Err(f),
            None => Ok(LabelId::new(id, revisions)),
        }
    });
    (new, expected, latest)
}

/// A written label in the model: its revision, the asset's status and revisions, the
/// event (the caller moves the asset's version).
fn record_label(model: &mut Model, id: AssetId, new: NewLabel, lid: LabelId, latest: Option<LabelId>) {
    let Some((a, h)) = model.assets.get_mut(&id) else {
        return;
    };
    h.push(Label {
        id: lid,
        kind: new.kind,
        source: new.source.clone(),
        parent: latest,
        derived_from: new.derived_from,
        answers: new.answers,
        scores: new.scores,
        verdict: new.verdict,
        created_at: 0,
        seconds: new.seconds,
    });
    if new.kind == LabelKind::Annotation {
        a.status = status_after(a.status, annotators(h).len());
    }
    a.revisions += 1;
    model.last_seq += 1;
}

/// One `add_labels` batch: items in order against the state the earlier items leave; a
/// label equal to the latest of its source and kind (answers, scores, verdict) on a live
/// asset is unchanged (checked before the label itself); the first refused item refuses
/// the batch and nothing changes; each asset that got a label moves one version.
fn add_labels(db: &Db, model: &mut Model, items: &[(u8, LabelGen)]) -> Fallible {
    let mut after = model.clone();
    let mut batch = Vec::new();
    let mut results = Vec::new();
    let mut refused = None;
    let mut touched = BTreeSet::new();
    for (index, (asset, g)) in items.iter().enumerate() {
        let id = model.pick(*asset);
        let (new, outcome, latest) = plan_label(&after, id, g);
        batch.push((id, new.clone()));
        if refused.is_some() {
            continue;
        }
        let repeats = after.live(id).is_ok()
            && after.assets[&id]
                .1
                .iter()
                .rev()
                .find(|l| l.source == new.source && l.kind == new.kind)
                .is_some_and(|l| l.answers == new.answers && l.scores == new.scores && l.verdict == new.verdict);
        match outcome {
            _ if repeats => results.push(None),
            Ok(lid) => {
                record_label(&mut after, id, new, lid, latest);
                touched.insert(id);
                results.push(Some(lid));
            }
            Err(f) => refused = Some(Fail::InBatch(index, Box::new(f))),
        }
    }
    let expected = match refused {
        Some(f) => Err(f),
        None => Ok(results),
    };
    same(
        "add_labels",
        &db.add_labels(batch).map(|r| r.results).map_err(fail),
        &expected,
    )?;
    if expected.is_ok() {
        for id in touched {
            if let Some((a, _)) = after.assets.get_mut(&id) {
                a.version += 1;
            }
        }
        *model = after;
    }
    Ok(())
}

fn compare_select(db: &Db, model: &Model, project: &str, f: &Filter) -> Fallible {
    let actual = db
        .select(project, f)
        .map(|s| s.iter().collect::<BTreeSet<_>>())
        .map_err(fail);
    same(&format!("select {project} {f:?}"), &actual, &model.select(project, f))
}

/// Filters compared after every step (no text: search sees only flushed state).
fn fixed_filters() -> Vec<Filter> {
    use LabelKind::*;
    let mut v = vec![Filter::All, Filter::Deleted, Filter::Status(Status::Todo).not()];
    v.extend(Status::ALL.map(Filter::Status));
    for kind in [Annotation, Prediction, Review] {
        for class in ABC {
            v.push(class_filter(kind, "category", class));
        }
        for class in XY {
            v.push(class_filter(kind, "entities", class));
        }
    }
    v.extend(["alice", "bob"].map(|a| Filter::Author(a.into())));
    v.extend(["clf", "clf@2"].map(|m| Filter::Model(m.into())));
    v.push(Filter::Meta {
        key: "k0".into(),
        value: MetaValue::Str("2".into()),
    });
    v.push(Filter::Meta {
        key: "k1".into(),
        value: MetaValue::Bool(true),
    });
    v.push(numeric(NumField::Priority, CmpOp::Gt, 0.0));
    v.push(numeric(NumField::Labels, CmpOp::Ge, 1.0));
    v.push(numeric(NumField::Seconds, CmpOp::Ge, 1.5));
    v.push(numeric(score_field(Prediction, None), CmpOp::Lt, 0.5));
    v.push(numeric(score_field(Prediction, Some("category")), CmpOp::Ge, 0.25));
    v
}

/// One text query per vocabulary token, and a phrase and a prefix.
fn text_filters() -> Vec<Filter> {
    let mut v: Vec<Filter> = ["red", "blue", "box", "boxes", "cafe"]
        .map(|w| Filter::Text(TextQuery::Term(w.into())))
        .into();
    v.push(Filter::Text(TextQuery::Phrase(vec!["red".into(), "box".into()])));
    v.push(Filter::Text(TextQuery::Prefix("bo".into())));
    v
}

fn compare_snapshot(db: &Db, want: &MSnapshot, handle: &Snapshot) -> Fallible {
    let what = |w: &str| format!("snapshot {}/{}: {w}", want.project, want.name);
    same(&what("handle name"), &handle.info().name, &want.name)?;
    same(&what("len"), &handle.len(), &want.examples.len())?;
    for (i, example) in want.examples.iter().enumerate() {
        same(&what(&format!("get({i})")), &ok(&what("get"), handle.get(i))?, example)?;
    }
    same(&what("handle digest"), &handle.info().digest, &want.digest)?;
    let info = ok(&what("info"), db.snapshot_info(&want.project, &want.name))?;
    same(&what("stored digest"), &info.digest, &want.digest)?;
    same(&what("stored seq"), &info.seq, &want.seq)?;
    same(&what("stored size"), &info.assets, &(want.examples.len() as u64))?;
    let problems = ok(&what("verify"), db.verify_snapshot(&want.project, &want.name))?;
    same(&what("verify_snapshot"), &problems, &Vec::new())
}

/// Compares everything observable with the model.
fn compare(db: &Db, model: &Model, handles: &[Snapshot]) -> Fallible {
    same("last_seq", &db.last_seq(), &model.last_seq)?;
    let mut projects = model.projects.clone();
    projects.sort();
    let got: Vec<(String, ProjectId)> = db.projects().iter().map(|p| (p.name.clone(), p.id)).collect();
    same("projects", &got, &projects)?;
    for (name, _) in &model.projects {
        let want: Vec<(String, Member)> = model
            .members
            .get(name)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        same(&format!("members of {name}"), &ok("members", db.members(name))?, &want)?;
    }
    for (name, pid) in &model.projects {
        let ids: Vec<AssetId> = model
            .assets
            .values()
            .filter(|(a, _)| a.project == *pid)
            .map(|(a, _)| a.id)
            .collect();
        same(
            &format!("asset_ids {name}"),
            &ok("asset_ids", db.asset_ids(name))?,
            &ids,
        )?;
    }
    for (id, (want, history)) in &model.assets {
        let mut got = ok(&format!("asset {id}"), db.asset(*id))?;
        if got.created_at == 0 {
            return Err(format!("asset {id}: created_at is 0"));
        }
        got.created_at = 0;
        same(&format!("asset {id}"), &got, want)?;
        let got: Vec<Label> = ok(&format!("history of {id}"), db.history(*id))?
            .into_iter()
            .map(|l| Label { created_at: 0, ..l })
            .collect();
        same(&format!("history of {id}"), &got, history)?;
    }
    for id in &model.purged {
        same(
            &format!("purged asset {id}"),
            &db.asset(*id).map_err(fail),
            &Err(Fail::UnknownAsset(*id)),
        )?;
        same(
            &format!("history of purged {id}"),
            &ok("history", db.history(*id))?,
            &Vec::new(),
        )?;
    }
    for (name, _) in &model.projects {
        for f in fixed_filters() {
            compare_select(db, model, name, &f)?;
        }
        let mut want: Vec<(&str, Digest)> = model
            .snapshots
            .iter()
            .filter(|s| s.project == *name)
            .map(|s| (s.name.as_str(), s.digest))
            .collect();
        want.sort();
        let listed = ok("snapshots", db.snapshots(name))?;
        let got: Vec<(&str, Digest)> = listed.iter().map(|(i, _)| (i.name.as_str(), i.digest)).collect();
        same(&format!("snapshots of {name}"), &got, &want)?;
    }
    same("snapshot handles", &handles.len(), &model.snapshots.len())?;
    for (want, handle) in model.snapshots.iter().zip(handles) {
        compare_snapshot(db, want, handle)?;
    }
    Ok(())
}

/// Runs a case: creates `p0`, then applies `ops`, comparing after every step.
fn run(ops: &[Op]) -> Fallible {
    let dir = scratch_dir().map_err(|e| e.to_string())?;
    let path = dir.path().join("db");
    let mut db = ok("open", open(&path))?;
    let mut model = Model::default();
    let mut handles: Vec<Snapshot> = Vec::new();
    let setup = Op::CreateProject(0);
    for (i, op) in std::iter::once(&setup).chain(ops).enumerate() {
        let at = |e: String| format!("step {i} {op:?}\n{e}");
        if let Op::Reopen = op {
            // Every handle goes, snapshots included: each holds a clone of the Db.
            handles.clear();
            drop(db);
            db = ok("reopen", open(&path)).map_err(at)?;
            for s in &model.snapshots {
                handles.push(ok("reopen snapshot", db.snapshot(&s.project, &s.name)).map_err(at)?);
            }
            let report = ok("verify", db.verify()).map_err(at)?;
            same("verify after reopen", &report.problems, &Vec::new()).map_err(at)?;
            // Opening commits the text index, so search sees everything without a flush.
            for (name, _) in &model.projects {
                for f in text_filters() {
                    compare_select(&db, &model, name, &f).map_err(at)?;
                }
            }
        } else {
            apply(&db, &mut model, &mut handles, op).map_err(at)?;
        }
        compare(&db, &model, &handles).map_err(at)?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("LABELDB_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2048,
        // This module owns no regression file: a failure prints its minimal case.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_api_operation_agrees_with_the_in_memory_model(ops in ops()) {
        run(&ops).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn the_comparator_reports_a_model_that_disagrees_with_the_database() {
    let dir = scratch_dir().expect("tempdir");
    let db = open(&dir.path().join("db")).expect("open");
    let mut model = Model::default();
    let mut handles = Vec::new();
    let annotation = LabelGen {
        kind: LabelKind::Annotation,
        who: 0,
        category: Some(0),
        spans: vec![(1, 0)],
        scores: vec![],
        verdict: None,
        reviewed: None,
        seconds: 1,
        parent: ParentGen::None,
        defect: None,
    };
    let asset = AssetGen {
        ext: 0,
        words: vec![0, 2],
        status: None,
        priority: 0,
        meta: None,
        labels: vec![annotation],
        bad_label: false,
    };
    let setup = [
        Op::CreateProject(0),
        Op::AddAssets {
            project: 0,
            assets: vec![asset],
        },
        Op::Snapshot {
            project: 0,
            name: 0,
            filter: Filter::All,
            selection: Selection::LatestHuman,
        },
    ];
    for op in &setup {
        apply(&db, &mut model, &mut handles, op).expect("the model agrees");
    }
    compare(&db, &model, &handles).expect("the model agrees");
    assert_eq!(model.snapshots[0].examples.len(), 1, "the snapshot holds the asset");

    let id = AssetId(0);
    type Tamper = fn(&mut Model);
    let tamperings: [(&str, Tamper); 6] = [
        ("last_seq", |m| m.last_seq += 1),
        ("asset #0", |m| {
            m.assets.get_mut(&AssetId(0)).expect("asset").0.status = Status::Reviewed
        }),
        ("history of #0", |m| {
            m.assets.get_mut(&AssetId(0)).expect("asset").1[0].answers.clear();
        }),
        ("asset_ids", |m| {
            let (a, h) = m.assets[&AssetId(0)].clone();
            m.assets.insert(AssetId(9), (Asset { id: AssetId(9), ..a }, h));
        }),
        ("Digest", |m| m.snapshots[0].digest = Digest([0; 32])),
        ("get(0)", |m| m.snapshots[0].examples[0].answers.clear()),
    ];
    for (what, tamper) in tamperings {
        let mut wrong = model.clone();
        tamper(&mut wrong);
        match compare(&db, &wrong, &handles) {
            Ok(()) => panic!("compare accepted a model with a wrong {what}"),
            Err(e) => assert!(e.contains(what), "a wrong {what} was reported as: {e}"),
        }
    }

    // Queries: a model whose asset has another status or text gets other results.
    let mut wrong = model.clone();
    wrong.assets.get_mut(&id).expect("asset").0.status = Status::Todo;
    let e = compare_select(&db, &wrong, "p0", &Filter::Status(Status::Labeled)).expect_err("a wrong status");
    assert!(e.contains("select p0"), "{e}");
    let mut wrong = model.clone();
    wrong.assets.get_mut(&id).expect("asset").0.content = Content::Text("blue".into());
    let query = Op::Query {
        project: 0,
        filter: Filter::Text(TextQuery::Term("red".into())),
    };
    let e = apply(&db, &mut wrong, &mut handles, &query).expect_err("a wrong text");
    assert!(e.contains("Text(Term(\"red\"))"), "{e}");
    // And a wrong outcome of a write: the model expects an illegal transition to pass.
    let mut wrong = model.clone();
    wrong.assets.get_mut(&id).expect("asset").0.status = Status::Todo;
    let e = apply(
        &db,
        &mut wrong,
        &mut handles,
        &Op::SetStatus {
            asset: 0,
            to: Status::ToReview,
        },
    )
    .expect_err("a wrong outcome");
    assert!(e.contains("set_status") && e.contains("IllegalTransition"), "{e}");
}
