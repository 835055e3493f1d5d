//! The crash suite's child process (tests/it/crash.rs, docs/testing.md): writes to a
//! database in one of several scenarios until its parent SIGKILLs it, recording each
//! operation in an expected-state file (`labeldb::testing::crash`) and printing progress
//! lines (`ready`, `started N`, `flushing N`, `acked N`) on stdout, so that the parent
//! can kill it while an operation is in flight.
//!
//! Test-only (the `testing` feature): `cargo test` builds it, a plain `cargo build` does
//! not. Every scenario stops by itself after a minute, should the parent have died.
//!
//! ```text
//! labeldb-crash-child random     DB STATE SEED SMS_FILE
//! labeldb-crash-child import     DB STATE SEED JSONL_FILE SKIP BATCH TOTAL
//! labeldb-crash-child labels     DB STATE SEED
//! labeldb-crash-child snapshot   DB STATE SEED
//! labeldb-crash-child checkpoint DB STATE SEED
//! labeldb-crash-child query-writer DB MARKER
//! labeldb-crash-child text-writer  DB MARKER
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use labeldb::testing::crash::{
    Ack, Line, Op, PlannedAsset, PlannedLabel, Res, SnapshotSeen, StateLog, ACKED, ANNOTATORS, BULK, CATEGORIES,
    FLUSHING, PROJECT, READY, SNAPSHOT_QUERIES, STARTED, TAGS,
};
use labeldb::testing::Rng;
use labeldb::{
    Answer, AssetId, Db, Error, Format, ImportOptions, LabelKind, MetaValue, NewAsset, NewLabel, Selection, Source,
    Status,
};

/// How long a child runs if nobody kills it.
const LIFETIME: Duration = Duration::from_secs(60);

/// The user of [`Op::Denied`]: no member of the project.
const STRANGER: &str = "mallory";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("labeldb-crash-child {}: {e}", args.join(" "));
        std::process::exit(2);
    }
}

fn run(args: &[String]) -> Res<()> {
    let arg = |i: usize| -> Res<&str> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("argument {i} is missing").into())
    };
    let num = |i: usize| -> Res<u64> { Ok(arg(i)?.parse().map_err(|e| format!("argument {i}: {e}"))?) };
    let db_path = PathBuf::from(arg(1)?);
    match arg(0)? {
        "query-writer" => return query_writer(&db_path, Path::new(arg(2)?)),
        "text-writer" => return text_writer(&db_path, Path::new(arg(2)?)),
        _ => {}
    }
    let mut child = Child {
        db: open(&db_path)?,
        log: StateLog::open(Path::new(arg(2)?))?,
        seed: num(3)?,
        n: 0,
    };
    let mut rng = Rng::new(child.seed);
    println!("{READY}");
    match arg(0)? {
        "random" => {
            let texts = sms_texts(Path::new(arg(4)?))?;
            child.repeat(
                |c| plan_random(&c.db, &texts, &mut rng, c.seed, c.n),
                |c, op| perform(&c.db, &texts, op),
            )
        }
        "import" => import(&mut child, Path::new(arg(4)?), num(5)?, num(6)?, num(7)?),
        "labels" => {
            let ids = child.db.asset_ids(PROJECT)?;
            child.repeat(
                |c| {
                    let id = *rng.pick(&ids);
                    if rng.below(10) < 7 {
                        plan_label(&c.db, id, &mut rng)
                    } else {
                        plan_status(&c.db, id, &mut rng)
                    }
                },
                |c, op| perform(&c.db, &[], op),
            )
        }
        "snapshot" => child.repeat(
            |c| {
                Ok(Op::Snapshot {
                    name: format!("s{}-{}", c.seed, c.n),
                    query: rng
                        .pick(&["*", "NOT status:todo", "label.category:ham OR label.tags:url"])
                        .to_string(),
                    selection: rng.pick(&["latest-human", "majority"]).to_string(),
                })
            },
            |c, op| perform(&c.db, &[], op),
        ),
        "checkpoint" => {
            let ids = child.db.asset_ids(PROJECT)?;
            child.repeat(
                |c| {
                    let mut picked = Vec::new();
                    while picked.len() < 20 {
                        let id = *rng.pick(&ids);
                        if !picked.contains(&id) {
                            picked.push(id);
                        }
                    }
                    let ops = picked
                        .into_iter()
                        .map(|id| {
                            if rng.below(2) == 0 {
                                plan_label(&c.db, id, &mut rng)
                            } else {
                                plan_status(&c.db, id, &mut rng)
                            }
                        })
                        .collect::<Res<_>>()?;
                    Ok(Op::Writes { ops })
                },
                |c, op| {
                    let Op::Writes { ops } = op else {
                        return Err("not a Writes".into());
                    };
                    let acks = ops.iter().map(|w| perform(&c.db, &[], w)).collect::<Res<_>>()?;
                    // What the parent kills: the index checkpoint (and the flush after it).
                    println!("{FLUSHING}{}", c.n);
                    go()?;
                    Ok(Ack::Writes { acks })
                },
            )
        }
        other => Err(format!("unknown scenario {other:?}").into()),
    }
}

