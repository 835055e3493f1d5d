//! What one caller may see of a project, for the evaluator: the visible assets (a
//! member's data scope) and, for a blind view (a labeler's, docs/access.md), whose labels
//! count. Access control builds views; the evaluator only applies them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use croaring::Bitmap;
use parking_lot::Mutex;

use super::{is_text_only, CmpOp, Eval, Filter};
use crate::engine::{read_history, Db};
use crate::index::{Key, NumKey};
use crate::model::asset::AssetId;
use crate::model::error::Result;
use crate::model::label::{Label, LabelKind, Source};

/// The part of a project one caller sees.
pub(crate) struct View<'v> {
    /// The assets they may see; every result is cut to these (`None`: all of them).
    pub visible: Option<&'v Bitmap>,
    /// Leaves cut to the visible assets, kept with them (see [`Eval::eval_scoped`]).
    pub leaves: Option<&'v ScopedLeaves>,
    /// `Some`: blind consensus — label-derived filters and counts see only this user's
    /// own annotations, plus machine labels when `predictions`.
    pub blind: Option<Blind<'v>>,
}

/// Leaf bitmaps cut to a scope, by key: valid as long as the scope set they were cut
/// from (which the session keeps while the indexes have not moved).
pub(crate) type ScopedLeaves = Mutex<HashMap<Key, Arc<Bitmap>>>;

/// A blind view's user and whether they see predictions and inferences.
pub(crate) struct Blind<'v> {
    pub user: &'v str,
    pub predictions: bool,
}

impl<'a> Eval<'a> {
    fn blind(&self) -> Option<&'a Blind<'a>> {
        self.view.and_then(|v| v.blind.as_ref())
    }

