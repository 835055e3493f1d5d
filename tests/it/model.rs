//! Model-based test: random operation sequences (including invalid writes and reopening
//! the database) applied both to a real `Db` and to a plain in-memory model, compared
//! after every step.
//!
//! `LABELDB_PROPTEST_CASES` raises the number of cases (default 64).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use labeldb::{
    Action, Answer, Asset, AssetId, BBox, Content, Db, Error, Label, LabelId, LabelKind, MetaValue, NewAsset, NewLabel,
    ProjectId, Source, Span, Status, Verdict,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use crate::{schema, LEGAL};

const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["a", "b", "c"]},
    {"name": "tags", "kind": "multi-classification", "classes": ["x", "y"]},
    {"name": "entities", "kind": "spans", "classes": ["x", "y"]},
    {"name": "objects", "kind": "boxes", "classes": ["x", "y"]}
]}"#;
const PROJECTS: [&str; 2] = ["p0", "p1"];
const TEXTS: [&str; 3] = ["plain text here", "café ☕ 3 boxes 😀", "東京で寿司 🍣 Zoë"];
const HUMANS: [&str; 3] = ["alice", "bob", "carol"];
const ACTORS: [&str; 9] = [
    "admin",
    "loader",
    "rita",
    "alice",
    "bob",
    "carol",
    "model:clf@1",
    "model:clf@2",
    "rule:dict@1",
];

// ---- operations ----

#[derive(Clone, Debug)]
enum Op {
    CreateProject(u8),
    AddAssets { project: u8, assets: Vec<AssetGen> },
    AddLabel { asset: u16, label: LabelGen },
    SetStatus { asset: u16, to: Status },
    SetMeta { asset: u16, key: u8, value: MetaGen },
    SetPriority { asset: u16, priority: PriorityGen },
    SetHoneypot { asset: u16, on: bool },
    Delete(u16),
    Restore(u16),
    Reopen,
}

#[derive(Clone, Debug)]
struct AssetGen {
    ext: u8,
    image: bool,
    text: u8,
    size: (u16, u16),
    status: Option<Status>,
    priority: i8,
    meta: Option<(u8, MetaGen)>,
    labels: Vec<LabelGen>,
    defect: Option<AssetDefect>,
}

#[derive(Clone, Copy, Debug)]
enum AssetDefect {
    EmptyId,
    NanPriority,
    BadMetaKey,
    BadLabel,
}

#[derive(Clone, Debug)]
struct LabelGen {
    kind: u8,
    who: u8,
    body: [u16; 8],
    parent: ParentGen,
    derived: DerivedGen,
    defect: Option<LabelDefect>,
    seconds: u8,
}

#[derive(Clone, Copy, Debug)]
enum ParentGen {
    None,
    Latest,
    Stale(u16),
}

#[derive(Clone, Copy, Debug)]
enum DerivedGen {
    None,
    Own(u16),
    Foreign(u8),
}

#[derive(Clone, Copy, Debug)]
enum LabelDefect {
    UnknownJob,
    UnknownClass,
    SpanPastEnd,
    BadBox,
    WrongShape,
    ScoreOutOfRange,
    AnnotationFromModel,
    VerdictOnNonReview,
}

#[derive(Clone, Copy, Debug)]
enum MetaGen {
    Remove,
    Str(u8),
    Num(i16),
    Bool(bool),
    Nan,
}

#[derive(Clone, Copy, Debug)]
enum PriorityGen {
    Finite(i8),
    Nan,
    Inf,
}

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL.to_vec())
}

fn meta_gen() -> impl Strategy<Value = MetaGen> {
    prop_oneof![
        1 => Just(MetaGen::Remove),
        2 => any::<u8>().prop_map(MetaGen::Str),
        2 => any::<i16>().prop_map(MetaGen::Num),
        1 => any::<bool>().prop_map(MetaGen::Bool),
        1 => Just(MetaGen::Nan),
    ]
}

fn label_gen() -> impl Strategy<Value = LabelGen> {
    let parent = prop_oneof![
        3 => Just(ParentGen::None),
        2 => Just(ParentGen::Latest),
        1 => any::<u16>().prop_map(ParentGen::Stale),
    ];
    let derived = prop_oneof![
        3 => Just(DerivedGen::None),
        1 => any::<u16>().prop_map(DerivedGen::Own),
        1 => any::<u8>().prop_map(DerivedGen::Foreign),
    ];
    let defect = prop::sample::select(vec![
        LabelDefect::UnknownJob,
        LabelDefect::UnknownClass,
        LabelDefect::SpanPastEnd,
        LabelDefect::BadBox,
        LabelDefect::WrongShape,
        LabelDefect::ScoreOutOfRange,
        LabelDefect::AnnotationFromModel,
        LabelDefect::VerdictOnNonReview,
    ]);
    (
        any::<u8>(),
        any::<u8>(),
        prop::array::uniform8(any::<u16>()),
        parent,
        derived,
        prop::option::weighted(0.2, defect),
        any::<u8>(),
    )
        .prop_map(|(kind, who, body, parent, derived, defect, seconds)| LabelGen {
            kind,
            who,
            body,
            parent,
            derived,
            defect,
            seconds,
        })
}

