//! Creating projects. Looking them up is the engine's (it keeps them in memory).

use std::collections::BTreeMap;

use crate::engine::Db;
use crate::model::error::{Error, Result};
use crate::model::event::Action;
use crate::model::project::{check_name, Project, ProjectId, Schema, Settings};
use crate::store::keys;

impl Db {
    /// Creates a project with this schema and default settings.
    pub fn create_project(&self, actor: &str, name: &str, schema: Schema) -> Result<ProjectId> {
        check_name("project name", name)?;
        check_name("actor", actor)?;
        schema.validate()?;
        self.write(|txn| {
            if txn.store().contains(&keys::project_name(name))? {
                return Err(Error::ProjectExists(name.to_string()));
            }
            let id = ProjectId(txn.counters().next_project);
            txn.counters().next_project += 1;
            let project = Project {
                id,
                name: name.to_string(),
                schema,
                members: BTreeMap::new(),
                settings: Settings::default(),
                created_at: txn.now(),
            };
            txn.put_project(project);
            txn.batch().put(keys::project_name(name), &id);
            txn.event(
                actor,
                Action::ProjectCreated {
                    project: id,
                    name: name.to_string(),
                },
            );
            Ok(id)
        })
    }
}
