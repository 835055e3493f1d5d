//! Label-selection policies: which revision of each asset a dataset version takes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::error::{Error, Result};
use crate::model::label::Source;

/// Which label revision of each asset a snapshot takes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Selection {
    /// The latest review, when it accepted. Its answers, or when it has none, the answers
    /// of the revision it reviewed (`derived_from`).
    LatestReviewed,
    /// The majority of the latest human annotation of each author: annotations are
    /// grouped by identical answers, the largest group wins; on a tie, the group holding
    /// the most recent revision wins. The chosen revision is that group's most recent.
    Majority,
    /// The latest human annotation.
    LatestHuman,
    /// The latest prediction of this model version.
    Model {
        /// Model name.
        name: String,
        /// Model version.
        version: String,
    },
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selection::LatestReviewed => f.write_str("latest-reviewed"),
            Selection::Majority => f.write_str("majority"),
            Selection::LatestHuman => f.write_str("latest-human"),
            Selection::Model { name, version } => write!(f, "model:{name}@{version}"),
        }
    }
}

impl FromStr for Selection {
    type Err = Error;

    fn from_str(s: &str) -> Result<Selection> {
        Ok(match s {
            "latest-reviewed" => Selection::LatestReviewed,
            "majority" => Selection::Majority,
            "latest-human" => Selection::LatestHuman,
            other => match other.strip_prefix("model:") {
                Some(spec) => match Source::model(spec)? {
                    Source::Model { name, version } => Selection::Model { name, version },
                    _ => unreachable!("Source::model returns a model"),
                },
                None => {
                    return Err(Error::invalid(
                        "selection",
                        format!("{s:?} (expected latest-reviewed, majority, latest-human or model:NAME@VERSION)"),
                    ))
                }
            },
        })
    }
}
