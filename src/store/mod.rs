//! The storage core: the only code that touches sled.
//!
//! Everything lives in sled's default tree under hand-built keys ([`keys`]) with
//! checksummed records ([`codec`]). A logical write is one [`Batch`] applied with one
//! atomic `apply_batch`; sled transactions and `generate_id` are never used.

pub(crate) mod codec;
pub(crate) mod keys;
pub(crate) mod run;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::error::{Error, Result};

/// The on-disk format version this build writes and reads. 1: the first; 2: adds the
/// selection columns (FACTS and CHOICES records); 3: assets added in runs (RUN records),
/// external ids held in memory (no EXTERNAL records), FACTS with the project; 4: runs with
/// an offset table, so that a point read decodes only its entry; 5: project settings as
/// JSON inside the project record. Opening a database of an
/// older version upgrades it; a newer one is refused.
pub const FORMAT_VERSION: u32 = 5;

/// Persistent counters, rewritten in every batch that advances them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    pub next_project: u32,
    pub next_asset: u32,
    pub last_seq: u64,
    pub next_snapshot: u32,
}

/// Head of an index checkpoint: how many chunks follow and their total length.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct ChunkedHead {
    pub chunks: u32,
    pub len: u64,
}

/// Checkpoint chunks are at most this long, so no sled value is huge.
const CHUNK: usize = 1 << 20;

/// A record as stored, decoded on demand (on whichever thread wants it). Holding one
/// holds a reference to sled's buffer, not a copy.
#[derive(Clone)]
pub(crate) struct Raw {
    key: sled::IVec,
    value: sled::IVec,
}

impl Raw {
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn value(&self) -> &[u8] {
        &self.value
    }

    /// Decodes the record, checking its crc (a mismatch names the key). A type that
    /// borrows borrows from this value.
    pub(crate) fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T> {
        codec::decode(&self.key, &self.value)
    }
}

/// Whether sled failed to open because another process holds the directory's lock
/// (`fs2`'s `try_lock_exclusive`: WouldBlock on Unix, a sharing violation on Windows).
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().contains("could not acquire lock"))
}

/// sled could not open the directory (a damaged `conf` or `db` file, permissions).
#[derive(Debug, thiserror::Error)]
#[error("cannot open {}: {source}", path.display())]
struct OpenFailed {
    path: std::path::PathBuf,
    #[source]
    source: sled::Error,
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Error {
        Error::storage(e)
    }
}

/// The sled database behind a `Db` (a cheap handle: clones share it).
#[derive(Clone)]
pub(crate) struct Store {
    db: sled::Db,
}

/// Bytes per batch of [`Store::copy_to`]. Smaller batches leave sled less to rewrite:
/// a 100,000-asset demo database (103 MiB of keys and values) copies into 222 MiB with
/// 1 MiB batches, 367 MiB with 16 MiB, 697 MiB with one insert per batch.
const COPY_BATCH_BYTES: usize = 1 << 20;

