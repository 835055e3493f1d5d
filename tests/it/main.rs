//! Integration tests of labeldb, in one crate so that they link once (matklad's layout).
//!
//! Each module is one area of the specification; each test's name says what must hold.
//! The real datasets are read from [`data_dir`], never copied into the repository.

mod access;
mod bad_input;
mod compaction;
mod crash;
mod events;
mod fuzz_regressions;
mod import;
mod label_writes;
mod model;
mod model_api;
mod permissions;
mod query;
mod search;
mod snapshot;
mod soak;
mod storage;
mod tidy;
mod unicode;
mod validation;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use labeldb::{Asset, Db, Event, Label, Project, Schema, Seq};

/// The transition table documented on `Status`, written out independently.
pub const LEGAL: [(labeldb::Status, labeldb::Status); 14] = {
    use labeldb::Status::*;
    [
        (Todo, Ongoing),
        (Todo, Labeled),
        (Ongoing, Todo),
        (Ongoing, Labeled),
        (Labeled, Todo),
        (Labeled, Ongoing),
        (Labeled, ToReview),
        (Labeled, Reviewed),
        (ToReview, Todo),
        (ToReview, Ongoing),
        (ToReview, Labeled),
        (ToReview, Reviewed),
        (Reviewed, Todo),
        (Reviewed, ToReview),
    ]
};

/// What a test returns: any error fails it.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The test datasets: `$LABELDB_TEST_DATA` when set, else the ones vendored in
/// `tests/data/` (tests/data/README.md lists them with their licences).
pub fn data_dir() -> PathBuf {
    match std::env::var_os("LABELDB_TEST_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data"),
    }
}

/// A fresh database in a temporary directory (removed when the `TempDir` drops; keep it
/// alive as long as the `Db`).
pub fn temp_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let db = Db::open(dir.path().join("db")).expect("open a fresh database");
    (dir, db)
}

/// Opens the database at `path` again after its last handle was dropped.
///
/// sled 0.34.7 releases its directory lock asynchronously: a log write-back task on its
/// thread pool (pagecache/iobuf.rs `maybe_seal_and_write_iobuf`) holds the file for a
/// moment after the last handle drops, so an immediate reopen fails with "could not acquire
/// lock" (WouldBlock) about once in a thousand reopens. Until labeldb's `Store::open` waits
/// for the lock itself, this retries that one error for up to two seconds.
pub fn reopen(path: &Path) -> labeldb::Result<Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match Db::open(path) {
            Err(labeldb::Error::InUse { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// A schema from the schema file format; panics on a bad literal in a test.
pub fn schema(json: &str) -> Schema {
    match Schema::from_json(json) {
        Ok(s) => s,
        Err(e) => panic!("test schema does not parse: {e}"),
    }
}

/// Everything a reader can observe, to assert that a refused write changed nothing.
#[derive(Debug, PartialEq)]
pub struct Observed {
    /// `Db::last_seq`.
    pub last_seq: Seq,
    /// The whole event log.
    pub events: Vec<Event>,
    /// Every project.
    pub projects: Vec<Project>,
    /// Every asset of every project (deleted ones too) with its history.
    pub assets: Vec<(Asset, Vec<Label>)>,
}

/// Reads everything observable from `db`.
pub fn observe(db: &Db) -> Observed {
    let events = db
        .changes_since(0)
        .collect::<labeldb::Result<Vec<_>>>()
        .expect("read the event log");
    let projects: Vec<Project> = db.projects().iter().map(|p| (**p).clone()).collect();
    let mut assets = Vec::new();
    for p in &projects {
        for id in db.asset_ids(&p.name).expect("list assets") {
            let asset = db.asset(id).expect("read asset");
            let history = db.history(id).expect("read history");
            assets.push((asset, history));
        }
    }
    Observed {
        last_seq: db.last_seq(),
        events,
        projects,
        assets,
    }
}

/// Runs the crash child (`labeldb-crash-child`, src/bin/) with `args`, waits until it
/// creates `marker`, lets it run on for `delay`, then SIGKILLs it and checks that it was
/// killed rather than finished.
pub fn kill_child(args: &[&std::ffi::OsStr], marker: &Path, delay: Duration) -> TestResult {
    let mut child = Command::new(crash::CHILD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        if child.try_wait()?.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            panic!(
                "the child never reached {} ({:?}):\n{}\n{}",
                marker.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(delay);
    child.kill()?;
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the child finished before it was killed:\n{stderr}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(9), "{:?}: {stderr}", out.status);
    }
    Ok(())
}
