//! Label writes at N assets (`LABELDB_BENCH_ASSETS`, default 1,000,000), side by side in
//! one run with SQLite (rusqlite, bundled, WAL, synchronous=NORMAL) and raw sled:
//!
//! - (a) single `add_label` (a human annotation) in random asset order, from 1 thread and
//!   from 8 threads; SQLite: one transaction per label holding a label row, the asset's
//!   status update and an event row; raw sled: one batch per label of the same number of
//!   keys labeldb writes, with values of the same sizes;
//! - (b) bulk `add_labels` of N predictions with scores (batches of 2,000); SQLite: the
//!   same rows in one transaction; raw sled: the same keys and sizes in batches;
//! - (e) bytes on disk after the single labels and after the bulk, and after `compact`;
//! - (f) a mixed load on 8 threads for 10 s: 4 writing single labels, 2 counting a query,
//!   1 searching, 1 creating a snapshot a second; labels/s and the query and search p99;
//! - the single-label rate at 10,000 assets, for the fall from 10k to N.
//!
//! Criterion then samples one `add_label` and one SQLite label transaction on the
//! databases built above. The summary prints every figure and ratio; BENCHMARKS.md
//! records them. Building the assets is not timed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use labeldb::{Answer, AssetId, Db, Filter, NewAsset, NewLabel, Schema, Selection};
use rusqlite::{params, Connection};

mod common;
use common::{asset_count, dir_bytes, fmt_ratio, load_average, mib, verdict, BoxResult, Samples, SplitMix64, WORDS};

const PROJECT: &str = "orders";
const SCHEMA: &str = r#"{"jobs": [{"name": "category", "kind": "classification",
    "classes": ["order", "complaint", "question", "feedback"]}]}"#;
const CLASSES: [&str; 4] = ["order", "complaint", "question", "feedback"];
/// Single labels timed per phase (and at most N).
const SINGLE: usize = 200_000;
/// Predictions per `add_labels` call (and per raw sled batch) in the bulk phase: sled
/// applies a batch of 2,000 labels' keys faster per key than one of 100,000 (7k labels/s
/// at 100,000 per call, 22k/s at 2,000, in a 20k-asset trial run).
const BULK_BATCH: usize = 2_000;
/// The mixed load's snapshot thread creates one snapshot per this long (a snapshot holds
/// the writer lock while it reads the columns: back to back they starve the writers).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// The mixed load's length.
const MIXED: Duration = Duration::from_secs(10);
/// The query the mixed load counts.
const QUERY: &str = "status:labeled AND label.category:complaint";

/// Targets from the issue.
const TARGET_SINGLE_PER_SEC: f64 = 30_000.0;
const TARGET_BULK_PER_SEC: f64 = 200_000.0;
const TARGET_FALL: f64 = 0.20;
const TARGET_DISK_VS_SQLITE: f64 = 1.5;
const TARGET_MIXED_VS_SINGLE: f64 = 0.7;
const TARGET_QUERY_P99: Duration = Duration::from_millis(1);

fn text(i: usize) -> String {
    let mut rng = SplitMix64(0x1abe_1001 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut t = String::with_capacity(120);
    while t.len() < 100 {
        if !t.is_empty() {
            t.push(' ');
        }
        t.push_str(WORDS[rng.below(WORDS.len())]);
    }
    t
}

/// A random order of `0..n` (Fisher-Yates, seeded).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..n).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v
}

fn annotation(i: usize) -> NewLabel {
    NewLabel::annotation(format!("a{}", i % 20)).answer("category", Answer::class(CLASSES[i % 4]))
}

fn prediction(i: usize) -> NewLabel {
    let c = CLASSES[(i / 7) % 4];
    let score = 0.25 + (i % 75) as f32 / 100.0;
    NewLabel::prediction("clf", "1")
        .answer("category", Answer::class(c))
        .score("category", c, score)
}

/// A labeldb database of `n` unlabelled assets.
fn build_labeldb(path: &Path, n: usize) -> BoxResult<(Db, Vec<AssetId>)> {
    let db = Db::open(path)?;
    db.create_project("bench", PROJECT, Schema::from_json(SCHEMA)?)?;
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(10_000) {
        let assets = (start..(start + 10_000).min(n))
            .map(|i| NewAsset::text(format!("e{i}"), text(i)))
            .collect();
        ids.extend(db.add_assets("bench", PROJECT, assets)?.added);
    }
    db.flush()?;
    Ok((db, ids))
}