fn asset_gen() -> impl Strategy<Value = AssetGen> {
    let defect = prop::sample::select(vec![
        AssetDefect::EmptyId,
        AssetDefect::NanPriority,
        AssetDefect::BadMetaKey,
        AssetDefect::BadLabel,
    ]);
    (
        any::<u8>(),
        any::<bool>(),
        any::<u8>(),
        any::<(u16, u16)>(),
        prop::option::of(status()),
        any::<i8>(),
        prop::option::of((any::<u8>(), meta_gen())),
        prop::collection::vec(label_gen(), 0..3),
        prop::option::weighted(0.1, defect),
    )
        .prop_map(
            |(ext, image, text, size, status, priority, meta, labels, defect)| AssetGen {
                ext,
                image,
                text,
                size,
                status,
                priority,
                meta,
                labels,
                defect,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let priority = prop_oneof![
        6 => any::<i8>().prop_map(PriorityGen::Finite),
        1 => Just(PriorityGen::Nan),
        1 => Just(PriorityGen::Inf),
    ];
    prop_oneof![
        1 => any::<u8>().prop_map(Op::CreateProject),
        3 => (any::<u8>(), prop::collection::vec(asset_gen(), 0..4))
            .prop_map(|(project, assets)| Op::AddAssets { project, assets }),
        6 => (any::<u16>(), label_gen()).prop_map(|(asset, label)| Op::AddLabel { asset, label }),
        3 => (any::<u16>(), status()).prop_map(|(asset, to)| Op::SetStatus { asset, to }),
        2 => (any::<u16>(), any::<u8>(), meta_gen()).prop_map(|(asset, key, value)| Op::SetMeta { asset, key, value }),
        1 => (any::<u16>(), priority).prop_map(|(asset, priority)| Op::SetPriority { asset, priority }),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(asset, on)| Op::SetHoneypot { asset, on }),
        1 => any::<u16>().prop_map(Op::Delete),
        1 => any::<u16>().prop_map(Op::Restore),
        1 => Just(Op::Reopen),
    ]
}

// ---- expected outcomes ----

/// An error as the model predicts it: the variant and the fields that name what failed.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    UnknownProject(String),
    ProjectExists(String),
    UnknownAsset(AssetId),
    UnknownJob {
        asset: String,
        job: String,
    },
    UnknownClass {
        asset: String,
        job: String,
        class: String,
    },
    InvalidAnswer {
        asset: String,
        job: String,
        class: Option<String>,
    },
    IllegalTransition {
        asset: String,
        from: Status,
        to: Status,
    },
    AssetDeleted(String),
    Conflict {
        asset: String,
        expected: Option<u64>,
        actual: Option<u64>,
    },
    DuplicateExternalId(String),
    InvalidInput(String),
}

fn observed(e: Error) -> Expect {
    match e {
        Error::UnknownProject(p) => Expect::UnknownProject(p),
        Error::ProjectExists(p) => Expect::ProjectExists(p),
        Error::UnknownAsset(a) => Expect::UnknownAsset(a),
        Error::UnknownJob { asset, job } => Expect::UnknownJob { asset, job },
        Error::UnknownClass { asset, job, class } => Expect::UnknownClass { asset, job, class },
        Error::InvalidAnswer { asset, job, class, .. } => Expect::InvalidAnswer { asset, job, class },
        Error::IllegalTransition { asset, from, to } => Expect::IllegalTransition { asset, from, to },
        Error::AssetDeleted(a) => Expect::AssetDeleted(a),
        Error::Conflict {
            asset,
            expected,
            actual,
            ..
        } => Expect::Conflict {
            asset,
            expected: expected.map(|l| l.0),
            actual: actual.map(|l| l.0),
        },
        Error::DuplicateExternalId(x) => Expect::DuplicateExternalId(x),
        Error::InvalidInput { what, .. } => Expect::InvalidInput(what),
        other => panic!("an error the model never expects: {other:?}"),
    }
}

// ---- the model ----

struct MProject {
    name: String,
    id: ProjectId,
    consensus: usize,
}

#[derive(Default)]
struct Model {
    projects: Vec<MProject>,
    next_project: u32,
    next_asset: u32,
    /// Assets as they must read, `created_at` aside, with their history.
    assets: BTreeMap<AssetId, (Asset, Vec<Label>)>,
    /// The event log: `events[seq - 1]` is `(actor, action)`.
    events: Vec<(String, Action)>,
    /// Seqs of the events about each asset, starting with the one that created it.
    asset_events: BTreeMap<AssetId, Vec<u64>>,
}

fn actor_of(source: &Source) -> String {
    match source {
        Source::Human { user } => user.clone(),
        Source::Model { name, version } => format!("model:{name}@{version}"),
        Source::Rule { name, version } => format!("rule:{name}@{version}"),
    }
}

fn machine(who: u8) -> Source {
    match who % 3 {
        0 => Source::Model {
            name: "clf".into(),
            version: "1".into(),
        },
        1 => Source::Model {
            name: "clf".into(),
            version: "2".into(),
        },
        _ => Source::Rule {
            name: "dict".into(),
            version: "1".into(),
        },
    }
}

