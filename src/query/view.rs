//! What one caller may see of a project, for the evaluator: the visible assets (a
//! member's data scope) and, for a blind view (a labeler's, docs/access.md), whose labels
//! count. Access control builds views; the evaluator only applies them.

use std::borrow::Cow;

use croaring::Bitmap;

use super::{CmpOp, Eval};
use crate::engine::read_history;
use crate::index::{Key, NumKey};
use crate::model::asset::AssetId;
use crate::model::error::Result;
use crate::model::label::{LabelKind, Source};

/// The part of a project one caller sees.
pub(crate) struct View<'v> {
    /// The assets they may see; every result is cut to these (`None`: all of them).
    pub visible: Option<&'v Bitmap>,
    /// The project's other assets, when they are fewer than the visible ones (counts
    /// subtract them: cheaper than an intersection with the larger set).
    pub hidden: Option<&'v Bitmap>,
    /// `Some`: blind consensus — label-derived filters and counts see only this user's
    /// own annotations, plus machine labels when `predictions`.
    pub blind: Option<Blind<'v>>,
}

/// A blind view's user and whether they see predictions and inferences.
pub(crate) struct Blind<'v> {
    pub user: &'v str,
    pub predictions: bool,
}

impl<'a> Eval<'a> {
    fn blind(&self) -> Option<&'a Blind<'a>> {
        self.view.and_then(|v| v.blind.as_ref())
    }

    /// A result cut to the visible assets.
    pub(super) fn restrict(&self, set: Cow<'a, Bitmap>) -> Cow<'a, Bitmap> {
        match self.view.and_then(|v| v.visible) {
            Some(visible) => Cow::Owned(set.as_ref() & visible),
            None => set,
        }
    }

    /// Whether a blind view hides machine labels.
    pub(super) fn hides_predictions(&self) -> bool {
        self.blind().is_some_and(|b| !b.predictions)
    }

    /// Whether a blind view hides this author (everyone but its user).
    pub(super) fn hides_author(&self, author: &str) -> bool {
        self.blind().is_some_and(|b| b.user != author)
    }

    /// A class leaf as a blind view answers it: annotations are the user's own, reviews
    /// are hidden, machine labels as the setting says. `None`: not blind, or the leaf is
    /// answered as for everyone.
    pub(super) fn blind_class(&self, kind: LabelKind, job: &str, class: &str) -> Option<Cow<'a, Bitmap>> {
        let b = self.blind()?;
        match kind {
            LabelKind::Annotation => Some(self.bitmap(&Key::AuthorClass(
                b.user.to_string(),
                job.to_string(),
                class.to_string(),
            ))),
            LabelKind::Review => Some(Cow::Owned(Bitmap::new())),
            LabelKind::Prediction | LabelKind::Inference if !b.predictions => Some(Cow::Owned(Bitmap::new())),
            LabelKind::Prediction | LabelKind::Inference => None,
        }
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
