//! One module per command group; each takes the global options and its arguments.

pub(crate) mod demo;
pub(crate) mod find;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod member;
pub(crate) mod model;
pub(crate) mod project;
pub(crate) mod snapshot;
pub(crate) mod verify;

use std::path::PathBuf;

use anyhow::{bail, Result};
use labeldb::{Db, Session};

/// The options every command takes.
pub(crate) struct Global {
    /// The database directory.
    pub(crate) db: PathBuf,
    /// sled's page cache in MiB.
    pub(crate) cache_mib: u64,
    /// `--user`: act through this user's session; `None`: as the application.
    pub(crate) user: Option<String>,
}

impl Global {
    /// Opens the existing database (only `init` and `demo` create one), with a note on
    /// stderr when opening upgraded it or rebuilt derived data.
    /// The handle commands act through: the `--user`'s session, authorized on every
    /// call, or without `--user` the application's, recording `actor`.
    pub(crate) fn session(&self, db: &Db, actor: &str) -> Result<Session> {
        Ok(match &self.user {
            Some(user) => db.as_user(user)?,
            None => db.as_application(actor)?,
        })
    }

    /// Refuses `--user` for a command that only the application runs.
    pub(crate) fn application_only(&self, what: &str) -> Result<()> {
        if let Some(user) = &self.user {
            bail!("{what} acts on the whole database, as the application: run it without --user (given: {user:?})");
        }
        Ok(())
    }

    pub(crate) fn open(&self) -> Result<Db> {
        if !self.db.exists() {
            bail!(
                "no database at {} (run `labeldb init` first, or pass --db)",
                self.db.display()
            );
        }
        let db = Db::builder().cache_bytes(self.cache_mib << 20).open(&self.db)?;
        // An upgrade or derived data rebuilt on open is no error, but worth knowing of.
        let info = db.index_info();
        if let Some(from) = info.upgraded_from {
            eprintln!(
                "note: upgraded the database from format {from} to {}",
                labeldb::FORMAT_VERSION
            );
        }
        for (what, why) in [
            ("the label/state indexes were", &info.rebuilt),
            ("the text index was", &info.text_rebuilt),
        ] {
            if let Some(why) = why {
                eprintln!("note: {what} rebuilt from primary data on open: {why}");
            }
        }
        Ok(db)
    }
}
