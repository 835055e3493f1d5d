//! The event log: an ordered, append-only record of every write.
//!
//! Each logical write appends one event in the same atomic batch as the change, so the
//! log is the audit trail, the change feed ([`crate::Db::changes_since`]) and the replay
//! source of derived indexes.

use serde::{Deserialize, Serialize};

use crate::model::asset::{AssetId, Digest, MetaValue, Status};
use crate::model::label::{LabelId, LabelKind, Source};
use crate::model::project::{ProjectId, Role};

/// Position in the event log; the first event has seq 1.
pub type Seq = u64;

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its position.
    pub seq: Seq,
    /// When, milliseconds since the Unix epoch.
    pub at: u64,
    /// Who: a user, `model:name@version` or `rule:name@version`.
    pub actor: String,
    /// What changed.
    pub action: Action,
}

/// What an event did, with the before and after values where something changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// A project was created.
    ProjectCreated {
        /// The project.
        project: ProjectId,
        /// Its name.
        name: String,
    },
    /// Assets were added (ids `first..=last`, consecutive) with `labels` labels.
    AssetsAdded {
        /// The project.
        project: ProjectId,
        /// First new asset.
        first: AssetId,
        /// Last new asset.
        last: AssetId,
        /// Labels written with them.
        labels: u64,
    },
    /// A label revision was written.
    LabelAdded {
        /// The asset.
        asset: AssetId,
        /// The new revision.
        label: LabelId,
        /// Its kind.
        kind: LabelKind,
        /// Its source.
        source: Source,
        /// The status change it caused, if any: (before, after).
        status: Option<(Status, Status)>,
    },
    /// The status changed.
    StatusChanged {
        /// The asset.
        asset: AssetId,
        /// Before.
        before: Status,
        /// After.
        after: Status,
    },
    /// A metadata key was set or removed.
    MetaChanged {
        /// The asset.
        asset: AssetId,
        /// The key.
        key: String,
        /// Before (`None`: absent).
        before: Option<MetaValue>,
        /// After (`None`: removed).
        after: Option<MetaValue>,
    },
    /// The priority changed.
    PriorityChanged {
        /// The asset.
        asset: AssetId,
        /// Before.
        before: f64,
        /// After.
        after: f64,
    },
    /// The honeypot flag changed.
    HoneypotChanged {
        /// The asset.
        asset: AssetId,
        /// After.
        after: bool,
    },
    /// The asset was soft-deleted (`true`) or restored (`false`).
    DeletedChanged {
        /// The asset.
        asset: AssetId,
        /// After.
        after: bool,
    },
    /// The asset, its labels and its index entries were removed for good.
    AssetPurged {
        /// The project.
        project: ProjectId,
        /// The asset.
        asset: AssetId,
        /// Its external id.
        external_id: String,
    },
    /// A snapshot was created.
    SnapshotCreated {
        /// The project.
        project: ProjectId,
        /// Its name.
        name: String,
        /// Its size.
        assets: u64,
        /// Its content digest.
        digest: Digest,
    },
    /// A snapshot was deleted.
    SnapshotDeleted {
        /// The project.
        project: ProjectId,
        /// Its name.
        name: String,
    },
    /// A tag was moved to a snapshot.
    SnapshotTagged {
        /// The project.
        project: ProjectId,
        /// The tag.
        tag: String,
        /// The snapshot it now names.
        name: String,
    },
    /// A model version was registered with the snapshot it was trained on.
    ModelRegistered {
        /// The project.
        project: ProjectId,
        /// `name@version`.
        model: String,
        /// The snapshot.
        trained_on: String,
    },
    /// A user became a member of a project, or their role or scope changed.
    MemberSet {
        /// The project.
        project: ProjectId,
        /// The user.
        user: String,
        /// The role.
        role: Role,
        /// The data scope (a query), if any.
        scope: Option<String>,
    },
    /// A user stopped being a member of a project.
    MemberRemoved {
        /// The project.
        project: ProjectId,
        /// The user.
        user: String,
    },
    /// A project setting changed.
    SettingChanged {
        /// The project.
        project: ProjectId,
        /// The setting's name (`consensus`, `show_predictions_to_labelers`).
        name: String,
        /// Its value before, as JSON.
        before: String,
        /// Its value after, as JSON.
        after: String,
    },
    /// A user's call was refused by access control; nothing else was written. The
    /// event's actor is the user.
    AccessDenied {
        /// The project the call was about, when it named one that exists.
        project: Option<ProjectId>,
        /// What the user tried (`annotate`, `read-asset`, ...).
        action: String,
        /// What they tried it on (`asset 42`, `project "mail"`).
        resource: String,
    },
}

