//! Streaming import of the native JSONL format and CoNLL/IOB files (docs/formats.md).
//!
//! A reader turns the input into records, one per asset, each with the line it starts
//! on. Records are validated one by one and written in batches, each batch one atomic
//! write. A bad record stops the import with its line number and nothing of its batch
//! written, or is skipped and counted with `skip_invalid`. External ids already in the
//! project are reported as duplicates and never doubled, so an interrupted import can
//! simply be run again.

mod conll;
pub(crate) mod json;
mod jsonl;
mod labels;

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc;

use crate::engine::Db;
use crate::model::asset::validate_new_asset;
use crate::model::asset::NewAsset;
use crate::model::error::{Error, Result};
use crate::model::project::{JobKind, Project};

#[cfg(feature = "testing")]
pub(crate) use conll::records as conll_records;
pub use jsonl::{parse_line as parse_jsonl_line, to_byte_offset, to_codepoint};
pub use labels::LabelImportReport;

/// An input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The native JSONL format: one asset per line.
    Jsonl,
    /// CoNLL/IOB: one token per line, tag in the last column, blank lines between sentences.
    Conll,
}

impl Format {
    /// Guesses the format from a file name (`.jsonl`/`.json` → JSONL, else CoNLL).
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "json" | "ndjson") => Format::Jsonl,
            _ => Format::Conll,
        }
    }
}

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The input format.
    pub format: Format,
    /// CoNLL: the spans job the tags answer (default: the schema's only spans job).
    pub job: Option<String>,
    /// CoNLL: the human author of the imported annotations (default `gold`).
    pub author: String,
    /// Skip and count bad records instead of stopping.
    pub skip_invalid: bool,
    /// Assets per atomic write (default 2,000).
    pub batch_size: usize,
}