/// Byte offsets of code points `[from, to)` of `text`.
fn bytes_of(text: &str, from: usize, to: usize) -> (u32, u32) {
    let offsets: Vec<usize> = text.char_indices().map(|(b, _)| b).chain([text.len()]).collect();
    (offsets[from] as u32, offsets[to] as u32)
}

/// Builds a label for an asset with `content`; the error it must cause, if it is defective.
fn realize_label(g: &LabelGen, ext: &str, content: &Content) -> (NewLabel, Option<Expect>) {
    let b = g.body;
    let (kind, source) = match g.kind % 4 {
        0 => (LabelKind::Annotation, Source::human(HUMANS[g.who as usize % 3])),
        1 => (LabelKind::Prediction, machine(g.who)),
        2 => (LabelKind::Inference, machine(g.who)),
        _ => (LabelKind::Review, Source::human(HUMANS[g.who as usize % 3])),
    };
    let mut label = NewLabel::new(kind, source);
    label.seconds = f32::from(g.seconds) / 4.0;
    if kind == LabelKind::Review {
        label.verdict = Some(if b[0] & 4 == 0 {
            Verdict::Accept
        } else {
            Verdict::Reject
        });
    }
    let abc = ["a", "b", "c"];
    if b[0] & 1 != 0 {
        label
            .answers
            .insert("category".into(), Answer::class(abc[b[1] as usize % 3]));
    }
    if b[0] & 8 != 0 {
        let tags: Vec<String> = ["x", "y"]
            .iter()
            .enumerate()
            .filter(|(i, _)| b[1] & (1 << i) != 0)
            .map(|(_, t)| t.to_string())
            .collect();
        label.answers.insert("tags".into(), Answer::Classes(tags));
    }
    if b[0] & 2 != 0 {
        let count = b[2] as usize % 3;
        match content {
            Content::Text(text) => {
                let n = text.chars().count();
                let spans = (0..count)
                    .map(|k| {
                        let start = b[3 + 2 * k] as usize % n;
                        let end = start + 1 + b[4 + 2 * k] as usize % (n - start);
                        let (s, e) = bytes_of(text, start, end);
                        Span {
                            start: s,
                            end: e,
                            class: ["x", "y"][k % 2].into(),
                            score: None,
                        }
                    })
                    .collect();
                label.answers.insert("entities".into(), Answer::Spans(spans));
            }
            Content::Image { width, height, .. } => {
                let boxes = (0..count)
                    .map(|k| {
                        let x = u32::from(b[3 + 2 * k]) % width;
                        let y = u32::from(b[4 + 2 * k]) % height;
                        let w = 1 + u32::from(b[5]) % (width - x);
                        let h = 1 + u32::from(b[6]) % (height - y);
                        let score = (k == 1).then_some(0.25);
                        BBox {
                            x: x as f32,
                            y: y as f32,
                            w: w as f32,
                            h: h as f32,
                            class: ["x", "y"][k % 2].into(),
                            score,
                        }
                    })
                    .collect();
                label.answers.insert("objects".into(), Answer::Boxes(boxes));
            }
        }
    }
    if matches!(kind, LabelKind::Prediction | LabelKind::Inference) && b[0] & 16 != 0 {
        label = label.score("category", abc[b[7] as usize % 3], f32::from(b[7] % 101) / 100.0);
    }
    let asset = ext.to_string();
    let expect = g.defect.map(|d| match d {
        LabelDefect::UnknownJob => {
            label.answers.insert("colour".into(), Answer::class("red"));
            Expect::UnknownJob {
                asset,
                job: "colour".into(),
            }
        }
        LabelDefect::UnknownClass => {
            label.answers.insert("category".into(), Answer::class("zzz"));
            Expect::UnknownClass {
                asset,
                job: "category".into(),
                class: "zzz".into(),
            }
        }
        LabelDefect::SpanPastEnd => {
            let end = content.text().map_or(1, |t| t.len() as u32 + 1);
            let span = Span {
                start: 0,
                end,
                class: "x".into(),
                score: None,
            };
            label.answers.insert("entities".into(), Answer::Spans(vec![span]));
            let class = content.text().map(|_| "x".to_string());
            Expect::InvalidAnswer {
                asset,
                job: "entities".into(),
                class,
            }
        }
        LabelDefect::BadBox => {
            let bad = BBox {
                x: 0.0,
                y: 0.0,
                w: 0.0,
                h: 1.0,
                class: "y".into(),
                score: None,
            };
            label.answers.insert("objects".into(), Answer::Boxes(vec![bad]));
            let class = content.text().is_none().then(|| "y".to_string());
            Expect::InvalidAnswer {
                asset,
                job: "objects".into(),
                class,
            }
        }
        LabelDefect::WrongShape => {
            label.answers.insert("category".into(), Answer::Spans(vec![]));
            Expect::InvalidAnswer {
                asset,
                job: "category".into(),
                class: None,
            }
        }
        LabelDefect::ScoreOutOfRange => {
            label
                .scores
                .entry("category".into())
                .or_default()
                .insert("a".into(), 1.5);
            Expect::InvalidAnswer {
                asset,
                job: "category".into(),
                class: Some("a".into()),
            }
        }
        LabelDefect::AnnotationFromModel => {
            label.kind = LabelKind::Annotation;
            label.source = machine(g.who);
            label.verdict = None;
            Expect::InvalidInput("label".into())
        }
        LabelDefect::VerdictOnNonReview => {
            label.kind = LabelKind::Prediction;
            label.source = machine(g.who);
            label.verdict = Some(Verdict::Accept);
            Expect::InvalidInput("verdict".into())
        }
    });
    (label, expect)
}

