//! Projects: a name, a schema of jobs with closed class lists, members and settings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::error::{Error, Result};

/// Identifier of a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProjectId(pub u32);

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "project#{}", self.0)
    }
}

/// Longest project, job or class name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Most classes a job may have.
pub const MAX_CLASSES: usize = 10_000;

/// What a job asks annotators to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobKind {
    /// Pick a class (or several when `multi`) for the whole asset.
    Classification {
        /// Several classes may be chosen.
        multi: bool,
    },
    /// Entities in a text: byte ranges with a class.
    Spans,
    /// Objects in an image: boxes in pixels with a class.
    Boxes,
}

impl JobKind {
    /// The schema-file name of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Classification { multi: false } => "classification",
            JobKind::Classification { multi: true } => "multi-classification",
            JobKind::Spans => "spans",
            JobKind::Boxes => "boxes",
        }
    }
}

/// One labelling job of a schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Name, unique in the schema.
    pub name: String,
    /// What is asked.
    pub kind: JobKind,
    /// The closed list of classes.
    pub classes: Vec<String>,
}

impl Job {
    /// Whether `class` is one of this job's classes.
    pub fn has_class(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == class)
    }
}

/// The jobs of a project.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Schema {
    /// The jobs, in declaration order.
    pub jobs: Vec<Job>,
}

impl Schema {
    /// The job with this name.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// Checks names, uniqueness and limits.
    pub fn validate(&self) -> Result<()> {
        if self.jobs.is_empty() {
            return Err(Error::InvalidSchema("a schema needs at least one job".into()));
        }
        let mut names = BTreeSet::new();
        for job in &self.jobs {
            check_name("job name", &job.name).map_err(|e| Error::InvalidSchema(e.to_string()))?;
            if !names.insert(job.name.as_str()) {
                return Err(Error::InvalidSchema(format!("job {:?} is declared twice", job.name)));
            }
            if job.classes.is_empty() {
                return Err(Error::InvalidSchema(format!("job {:?} has no classes", job.name)));
            }
            if job.classes.len() > MAX_CLASSES {
                return Err(Error::InvalidSchema(format!(
                    "job {:?} has {} classes, more than the limit of {MAX_CLASSES}",
                    job.name,
                    job.classes.len()
                )));
            }
            let mut classes = BTreeSet::new();
            for class in &job.classes {
                check_name("class name", class)
                    .map_err(|e| Error::InvalidSchema(format!("job {:?}: {e}", job.name)))?;
                if !classes.insert(class.as_str()) {
                    return Err(Error::InvalidSchema(format!(
                        "job {:?}: class {class:?} is declared twice",
                        job.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Parses the schema file format: `{"jobs": [{"name", "kind", "classes"}]}` where
    /// kind is `classification`, `multi-classification` (or `"multi": true`), `spans` or `boxes`.
    pub fn from_json(text: &str) -> Result<Schema> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            jobs: Vec<JobFile>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct JobFile {
            name: String,
            kind: String,
            #[serde(default)]
            multi: bool,
            classes: Vec<String>,
        }
        let file: File = serde_json::from_str(text).map_err(|e| Error::InvalidSchema(e.to_string()))?;
        let mut jobs = Vec::with_capacity(file.jobs.len());
        for j in file.jobs {
            let kind = match j.kind.as_str() {
                "classification" => JobKind::Classification { multi: j.multi },
                "multi-classification" | "multiclass" => JobKind::Classification { multi: true },
                "spans" | "ner" | "entities" => JobKind::Spans,
                "boxes" | "objects" | "bbox" => JobKind::Boxes,
                other => {
                    let expected = "classification, multi-classification, spans or boxes";
                    let name = &j.name;
                    return Err(Error::InvalidSchema(format!(
                        "job {name:?}: unknown kind {other:?} (expected {expected})"
                    )));
                }
            };
            jobs.push(Job {
                name: j.name,
                kind,
                classes: j.classes,
            });
        }
        let schema = Schema { jobs };
        schema.validate()?;
        Ok(schema)
    }

    /// The schema file format of [`Schema::from_json`].
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "jobs": self.jobs.iter().map(|j| serde_json::json!({
                "name": j.name,
                "kind": j.kind.as_str(),
                "classes": j.classes,
            })).collect::<Vec<_>>()
        })
    }
}

/// Checks a user-facing name: non-empty, within [`MAX_NAME_LEN`], no control characters.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(what, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            what,
            format!("{} bytes, over the limit of {MAX_NAME_LEN}", name.len()),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(what, format!("{name:?} contains a control character")));
    }
    Ok(())
}

