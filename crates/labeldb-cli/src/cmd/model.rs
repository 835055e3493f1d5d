//! `labeldb model register`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};
use labeldb::Source;

use super::Global;
use crate::args::ModelCommand;
use crate::out::say;

pub(crate) fn run(g: &Global, command: ModelCommand) -> Result<ExitCode> {
    let ModelCommand::Register(a) = command;
    let db = g.open()?;
    let Source::Model { name, version } = Source::model(&a.model)? else {
        bail!("{:?} is not NAME@VERSION", a.model);
    };
    let info = g
        .session(&db, &a.actor)?
        .register_model(&a.project, &name, &version, &a.trained_on)?;
    db.flush()?;
    say!(
        io::stdout(),
        "registered {name}@{version}, trained on snapshot {:?} ({})",
        info.trained_on,
        info.trained_on_digest
    );
    Ok(ExitCode::SUCCESS)
}
