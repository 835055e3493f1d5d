//! Crash safety: a child process writes at random and is killed with SIGKILL at a random
//! moment; the parent reopens the database and checks that every acknowledged write is
//! there whole and that nothing is half-applied (modelled on sled's and RocksDB's kill
//! tests).
//!
//! The parent re-executes this test binary to run one of the `child_*` tests, which do
//! nothing unless the `LABELDB_CRASH_CHILD_*` variables are set. Before each operation the
//! child appends a `start` line to an expected-state file; after the operation and
//! `Db::flush` it appends an `ack` line; both are synced, so the file outlives the kill.
//! Every operation but the child's last one is acknowledged; the last one may or may not
//! have landed, and the parent accepts either outcome — but only whole.
//!
//! `LABELDB_CRASH_ROUNDS` (default 50) sets the number of kills, `LABELDB_CRASH_SEED` the
//! seed (printed, so a failure can be replayed).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use labeldb::testing::Rng;
use labeldb::{
    Answer, Db, Format, ImportOptions, Label, LabelId, LabelKind, MetaValue, NewAsset, NewLabel, Selection, Source,
    Status,
};
use serde::{Deserialize, Serialize};

use crate::{data_dir, schema, TestResult};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const ENV_DB: &str = "LABELDB_CRASH_CHILD_DB";
const ENV_STATE: &str = "LABELDB_CRASH_CHILD_STATE";
const ENV_SEED: &str = "LABELDB_CRASH_CHILD_SEED";
const ENV_INPUT: &str = "LABELDB_CRASH_CHILD_INPUT";

/// What a child prints once its database is open (on the line of the harness's
/// `test NAME ... `).
const READY: &str = "labeldb-crash-child: ready";
/// What the import child prints after each flushed batch, followed by the assets imported.
const PROGRESS: &str = "labeldb-crash-child: imported ";

const PROJECT: &str = "crash";
const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["ham", "spam", "other"]},
    {"name": "tags", "kind": "multi-classification", "classes": ["short", "long", "url", "money"]}
]}"#;
const CATEGORIES: [&str; 3] = ["ham", "spam", "other"];
const TAGS: [&str; 4] = ["short", "long", "url", "money"];
const ANNOTATORS: [&str; 3] = ["ann0", "ann1", "ann2"];
const SNAPSHOT_QUERIES: [&str; 4] = [
    "status:reviewed",
    "status:to_review",
    "meta.flag:true",
    "label.category:spam AND status:labeled",
];

/// Queries whose results are compared with a brute-force evaluation over the model.
const MODEL_QUERIES: [&str; 12] = [
    "status:todo",
    "status:ongoing",
    "status:labeled",
    "status:to_review",
    "status:reviewed",
    "label.category:spam",
    "label.tags:url",
    "prediction.category:ham",
    "author:ann1",
    "model:clf",
    "meta.split:train",
    "meta.flag:true",
];

/// Queries (full text among them) compared before and after `repair_indexes`.
const REPAIR_QUERIES: [&str; 6] = [
    "free",
    "call*",
    "\"good morning\"",
    "text:ok AND status:labeled",
    "label.category:ham OR meta.n:1.5",
    "NOT status:todo AND NOT (sorry OR later)",
];

