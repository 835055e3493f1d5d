//! Project members: a user name with one role and an optional data scope, stored in the
//! project record and changed with an event each.

use crate::engine::Db;
use crate::model::error::{Error, Result};
use crate::model::event::Action;
use crate::model::project::{check_name, Member, Project, Role};

impl Db {
    /// Makes `user` a member of the project with this role and scope (a query in the
    /// query language; `None`: every asset), or changes their role or scope. A scope that
    /// does not parse is refused; so is taking the admin role from a project's last admin.
    /// Setting what is already set writes nothing.
    pub fn set_member(&self, actor: &str, project: &str, user: &str, role: Role, scope: Option<&str>) -> Result<()> {
        check_name("actor", actor)?;
        check_name("user", user)?;
        self.project(project)?;
        if let Some(q) = scope {
            crate::query::parse(q)?;
        }
        let member = Member {
            role,
            scope: scope.map(str::to_string),
        };
        self.update_project(actor, project, |p| {
            if p.members.get(user) == Some(&member) {
                return Ok(Vec::new());
            }
            if role != Role::Admin {
                refuse_last_admin(p, user)?;
            }
            p.members.insert(user.to_string(), member.clone());
            Ok(vec![Action::MemberSet {
                project: p.id,
                user: user.to_string(),
                role,
                scope: member.scope.clone(),
            }])
        })
    }

    /// Removes `user` from the project's members; refused for a user who is no member
    /// and for the project's last admin.
    pub fn remove_member(&self, actor: &str, project: &str, user: &str) -> Result<()> {
        check_name("actor", actor)?;
        self.update_project(actor, project, |p| {
            if !p.members.contains_key(user) {
                return Err(Error::UnknownMember {
                    project: p.name.clone(),
                    user: user.to_string(),
                });
            }
            refuse_last_admin(p, user)?;
            p.members.remove(user);
            Ok(vec![Action::MemberRemoved {
                project: p.id,
                user: user.to_string(),
            }])
        })
    }

    /// The project's members by user name.
    pub fn members(&self, project: &str) -> Result<Vec<(String, Member)>> {
        Ok(self.project(project)?.members.clone().into_iter().collect())
    }
}

/// Refuses a change that takes the admin role from `user` when no other admin is left.
fn refuse_last_admin(p: &Project, user: &str) -> Result<()> {
    let is_admin = p.members.get(user).is_some_and(|m| m.role == Role::Admin);
    let others = p.members.iter().any(|(u, m)| u != user && m.role == Role::Admin);
    if is_admin && !others {
        return Err(Error::LastAdmin {
            project: p.name.clone(),
            user: user.to_string(),
        });
    }
    Ok(())
}