/// The status after a human annotation, per the docs on `Status`: a `TODO` or `ONGOING`
/// asset becomes `LABELED` once it has `consensus` distinct human annotators, else
/// `ONGOING`; other statuses stay.
fn status_after(current: Status, annotators: usize, consensus: usize) -> Status {
    match current {
        Status::Todo | Status::Ongoing if annotators == 0 => current,
        Status::Todo | Status::Ongoing if annotators >= consensus.max(1) => Status::Labeled,
        Status::Todo | Status::Ongoing => Status::Ongoing,
        other => other,
    }
}

fn stored(id: LabelId, new: &NewLabel, parent: Option<LabelId>) -> Label {
    Label {
        id,
        kind: new.kind,
        source: new.source.clone(),
        parent,
        derived_from: new.derived_from,
        answers: new.answers.clone(),
        scores: new.scores.clone(),
        verdict: new.verdict,
        created_at: 0,
        seconds: new.seconds,
    }
}

impl Model {
    fn emit(&mut self, actor: &str, action: Action, asset: Option<AssetId>) -> u64 {
        self.events.push((actor.to_string(), action));
        let seq = self.events.len() as u64;
        if let Some(a) = asset {
            self.asset_events.entry(a).or_default().push(seq);
        }
        seq
    }

    fn project(&self, name: &str) -> Option<&MProject> {
        self.projects.iter().find(|p| p.name == name)
    }

    fn consensus_of(&self, asset: &Asset) -> usize {
        self.projects
            .iter()
            .find(|p| p.id == asset.project)
            .map_or(1, |p| p.consensus)
    }

    /// The asset an operation addresses: an existing one, or now and then an unknown id.
    fn pick(&self, n: u16) -> AssetId {
        if self.assets.is_empty() || n % 32 == 31 {
            return AssetId(self.next_asset + 7);
        }
        *self
            .assets
            .keys()
            .nth(n as usize % self.assets.len())
            .expect("in range")
    }

    /// A live asset, or the error a write to it must give.
    fn live(&self, id: AssetId) -> Result<&Asset, Expect> {
        let (a, _) = self.assets.get(&id).ok_or(Expect::UnknownAsset(id))?;
        if a.deleted {
            return Err(Expect::AssetDeleted(a.external_id.clone()));
        }
        Ok(a)
    }

    fn update(&mut self, actor: &str, id: AssetId, f: impl FnOnce(&mut Asset) -> Option<Action>) {
        let (a, _) = self.assets.get_mut(&id).expect("checked");
        if let Some(action) = f(a) {
            a.version += 1;
            self.emit(actor, action, Some(id));
        }
    }

    fn realize_asset(&self, g: &AssetGen) -> (NewAsset, Option<Expect>) {
        let ext = format!("x{}", g.ext % 8);
        let mut a = if g.image {
            NewAsset::image(
                &ext,
                format!("img/{ext}.png"),
                1 + u32::from(g.size.0 % 640),
                1 + u32::from(g.size.1 % 480),
            )
        } else {
            NewAsset::text(&ext, TEXTS[g.text as usize % 3])
        };
        a.status = g.status;
        a.priority = f64::from(g.priority) / 2.0;
        if let Some((k, v)) = g.meta {
            let value = match v {
                MetaGen::Remove => None,
                MetaGen::Str(n) => Some(MetaValue::Str(format!("v{}", n % 4))),
                MetaGen::Num(n) => Some(MetaValue::Num(f64::from(n) / 2.0)),
                MetaGen::Bool(b) => Some(MetaValue::Bool(b)),
                MetaGen::Nan => Some(MetaValue::Num(0.0)),
            };
            if let Some(v) = value {
                a.meta.insert(format!("k{}", k % 2), v);
            }
        }
        for l in &g.labels {
            let clean = LabelGen {
                defect: None,
                parent: ParentGen::None,
                derived: DerivedGen::None,
                ..l.clone()
            };
            a.labels.push(realize_label(&clean, &ext, &a.content).0);
        }
        let expect = g.defect.map(|d| match d {
            AssetDefect::EmptyId => {
                a.external_id = String::new();
                Expect::InvalidInput("external id".into())
            }
            AssetDefect::NanPriority => {
                a.priority = f64::NAN;
                Expect::InvalidInput("priority".into())
            }
            AssetDefect::BadMetaKey => {
                a.meta.insert("bad key".into(), MetaValue::Bool(true));
                Expect::InvalidInput("metadata key".into())
            }
            AssetDefect::BadLabel => {
                let bad = NewLabel::annotation("alice").answer("category", Answer::class("zzz"));
                a.labels.push(bad);
                Expect::UnknownClass {
                    asset: ext.clone(),
                    job: "category".into(),
                    class: "zzz".into(),
                }
            }
        });
        (a, expect)
    }
}