/// A member's role in a project (access control builds on these; docs/access.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Everything, including members and settings.
    Admin,
    /// Manages the queue and reads every label.
    TeamManager,
    /// Reviews labels.
    Reviewer,
    /// Labels assets; sees only their own labels.
    Labeler,
    /// Reads snapshots (training jobs).
    ReadOnly,
}

impl Role {
    /// Every role, from the most rights to the fewest.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::TeamManager,
        Role::Reviewer,
        Role::Labeler,
        Role::ReadOnly,
    ];

    /// The role's name: `admin`, `team-manager`, `reviewer`, `labeler`, `read-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TeamManager => "team-manager",
            Role::Reviewer => "reviewer",
            Role::Labeler => "labeler",
            Role::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            Error::invalid("role", format!("{s:?} is not one of {}", names.join(", ")))
        })
    }
}

/// A project member: a user name (authenticated by the application) with one role and,
/// optionally, a data scope limiting the assets the member can see or touch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's role.
    pub role: Role,
    /// A query in the query language (docs/query.md); `None`: every asset.
    pub scope: Option<String>,
}

/// Project settings used by the workflow, access control and routing.
///
/// Stored as JSON inside the project record, so that a setting added later reads as its
/// default from an older record: every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Distinct human annotators needed before an asset is `LABELED`.
    pub consensus: u32,
    /// Fraction of labelled assets that go to review (0..=1).
    pub review_coverage: f32,
    /// Fraction of queue hand-outs that are honeypots (0..=1).
    pub honeypot_rate: f32,
    /// Production routing thresholds: `job` or `job.class` → minimum confidence.
    pub routing: BTreeMap<String, f32>,
    /// Whether labelers see predictions and inferences (blind consensus hides every
    /// other human's labels either way).
    pub show_predictions_to_labelers: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            consensus: 1,
            review_coverage: 0.0,
            honeypot_rate: 0.0,
            routing: BTreeMap::new(),
            show_predictions_to_labelers: true,
        }
    }
}

impl Settings {
    /// Refuses settings out of their ranges, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let share = |name: &str, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(
                    format!("setting {name}"),
                    format!("{v} is not in 0..=1"),
                ))
            }
        };
        if self.consensus == 0 {
            return Err(Error::invalid("setting consensus", "must be at least 1"));
        }
        share("review_coverage", self.review_coverage)?;
        share("honeypot_rate", self.honeypot_rate)?;
        for (target, t) in &self.routing {
            share(&format!("routing.{target}"), *t)?;
        }
        Ok(())
    }

    /// The settings as a JSON object, one key per setting.
    pub fn to_json(&self) -> serde_json::Value {
        // Plain numbers, strings and maps with string keys: serialization cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Serializes [`Settings`] as a JSON string inside a bincode record (see [`Settings`]).
mod settings_as_json {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use super::Settings;

    pub(super) fn serialize<S: Serializer>(settings: &Settings, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&settings.to_json().to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Settings, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(|e| D::Error::custom(format!("settings: {e}")))
    }
}

/// A project as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Its id.
    pub id: ProjectId,
    /// Its unique name.
    pub name: String,
    /// Its jobs.
    pub schema: Schema,
    /// Members by user name.
    pub members: BTreeMap<String, Member>,
    /// Workflow settings.
    #[serde(with = "settings_as_json")]
    pub settings: Settings,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: u64,
}