impl ImportOptions {
    /// Defaults for a format.
    pub fn new(format: Format) -> ImportOptions {
        ImportOptions {
            format,
            job: None,
            author: "gold".into(),
            skip_invalid: false,
            batch_size: 2_000,
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Records read (valid or not).
    pub records: u64,
    /// New assets written.
    pub imported: u64,
    /// Records whose external id already existed: skipped.
    pub duplicates: u64,
    /// Labels written.
    pub labels: u64,
    /// Bad records skipped (`skip_invalid`).
    pub invalid: u64,
    /// The first few skipped records' errors, `line: message`.
    pub invalid_samples: Vec<String>,
    /// Bytes of input consumed so far.
    pub bytes: u64,
}

const INVALID_SAMPLES: usize = 10;

/// One parsed record: the line it starts on, and the asset or why it is bad.
pub(crate) type Record = (u64, Result<NewAsset>);

impl Db {
    /// Imports a file into a project; `progress` is called after each batch.
    pub fn import_file(
        &self,
        actor: &str,
        project: &str,
        path: &Path,
        options: &ImportOptions,
        progress: impl FnMut(&ImportReport),
    ) -> Result<ImportReport> {
        let (reader, name) = open(path)?;
        self.import_reader(actor, project, reader, &name, options, progress)
    }

    /// Imports from a reader; `file_name` names the input in errors and CoNLL external ids.
    pub fn import_reader(
        &self,
        actor: &str,
        project: &str,
        reader: impl BufRead,
        file_name: &str,
        options: &ImportOptions,
        mut progress: impl FnMut(&ImportReport),
    ) -> Result<ImportReport> {
        let project = self.project(project)?;
        crate::model::project::check_name("actor", actor)?;
        let bytes = Rc::new(Cell::new(0u64));
        let counter = Counting {
            inner: reader,
            bytes: bytes.clone(),
        };
        let schema = &project.schema;
        let validated = |asset: NewAsset| -> Result<NewAsset> {
            validate_new_asset(schema, &asset)?;
            Ok(asset)
        };
        match options.format {
            // Parsing a JSON line costs about a third of writing its asset: a second
            // thread parses and validates ahead while this one writes.
            Format::Jsonl => std::thread::scope(|scope| {
                let records = parse_ahead(scope, jsonl::lines(counter), |line: String| {
                    validated(jsonl::parse_line(&line, schema)?)
                });
                self.drive(&project, actor, records, file_name, options, &bytes, &mut progress)
            }),
            Format::Conll => {
                let job = conll_job(&project, options.job.as_deref())?;
                let records = conll::records(counter, file_name, job, &options.author)
                    .map(|r| r.map(|(line, asset)| (line, asset.and_then(validated))));
                self.drive(&project, actor, records, file_name, options, &bytes, &mut progress)
            }
        }
    }

    /// Writes validated records in batches.
    #[allow(clippy::too_many_arguments)]
    fn drive(
        &self,
        project: &Project,
        actor: &str,
        records: impl Iterator<Item = Result<Record>>,
        file_name: &str,
        options: &ImportOptions,
        bytes: &Cell<u64>,
        progress: &mut impl FnMut(&ImportReport),
    ) -> Result<ImportReport> {
        let fail = |line: u64, source: Error| Error::Import {
            file: file_name.to_string(),
            line,
            cause: Box::new(source),
        };
        let batch_size = options.batch_size.max(1);
        let mut report = ImportReport::default();
        let mut batch = Vec::with_capacity(batch_size);
        let mut seen: HashSet<String> = HashSet::new();
        for item in records {
            let (line, record) = item?;
            report.records += 1;
            let checked = record.and_then(|a| {
                if !seen.insert(a.external_id.clone()) {
                    return Err(Error::DuplicateExternalId(a.external_id));
                }
                Ok(a)
            });
            match checked {
                Ok(a) => batch.push(a),
                Err(e) if options.skip_invalid => {
                    report.invalid += 1;
                    if report.invalid_samples.len() < INVALID_SAMPLES {
                        report.invalid_samples.push(format!("{line}: {e}"));
                    }
                }
                Err(e) => return Err(fail(line, e)),
            }
            if batch.len() >= batch_size {
                self.write_batch(project, actor, &mut batch, &mut report)?;
                report.bytes = bytes.get();
                progress(&report);
            }
        }
        self.write_batch(project, actor, &mut batch, &mut report)?;
        report.bytes = bytes.get();
        progress(&report);
        Ok(report)
    }

    fn write_batch(
        &self,
        project: &Project,
        actor: &str,
        batch: &mut Vec<NewAsset>,
        report: &mut ImportReport,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let r = self.insert_assets(actor, project, std::mem::take(batch))?;
        report.imported += r.added.len() as u64;
        report.duplicates += r.duplicates.len() as u64;
        report.labels += r.labels;
        Ok(())
    }
}

/// A record before parsing: the line it starts on, and its raw form or why it is bad.
type Raw<T> = (u64, Result<T>);

/// Raw records handed to the parsing thread at a time.
const CHUNK: usize = 256;
/// Chunks handed to the parsing thread and not yet taken back: how far it may run ahead.
const AHEAD: usize = 8;

/// The records of `raw` (read on this thread) with `parse` applied on a thread of
/// `scope`, in order, the parsing up to [`AHEAD`] chunks ahead of the caller. The first
/// error of `raw` ends the records, after those read before it. Should `parse` panic,
/// the records end early and the scope carries the panic on.
fn parse_ahead<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    raw: impl Iterator<Item = Result<Raw<T>>>,
    parse: impl Fn(T) -> Result<NewAsset> + Send + 'scope,
) -> impl Iterator<Item = Result<Record>> {
    let (to_worker, chunks) = mpsc::channel::<Vec<Raw<T>>>();
    let (to_caller, parsed) = mpsc::channel();
    scope.spawn(move || {
        for chunk in chunks {
            let records: Vec<Record> = chunk.into_iter().map(|(line, r)| (line, r.and_then(&parse))).collect();
            if to_caller.send(records).is_err() {
                return; // the import stopped
            }
        }
    });
    ParseAhead {
        raw,
        to_worker: Some(to_worker),
        parsed,
        in_flight: 0,
        ready: Vec::new().into_iter(),
        failed: None,
    }
}

struct ParseAhead<I, T> {
    raw: I,
    /// `None` once `raw` has ended (which ends the worker).
    to_worker: Option<mpsc::Sender<Vec<Raw<T>>>>,
    parsed: mpsc::Receiver<Vec<Record>>,
    in_flight: usize,
    ready: std::vec::IntoIter<Record>,
    failed: Option<Error>,
}

impl<I: Iterator<Item = Result<Raw<T>>>, T> ParseAhead<I, T> {
    /// Reads and hands over chunks until [`AHEAD`] are in flight or `raw` ends.
    fn send_ahead(&mut self) {
        while self.in_flight < AHEAD {
            let Some(to_worker) = &self.to_worker else {
                return;
            };
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut ended = false;
            while chunk.len() < CHUNK && !ended {
                match self.raw.next() {
                    Some(Ok(r)) => chunk.push(r),
                    Some(Err(e)) => (self.failed, ended) = (Some(e), true),
                    None => ended = true,
                }
            }
            if !chunk.is_empty() && to_worker.send(chunk).is_ok() {
                self.in_flight += 1;
            }
            if ended {
                self.to_worker = None;
            }
        }
    }
}

impl<I: Iterator<Item = Result<Raw<T>>>, T> Iterator for ParseAhead<I, T> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(r) = self.ready.next() {
                return Some(Ok(r));
            }
            self.send_ahead();
            if self.in_flight == 0 {
                return self.failed.take().map(Err);
            }
            self.ready = self.parsed.recv().ok()?.into_iter();
            self.in_flight -= 1;
        }
    }
}