fn build_sqlite(path: &Path, n: usize) -> BoxResult<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-262144;
         CREATE TABLE assets (id INTEGER PRIMARY KEY, ext TEXT UNIQUE, text TEXT, status INTEGER, revisions INTEGER);
         CREATE TABLE labels (id INTEGER PRIMARY KEY, asset INTEGER, rev INTEGER, kind INTEGER, source TEXT,
                              answers TEXT, scores TEXT, created INTEGER);
         CREATE INDEX labels_asset ON labels(asset, rev);
         CREATE TABLE events (seq INTEGER PRIMARY KEY, asset INTEGER, actor TEXT, action TEXT, at INTEGER);
         CREATE INDEX events_asset ON events(asset);
         BEGIN;",
    )?;
    {
        let mut stmt = conn.prepare("INSERT INTO assets VALUES (?1, ?2, ?3, 0, 0)")?;
        for i in 0..n {
            stmt.execute(params![i as i64, format!("e{i}"), text(i)])?;
        }
    }
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(conn)
}

/// One label as SQLite stores it: the label row, the asset's update and the event.
fn sqlite_label(conn: &Connection, asset: usize, label: &NewLabel, human: bool) -> rusqlite::Result<()> {
    let answers = format!("{:?}", label.answers);
    let scores = format!("{:?}", label.scores);
    conn.prepare_cached(
        "INSERT INTO labels (asset, rev, kind, source, answers, scores, created)
         VALUES (?1, (SELECT revisions FROM assets WHERE id = ?1), ?2, ?3, ?4, ?5, 0)",
    )?
    .execute(params![
        asset as i64,
        i64::from(human),
        label.source.to_string(),
        answers,
        scores
    ])?;
    conn.prepare_cached(
        "UPDATE assets SET revisions = revisions + 1, status = CASE WHEN ?2 THEN 2 ELSE status END WHERE id = ?1",
    )?
    .execute(params![asset as i64, human])?;
    conn.prepare_cached("INSERT INTO events (asset, actor, action, at) VALUES (?1, ?2, 'label-added', 0)")?
        .execute(params![asset as i64, label.source.to_string()])?;
    Ok(())
}

fn sqlite_bytes(path: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
        .map(|m| m.len())
        .sum()
}

/// Raw sled, one batch per label of the keys a label write makes (label, asset, event,
/// two event index marks, one choice delta, the counters) with values of labeldb's sizes.
fn sled_label(seq: u64, asset: usize, batch: &mut sled::Batch) {
    let a = (asset as u32).to_be_bytes();
    let s = seq.to_be_bytes();
    let key = |tag: u8, rest: &[&[u8]]| {
        let mut k = vec![tag];
        for r in rest {
            k.extend_from_slice(r);
        }
        k
    };
    batch.insert(key(5, &[&a, &s[4..]]), vec![7u8; 90]);
    batch.insert(key(3, &[&a]), vec![7u8; 180]);
    batch.insert(key(6, &[&s]), vec![7u8; 70]);
    batch.insert(key(7, &[&a, &s]), vec![]);
    batch.insert(key(8, &[b"a1", &s]), vec![]);
    batch.insert(
        key(0x14, &[b"h", &(asset as u32 >> 8).to_be_bytes(), &[asset as u8]]),
        vec![7u8; 40],
    );
    batch.insert(key(0, &[b"counters"]), s.to_vec());
}

/// Labels per second.
fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn p99(mut xs: Vec<Duration>) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    xs.sort();
    xs[(xs.len() * 99 / 100).min(xs.len() - 1)]
}

struct Figures {
    n: usize,
    single_1: f64,
    single_8: f64,
    single_10k: f64,
    sqlite_single: f64,
    sled_single: f64,
    bulk: f64,
    sqlite_bulk: f64,
    sled_bulk: f64,
    disk_single: u64,
    disk_bulk: u64,
    disk_compacted: u64,
    live: u64,
    sqlite_disk_single: u64,
    sqlite_disk_bulk: u64,
    mixed_labels: f64,
    mixed_query_p99: Duration,
    mixed_search_p99: Duration,
    mixed_snapshots: u64,
}

