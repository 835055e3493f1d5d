//! The default policy: what each role may do, as one table (docs/access.md shows the
//! same table; a test holds the two equal).

use std::fmt;

use crate::model::project::Role;

/// What a call does, as access control sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Read assets, labels, queries, search, facets and stats.
    Read,
    /// Write an annotation as oneself.
    Annotate,
    /// Write a review as oneself, of someone else's annotation.
    Review,
    /// Write machine labels (predictions, inferences) or labels in another's name.
    Predict,
    /// Add assets, import, change status, metadata, priority and honeypot flags.
    EditAssets,
    /// Soft-delete, restore and purge assets.
    DeleteAssets,
    /// List, open, verify and export snapshots; read registered models.
    ReadSnapshots,
    /// Create and tag snapshots; register models.
    WriteSnapshots,
    /// Delete snapshots.
    DeleteSnapshots,
    /// List the members.
    ReadMembers,
    /// Add, change and remove members (team managers: labelers and reviewers only).
    ManageMembers,
    /// Change the project's settings.
    ChangeSettings,
    /// Read the audit trail.
    ReadAudit,
}

impl Operation {
    /// Every operation, in the order of the policy table.
    pub const ALL: [Operation; 13] = [
        Operation::Read,
        Operation::Annotate,
        Operation::Review,
        Operation::Predict,
        Operation::EditAssets,
        Operation::DeleteAssets,
        Operation::ReadSnapshots,
        Operation::WriteSnapshots,
        Operation::DeleteSnapshots,
        Operation::ReadMembers,
        Operation::ManageMembers,
        Operation::ChangeSettings,
        Operation::ReadAudit,
    ];

    /// Its name in errors, events and docs/access.md.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Annotate => "annotate",
            Operation::Review => "review",
            Operation::Predict => "predict",
            Operation::EditAssets => "edit-assets",
            Operation::DeleteAssets => "delete-assets",
            Operation::ReadSnapshots => "read-snapshots",
            Operation::WriteSnapshots => "write-snapshots",
            Operation::DeleteSnapshots => "delete-snapshots",
            Operation::ReadMembers => "read-members",
            Operation::ManageMembers => "manage-members",
            Operation::ChangeSettings => "change-settings",
            Operation::ReadAudit => "read-audit",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a role gets for an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Allowed, within the member's data scope.
    Allow,
    /// Allowed with blind consensus: only one's own labels (and predictions, when the
    /// project shows them to labelers) are visible.
    Blind,
    /// Refused.
    Deny,
}

impl Grant {
    fn as_str(self) -> &'static str {
        match self {
            Grant::Allow => "yes",
            Grant::Blind => "own labels",
            Grant::Deny => "no",
        }
    }
}

use Grant::{Allow as Y, Blind as B, Deny as N};

/// The policy: per operation, the grant of admin, team-manager, reviewer, labeler and
/// read-only (the order of [`Role::ALL`]). Unknown users are refused everything.
const POLICY: [(Operation, [Grant; 5]); 13] = [
    (Operation::Read, [Y, Y, Y, B, Y]),
    (Operation::Annotate, [Y, Y, Y, Y, N]),
    (Operation::Review, [Y, Y, Y, N, N]),
    (Operation::Predict, [Y, Y, N, N, N]),
    (Operation::EditAssets, [Y, Y, N, N, N]),
    (Operation::DeleteAssets, [Y, N, N, N, N]),
    (Operation::ReadSnapshots, [Y, Y, Y, N, Y]),
    (Operation::WriteSnapshots, [Y, Y, N, N, N]),
    (Operation::DeleteSnapshots, [Y, N, N, N, N]),
    (Operation::ReadMembers, [Y, Y, N, N, N]),
    (Operation::ManageMembers, [Y, Y, N, N, N]),
    (Operation::ChangeSettings, [Y, Y, N, N, N]),
    (Operation::ReadAudit, [Y, Y, N, N, N]),
];

/// What `role` gets for `op`.
pub fn grant(role: Role, op: Operation) -> Grant {
    let column = Role::ALL.iter().position(|r| *r == role).unwrap_or(Role::ALL.len());
    POLICY
        .iter()
        .find(|(o, _)| *o == op)
        .and_then(|(_, grants)| grants.get(column).copied())
        .unwrap_or(Grant::Deny)
}

/// The policy as the Markdown table of docs/access.md.
pub fn policy_table() -> String {
    let mut out = String::from("| operation |");
    for r in Role::ALL {
        out.push_str(&format!(" {r} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(Role::ALL.len()));
    out.push('\n');
    for (op, grants) in POLICY {
        out.push_str(&format!("| `{op}` |"));
        for g in grants {
            out.push_str(&format!(" {} |", g.as_str()));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_access_holds_the_policy_table_of_the_code() {
        let docs = include_str!("../../docs/access.md");
        let table = policy_table();
        assert!(docs.contains(&table), "docs/access.md must contain:\n{table}");
    }

    #[test]
    fn every_operation_has_one_row() {
        for op in Operation::ALL {
            assert_eq!(POLICY.iter().filter(|(o, _)| *o == op).count(), 1, "{op}");
        }
    }
}