/// The spans job CoNLL tags answer: the named one, or the schema's only spans job.
fn conll_job<'p>(project: &'p Project, job: Option<&str>) -> Result<&'p str> {
    let spans: Vec<&str> = project
        .schema
        .jobs
        .iter()
        .filter(|j| j.kind == JobKind::Spans)
        .map(|j| j.name.as_str())
        .collect();
    match job {
        Some(name) => match project.schema.job(name) {
            Some(j) if j.kind == JobKind::Spans => Ok(&j.name),
            Some(j) => Err(Error::invalid(
                "--job",
                format!("job {name:?} is a {} job, CoNLL needs a spans job", j.kind.as_str()),
            )),
            None => Err(Error::invalid(
                "--job",
                format!("project {:?} has no job {name:?}", project.name),
            )),
        },
        None => match spans.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::invalid(
                "--job",
                format!("project {:?} has no spans job for CoNLL tags", project.name),
            )),
            _ => Err(Error::invalid(
                "--job",
                format!("project {:?} has several spans jobs; name one", project.name),
            )),
        },
    }
}

/// Counts the bytes read through it, for progress.
struct Counting<R> {
    inner: R,
    bytes: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.set(self.bytes.get() + n as u64);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.bytes.set(self.bytes.get() + amt as u64);
        self.inner.consume(amt);
    }
}

/// A file opened for reading, and its name for errors.
pub(crate) fn open(path: &Path) -> Result<(BufReader<File>, String)> {
    let file = File::open(path).map_err(|cause| Error::Io {
        path: path.display().to_string(),
        cause,
    })?;
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok((BufReader::new(file), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw records `0..n` (the number is the line), then `tail` as the source's last item.
    fn raw(n: u64, tail: Option<Error>) -> impl Iterator<Item = Result<Raw<u64>>> {
        (1..=n).map(|i| Ok((i, Ok(i)))).chain(tail.map(Err))
    }

    /// Parses `i` into an asset named after it; multiples of 7 are bad records.
    fn parse(i: u64) -> Result<NewAsset> {
        if i.is_multiple_of(7) {
            return Err(Error::invalid("record", format!("{i} is bad")));
        }
        Ok(NewAsset::text(format!("a{i}"), "x"))
    }

    /// What a record became: its line, and its external id or its error's text.
    fn seen(records: impl Iterator<Item = Result<Record>>) -> (Vec<(u64, String)>, Option<String>) {
        let mut out = Vec::new();
        for r in records {
            match r {
                Ok((line, asset)) => out.push((line, asset.map_or_else(|e| e.to_string(), |a| a.external_id))),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
        (out, None)
    }

    #[test]
    fn records_parsed_ahead_come_back_in_order_with_the_same_results_as_parsed_in_place() {
        // Fewer than one chunk, exactly the window, and many windows.
        for n in [0, 5, (CHUNK * AHEAD) as u64, (CHUNK * AHEAD * 3 + 17) as u64] {
            let ahead = std::thread::scope(|scope| seen(parse_ahead(scope, raw(n, None), parse)));
            let in_place = seen(raw(n, None).map(|r| r.map(|(line, x)| (line, x.and_then(parse)))));
            assert_eq!(ahead, in_place, "{n} records");
            assert_eq!(ahead.0.len() as u64, n);
        }
    }

    #[test]
    fn a_read_error_ends_the_records_after_those_read_before_it() {
        let n = (CHUNK * 3 + 5) as u64;
        let failure = Error::Io {
            path: "input".into(),
            cause: std::io::Error::other("disk gone"),
        };
        let (records, error) = std::thread::scope(|scope| seen(parse_ahead(scope, raw(n, Some(failure)), parse)));
        assert_eq!(records.len() as u64, n);
        assert_eq!(records.last().map(|r| r.0), Some(n));
        assert!(error.is_some_and(|e| e.contains("disk gone")));
    }

    #[test]
    fn a_caller_that_stops_early_ends_the_parsing_thread() {
        // The scope returns only once the parsing thread has ended.
        let first = std::thread::scope(|scope| {
            let mut records = parse_ahead(scope, raw(1_000_000, None), parse);
            records.next().and_then(|r| r.ok()).map(|r| r.0)
        });
        assert_eq!(first, Some(1));
    }
}