// ---- running ----

fn apply(db: &Db, model: &mut Model, op: &Op) {
    match op {
        Op::CreateProject(p) => {
            let name = PROJECTS[*p as usize % PROJECTS.len()];
            let expected = if model.project(name).is_some() {
                Err(Expect::ProjectExists(name.into()))
            } else {
                let id = ProjectId(model.next_project);
                model.next_project += 1;
                model.emit(
                    "admin",
                    Action::ProjectCreated {
                        project: id,
                        name: name.into(),
                    },
                    None,
                );
                Ok(id)
            };
            let actual = db.create_project("admin", name, schema(SCHEMA)).map_err(observed);
            assert_eq!(actual, expected, "create_project {name}");
            if let Ok(id) = expected {
                let consensus = db.project(name).expect("created").settings.consensus as usize;
                model.projects.push(MProject {
                    name: name.into(),
                    id,
                    consensus,
                });
            }
        }
        Op::AddAssets { project, assets } => {
            // Mostly the first project, which always exists; now and then one that may not.
            let name = PROJECTS[usize::from(*project % 4 == 3)];
            let realized: Vec<(NewAsset, Option<Expect>)> = assets.iter().map(|g| model.realize_asset(g)).collect();
            let news: Vec<NewAsset> = realized.iter().map(|(a, _)| a.clone()).collect();
            let expected = expect_add_assets(model, name, &realized);
            let actual = db.add_assets("loader", name, news).map_err(observed);
            match (&actual, &expected) {
                (Ok(report), Ok((added, duplicates, labels))) => {
                    assert_eq!(&report.added, added, "add_assets added");
                    assert_eq!(&report.duplicates, duplicates, "add_assets duplicates");
                    assert_eq!(report.labels, *labels, "add_assets labels");
                }
                _ => assert_eq!(actual.map(drop), expected.map(drop), "add_assets"),
            }
        }
        Op::AddLabel { asset, label } => {
            let id = model.pick(*asset);
            let (new, expected) = expect_add_label(model, id, label);
            let actual = db.add_label(id, new).map_err(observed);
            assert_eq!(actual, expected, "add_label on {id}");
        }
        Op::SetStatus { asset, to } => {
            let id = model.pick(*asset);
            let expected = model.live(id).and_then(|a| {
                if LEGAL.contains(&(a.status, *to)) {
                    Ok(())
                } else {
                    Err(Expect::IllegalTransition {
                        asset: a.external_id.clone(),
                        from: a.status,
                        to: *to,
                    })
                }
            });
            if expected.is_ok() {
                let to = *to;
                model.update("rita", id, |a| {
                    let before = std::mem::replace(&mut a.status, to);
                    Some(Action::StatusChanged {
                        asset: id,
                        before,
                        after: to,
                    })
                });
            }
            let actual = db.set_status("rita", id, *to).map_err(observed);
            assert_eq!(actual, expected, "set_status {id} -> {to}");
        }
        Op::SetMeta { asset, key, value } => {
            let id = model.pick(*asset);
            let key = ["k0", "k1", "bad key"][*key as usize % 3];
            let value = match value {
                MetaGen::Remove => None,
                MetaGen::Str(n) => Some(MetaValue::Str(format!("v{}", n % 4))),
                MetaGen::Num(n) => Some(MetaValue::Num(f64::from(*n) / 2.0)),
                MetaGen::Bool(b) => Some(MetaValue::Bool(*b)),
                MetaGen::Nan => Some(MetaValue::Num(f64::NAN)),
            };
            let expected = if key.contains(' ') {
                Err(Expect::InvalidInput("metadata key".into()))
            } else if matches!(value, Some(MetaValue::Num(n)) if n.is_nan()) {
                Err(Expect::InvalidInput(format!("metadata {key:?}")))
            } else {
                model.live(id).map(drop)
            };
            if expected.is_ok() {
                let v = value.clone();
                model.update("admin", id, |a| {
                    let before = a.meta.get(key).cloned();
                    if before == v {
                        return None;
                    }
                    match &v {
                        Some(v) => a.meta.insert(key.into(), v.clone()),
                        None => a.meta.remove(key),
                    };
                    Some(Action::MetaChanged {
                        asset: id,
                        key: key.into(),
                        before,
                        after: v,
                    })
                });
            }
            let actual = db.set_meta("admin", id, key, value).map_err(observed);
            assert_eq!(actual, expected, "set_meta {id} {key}");
        }
        Op::SetPriority { asset, priority } => {
            let id = model.pick(*asset);
            let p = match priority {
                PriorityGen::Finite(n) => f64::from(*n) / 4.0,
                PriorityGen::Nan => f64::NAN,
                PriorityGen::Inf => f64::INFINITY,
            };
            let expected = if p.is_finite() {
                model.live(id).map(drop)
            } else {
                Err(Expect::InvalidInput("priority".into()))
            };
            if expected.is_ok() {
                model.update("admin", id, |a| {
                    let before = a.priority;
                    (before != p).then(|| {
                        a.priority = p;
                        Action::PriorityChanged {
                            asset: id,
                            before,
                            after: p,
                        }
                    })
                });
            }
            let actual = db.set_priority("admin", id, p).map_err(observed);
            assert_eq!(actual, expected, "set_priority {id} {p}");
        }
        Op::SetHoneypot { asset, on } => {
            let id = model.pick(*asset);
            let on = *on;
            let expected = model.live(id).map(drop);
            if expected.is_ok() {
                model.update("admin", id, |a| {
                    (a.honeypot != on).then(|| {
                        a.honeypot = on;
                        Action::HoneypotChanged { asset: id, after: on }
                    })
                });
            }
            let actual = db.set_honeypot("admin", id, on).map_err(observed);
            assert_eq!(actual, expected, "set_honeypot {id} {on}");
        }
        Op::Delete(n) | Op::Restore(n) => {
            let id = model.pick(*n);
            let deleted = matches!(op, Op::Delete(_));
            let expected = if model.assets.contains_key(&id) {
                Ok(())
            } else {
                Err(Expect::UnknownAsset(id))
            };
            if expected.is_ok() {
                model.update("admin", id, |a| {
                    (a.deleted != deleted).then(|| {
                        a.deleted = deleted;
                        Action::DeletedChanged {
                            asset: id,
                            after: deleted,
                        }
                    })
                });
            }
            let actual = if deleted {
                db.delete_asset("admin", id)
            } else {
                db.restore_asset("admin", id)
            };
            assert_eq!(actual.map_err(observed), expected, "delete/restore {id}");
        }
        Op::Reopen => unreachable!("handled by the runner"),
    }
}

