//! Queries against a brute-force evaluation of the primary data.
//!
//! The expected result of every filter is computed here from `Db::asset` and
//! `Db::history` alone, following docs/query.md: the latest annotation per author, the
//! latest prediction or inference per source, the latest review (whoever wrote it); a
//! score is the top class score of the latest label of that kind that scores the job, and
//! without a job the lowest of those over the jobs; soft-deleted assets are left out
//! unless the filter mentions `deleted`; `NOT` is relative to every asset of the project;
//! text search matches the words of live text assets (split on non-alphanumerics,
//! lower-cased, ASCII-folded).
//! Nothing here calls the index code.
//!
//! Also: paging and facets against the same brute force, parse errors and text search
//! through `Db::query`, the indexes after reopening, after a damaged checkpoint and after
//! a killed writer (a child process running this binary), edge cases of numeric and
//! metadata filters, and the WNUT-17 entity counts.
//!
//! `LABELDB_PROPTEST_CASES` raises the number of cases of every property here (default
//! 48 for the query property, fewer for the slower ones).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use labeldb::query::{parse, to_query_string, CmpOp, NumField, TextQuery};
use labeldb::{
    Answer, Asset, AssetId, AssetSet, Db, Error, Facets, Filter, Format, ImportOptions, Label, LabelKind, MetaValue,
    NewAsset, NewLabel, RecordRef, Sort, Source, Span, Status, Verdict,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use crate::{data_dir, kill_child, schema, TestResult};

/// The project of the tests with one database each.
const P: &str = "p";
const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["invoice", "order", "creative work"]},
    {"name": "entities", "kind": "spans", "classes": ["person", "location", "org"]}
]}"#;
const CATEGORIES: [&str; 3] = ["invoice", "order", "creative work"];
const ENTITY_CLASSES: [&str; 3] = ["person", "location", "org"];
const TEXTS: [&str; 4] = [
    "Send 3 boxes to Paris today",
    "café ☕ for Zoë at ACME",
    "東京で寿司 🍣 with Ann",
    "ok",
];
const AUTHORS: [&str; 4] = ["alice", "bob", "a.lee@corp", "Ann Lee"];
const REVIEWERS: [&str; 2] = ["rita", "alice"];
const SECONDS: [f32; 6] = [0.0, 0.5, 1.25, 3.0, 0.1, 7.7];
const SCORES: [f32; 11] = [0.0, -0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.70001, 0.9, 0.99, 1.0];
const PRIORITIES: [f64; 10] = [0.0, -0.0, 1.0, 5.0, 5.000001, -2.5, 1e12, 1e-300, 0.5, 3.0];
const META_KEYS: [&str; 3] = ["lang", "flag", "doc.type"];
/// Looked up by queries: the stored keys and one that no asset has.
const META_QUERY_KEYS: [&str; 4] = ["lang", "flag", "doc.type", "absent"];
/// Looked up by queries: the first values of [`meta_value`], those the language can
/// express (strings and booleans), including the decimal text of stored numbers.
const META_QUERY_VALUES: usize = 10;
/// How many values [`meta_value`] has.
const META_VALUES: u8 = 13;
const AUTHOR_QUERIES: [&str; 6] = ["alice", "bob", "a.lee@corp", "Ann Lee", "rita", "zed"];
const MODEL_QUERIES: [&str; 6] = ["m", "m@1", "m@2", "m@3", "n", "dict"];
const RULE_QUERIES: [&str; 4] = ["dict", "dict@1", "dict@2", "m"];
/// Text terms (lower case: the parser's normal form), some folded, one with no word.
const TEXT_TERMS: [&str; 10] = [
    "send",
    "paris",
    "cafe",
    "café",
    "zoë",
    "ann",
    "東京で寿司",
    "ok",
    "absent",
    "☕",
];
const TEXT_PHRASES: [&[&str]; 5] = [
    &["send", "3"],
    &["for", "zoe"],
    &["with", "ann"],
    &["to", "paris", "today"],
    &["ann", "with"],
];
const TEXT_PREFIXES: [&str; 6] = ["bo", "pa", "caf", "東京", "o", "zz"];
const FIXED_THRESHOLDS: [f64; 12] = [
    f64::NEG_INFINITY,
    -1.0,
    -0.0,
    0.0,
    0.1,
    0.5,
    0.7,
    1.0,
    2.0,
    5.0,
    1e12,
    f64::INFINITY,
];
const OPS: [CmpOp; 5] = [CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge, CmpOp::Eq];

/// Stored metadata values; the first [`META_QUERY_VALUES`] are also queried.
fn meta_value(i: u8) -> MetaValue {
    match i % META_VALUES {
        0 => MetaValue::Str("en".into()),
        1 => MetaValue::Str("fr".into()),
        2 => MetaValue::Str("a b".into()),
        3 => MetaValue::Str("x\"y\\z".into()),
        4 => MetaValue::Str(String::new()),
        5 => MetaValue::Str("true".into()),
        6 => MetaValue::Bool(true),
        7 => MetaValue::Bool(false),
        8 => MetaValue::Str("1.5".into()),
        9 => MetaValue::Str("2".into()),
        10 => MetaValue::Num(1.5),
        11 => MetaValue::Num(-0.0),
        _ => MetaValue::Num(2.0),
    }
}

fn num_fields() -> Vec<NumField> {
    let score = |kind, job: Option<&str>| NumField::Score {
        kind,
        job: job.map(str::to_string),
    };
    vec![
        score(LabelKind::Prediction, None),
        score(LabelKind::Prediction, Some("category")),
        score(LabelKind::Prediction, Some("entities")),
        score(LabelKind::Inference, None),
        score(LabelKind::Inference, Some("category")),
        NumField::Priority,
        NumField::Seconds,
        NumField::Created,
        NumField::Labels,
    ]
}

fn cases(default: u32) -> u32 {
    std::env::var("LABELDB_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        max_shrink_iters: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- generated data ----

#[derive(Clone, Debug)]
struct LabelGen {
    /// Kind and source, see [`new_label`].
    who: u8,
    class: Option<u8>,
    spans: Option<Vec<(u8, u8, u8)>>,
    /// (job, class, score).
    scores: Vec<(u8, u8, f32)>,
    /// Adds a job with an empty score map (it scores nothing).
    empty_scores: bool,
    seconds: u8,
}

#[derive(Clone, Debug)]
struct AssetGen {
    text: u8,
    status: Option<Status>,
    priority: f64,
    honeypot: bool,
    meta: Vec<(u8, u8)>,
    labels: Vec<LabelGen>,
}

#[derive(Clone, Debug)]
enum Op {
    Label { asset: u16, label: LabelGen },
    Status { asset: u16, to: Status },
    Meta { asset: u16, key: u8, value: Option<u8> },
    Priority { asset: u16, priority: f64 },
    Honeypot { asset: u16, on: bool },
    Delete(u16),
    Restore(u16),
    AddAssets(Vec<AssetGen>),
    Flush,
    Reopen,
}

fn score() -> impl Strategy<Value = f32> {
    prop_oneof![3 => prop::sample::select(SCORES.to_vec()), 1 => 0.0f32..=1.0f32]
}

fn priority() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => prop::sample::select(PRIORITIES.to_vec()),
        2 => (-3i32..12).prop_map(f64::from),
        1 => any::<f64>().prop_filter("finite", |p| p.is_finite()),
    ]
}

fn label_gen() -> impl Strategy<Value = LabelGen> {
    (
        0u8..12,
        prop::option::of(0u8..3),
        prop::option::of(prop::collection::vec((any::<u8>(), any::<u8>(), 0u8..3), 0..3)),
        prop::collection::vec((0u8..2, 0u8..3, score()), 0..4),
        prop::bool::weighted(0.1),
        0u8..6,
    )
        .prop_map(|(who, class, spans, scores, empty_scores, seconds)| LabelGen {
            who,
            class,
            spans,
            scores,
            empty_scores,
            seconds,
        })
}

