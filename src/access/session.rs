//! A user's handle on the database, and the one place where calls are authorized:
//! [`Session::authorize`].

use std::collections::HashMap;
use std::sync::Arc;

use croaring::Bitmap;
use parking_lot::Mutex;

use super::policy::{grant, Grant, Operation};
use crate::engine::Db;
use crate::model::asset::{Asset, AssetId};
use crate::model::error::{Error, Result};
use crate::model::event::{Action, Seq};
use crate::model::label::{Label, LabelKind, Source};
use crate::model::project::{Project, ProjectId, Role};
use crate::query::{self, ScopedLeaves, View};

/// A handle that acts for one user: every call is authorized against the user's role
/// and data scope in the project it touches before it reads or writes
/// ([`Db::as_user`]), or for the embedding application with every right
/// ([`Db::as_application`]). Cheap to clone; clones share the cache of scope sets.
#[derive(Clone)]
pub struct Session {
    pub(super) db: Db,
    principal: Principal,
    scopes: Arc<Mutex<ScopeCache>>,
}

#[derive(Clone)]
enum Principal {
    /// The application, writing events as this actor.
    Application(Arc<str>),
    /// A user, authorized on every call.
    User(Arc<str>),
}

/// Scope sets by project and scope query, with the index seq they were evaluated at:
/// an entry is used while the indexes have not moved, and evaluated again after a write.
type ScopeCache = HashMap<(ProjectId, String), (Seq, Arc<Scope>)>;

/// A data scope's assets.
pub(super) struct Scope {
    /// The assets in scope.
    pub visible: Bitmap,
    /// Query leaves cut to the scope, filled as queries use them.
    pub leaves: ScopedLeaves,
}

/// What a call was granted: the project, and what of it the caller sees.
pub(super) struct Access {
    pub project: Arc<Project>,
    /// The caller's role (`None`: the application).
    pub role: Option<Role>,
    /// `Blind` for blind consensus, else `Allow`.
    pub grant: Grant,
    /// The assets in the member's data scope (`None`: no scope).
    pub scope: Option<Arc<Scope>>,
    /// The asset the call is about, when it names one.
    pub asset: Option<Asset>,
}

/// What a call is about.
pub(super) enum Target<'a> {
    /// A project by name.
    Project(&'a str),
    /// An asset (and through it, its project).
    Asset(AssetId),
}

impl Db {
    /// A handle acting for `user`, a name the application has authenticated: every call
    /// is authorized by the user's membership of the project it touches
    /// (docs/access.md). `Db`'s own methods stay the application's, with every right.
    pub fn as_user(&self, user: &str) -> Result<Session> {
        crate::model::project::check_name("user", user)?;
        Ok(Session::new(self.clone(), Principal::User(user.into())))
    }

    /// A handle with every right, as `Db`'s own methods, writing events as `actor`:
    /// for code that serves users and the application alike (the CLI without `--user`).
    pub fn as_application(&self, actor: &str) -> Result<Session> {
        crate::model::project::check_name("actor", actor)?;
        Ok(Session::new(self.clone(), Principal::Application(actor.into())))
    }
}

impl Session {
    fn new(db: Db, principal: Principal) -> Session {
        Session {
            db,
            principal,
            scopes: Arc::default(),
        }
    }

    /// The user this session acts for (`None`: the application).
    pub fn user(&self) -> Option<&str> {
        match &self.principal {
            Principal::User(u) => Some(u),
            Principal::Application(_) => None,
        }
    }