/// Waits for the parent's `go` after announcing an operation, so that the parent times
/// its kill from the operation's start (the end of stdin, when nobody paces: go on).
fn go() -> Res<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}

/// Opens the database, retrying while the killed predecessor's lock lingers (see
/// `reopen` in tests/it/main.rs).
fn open(path: &Path) -> Res<Db> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match Db::open(path) {
            Err(Error::InUse { .. }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => return Ok(other?),
        }
    }
}

/// The texts of the SMS Spam Collection, one per message.
fn sms_texts(path: &Path) -> Res<Vec<String>> {
    let source = std::fs::read_to_string(path)?;
    source
        .lines()
        .enumerate()
        .map(|(i, line)| match line.split_once('\t') {
            Some((_, text)) => Ok(text.to_string()),
            None => Err(format!("{} line {}: no TAB", path.display(), i + 1).into()),
        })
        .collect()
}

/// A child writing operations to its expected-state file.
struct Child {
    db: Db,
    log: StateLog,
    seed: u64,
    /// The number of the next operation.
    n: u64,
}

impl Child {
    fn start(&mut self, op: Op) -> Res<()> {
        self.log.record(&Line::Start { n: self.n, op })?;
        println!("{STARTED}{}", self.n);
        go()
    }

    fn ack(&mut self, ack: Ack) -> Res<()> {
        self.log.record(&Line::Ack { n: self.n, ack })?;
        println!("{ACKED}{}", self.n);
        self.n += 1;
        Ok(())
    }

    /// Plans, records, performs, flushes and acknowledges operations until killed.
    fn repeat(
        &mut self,
        mut plan: impl FnMut(&Child) -> Res<Op>,
        mut perform: impl FnMut(&Child, &Op) -> Res<Ack>,
    ) -> Res<()> {
        let deadline = Instant::now() + LIFETIME;
        while Instant::now() < deadline {
            let op = plan(self)?;
            self.start(op.clone())?;
            let ack = perform(self, &op)?;
            self.db.flush()?;
            self.ack(ack)?;
        }
        Ok(())
    }
}

/// Chooses the next random operation from the database's current state.
fn plan_random(db: &Db, texts: &[String], rng: &mut Rng, seed: u64, n: u64) -> Res<Op> {
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
        25..=54 => plan_label(db, *rng.pick(&ids), rng)?,
        55..=59 => {
            let mut picked: Vec<AssetId> = (0..2 + rng.below(4)).map(|_| *rng.pick(&ids)).collect();
            picked.sort();
            picked.dedup();
            let mut items = Vec::new();
            for id in picked {
                let Op::Label { asset, mut label } = plan_label(db, id, rng)? else {
                    unreachable!("plan_label plans a label")
                };
                label.annotator = Some(rng.pick(&ANNOTATORS).to_string());
                items.push((asset, label));
            }
            Op::Labels { items }
        }
        60..=79 => plan_status(db, *rng.pick(&ids), rng)?,
        80..=93 => {
            let asset = db.asset(*rng.pick(&ids))?.external_id;
            let key = rng.pick(&["split", "flag", "n"]).to_string();
            let value = match (rng.below(5), key.as_str()) {
                (0, _) => None,
                (_, "split") => Some(MetaValue::Str(rng.pick(&["train", "test"]).to_string())),
                (_, "flag") => Some(MetaValue::Bool(rng.below(2) == 0)),
                _ => Some(MetaValue::Num(rng.below(4) as f64 * 0.5)),
            };
            Op::Meta { asset, key, value }
        }
        94 => Op::Denied {
            asset: db.asset(*rng.pick(&ids))?.external_id,
        },
        95..=96 => Op::Member {
            user: rng.pick(&["m0", "m1", "m2"]).to_string(),
            role: rng.pick(&["labeler", "reviewer", "read-only"]).to_string(),
            scope: rng
                .pick(&[None, Some("meta.flag:true"), Some("status:todo")])
                .map(str::to_string),
        },
        _ => Op::Snapshot {
            name: format!("s{seed}-{n}"),
            query: rng.pick(&SNAPSHOT_QUERIES).to_string(),
            selection: rng.pick(&["latest-human", "majority"]).to_string(),
        },
    })
}

