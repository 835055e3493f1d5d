//! Crash safety: a child process writes and is SIGKILLed while an operation is in flight;
//! the parent reopens the database and checks that `verify` is clean, that every
//! acknowledged write is there whole, that the operation in flight is there whole or not
//! at all, and that the database takes a new write (modelled on sled's and RocksDB's
//! kill tests).
//!
//! The child is the test-only binary `labeldb-crash-child` (src/bin/labeldb-crash-child.rs,
//! built by `cargo test` through the `testing` feature), run with a scenario, the
//! database, an expected-state file and a seed as arguments. Before each operation it
//! appends a `start` line to the expected-state file and prints `started N`; after the
//! operation and `Db::flush` an `ack` line and `acked N`; both lines are synced, so the
//! file outlives the kill (`labeldb::testing::crash`). The scenarios:
//!
//! - `random`: random adds, imports, labels, status and metadata changes, snapshots;
//! - `import`: one import of 200,000 generated assets in batches, resumed by each child
//!   where the last one was killed (re-importing the batch that was in flight);
//! - `labels`: `add_label` one at a time mixed with status changes;
//! - `snapshot`: `create_snapshot` over a project of [`BIG`] assets;
//! - `checkpoint`: 20 writes then `Db::flush`, which writes the bitmap-index checkpoint of
//!   that project; the child prints `flushing N` before it and is killed during it.
//!
//! To kill in flight, the parent times one (or more) whole operation of each child, then
//! kills after a delay drawn within that duration from the next `started N` (`flushing N`):
//! it counts the rounds whose state file ends in an unacknowledged `start`, prints the
//! share per scenario and requires >= 90% for import, labels, snapshot and checkpoint.
//!
//! `LABELDB_CRASH_ROUNDS` (default 50) sets the number of kills, split evenly over the
//! five scenarios; `LABELDB_CRASH_SEED` the seed (printed, so a failure can be replayed).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use labeldb::testing::crash::{
    read_state, Ack, Line, Op, PlannedAsset, PlannedLabel, Res, SnapshotSeen, ACKED, BULK, CATEGORIES, FLUSHING,
    PROJECT, READY, SCHEMA, STARTED,
};
use labeldb::testing::Rng;
use labeldb::{
    Answer, AssetId, Db, Format, ImportOptions, Label, LabelId, LabelKind, Member, MetaValue, Source, Status,
};

use crate::{data_dir, schema, TestResult};

/// The child binary.
pub const CHILD: &str = env!("CARGO_BIN_EXE_labeldb-crash-child");

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

/// Assets of the project the snapshot and checkpoint scenarios write to.
const BIG: usize = 5_000;
/// Lines of the import scenario's file.
const BULK_LINES: u64 = 200_000;
/// The import scenario's kills spread over this first percentage of the file (the
/// parent imports the rest): `verify` after each kill takes most of the test's time, and
/// grows with the database.
const KILL_SPAN: u64 = 60;
/// Its batch size.
const BULK_BATCH: u64 = 2_000;
/// The share of rounds of the import, label, snapshot and checkpoint scenarios that must
/// kill an operation in flight.
const MIN_IN_FLIGHT: f64 = 0.9;

fn sms_path() -> std::path::PathBuf {
    data_dir().join("sms_spam_collection/SMSSpamCollection")
}

/// The texts of the SMS Spam Collection, one per message.
fn sms_texts() -> Res<Vec<String>> {
    let source = std::fs::read_to_string(sms_path())?;
    source
        .lines()
        .enumerate()
        .map(|(i, line)| match line.split_once('\t') {
            Some((_, text)) => Ok(text.to_string()),
            None => Err(format!("SMSSpamCollection line {}: no TAB", i + 1).into()),
        })
        .collect()
}

/// The label a planned label is stored as.
fn expected(label: &PlannedLabel) -> ExpLabel {
    let l = label.new_label();
    ExpLabel {
        kind: l.kind,
        source: l.source,
        answers: l.answers,
    }
}

// ---------------------------------------------------------------------------------------
// Spawning and killing children.

/// A running child; killed and reaped when dropped, so a failing parent leaves no orphan.
pub struct ChildProc {
    child: Child,
    /// Its stdin: a line `go` lets it begin an operation it announced (see
    /// [`ChildProc::wait_for`]).
    stdin: Option<ChildStdin>,
    /// Its stdout lines with the time each was read.
    stdout: mpsc::Receiver<(Instant, String)>,
    stderr: Option<JoinHandle<String>>,
}