/// The texts of the SMS Spam Collection, one per message.
fn sms_texts() -> Res<Vec<String>> {
    let source = std::fs::read_to_string(data_dir().join("sms_spam_collection/SMSSpamCollection"))?;
    source
        .lines()
        .enumerate()
        .map(|(i, line)| match line.split_once('\t') {
            Some((_, text)) => Ok(text.to_string()),
            None => Err(format!("SMSSpamCollection line {}: no TAB", i + 1).into()),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The expected-state file.

/// An asset the child adds (by `add_assets` or by importing JSONL).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PlannedAsset {
    ext: String,
    /// Index of its text in the SMS collection.
    sms: usize,
    /// The category of the annotation written with it, if any.
    category: Option<String>,
}

/// A label the child writes: a human annotation, or a prediction by `clf@1`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PlannedLabel {
    /// The annotator; `None` for a prediction.
    annotator: Option<String>,
    category: String,
    tags: Vec<String>,
    score: f32,
}

impl PlannedLabel {
    fn new_label(&self) -> NewLabel {
        let answers = |l: NewLabel| {
            l.answer("category", Answer::class(self.category.as_str()))
                .answer("tags", Answer::Classes(self.tags.clone()))
        };
        match &self.annotator {
            Some(user) => answers(NewLabel::annotation(user.as_str())),
            None => answers(NewLabel::prediction("clf", "1")).score("category", self.category.as_str(), self.score),
        }
    }

    fn expected(&self) -> ExpLabel {
        let l = self.new_label();
        ExpLabel {
            kind: l.kind,
            source: l.source,
            answers: l.answers,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op")]
enum Op {
    Add {
        assets: Vec<PlannedAsset>,
    },
    Import {
        assets: Vec<PlannedAsset>,
        batch: usize,
    },
    Label {
        asset: String,
        label: PlannedLabel,
    },
    Status {
        asset: String,
        to: Status,
    },
    Meta {
        asset: String,
        key: String,
        value: Option<MetaValue>,
    },
    Snapshot {
        name: String,
        query: String,
        selection: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "ack")]
enum Ack {
    Added { count: usize },
    Label { id: LabelId, status: Status },
    Done,
    Snapshot(SnapshotSeen),
}

/// A snapshot as the child saw it after creating it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SnapshotSeen {
    name: String,
    digest: String,
    assets: u64,
    /// External id and label of the first few examples.
    examples: Vec<(String, LabelId)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Line {
    Start { n: u64, op: Op },
    Ack { n: u64, ack: Ack },
    Imported { count: u64 },
}

/// The child's side of the expected-state file: every line is synced before the child
/// goes on.
struct StateLog(File);

impl StateLog {
    fn open(path: &Path) -> Res<StateLog> {
        Ok(StateLog(OpenOptions::new().create(true).append(true).open(path)?))
    }

    fn record(&mut self, line: &Line) -> Res<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        // One write call per line: a kill leaves at most a partial last line.
        self.0.write_all(text.as_bytes())?;
        self.0.sync_data()?;
        Ok(())
    }
}

/// The complete lines of the expected-state file (a partial last line was never written).
fn read_state(path: &Path) -> Res<Vec<Line>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.pop(); // what follows the last newline: empty, or a line cut by the kill
    lines
        .into_iter()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("state line {l:?}: {e}").into()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Children.

struct ChildEnv {
    db: PathBuf,
    state: PathBuf,
    seed: u64,
}

/// The child's parameters, or `None` when this test runs as an ordinary (no-op) test.
fn child_env() -> Res<Option<ChildEnv>> {
    let Some(db) = std::env::var_os(ENV_DB) else {
        return Ok(None);
    };
    let state = std::env::var_os(ENV_STATE).ok_or(format!("{ENV_DB} is set but not {ENV_STATE}"))?;
    let seed = std::env::var(ENV_SEED)?.parse()?;
    Ok(Some(ChildEnv {
        db: db.into(),
        state: state.into(),
        seed,
    }))
}

/// Runs random writes until killed (or for a minute, should the parent have died).
#[test]
fn child_writes_random_operations_until_killed() -> TestResult {
    let Some(env) = child_env()? else {
        return Ok(());
    };
    let texts = sms_texts()?;
    let db = crate::reopen(&env.db)?;
    let mut log = StateLog::open(&env.state)?;
    println!("{READY}");
    let mut rng = Rng::new(env.seed);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while Instant::now() < deadline {
        let op = plan(&db, &texts, &mut rng, env.seed, n)?;
        log.record(&Line::Start { n, op: op.clone() })?;
        let ack = perform(&db, &texts, &op)?;
        db.flush()?;
        log.record(&Line::Ack { n, ack })?;
        n += 1;
    }
    Ok(())
}

/// Chooses the next operation from the database's current state.
fn plan(db: &Db, texts: &[String], rng: &mut Rng, seed: u64, n: u64) -> Res<Op> {
    let ids = db.asset_ids(PROJECT)?;
    let new_assets = |rng: &mut Rng, prefix: &str, count: usize| -> Vec<PlannedAsset> {
        (0..count)
            .map(|i| PlannedAsset {
                ext: format!("{prefix}{seed}-{n}-{i}"),
                sms: rng.below(texts.len()),
                category: (rng.below(2) == 0).then(|| rng.pick(&CATEGORIES).to_string()),
            })
            .collect()
    };
    let roll = if ids.is_empty() { 0 } else { rng.below(100) };
    let asset = |rng: &mut Rng| db.asset(*rng.pick(&ids));
    Ok(match roll {
        0..=14 => {
            let count = 1 + rng.below(4);
            Op::Add {
                assets: new_assets(rng, "a", count),
            }
        }
        15..=24 => {
            let count = 3 + rng.below(8);
            Op::Import {
                assets: new_assets(rng, "j", count),
                batch: 2 + rng.below(3),
            }
        }
        25..=59 => {
            let asset = asset(rng)?.external_id;
            let tags = TAGS
                .iter()
                .filter(|_| rng.below(3) == 0)
                .map(|t| t.to_string())
                .collect();
            Op::Label {
                asset,
                label: PlannedLabel {
                    annotator: (rng.below(10) < 7).then(|| rng.pick(&ANNOTATORS).to_string()),
                    category: rng.pick(&CATEGORIES).to_string(),
                    tags,
                    score: *rng.pick(&[0.25, 0.5, 0.75, 0.875]),
                },
            }
        }
        60..=79 => {
            let a = asset(rng)?;
            let targets: Vec<Status> = Status::ALL.into_iter().filter(|s| a.status.can_become(*s)).collect();
            Op::Status {
                asset: a.external_id,
                to: *rng.pick(&targets),
            }
        }
        80..=94 => {
            let asset = asset(rng)?.external_id;
            let key = rng.pick(&["split", "flag", "n"]).to_string();
            let value = match (rng.below(5), key.as_str()) {
                (0, _) => None,
                (_, "split") => Some(MetaValue::Str(rng.pick(&["train", "test"]).to_string())),
                (_, "flag") => Some(MetaValue::Bool(rng.below(2) == 0)),
                _ => Some(MetaValue::Num(rng.below(4) as f64 * 0.5)),
            };
            Op::Meta { asset, key, value }
        }
        _ => Op::Snapshot {
            name: format!("s{seed}-{n}"),
            query: rng.pick(&SNAPSHOT_QUERIES).to_string(),
            selection: rng.pick(&["latest-human", "majority"]).to_string(),
        },
    })
}

fn new_asset(texts: &[String], a: &PlannedAsset) -> NewAsset {
    let asset = NewAsset::text(a.ext.as_str(), texts[a.sms].as_str());
    match &a.category {
        Some(c) => asset.with_label(NewLabel::annotation("adder").answer("category", Answer::class(c.as_str()))),
        None => asset,
    }
}

/// The JSONL line of an imported asset (its label is by `importer`, with a `src` meta).
fn jsonl_line(texts: &[String], a: &PlannedAsset) -> String {
    let labels: Vec<serde_json::Value> = a
        .category
        .iter()
        .map(|c| serde_json::json!({"author": "importer", "answers": {"category": c}}))
        .collect();
    serde_json::json!({"id": a.ext, "text": texts[a.sms], "meta": {"src": "jsonl"}, "labels": labels}).to_string()
}

fn perform(db: &Db, texts: &[String], op: &Op) -> Res<Ack> {
    Ok(match op {
        Op::Add { assets } => {
            let report = db.add_assets("child", PROJECT, assets.iter().map(|a| new_asset(texts, a)).collect())?;
            Ack::Added {
                count: report.added.len(),
            }
        }
        Op::Import { assets, batch } => {
            let input: String = assets.iter().map(|a| jsonl_line(texts, a) + "\n").collect();
            let mut options = ImportOptions::new(Format::Jsonl);
            options.batch_size = *batch;
            let report = db.import_reader("importer", PROJECT, input.as_bytes(), "batch.jsonl", &options, |_| {})?;
            Ack::Added {
                count: report.imported as usize,
            }
        }
        Op::Label { asset, label } => {
            let a = db.asset_by_external_id(PROJECT, asset)?;
            let id = db.add_label(a.id, label.new_label())?;
            Ack::Label {
                id,
                status: db.asset(a.id)?.status,
            }
        }
        Op::Status { asset, to } => {
            db.set_status("child", db.asset_by_external_id(PROJECT, asset)?.id, *to)?;
            Ack::Done
        }
        Op::Meta { asset, key, value } => {
            db.set_meta("child", db.asset_by_external_id(PROJECT, asset)?.id, key, value.clone())?;
            Ack::Done
        }
        Op::Snapshot { name, query, selection } => {
            let filter = labeldb::query::parse(query)?;
            db.create_snapshot("child", PROJECT, name, &filter, &selection.parse::<Selection>()?)?;
            Ack::Snapshot(snapshot_seen(db, name)?)
        }
    })
}

fn snapshot_seen(db: &Db, name: &str) -> Res<SnapshotSeen> {
    let snap = db.snapshot(PROJECT, name)?;
    let examples = (0..snap.len().min(3))
        .map(|i| snap.get(i).map(|e| (e.external_id, e.label)))
        .collect::<labeldb::Result<_>>()?;
    Ok(SnapshotSeen {
        name: name.to_string(),
        digest: snap.info().digest.to_string(),
        assets: snap.info().assets,
        examples,
    })
}

// ---------------------------------------------------------------------------------------
// Spawning and killing children.

/// A running child; killed and reaped when dropped, so a failing parent leaves no orphan.
struct ChildProc {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl ChildProc {
    fn spawn(test: &str, seed: u64, env: &[(&str, OsString)]) -> Res<ChildProc> {
        // `/proc/self/exe` is this very binary even if a concurrent `cargo build` has
        // replaced the file at `current_exe()` meanwhile (which would run other tests).
        let exe = match Path::new("/proc/self/exe") {
            p if p.exists() => p.to_path_buf(),
            _ => std::env::current_exe()?,
        };
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", &format!("crash::{test}"), "--nocapture", "--test-threads=1"])
            .env(ENV_SEED, seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let mut stderr = child.stderr.take().ok_or("no child stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Ok(ChildProc {
            child,
            stdout: rx,
            stderr: Some(stderr),
        })
    }

    /// Waits for a stdout line that `want` accepts; fails if the child exits first.
    fn wait_for(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> Res<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if want(&line) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return Err("timed out waiting for the child".into()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("the child exited early: {}", self.finish()?).into())
                }
            }
        }
    }

    /// SIGKILLs the child, which must still be running.
    fn kill(mut self) -> Res<()> {
        if self.child.try_wait()?.is_some() {
            return Err(format!("the child exited before it was killed: {}", self.finish()?).into());
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Reaps the child; its exit status and stderr, for an error message.
    fn finish(&mut self) -> Res<String> {
        let status = self.child.wait()?;
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Ok(format!("{status}; stderr:\n{stderr}"))
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_u64(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v.parse().map_err(|e| format!("{name}={v:?}: {e}"))?),
        _ => Ok(default),
    }
}

// ---------------------------------------------------------------------------------------
// The parent's model of what must be in the database.

#[derive(Clone, Debug, PartialEq)]
struct ExpLabel {
    kind: LabelKind,
    source: Source,
    answers: BTreeMap<String, Answer>,
}

impl ExpLabel {
    fn of(l: &Label) -> ExpLabel {
        ExpLabel {
            kind: l.kind,
            source: l.source.clone(),
            answers: l.answers.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct ExpAsset {
    sms: usize,
    status: Status,
    meta: BTreeMap<String, MetaValue>,
    labels: Vec<ExpLabel>,
}

/// Everything acknowledged so far, plus the resolved outcome of each unacknowledged op.
#[derive(Default)]
struct Model {
    assets: BTreeMap<String, ExpAsset>,
    snapshots: BTreeMap<String, SnapshotSeen>,
    /// State lines already applied.
    lines_seen: usize,
    acked_ops: u64,
    pending_landed: u64,
    pending_lost: u64,
}

impl Model {
    fn add(&mut self, a: &PlannedAsset, imported: bool) {
        let (author, meta) = if imported {
            (
                "importer",
                BTreeMap::from([("src".to_string(), MetaValue::Str("jsonl".into()))]),
            )
        } else {
            ("adder", BTreeMap::new())
        };
        let labels: Vec<ExpLabel> = a
            .category
            .iter()
            .map(|c| ExpLabel {
                kind: LabelKind::Annotation,
                source: Source::human(author),
                answers: BTreeMap::from([("category".to_string(), Answer::class(c.as_str()))]),
            })
            .collect();
        let status = if labels.is_empty() {
            Status::Todo
        } else {
            Status::Labeled
        };
        let previous = self.assets.insert(
            a.ext.clone(),
            ExpAsset {
                sms: a.sms,
                status,
                meta,
                labels,
            },
        );
        assert!(previous.is_none(), "external id {} planned twice", a.ext);
    }

    fn asset(&mut self, ext: &str) -> &mut ExpAsset {
        match self.assets.get_mut(ext) {
            Some(a) => a,
            None => panic!("the child wrote to {ext}, which the model does not have"),
        }
    }

    /// The status after a label: a human annotation moves TODO/ONGOING on to LABELED
    /// (consensus 1).
    fn label(&mut self, ext: &str, label: &PlannedLabel) -> Status {
        let a = self.asset(ext);
        if label.annotator.is_some() && matches!(a.status, Status::Todo | Status::Ongoing) {
            a.status = Status::Labeled;
        }
        a.labels.push(label.expected());
        a.status
    }

    /// Applies an acknowledged operation.
    fn apply(&mut self, op: &Op, ack: &Ack) {
        match (op, ack) {
            (Op::Add { assets }, Ack::Added { count }) | (Op::Import { assets, .. }, Ack::Added { count }) => {
                assert_eq!(
                    *count,
                    assets.len(),
                    "the child acknowledged a partial add of {assets:?}"
                );
                for a in assets {
                    self.add(a, matches!(op, Op::Import { .. }));
                }
            }
            (Op::Label { asset, label }, Ack::Label { id, status }) => {
                let revision = self.asset(asset).labels.len() as u32;
                assert_eq!(
                    id.revision(),
                    revision,
                    "label {id} on {asset}: revisions are not contiguous"
                );
                let expected = self.label(asset, label);
                assert_eq!(*status, expected, "status of {asset} after label {id}");
            }
            (Op::Status { asset, to }, Ack::Done) => self.asset(asset).status = *to,
            (Op::Meta { asset, key, value }, Ack::Done) => set_meta(&mut self.asset(asset).meta, key, value),
            (Op::Snapshot { name, .. }, Ack::Snapshot(seen)) => {
                assert_eq!(&seen.name, name);
                self.snapshots.insert(name.clone(), seen.clone());
            }
            (op, ack) => panic!("acknowledgement {ack:?} does not match {op:?}"),
        }
    }

    /// Decides from the database whether the unacknowledged last op landed — wholly or
    /// not at all — and applies it if it did.
    fn resolve(&mut self, db: &Db, op: &Op) -> Res<bool> {
        let exists = |ext: &str| db.asset_by_external_id(PROJECT, ext).is_ok();
        Ok(match op {
            Op::Add { assets } => {
                let present = assets.iter().filter(|a| exists(&a.ext)).count();
                assert!(
                    present == 0 || present == assets.len(),
                    "a killed add_assets is half there: {present} of {} assets",
                    assets.len()
                );
                for a in assets.iter().take(present) {
                    self.add(a, false);
                }
                present > 0
            }
            Op::Import { assets, batch } => {
                let present: Vec<bool> = assets.iter().map(|a| exists(&a.ext)).collect();
                let landed = present.iter().take_while(|p| **p).count();
                assert!(
                    present[landed..].iter().all(|p| !p),
                    "a killed import landed batches out of order: {present:?}"
                );
                assert!(
                    landed % batch == 0 || landed == assets.len(),
                    "a killed import has half a batch of {batch}: {landed} of {} assets",
                    assets.len()
                );
                for a in &assets[..landed] {
                    self.add(a, true);
                }
                landed > 0
            }
            Op::Label { asset, label } => {
                let revisions = db.asset_by_external_id(PROJECT, asset)?.revisions as usize;
                let known = self.asset(asset).labels.len();
                assert!(
                    revisions == known || revisions == known + 1,
                    "{asset} has {revisions} revisions, {known} expected (+1 for the killed label)"
                );
                if revisions == known + 1 {
                    self.label(asset, label);
                }
                revisions == known + 1
            }
            Op::Status { asset, to } => {
                let landed = db.asset_by_external_id(PROJECT, asset)?.status == *to;
                if landed {
                    self.asset(asset).status = *to;
                }
                landed
            }
            Op::Meta { asset, key, value } => {
                let landed = db.asset_by_external_id(PROJECT, asset)?.meta.get(key) == value.as_ref();
                if landed {
                    set_meta(&mut self.asset(asset).meta, key, value);
                }
                landed
            }
            Op::Snapshot { name, .. } => {
                let landed = db.snapshots(PROJECT)?.iter().any(|(info, _)| &info.name == name);
                if landed {
                    self.snapshots.insert(name.clone(), snapshot_seen(db, name)?);
                }
                landed
            }
        })
    }

    /// Reads the state lines the last child appended and applies them.
    fn catch_up(&mut self, db: &Db, state: &Path) -> Res<()> {
        let lines = read_state(state)?;
        let mut started: Option<(u64, Op)> = None;
        for line in &lines[self.lines_seen..] {
            match line {
                Line::Start { n, op } => {
                    if let Some((m, _)) = &started {
                        return Err(format!("op {m} was never acknowledged, yet op {n} started").into());
                    }
                    started = Some((*n, op.clone()));
                }
                Line::Ack { n, ack } => match started.take() {
                    Some((m, op)) if m == *n => {
                        self.apply(&op, ack);
                        self.acked_ops += 1;
                    }
                    other => return Err(format!("ack of op {n} after start {:?}", other.map(|o| o.0)).into()),
                },
                Line::Imported { .. } => return Err("an import line in the random-writes state".into()),
            }
        }
        self.lines_seen = lines.len();
        if let Some((_, op)) = started {
            if self.resolve(db, &op)? {
                self.pending_landed += 1;
            } else {
                self.pending_lost += 1;
            }
        }
        Ok(())
    }

    /// Brute-force evaluation of one of [`MODEL_QUERIES`].
    fn matches(&self, query: &str, a: &ExpAsset) -> bool {
        // The latest label of each (kind, source): what class filters look at.
        let mut latest: BTreeMap<(LabelKind, &Source), &ExpLabel> = BTreeMap::new();
        for l in &a.labels {
            latest.insert((l.kind, &l.source), l);
        }
        let class = |kind: LabelKind, job: &str, class: &str| {
            latest.iter().any(|((k, _), l)| {
                *k == kind
                    && l.answers
                        .get(job)
                        .is_some_and(|ans| ans.class_occurrences().any(|c| c == class))
            })
        };
        let meta = |k: &str, want: &MetaValue| a.meta.get(k) == Some(want);
        match query {
            "label.category:spam" => class(LabelKind::Annotation, "category", "spam"),
            "label.tags:url" => class(LabelKind::Annotation, "tags", "url"),
            "prediction.category:ham" => class(LabelKind::Prediction, "category", "ham"),
            "author:ann1" => a
                .labels
                .iter()
                .any(|l| l.kind == LabelKind::Annotation && l.source == Source::human("ann1")),
            "model:clf" => a
                .labels
                .iter()
                .any(|l| matches!(&l.source, Source::Model { name, .. } if name == "clf")),
            "meta.split:train" => meta("split", &MetaValue::Str("train".into())),
            "meta.flag:true" => meta("flag", &MetaValue::Bool(true)),
            q => match q.strip_prefix("status:") {
                Some(s) => a.status == s.parse().unwrap_or_else(|e| panic!("{q}: {e}")),
                None => panic!("no brute force for {q:?}"),
            },
        }
    }
}

fn set_meta(meta: &mut BTreeMap<String, MetaValue>, key: &str, value: &Option<MetaValue>) {
    match value {
        Some(v) => meta.insert(key.to_string(), v.clone()),
        None => meta.remove(key),
    };
}

/// Checks that the database holds exactly what the model says.
fn check_against_model(db: &Db, model: &Model, texts: &[String]) -> Res<()> {
    let mut seen = BTreeSet::new();
    for id in db.asset_ids(PROJECT)? {
        let asset = db.asset(id)?;
        let ext = asset.external_id.clone();
        let Some(exp) = model.assets.get(&ext) else {
            return Err(format!("asset {ext} is in the database but was never written").into());
        };
        assert!(seen.insert(ext.clone()), "{ext} twice");
        assert_eq!(asset.content.text(), Some(texts[exp.sms].as_str()), "content of {ext}");
        assert_eq!(asset.status, exp.status, "status of {ext}");
        assert_eq!(asset.meta, exp.meta, "metadata of {ext}");
        assert_eq!(asset.revisions as usize, exp.labels.len(), "revisions of {ext}");
        let history = db.history(id)?;
        for (rev, l) in history.iter().enumerate() {
            assert_eq!(l.id, LabelId::new(id, rev as u32), "label ids of {ext}");
        }
        let got: Vec<ExpLabel> = history.iter().map(ExpLabel::of).collect();
        assert_eq!(got, exp.labels, "labels of {ext}");
    }
    let missing: Vec<&String> = model.assets.keys().filter(|e| !seen.contains(*e)).collect();
    assert!(missing.is_empty(), "acknowledged assets lost: {missing:?}");

    let snapshots: BTreeMap<String, labeldb::SnapshotInfo> = db
        .snapshots(PROJECT)?
        .into_iter()
        .map(|(i, _)| (i.name.clone(), i))
        .collect();
    assert_eq!(
        snapshots.keys().collect::<Vec<_>>(),
        model.snapshots.keys().collect::<Vec<_>>(),
        "snapshots"
    );
    for (name, seen) in &model.snapshots {
        assert_eq!(&snapshot_seen(db, name)?, seen, "snapshot {name}");
        let problems = db.verify_snapshot(PROJECT, name)?;
        assert!(problems.is_empty(), "snapshot {name}: {problems:?}");
    }

    for q in MODEL_QUERIES {
        let got: BTreeSet<String> = db
            .query(PROJECT, q)?
            .iter()
            .map(|id| db.asset(id).map(|a| a.external_id))
            .collect::<Result<_, _>>()?;
        let want: BTreeSet<String> = model
            .assets
            .iter()
            .filter(|(_, a)| model.matches(q, a))
            .map(|(e, _)| e.clone())
            .collect();
        assert_eq!(
            got, want,
            "query {q:?} against brute force over the acknowledged writes"
        );
    }
    Ok(())
}

/// Query results before and after rebuilding every index from primary data.
fn check_queries_equal_a_rebuild(db: &Db) -> Res<()> {
    let before = REPAIR_QUERIES
        .iter()
        .map(|q| db.query(PROJECT, q))
        .collect::<labeldb::Result<Vec<_>>>()?;
    assert_eq!(db.repair_indexes()?, 0, "the bitmaps differed from a rebuild");
    for (q, b) in REPAIR_QUERIES.iter().zip(before) {
        assert_eq!(db.query(PROJECT, q)?, b, "query {q:?} changed after repair_indexes");
    }
    Ok(())
}

fn check_index_info(db: &Db) {
    let info = db.index_info();
    for why in [&info.rebuilt, &info.text_rebuilt].into_iter().flatten() {
        // Rebuilding is allowed; finding derived data ahead of the log is not: it would
        // mean a checkpoint or a text commit outlived the writes it reflects.
        assert!(!why.contains("ahead"), "after a crash: {why} ({info:?})");
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[test]
fn killed_writers_lose_no_acknowledged_write_and_leave_nothing_half_applied() -> TestResult {
    let rounds = env_u64("LABELDB_CRASH_ROUNDS", 50)?;
    let seed = env_u64("LABELDB_CRASH_SEED", 0x1abe_1db0)?;
    println!("crash: {rounds} rounds, LABELDB_CRASH_SEED={seed}");
    let texts = sms_texts()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let state = dir.path().join("state.jsonl");
    {
        let db = Db::open(&path)?;
        db.create_project("admin", PROJECT, schema(SCHEMA))?;
        db.flush()?;
    }
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut last_seq = 0;
    let mut rebuilt = 0;
    for round in 0..rounds {
        let child_seed = seed.wrapping_mul(1000).wrapping_add(round);
        let mut child = ChildProc::spawn(
            "child_writes_random_operations_until_killed",
            child_seed,
            &[(ENV_DB, path.clone().into()), (ENV_STATE, state.clone().into())],
        )?;
        // Mostly kill while it writes; one round in eight, anywhere from its start (which
        // may be during exec, open and recovery).
        let sleep = if round % 8 == 5 {
            rng.below(300)
        } else {
            child.wait_for(Duration::from_secs(120), |l| l.contains(READY))?;
            50 + rng.below(351)
        };
        std::thread::sleep(Duration::from_millis(sleep as u64));
        child.kill()?;

        let db = crate::reopen(&path)?;
        check_index_info(&db);
        rebuilt += u64::from(db.index_info().rebuilt.is_some() || db.index_info().text_rebuilt.is_some());
        assert!(
            db.last_seq() >= last_seq,
            "round {round}: the log went back from {last_seq} to {}",
            db.last_seq()
        );
        last_seq = db.last_seq();
        model.catch_up(&db, &state).map_err(|e| format!("round {round}: {e}"))?;
        let report = db.verify()?;
        assert!(report.is_clean(), "round {round}: {:?}", report.problems);
        check_against_model(&db, &model, &texts).map_err(|e| format!("round {round}: {e}"))?;
        if round % 10 == 9 || round + 1 == rounds {
            check_queries_equal_a_rebuild(&db)?;
        }
    }
    println!(
        "crash: {rounds} rounds in {:.1} s: {} acknowledged ops, killed op landed {} times and was lost {} times, \
         {} assets, {} snapshots, {rebuilt} opens rebuilt an index",
        started.elapsed().as_secs_f64(),
        model.acked_ops,
        model.pending_landed,
        model.pending_lost,
        model.assets.len(),
        model.snapshots.len(),
    );
    assert!(
        model.acked_ops >= rounds / 4,
        "too few acknowledged operations to mean anything"
    );
    Ok(())
}

const BULK: &str = "bulk";
const BULK_LINES: usize = 5_000;
const BULK_BATCH: usize = 50;

/// Imports the file named by `LABELDB_CRASH_CHILD_INPUT`, flushing and recording each
/// batch, until killed.
#[test]
fn child_imports_a_large_file_until_killed() -> TestResult {
    let Some(env) = child_env()? else {
        return Ok(());
    };
    let input = PathBuf::from(std::env::var_os(ENV_INPUT).ok_or(format!("{ENV_INPUT} is not set"))?);
    let db = crate::reopen(&env.db)?;
    let mut log = StateLog::open(&env.state)?;
    println!("{READY}");
    let mut options = ImportOptions::new(Format::Jsonl);
    options.batch_size = BULK_BATCH;
    let mut failed = None;
    db.import_file("importer", BULK, &input, &options, |r| {
        let mut ack = || -> Res<()> {
            db.flush()?;
            log.record(&Line::Imported { count: r.imported })
        };
        match ack() {
            Ok(()) => println!("{PROGRESS}{}", r.imported),
            Err(e) => failed = Some(e.to_string()),
        }
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The bulk file's records: external id, text, and the labels each line carries.
fn bulk_records(texts: &[String]) -> Vec<(String, String, Vec<ExpLabel>)> {
    (0..BULK_LINES)
        .map(|i| {
            let category = if i % 9 == 0 { "spam" } else { "ham" };
            let mut labels = vec![ExpLabel {
                kind: LabelKind::Annotation,
                source: Source::human("gold"),
                answers: BTreeMap::from([("category".to_string(), Answer::class(category))]),
            }];
            if i % 7 == 0 {
                labels.push(ExpLabel {
                    kind: LabelKind::Prediction,
                    source: Source::Model {
                        name: "clf".into(),
                        version: "2".into(),
                    },
                    answers: BTreeMap::from([("category".to_string(), Answer::class("spam"))]),
                });
            }
            (format!("bulk-{i}"), texts[i % texts.len()].clone(), labels)
        })
        .collect()
}

fn write_bulk_file(path: &Path, records: &[(String, String, Vec<ExpLabel>)]) -> Res<()> {
    let mut out = std::io::BufWriter::new(File::create(path)?);
    for (i, (ext, text, labels)) in records.iter().enumerate() {
        let labels: Vec<serde_json::Value> = labels
            .iter()
            .map(|l| {
                let class = match &l.answers["category"] {
                    Answer::Classes(c) => c[0].clone(),
                    other => panic!("unexpected answer {other:?}"),
                };
                match &l.source {
                    Source::Human { user } => serde_json::json!({"author": user, "answers": {"category": class}}),
                    _ => serde_json::json!({"model": "clf@2", "answers": {"category": class},
                                            "scores": {"category": {"spam": 0.5}}}),
                }
            })
            .collect();
        let line = serde_json::json!({"id": ext, "text": text, "meta": {"line": i}, "labels": labels});
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

#[test]
fn an_import_killed_midway_and_run_again_completes_with_exact_counts() -> TestResult {
    let seed = env_u64("LABELDB_CRASH_SEED", 0x1abe_1db0)?;
    let mut rng = Rng::new(seed ^ 0x5eed);
    let texts = sms_texts()?;
    let records = bulk_records(&texts);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let state = dir.path().join("state.jsonl");
    let input = dir.path().join("bulk.jsonl");
    write_bulk_file(&input, &records)?;
    {
        let db = Db::open(&path)?;
        db.create_project("admin", BULK, schema(SCHEMA))?;
        db.flush()?;
    }
    let started = Instant::now();
    let mut child = ChildProc::spawn(
        "child_imports_a_large_file_until_killed",
        seed,
        &[
            (ENV_DB, path.clone().into()),
            (ENV_STATE, state.clone().into()),
            (ENV_INPUT, input.clone().into()),
        ],
    )?;
    child.wait_for(Duration::from_secs(120), |l| l.contains(READY))?;
    let threshold = (1_000 + rng.below(2_500)) as u64;
    child.wait_for(Duration::from_secs(300), |l| {
        l.split_once(PROGRESS)
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .is_some_and(|n| n >= threshold)
    })?;
    std::thread::sleep(Duration::from_millis(rng.below(40) as u64));
    child.kill()?;
    let killed_after = started.elapsed();

    let acked = read_state(&state)?
        .iter()
        .filter_map(|l| match l {
            Line::Imported { count } => Some(*count),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let db = crate::reopen(&path)?;
    check_index_info(&db);
    let report = db.verify()?;
    assert!(report.is_clean(), "after the kill: {:?}", report.problems);
    let present: BTreeSet<String> = db
        .asset_ids(BULK)?
        .into_iter()
        .map(|id| db.asset(id).map(|a| a.external_id))
        .collect::<Result<_, _>>()?;
    let landed = present.len();
    assert!(
        landed as u64 >= acked,
        "{acked} assets were acknowledged, only {landed} survived"
    );
    assert!(landed < BULK_LINES, "the child finished before it was killed");
    assert_eq!(landed % BULK_BATCH, 0, "half a batch survived the kill");
    let prefix: BTreeSet<String> = records[..landed].iter().map(|r| r.0.clone()).collect();
    assert_eq!(present, prefix, "the surviving assets are not the first {landed} lines");

    let mut options = ImportOptions::new(Format::Jsonl);
    options.batch_size = BULK_BATCH;
    let rerun = db.import_file("importer", BULK, &input, &options, |_| {})?;
    assert_eq!(rerun.records, BULK_LINES as u64);
    assert_eq!(rerun.imported + rerun.duplicates, BULK_LINES as u64, "{rerun:?}");
    assert_eq!(rerun.duplicates, landed as u64, "{rerun:?}");
    assert_eq!(rerun.invalid, 0);
    let rest_labels: usize = records[landed..].iter().map(|r| r.2.len()).sum();
    assert_eq!(rerun.labels, rest_labels as u64);

    let check = |db: &Db| -> Res<()> {
        let ids = db.asset_ids(BULK)?;
        assert_eq!(ids.len(), BULK_LINES);
        assert_eq!(db.query(BULK, "*")?.len(), BULK_LINES as u64);
        let mut seen = BTreeSet::new();
        let expected: BTreeMap<&str, (&String, &Vec<ExpLabel>)> =
            records.iter().map(|(e, t, l)| (e.as_str(), (t, l))).collect();
        for id in ids {
            let asset = db.asset(id)?;
            let Some((text, labels)) = expected.get(asset.external_id.as_str()) else {
                return Err(format!("unexpected asset {}", asset.external_id).into());
            };
            assert!(
                seen.insert(asset.external_id.clone()),
                "{} imported twice",
                asset.external_id
            );
            assert_eq!(asset.content.text(), Some(text.as_str()));
            let history: Vec<ExpLabel> = db.history(id)?.iter().map(ExpLabel::of).collect();
            assert_eq!(&history, *labels, "labels of {}", asset.external_id);
        }
        let spam = records
            .iter()
            .filter(|r| r.2[0].answers["category"] == Answer::class("spam"))
            .count();
        assert_eq!(db.query(BULK, "label.category:spam")?.len(), spam as u64);
        assert_eq!(
            db.query(BULK, "model:clf@2")?.len(),
            records.iter().filter(|r| r.2.len() == 2).count() as u64
        );
        let report = db.verify()?;
        assert!(report.is_clean(), "{:?}", report.problems);
        Ok(())
    };
    check(&db)?;
    drop(db);
    check(&crate::reopen(&path)?)?;
    println!(
        "crash: import killed after {:.1} s with {acked} assets acknowledged and {landed} landed; \
         the re-run imported {} and skipped {} duplicates; total {:.1} s",
        killed_after.as_secs_f64(),
        rerun.imported,
        rerun.duplicates,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
