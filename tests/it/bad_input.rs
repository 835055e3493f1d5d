//! Bad input, data-driven: every file in `tests/bad_input/` is one case, and every case
//! must be refused with its typed error while writing nothing.
//!
//! # Case files
//!
//! One JSON object per file, named `NN-short-name.json` (`NN` unique). Unknown fields are
//! errors, so a typo in a case fails the run instead of weakening the case.
//!
//! ```json
//! {
//!   "description": "what is wrong with the input and which rule refuses it",
//!   "schema": {"jobs": [...]},
//!   "setup": ["{\"id\": \"t1\", \"text\": \"café\"}", {"op": "delete_asset", "asset": "t1"}],
//!   "input": {"format": "jsonl", "lines": ["{\"id\": \"a\", \"text\": \"ok\"}", "{bad"]},
//!   "expect": {"error": "Import", "cause": "InvalidInput", "contains": ["input.jsonl:2", "JSON"]}
//! }
//! ```
//!
//! - `schema`: the schema file (docs/formats.md) of project `shop`, created first.
//! - `setup` (optional): steps that must all succeed, in order. A string is a JSONL line;
//!   consecutive lines are imported into `shop` as one file `setup.jsonl`. An object is an
//!   operation (below).
//! - Then exactly one of:
//!   - `input`: an import into `shop` (or `project`) through `Db::import_reader`.
//!     `format` is `jsonl`, `conll` or `add-labels` (label lines for existing assets,
//!     through `Db::import_labels_reader`); the content is exactly one of `text` (the file),
//!     `lines` (each line followed by `\n`) or `bytes_hex` (raw bytes, for invalid UTF-8;
//!     spaces allowed). `file` names the input in errors and CoNLL ids (default
//!     `input.jsonl` / `input.conll`); `job` is CoNLL's `--job`; `actor` the importer
//!     (default `admin`).
//!   - `op`: one operation.
//! - `expect`: `error` is the `labeldb::Error` variant name (`A|B` accepts either, for
//!   damage whose exact report is the engine's choice); for `Import`, `cause` is the
//!   variant of the error inside it. `contains`: substrings of the error's message (at
//!   least one), e.g. the asset, job, class or `file:line`. No case may expect success.
//!
//! # Operations
//!
//! Assets are named by external id in `shop`, or `#N` for the raw [`AssetId`].
//!
//! | `op`              | fields                                           | calls                          |
//! |-------------------|--------------------------------------------------|--------------------------------|
//! | `add_label`       | `asset`, `label` (below)                         | `Db::add_label`                |
//! | `add_labels`      | `items`: a list of `{"asset", "label"}`          | `Db::add_labels` (one batch)   |
//! | `set_status`      | `asset`, `status`                                | `Db::set_status`               |
//! | `set_meta`        | `asset`, `key`, `value` (string/number/bool/null)| `Db::set_meta`                 |
//! | `delete_asset`    | `asset`                                          | `Db::delete_asset`             |
//! | `create_project`  | `name`, `schema_text` (the raw schema file)      | `Schema::from_json`, `Db::create_project` |
//! | `create_snapshot` | `name`, `query`, `selection` (strings)           | `Selection::from_str`, `Db::create_snapshot` |
//! | `query`           | `query`                                          | `Db::query` on `shop`          |
//! | `set_member`      | `user`, `role`, `scope` (optional)               | `Role::from_str`, `Db::set_member` on `shop` |
//! | `remove_member`   | `user`                                           | `Db::remove_member` on `shop`  |
//! | `damage_record`   | `record`, `bytes_hex`                            | `Db::damage_record` (setup)    |
//! | `reopen`          | `tamper` (list, optional)                        | closes the db, tampers, `Db::open` |
//! | `open_sled`       | `records`                                        | `Db::open` on a bare sled db   |
//!
//! An op `label` is the JSONL label object (`author` | `model` | `rule`, `kind`,
//! `answers`, `scores`, `seconds`, `verdict`) built directly as a [`NewLabel`], except
//! that span `start`/`end` are raw UTF-8 **byte** offsets (so a span can fall inside a
//! character), numbers may be the strings `"NaN"`, `"inf"`, `"-inf"`, and it has
//! `parent` (a revision number of the same asset: optimistic concurrency) and
//! `derived_from` (`[external id, revision]`).
//!
//! `record` is `{"asset": "t1"}`, `{"label": ["t1", 0]}`, `{"event": 3}`,
//! `{"project": 0}` or `"index_checkpoint"`. A `tamper` step is
//! `{"truncate": {"file": "db", "len": 16}}`, `{"overwrite": {"file": "conf", "text": "…"}}`
//! or `{"sled_put": R}`; `open_sled` writes its `records` (each an `R`) into a new sled
//! database. `R` is `{"meta": "format", "record_hex": "02"}` — key `0x00 ‖ meta`, value the
//! payload wrapped as src/store/codec.rs does (version byte 1 ‖ payload ‖ crc32 BE) — or
//! with `raw_hex` for the value as is.
//!
//! # What "nothing written" means
//!
//! Before and after the refused input or op the runner reads everything observable:
//! `last_seq`, the whole event log, every project with every asset and its history, the
//! project's stats, snapshots and query count, and `verify`'s report. For `reopen` and
//! `open_sled` the database cannot be opened, so it compares every key and value of the
//! sled tree, read with sled directly, before and after the failed `Db::open`. A panic
//! anywhere fails the case with its message.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use labeldb::{
    Answer, AssetId, BBox, Db, Error, Format, ImportOptions, LabelId, LabelKind, MetaValue, NewLabel, RecordRef, Role,
    Schema, Selection, Source, Span, Status, Verdict,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The suite must keep at least this many cases.
