//! Labels: immutable revisions with their source, answers, scores and lineage links.
//!
//! A [`LabelId`] is `asset id << 32 | revision`: an asset's revisions are numbered from
//! 0 in the order they were written, so its history is one ordered key range.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::asset::{AssetId, Content};
use crate::model::error::{Error, Result};
use crate::model::project::{check_name, JobKind, Schema};

/// Identifier of a label revision: the asset in the high 32 bits, the revision in the low.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LabelId(pub u64);

impl LabelId {
    /// The id of revision `rev` of `asset`.
    pub fn new(asset: AssetId, rev: u32) -> LabelId {
        LabelId((u64::from(asset.0) << 32) | u64::from(rev))
    }

    /// The asset this label belongs to.
    pub fn asset(self) -> AssetId {
        AssetId((self.0 >> 32) as u32)
    }

    /// The revision number within the asset (0 for its first label).
    pub fn revision(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for LabelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.asset().0, self.revision())
    }
}

/// What a label is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LabelKind {
    /// A human's annotation.
    Annotation,
    /// A model's or rule's pre-annotation.
    Prediction,
    /// A production model output, routed by confidence.
    Inference,
    /// A reviewer's verdict and possibly corrected answers.
    Review,
}

impl LabelKind {
    /// All kinds.
    pub const ALL: [LabelKind; 4] = [
        LabelKind::Annotation,
        LabelKind::Prediction,
        LabelKind::Inference,
        LabelKind::Review,
    ];

    /// Lower-case name, as in JSONL.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelKind::Annotation => "annotation",
            LabelKind::Prediction => "prediction",
            LabelKind::Inference => "inference",
            LabelKind::Review => "review",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Result<LabelKind> {
        LabelKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            Error::invalid(
                "label kind",
                format!("{s:?} (expected annotation, prediction, inference or review)"),
            )
        })
    }
}

impl fmt::Display for LabelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who or what produced a label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Source {
    /// A person.
    Human {
        /// User name.
        user: String,
    },
    /// A model version.
    Model {
        /// Model name.
        name: String,
        /// Model version.
        version: String,
    },
    /// A business rule (dictionary, regex) version.
    Rule {
        /// Rule name.
        name: String,
        /// Rule version.
        version: String,
    },
}

impl Source {
    /// A human source.
    pub fn human(user: impl Into<String>) -> Source {
        Source::Human { user: user.into() }
    }

    /// Parses `name@version` into a model source.
    pub fn model(spec: &str) -> Result<Source> {
        let (name, version) = split_versioned("model", spec)?;
        Ok(Source::Model { name, version })
    }

    /// Parses `name@version` into a rule source.
    pub fn rule(spec: &str) -> Result<Source> {
        let (name, version) = split_versioned("rule", spec)?;
        Ok(Source::Rule { name, version })
    }

    /// Whether a person wrote it.
    pub fn is_human(&self) -> bool {
        matches!(self, Source::Human { .. })
    }

    /// The actor recorded in the event log: the user, `model:name@version` or `rule:name@version`.
    pub fn actor(&self) -> String {
        self.to_string()
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Source::Human { user } => check_name("user name", user),
            Source::Model { name, version } | Source::Rule { name, version } => {
                check_name("source name", name)?;
                check_name("source version", version)
            }
        }
    }
}

fn split_versioned(what: &str, spec: &str) -> Result<(String, String)> {
    match spec.rsplit_once('@') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => Ok((name.to_string(), version.to_string())),
        _ => Err(Error::invalid(what, format!("{spec:?} is not NAME@VERSION"))),
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Human { user } => f.write_str(user),
            Source::Model { name, version } => write!(f, "model:{name}@{version}"),
            Source::Rule { name, version } => write!(f, "rule:{name}@{version}"),
        }
    }
}

/// An entity in a text: UTF-8 byte offsets `[start, end)` on character boundaries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
    /// Class.
    pub class: String,
    /// Model confidence, when a model gave one.
    pub score: Option<f32>,
}

/// An object in an image, in pixels: top-left corner and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width, positive.
    pub w: f32,
    /// Height, positive.
    pub h: f32,
    /// Class.
    pub class: String,
    /// Model confidence, when a model gave one.
    pub score: Option<f32>,
}

/// The answer to one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// Chosen classes (exactly one for a single-choice job).
    Classes(Vec<String>),
    /// Text entities.
    Spans(Vec<Span>),
    /// Image objects.
    Boxes(Vec<BBox>),
}

impl Answer {
    /// A single-class answer.
    pub fn class(c: impl Into<String>) -> Answer {
        Answer::Classes(vec![c.into()])
    }

