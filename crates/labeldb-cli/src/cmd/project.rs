//! `labeldb init` and `labeldb project create|list`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use labeldb::{project_json, Db, Schema};
use serde_json::json;

use super::Global;
use crate::args::ProjectCommand;
use crate::out::{print_json, say};

pub(crate) fn init(g: &Global) -> Result<ExitCode> {
    if g.db.exists() {
        bail!("{} already exists", g.db.display());
    }
    let db = Db::builder().cache_bytes(g.cache_mib << 20).open(&g.db)?;
    db.flush()?;
    say!(
        io::stdout(),
        "initialized {} (format {})",
        g.db.display(),
        labeldb::FORMAT_VERSION
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(g: &Global, command: ProjectCommand) -> Result<ExitCode> {
    let db = g.open()?;
    let mut out = io::stdout().lock();
    match command {
        ProjectCommand::Create(a) => {
            g.application_only("project create")?;
            let text = std::fs::read_to_string(&a.schema).with_context(|| format!("reading {}", a.schema.display()))?;
            let schema = Schema::from_json(&text).with_context(|| format!("in {}", a.schema.display()))?;
            let id = db.create_project(&a.actor, &a.name, schema)?;
            db.flush()?;
            say!(out, "created project {:?} ({id})", a.name);
        }
        ProjectCommand::List(a) => {
            let mut projects = db.projects();
            if let Some(user) = &g.user {
                // A user lists the projects they are a member of.
                projects.retain(|p| p.members.contains_key(user));
            }
            if a.json {
                drop(out);
                print_json(&json!(projects.iter().map(|p| project_json(p)).collect::<Vec<_>>()))?;
            } else {
                for p in projects {
                    let jobs: Vec<String> = p
                        .schema
                        .jobs
                        .iter()
                        .map(|j| format!("{} ({}, {} classes)", j.name, j.kind.as_str(), j.classes.len()))
                        .collect();
                    say!(out, "{:<24} {}", p.name, jobs.join(", "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