impl ChildProc {
    /// Runs the child binary with these arguments.
    pub fn spawn<S: Into<OsString> + Clone>(args: &[S]) -> Res<ChildProc> {
        let mut child = Command::new(CHILD)
            .args(args.iter().cloned().map(Into::into))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let mut stderr = child.stderr.take().ok_or("no child stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
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
            stdin,
            stdout: rx,
            stderr: Some(stderr),
        })
    }

    /// Waits for a stdout line that `want` accepts; fails if the child exits first.
    ///
    /// The child announces each operation (`started N`, `flushing N`) and waits for a
    /// `go` line before it begins it; this answers every announcement, and its time is
    /// when the `go` was sent. So the time a kill is measured from is the operation's own
    /// start, not the moment this process got round to reading the line, which under
    /// load can come after a 3 ms operation ended.
    fn wait_for(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> Res<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok((_, line)) if line.starts_with(STARTED) || line.starts_with(FLUSHING) => {
                    if let Some(stdin) = &mut self.stdin {
                        // A child that already exited has closed it: its exit is
                        // reported by the next wait.
                        let _ = stdin.write_all(b"go\n").and_then(|()| stdin.flush());
                    }
                    let at = Instant::now();
                    if want(&line) {
                        return Ok((at, line));
                    }
                }
                Ok((at, line)) if want(&line) => return Ok((at, line)),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return Err("timed out waiting for the child".into()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("the child exited early: {}", self.finish()?).into())
                }
            }
        }
    }

    /// Waits for the line `prefix N`; returns N and when it was read.
    fn wait_numbered(&mut self, prefix: &str) -> Res<(Instant, u64)> {
        let (at, line) = self.wait_for(Duration::from_secs(120), |l| l.starts_with(prefix))?;
        Ok((at, line[prefix.len()..].parse()?))
    }

    /// SIGKILLs the child, which must still be running.
    pub fn kill(mut self) -> Res<()> {
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

/// Kills the child while an operation is in flight: times `calibrate` whole operations
/// from their `phase N` line to their `acked N`, then kills after a delay drawn between
/// 5% and 50% of the shortest of them from the next `phase` line (short operations —
/// a 5 ms checkpoint flush — vary with the machine's load: half the shortest keeps the
/// kill inside them when the whole test suite runs beside). `skip(n)` says which
/// operations may be timed and killed (`true`: wait for a later one).
fn kill_in_flight(
    mut child: ChildProc,
    rng: &mut Rng,
    phase: &str,
    calibrate: usize,
    mut skip: impl FnMut(u64) -> bool,
) -> Res<Duration> {
    child.wait_for(Duration::from_secs(120), |l| l == READY)?;
    let mut shortest = Duration::MAX;
    for _ in 0..calibrate {
        let (t0, n) = child.wait_numbered(phase)?;
        let (t1, m) = child.wait_numbered(ACKED)?;
        assert_eq!(n, m, "the child acknowledged {m} after it started {n}");
        shortest = shortest.min(t1 - t0);
    }
    let (at, _) = loop {
        let (at, n) = child.wait_numbered(phase)?;
        if !skip(n) {
            break (at, n);
        }
    };
    let delay = shortest.mul_f64(0.05 + 0.45 * rng.unit());
    std::thread::sleep((at + delay).saturating_duration_since(Instant::now()));
    child.kill()?;
    Ok(shortest)
}

fn env_u64(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v.parse().map_err(|e| format!("{name}={v:?}: {e}"))?),
        _ => Ok(default),
    }
}

/// The rounds of each of the five scenarios and the seed.
fn rounds_and_seed() -> Res<(u64, u64)> {
    let rounds = env_u64("LABELDB_CRASH_ROUNDS", 50)?;
    let seed = env_u64("LABELDB_CRASH_SEED", 0x1abe_1db0)?;
    Ok((rounds.div_ceil(5).max(1), seed))
}

