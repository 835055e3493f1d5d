//! Creating projects and changing their records (settings, members). Looking them up is
//! the engine's (it keeps them in memory).

use std::collections::BTreeMap;

use crate::engine::Db;
use crate::model::error::{Error, Result};
use crate::model::event::Action;
use crate::model::project::{check_name, Project, ProjectId, Schema, Settings};
use crate::store::keys;
use crate::store::keys::describe;

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

impl Db {
    /// Changes the project's settings as `f` does, after checking the result
    /// ([`Settings::validate`]); one `SettingChanged` event per setting whose value
    /// changed. Returns the names of the settings that changed (none: nothing written).
    pub fn change_settings(&self, actor: &str, project: &str, f: impl FnOnce(&mut Settings)) -> Result<Vec<String>> {
        check_name("actor", actor)?;
        let mut changed = Vec::new();
        self.update_project(actor, project, |p| {
            let before = p.settings.to_json();
            f(&mut p.settings);
            p.settings.validate()?;
            let after = p.settings.to_json();
            let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
                return Ok(Vec::new());
            };
            let mut actions = Vec::new();
            for (name, value) in after {
                let old = before.get(name).cloned().unwrap_or_default();
                if &old != value {
                    changed.push(name.clone());
                    actions.push(Action::SettingChanged {
                        project: p.id,
                        name: name.clone(),
                        before: old.to_string(),
                        after: value.to_string(),
                    });
                }
            }
            Ok(actions)
        })?;
        Ok(changed)
    }

    /// Rewrites the project record as `f` changes it, with the events `f` returns (none:
    /// nothing changed, nothing is written), then publishes it to readers. `f` sees the
    /// stored record, read under the writer lock: two changes never start from the same
    /// record, even before the first is published.
    pub(crate) fn update_project(
        &self,
        actor: &str,
        project: &str,
        f: impl FnOnce(&mut Project) -> Result<Vec<Action>>,
    ) -> Result<()> {
        let id = self.project(project)?.id;
        self.write(|txn| {
            let key = keys::project(id);
            let mut p: Project = txn.store().get(&key)?.ok_or_else(|| Error::Corruption {
                key: describe(&key),
                reason: "the project record is missing".into(),
            })?;
            let actions = f(&mut p)?;
            if actions.is_empty() {
                return Ok(());
            }
            txn.put_project(p);
            for action in actions {
                txn.event(actor, action);
            }
            Ok(())
        })
    }
}