    /// The actor its writes are recorded as: the user, or the application's actor.
    pub fn actor(&self) -> &str {
        match &self.principal {
            Principal::User(u) | Principal::Application(u) => u,
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The one authorization check: may this session do `op` on `target`? Resolves the
    /// project, the caller's membership and grant, their scope set, and the asset the
    /// call names (which must lie in the scope). A refusal writes an `AccessDenied`
    /// event and returns [`Error::Denied`]; an unknown project or asset is that error.
    pub(super) fn authorize(&self, op: Operation, target: Target<'_>) -> Result<Access> {
        let (project, asset) = match target {
            Target::Project(name) => (self.db.project(name)?, None),
            Target::Asset(id) => {
                let asset = self.db.asset(id)?;
                (self.db.project_by_id(asset.project)?, Some(asset))
            }
        };
        let resource = || match &asset {
            Some(a) => format!("asset {} ({:?})", a.id, a.external_id),
            None => format!("project {:?}", project.name),
        };
        let Principal::User(user) = &self.principal else {
            return Ok(Access {
                project,
                role: None,
                grant: Grant::Allow,
                scope: None,
                asset,
            });
        };
        let Some(member) = project.members.get(user.as_ref()) else {
            return Err(self.deny(op.as_str(), Some(project.id), resource()));
        };
        let (role, g) = (member.role, grant(member.role, op));
        if g == Grant::Deny {
            return Err(self.deny(op.as_str(), Some(project.id), resource()));
        }
        let scope = match &member.scope {
            Some(q) => Some(self.scope_set(&project, q)?),
            None => None,
        };
        if let (Some(a), Some(s)) = (&asset, &scope) {
            if !s.visible.contains(a.id.0) {
                return Err(self.deny(op.as_str(), Some(project.id), resource()));
            }
        }
        Ok(Access {
            project,
            role: Some(role),
            grant: g,
            scope,
            asset,
        })
    }

    /// Records a refused call (an `AccessDenied` event, nothing else) and returns the
    /// error to give the caller; if the event cannot be written, that error instead.
    pub(super) fn deny(&self, action: &str, project: Option<ProjectId>, resource: String) -> Error {
        let written = self.db.write(|txn| {
            txn.event(
                self.actor(),
                Action::AccessDenied {
                    project,
                    action: action.to_string(),
                    resource: resource.clone(),
                },
            );
            Ok(())
        });
        match written {
            Ok(()) => Error::Denied {
                user: self.actor().to_string(),
                action: action.to_string(),
                resource,
            },
            Err(e) => e,
        }
    }

    /// The assets of a scope query, from the cache while the indexes have not moved.
    fn scope_set(&self, project: &Project, scope: &str) -> Result<Arc<Scope>> {
        let seq = self.db.indexes().seq;
        let key = (project.id, scope.to_string());
        if let Some((at, set)) = self.scopes.lock().get(&key) {
            if *at == seq {
                return Ok(set.clone());
            }
        }
        let set = Arc::new(Scope {
            visible: self.db.scope_set(project, &query::parse(scope)?)?,
            leaves: ScopedLeaves::default(),
        });
        self.scopes.lock().insert(key, (seq, set.clone()));
        Ok(set)
    }
}

impl Access {
    /// Whether the caller sees this asset (in their scope).
    pub fn sees(&self, id: AssetId) -> bool {
        self.scope.as_ref().is_none_or(|s| s.visible.contains(id.0))
    }

    /// Whether the caller sees this label: blind views see their own annotations and,
    /// when the project shows them, machine labels.
    pub fn sees_label(&self, user: &str, label: &Label) -> bool {
        if self.grant != Grant::Blind {
            return true;
        }
        match (&label.kind, &label.source) {
            (LabelKind::Annotation, Source::Human { user: author }) => author == user,
            (LabelKind::Prediction | LabelKind::Inference, _) => self.project.settings.show_predictions_to_labelers,
            _ => false,
        }
    }

    /// The view the query evaluator applies for this caller (`None`: everything).
    pub fn view<'v>(&'v self, user: Option<&'v str>) -> Option<View<'v>> {
        let blind = match (self.grant, user) {
            (Grant::Blind, Some(user)) => Some(query::Blind {
                user,
                predictions: self.project.settings.show_predictions_to_labelers,
            }),
            _ => None,
        };
        if blind.is_none() && self.scope.is_none() {
            return None;
        }
        Some(View {
            visible: self.scope.as_ref().map(|s| &s.visible),
            leaves: self.scope.as_ref().map(|s| &s.leaves),
            blind,
        })
    }
}