/// Prints and checks the share of rounds killed in flight.
fn report_in_flight(scenario: &str, in_flight: u64, rounds: u64, required: bool) {
    let share = in_flight as f64 / rounds as f64;
    println!(
        "crash {scenario}: {in_flight}/{rounds} rounds killed in flight ({:.0}%)",
        share * 100.0
    );
    if required {
        assert!(
            share >= MIN_IN_FLIGHT,
            "crash {scenario}: only {in_flight}/{rounds} rounds killed an operation in flight"
        );
    }
}

/// A new database with the project [`PROJECT`], and its state file's path.
fn new_db(dir: &Path) -> Res<(std::path::PathBuf, std::path::PathBuf)> {
    let path = dir.join("db");
    let db = Db::open(&path)?;
    db.create_project("admin", PROJECT, schema(SCHEMA))?;
    db.flush()?;
    Ok((path, dir.join("state.jsonl")))
}

/// Adds `count` assets (every other one labelled) through the parent's model.
fn add_assets(db: &Db, model: &mut Model, texts: &[String], count: usize) -> Res<()> {
    let mut i = 0;
    while i < count {
        let assets: Vec<PlannedAsset> = (i..count.min(i + 1000))
            .map(|k| PlannedAsset {
                ext: format!("p{k}"),
                sms: k % texts.len(),
                category: (k % 2 == 0).then(|| CATEGORIES[k % 3].to_string()),
            })
            .collect();
        i += assets.len();
        let report = db.add_assets("setup", PROJECT, assets.iter().map(|a| a.new_asset(texts)).collect())?;
        model.apply(
            &Op::Add { assets },
            &Ack::Added {
                count: report.added.len(),
            },
        );
    }
    db.flush()?;
    Ok(())
}

/// After a kill: reopen, check that derived data was not ahead, `verify`, catch the model
/// up with the state file.
fn reopen_and_catch_up(path: &Path, state: &Path, model: &mut Model, round: u64) -> Res<Db> {
    let db = crate::reopen(path)?;
    check_index_info(&db);
    model.catch_up(&db, state).map_err(|e| format!("round {round}: {e}"))?;
    let report = db.verify()?;
    assert!(report.is_clean(), "round {round}: {:?}", report.problems);
    Ok(db)
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
    /// Whether the last child was killed with an operation started and not acknowledged.
    in_flight: bool,
    /// Snapshots already checked with `verify_snapshot` (they never change).
    verified: BTreeSet<String>,
    /// The assets named by the operations of the last [`Model::catch_up`].
    touched: BTreeSet<String>,
    /// The project's members.
    members: BTreeMap<String, Member>,
    /// Acknowledged `AccessDenied` events.
    denied: usize,
}