impl Action {
    /// The single asset this action is about, if it is about one.
    pub fn asset(&self) -> Option<AssetId> {
        match self {
            Action::ProjectCreated { .. }
            | Action::AssetsAdded { .. }
            | Action::SnapshotCreated { .. }
            | Action::SnapshotDeleted { .. }
            | Action::SnapshotTagged { .. }
            | Action::ModelRegistered { .. }
            | Action::MemberSet { .. }
            | Action::MemberRemoved { .. }
            | Action::SettingChanged { .. }
            | Action::AccessDenied { .. } => None,
            Action::LabelAdded { asset, .. }
            | Action::StatusChanged { asset, .. }
            | Action::MetaChanged { asset, .. }
            | Action::PriorityChanged { asset, .. }
            | Action::HoneypotChanged { asset, .. }
            | Action::DeletedChanged { asset, .. }
            | Action::AssetPurged { asset, .. } => Some(*asset),
        }
    }

    /// Every asset this action touches.
    pub fn assets(&self) -> impl Iterator<Item = AssetId> {
        let (lo, hi) = match self {
            Action::ProjectCreated { .. }
            | Action::SnapshotCreated { .. }
            | Action::SnapshotDeleted { .. }
            | Action::SnapshotTagged { .. }
            | Action::ModelRegistered { .. }
            | Action::MemberSet { .. }
            | Action::MemberRemoved { .. }
            | Action::SettingChanged { .. }
            | Action::AccessDenied { .. } => (1, 0),
            Action::AssetsAdded { first, last, .. } => (first.0, last.0),
            other => {
                let a = other.asset().map_or(0, |a| a.0);
                (a, a)
            }
        };
        (lo..=hi).map(AssetId)
    }

    /// A short human-readable description.
    pub fn describe(&self) -> String {
        match self {
            Action::ProjectCreated { name, .. } => format!("created project {name:?}"),
            Action::AssetsAdded {
                first, last, labels, ..
            } => {
                format!(
                    "added {} assets ({first}..{last}) with {labels} labels",
                    last.0 - first.0 + 1
                )
            }
            Action::LabelAdded {
                asset,
                label,
                kind,
                status,
                ..
            } => {
                let mut s = format!("{kind} {label} on {asset}");
                if let Some((b, a)) = status {
                    s.push_str(&format!(", status {b} -> {a}"));
                }
                s
            }
            Action::StatusChanged { asset, before, after } => format!("status of {asset}: {before} -> {after}"),
            Action::MetaChanged {
                asset,
                key,
                before,
                after,
            } => format!(
                "meta {key} of {asset}: {} -> {}",
                before.as_ref().map_or("-".to_string(), |v| v.to_string()),
                after.as_ref().map_or("-".to_string(), |v| v.to_string())
            ),
            Action::PriorityChanged { asset, before, after } => format!("priority of {asset}: {before} -> {after}"),
            Action::HoneypotChanged { asset, after } => format!("honeypot of {asset}: {after}"),
            Action::DeletedChanged { asset, after: true } => format!("deleted {asset}"),
            Action::DeletedChanged { asset, after: false } => format!("restored {asset}"),
            Action::AssetPurged { asset, external_id, .. } => format!("purged {asset} ({external_id:?})"),
            Action::SnapshotCreated {
                name, assets, digest, ..
            } => {
                format!("created snapshot {name:?}: {assets} assets, digest {digest}")
            }
            Action::SnapshotDeleted { name, .. } => format!("deleted snapshot {name:?}"),
            Action::SnapshotTagged { tag, name, .. } => format!("tag {tag:?} -> snapshot {name:?}"),
            Action::ModelRegistered { model, trained_on, .. } => {
                format!("registered model {model} trained on snapshot {trained_on:?}")
            }
            Action::MemberSet { user, role, scope, .. } => match scope {
                Some(q) => format!("member {user:?}: {role}, scope {q}"),
                None => format!("member {user:?}: {role}"),
            },
            Action::MemberRemoved { user, .. } => format!("removed member {user:?}"),
            Action::SettingChanged {
                name, before, after, ..
            } => format!("setting {name}: {before} -> {after}"),
            Action::AccessDenied { action, resource, .. } => format!("denied {action} on {resource}"),
        }
    }
}