impl Store {
    /// Opens (creating if needed) the store at `path` and checks its format version,
    /// which it returns (older than [`FORMAT_VERSION`]: the caller upgrades).
    pub(crate) fn open(path: &Path, cache_bytes: u64) -> Result<(Store, u32)> {
        // A data file that exists with content must not open as a new, empty database.
        let had_data = std::fs::metadata(path.join("db")).is_ok_and(|m| m.len() > 0);
        let config = sled::Config::new().path(path).cache_capacity(cache_bytes);
        // sled's background log writers may hold the file lock for a moment after the
        // last handle of a previous open was dropped: retry that error briefly.
        let mut attempt = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) && attempt < 100 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) if is_lock_error(&e) => {
                    return Err(Error::InUse {
                        path: path.to_path_buf(),
                    })
                }
                Err(source) => {
                    return Err(Error::storage(OpenFailed {
                        path: path.to_path_buf(),
                        source,
                    }))
                }
            }
        };
        let store = Store { db };
        let format_key = keys::meta(keys::meta::FORMAT);
        let format = match store.get::<u32>(&format_key)? {
            Some(v) if v > FORMAT_VERSION => {
                return Err(Error::FormatTooNew {
                    found: v,
                    supported: FORMAT_VERSION,
                })
            }
            Some(v) => v,
            None if store.db.is_empty() && had_data => {
                return Err(Error::Corruption {
                    key: format!("{}/db", path.display()),
                    reason: "the data file exists but holds no records: it is truncated or damaged".into(),
                })
            }
            None if store.db.is_empty() => {
                let mut b = Batch::default();
                b.put(format_key, &FORMAT_VERSION);
                b.put(keys::meta(keys::meta::COUNTERS), &Counters::default());
                store.apply(b)?;
                store.flush()?;
                FORMAT_VERSION
            }
            None => {
                return Err(Error::Corruption {
                    key: keys::describe(&format_key),
                    reason: "the database has data but no format version".into(),
                })
            }
        };
        Ok((store, format))
    }

    /// The persisted counters.
    pub(crate) fn counters(&self) -> Result<Counters> {
        let key = keys::meta(keys::meta::COUNTERS);
        self.get(&key)?.ok_or_else(|| Error::Corruption {
            key: keys::describe(&key),
            reason: "missing".into(),
        })
    }

    /// Reads and decodes one record.
    pub(crate) fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.db.get(key)? {
            Some(v) => codec::decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Whether a key exists.
    pub(crate) fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.db.contains_key(key)?)
    }

    /// Decoded records under a prefix, in key order.
    pub(crate) fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<(Vec<u8>, T)>> {
        self.db.scan_prefix(prefix).map(|kv| {
            let (k, v) = kv?;
            let t = codec::decode(&k, &v)?;
            Ok((k.to_vec(), t))
        })
    }

    /// Keys under a prefix, in key order.
    pub(crate) fn scan_keys(&self, prefix: &[u8]) -> impl DoubleEndedIterator<Item = Result<Vec<u8>>> {
        self.db.scan_prefix(prefix).map(|kv| Ok(kv?.0.to_vec()))
    }

    /// Decoded records in `[start, end)`, in key order.
    pub(crate) fn range<T: DeserializeOwned>(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<(Vec<u8>, T)>> {
        self.db.range(start.to_vec()..end.to_vec()).map(|kv| {
            let (k, v) = kv?;
            let t = codec::decode(&k, &v)?;
            Ok((k.to_vec(), t))
        })
    }

    /// The stored record under a key, not yet decoded.
    pub(crate) fn get_undecoded(&self, key: &[u8]) -> Result<Option<Raw>> {
        Ok(self.db.get(key)?.map(|value| Raw { key: key.into(), value }))
    }

    /// The stored records under a prefix, in key order, not yet decoded.
    pub(crate) fn scan_undecoded(&self, prefix: &[u8]) -> impl DoubleEndedIterator<Item = Result<Raw>> {
        self.db
            .scan_prefix(prefix)
            .map(|kv| kv.map(|(key, value)| Raw { key, value }).map_err(Error::from))
    }

    /// The stored records in `[start, end)`, in key order, not yet decoded.
    pub(crate) fn range_undecoded(&self, start: &[u8], end: &[u8]) -> impl DoubleEndedIterator<Item = Result<Raw>> {
        self.db
            .range(start.to_vec()..end.to_vec())
            .map(|kv| kv.map(|(key, value)| Raw { key, value }).map_err(Error::from))
    }

    /// Every raw key and value, for `verify`.
    pub(crate) fn raw(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> {
        self.db.iter().map(|kv| {
            let (k, v) = kv?;
            Ok((k.to_vec(), v.to_vec()))
        })
    }

    /// Applies a batch atomically: all of it is visible at once, and after a crash
    /// either all of it or none of it is there.
    pub(crate) fn apply(&self, batch: Batch) -> Result<()> {
        self.db.apply_batch(batch.inner)?;
        Ok(())
    }

    /// Makes every applied batch durable.
    pub(crate) fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the store occupies on disk.
    pub(crate) fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Bytes of the records themselves: every key and value (one scan of the tree).
    pub(crate) fn live_bytes(&self) -> Result<u64> {
        let mut n = 0u64;
        for kv in self.db.iter() {
            let (k, v) = kv?;
            n += (k.len() + v.len()) as u64;
        }
        Ok(n)
    }

    /// Writes every record into a new sled database at `path` (which must not exist), in
    /// batches of [`COPY_BATCH_BYTES`], and flushes it: a copy without the garbage of
    /// overwritten values.
    pub(crate) fn copy_to(&self, path: &Path) -> Result<()> {
        let copy = sled::Config::new().path(path).create_new(true).open()?;
        let mut batch = sled::Batch::default();
        let mut bytes = 0usize;
        for kv in self.db.iter() {
            let (k, v) = kv?;
            bytes += k.len() + v.len();
            batch.insert(k, v);
            if bytes >= COPY_BATCH_BYTES {
                copy.apply_batch(std::mem::take(&mut batch))?;
                bytes = 0;
            }
        }
        copy.apply_batch(batch)?;
        copy.flush()?;
        Ok(())
    }

    /// Writes an index checkpoint (already encoded) as chunks plus a head, in one batch,
    /// removing the chunks of a longer previous checkpoint.
    pub(crate) fn write_checkpoint(&self, bytes: &[u8]) -> Result<()> {
        let old = self
            .get::<ChunkedHead>(&keys::index_head())
            .ok()
            .flatten()
            .map_or(0, |h| h.chunks);
        let mut b = Batch::default();
        let mut n = 0u32;
        for chunk in bytes.chunks(CHUNK) {
            b.put(keys::index_chunk(n), &chunk);
            n += 1;
        }
        for stale in n..old {
            b.remove(keys::index_chunk(stale));
        }
        b.put(
            keys::index_head(),
            &ChunkedHead {
                chunks: n,
                len: bytes.len() as u64,
            },
        );
        self.apply(b)
    }

    /// Reads the index checkpoint's bytes, if there is one.
    pub(crate) fn read_checkpoint(&self) -> Result<Option<Vec<u8>>> {
        let Some(head) = self.get::<ChunkedHead>(&keys::index_head())? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(head.len.min(1 << 32) as usize);
        for n in 0..head.chunks {
            let key = keys::index_chunk(n);
            let raw = self.get_undecoded(&key)?.ok_or_else(|| Error::Corruption {
                key: keys::describe(&key),
                reason: "missing checkpoint chunk".into(),
            })?;
            out.extend_from_slice(raw.decode::<&[u8]>()?);
        }
        if out.len() as u64 != head.len {
            return Err(Error::Corruption {
                key: keys::describe(&keys::index_head()),
                reason: format!("checkpoint is {} bytes, its head says {}", out.len(), head.len),
            });
        }
        Ok(Some(out))
    }

    #[cfg(feature = "testing")]
    /// Reads raw bytes under a key, bypassing the codec.
    pub(crate) fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    #[cfg(feature = "testing")]
    /// Writes raw bytes under a key, bypassing the codec. Tests use it to damage records.
    pub(crate) fn put_raw(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.insert(key, value)?;
        Ok(())
    }
}

/// The writes of one logical operation, applied atomically by [`Store::apply`].
#[derive(Default)]
pub(crate) struct Batch {
    inner: sled::Batch,
}

impl Batch {
    /// Inserts an encoded record.
    pub(crate) fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.inner.insert(key, codec::encode(value));
    }

    /// Inserts a record already encoded with `codec::encode`.
    pub(crate) fn put_encoded(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.inner.insert(key, value);
    }

    /// Inserts an index entry with an empty value.
    pub(crate) fn mark(&mut self, key: Vec<u8>) {
        self.inner.insert(key, &[] as &[u8]);
    }

    /// Removes a key.
    pub(crate) fn remove(&mut self, key: Vec<u8>) {
        self.inner.remove(key);
    }
}