fn asset_gen() -> impl Strategy<Value = AssetGen> {
    (
        0u8..4,
        prop_oneof![3 => Just(None), 1 => prop::sample::select(Status::ALL.to_vec()).prop_map(Some)],
        priority(),
        prop::bool::weighted(0.2),
        prop::collection::vec((0u8..3, 0..META_VALUES), 0..3),
        prop::collection::vec(label_gen(), 0..4),
    )
        .prop_map(|(text, status, priority, honeypot, meta, labels)| AssetGen {
            text,
            status,
            priority,
            honeypot,
            meta,
            labels,
        })
}

/// Operations on existing assets (`with_lifecycle` adds new assets, flushes and reopens).
fn op(with_lifecycle: bool) -> BoxedStrategy<Op> {
    let edits = prop_oneof![
        6 => (any::<u16>(), label_gen()).prop_map(|(asset, label)| Op::Label { asset, label }),
        3 => (any::<u16>(), prop::sample::select(Status::ALL.to_vec())).prop_map(|(asset, to)| Op::Status { asset, to }),
        2 => (any::<u16>(), 0u8..3, prop::option::of(0..META_VALUES)).prop_map(|(asset, key, value)| Op::Meta { asset, key, value }),
        2 => (any::<u16>(), priority()).prop_map(|(asset, priority)| Op::Priority { asset, priority }),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(asset, on)| Op::Honeypot { asset, on }),
        2 => any::<u16>().prop_map(Op::Delete),
        1 => any::<u16>().prop_map(Op::Restore),
    ];
    if !with_lifecycle {
        return edits.boxed();
    }
    prop_oneof![
        12 => edits,
        1 => prop::collection::vec(asset_gen(), 1..5).prop_map(Op::AddAssets),
        1 => Just(Op::Flush),
        2 => Just(Op::Reopen),
    ]
    .boxed()
}

/// Byte ranges on character boundaries of `text`.
fn spans(text: &str, picks: &[(u8, u8, u8)]) -> Vec<Span> {
    let mut bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    bounds.push(text.len());
    let n = bounds.len() - 1;
    picks
        .iter()
        .map(|&(a, b, c)| {
            let i = usize::from(a) % n;
            let j = i + 1 + usize::from(b) % (n - i);
            Span {
                start: bounds[i] as u32,
                end: bounds[j] as u32,
                class: ENTITY_CLASSES[usize::from(c) % 3].to_string(),
                score: None,
            }
        })
        .collect()
}

fn new_label(g: &LabelGen, text: &str) -> NewLabel {
    let model = |version: &str| Source::Model {
        name: "m".into(),
        version: version.into(),
    };
    let (kind, source) = match g.who % 12 {
        w @ 0..=3 => (LabelKind::Annotation, Source::human(AUTHORS[usize::from(w)])),
        4 => (LabelKind::Annotation, Source::human(AUTHORS[0])),
        5 => (LabelKind::Annotation, Source::human(AUTHORS[1])),
        6 => (LabelKind::Prediction, model("1")),
        7 => (LabelKind::Prediction, model("2")),
        8 => (
            LabelKind::Prediction,
            Source::Rule {
                name: "dict".into(),
                version: "1".into(),
            },
        ),
        9 => (LabelKind::Inference, model("2")),
        w => (LabelKind::Review, Source::human(REVIEWERS[usize::from(w - 10)])),
    };
    let mut l = NewLabel::new(kind, source);
    if let Some(c) = g.class {
        l = l.answer("category", Answer::class(CATEGORIES[usize::from(c) % 3]));
    }
    if let Some(picks) = &g.spans {
        l = l.answer("entities", Answer::Spans(spans(text, picks)));
    }
    if matches!(kind, LabelKind::Prediction | LabelKind::Inference) {
        for &(job, class, s) in &g.scores {
            let (job, class) = if job == 0 {
                ("category", CATEGORIES[usize::from(class) % 3])
            } else {
                ("entities", ENTITY_CLASSES[usize::from(class) % 3])
            };
            l = l.score(job, class, s);
        }
        if g.empty_scores {
            l.scores.entry("entities".into()).or_default();
        }
    }
    if kind == LabelKind::Review {
        l.verdict = Some(if g.seconds.is_multiple_of(2) {
            Verdict::Accept
        } else {
            Verdict::Reject
        });
    }
    l.seconds = SECONDS[usize::from(g.seconds) % SECONDS.len()];
    l
}

fn new_asset(ext: String, g: &AssetGen) -> NewAsset {
    let text = TEXTS[usize::from(g.text) % TEXTS.len()];
    let mut a = NewAsset::text(ext, text);
    a.status = g.status;
    a.priority = g.priority;
    a.honeypot = g.honeypot;
    for &(k, v) in &g.meta {
        a.meta
            .insert(META_KEYS[usize::from(k) % META_KEYS.len()].into(), meta_value(v));
    }
    a.labels = g.labels.iter().map(|l| new_label(l, text)).collect();
    a
}

/// The assets a test wrote to one project, in creation order.
struct Written {
    project: String,
    ids: Vec<AssetId>,
    texts: Vec<&'static str>,
}

fn add_batch(db: &Db, gens: &[AssetGen], written: &mut Written) {
    let project = written.project.as_str();
    let start = written.ids.len();
    let news = gens
        .iter()
        .enumerate()
        .map(|(i, g)| new_asset(format!("{project}-{}", start + i), g))
        .collect();
    let report = db
        .add_assets("loader", project, news)
        .unwrap_or_else(|e| panic!("add_assets {gens:?}: {e}"));
    assert_eq!(report.added.len(), gens.len());
    for (id, g) in report.added.iter().zip(gens) {
        written.ids.push(*id);
        written.texts.push(TEXTS[usize::from(g.text) % TEXTS.len()]);
    }
}

/// Creates `project` with the initial batches, and another project whose assets are
/// interleaved so that their ids sit between this project's.
fn populate(db: &Db, project: &str, batches: &[Vec<AssetGen>]) -> Written {
    let other_name = format!("{project}-other");
    db.create_project("admin", project, schema(SCHEMA))
        .expect("create project");
    db.create_project("admin", &other_name, schema(SCHEMA))
        .expect("create other project");
    let written = |project: &str| Written {
        project: project.to_string(),
        ids: Vec::new(),
        texts: Vec::new(),
    };
    let (mut other, mut written) = (written(&other_name), written(project));
    for (i, batch) in batches.iter().enumerate() {
        if i > 0 {
            // Different batches get different creation times (milliseconds).
            std::thread::sleep(Duration::from_millis(2));
        }
        add_batch(db, batch, &mut written);
        if i == 0 {
            add_batch(db, &batch[..batch.len().min(3)], &mut other);
        }
    }
    written
}

/// Applies one edit; refusals the generator cannot avoid (illegal transitions, edits of
/// deleted assets) are fine, anything else is a broken test.
fn apply(db: &Db, written: &mut Written, op: &Op) {
    let n = written.ids.len();
    let at = |i: u16| (written.ids[usize::from(i) % n], written.texts[usize::from(i) % n]);
    let result = match op {
        Op::Label { asset, label } => {
            let (id, text) = at(*asset);
            db.add_label(id, new_label(label, text)).map(|_| ())
        }
        Op::Status { asset, to } => db.set_status("rita", at(*asset).0, *to),
        Op::Meta { asset, key, value } => db.set_meta(
            "admin",
            at(*asset).0,
            META_KEYS[usize::from(*key) % META_KEYS.len()],
            value.map(meta_value),
        ),
        Op::Priority { asset, priority } => db.set_priority("admin", at(*asset).0, *priority),
        Op::Honeypot { asset, on } => db.set_honeypot("admin", at(*asset).0, *on),
        Op::Delete(asset) => db.delete_asset("admin", at(*asset).0),
        Op::Restore(asset) => db.restore_asset("admin", at(*asset).0),
        Op::AddAssets(gens) => {
            add_batch(db, gens, written);
            Ok(())
        }
        Op::Flush => db.flush(),
        Op::Reopen => panic!("the caller reopens"),
    };
    match result {
        Ok(()) | Err(Error::IllegalTransition { .. }) | Err(Error::AssetDeleted(_)) => {}
        Err(e) => panic!("{op:?}: {e}"),
    }
}