type AddOutcome = Result<(Vec<AssetId>, Vec<String>, u64), Expect>;

fn expect_add_assets(model: &mut Model, name: &str, realized: &[(NewAsset, Option<Expect>)]) -> AddOutcome {
    let Some(project) = model.project(name) else {
        return Err(Expect::UnknownProject(name.into()));
    };
    let (pid, consensus) = (project.id, project.consensus);
    let mut seen = BTreeSet::new();
    for (a, defect) in realized {
        if let Some(e) = defect {
            return Err(e.clone());
        }
        if !seen.insert(a.external_id.clone()) {
            return Err(Expect::DuplicateExternalId(a.external_id.clone()));
        }
    }
    let exists = |m: &Model, ext: &str| m.assets.values().any(|(a, _)| a.project == pid && a.external_id == ext);
    let mut duplicates = Vec::new();
    let mut fresh = Vec::new();
    for (a, _) in realized {
        if exists(model, &a.external_id) {
            duplicates.push(a.external_id.clone());
        } else {
            fresh.push(a.clone());
        }
    }
    if fresh.is_empty() {
        return Ok((vec![], duplicates, 0));
    }
    let first = AssetId(model.next_asset);
    let last = AssetId(model.next_asset + fresh.len() as u32 - 1);
    let labels: u64 = fresh.iter().map(|a| a.labels.len() as u64).sum();
    let seq = model.emit(
        "loader",
        Action::AssetsAdded {
            project: pid,
            first,
            last,
            labels,
        },
        None,
    );
    let mut added = Vec::new();
    for a in fresh {
        let id = AssetId(model.next_asset);
        model.next_asset += 1;
        let mut history: Vec<Label> = Vec::new();
        for (rev, l) in a.labels.iter().enumerate() {
            let parent = history.iter().rev().find(|h| h.source == l.source).map(|h| h.id);
            history.push(stored(LabelId::new(id, rev as u32), l, parent));
        }
        let annotators: BTreeSet<&Source> = history
            .iter()
            .filter(|l| l.kind == LabelKind::Annotation)
            .map(|l| &l.source)
            .collect();
        let status = a
            .status
            .unwrap_or_else(|| status_after(Status::Todo, annotators.len(), consensus));
        let asset = Asset {
            id,
            project: pid,
            external_id: a.external_id.clone(),
            digest: a.content.digest(),
            content: a.content.clone(),
            meta: a.meta.clone(),
            status,
            priority: a.priority,
            honeypot: a.honeypot,
            deleted: false,
            revisions: history.len() as u32,
            version: 0,
            created_at: 0,
            created_seq: seq,
        };
        model.assets.insert(id, (asset, history));
        model.asset_events.insert(id, vec![seq]);
        added.push(id);
    }
    Ok((added, duplicates, labels))
}