    /// `f`'s assets cut to the visible ones. The cut is pushed down an AND to one leaf,
    /// whose scoped bitmap is kept with the scope, so that a scoped query costs what
    /// the same query costs unscoped (no intersection with the scope per call).
    pub(super) fn eval_scoped(&mut self, f: &Filter) -> Result<Cow<'a, Bitmap>> {
        let Some(visible) = self.view.and_then(|v| v.visible) else {
            return self.eval(f);
        };
        if let Some(leaf) = self.scoped_leaf(f) {
            return Ok(Cow::Owned(leaf.as_ref().clone()));
        }
        let (a, b) = match f {
            Filter::And(a, b) if !is_text_only(f) => (a, b),
            _ => return Ok(Cow::Owned(self.eval(f)?.as_ref() & visible)),
        };
        Ok(Cow::Owned(match (a.as_ref(), b.as_ref()) {
            (x, Filter::Not(y)) | (Filter::Not(y), x) => {
                let r = self.eval(y)?;
                match self.scoped_leaf(x) {
                    Some(l) => l.as_ref() - r.as_ref(),
                    None => self.eval_scoped(x)?.as_ref() - r.as_ref(),
                }
            }
            (x, y) => {
                let (leaf, other) = match self.scoped_leaf(x) {
                    Some(l) => (Some(l), y),
                    None => (self.scoped_leaf(y), x),
                };
                match leaf {
                    Some(l) => l.as_ref() & self.eval(other)?.as_ref(),
                    None => self.eval_scoped(x)?.as_ref() & self.eval(y)?.as_ref(),
                }
            }
        }))
    }

    /// A plain leaf (status, class, author, honeypot) cut to the visible assets, from the
    /// scope's cache. `None`: no scope, or not such a leaf as this view answers it.
    fn scoped_leaf(&self, f: &Filter) -> Option<Arc<Bitmap>> {
        let view = self.view?;
        let (visible, leaves) = (view.visible?, view.leaves?);
        let key = match f {
            Filter::Status(s) => Key::Status(*s),
            Filter::Class { kind, job, class }
                if self.blind().is_none() && self.project.schema.job(job).is_some_and(|j| j.has_class(class)) =>
            {
                Key::Class(*kind, job.clone(), class.clone())
            }
            Filter::Author(a) if !self.hides_author(a) => Key::Author(a.clone()),
            Filter::Honeypot => Key::Honeypot,
            _ => return None,
        };
        let mut leaves = leaves.lock();
        let leaf = leaves
            .entry(key)
            .or_insert_with_key(|key| Arc::new(self.bitmap(key).as_ref() & visible));
        Some(leaf.clone())
    }

    /// Whether a blind view hides machine labels.
    pub(super) fn hides_predictions(&self) -> bool {
        self.blind().is_some_and(|b| !b.predictions)
    }

    /// Whether a blind view hides this author (everyone but its user).
    pub(super) fn hides_author(&self, author: &str) -> bool {
        self.blind().is_some_and(|b| b.user != author)
    }

    /// A class leaf as a blind view answers it: annotations are the user's own (their
    /// latest annotation of each asset, read from the records of the assets that both
    /// have the class and were annotated by the user), reviews are hidden, machine labels
    /// as the setting says. `None`: not blind, or the leaf is answered as for everyone.
    pub(super) fn blind_class(&self, kind: LabelKind, job: &str, class: &str) -> Result<Option<Cow<'a, Bitmap>>> {
        let Some(b) = self.blind() else {
            return Ok(None);
        };
        Ok(match kind {
            LabelKind::Annotation => {
                let any = self.bitmap(&Key::Class(kind, job.to_string(), class.to_string()));
                let candidates = any.as_ref() & self.bitmap(&Key::Author(b.user.to_string())).as_ref();
                let mut own = Bitmap::new();
                for id in candidates.iter() {
                    let chose = own_latest(self.db, b.user, AssetId(id))?.is_some_and(|l| {
                        l.answers
                            .get(job)
                            .is_some_and(|a| a.class_occurrences().any(|c| c == class))
                    });
                    if chose {
                        own.add(id);
                    }
                }
                Some(Cow::Owned(own))
            }
            LabelKind::Review => Some(Cow::Owned(Bitmap::new())),
            LabelKind::Prediction | LabelKind::Inference if !b.predictions => Some(Cow::Owned(Bitmap::new())),
            LabelKind::Prediction | LabelKind::Inference => None,
        })
    }

    /// A numeric leaf as a blind view answers it: `labels` counts the user alone (1 on
    /// the assets they annotated, else 0), `seconds` sums their own annotations, scores
    /// are hidden with predictions. `None`: answered as for everyone.
    pub(super) fn blind_numeric(&self, key: &NumKey, op: CmpOp, value: f64) -> Result<Option<Bitmap>> {
        let Some(b) = self.blind() else {
            return Ok(None);
        };
        let own = self.bitmap(&Key::Author(b.user.to_string()));
        let none_of_own = || &self.index.all - own.as_ref();
        Ok(Some(match key {
            NumKey::Score(..) if !b.predictions => Bitmap::new(),
            NumKey::Labels => {
                let mut out = Bitmap::new();
                if op.holds(1.0, value) {
                    out |= own.as_ref();
                }
                if op.holds(0.0, value) {
                    out |= &none_of_own();
                }
                out
            }
            NumKey::Seconds => {
                let mut out = if op.holds(0.0, value) {
                    none_of_own()
                } else {
                    Bitmap::new()
                };
                let mine = match self.view.and_then(|v| v.visible) {
                    Some(visible) => own.as_ref() & visible,
                    None => own.into_owned(),
                };
                for id in mine.iter() {
                    let seconds: f64 = read_history(self.db.store(), AssetId(id))?
                        .iter()
                        .filter(|l| {
                            l.kind == LabelKind::Annotation
                                && matches!(&l.source, Source::Human { user } if user == b.user)
                        })
                        .map(|l| f64::from(l.seconds))
                        .sum();
                    if op.holds(seconds, value) {
                        out.add(id);
                    }
                }
                out
            }
            _ => return Ok(None),
        }))
    }
}

/// `user`'s latest annotation of an asset, from its records.
pub(super) fn own_latest(db: &Db, user: &str, asset: AssetId) -> Result<Option<Label>> {
    Ok(read_history(db.store(), asset)?
        .into_iter()
        .rev()
        .find(|l| l.kind == LabelKind::Annotation && matches!(&l.source, Source::Human { user: u } if u == user)))
}
