//! `labeldb member add|list|remove`: a project's members, roles and data scopes.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use labeldb::Role;
use serde_json::json;

use super::Global;
use crate::args::MemberCommand;
use crate::out::{print_json, say};

pub(crate) fn run(g: &Global, command: MemberCommand) -> Result<ExitCode> {
    let db = g.open()?;
    let actor = match &command {
        MemberCommand::Add(a) => a.actor.as_str(),
        MemberCommand::Remove(a) => a.actor.as_str(),
        MemberCommand::List(_) => "cli",
    };
    let s = g.session(&db, actor)?;
    let mut out = io::stdout().lock();
    match command {
        MemberCommand::Add(a) => {
            let role: Role = a.role.parse()?;
            s.set_member(&a.project, &a.user, role, a.scope.as_deref())?;
            db.flush()?;
            match &a.scope {
                Some(q) => say!(out, "member {:?} of {}: {role}, scope {q}", a.user, a.project),
                None => say!(out, "member {:?} of {}: {role}", a.user, a.project),
            }
        }
        MemberCommand::List(a) => {
            let members = s.members(&a.project)?;
            if a.json {
                drop(out);
                let list: Vec<_> = members
                    .iter()
                    .map(|(user, m)| json!({"user": user, "role": m.role.as_str(), "scope": m.scope}))
                    .collect();
                print_json(&json!(list))?;
            } else {
                for (user, m) in &members {
                    say!(out, "{user:<24} {:<12} {}", m.role, m.scope.as_deref().unwrap_or("*"));
                }
            }
        }
        MemberCommand::Remove(a) => {
            s.remove_member(&a.project, &a.user)?;
            db.flush()?;
            say!(out, "removed member {:?} of {}", a.user, a.project);
        }
    }
    Ok(ExitCode::SUCCESS)
}
