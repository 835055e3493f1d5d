//! The filter AST: one tree for the query language and for the Rust API.
//!
//! Applications build [`Filter`] values directly; the textual language
//! (docs/query.md) parses into the same tree.

use crate::model::asset::{MetaValue, Status};
use crate::model::label::LabelKind;

pub use crate::index::numeric::CmpOp;
pub use crate::index::text::TextQuery;

/// A filter over the assets of one project. It evaluates to a set of asset ids.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every asset of the project (soft-deleted ones are then left out of the result
    /// unless the filter mentions `deleted`).
    All,
    /// `status:todo` — assets in this status.
    Status(Status),
    /// `label.JOB:CLASS`, `prediction.JOB:CLASS`, `inference.JOB:CLASS`, `review.JOB:CLASS`
    /// — assets whose latest label of that kind (per author for annotations, per model
    /// for predictions/inferences) answers CLASS for JOB.
    Class {
        /// Which labels are looked at.
        kind: LabelKind,
        /// The job name.
        job: String,
        /// The class name.
        class: String,
    },
    /// `author:alice` — assets with a human annotation by this user.
    Author(String),
    /// `model:clf@3` (or `model:clf` for any version) — assets with a label from this model.
    Model(String),
    /// `rule:products@1` (or `rule:products`) — assets with a label from this rule.
    Rule(String),
    /// `meta.KEY:VALUE` — assets whose metadata KEY equals VALUE (strings and booleans).
    Meta {
        /// Metadata key.
        key: String,
        /// Value compared for equality.
        value: MetaValue,
    },
    /// `honeypot` — honeypot assets.
    Honeypot,
    /// `deleted` — soft-deleted assets (the only filter that reaches them).
    Deleted,
    /// `FIELD OP NUMBER`, e.g. `prediction.score < 0.7`, `priority >= 5`.
    Numeric {
        /// The numeric field compared.
        field: NumField,
        /// The comparison.
        op: CmpOp,
        /// The right-hand side.
        value: f64,
    },
    /// `text:word`, `text:"a phrase"`, `deliv*` or a bare word — full-text search.
    Text(TextQuery),
    /// Both sides hold.
    And(Box<Filter>, Box<Filter>),
    /// Either side holds.
    Or(Box<Filter>, Box<Filter>),
    /// The inner filter does not hold (relative to every asset of the project).
    Not(Box<Filter>),
}

impl Filter {
    /// `self AND other`.
    pub fn and(self, other: Filter) -> Filter {
        Filter::And(Box::new(self), Box::new(other))
    }

    /// `self OR other`.
    pub fn or(self, other: Filter) -> Filter {
        Filter::Or(Box::new(self), Box::new(other))
    }

    /// `NOT self`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Filter {
        Filter::Not(Box::new(self))
    }
}

/// A numeric field of an asset, for [`Filter::Numeric`].
#[derive(Clone, Debug, PartialEq)]
pub enum NumField {
    /// `prediction.score` / `prediction.JOB.score` (and `inference.…`): the top class
    /// score of the latest label of that kind for JOB; without a job, the lowest such
    /// score over the jobs (the asset's least confident answer).
    Score {
        /// [`LabelKind::Prediction`] or [`LabelKind::Inference`].
        kind: LabelKind,
        /// Restrict to one job.
        job: Option<String>,
    },
    /// `priority`.
    Priority,
    /// `seconds`: total seconds spent by humans on the asset's annotations.
    Seconds,
    /// `created`: creation time, milliseconds since the Unix epoch.
    Created,
    /// `labels`: number of distinct human annotators.
    Labels,
}