/// Adds the external ids an operation writes to.
fn touched_by(op: &Op, out: &mut BTreeSet<String>) {
    match op {
        Op::Add { assets } | Op::Import { assets, .. } => out.extend(assets.iter().map(|a| a.ext.clone())),
        Op::Label { asset, .. } | Op::Status { asset, .. } | Op::Meta { asset, .. } => {
            out.insert(asset.clone());
        }
        Op::Labels { items } => out.extend(items.iter().map(|(a, _)| a.clone())),
        Op::Writes { ops } => ops.iter().for_each(|w| touched_by(w, out)),
        Op::Snapshot { .. } | Op::ImportBatch { .. } | Op::Member { .. } | Op::Denied { .. } => {}
    }
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
        a.labels.push(expected(label));
        a.status
    }

    /// Whether `label` repeats the latest label of its source and kind on `ext` (answers
    /// included), which `add_labels` leaves unwritten.
    fn repeats(&mut self, ext: &str, label: &PlannedLabel) -> bool {
        let want = expected(label);
        self.asset(ext)
            .labels
            .iter()
            .rev()
            .find(|l| l.source == want.source && l.kind == want.kind)
            .is_some_and(|l| l.answers == want.answers)
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
            (Op::Labels { items }, Ack::Labels { ids }) => {
                assert_eq!(items.len(), ids.len(), "one result per item");
                for ((asset, label), id) in items.iter().zip(ids) {
                    match id {
                        None => assert!(self.repeats(asset, label), "{asset}: a new label left unwritten"),
                        Some(id) => {
                            let revision = self.asset(asset).labels.len() as u32;
                            assert_eq!(
                                id.revision(),
                                revision,
                                "label {id} on {asset}: revisions not contiguous"
                            );
                            self.label(asset, label);
                        }
                    }
                }
            }
            (Op::Status { asset, to }, Ack::Done) => self.asset(asset).status = *to,
            (Op::Meta { asset, key, value }, Ack::Done) => set_meta(&mut self.asset(asset).meta, key, value),
            (Op::Member { user, role, scope }, Ack::Done) => {
                self.members.insert(user.clone(), member(role, scope));
            }
            (Op::Denied { .. }, Ack::Done) => self.denied += 1,
            (Op::Snapshot { name, .. }, Ack::Snapshot(seen)) => {
                assert_eq!(&seen.name, name);
                self.snapshots.insert(name.clone(), seen.clone());
            }
            (Op::Writes { ops }, Ack::Writes { acks }) => {
                assert_eq!(ops.len(), acks.len(), "one acknowledgement per write");
                for (op, ack) in ops.iter().zip(acks) {
                    self.apply(op, ack);
                }
            }
            (op, ack) => panic!("acknowledgement {ack:?} does not match {op:?}"),
        }
    }

    /// Writes a label from the parent (the database accepts writes after the kill).
    fn parent_label(&mut self, db: &Db, ext: &str, round: u64) -> Res<()> {
        let label = PlannedLabel {
            annotator: Some("parent".into()),
            category: CATEGORIES[round as usize % 3].to_string(),
            tags: vec![],
            score: 0.5,
        };
        let a = db.asset_by_external_id(PROJECT, ext)?;
        let id = db.add_label(a.id, label.new_label())?;
        db.flush()?;
        let op = Op::Label {
            asset: ext.to_string(),
            label,
        };
        self.apply(
            &op,
            &Ack::Label {
                id,
                status: db.asset(a.id)?.status,
            },
        );
        Ok(())
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
            Op::Labels { items } => {
                // One atomic batch: every label that is not a repeat landed, or none did.
                let mut landed = Vec::new();
                for (asset, label) in items {
                    if self.repeats(asset, label) {
                        continue;
                    }
                    let revisions = db.asset_by_external_id(PROJECT, asset)?.revisions as usize;
                    let known = self.asset(asset).labels.len();
                    assert!(
                        revisions == known || revisions == known + 1,
                        "{asset} has {revisions} revisions, {known} expected (+1 for the killed batch)"
                    );
                    landed.push(revisions == known + 1);
                }
                assert!(
                    landed.iter().all(|l| *l) || landed.iter().all(|l| !l),
                    "a killed add_labels batch is half there: {landed:?}"
                );
                let all = !landed.is_empty() && landed[0];
                if all {
                    for (asset, label) in items {
                        if !self.repeats(asset, label) {
                            self.label(asset, label);
                        }
                    }
                }
                all
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
            Op::Denied { .. } => {
                let landed = denied_events(db)? > self.denied;
                if landed {
                    self.denied += 1;
                }
                landed
            }
            Op::Member { user, role, scope } => {
                let want = member(role, scope);
                let landed = db.project(PROJECT)?.members.get(user) == Some(&want);
                if landed {
                    self.members.insert(user.clone(), want);
                }
                landed
            }
            Op::Snapshot { name, .. } => {
                let landed = db.snapshots(PROJECT)?.iter().any(|(info, _)| &info.name == name);
                if landed {
                    self.snapshots
                        .insert(name.clone(), SnapshotSeen::read(db, PROJECT, name)?);
                }
                landed
            }
            Op::Writes { ops } => {
                // Each write is atomic and the log is recovered as a prefix: some first
                // writes landed whole, the others not at all.
                let landed: Vec<bool> = ops.iter().map(|w| self.resolve(db, w)).collect::<Res<_>>()?;
                let prefix = landed.iter().take_while(|l| **l).count();
                assert!(
                    landed[prefix..].iter().all(|l| !l),
                    "the killed writes did not land as a prefix: {landed:?}"
                );
                prefix > 0
            }
            Op::ImportBatch { .. } => return Err("an import batch in the model's state".into()),
        })
    }

    /// Reads the state lines the last child appended and applies them.
    fn catch_up(&mut self, db: &Db, state: &Path) -> Res<()> {
        let lines = read_state(state)?;
        let mut started: Option<(u64, Op)> = None;
        self.touched.clear();
        for line in &lines[self.lines_seen..] {
            match line {
                Line::Start { n, op } => {
                    touched_by(op, &mut self.touched);
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
            }
        }
        self.lines_seen = lines.len();
        self.in_flight = started.is_some();
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
///
/// Every asset is read and compared when `only` is `None`; else the assets are counted and
/// those in `only` compared (the snapshots and the queries are always checked).
/// The `AccessDenied` events in the log.
fn denied_events(db: &Db) -> Res<usize> {
    let mut n = 0;
    for e in db.changes_since(0) {
        n += usize::from(matches!(e?.action, labeldb::Action::AccessDenied { .. }));
    }
    Ok(n)
}

/// The member an [`Op::Member`] sets.
fn member(role: &str, scope: &Option<String>) -> Member {
    Member {
        role: role.parse().expect("the child plans valid roles"),
        scope: scope.clone(),
    }
}

fn check_against_model(db: &Db, model: &mut Model, texts: &[String], only: Option<&BTreeSet<String>>) -> Res<()> {
    let members: BTreeMap<String, Member> = db.members(PROJECT)?.into_iter().collect();
    assert_eq!(members, model.members, "members against the acknowledged writes");
    assert_eq!(
        denied_events(db)?,
        model.denied,
        "AccessDenied events against the acknowledged refusals"
    );
    let mut seen = BTreeSet::new();
    let ids = db.asset_ids(PROJECT)?;
    if let Some(only) = only {
        assert_eq!(ids.len(), model.assets.len(), "assets in the database and in the model");
        seen = model.assets.keys().cloned().collect();
        let found: Vec<String> = only
            .iter()
            .filter(|e| db.asset_by_external_id(PROJECT, e).is_err())
            .cloned()
            .collect();
        assert!(
            found.iter().all(|e| !model.assets.contains_key(e)),
            "acknowledged assets lost: {found:?}"
        );
    }
    let deep: Vec<AssetId> = match only {
        None => ids,
        Some(only) => only
            .iter()
            .filter_map(|e| db.asset_by_external_id(PROJECT, e).ok().map(|a| a.id))
            .collect(),
    };
    for id in deep {
        let asset = db.asset(id)?;
        let ext = asset.external_id.clone();
        let Some(exp) = model.assets.get(&ext) else {
            return Err(format!("asset {ext} is in the database but was never written").into());
        };
        assert!(only.is_some() || seen.insert(ext.clone()), "{ext} twice");
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
        if model.verified.contains(name) {
            continue;
        }
        assert_eq!(&SnapshotSeen::read(db, PROJECT, name)?, seen, "snapshot {name}");
        let problems = db.verify_snapshot(PROJECT, name)?;
        assert!(problems.is_empty(), "snapshot {name}: {problems:?}");
    }
    model.verified.extend(model.snapshots.keys().cloned());

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
    let (rounds, seed) = rounds_and_seed()?;
    println!("crash random: {rounds} rounds, LABELDB_CRASH_SEED={seed}");
    let texts = sms_texts()?;
    let dir = tempfile::tempdir()?;
    let (path, state) = new_db(dir.path())?;
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut last_seq = 0;
    let mut rebuilt = 0;
    let mut in_flight = 0;
    for round in 0..rounds {
        let child_seed = seed.wrapping_mul(1000).wrapping_add(round);
        let child = ChildProc::spawn(&[
            "random".into(),
            path.clone().into_os_string(),
            state.clone().into_os_string(),
            child_seed.to_string().into(),
            sms_path().into_os_string(),
        ])?;
        // Mostly kill while an operation runs; one round in eight, anywhere from its start
        // (which may be during exec, open and recovery).
        if round % 8 == 5 {
            std::thread::sleep(Duration::from_millis(rng.below(300) as u64));
            child.kill()?;
        } else {
            kill_in_flight(child, &mut rng, STARTED, 1, |_| false)?;
        }
        let db = reopen_and_catch_up(&path, &state, &mut model, round)?;
        in_flight += u64::from(model.in_flight);
        rebuilt += u64::from(db.index_info().rebuilt.is_some() || db.index_info().text_rebuilt.is_some());
        assert!(
            db.last_seq() >= last_seq,
            "round {round}: the log went back from {last_seq} to {}",
            db.last_seq()
        );
        check_against_model(&db, &mut model, &texts, None).map_err(|e| format!("round {round}: {e}"))?;
        if round % 10 == 9 || round + 1 == rounds {
            check_queries_equal_a_rebuild(&db)?;
        }
        if let Some(ext) = model
            .assets
            .keys()
            .nth(round as usize % model.assets.len().max(1))
            .cloned()
        {
            model.parent_label(&db, &ext, round)?;
        }
        last_seq = db.last_seq();
    }
    println!(
        "crash random: {rounds} rounds in {:.1} s: {} acknowledged ops, killed op landed {} times and was lost {} times, \
         {} assets, {} snapshots, {rebuilt} opens rebuilt an index",
        started.elapsed().as_secs_f64(),
        model.acked_ops,
        model.pending_landed,
        model.pending_lost,
        model.assets.len(),
        model.snapshots.len(),
    );
    report_in_flight("random", in_flight, rounds, false);
    assert!(
        model.acked_ops >= rounds / 4,
        "too few acknowledged operations to mean anything"
    );
    Ok(())
}

#[test]
fn single_label_writes_killed_in_flight_are_whole_or_absent() -> TestResult {
    let (rounds, seed) = rounds_and_seed()?;
    let texts = sms_texts()?;
    let dir = tempfile::tempdir()?;
    let (path, state) = new_db(dir.path())?;
    let mut model = Model::default();
    add_assets(&crate::reopen(&path)?, &mut model, &texts, 300)?;
    let started = Instant::now();
    let mut rng = Rng::new(seed ^ 0x1abe1);
    let mut in_flight = 0;
    let mut shortest = Duration::MAX;
    for round in 0..rounds {
        let child = ChildProc::spawn(&[
            "labels".into(),
            path.clone().into_os_string(),
            state.clone().into_os_string(),
            (seed ^ 0x1abe1).wrapping_add(round).to_string().into(),
        ])?;
        shortest = shortest.min(kill_in_flight(child, &mut rng, STARTED, 3, |_| false)?);
        let db = reopen_and_catch_up(&path, &state, &mut model, round)?;
        in_flight += u64::from(model.in_flight);
        check_against_model(&db, &mut model, &texts, None).map_err(|e| format!("round {round}: {e}"))?;
        model.parent_label(&db, &format!("p{round}"), round)?;
    }
    println!(
        "crash labels: {rounds} rounds in {:.1} s, {} acknowledged ops, the killed one landed {} times and was lost {} \
         times; shortest op {:.1} ms",
        started.elapsed().as_secs_f64(),
        model.acked_ops,
        model.pending_landed,
        model.pending_lost,
        shortest.as_secs_f64() * 1e3
    );
    report_in_flight("labels", in_flight, rounds, true);
    Ok(())
}

#[test]
fn snapshot_creation_and_index_checkpoints_killed_in_flight_leave_the_database_whole() -> TestResult {
    let (rounds, seed) = rounds_and_seed()?;
    let texts = sms_texts()?;
    let dir = tempfile::tempdir()?;
    let (path, state) = new_db(dir.path())?;
    let mut model = Model::default();
    let setup = Instant::now();
    add_assets(&crate::reopen(&path)?, &mut model, &texts, BIG)?;
    println!("crash: {BIG} assets added in {:.1} s", setup.elapsed().as_secs_f64());
    let mut rng = Rng::new(seed ^ 0x5a95);
    for (scenario, phase) in [("snapshot", STARTED), ("checkpoint", FLUSHING)] {
        let started = Instant::now();
        let mut in_flight = 0;
        let mut shortest = Duration::MAX;
        for round in 0..rounds {
            let child = ChildProc::spawn(&[
                scenario.into(),
                path.clone().into_os_string(),
                state.clone().into_os_string(),
                (seed ^ 0x5a95).wrapping_add(round).to_string().into(),
            ])?;
            shortest = shortest.min(kill_in_flight(child, &mut rng, phase, 3, |_| false)?);
            let db = reopen_and_catch_up(&path, &state, &mut model, round)?;
            in_flight += u64::from(model.in_flight);
            let touched = std::mem::take(&mut model.touched);
            check_against_model(&db, &mut model, &texts, Some(&touched))
                .map_err(|e| format!("{scenario} round {round}: {e}"))?;
            model.parent_label(&db, &format!("p{round}"), round)?;
        }
        println!(
            "crash {scenario}: {rounds} rounds in {:.1} s; shortest op ({phase}to {ACKED}) {:.0} ms",
            started.elapsed().as_secs_f64(),
            shortest.as_secs_f64() * 1e3
        );
        report_in_flight(scenario, in_flight, rounds, true);
    }
    let db = crate::reopen(&path)?;
    check_against_model(&db, &mut model, &texts, None)?;
    check_queries_equal_a_rebuild(&db)?;
    println!(
        "crash snapshot+checkpoint: {} acknowledged ops, the killed one landed {} times and was lost {} times, {} snapshots",
        model.acked_ops,
        model.pending_landed,
        model.pending_lost,
        model.snapshots.len()
    );
    Ok(())
}

/// Checks the assets `imp-{i}` for `i` in `range`: all there with their text and labels
/// (`present`), or none.
fn check_bulk_range(db: &Db, texts: &[String], range: std::ops::Range<u64>, present: bool) -> Res<()> {
    for i in range {
        let ext = format!("imp-{i}");
        match db.asset_by_external_id(BULK, &ext) {
            Ok(a) if present => {
                assert_eq!(
                    a.content.text(),
                    Some(texts[i as usize % texts.len()].as_str()),
                    "{ext}"
                );
                assert_eq!(a.meta.get("line"), Some(&MetaValue::Num(i as f64)), "{ext}");
                let history = db.history(a.id)?;
                assert_eq!(history.len(), 1 + usize::from(i % 7 == 0), "labels of {ext}");
                let category = if i % 9 == 0 { "spam" } else { "ham" };
                assert_eq!(history[0].answers["category"], Answer::class(category), "{ext}");
                assert_eq!(history[0].source, Source::human("gold"), "{ext}");
            }
            Ok(_) => return Err(format!("{ext} is there, half of its batch is not").into()),
            Err(_) if present => return Err(format!("{ext} is missing").into()),
            Err(_) => {}
        }
    }
    Ok(())
}

#[test]
fn an_import_of_200k_assets_killed_in_flight_every_round_resumes_and_completes_with_exact_counts() -> TestResult {
    let (rounds, seed) = rounds_and_seed()?;
    let mut rng = Rng::new(seed ^ 0x5eed);
    let texts = sms_texts()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let state = dir.path().join("state.jsonl");
    let input = dir.path().join("bulk.jsonl");
    {
        let mut out = std::io::BufWriter::new(File::create(&input)?);
        for i in 0..BULK_LINES {
            writeln!(out, "{}", labeldb::testing::crash::bulk_line(i, &texts))?;
        }
        out.flush()?;
        let db = Db::open(&path)?;
        db.create_project("admin", BULK, schema(SCHEMA))?;
        db.flush()?;
    }
    let started = Instant::now();
    // Where the import stands: lines acknowledged, lines in the database.
    let mut acked_end = 0;
    let mut landed = 0;
    let mut lines_seen = 0;
    let mut in_flight = 0;
    let mut shortest = Duration::MAX;
    let (mut reopening, mut verifying, mut checking) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        // Each child resumes at the last acknowledged batch (re-importing the one in
        // flight, as duplicates if it landed) and is killed in a batch past `target`, so
        // that the kills spread over the whole import.
        let skip = acked_end;
        let target = BULK_LINES * KILL_SPAN * (round + 1) / (rounds + 1) / 100;
        let child = ChildProc::spawn(&[
            "import".into(),
            path.clone().into_os_string(),
            state.clone().into_os_string(),
            seed.to_string().into(),
            input.clone().into_os_string(),
            skip.to_string().into(),
            BULK_BATCH.to_string().into(),
            BULK_LINES.to_string().into(),
        ])?;
        shortest = shortest.min(kill_in_flight(child, &mut rng, STARTED, 1, |n| {
            skip + n * BULK_BATCH < target
        })?);

        let lines = read_state(&state)?;
        let mut pending: Option<(u64, u64)> = None;
        for line in &lines[lines_seen..] {
            match line {
                Line::Start {
                    op: Op::ImportBatch { from, count },
                    ..
                } => {
                    assert!(
                        pending.is_none(),
                        "round {round}: a batch started before the last was acknowledged"
                    );
                    assert_eq!(*from, acked_end, "round {round}: batches out of order");
                    pending = Some((*from, *count));
                }
                Line::Ack {
                    ack: Ack::Added { count },
                    ..
                } => {
                    let (from, lines) = pending.take().ok_or("an ack without a start")?;
                    assert!(
                        *count as u64 == lines || from < landed,
                        "round {round}: batch {from}: {count} of {lines} imported"
                    );
                    acked_end = from + lines;
                }
                other => return Err(format!("round {round}: unexpected state line {other:?}").into()),
            }
        }
        lines_seen = lines.len();
        in_flight += u64::from(pending.is_some());

        let kill_at = Instant::now();
        let db = crate::reopen(&path)?;
        check_index_info(&db);
        reopening += kill_at.elapsed();
        let verify_at = Instant::now();
        let report = db.verify()?;
        assert!(report.is_clean(), "round {round}: {:?}", report.problems);
        verifying += verify_at.elapsed();
        let count = db.asset_ids(BULK)?.len() as u64;
        let (from, lines) = pending.unwrap_or((acked_end, 0));
        assert!(
            count == from.max(landed) || count == from + lines,
            "round {round}: {count} assets; {acked_end} acknowledged, batch {from}+{lines} in flight"
        );
        landed = count;
        // The last acknowledged batch is all there, the one in flight all there or all
        // absent, and nothing past it.
        check_bulk_range(&db, &texts, from.saturating_sub(BULK_BATCH)..from, true)?;
        check_bulk_range(&db, &texts, from..from + lines, count == from + lines && lines > 0)?;
        check_bulk_range(&db, &texts, landed..landed + 10, false)?;
        assert_eq!(db.query(BULK, "*")?.len(), landed, "round {round}: query *");
        assert_eq!(
            db.query(BULK, "label.category:spam")?.len(),
            landed.div_ceil(9),
            "round {round}: spam"
        );
        // A new write.
        let first = db.asset_by_external_id(BULK, "imp-0")?.id;
        db.set_meta("parent", first, "round", Some(MetaValue::Num(round as f64)))?;
        db.flush()?;
        checking += kill_at.elapsed();
    }
    let killed = started.elapsed();
    report_in_flight("import", in_flight, rounds, true);

    // The parent completes the import from the last acknowledged batch, as a child would:
    // the batch in flight at the last kill, if it landed, is skipped as duplicates.
    let db = crate::reopen(&path)?;
    let mut options = ImportOptions::new(Format::Jsonl);
    options.batch_size = BULK_BATCH as usize;
    let rest = BufReader::new(File::open(&input)?).lines().skip(acked_end as usize);
    let rest: String = rest.map(|l| l.map(|l| l + "\n")).collect::<Result<_, _>>()?;
    let rerun = db.import_reader("importer", BULK, rest.as_bytes(), "bulk.jsonl", &options, |_| {})?;
    assert_eq!(rerun.records, BULK_LINES - acked_end, "{rerun:?}");
    assert_eq!(rerun.duplicates, landed - acked_end, "{rerun:?}");
    assert_eq!(rerun.imported, BULK_LINES - landed, "{rerun:?}");
    assert_eq!(rerun.invalid, 0);
    assert_eq!(
        rerun.labels,
        (landed..BULK_LINES).map(|i| 1 + u64::from(i % 7 == 0)).sum::<u64>()
    );
    drop(db);
    let db = crate::reopen(&path)?;
    assert_eq!(db.asset_ids(BULK)?.len() as u64, BULK_LINES);
    assert_eq!(db.query(BULK, "*")?.len(), BULK_LINES);
    assert_eq!(db.query(BULK, "label.category:spam")?.len(), BULK_LINES.div_ceil(9));
    assert_eq!(db.query(BULK, "model:clf@2")?.len(), BULK_LINES.div_ceil(7));
    check_bulk_range(&db, &texts, BULK_LINES - 100..BULK_LINES, true)?;
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    println!(
        "crash import: {rounds} kills in {:.1} s over an import of {BULK_LINES} assets (batches of {BULK_BATCH}, \
         shortest {:.0} ms; reopening {:.1} s, verify {:.1} s, all checks {:.1} s), {landed} landed; the parent imported {} and skipped {} duplicates; total {:.1} s",
        killed.as_secs_f64(),
        shortest.as_secs_f64() * 1e3,
        reopening.as_secs_f64(),
        verifying.as_secs_f64(),
        checking.as_secs_f64(),
        rerun.imported,
        rerun.duplicates,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