    /// Every class occurrence: each chosen class, span or box counts once.
    pub fn class_occurrences(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Answer::Classes(c) => Box::new(c.iter().map(String::as_str)),
            Answer::Spans(s) => Box::new(s.iter().map(|s| s.class.as_str())),
            Answer::Boxes(b) => Box::new(b.iter().map(|b| b.class.as_str())),
        }
    }
}

/// A reviewer's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// The reviewed labels are right.
    Accept,
    /// They are wrong; the asset goes back to the queue.
    Reject,
}

/// Per-job, per-class model scores.
pub type Scores = BTreeMap<String, BTreeMap<String, f32>>;

/// A label revision as stored. Never overwritten.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Its id (asset and revision).
    pub id: LabelId,
    /// What it is.
    pub kind: LabelKind,
    /// Who or what wrote it.
    pub source: Source,
    /// The previous revision by the same source on the same asset.
    pub parent: Option<LabelId>,
    /// The revision this one corrects (e.g. a prediction a human fixed).
    pub derived_from: Option<LabelId>,
    /// Answers per job.
    pub answers: BTreeMap<String, Answer>,
    /// Per-class scores per job, when a model gave them.
    pub scores: Scores,
    /// A review's verdict.
    pub verdict: Option<Verdict>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Seconds the author spent.
    pub seconds: f32,
}

impl Label {
    /// The asset it belongs to.
    pub fn asset(&self) -> AssetId {
        self.id.asset()
    }

    /// The top class score per job (the model's confidence in its answer).
    pub fn top_scores(&self) -> impl Iterator<Item = (&str, f32)> + '_ {
        self.scores.iter().filter_map(|(job, classes)| {
            classes
                .values()
                .copied()
                .fold(None, |m: Option<f32>, s| Some(m.map_or(s, |m| m.max(s))))
                .map(|top| (job.as_str(), top))
        })
    }
}

/// A label to write: what the caller supplies.
#[derive(Clone, Debug, PartialEq)]
pub struct NewLabel {
    /// What it is.
    pub kind: LabelKind,
    /// Who or what wrote it.
    pub source: Source,
    /// Optimistic concurrency: when set, the write succeeds only if this is still the
    /// latest revision by the same source on the asset (else [`Error::Conflict`]).
    /// When `None`, the new revision's parent is whatever that latest revision is.
    pub parent: Option<LabelId>,
    /// The revision this one corrects; must belong to the same asset.
    pub derived_from: Option<LabelId>,
    /// Answers per job.
    pub answers: BTreeMap<String, Answer>,
    /// Per-class scores per job.
    pub scores: Scores,
    /// A review's verdict.
    pub verdict: Option<Verdict>,
    /// Seconds the author spent.
    pub seconds: f32,
}

impl NewLabel {
    /// An empty label of this kind from this source.
    pub fn new(kind: LabelKind, source: Source) -> NewLabel {
        NewLabel {
            kind,
            source,
            parent: None,
            derived_from: None,
            answers: BTreeMap::new(),
            scores: BTreeMap::new(),
            verdict: None,
            seconds: 0.0,
        }
    }

    /// A human annotation by `user`.
    pub fn annotation(user: impl Into<String>) -> NewLabel {
        NewLabel::new(LabelKind::Annotation, Source::human(user))
    }

    /// A prediction by model `name@version`.
    pub fn prediction(name: impl Into<String>, version: impl Into<String>) -> NewLabel {
        NewLabel::new(
            LabelKind::Prediction,
            Source::Model {
                name: name.into(),
                version: version.into(),
            },
        )
    }

    /// Sets the answer to a job (builder style).
    pub fn answer(mut self, job: impl Into<String>, answer: Answer) -> NewLabel {
        self.answers.insert(job.into(), answer);
        self
    }

    /// Sets the score of a class (builder style).
    pub fn score(mut self, job: impl Into<String>, class: impl Into<String>, score: f32) -> NewLabel {
        self.scores.entry(job.into()).or_default().insert(class.into(), score);
        self
    }