// ---- the brute force ----

/// One asset's primary data.
#[derive(Debug)]
struct Truth {
    asset: Asset,
    history: Vec<Label>,
}

/// Every asset of the project, soft-deleted ones included, read from primary data.
fn truths(db: &Db, project: &str) -> Vec<Truth> {
    db.asset_ids(project)
        .expect("asset ids")
        .into_iter()
        .map(|id| Truth {
            asset: db.asset(id).expect("asset"),
            history: db.history(id).expect("history"),
        })
        .collect()
}

/// The latest label of `kind` per source; for reviews the latest review, whoever wrote it.
fn latest(t: &Truth, kind: LabelKind) -> Vec<&Label> {
    let mut by_source: BTreeMap<Option<&Source>, &Label> = BTreeMap::new();
    for l in t.history.iter().filter(|l| l.kind == kind) {
        let source = (kind != LabelKind::Review).then_some(&l.source);
        by_source.insert(source, l);
    }
    by_source.into_values().collect()
}

fn answers_class(a: &Answer, class: &str) -> bool {
    match a {
        Answer::Classes(c) => c.iter().any(|c| c == class),
        Answer::Spans(s) => s.iter().any(|s| s.class == class),
        Answer::Boxes(b) => b.iter().any(|b| b.class == class),
    }
}

/// `name` (any version) or `name@version` (that one).
fn source_matches(spec: &str, name: &str, version: &str) -> bool {
    match spec.rsplit_once('@') {
        Some((n, v)) => n == name && v == version,
        None => spec == name,
    }
}

fn is_annotator(l: &Label) -> Option<&str> {
    match &l.source {
        Source::Human { user } if l.kind == LabelKind::Annotation => Some(user),
        _ => None,
    }
}

/// The value of a numeric field, `None` when the asset has none.
fn number(t: &Truth, field: &NumField) -> Option<f64> {
    match field {
        NumField::Score { kind, job } => {
            assert!(
                matches!(kind, LabelKind::Prediction | LabelKind::Inference),
                "no score for {kind}"
            );
            let mut per_job: BTreeMap<&str, f32> = BTreeMap::new();
            for l in t.history.iter().filter(|l| l.kind == *kind) {
                for (j, classes) in &l.scores {
                    let top = classes.values().copied().reduce(f32::max);
                    if let Some(top) = top {
                        per_job.insert(j, top);
                    }
                }
            }
            match job {
                Some(j) => per_job.get(j.as_str()).map(|s| f64::from(*s)),
                None => per_job.values().copied().reduce(f32::min).map(f64::from),
            }
        }
        NumField::Priority => Some(t.asset.priority),
        NumField::Seconds => Some(
            t.history
                .iter()
                .filter(|l| is_annotator(l).is_some())
                .map(|l| f64::from(l.seconds))
                .sum(),
        ),
        NumField::Created => Some(t.asset.created_at as f64),
        NumField::Labels => Some(t.history.iter().filter_map(is_annotator).collect::<BTreeSet<_>>().len() as f64),
    }
}

fn compare(op: CmpOp, lhs: f64, rhs: f64) -> bool {
    match op {
        CmpOp::Lt => lhs < rhs,
        CmpOp::Le => lhs <= rhs,
        CmpOp::Gt => lhs > rhs,
        CmpOp::Ge => lhs >= rhs,
        CmpOp::Eq => lhs == rhs,
    }
}

/// Whether the filter holds for the asset, with `NOT` relative to every asset.
fn holds(f: &Filter, t: &Truth) -> bool {
    match f {
        Filter::All => true,
        Filter::Status(s) => t.asset.status == *s,
        Filter::Class { kind, job, class } => latest(t, *kind)
            .iter()
            .any(|l| l.answers.get(job).is_some_and(|a| answers_class(a, class))),
        Filter::Author(a) => t.history.iter().any(|l| is_annotator(l) == Some(a.as_str())),
        Filter::Model(spec) => t
            .history
            .iter()
            .any(|l| matches!(&l.source, Source::Model { name, version } if source_matches(spec, name, version))),
        Filter::Rule(spec) => t
            .history
            .iter()
            .any(|l| matches!(&l.source, Source::Rule { name, version } if source_matches(spec, name, version))),
        Filter::Meta { key, value } => t.asset.meta.get(key).is_some_and(|stored| meta_equals(stored, value)),
        Filter::Honeypot => t.asset.honeypot,
        Filter::Deleted => t.asset.deleted,
        Filter::Numeric { field, op, value } => number(t, field).is_some_and(|v| compare(*op, v, *value)),
        Filter::Text(q) => text_holds(q, t),
        Filter::And(a, b) => holds(a, t) && holds(b, t),
        Filter::Or(a, b) => holds(a, t) || holds(b, t),
        Filter::Not(a) => !holds(a, t),
    }
}

/// The words of a text as the text index sees them: split on non-alphanumeric
/// characters, lower-cased, ASCII-folded (only the accents of [`TEXTS`] and
/// [`TEXT_TERMS`] are folded here).
fn words(text: &str) -> Vec<String> {
    let fold = |c: char| match c {
        'é' | 'ë' => 'e',
        c => c,
    };
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().chars().map(fold).collect())
        .collect()
}

/// Whether the words `query` appear consecutively in `doc`, the last one as a prefix
/// when `prefix`. No words match nothing.
fn has_run(doc: &[String], query: &[String], prefix: bool) -> bool {
    let last = query.len().wrapping_sub(1);
    !query.is_empty()
        && doc.windows(query.len()).any(|w| {
            w.iter().zip(query).enumerate().all(|(i, (d, q))| {
                if prefix && i == last {
                    d.starts_with(q.as_str())
                } else {
                    d == q
                }
            })
        })
}

/// Text search: soft-deleted assets are not in the text index (docs/query.md).
fn text_holds(q: &TextQuery, t: &Truth) -> bool {
    let Some(text) = t.asset.content.text().filter(|_| !t.asset.deleted) else {
        return false;
    };
    let doc = words(text);
    match q {
        TextQuery::Term(w) => has_run(&doc, &words(w), false),
        TextQuery::Phrase(ws) => has_run(&doc, &words(&ws.join(" ")), false),
        TextQuery::Prefix(p) => has_run(&doc, &words(p), true),
    }
}

/// Strings and booleans compare for equality; a number by its shortest decimal text
/// (docs/query.md, "How filters are evaluated").
fn meta_equals(stored: &MetaValue, wanted: &MetaValue) -> bool {
    let text = |v: &MetaValue| match v {
        MetaValue::Str(s) => Some(s.clone()),
        MetaValue::Num(n) => Some(n.to_string()),
        MetaValue::Bool(_) => None,
    };
    match (stored, wanted) {
        (MetaValue::Bool(a), MetaValue::Bool(b)) => a == b,
        (MetaValue::Bool(_), _) | (_, MetaValue::Bool(_)) => false,
        _ => text(stored) == text(wanted),
    }
}