fn expect_add_label(model: &mut Model, id: AssetId, g: &LabelGen) -> (NewLabel, Result<LabelId, Expect>) {
    let (ext, content, history) = match model.assets.get(&id) {
        Some((a, h)) => (a.external_id.clone(), a.content.clone(), h.clone()),
        None => ("?".to_string(), Content::Text(TEXTS[0].into()), Vec::new()),
    };
    let (mut new, defect) = realize_label(g, &ext, &content);
    let revisions = history.len() as u32;
    let latest = history.iter().rev().find(|l| l.source == new.source).map(|l| l.id);
    new.parent = match g.parent {
        ParentGen::None => None,
        ParentGen::Latest => latest,
        ParentGen::Stale(n) => {
            let others: Vec<LabelId> = history.iter().map(|l| l.id).filter(|l| Some(*l) != latest).collect();
            if others.is_empty() {
                Some(LabelId::new(id, revisions + 1 + u32::from(n % 3)))
            } else {
                Some(others[n as usize % others.len()])
            }
        }
    };
    new.derived_from = match g.derived {
        DerivedGen::None => None,
        DerivedGen::Own(n) => (revisions > 0).then(|| LabelId::new(id, u32::from(n) % revisions)),
        DerivedGen::Foreign(n) if n % 2 == 0 => Some(LabelId::new(AssetId(id.0.wrapping_add(1)), 0)),
        DerivedGen::Foreign(n) => Some(LabelId::new(id, revisions + u32::from(n % 4))),
    };
    let outcome = (|| {
        let asset = model.live(id)?;
        if let Some(e) = defect {
            return Err(e);
        }
        if new.parent.is_some() && new.parent != latest {
            return Err(Expect::Conflict {
                asset: ext.clone(),
                expected: new.parent.map(|l| l.0),
                actual: latest.map(|l| l.0),
            });
        }
        if let Some(d) = new.derived_from {
            if d.asset() != id || d.revision() >= revisions {
                return Err(Expect::InvalidInput("derived_from".into()));
            }
        }
        Ok(asset.status)
    })();
    let before = match outcome {
        Ok(s) => s,
        Err(e) => return (new, Err(e)),
    };
    let lid = LabelId::new(id, revisions);
    let mut change = None;
    if new.kind == LabelKind::Annotation {
        let consensus = model.consensus_of(&model.assets[&id].0);
        let mut annotators: BTreeSet<&Source> = history
            .iter()
            .filter(|l| l.kind == LabelKind::Annotation)
            .map(|l| &l.source)
            .collect();
        annotators.insert(&new.source);
        let after = status_after(before, annotators.len(), consensus);
        if after != before {
            change = Some((before, after));
        }
    }
    let label = stored(lid, &new, latest);
    let (asset, labels) = model.assets.get_mut(&id).expect("live");
    if let Some((_, after)) = change {
        asset.status = after;
    }
    asset.revisions += 1;
    asset.version += 1;
    labels.push(label);
    let action = Action::LabelAdded {
        asset: id,
        label: lid,
        kind: new.kind,
        source: new.source.clone(),
        status: change,
    };
    model.emit(&actor_of(&new.source), action, Some(id));
    (new, Ok(lid))
}

/// Compares everything observable; events from `since` on.
fn compare(db: &Db, model: &Model, since: u64, step: &str) {
    assert_eq!(db.last_seq(), model.events.len() as u64, "{step}: last_seq");
    let events = db
        .changes_since(since)
        .collect::<labeldb::Result<Vec<_>>>()
        .expect("read the feed");
    let got: Vec<(u64, &str, &Action)> = events.iter().map(|e| (e.seq, e.actor.as_str(), &e.action)).collect();
    let want: Vec<(u64, &str, &Action)> = model.events[since as usize..]
        .iter()
        .enumerate()
        .map(|(i, (actor, action))| (since + 1 + i as u64, actor.as_str(), action))
        .collect();
    assert_eq!(got, want, "{step}: events after {since}");

    let mut names: Vec<(String, ProjectId)> = model.projects.iter().map(|p| (p.name.clone(), p.id)).collect();
    names.sort();
    let got: Vec<(String, ProjectId)> = db.projects().iter().map(|p| (p.name.clone(), p.id)).collect();
    assert_eq!(got, names, "{step}: projects");
    for p in &model.projects {
        let want: Vec<AssetId> = model
            .assets
            .values()
            .filter(|(a, _)| a.project == p.id)
            .map(|(a, _)| a.id)
            .collect();
        assert_eq!(
            db.asset_ids(&p.name).expect("asset ids"),
            want,
            "{step}: assets of {}",
            p.name
        );
    }
    for (id, (want, history)) in &model.assets {
        let mut got = db.asset(*id).unwrap_or_else(|e| panic!("{step}: asset {id}: {e}"));
        assert!(got.created_at > 0);
        got.created_at = 0;
        assert_eq!(&got, want, "{step}: asset {id}");
        let project = &model
            .projects
            .iter()
            .find(|p| p.id == want.project)
            .expect("project")
            .name;
        let by_ext = db
            .asset_by_external_id(project, &want.external_id)
            .expect("by external id");
        assert_eq!(by_ext.id, *id, "{step}: external id {}", want.external_id);
        let got: Vec<Label> = db
            .history(*id)
            .expect("history")
            .into_iter()
            .map(|mut l| {
                l.created_at = 0;
                l
            })
            .collect();
        assert_eq!(&got, history, "{step}: history of {id}");
    }
}