    /// Checks the label against the schema and the asset's content. `asset` is the
    /// external id used in error messages.
    pub fn validate(&self, schema: &Schema, asset: &str, content: &Content) -> Result<()> {
        self.source.validate()?;
        if !self.seconds.is_finite() || self.seconds < 0.0 {
            return Err(Error::invalid(
                "seconds",
                format!("{} is not a finite, non-negative number", self.seconds),
            ));
        }
        if self.verdict.is_some() && self.kind != LabelKind::Review {
            return Err(Error::invalid(
                "verdict",
                format!("only a review carries a verdict, not a {}", self.kind),
            ));
        }
        if self.kind == LabelKind::Annotation && !self.source.is_human() {
            return Err(Error::invalid(
                "label",
                format!("an annotation must come from a person, not {}", self.source),
            ));
        }
        for (job_name, answer) in &self.answers {
            let job = schema.job(job_name).ok_or_else(|| Error::UnknownJob {
                asset: asset.to_string(),
                job: job_name.clone(),
            })?;
            let bad = |class: Option<&str>, reason: String| Error::InvalidAnswer {
                asset: asset.to_string(),
                job: job_name.clone(),
                class: class.map(str::to_string),
                reason,
            };
            let unknown = |class: &str| Error::UnknownClass {
                asset: asset.to_string(),
                job: job_name.clone(),
                class: class.to_string(),
            };
            match (job.kind, answer) {
                (JobKind::Classification { multi }, Answer::Classes(classes)) => {
                    if !multi && classes.len() != 1 {
                        return Err(bad(
                            None,
                            format!("a single-choice job needs exactly one class, got {}", classes.len()),
                        ));
                    }
                    for (i, c) in classes.iter().enumerate() {
                        if !job.has_class(c) {
                            return Err(unknown(c));
                        }
                        if classes[..i].contains(c) {
                            return Err(bad(Some(c), "class chosen twice".into()));
                        }
                    }
                }
                (JobKind::Spans, Answer::Spans(spans)) => {
                    let text = content
                        .text()
                        .ok_or_else(|| bad(None, "spans need a text asset, this one is an image".into()))?;
                    for s in spans {
                        if !job.has_class(&s.class) {
                            return Err(unknown(&s.class));
                        }
                        let (start, end) = (s.start as usize, s.end as usize);
                        if start >= end {
                            return Err(bad(Some(&s.class), format!("span {start}..{end} is empty or reversed")));
                        }
                        if end > text.len() {
                            return Err(bad(
                                Some(&s.class),
                                format!("span {start}..{end} ends past the text ({} bytes)", text.len()),
                            ));
                        }
                        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                            return Err(bad(
                                Some(&s.class),
                                format!("span {start}..{end} is not on a character boundary"),
                            ));
                        }
                        check_score(s.score).map_err(|r| bad(Some(&s.class), r))?;
                    }
                }
                (JobKind::Boxes, Answer::Boxes(boxes)) => {
                    let Content::Image { width, height, .. } = content else {
                        return Err(bad(None, "boxes need an image asset, this one is a text".into()));
                    };
                    for b in boxes {
                        if !job.has_class(&b.class) {
                            return Err(unknown(&b.class));
                        }
                        let finite = [b.x, b.y, b.w, b.h].iter().all(|v| v.is_finite());
                        if !finite || b.w <= 0.0 || b.h <= 0.0 {
                            return Err(bad(
                                Some(&b.class),
                                format!("box {}x{} must have a positive size", b.w, b.h),
                            ));
                        }
                        if b.x < 0.0 || b.y < 0.0 || b.x + b.w > *width as f32 || b.y + b.h > *height as f32 {
                            return Err(bad(
                                Some(&b.class),
                                format!(
                                    "box ({}, {}, {}x{}) is outside the {width}x{height} image",
                                    b.x, b.y, b.w, b.h
                                ),
                            ));
                        }
                        check_score(b.score).map_err(|r| bad(Some(&b.class), r))?;
                    }
                }
                (kind, _) => {
                    return Err(bad(None, format!("wrong answer shape for a {} job", kind.as_str())));
                }
            }
        }
        for (job_name, classes) in &self.scores {
            let job = schema.job(job_name).ok_or_else(|| Error::UnknownJob {
                asset: asset.to_string(),
                job: job_name.clone(),
            })?;
            for (class, score) in classes {
                if !job.has_class(class) {
                    return Err(Error::UnknownClass {
                        asset: asset.to_string(),
                        job: job_name.clone(),
                        class: class.clone(),
                    });
                }
                check_score(Some(*score)).map_err(|reason| Error::InvalidAnswer {
                    asset: asset.to_string(),
                    job: job_name.clone(),
                    class: Some(class.clone()),
                    reason,
                })?;
            }
        }
        Ok(())
    }
}

fn check_score(score: Option<f32>) -> std::result::Result<(), String> {
    match score {
        Some(s) if !(0.0..=1.0).contains(&s) => Err(format!("score {s} is outside 0..=1")),
        _ => Ok(()),
    }
}