const MIN_CASES: usize = 30;
/// The project every case creates from its `schema`.
const PROJECT: &str = "shop";
/// The actor of setup writes and of the refused operation.
const ACTOR: &str = "admin";

/// Every variant name `expect.error` may use: a typo, or "Ok", is a broken case.
const VARIANTS: &[&str] = &[
    "Storage",
    "InUse",
    "Io",
    "DatabaseFull",
    "AssetExists",
    "HeldBySnapshots",
    "SnapshotExists",
    "ModelExists",
    "UnknownMember",
    "LastAdmin",
    "Corruption",
    "FormatTooNew",
    "UnknownProject",
    "ProjectExists",
    "InvalidSchema",
    "UnknownAsset",
    "UnknownExternalId",
    "UnknownLabel",
    "UnknownJob",
    "UnknownClass",
    "InvalidAnswer",
    "IllegalTransition",
    "AssetDeleted",
    "Conflict",
    "DuplicateExternalId",
    "InvalidInput",
    "Import",
    "InBatch",
    "Query",
    "TextSearchUnavailable",
];

/// The variant name of an error, as case files spell it.
fn variant(e: &Error) -> &'static str {
    match e {
        Error::Storage { .. } => "Storage",
        Error::InUse { .. } => "InUse",
        Error::DatabaseFull { .. } => "DatabaseFull",
        Error::AssetExists { .. } => "AssetExists",
        Error::HeldBySnapshots { .. } => "HeldBySnapshots",
        Error::SnapshotExists { .. } => "SnapshotExists",
        Error::ModelExists { .. } => "ModelExists",
        Error::UnknownMember { .. } => "UnknownMember",
        Error::LastAdmin { .. } => "LastAdmin",
        Error::Io { .. } => "Io",
        Error::Corruption { .. } => "Corruption",
        Error::FormatTooNew { .. } => "FormatTooNew",
        Error::UnknownProject(_) => "UnknownProject",
        Error::ProjectExists(_) => "ProjectExists",
        Error::InvalidSchema(_) => "InvalidSchema",
        Error::UnknownAsset(_) => "UnknownAsset",
        Error::UnknownExternalId { .. } => "UnknownExternalId",
        Error::UnknownLabel(_) => "UnknownLabel",
        Error::UnknownJob { .. } => "UnknownJob",
        Error::UnknownClass { .. } => "UnknownClass",
        Error::InvalidAnswer { .. } => "InvalidAnswer",
        Error::IllegalTransition { .. } => "IllegalTransition",
        Error::AssetDeleted(_) => "AssetDeleted",
        Error::Conflict { .. } => "Conflict",
        Error::DuplicateExternalId(_) => "DuplicateExternalId",
        Error::InvalidInput { .. } => "InvalidInput",
        Error::Import { .. } => "Import",
        Error::InBatch { .. } => "InBatch",
        Error::Query { .. } => "Query",
        Error::TextSearchUnavailable(_) => "TextSearchUnavailable",
        _ => "a variant this runner does not know (add it to `variant` and VARIANTS)",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    schema: Value,
    #[serde(default)]
    setup: Vec<Value>,
    input: Option<Input>,
    op: Option<Op>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    format: String,
    text: Option<String>,
    lines: Option<Vec<String>>,
    bytes_hex: Option<String>,
    file: Option<String>,
    project: Option<String>,
    job: Option<String>,
    actor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    error: String,
    cause: Option<String>,
    contains: Vec<String>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Op {
    AddLabel {
        asset: String,
        label: LabelSpec,
    },
    AddLabels {
        items: Vec<Item>,
    },
    SetStatus {
        asset: String,
        status: String,
    },
    SetMeta {
        asset: String,
        key: String,
        value: Value,
    },
    DeleteAsset {
        asset: String,
    },
    CreateProject {
        name: String,
        schema_text: String,
    },
    CreateSnapshot {
        name: String,
        query: String,
        selection: String,
    },
    Query {
        query: String,
    },
    SetMember {
        user: String,
        role: String,
        scope: Option<String>,
    },
    RemoveMember {
        user: String,
    },
    DamageRecord {
        record: RecordSpec,
        bytes_hex: String,
    },
    Reopen {
        #[serde(default)]
        tamper: Vec<Tamper>,
    },
    OpenSled {
        records: Vec<SledRecord>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    asset: String,
    label: LabelSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelSpec {
    author: Option<String>,
    model: Option<String>,
    rule: Option<String>,
    kind: Option<String>,
    parent: Option<u32>,
    derived_from: Option<(String, u32)>,
    #[serde(default)]
    answers: Map<String, Value>,
    #[serde(default)]
    scores: BTreeMap<String, BTreeMap<String, Num>>,
    seconds: Option<Num>,
    verdict: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpanSpec {
    start: u32,
    end: u32,
    class: String,
    score: Option<Num>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoxSpec {
    x: Num,
    y: Num,
    w: Num,
    h: Num,
    class: String,
    score: Option<Num>,
}

/// A number, or a string for what JSON cannot write (`NaN`, `inf`, `-inf`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    Number(f64),
    Text(String),
}

impl Num {
    fn f32(&self) -> Result<f32, String> {
        match self {
            Num::Number(n) => Ok(*n as f32),
            Num::Text(s) => f32::from_str(s).map_err(|e| format!("bad number {s:?}: {e}")),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RecordSpec {
    Asset(String),
    Label(String, u32),
    Event(u64),
    Project(u32),
    IndexCheckpoint,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Tamper {
    Truncate { file: String, len: u64 },
    Overwrite { file: String, text: String },
    SledPut(SledRecord),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SledRecord {
    meta: String,
    record_hex: Option<String>,
    raw_hex: Option<String>,
}

impl SledRecord {
    fn key(&self) -> Vec<u8> {
        [&[0x00][..], self.meta.as_bytes()].concat()
    }

    fn value(&self) -> Result<Vec<u8>, String> {
        match (&self.record_hex, &self.raw_hex) {
            (Some(payload), None) => {
                let mut v = vec![1u8];
                v.extend(hex(payload)?);
                let crc = crc32fast::hash(&v);
                v.extend_from_slice(&crc.to_be_bytes());
                Ok(v)
            }
            (None, Some(raw)) => hex(raw),
            _ => Err(format!(
                "sled record {:?} needs exactly one of record_hex and raw_hex",
                self.meta
            )),
        }
    }
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in {s:?}"));
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("bad hex {s:?}"))
        })
        .collect()
}

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input")
}

#[test]
fn every_bad_input_case_is_refused_with_its_typed_error_and_writes_nothing() {
    let dir = cases_dir();
    let mut paths = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("list {}: {e}", dir.display())).path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let b = name.as_bytes();
        assert!(
            name.ends_with(".json") && b.len() > 8 && b[..2].iter().all(u8::is_ascii_digit) && b[2] == b'-',
            "{}: not a case file (expected NN-short-name.json)",
            path.display()
        );
        paths.push(path);
    }
    paths.sort();
    assert!(
        paths.len() >= MIN_CASES,
        "{} has {} cases, fewer than {MIN_CASES}",
        dir.display(),
        paths.len()
    );
    let mut numbers = BTreeSet::new();
    let mut failures = Vec::new();
    for path in &paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !numbers.insert(name[..2].to_string()) {
            failures.push(format!("{name}: case number {} is used twice", &name[..2]));
        }
        match panic::catch_unwind(AssertUnwindSafe(|| run_case(path))) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failures.push(format!("{name}: {msg}")),
            Err(payload) => failures.push(format!(
                "{name}: PANICKED (a panic is a bug): {}",
                panic_message(&*payload)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".into()
    }
}

/// Runs one case file: `Err` says why it failed.
fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let case: Case = serde_json::from_str(&text).map_err(|e| format!("bad case file: {e}"))?;
    check_case(&case)?;
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let db_path = tmp.path().join("db");
    let db = Db::open(&db_path).map_err(|e| format!("open a fresh database: {e}"))?;
    let schema = Schema::from_json(&case.schema.to_string()).map_err(|e| format!("case schema: {e}"))?;
    db.create_project(ACTOR, PROJECT, schema)
        .map_err(|e| format!("create {PROJECT}: {e}"))?;
    setup(&db, &case.setup)?;

    let (error, written) = match (&case.input, &case.op) {
        (Some(input), None) => {
            let before = observe(&db);
            let r = import(&db, input)?;
            (r.err(), diff(&before, &observe(&db)))
        }
        (None, Some(Op::Reopen { tamper })) => {
            let seq = db.last_seq();
            drop(db);
            for t in tamper {
                apply_tamper(&db_path, t)?;
            }
            refused_open(&db_path, seq)?
        }
        (None, Some(Op::OpenSled { records })) => {
            let raw = tmp.path().join("raw");
            let sled = open_sled(&raw).map_err(|e| format!("create a sled db: {e}"))?;
            for r in records {
                sled.insert(r.key(), r.value()?).map_err(|e| e.to_string())?;
            }
            sled.flush().map_err(|e| e.to_string())?;
            drop(sled);
            refused_open(&raw, 0)?
        }
        (None, Some(op)) => {
            let before = observe(&db);
            let r = run_op(&db, op)?;
            (r.err(), diff(&before, &observe(&db)))
        }
        _ => unreachable!("check_case requires exactly one of input and op"),
    };
    let Some(error) = error else {
        return Err(format!(
            "accepted, expected {} ({}){}",
            case.expect.error,
            case.description,
            written.map(|d| format!("; it wrote: {d}")).unwrap_or_default()
        ));
    };
    check_error(&case.expect, &error)?;
    match written {
        None => Ok(()),
        Some(d) => Err(format!(
            "refused with the right error ({error}), but the database changed: {d}"
        )),
    }
}

/// Rejects malformed cases, and cases that expect success.
fn check_case(case: &Case) -> Result<(), String> {
    if case.description.trim().is_empty() {
        return Err("empty description".into());
    }
    if case.input.is_some() == case.op.is_some() {
        return Err("needs exactly one of \"input\" and \"op\"".into());
    }
    let e = &case.expect;
    for alt in e.error.split('|') {
        if !VARIANTS.contains(&alt) {
            return Err(format!(
                "expect.error {alt:?} is not a labeldb::Error variant (every case must expect an error): {VARIANTS:?}"
            ));
        }
    }
    let wraps = matches!(e.error.as_str(), "Import" | "InBatch");
    match (wraps, &e.cause) {
        (true, None) => return Err(format!("expect.error {} needs expect.cause", e.error)),
        (true, Some(c)) if !VARIANTS.contains(&c.as_str()) || c == "Import" || c == "InBatch" => {
            return Err(format!("expect.cause {c:?} is not a labeldb::Error variant"))
        }
        (false, Some(_)) => return Err("expect.cause is only for Import and InBatch".into()),
        _ => {}
    }
    if e.contains.is_empty() || e.contains.iter().any(|s| s.is_empty()) {
        return Err("expect.contains needs at least one non-empty substring".into());
    }
    Ok(())
}

fn check_error(expect: &Expect, error: &Error) -> Result<(), String> {
    let got = variant(error);
    if !expect.error.split('|').any(|alt| alt == got) {
        return Err(format!("expected {}, got {got}: {error} ({error:?})", expect.error));
    }
    if let (Error::Import { cause, .. } | Error::InBatch { cause, .. }, Some(want)) = (error, &expect.cause) {
        if variant(cause) != want {
            return Err(format!(
                "expected {got} caused by {want}, got {}: {error} ({error:?})",
                variant(cause)
            ));
        }
    }
    let message = error.to_string();
    let missing: Vec<&String> = expect
        .contains
        .iter()
        .filter(|s| !message.contains(s.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(format!("{got} message {message:?} lacks {missing:?}"));
    }
    Ok(())
}

fn setup(db: &Db, steps: &[Value]) -> Result<(), String> {
    let mut lines = Vec::new();
    let flush_lines = |lines: &mut Vec<String>| -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        lines.clear();
        let opts = ImportOptions::new(Format::Jsonl);
        let report = db
            .import_reader(ACTOR, PROJECT, Cursor::new(text), "setup.jsonl", &opts, |_| {})
            .map_err(|e| format!("setup import: {e}"))?;
        if report.invalid > 0 || report.duplicates > 0 {
            return Err(format!("setup import was not clean: {report:?}"));
        }
        Ok(())
    };
    for (i, step) in steps.iter().enumerate() {
        match step {
            Value::String(line) => lines.push(line.clone()),
            other => {
                flush_lines(&mut lines)?;
                let op: Op =
                    serde_json::from_value(other.clone()).map_err(|e| format!("setup step {i}: bad operation: {e}"))?;
                if matches!(op, Op::Reopen { .. } | Op::OpenSled { .. }) {
                    return Err(format!("setup step {i}: reopen and open_sled are only for \"op\""));
                }
                run_op(db, &op)
                    .map_err(|e| format!("setup step {i}: {e}"))?
                    .map_err(|e| format!("setup step {i} failed: {e}"))?;
            }
        }
    }
    flush_lines(&mut lines)
}

/// Runs an import. The outer `Err` is a broken case; the inner result is labeldb's.
fn import(db: &Db, input: &Input) -> Result<labeldb::Result<()>, String> {
    let (format, default_file) = match input.format.as_str() {
        "jsonl" => (Format::Jsonl, "input.jsonl"),
        "conll" => (Format::Conll, "input.conll"),
        "add-labels" => (Format::Jsonl, "labels.jsonl"),
        other => return Err(format!("input.format {other:?}: expected jsonl, conll or add-labels")),
    };
    let bytes = match (&input.text, &input.lines, &input.bytes_hex) {
        (Some(t), None, None) => t.clone().into_bytes(),
        (None, Some(lines), None) => lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes(),
        (None, None, Some(h)) => hex(h)?,
        _ => return Err("input needs exactly one of text, lines and bytes_hex".into()),
    };
    let mut opts = ImportOptions::new(format);
    opts.job = input.job.clone();
    let file = input.file.as_deref().unwrap_or(default_file);
    let project = input.project.as_deref().unwrap_or(PROJECT);
    if input.format == "add-labels" {
        return Ok(db
            .import_labels_reader(project, Cursor::new(bytes), file, &opts, |_| {})
            .map(drop));
    }
    Ok(db
        .import_reader(
            input.actor.as_deref().unwrap_or(ACTOR),
            project,
            Cursor::new(bytes),
            file,
            &opts,
            |_| {},
        )
        .map(drop))
}

/// An asset named by external id in `shop`, or `#N`.
fn asset_id(db: &Db, name: &str) -> Result<AssetId, String> {
    if let Some(n) = name.strip_prefix('#') {
        return n.parse().map(AssetId).map_err(|e| format!("asset {name:?}: {e}"));
    }
    db.asset_by_external_id(PROJECT, name)
        .map(|a| a.id)
        .map_err(|e| format!("case names asset {name:?}: {e}"))
}

/// Runs an operation. The outer `Err` is a broken case; the inner result is labeldb's.
fn run_op(db: &Db, op: &Op) -> Result<labeldb::Result<()>, String> {
    Ok(match op {
        Op::AddLabel { asset, label } => {
            let id = asset_id(db, asset)?;
            let label = new_label(db, id, label)?;
            db.add_label(id, label).map(drop)
        }
        Op::AddLabels { items } => {
            let mut batch = Vec::with_capacity(items.len());
            for item in items {
                let id = asset_id(db, &item.asset)?;
                batch.push((id, new_label(db, id, &item.label)?));
            }
            db.add_labels(batch).map(drop)
        }
        Op::SetStatus { asset, status } => {
            let id = asset_id(db, asset)?;
            Status::from_str(status).and_then(|s| db.set_status(ACTOR, id, s))
        }
        Op::SetMeta { asset, key, value } => {
            let id = asset_id(db, asset)?;
            let value = match value {
                Value::Null => None,
                Value::String(s) => Some(MetaValue::Str(s.clone())),
                Value::Bool(b) => Some(MetaValue::Bool(*b)),
                Value::Number(n) => Some(MetaValue::Num(n.as_f64().unwrap_or(f64::NAN))),
                other => {
                    return Err(format!(
                        "set_meta value {other}: expected a string, number, bool or null"
                    ))
                }
            };
            db.set_meta(ACTOR, id, key, value)
        }
        Op::DeleteAsset { asset } => db.delete_asset(ACTOR, asset_id(db, asset)?),
        Op::CreateProject { name, schema_text } => Schema::from_json(schema_text)
            .and_then(|s| db.create_project(ACTOR, name, s))
            .map(drop),
        Op::CreateSnapshot { name, query, selection } => labeldb::query::parse(query).and_then(|filter| {
            let selection = Selection::from_str(selection)?;
            db.create_snapshot(ACTOR, PROJECT, name, &filter, &selection).map(drop)
        }),
        Op::Query { query } => db.query(PROJECT, query).map(drop),
        Op::SetMember { user, role, scope } => {
            Role::from_str(role).and_then(|r| db.set_member(ACTOR, PROJECT, user, r, scope.as_deref()))
        }
        Op::RemoveMember { user } => db.remove_member(ACTOR, PROJECT, user),
        Op::DamageRecord { record, bytes_hex } => {
            let record = match record {
                RecordSpec::Asset(a) => RecordRef::Asset(asset_id(db, a)?),
                RecordSpec::Label(a, rev) => RecordRef::Label(LabelId::new(asset_id(db, a)?, *rev)),
                RecordSpec::Event(seq) => RecordRef::Event(*seq),
                RecordSpec::Project(p) => RecordRef::Project(labeldb::ProjectId(*p)),
                RecordSpec::IndexCheckpoint => RecordRef::IndexCheckpoint,
            };
            db.damage_record(record, &hex(bytes_hex)?)
        }
        Op::Reopen { .. } | Op::OpenSled { .. } => unreachable!("handled by run_case"),
    })
}

/// Builds a label exactly as the case says, without JSONL's code-point conversion.
fn new_label(db: &Db, asset: AssetId, spec: &LabelSpec) -> Result<NewLabel, String> {
    let source = match (&spec.author, &spec.model, &spec.rule) {
        (Some(a), None, None) => Source::human(a.clone()),
        (None, Some(m), None) => Source::model(m).map_err(|e| e.to_string())?,
        (None, None, Some(r)) => Source::rule(r).map_err(|e| e.to_string())?,
        _ => return Err("an op label needs exactly one of author, model and rule".into()),
    };
    let kind = match &spec.kind {
        Some(k) => LabelKind::parse(k).map_err(|e| e.to_string())?,
        None if source.is_human() => LabelKind::Annotation,
        None => LabelKind::Prediction,
    };
    let mut label = NewLabel::new(kind, source);
    label.parent = spec.parent.map(|rev| LabelId::new(asset, rev));
    if let Some((ext, rev)) = &spec.derived_from {
        label.derived_from = Some(LabelId::new(asset_id(db, ext)?, *rev));
    }
    let project = db.project(PROJECT).map_err(|e| e.to_string())?;
    for (job, v) in &spec.answers {
        label
            .answers
            .insert(job.clone(), answer(project.schema.job(job), job, v)?);
    }
    for (job, classes) in &spec.scores {
        for (class, s) in classes {
            label
                .scores
                .entry(job.clone())
                .or_default()
                .insert(class.clone(), s.f32()?);
        }
    }
    if let Some(s) = &spec.seconds {
        label.seconds = s.f32()?;
    }
    label.verdict = match spec.verdict.as_deref() {
        None => None,
        Some("accept") => Some(Verdict::Accept),
        Some("reject") => Some(Verdict::Reject),
        Some(other) => return Err(format!("verdict {other:?}")),
    };
    Ok(label)
}

/// An answer from its JSON shape: classes, `start`/`end` spans or `x`/`y`/`w`/`h` boxes
/// (an empty list takes the job's kind).
fn answer(job: Option<&labeldb::Job>, name: &str, v: &Value) -> Result<Answer, String> {
    let bad = |e: serde_json::Error| format!("answer to {name:?}: {e}");
    let items = match v {
        Value::String(s) => return Ok(Answer::class(s.clone())),
        Value::Array(items) => items,
        other => return Err(format!("answer to {name:?}: {other} is not a class or a list")),
    };
    let first = items.first();
    let is = |key: &str| first.and_then(|f| f.get(key)).is_some();
    if items.iter().all(Value::is_string) && !items.is_empty() {
        let classes = items.iter().filter_map(|c| c.as_str().map(str::to_string)).collect();
        return Ok(Answer::Classes(classes));
    }
    let kind = job.map(|j| j.kind);
    if is("start") || (items.is_empty() && kind == Some(labeldb::JobKind::Spans)) {
        let mut spans = Vec::new();
        for item in items {
            let s: SpanSpec = serde_json::from_value(item.clone()).map_err(bad)?;
            let score = s.score.as_ref().map(Num::f32).transpose()?;
            spans.push(Span {
                start: s.start,
                end: s.end,
                class: s.class,
                score,
            });
        }
        return Ok(Answer::Spans(spans));
    }
    if is("x") || (items.is_empty() && kind == Some(labeldb::JobKind::Boxes)) {
        let mut boxes = Vec::new();
        for item in items {
            let b: BoxSpec = serde_json::from_value(item.clone()).map_err(bad)?;
            let score = b.score.as_ref().map(Num::f32).transpose()?;
            boxes.push(BBox {
                x: b.x.f32()?,
                y: b.y.f32()?,
                w: b.w.f32()?,
                h: b.h.f32()?,
                class: b.class,
                score,
            });
        }
        return Ok(Answer::Boxes(boxes));
    }
    if items.is_empty() {
        return Ok(Answer::Classes(Vec::new()));
    }
    Err(format!("answer to {name:?}: {v} is neither classes, spans nor boxes"))
}

/// Everything a reader can observe, one line per read (errors included, as text), so
/// that a refused write can be shown to have changed nothing.
fn observe(db: &Db) -> Vec<String> {
    let mut out = vec![format!("last_seq {}", db.last_seq())];
    for e in db.changes_since(0) {
        out.push(format!("event {e:?}"));
    }
    for p in db.projects() {
        out.push(format!("project {p:?}"));
        match db.asset_ids(&p.name) {
            Ok(ids) => {
                for id in ids {
                    out.push(format!("asset {id}: {:?}", db.asset(id)));
                    out.push(format!("history {id}: {:?}", db.history(id)));
                }
            }
            Err(e) => out.push(format!("asset_ids {}: {e:?}", p.name)),
        }
        out.push(format!("stats {}: {:?}", p.name, db.stats(&p.name)));
        out.push(format!(
            "count {}: {:?}",
            p.name,
            db.query(&p.name, "").map(|s| s.len())
        ));
        out.push(format!("snapshots {}: {:?}", p.name, db.snapshots(&p.name)));
    }
    out.push(format!("verify {:?}", db.verify()));
    out
}

/// The first difference between two observations, if any.
fn diff(before: &[String], after: &[String]) -> Option<String> {
    if before == after {
        return None;
    }
    let i = before.iter().zip(after).take_while(|(a, b)| a == b).count();
    Some(format!(
        "first difference at read {i}:\n  before: {}\n  after:  {}",
        before.get(i).map_or("<nothing>", String::as_str),
        after.get(i).map_or("<nothing>", String::as_str)
    ))
}

fn apply_tamper(db_path: &Path, t: &Tamper) -> Result<(), String> {
    match t {
        Tamper::Truncate { file, len } => {
            let path = db_path.join(file);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            f.set_len(*len).map_err(|e| format!("truncate {}: {e}", path.display()))
        }
        Tamper::Overwrite { file, text } => {
            let path = db_path.join(file);
            std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
        }
        Tamper::SledPut(r) => {
            let sled = open_sled(db_path).map_err(|e| format!("open sled: {e}"))?;
            sled.insert(r.key(), r.value()?).map_err(|e| e.to_string())?;
            sled.flush().map_err(|e| e.to_string())?;
            Ok(())
        }
    }
}

/// Opens sled directly, waiting for the lock a just-dropped handle may still hold.
fn open_sled(path: &Path) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match sled::open(path) {
            Err(e) if e.to_string().contains("could not acquire lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => return other,
        }
    }
}

/// Every key and value of a sled tree, or why sled cannot open it.
type SledContents = Result<Vec<(Vec<u8>, Vec<u8>)>, String>;

/// Reads every key and value of the sled tree at `path`.
fn sled_contents(path: &Path) -> SledContents {
    let sled = open_sled(path).map_err(|e| e.to_string())?;
    sled.iter()
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| e.to_string()))
        .collect()
}

