//! Compaction: rewriting a closed database into a fresh directory without the space
//! that overwritten and removed values still hold in sled's log, then swapping the
//! directories. sled 0.34 reclaims a segment only once less than half of it is live,
//! and never shrinks a file below its highest live segment, so a database that has seen
//! many overwrites can hold two or more times its live bytes; `compact` brings it back
//! to about its live bytes.
//!
//! The swap is made of renames, each atomic, with a marker that says the copy is
//! complete: `DIR.compacting/` is the copy (complete once it holds `COMPACTED`),
//! `DIR.old/` the original after the first rename. An interrupted compaction is finished
//! or undone by the next open ([`recover`]), so a crash at any point leaves either the
//! original database or its complete copy, never a mix and never nothing.

use std::fs;
use std::path::{Path, PathBuf};

use crate::model::error::{Error, Result};
use crate::store::Store;

/// The file in a complete copy.
const MARKER: &str = "COMPACTED";

/// What [`compact`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactReport {
    /// Bytes the database directory held before.
    pub before: u64,
    /// Bytes it holds after.
    pub after: u64,
}

/// Where [`compact_until`] stops, as a crash there would stop it.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactStage {
    /// The copy is written but not marked complete.
    Copied,
    /// The copy is marked complete; no rename yet.
    Marked,
    /// The original is renamed away; the copy is not in its place yet.
    MovedAside,
    /// The copy is in place; the original is not removed yet.
    Swapped,
}

/// Compacts the database at `path`, which no process may have open (else
/// [`Error::InUse`]): every record is copied into a new sled database, the text index
/// beside it, and the copy takes the original's place. Takes time proportional to the
/// live data and needs that much free disk space; readers must wait for it (the
/// database is closed meanwhile).
pub fn compact(path: impl AsRef<Path>) -> Result<CompactReport> {
    run(path.as_ref(), None)
}

/// [`compact`] stopped after `stage`, for the tests of [`recover`].
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn compact_until(path: impl AsRef<Path>, stage: CompactStage) -> Result<()> {
    run(path.as_ref(), Some(stage)).map(drop)
}

fn run(path: &Path, stop: Option<CompactStage>) -> Result<CompactReport> {
    use CompactStage::{Copied, Marked, MovedAside, Swapped};
    let stops = |at: CompactStage| stop == Some(at);
    recover(path)?;
    if !path.join("db").exists() {
        return Err(Error::invalid(
            "database",
            format!("{} holds no database", path.display()),
        ));
    }
    let (copy, old) = (sibling(path, "compacting"), sibling(path, "old"));
    let before = dir_size(path)?;
    let (store, _format) = Store::open(path, 64 << 20)?;
    store.flush()?;
    store.copy_to(&copy)?;
    let text = path.join("text");
    if text.exists() {
        copy_dir(&text, &copy.join("text"))?;
    }
    if stops(Copied) {
        return Ok(CompactReport { before, after: before });
    }
    write_marker(&copy)?;
    if stops(Marked) {
        return Ok(CompactReport { before, after: before });
    }
    // The original stays locked by this process until the copy is in its place.
    rename(path, &old)?;
    if stops(MovedAside) {
        return Ok(CompactReport { before, after: before });
    }
    rename(&copy, path)?;
    drop(store);
    if stops(Swapped) {
        return Ok(CompactReport { before, after: before });
    }
    finish(path, &old)?;
    Ok(CompactReport {
        before,
        after: dir_size(path)?,
    })
}

/// Finishes or undoes a compaction that was interrupted: a complete copy takes the
/// original's place, an incomplete one is removed. Called by every open.
pub(crate) fn recover(path: &Path) -> Result<()> {
    let (copy, old) = (sibling(path, "compacting"), sibling(path, "old"));
    let complete = copy.join(MARKER).exists();
    match (copy.exists(), complete, path.exists(), old.exists()) {
        // An incomplete copy: the original is untouched.
        (true, false, _, _) => remove_dir(&copy)?,
        // A complete copy, the original still in place or already moved aside.
        (true, true, true, false) => {
            rename(path, &old)?;
            rename(&copy, path)?;
            finish(path, &old)?;
        }
        (true, true, false, _) => {
            rename(&copy, path)?;
            finish(path, &old)?;
        }
        (true, true, true, true) => {
            return Err(Error::Corruption {
                key: copy.display().to_string(),
                reason: format!(
                    "an interrupted compaction left both {} and {}; keep the newer and remove the other",
                    path.display(),
                    old.display()
                ),
            })
        }
        // The copy is in place: remove the original (and the marker).
        (false, _, true, true) => finish(path, &old)?,
        // Only the original, moved aside by a compaction whose copy is gone: put it back.
        (false, _, false, true) => rename(&old, path)?,
        (false, _, _, false) => {
            let marker = path.join(MARKER);
            if marker.exists() {
                fs::remove_file(&marker).map_err(io(&marker))?;
            }
        }
    }
    Ok(())
}

/// Removes the original and the copy's marker.
fn finish(path: &Path, old: &Path) -> Result<()> {
    if old.exists() {
        remove_dir(old)?;
    }
    let marker = path.join(MARKER);
    if marker.exists() {
        fs::remove_file(&marker).map_err(io(&marker))?;
    }
    Ok(())
}

/// `DIR.suffix`, beside `DIR`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

fn write_marker(copy: &Path) -> Result<()> {
    let marker = copy.join(MARKER);
    let file = fs::File::create(&marker).map_err(io(&marker))?;
    file.sync_all().map_err(io(&marker))?;
    // The marker's directory entry must be durable before the renames.
    sync_dir(copy)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(io(from))?;
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    let d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(d).and_then(|f| f.sync_all()).map_err(io(d))
}

fn remove_dir(dir: &Path) -> Result<()> {
    fs::remove_dir_all(dir).map_err(io(dir))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(io(to))?;
    for entry in fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).map_err(io(&entry.path()))?;
            fs::File::open(&target)
                .and_then(|f| f.sync_all())
                .map_err(io(&target))?;
        }
    }
    sync_dir(to)
}

/// Bytes of the files under `dir`.
pub(crate) fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let meta = entry.metadata().map_err(io(&entry.path()))?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.display().to_string(),
        cause,
    }
}