fn mentions_deleted(f: &Filter) -> bool {
    match f {
        Filter::Deleted => true,
        Filter::And(a, b) | Filter::Or(a, b) => mentions_deleted(a) || mentions_deleted(b),
        Filter::Not(a) => mentions_deleted(a),
        _ => false,
    }
}

/// The assets the filter selects, ascending.
fn brute(truths: &[Truth], f: &Filter) -> Vec<AssetId> {
    let reach_deleted = mentions_deleted(f);
    truths
        .iter()
        .filter(|t| (reach_deleted || !t.asset.deleted) && holds(f, t))
        .map(|t| t.asset.id)
        .collect()
}

fn dump(t: &Truth) -> String {
    let a = &t.asset;
    let mut s = format!(
        "  asset {} status {:?} priority {:?} honeypot {} deleted {} created {} meta {:?}\n",
        a.id, a.status, a.priority, a.honeypot, a.deleted, a.created_at, a.meta
    );
    for l in &t.history {
        s += &format!(
            "    {} {:?} {} answers {:?} scores {:?} seconds {}\n",
            l.id, l.kind, l.source, l.answers, l.scores, l.seconds
        );
    }
    s
}

fn explain(truths: &[Truth], f: &Filter, how: &str, got: &[AssetId], expected: &[AssetId]) -> String {
    let g: BTreeSet<_> = got.iter().copied().collect();
    let e: BTreeSet<_> = expected.iter().copied().collect();
    let missing: Vec<_> = e.difference(&g).copied().collect();
    let extra: Vec<_> = g.difference(&e).copied().collect();
    let mut s = format!(
        "{how} disagrees with the brute force\nfilter {f:?}\nquery  {}\nmissing {missing:?}\nextra {extra:?}\n",
        to_query_string(f)
    );
    for id in missing.iter().chain(&extra).take(3) {
        if let Some(t) = truths.iter().find(|t| t.asset.id == *id) {
            s += &dump(t);
        }
    }
    s
}

/// `select`, `count`, and `query` of the printed filter all equal the brute force; the
/// printed filter parses back to the same tree.
fn check_filter(db: &Db, project: &str, truths: &[Truth], f: &Filter) {
    let expected = brute(truths, f);
    let got: Vec<AssetId> = match db.select(project, f) {
        Ok(set) => set.iter().collect(),
        Err(e) => panic!("select {f:?}: {e}"),
    };
    assert!(got == expected, "{}", explain(truths, f, "select", &got, &expected));
    // `count` takes shortcuts for `x AND y` and `x AND NOT y`: it must agree.
    match db.count(project, f) {
        Ok(n) => assert_eq!(n, expected.len() as u64, "count {f:?}"),
        Err(e) => panic!("count {f:?}: {e}"),
    }
    let text = to_query_string(f);
    match parse(&text) {
        Ok(back) => assert_eq!(&back, f, "{text:?} parses to a different filter"),
        Err(e) => panic!("{text:?} printed from {f:?} does not parse: {e}"),
    }
    let got: Vec<AssetId> = match db.query(project, &text) {
        Ok(set) => set.iter().collect(),
        Err(e) => panic!("query {text:?}: {e}"),
    };
    assert!(got == expected, "{}", explain(truths, f, "query", &got, &expected));
}

// ---- filter templates: numeric thresholds are picked from the data ----

#[derive(Clone, Copy, Debug)]
enum Nudge {
    Exact,
    Up,
    Down,
}

#[derive(Clone, Copy, Debug)]
enum Threshold {
    /// The i-th (modulo) distinct value of the field in the data, maybe nudged one ulp.
    Present(usize, Nudge),
    Fixed(f64),
}

#[derive(Clone, Debug)]
enum Tmpl {
    Fixed(Filter),
    Numeric(NumField, CmpOp, Threshold),
    And(Box<Tmpl>, Box<Tmpl>),
    Or(Box<Tmpl>, Box<Tmpl>),
    Not(Box<Tmpl>),
}

fn leaf() -> impl Strategy<Value = Tmpl> {
    let fixed = |f: Filter| Tmpl::Fixed(f);
    let classes: Vec<(&str, &str)> = CATEGORIES
        .iter()
        .map(|c| ("category", *c))
        .chain(ENTITY_CLASSES.iter().map(|c| ("entities", *c)))
        .collect();
    let threshold = prop_oneof![
        3 => (any::<usize>(), prop::sample::select(vec![Nudge::Exact, Nudge::Up, Nudge::Down]))
            .prop_map(|(i, n)| Threshold::Present(i, n)),
        1 => prop::sample::select(FIXED_THRESHOLDS.to_vec()).prop_map(Threshold::Fixed),
    ];
    prop_oneof![
        2 => prop::sample::select(Status::ALL.to_vec()).prop_map(move |s| fixed(Filter::Status(s))),
        3 => (prop::sample::select(LabelKind::ALL.to_vec()), prop::sample::select(classes)).prop_map(
            move |(kind, (job, class))| fixed(Filter::Class {
                kind,
                job: job.into(),
                class: class.into()
            })
        ),
        1 => prop::sample::select(AUTHOR_QUERIES.to_vec()).prop_map(move |a| fixed(Filter::Author(a.into()))),
        1 => prop::sample::select(MODEL_QUERIES.to_vec()).prop_map(move |m| fixed(Filter::Model(m.into()))),
        1 => prop::sample::select(RULE_QUERIES.to_vec()).prop_map(move |r| fixed(Filter::Rule(r.into()))),
        1 => (prop::sample::select(META_QUERY_KEYS.to_vec()), 0..META_QUERY_VALUES as u8).prop_map(
            move |(key, v)| fixed(Filter::Meta {
                key: key.into(),
                value: meta_value(v)
            })
        ),
        1 => Just(fixed(Filter::Honeypot)),
        1 => Just(fixed(Filter::Deleted)),
        1 => Just(fixed(Filter::All)),
        2 => text_query().prop_map(move |q| fixed(Filter::Text(q))),
        4 => (prop::sample::select(num_fields()), prop::sample::select(OPS.to_vec()), threshold)
            .prop_map(|(field, op, t)| Tmpl::Numeric(field, op, t)),
    ]
}

fn text_query() -> impl Strategy<Value = TextQuery> {
    prop_oneof![
        prop::sample::select(TEXT_TERMS.to_vec()).prop_map(|w| TextQuery::Term(w.into())),
        prop::sample::select(TEXT_PHRASES.to_vec())
            .prop_map(|ws| TextQuery::Phrase(ws.iter().map(|w| w.to_string()).collect())),
        prop::sample::select(TEXT_PREFIXES.to_vec()).prop_map(|p| TextQuery::Prefix(p.into())),
    ]
}

/// Trees of up to 4 levels of `AND`, `OR` and `NOT` over every kind of leaf.
fn tmpl() -> impl Strategy<Value = Tmpl> {
    leaf().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Tmpl::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Tmpl::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Tmpl::Not(Box::new(a))),
        ]
    })
}

/// The neighbour of a finite `x` one ulp up or down (`f64::next_up` and `next_down`
/// are newer than the MSRV).
fn ulp_step(x: f64, up: bool) -> f64 {
    if x == 0.0 {
        let tiny = f64::from_bits(1);
        return if up { tiny } else { -tiny };
    }
    let away_from_zero = (x > 0.0) == up;
    f64::from_bits(if away_from_zero {
        x.to_bits() + 1
    } else {
        x.to_bits() - 1
    })
}