/// Opens a database that must be refused: the error (from `Db::open`, or else from the
/// first read that fails) and what changed: the sled tree, or what an accepted open lost.
fn refused_open(path: &Path, last_seq: u64) -> Result<(Option<Error>, Option<String>), String> {
    let before = sled_contents(path);
    let mut changes = Vec::new();
    let error = match crate::reopen(path) {
        Err(e) => Some(e),
        Ok(db) => {
            let first = first_read_error(&db);
            if first.is_none() {
                let projects: Vec<String> = db.projects().iter().map(|p| p.name.clone()).collect();
                changes.push(format!(
                    "Db::open and every read succeeded: last_seq {} (was {last_seq}), projects {projects:?}",
                    db.last_seq()
                ));
            }
            drop(db);
            first
        }
    };
    let after = sled_contents(path);
    if before != after {
        let show = |c: &SledContents| match c {
            Ok(kv) => format!(
                "{} keys {:?}",
                kv.len(),
                kv.iter()
                    .take(8)
                    .map(|(k, _)| String::from_utf8_lossy(k))
                    .collect::<Vec<_>>()
            ),
            Err(e) => format!("sled cannot open it: {e}"),
        };
        changes.push(format!("sled tree before: {}; after: {}", show(&before), show(&after)));
    }
    Ok((error, (!changes.is_empty()).then(|| changes.join("; "))))
}

/// The first failing read of an opened database, or `None` when every read succeeds.
fn first_read_error(db: &Db) -> Option<Error> {
    for e in db.changes_since(0) {
        if let Err(e) = e {
            return Some(e);
        }
    }
    for p in db.projects() {
        let ids = match db.asset_ids(&p.name) {
            Ok(ids) => ids,
            Err(e) => return Some(e),
        };
        for id in ids {
            if let Err(e) = db.asset(id).and_then(|_| db.history(id)) {
                return Some(e);
            }
        }
    }
    None
}