/// `Db::stats` of every project against counts from the model: live and deleted assets,
/// label revisions of live assets by kind and source, live assets by status, and class
/// occurrences in each live asset's latest annotation per human author.
fn compare_stats(db: &Db, model: &Model, step: &str) {
    for p in &model.projects {
        let mut want = labeldb::Stats::default();
        for s in Status::ALL {
            want.by_status.insert(s, 0);
        }
        for (a, history) in model.assets.values().filter(|(a, _)| a.project == p.id) {
            if a.deleted {
                want.deleted += 1;
                continue;
            }
            want.assets += 1;
            *want.by_status.entry(a.status).or_default() += 1;
            let mut latest: BTreeMap<&Source, &Label> = BTreeMap::new();
            for l in history {
                want.labels += 1;
                *want.by_kind.entry(l.kind).or_default() += 1;
                *want.by_source.entry(actor_of(&l.source)).or_default() += 1;
                if l.kind == LabelKind::Annotation {
                    latest.insert(&l.source, l);
                    want.human_seconds += f64::from(l.seconds);
                }
            }
            for l in latest.values() {
                for (job, answer) in &l.answers {
                    let classes: Vec<&str> = match answer {
                        Answer::Classes(c) => c.iter().map(String::as_str).collect(),
                        Answer::Spans(s) => s.iter().map(|s| s.class.as_str()).collect(),
                        Answer::Boxes(b) => b.iter().map(|b| b.class.as_str()).collect(),
                    };
                    for c in classes {
                        *want
                            .classes
                            .entry(job.clone())
                            .or_default()
                            .entry(c.to_string())
                            .or_default() += 1;
                    }
                }
            }
        }
        let mut got = db
            .stats(&p.name)
            .unwrap_or_else(|e| panic!("{step}: stats {}: {e}", p.name));
        // A job whose answers name no class may appear with no classes: the same counts.
        got.classes.retain(|_, c| !c.is_empty());
        assert!(
            (got.human_seconds - want.human_seconds).abs() < 1e-6,
            "{step}: human seconds of {}",
            p.name
        );
        got.human_seconds = want.human_seconds;
        assert_eq!(got, want, "{step}: stats of {}", p.name);
    }
}

/// Audit queries at the end of a run, against the model's own bookkeeping.
fn compare_audits(db: &Db, model: &Model) {
    for (id, seqs) in &model.asset_events {
        let got: Vec<u64> = db
            .audit_asset(*id)
            .expect("audit asset")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(&got, seqs, "audit_asset {id}");
    }
    for actor in ACTORS {
        let want: Vec<u64> = (1..=model.events.len() as u64)
            .filter(|s| model.events[*s as usize - 1].0 == actor)
            .collect();
        let got: Vec<u64> = db.audit_actor(actor, 0).map(|e| e.expect("audit actor").seq).collect();
        assert_eq!(got, want, "audit_actor {actor}");
    }
}

/// Runs `ops` after creating the first project and adding `initial` assets to it.
fn run(initial: Vec<AssetGen>, ops: &[Op]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: &Path = &dir.path().join("db");
    let mut db = Db::open(path).expect("open");
    let mut model = Model::default();
    let setup = [
        Op::CreateProject(0),
        Op::AddAssets {
            project: 0,
            assets: initial,
        },
    ];
    for (i, op) in setup.iter().chain(ops).enumerate() {
        let since = model.events.len() as u64;
        let step = format!("step {i} {op:?}");
        if let Op::Reopen = op {
            drop(db);
            db = crate::reopen(path).unwrap_or_else(|e| panic!("{step}: reopen: {e}"));
        } else {
            apply(&db, &mut model, op);
        }
        compare(&db, &model, since, &step);
        compare_stats(&db, &model, &step);
        if let Op::Reopen = op {
            let report = db.verify().expect("verify");
            assert!(report.is_clean(), "{step}: verify: {:?}", report.problems);
        }
    }
    compare(&db, &model, 0, "end");
    compare_audits(&db, &model);
    let report = db.verify().expect("verify");
    assert!(report.is_clean(), "end: verify: {:?}", report.problems);
    assert!(report.records > 0);
}

fn cases() -> u32 {
    std::env::var("LABELDB_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 4096,
        // Failures are saved next to this file and replayed first by every later run.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/model.proptest-regressions"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn db_matches_the_in_memory_model_after_every_operation(
        initial in prop::collection::vec(asset_gen(), 1..6),
        ops in prop::collection::vec(op(), 1..=40),
    ) {
        // The initial assets are valid and distinct, so that later operations find assets.
        let mut seen = BTreeSet::new();
        let initial: Vec<AssetGen> = initial
            .into_iter()
            .filter(|a| seen.insert(a.ext % 8))
            .map(|a| AssetGen { defect: None, ..a })
            .collect();
        run(initial, &ops);
    }
}

#[test]
fn the_model_runner_detects_a_wrong_expectation() {
    // Guards the harness itself: a model that expects a different status must fail.
    let result = std::panic::catch_unwind(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path().join("db")).expect("open");
        let mut model = Model::default();
        apply(&db, &mut model, &Op::CreateProject(0));
        let gen = AssetGen {
            ext: 1,
            image: false,
            text: 0,
            size: (0, 0),
            status: None,
            priority: 0,
            meta: None,
            labels: vec![],
            defect: None,
        };
        apply(
            &db,
            &mut model,
            &Op::AddAssets {
                project: 0,
                assets: vec![gen],
            },
        );
        model.assets.values_mut().for_each(|(a, _)| a.status = Status::Reviewed);
        compare(&db, &model, 0, "tampered");
    });
    assert!(
        result.is_err(),
        "compare accepted a model that disagrees with the database"
    );
}