/// The distinct values of a field over the project's assets, ascending.
fn present(truths: &[Truth], field: &NumField) -> Vec<f64> {
    let mut v: Vec<f64> = truths.iter().filter_map(|t| number(t, field)).collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn resolve(t: &Tmpl, truths: &[Truth]) -> Filter {
    match t {
        Tmpl::Fixed(f) => f.clone(),
        Tmpl::Numeric(field, op, threshold) => {
            let value = match *threshold {
                Threshold::Fixed(x) => x,
                Threshold::Present(i, nudge) => {
                    let values = present(truths, field);
                    match values.get(i % values.len().max(1)) {
                        None => 0.5,
                        Some(&x) => match nudge {
                            Nudge::Exact => x,
                            Nudge::Up => ulp_step(x, true),
                            Nudge::Down => ulp_step(x, false),
                        },
                    }
                }
            };
            Filter::Numeric {
                field: field.clone(),
                op: *op,
                value,
            }
        }
        Tmpl::And(a, b) => resolve(a, truths).and(resolve(b, truths)),
        Tmpl::Or(a, b) => resolve(a, truths).or(resolve(b, truths)),
        Tmpl::Not(a) => resolve(a, truths).not(),
    }
}

/// A deterministic list touching every leaf kind, with thresholds at, beside and away
/// from the values in the data.
fn standard_filters(truths: &[Truth]) -> Vec<Filter> {
    let mut v = vec![
        Filter::All,
        Filter::Honeypot,
        Filter::Deleted,
        Filter::Deleted.not(),
        Filter::Honeypot.not(),
    ];
    v.extend(Status::ALL.map(Filter::Status));
    for kind in LabelKind::ALL {
        for (job, classes) in [("category", &CATEGORIES), ("entities", &ENTITY_CLASSES)] {
            for class in classes.iter() {
                v.push(Filter::Class {
                    kind,
                    job: job.into(),
                    class: (*class).into(),
                });
            }
        }
    }
    v.extend(AUTHOR_QUERIES.map(|a| Filter::Author(a.into())));
    v.extend(MODEL_QUERIES.map(|m| Filter::Model(m.into())));
    v.extend(RULE_QUERIES.map(|r| Filter::Rule(r.into())));
    v.extend(TEXT_TERMS.map(|w| Filter::Text(TextQuery::Term(w.into()))));
    v.extend(TEXT_PHRASES.map(|ws| Filter::Text(TextQuery::Phrase(ws.iter().map(|w| w.to_string()).collect()))));
    v.extend(TEXT_PREFIXES.map(|p| Filter::Text(TextQuery::Prefix(p.into()))));
    for key in META_QUERY_KEYS {
        for i in 0..META_QUERY_VALUES as u8 {
            v.push(Filter::Meta {
                key: key.into(),
                value: meta_value(i),
            });
        }
    }
    for field in num_fields() {
        let values = present(truths, &field);
        let mut thresholds = vec![f64::NEG_INFINITY, 0.0, 0.5, 0.7, f64::INFINITY];
        for x in [values.first(), values.get(values.len() / 2), values.last()]
            .into_iter()
            .flatten()
        {
            thresholds.extend([*x, ulp_step(*x, true), ulp_step(*x, false)]);
        }
        for value in thresholds {
            for op in OPS {
                v.push(Filter::Numeric {
                    field: field.clone(),
                    op,
                    value,
                });
            }
        }
    }
    let n = v.len();
    for i in 0..n / 4 {
        let (a, b) = (v[i * 3 % n].clone(), v[(i * 7 + 1) % n].clone());
        v.push(a.clone().and(b.clone().not()));
        v.push(a.or(b).not());
    }
    v
}

fn check_standard(db: &Db) {
    let truths = truths(db, P);
    for f in standard_filters(&truths) {
        check_filter(db, P, &truths, &f);
    }
}

// ---- 1. select and query equal the brute force ----

/// Builds a random data set in a fresh project: initial batches, then edits, then a
/// flush (text search sees the last commit of the text index).
fn build(db: &Db, project: &str, batches: &[Vec<AssetGen>], ops: &[Op]) -> Vec<Truth> {
    let mut written = populate(db, project, batches);
    for op in ops {
        apply(db, &mut written, op);
    }
    db.flush().expect("flush");
    truths(db, project)
}

/// Runs a property with a fresh project per case in one shared database: opening a
/// database costs about as much as a case, and a project's queries never see another
/// project's assets (which also checks that).
fn run_property<S: Strategy>(default_cases: u32, strategy: S, test: impl Fn(&Db, &str, S::Value)) {
    let (_dir, db) = crate::temp_db();
    let case = AtomicUsize::new(0);
    let mut runner = TestRunner::new(config(default_cases));
    let result = runner.run(&strategy, |value| {
        let project = format!("p{}", case.fetch_add(1, Ordering::Relaxed));
        test(&db, &project, value);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn data() -> impl Strategy<Value = (Vec<Vec<AssetGen>>, Vec<Op>)> {
    (
        prop::collection::vec(prop::collection::vec(asset_gen(), 7..=20), 3..=4),
        prop::collection::vec(op(false), 0..60),
    )
}

#[test]
fn select_and_its_query_string_equal_a_brute_force_evaluation_of_primary_data() {
    let strategy = (data(), prop::collection::vec(tmpl(), 6..=10));
    run_property(48, strategy, |db, project, ((batches, ops), tmpls)| {
        let truths = build(db, project, &batches, &ops);
        assert!((20..=80).contains(&truths.len()));
        for t in &tmpls {
            check_filter(db, project, &truths, &resolve(t, &truths));
        }
    });
}

// ---- 2. paging ----

/// The full order of `ids` under `sort`, from primary data.
fn sorted(truths: &[Truth], ids: &[AssetId], sort: Sort) -> Vec<AssetId> {
    let by_id: BTreeMap<AssetId, &Truth> = truths.iter().map(|t| (t.asset.id, t)).collect();
    let score_field = NumField::Score {
        kind: LabelKind::Prediction,
        job: None,
    };
    let priority = |id: &AssetId| by_id[id].asset.priority;
    let score = |id: &AssetId| number(by_id[id], &score_field);
    let mut v = ids.to_vec();
    match sort {
        Sort::Id => v.sort(),
        Sort::Priority => v.sort_by(|a, b| {
            let (pa, pb) = (priority(a), priority(b));
            pb.partial_cmp(&pa).expect("priorities are finite").then(a.cmp(b))
        }),
        Sort::Score => v.sort_by(|a, b| match (score(a), score(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).expect("scores are finite").then(a.cmp(b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.cmp(b),
        }),
    }
    v
}

/// Every page of `set` in `sort` order, `limit` at a time, following the cursors.
fn page_through(db: &Db, project: &str, set: &AssetSet, sort: Sort, limit: usize) -> Vec<AssetId> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = db
            .page(project, set, sort, limit, after.as_deref())
            .unwrap_or_else(|e| panic!("page {sort:?} limit {limit} after {after:?}: {e}"));
        assert!(
            page.ids.len() <= limit,
            "{sort:?}: a page of {} ids with limit {limit}",
            page.ids.len()
        );
        assert!(
            !page.ids.is_empty() || (after.is_none() && set.is_empty()),
            "{sort:?} limit {limit}: an empty page after cursor {after:?}"
        );
        out.extend(page.ids.iter().copied());
        assert!(
            out.len() as u64 <= set.len(),
            "{sort:?} limit {limit}: {} ids from pages of a set of {}: {out:?}",
            out.len(),
            set.len()
        );
        match page.next {
            Some(cursor) => {
                assert_eq!(page.ids.len(), limit, "{sort:?}: a page that is not the last is full");
                after = Some(cursor);
            }
            None => return out,
        }
    }
}

fn check_paging(db: &Db, project: &str, truths: &[Truth], filters: Vec<Filter>, limits: &[usize]) {
    for (f, limit) in filters.into_iter().zip(limits.iter().cycle()) {
        let set = db.select(project, &f).unwrap_or_else(|e| panic!("select {f:?}: {e}"));
        let ids: Vec<AssetId> = set.iter().collect();
        assert_eq!(ids, brute(truths, &f), "select {f:?}");
        for sort in [Sort::Id, Sort::Priority, Sort::Score] {
            let expected = sorted(truths, &ids, sort);
            for limit in [*limit, ids.len().max(1)] {
                let got = page_through(db, project, &set, sort, limit);
                assert!(
                    got == expected,
                    "{sort:?} limit {limit} for {f:?}:\n got      {got:?}\n expected {expected:?}"
                );
            }
        }
    }
}

#[test]
fn paging_in_every_sort_order_yields_the_brute_force_order_without_gaps_or_duplicates() {
    let strategy = (
        data(),
        prop::collection::vec(tmpl(), 1..=3),
        prop::collection::vec(1usize..=6, 1..=4),
    );
    run_property(16, strategy, |db, project, ((batches, ops), tmpls, limits)| {
        let truths = build(db, project, &batches, &ops);
        let filters = std::iter::once(Filter::All)
            .chain(tmpls.iter().map(|t| resolve(t, &truths)))
            .collect();
        check_paging(db, project, &truths, filters, &limits);
    });
}

#[test]
fn a_malformed_or_foreign_cursor_is_invalid_input() -> TestResult {
    let (_dir, db) = crate::temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    for i in 0..5 {
        let mut a = NewAsset::text(format!("a{i}"), "text");
        a.priority = f64::from(i % 2);
        db.add_asset("admin", P, a)?;
    }
    let set = db.select(P, &Filter::All)?;
    let id_cursor = db
        .page(P, &set, Sort::Id, 2, None)?
        .next
        .ok_or("no cursor after the first page")?;
    let priority_cursor = db
        .page(P, &set, Sort::Priority, 2, None)?
        .next
        .ok_or("no cursor after the first page")?;
    // A cursor is good for the order it came from.
    assert_eq!(db.page(P, &set, Sort::Id, 10, Some(&id_cursor))?.ids.len(), 3);
    assert_eq!(
        db.page(P, &set, Sort::Priority, 10, Some(&priority_cursor))?.ids.len(),
        3
    );
    let bad: Vec<(Sort, String)> = vec![
        (Sort::Id, String::new()),
        (Sort::Id, "garbage".into()),
        (Sort::Id, format!("{id_cursor}0")),
        (Sort::Id, id_cursor[..id_cursor.len() - 1].to_string()),
        (Sort::Id, "i".to_string() + &"z".repeat(24)),
        (Sort::Id, "i".to_string() + &"é".repeat(12)),
        (Sort::Priority, id_cursor.clone()),
        (Sort::Score, priority_cursor.clone()),
        (Sort::Id, priority_cursor.clone()),
    ];
    for (sort, cursor) in bad {
        match db.page(P, &set, sort, 2, Some(&cursor)) {
            Err(Error::InvalidInput { .. }) => {}
            other => panic!("{sort:?} cursor {cursor:?}: expected InvalidInput, got {other:?}"),
        }
    }
    Ok(())
}

// ---- 3. facets ----

/// Facet counts from primary data, zero counts left out.
fn brute_facets(truths: &[Truth], set: &AssetSet) -> Facets {
    let mut f = Facets::default();
    for t in truths.iter().filter(|t| set.contains(t.asset.id)) {
        *f.by_status.entry(t.asset.status).or_default() += 1;
        let mut classes = BTreeSet::new();
        for l in latest(t, LabelKind::Annotation) {
            for (job, answer) in &l.answers {
                let names: Vec<&str> = match answer {
                    Answer::Classes(c) => c.iter().map(String::as_str).collect(),
                    Answer::Spans(s) => s.iter().map(|s| s.class.as_str()).collect(),
                    Answer::Boxes(b) => b.iter().map(|b| b.class.as_str()).collect(),
                };
                classes.extend(names.into_iter().map(|c| (job.clone(), c.to_string())));
            }
        }
        for (job, class) in classes {
            *f.by_class.entry(job).or_default().entry(class).or_default() += 1;
        }
        let authors: BTreeSet<&str> = t.history.iter().filter_map(is_annotator).collect();
        for a in authors {
            *f.by_author.entry(a.to_string()).or_default() += 1;
        }
    }
    f
}

fn without_zeros(mut f: Facets) -> Facets {
    f.by_status.retain(|_, n| *n > 0);
    for classes in f.by_class.values_mut() {
        classes.retain(|_, n| *n > 0);
    }
    f.by_class.retain(|_, c| !c.is_empty());
    f.by_author.retain(|_, n| *n > 0);
    f
}

#[test]
fn facets_equal_brute_force_counts_over_the_result_set() {
    let strategy = (data(), prop::collection::vec(tmpl(), 2..=5));
    run_property(16, strategy, |db, project, ((batches, ops), tmpls)| {
        let truths = build(db, project, &batches, &ops);
        let filters = [Filter::All, Filter::Deleted.not()]
            .into_iter()
            .chain(tmpls.iter().map(|t| resolve(t, &truths)));
        for f in filters {
            let set = db.select(project, &f).unwrap_or_else(|e| panic!("select {f:?}: {e}"));
            let got = db.facets(project, &set).unwrap_or_else(|e| panic!("facets {f:?}: {e}"));
            let expected = brute_facets(&truths, &set);
            assert_eq!(without_zeros(got), expected, "facets of {f:?} ({} assets)", set.len());
        }
    });
}

// ---- 4. errors through Db::query ----

#[test]
fn parse_errors_through_query_give_the_byte_position_and_what_was_expected() -> TestResult {
    let (_dir, db) = crate::temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    let end = "end of query";
    let cases: [(&str, usize, &str, &str); 5] = [
        (
            "status:",
            7,
            "a status (todo, ongoing, labeled, to_review, reviewed)",
            end,
        ),
        (
            "priority:5",
            8,
            "a comparison operator (`<`, `<=`, `>`, `>=`, `=`)",
            "`:`",
        ),
        // Byte offsets, not characters: `été` is 5 bytes.
        ("été AND", 9, "a filter", end),
        ("label.category:invoice AND (author:alice", 40, "`)`", end),
        ("status:todo)", 11, end, "`)`"),
    ];
    for (q, pos, expected, found) in cases {
        match db.query(P, q) {
            Err(Error::Query {
                pos: p,
                expected: e,
                found: f,
            }) => {
                assert_eq!((p, e.as_str(), f.as_str()), (pos, expected, found), "query {q:?}");
            }
            other => panic!("{q:?}: expected a query error, got {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn a_class_or_job_outside_the_schema_is_invalid_input() -> TestResult {
    let (_dir, db) = crate::temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    db.add_asset("admin", P, NewAsset::text("a", "text"))?;
    for q in [
        "label.category:nope",
        "prediction.nojob:invoice",
        "review.entities:invoice",
    ] {
        match db.query(P, q) {
            Err(Error::InvalidInput { .. }) => {}
            other => panic!("{q:?}: expected InvalidInput, got {other:?}"),
        }
    }
    match db.query("nope", "*") {
        Err(Error::UnknownProject(p)) => assert_eq!(p, "nope"),
        other => panic!("unknown project: got {other:?}"),
    }
    Ok(())
}

/// Text assets for the text-search tests: lower-case ASCII words, so that any sensible
/// tokenizer agrees on them. Asset 5 is soft-deleted.
const SEARCH_TEXTS: [&str; 6] = [
    "foo bar baz",
    "food bar",
    "bar foo",
    "Foo Bar",
    "nothing here",
    "foo bar",
];

fn search_db() -> Result<(tempfile::TempDir, Db, Vec<AssetId>), Box<dyn std::error::Error>> {
    let (dir, db) = crate::temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    let news = SEARCH_TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| NewAsset::text(format!("s{i}"), *t))
        .collect();
    let ids = db.add_assets("admin", P, news)?.added;
    db.delete_asset("admin", ids[5])?;
    // Text search sees the last commit of the text index; a flush commits it.
    db.flush()?;
    Ok((dir, db, ids))
}

fn query_ids(db: &Db, q: &str) -> Vec<AssetId> {
    match db.query(P, q) {
        Ok(set) => set.iter().collect(),
        Err(e) => panic!("{q:?}: {e}"),
    }
}

#[test]
fn text_queries_match_words_phrases_and_prefixes_of_live_assets() -> TestResult {
    let (_dir, db, ids) = search_db()?;
    let at = |is: &[usize]| is.iter().map(|i| ids[*i]).collect::<Vec<_>>();
    let cases: [(&str, &[usize]); 10] = [
        ("text:foo", &[0, 2, 3]),
        ("foo", &[0, 2, 3]),
        ("FOO", &[0, 2, 3]),
        ("text:\"foo bar\"", &[0, 3]),
        ("\"bar foo\"", &[2]),
        ("fo*", &[0, 1, 2, 3]),
        ("text:food", &[1]),
        ("text:foo AND NOT text:baz", &[2, 3]),
        ("status:todo AND (text:baz OR text:here)", &[0, 4]),
        ("text:absent", &[]),
    ];
    for (q, expected) in cases {
        assert_eq!(query_ids(&db, q), at(expected), "{q}");
    }
    // Restored, the deleted asset is found again.
    db.restore_asset("admin", ids[5])?;
    db.flush()?;
    assert_eq!(query_ids(&db, "text:\"foo bar\""), at(&[0, 3, 5]));
    Ok(())
}

#[test]
fn soft_deleted_assets_are_not_in_the_text_index() -> TestResult {
    let (_dir, db, ids) = search_db()?;
    // docs/query.md: `deleted` reaches soft-deleted assets, but the text index does not
    // hold them, so no text filter matches one (asset 5 is "foo bar").
    assert_eq!(query_ids(&db, "deleted"), vec![ids[5]]);
    assert_eq!(query_ids(&db, "deleted AND text:foo"), vec![]);
    assert_eq!(query_ids(&db, "deleted AND text:bar*"), vec![]);
    Ok(())
}

// ---- 5. indexes equal a rebuild ----

fn run_with_reopens(batches: &[Vec<AssetGen>], ops: &[Op], tmpls: &[Tmpl]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let mut db = Db::open(&path).expect("open");
    let mut written = populate(&db, P, batches);
    let check = |db: &Db, step: &str| {
        let report = db.verify().unwrap_or_else(|e| panic!("{step}: verify: {e}"));
        assert!(report.is_clean(), "{step}: verify: {:?}", report.problems);
        let truths = truths(db, P);
        for t in tmpls {
            check_filter(db, P, &truths, &resolve(t, &truths));
        }
    };
    for (i, op) in ops.iter().enumerate() {
        if let Op::Reopen = op {
            drop(db);
            db = crate::reopen(&path).unwrap_or_else(|e| panic!("step {i}: reopen: {e}"));
            let info = db.index_info();
            // A clean close checkpoints the indexes: the next open loads them as they were.
            assert_eq!(info.rebuilt, None, "step {i}: {info:?}");
            assert_eq!(
                (info.checkpoint_seq, info.replayed_events),
                (db.last_seq(), 0),
                "step {i}: {info:?}"
            );
            check(&db, &format!("step {i} reopen"));
        } else {
            apply(&db, &mut written, op);
        }
    }
    db.flush().expect("flush");
    check(&db, "end");
    assert_eq!(
        db.repair_indexes().expect("repair"),
        0,
        "the indexes differ from a rebuild"
    );
}

proptest! {
    #![proptest_config(config(12))]

    #[test]
    fn indexes_equal_a_rebuild_after_random_operations_and_reopens(
        batches in prop::collection::vec(prop::collection::vec(asset_gen(), 3..=10), 1..=3),
        ops in prop::collection::vec(op(true), 1..=50),
        tmpls in prop::collection::vec(tmpl(), 3..=6),
    ) {
        run_with_reopens(&batches, &ops, &tmpls);
    }
}

/// A fixed data set drawn from the same generators (deterministic seed).
fn fixed_data() -> (Vec<Vec<AssetGen>>, Vec<Op>) {
    let mut runner = TestRunner::deterministic();
    let batches = prop::collection::vec(prop::collection::vec(asset_gen(), 10), 3);
    let ops = prop::collection::vec(op(false), 60);
    let batches = batches.new_tree(&mut runner).expect("generate assets").current();
    let ops = ops.new_tree(&mut runner).expect("generate operations").current();
    (batches, ops)
}

fn populate_fixed(db: &Db) -> Written {
    let (batches, ops) = fixed_data();
    let mut written = populate(db, P, &batches);
    for op in &ops {
        apply(db, &mut written, op);
    }
    db.flush().expect("flush");
    written
}

#[test]
fn a_damaged_index_checkpoint_is_rebuilt_on_open_and_queries_stay_right() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    {
        let db = Db::open(&path)?;
        populate_fixed(&db);
        db.flush()?;
        db.damage_record(RecordRef::IndexCheckpoint, b"garbage")?;
        // Dropping flushes, but the indexes did not move since the checkpoint, so it is
        // not rewritten: the damage stays on disk.
    }
    let db = crate::reopen(&path)?;
    let info = db.index_info();
    assert!(info.rebuilt.is_some(), "a damaged checkpoint was loaded: {info:?}");
    check_standard(&db);
    assert_eq!(db.repair_indexes()?, 0, "the rebuilt indexes differ from a rebuild");
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    // Writes after the rebuild keep the indexes right.
    let id = db.asset_ids(P)?[0];
    db.restore_asset("admin", id)?;
    db.set_priority("admin", id, 42.0)?;
    db.set_honeypot("admin", id, true)?;
    check_standard(&db);
    Ok(())
}

#[test]
fn a_rebuilt_index_is_checkpointed_at_close_so_the_next_open_loads_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    {
        let db = Db::open(&path)?;
        populate_fixed(&db);
        db.flush()?;
        db.damage_record(RecordRef::IndexCheckpoint, b"garbage")?;
    }
    let db = crate::reopen(&path)?;
    assert!(db.index_info().rebuilt.is_some(), "{:?}", db.index_info());
    drop(db);
    let db = crate::reopen(&path)?;
    let info = db.index_info();
    assert_eq!(info.rebuilt, None, "the second open rebuilt again: {info:?}");
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    check_standard(&db);
    Ok(())
}

/// The file where the child records the last seq it flushed.
fn flushed_marker(db_path: &Path) -> PathBuf {
    db_path.with_extension("flushed")
}

/// Runs the crash child's `query-writer` scenario (label and state writes on project
/// `p`, src/bin/labeldb-crash-child.rs) on the database at `path` and SIGKILLs it `delay`
/// after its first flush. Returns the last seq it reported flushed.
fn write_and_get_killed(path: &Path, delay: Duration) -> Result<u64, Box<dyn std::error::Error>> {
    let marker = flushed_marker(path);
    let _ = std::fs::remove_file(&marker);
    kill_child(
        &["query-writer".as_ref(), path.as_os_str(), marker.as_os_str()],
        &marker,
        delay,
    )?;
    Ok(std::fs::read_to_string(&marker)?.trim().parse()?)
}

#[test]
fn a_writer_killed_mid_stream_leaves_indexes_equal_to_a_rebuild() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    {
        let db = Db::open(&path)?;
        populate_fixed(&db);
        db.flush()?;
    }
    // Killed soon after a flush, and after sled's background flush (every 500 ms) has
    // made writes durable that no index checkpoint covers: the next open replays them.
    for delay in [300, 900] {
        let flushed = write_and_get_killed(&path, Duration::from_millis(delay))?;
        let db = crate::reopen(&path)?;
        let info = db.index_info();
        assert!(
            db.last_seq() >= flushed,
            "flushed writes were lost: seq {} < {flushed}",
            db.last_seq()
        );
        let report = db.verify()?;
        assert!(
            report.is_clean(),
            "killed after {delay} ms: {:?} after {info:?}",
            report.problems
        );
        check_standard(&db);
    }
    // The recovered database goes on: one more write, a clean close, a clean open.
    let db = crate::reopen(&path)?;
    let id = db.asset_ids(P)?[1];
    db.restore_asset("admin", id)?;
    db.set_priority("admin", id, -7.0)?;
    drop(db);
    let db = crate::reopen(&path)?;
    assert_eq!(db.index_info().rebuilt, None, "{:?}", db.index_info());
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    check_standard(&db);
    Ok(())
}

// ---- edge cases of the numeric and metadata filters ----

#[test]
fn a_nan_threshold_matches_no_asset() -> TestResult {
    // No comparison with NaN holds (`CmpOp::holds`), so the filter matches nothing (or
    // is refused); NaN has no syntax, only the Rust API builds it.
    let (_dir, db) = crate::temp_db();
    populate_fixed(&db);
    let mut wrong = Vec::new();
    for field in num_fields() {
        for op in OPS {
            for value in [f64::NAN, -f64::NAN] {
                let f = Filter::Numeric {
                    field: field.clone(),
                    op,
                    value,
                };
                match db.select(P, &f) {
                    Ok(set) if !set.is_empty() => wrong.push(format!("{f:?} matched {} assets", set.len())),
                    Ok(_) | Err(Error::InvalidInput { .. }) => {}
                    Err(e) => panic!("{f:?}: {e}"),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

#[test]
fn a_metadata_filter_matches_a_number_by_its_shortest_decimal_text() -> TestResult {
    let (_dir, db) = crate::temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    let add = |ext: &str, v: MetaValue| db.add_asset("admin", P, NewAsset::text(ext, "x").with_meta("n", v));
    let num = add("num", MetaValue::Num(1.5))?;
    let text = add("str", MetaValue::Str("1.5".into()))?;
    let two = add("two", MetaValue::Num(2.0))?;
    let long = add("long", MetaValue::Str("1.50".into()))?;
    let ids = |q: &str| query_ids(&db, q);
    assert_eq!(ids("meta.n:1.5"), vec![num, text]);
    assert_eq!(ids("meta.n:\"1.5\""), vec![num, text]);
    assert_eq!(ids("meta.n:2"), vec![two]);
    assert_eq!(ids("meta.n:1.50"), vec![long], "1.50 is not the shortest text of 1.5");
    assert_eq!(ids("meta.n:2.0"), vec![], "2.0 is not the shortest text of 2");
    // A number in a filter built in Rust compares the same way.
    let f = Filter::Meta {
        key: "n".into(),
        value: MetaValue::Num(1.5),
    };
    assert_eq!(db.select(P, &f)?.iter().collect::<Vec<_>>(), vec![num, text], "{f:?}");
    Ok(())
}

#[test]
fn a_model_filter_without_version_matches_only_that_model_name() -> TestResult {
    let (_dir, db) = crate::temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    let plain = db.add_asset("admin", P, NewAsset::text("a", "x"))?;
    let at_sign = db.add_asset("admin", P, NewAsset::text("b", "x"))?;
    db.add_label(
        plain,
        NewLabel::prediction("m", "2").answer("category", Answer::class("order")),
    )?;
    // A model whose name contains `@` is accepted (`Source::model` splits at the last `@`).
    let source = Source::model("m@x@1")?;
    db.add_label(
        at_sign,
        NewLabel::new(LabelKind::Prediction, source).answer("category", Answer::class("order")),
    )?;
    assert_eq!(db.query(P, "model:m")?.iter().collect::<Vec<_>>(), vec![plain]);
    assert_eq!(db.query(P, "model:m@2")?.iter().collect::<Vec<_>>(), vec![plain]);
    assert_eq!(db.query(P, "model:\"m@x\"")?.iter().collect::<Vec<_>>(), vec![at_sign]);
    assert_eq!(
        db.query(P, "model:\"m@x@1\"")?.iter().collect::<Vec<_>>(),
        vec![at_sign]
    );
    Ok(())
}

// ---- 6. WNUT-17 ----

const WNUT_CLASSES: [&str; 6] = ["person", "location", "corporation", "product", "creative-work", "group"];

/// Sentences, entities, and per class the sentences with at least one entity of it,
/// counted from the file: a blank or whitespace-only line ends a sentence; `B-x`, or
/// `I-x` after `O` or another class, starts an entity.
fn count_wnut(text: &str) -> (u64, u64, BTreeMap<String, u64>) {
    let (mut sentences, mut entities) = (0u64, 0u64);
    let mut per_class: BTreeMap<String, u64> = BTreeMap::new();
    let mut in_sentence = false;
    let mut classes: BTreeSet<String> = BTreeSet::new();
    let mut previous: Option<String> = None;
    let mut end_sentence = |in_sentence: &mut bool, classes: &mut BTreeSet<String>| {
        if *in_sentence {
            sentences += 1;
            for c in std::mem::take(classes) {
                *per_class.entry(c).or_default() += 1;
            }
        }
        *in_sentence = false;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            end_sentence(&mut in_sentence, &mut classes);
            previous = None;
            continue;
        }
        in_sentence = true;
        let tag = line.split_whitespace().last().unwrap_or_default();
        let (starts, class) = match tag.split_once('-') {
            Some(("B", c)) => (true, Some(c)),
            Some(("I", c)) => (previous.as_deref() != Some(c), Some(c)),
            _ => (false, None),
        };
        if starts {
            entities += 1;
            classes.insert(class.unwrap_or_default().to_string());
        }
        previous = class.map(str::to_string);
    }
    end_sentence(&mut in_sentence, &mut classes);
    (sentences, entities, per_class)
}

#[test]
fn wnut17_class_counts_equal_sentences_with_an_entity_of_that_class() -> TestResult {
    let file = data_dir().join("wnut17/wnut17train.conll");
    let text = std::fs::read_to_string(&file)?;
    let (sentences, entities, per_class) = count_wnut(&text);
    // The counts SOURCE.md gives, so that the counter above is itself checked.
    assert_eq!((sentences, entities), (3394, 1975));

    let (_dir, db) = crate::temp_db();
    let classes = WNUT_CLASSES.map(|c| format!("{c:?}")).join(", ");
    let wnut_schema = format!(r#"{{"jobs": [{{"name": "entities", "kind": "spans", "classes": [{classes}]}}]}}"#);
    db.create_project("admin", "wnut", schema(&wnut_schema))?;
    let mut options = ImportOptions::new(Format::Conll);
    options.job = Some("entities".into());
    let report = db.import_file("admin", "wnut", &file, &options, |_| {})?;
    assert_eq!(report.imported, sentences);
    assert_eq!(db.query("wnut", "*")?.len(), sentences);
    assert_eq!(db.query("wnut", "author:gold")?.len(), sentences);
    for class in WNUT_CLASSES {
        let expected = per_class.get(class).copied().unwrap_or(0);
        assert!(expected > 0, "no sentence has a {class}");
        assert_eq!(
            db.query("wnut", &format!("label.entities:{class}"))?.len(),
            expected,
            "{class}"
        );
    }
    let any = WNUT_CLASSES.map(|c| format!("label.entities:{c}")).join(" OR ");
    let with_entities = db.query("wnut", &any)?.len();
    let none = db.query("wnut", &format!("NOT ({any})"))?.len();
    assert_eq!(with_entities + none, sentences);
    Ok(())
}