fn single_labels(db: &Db, ids: &[AssetId], order: &[usize], threads: usize, offset: usize) -> BoxResult<Duration> {
    let chunk = order.len().div_ceil(threads).max(1);
    let start = Instant::now();
    std::thread::scope(|s| -> BoxResult<()> {
        let workers: Vec<_> = order
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> labeldb::Result<()> {
                    for &i in part {
                        db.add_label(ids[i], annotation(i + offset))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "a writer panicked")??;
        }
        Ok(())
    })?;
    Ok(start.elapsed())
}

fn run(c: &mut Criterion, f: &mut Figures) -> BoxResult<()> {
    let n = f.n;
    let single = SINGLE.min(n);
    let dir = tempfile::tempdir()?;
    let order = shuffled(n, 11);

    // 10k assets: the same single-label phase, for the fall with size.
    {
        let small = 10_000.min(n);
        let (db, ids) = build_labeldb(&dir.path().join("small"), small)?;
        let t = single_labels(&db, &ids, &shuffled(small, 5), 1, 0)?;
        f.single_10k = rate(small, t);
        println!("10k assets: {small} single labels at {:.0}/s", f.single_10k);
    }

    println!("building {n} assets in labeldb and SQLite (not timed)");
    let db_path = dir.path().join("labeldb");
    let (db, ids) = build_labeldb(&db_path, n)?;
    let sqlite_path = dir.path().join("sqlite.db");
    let conn = build_sqlite(&sqlite_path, n)?;

    // (a) single labels, 1 thread then 8.
    let t = single_labels(&db, &ids, &order[..single], 1, 0)?;
    f.single_1 = rate(single, t);
    // The last `single` of the order: other assets than the first phase's when n >= 2 × single.
    let t = single_labels(&db, &ids, &order[n - single..], 8, 1)?;
    f.single_8 = rate(single, t);
    db.flush()?;
    f.disk_single = dir_bytes(&db_path)?;
    let start = Instant::now();
    for &i in &order[..single] {
        conn.execute_batch("BEGIN")?;
        sqlite_label(&conn, i, &annotation(i), true)?;
        conn.execute_batch("COMMIT")?;
    }
    f.sqlite_single = rate(single, start.elapsed());
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    f.sqlite_disk_single = sqlite_bytes(&sqlite_path);
    let sled_path = dir.path().join("sled");
    let sled_db = sled::Config::new().path(&sled_path).cache_capacity(256 << 20).open()?;
    let start = Instant::now();
    for (seq, &i) in order[..single].iter().enumerate() {
        let mut b = sled::Batch::default();
        sled_label(seq as u64, i, &mut b);
        sled_db.apply_batch(b)?;
    }
    f.sled_single = rate(single, start.elapsed());
    println!(
        "single: labeldb {:.0}/s (8 threads {:.0}/s), SQLite {:.0}/s, raw sled {:.0}/s",
        f.single_1, f.single_8, f.sqlite_single, f.sled_single
    );

    // (b) bulk predictions for every asset.
    let start = Instant::now();
    for part in (0..n).collect::<Vec<_>>().chunks(BULK_BATCH) {
        let batch = part.iter().map(|&i| (ids[i], prediction(i))).collect();
        db.add_labels(batch)?;
    }
    db.flush()?;
    f.bulk = rate(n, start.elapsed());
    f.disk_bulk = dir_bytes(&db_path)?;
    let start = Instant::now();
    conn.execute_batch("BEGIN")?;
    for i in 0..n {
        sqlite_label(&conn, i, &prediction(i), false)?;
    }
    conn.execute_batch("COMMIT")?;
    f.sqlite_bulk = rate(n, start.elapsed());
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    f.sqlite_disk_bulk = sqlite_bytes(&sqlite_path);
    let start = Instant::now();
    for part in (0..n).collect::<Vec<_>>().chunks(BULK_BATCH) {
        let mut b = sled::Batch::default();
        for &i in part {
            sled_label((single + i) as u64, i, &mut b);
        }
        sled_db.apply_batch(b)?;
    }
    sled_db.flush()?;
    f.sled_bulk = rate(n, start.elapsed());
    drop(sled_db);
    println!(
        "bulk: labeldb {:.0}/s, SQLite {:.0}/s, raw sled {:.0}/s",
        f.bulk, f.sqlite_bulk, f.sled_bulk
    );

    // (f) the mixed load.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let query = labeldb::query::parse(QUERY)?;
    let (query_times, search_times, snapshots) = std::thread::scope(|s| -> BoxResult<_> {
        for w in 0..4 {
            let (db, ids, stop, written) = (&db, &ids, stop.clone(), written.clone());
            s.spawn(move || {
                let mut rng = SplitMix64(100 + w);
                while !stop.load(Ordering::Relaxed) {
                    let i = rng.below(ids.len());
                    if db.add_label(ids[i], annotation(i + 2)).is_ok() {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let queriers: Vec<_> = (0..2)
            .map(|_| {
                let (db, stop, query) = (&db, stop.clone(), &query);
                s.spawn(move || {
                    let mut times = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let _ = db.count(PROJECT, query);
                        times.push(t.elapsed());
                    }
                    times
                })
            })
            .collect();
        let searcher = {
            let (db, stop) = (&db, stop.clone());
            s.spawn(move || {
                let mut times = Vec::new();
                let mut rng = SplitMix64(7);
                while !stop.load(Ordering::Relaxed) {
                    let word = WORDS[rng.below(WORDS.len())];
                    let t = Instant::now();
                    let _ = db.search(PROJECT, word, None, 10);
                    times.push(t.elapsed());
                }
                times
            })
        };
        let snapshotter = {
            let (db, stop) = (&db, stop.clone());
            s.spawn(move || {
                let mut made = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("mixed{made}");
                    if db
                        .create_snapshot("bench", PROJECT, &name, &Filter::All, &Selection::LatestHuman)
                        .is_ok()
                    {
                        made += 1;
                    }
                    std::thread::sleep(SNAPSHOT_EVERY);
                }
                made
            })
        };
        std::thread::sleep(MIXED);
        stop.store(true, Ordering::Relaxed);
        let mut q = Vec::new();
        for h in queriers {
            q.extend(h.join().map_err(|_| "a querier panicked")?);
        }
        let st = searcher.join().map_err(|_| "the searcher panicked")?;
        let sn = snapshotter.join().map_err(|_| "the snapshotter panicked")?;
        Ok((q, st, sn))
    })?;
    f.mixed_labels = written.load(Ordering::Relaxed) as f64 / MIXED.as_secs_f64();
    f.mixed_query_p99 = p99(query_times);
    f.mixed_search_p99 = p99(search_times);
    f.mixed_snapshots = snapshots;
    println!(
        "mixed: {:.0} labels/s, query p99 {:?}, search p99 {:?}, {} snapshots",
        f.mixed_labels, f.mixed_query_p99, f.mixed_search_p99, f.mixed_snapshots
    );

    // Criterion: one label write each, on the databases as they are now.
    let samples = Samples::default();
    let mut group = c.benchmark_group("label_writes");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    let mut next = 0usize;
    group.bench_function("labeldb/add_label", |b| {
        b.iter_custom(|iters| {
            samples.run("labeldb", iters, || {
                next = (next + 7919) % n;
                db.add_label(ids[next], annotation(next + 3)).expect("add_label")
            })
        })
    });
    group.bench_function("sqlite/label_transaction", |b| {
        b.iter_custom(|iters| {
            samples.run("sqlite", iters, || {
                next = (next + 7919) % n;
                conn.execute_batch("BEGIN").expect("begin");
                sqlite_label(&conn, next, &annotation(next + 3), true).expect("label");
                conn.execute_batch("COMMIT").expect("commit");
            })
        })
    });
    group.finish();

    // (e) after compaction.
    db.flush()?;
    f.live = db.disk_usage()?.live;
    drop(db);
    labeldb::compact(&db_path)?;
    f.disk_compacted = dir_bytes(&db_path)?;
    Ok(())
}

fn summary(f: &Figures) {
    println!();
    println!("label writes at {} assets (load average {})", f.n, load_average());
    let fall = 1.0 - f.single_1 / f.single_10k.max(1e-9);
    println!(
        "single, 1 thread: {:.0}/s = {} SQLite ({:.0}/s), {} raw sled ({:.0}/s) (targets >= {TARGET_SINGLE_PER_SEC}/s: {}, >= 1.0x SQLite: {})",
        f.single_1,
        fmt_ratio(f.single_1 / f.sqlite_single),
        f.sqlite_single,
        fmt_ratio(f.single_1 / f.sled_single),
        f.sled_single,
        verdict(f.single_1 >= TARGET_SINGLE_PER_SEC),
        verdict(f.single_1 >= f.sqlite_single)
    );
    println!("single, 8 threads: {:.0}/s", f.single_8);
    println!(
        "single at 10k assets: {:.0}/s; at {}: {:.1}% lower (target <= {:.0}%: {})",
        f.single_10k,
        f.n,
        fall * 100.0,
        TARGET_FALL * 100.0,
        verdict(fall <= TARGET_FALL)
    );
    println!(
        "bulk: {:.0}/s = {} SQLite ({:.0}/s), {} raw sled ({:.0}/s) (targets >= {TARGET_BULK_PER_SEC}/s: {}, >= 1.0x SQLite: {})",
        f.bulk,
        fmt_ratio(f.bulk / f.sqlite_bulk),
        f.sqlite_bulk,
        fmt_ratio(f.bulk / f.sled_bulk),
        f.sled_bulk,
        verdict(f.bulk >= TARGET_BULK_PER_SEC),
        verdict(f.bulk >= f.sqlite_bulk)
    );
    let ratio = f.disk_bulk as f64 / f.sqlite_disk_bulk as f64;
    println!(
        "disk after the single labels: labeldb {:.1} MiB, SQLite {:.1} MiB; after the bulk: labeldb {:.1} MiB, SQLite {:.1} MiB = {} (target <= {TARGET_DISK_VS_SQLITE}x: {}); after compact: {:.1} MiB = {} SQLite, {} the {:.1} MiB live",
        mib(f.disk_single),
        mib(f.sqlite_disk_single),
        mib(f.disk_bulk),
        mib(f.sqlite_disk_bulk),
        fmt_ratio(ratio),
        verdict(ratio <= TARGET_DISK_VS_SQLITE),
        mib(f.disk_compacted),
        fmt_ratio(f.disk_compacted as f64 / f.sqlite_disk_bulk as f64),
        fmt_ratio(f.disk_compacted as f64 / f.live as f64),
        mib(f.live)
    );
    let mixed = f.mixed_labels / f.single_1;
    println!(
        "mixed: {:.0} labels/s = {} of 1 thread (target >= {TARGET_MIXED_VS_SINGLE}x: {}), query p99 {:?} (target <= {:?}: {}), search p99 {:?}, {} snapshots",
        f.mixed_labels,
        fmt_ratio(mixed),
        verdict(mixed >= TARGET_MIXED_VS_SINGLE),
        f.mixed_query_p99,
        TARGET_QUERY_P99,
        verdict(f.mixed_query_p99 <= TARGET_QUERY_P99),
        f.mixed_search_p99,
        f.mixed_snapshots
    );
}

fn main() {
    let mut f = Figures {
        n: asset_count(20_000, 1_000_000),
        single_1: 0.0,
        single_8: 0.0,
        single_10k: 0.0,
        sqlite_single: 0.0,
        sled_single: 0.0,
        bulk: 0.0,
        sqlite_bulk: 0.0,
        sled_bulk: 0.0,
        disk_single: 0,
        disk_bulk: 0,
        disk_compacted: 0,
        live: 0,
        sqlite_disk_single: 0,
        sqlite_disk_bulk: 0,
        mixed_labels: 0.0,
        mixed_query_p99: Duration::ZERO,
        mixed_search_p99: Duration::ZERO,
        mixed_snapshots: 0,
    };
    let mut c = Criterion::default().configure_from_args();
    if let Err(e) = run(&mut c, &mut f) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    c.final_summary();
    summary(&f);
}