fn plan_label(db: &Db, id: AssetId, rng: &mut Rng) -> Res<Op> {
    let asset = db.asset(id)?.external_id;
    let tags = TAGS
        .iter()
        .filter(|_| rng.below(3) == 0)
        .map(|t| t.to_string())
        .collect();
    Ok(Op::Label {
        asset,
        label: PlannedLabel {
            annotator: (rng.below(10) < 7).then(|| rng.pick(&ANNOTATORS).to_string()),
            category: rng.pick(&CATEGORIES).to_string(),
            tags,
            score: *rng.pick(&[0.25, 0.5, 0.75, 0.875]),
        },
    })
}

fn plan_status(db: &Db, id: AssetId, rng: &mut Rng) -> Res<Op> {
    let a = db.asset(id)?;
    let targets: Vec<Status> = Status::ALL.into_iter().filter(|s| a.status.can_become(*s)).collect();
    Ok(Op::Status {
        asset: a.external_id,
        to: *rng.pick(&targets),
    })
}

fn perform(db: &Db, texts: &[String], op: &Op) -> Res<Ack> {
    Ok(match op {
        Op::Add { assets } => {
            let report = db.add_assets("child", PROJECT, assets.iter().map(|a| a.new_asset(texts)).collect())?;
            Ack::Added {
                count: report.added.len(),
            }
        }
        Op::Import { assets, batch } => {
            let input: String = assets.iter().map(|a| a.jsonl_line(texts) + "\n").collect();
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
        Op::Labels { items } => {
            let mut batch = Vec::with_capacity(items.len());
            for (asset, label) in items {
                batch.push((db.asset_by_external_id(PROJECT, asset)?.id, label.new_label()));
            }
            Ack::Labels {
                ids: db.add_labels(batch)?.results,
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
        Op::Member { user, role, scope } => {
            db.set_member("child", PROJECT, user, role.parse()?, scope.as_deref())?;
            Ack::Done
        }
        Op::Denied { asset } => {
            let id = db.asset_by_external_id(PROJECT, asset)?.id;
            match db.as_user(STRANGER)?.set_status(id, labeldb::Status::Ongoing) {
                Err(labeldb::Error::Denied { .. }) => Ack::Done,
                other => return Err(format!("a stranger's write was not denied: {other:?}").into()),
            }
        }
        Op::Snapshot { name, query, selection } => {
            let filter = labeldb::query::parse(query)?;
            db.create_snapshot("child", PROJECT, name, &filter, &selection.parse::<Selection>()?)?;
            Ack::Snapshot(SnapshotSeen::read(db, PROJECT, name)?)
        }
        Op::ImportBatch { .. } | Op::Writes { .. } => return Err(format!("not a single operation: {op:?}").into()),
    })
}

/// Imports lines `skip..total` of `input` into [`BULK`] with `import_reader`, one
/// operation per batch: the import's progress callback flushes and acknowledges a batch
/// and starts the next one.
fn import(child: &mut Child, input: &Path, skip: u64, batch: u64, total: u64) -> Res<()> {
    let mut reader = BufReader::new(std::fs::File::open(input)?);
    let mut line = String::new();
    for _ in 0..skip {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(format!("{} has fewer than {skip} lines", input.display()).into());
        }
    }
    if skip >= total {
        return Err("nothing left to import".into());
    }
    let mut options = ImportOptions::new(Format::Jsonl);
    options.batch_size = batch as usize;
    child.start(Op::ImportBatch {
        from: skip,
        count: batch.min(total - skip),
    })?;
    let mut failed = None;
    let mut imported = 0;
    let db = child.db.clone();
    db.import_reader("importer", BULK, reader, "bulk.jsonl", &options, |r| {
        if failed.is_some() {
            return;
        }
        let mut step = || -> Res<()> {
            child.db.flush()?;
            let count = (r.imported - imported) as usize;
            imported = r.imported;
            child.ack(Ack::Added { count })?;
            let from = skip + r.records;
            if from < total {
                child.start(Op::ImportBatch {
                    from,
                    count: batch.min(total - from),
                })?;
            }
            Ok(())
        };
        if let Err(e) = step() {
            failed = Some(e.to_string());
        }
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// The killed writers of tests/it/query.rs and tests/it/search.rs.

/// Label and state writes on the project `p` of tests/it/query.rs, flushing after the
/// first and every 100th and recording the last flushed seq in `marker`, until killed.
fn query_writer(path: &Path, marker: &Path) -> Res<()> {
    const CLASSES: [&str; 3] = ["invoice", "order", "creative work"];
    const AUTHORS: [&str; 4] = ["alice", "bob", "a.lee@corp", "Ann Lee"];
    let db = open(path)?;
    let ids = db.asset_ids("p")?;
    let tmp = marker.with_extension("tmp");
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < LIFETIME {
        let id = ids[(i as usize * 7) % ids.len()];
        let class = CLASSES[(i % 3) as usize];
        let result = match i % 8 {
            0..=2 => db
                .add_label(
                    id,
                    NewLabel::annotation(AUTHORS[(i % 4) as usize]).answer("category", Answer::class(class)),
                )
                .map(|_| ()),
            3 => db
                .add_label(
                    id,
                    NewLabel::new(
                        LabelKind::Prediction,
                        Source::Model {
                            name: "m".into(),
                            version: (1 + i % 2).to_string(),
                        },
                    )
                    .answer("category", Answer::class(class))
                    .score("category", class, (i % 101) as f32 / 100.0),
                )
                .map(|_| ()),
            4 => db.set_priority("admin", id, (i % 17) as f64 - 3.0),
            5 => db.set_meta(
                "admin",
                id,
                "lang",
                Some(MetaValue::Str(["en", "fr", "a b"][(i % 3) as usize].into())),
            ),
            6 => db.set_status("rita", id, Status::ALL[(i % 5) as usize]),
            _ if i % 24 == 7 => db.delete_asset("admin", id),
            _ => db.restore_asset("admin", id),
        };
        match result {
            Ok(()) | Err(Error::IllegalTransition { .. }) | Err(Error::AssetDeleted(_)) => {}
            Err(e) => return Err(e.into()),
        }
        i += 1;
        // A flush after the first write (the parent starts its clock then), then rarely.
        if i == 1 || i.is_multiple_of(100) {
            db.flush()?;
            std::fs::write(&tmp, db.last_seq().to_string())?;
            std::fs::rename(&tmp, marker)?;
        }
    }
    Ok(())
}

/// Words of the text writer's texts.
const VOCABULARY: [&str; 8] = ["alpha", "beta", "gamma", "delta", "Épsilon", "zeta", "eta", "théta"];

/// The text of the text writer's `n`th asset.
fn child_text(n: u64) -> String {
    let len = 2 + (n % 5) as usize;
    (0..len)
        .map(|k| VOCABULARY[((n * 7 + k as u64 * (n % 3 + 1)) % VOCABULARY.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Adds, deletes and restores text assets in the project `docs` of tests/it/search.rs
/// (text commits every 50 ms), creating `marker` after its first write, until killed.
fn text_writer(path: &Path, marker: &Path) -> Res<()> {
    let db = Db::builder().commit_interval(Duration::from_millis(50)).open(path)?;
    let started = Instant::now();
    // External ids are unique across runs: each run starts at a later seq.
    let run = db.last_seq();
    let mut n = 0;
    let mut first = true;
    while started.elapsed() < LIFETIME {
        let news: Vec<NewAsset> = (0..5)
            .map(|k| NewAsset::text(format!("r{run}-{}", n + k), child_text(n + k)))
            .collect();
        let added = db.add_assets("writer", "docs", news)?.added;
        n += 5;
        if n % 3 == 0 {
            db.delete_asset("writer", added[1])?;
        }
        if n % 7 == 0 {
            db.delete_asset("writer", added[2])?;
            db.restore_asset("writer", added[2])?;
        }
        if first {
            std::fs::write(marker, b"")?;
            first = false;
        }
    }
    Ok(())
}
