//! Queries: N generated text assets (default 1,000,000), each with one human
//! multi-class annotation and one scored model prediction, loaded once into labeldb and
//! into SQLite (rusqlite, bundled) with indexes on the same data. In one run it measures
//!
//! - two queries, count and first 100 ids, against the equivalent SQLite queries
//!   (for each, the fastest of a few SQL formulations, chosen at run time);
//! - the reopen time of the labeldb database against raw sled reopening a copy of the
//!   same bytes;
//! - the resident memory of the bitmap indexes: `Db::index_memory` and, as a
//!   cross-check, the VmRSS and live-heap growth of a fresh process opening the
//!   database, against raw sled opening the copy.
//!
//! `LABELDB_BENCH_ASSETS` sets N; `LABELDB_BENCH_QUERY_KEEP=DIR` keeps the built data in
//! DIR and reuses it in later runs with the same N. The data is deterministic
//! (splitmix64 per asset). Results are checked equal between the engines before
//! anything is timed; the summary at the end prints the medians of criterion's samples
//! and the ratios against the targets. BENCHMARKS.md records the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use labeldb::{Answer, Db, Filter, NewAsset, NewLabel, Role, Schema, Sort, Status};
use rusqlite::{params, Connection};

mod common;
use common::{asset_count, dir_bytes, fmt_duration, fmt_ratio, mib, verdict, BoxResult, Samples, SplitMix64};

/// Set in the child process that measures the memory one open retains.
const MEMORY_ENV: &str = "LABELDB_BENCH_QUERY_MEMORY";
const KEEP_ENV: &str = "LABELDB_BENCH_QUERY_KEEP";
const CHUNK: usize = 10_000;
const CLASSES: usize = 50;
const AUTHORS: usize = 200;
const PROJECT: &str = "p";
/// labeldb's default page cache; raw sled and SQLite get the same.
const CACHE_BYTES: u64 = 256 << 20;

const Q1: &str = "status:labeled AND label.topic:c7 AND NOT author:a3";
/// The data scope of the session that repeats Q1's count.
const SCOPE: &str = "NOT author:a1";
const Q2: &str = "prediction.score < 0.5 AND status:todo";
/// The parameters of the same queries for SQLite.
const Q1_STATUS: Status = Status::Labeled;
const Q1_CLASS: i64 = 7;
const Q1_AUTHOR: i64 = 3;
const Q2_STATUS: Status = Status::Todo;
const Q2_SCORE: f64 = 0.5;

/// Targets from the issue.
const TARGET_Q1_COUNT_MICROS: f64 = 100.0;
const TARGET_Q1_COUNT_SPEEDUP: f64 = 500.0;
/// Authorization and scope filtering may add this share to Q1's count.
const TARGET_SESSION_COST: f64 = 0.10;
const TARGET_REOPEN_RATIO: f64 = 1.5;
const TARGET_BYTES_PER_ASSET: f64 = 16.0;

const WORDS: [&str; 48] = [
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "was", "for", "on", "are", "with", "they", "be", "this",
    "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all", "were", "when", "your", "can",
    "said", "there", "use", "each", "which", "how", "their", "will", "other", "about", "out", "many", "then", "some",
    "time", "water",
];

/// Cumulative Zipf weights 1/(k+1) over `n` ranks, normalised to end at 1.
fn zipf_cdf(n: usize) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (0..n)
        .map(|k| {
            acc += 1.0 / (k + 1) as f64;
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

fn draw(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

/// Draws the generated data; row `i` depends only on `i`.
struct Generator {
    class_cdf: Vec<f64>,
    author_cdf: Vec<f64>,
}

/// One generated asset.
struct Row {
    text: String,
    status: Status,
    /// Distinct classes of the human annotation, 1 to 3 of them.
    classes: Vec<usize>,
    author: usize,
    /// The prediction's per-class scores; the first is the top score.
    scores: Vec<(usize, f32)>,
}

impl Generator {
    fn new() -> Generator {
        Generator {
            class_cdf: zipf_cdf(CLASSES),
            author_cdf: zipf_cdf(AUTHORS),
        }
    }

    fn row(&self, i: usize) -> Row {
        let mut rng = SplitMix64(0x9e1e_c7ed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let status = match rng.below(100) {
            0..=39 => Status::Todo,
            40..=44 => Status::Ongoing,
            45..=74 => Status::Labeled,
            75..=89 => Status::ToReview,
            _ => Status::Reviewed,
        };
        let wanted = 1 + rng.below(3);
        let mut classes = Vec::with_capacity(wanted);
        while classes.len() < wanted {
            let c = draw(&self.class_cdf, rng.unit());
            if !classes.contains(&c) {
                classes.push(c);
            }
        }
        let author = draw(&self.author_cdf, rng.unit());
        // The model agrees with the annotator 80% of the time; the top score is uniform
        // in 0.2..1.0 and the two runner-up scores are strictly below it.
        let predicted = if rng.below(10) < 8 {
            classes[0]
        } else {
            draw(&self.class_cdf, rng.unit())
        };
        let top = (0.2 + 0.8 * rng.unit()) as f32;
        let mut scores = vec![(predicted, top)];
        while scores.len() < 3 {
            let c = rng.below(CLASSES);
            if scores.iter().all(|(s, _)| *s != c) {
                scores.push((c, top * 0.99 * rng.unit() as f32));
            }
        }
        let target = 90 + rng.below(21);
        let mut text = String::with_capacity(target + 8);
        while text.len() < target {
            text.push_str(WORDS[rng.below(WORDS.len())]);
            text.push(' ');
        }
        text.pop();
        text.push('.');
        Row {
            text,
            status,
            classes,
            author,
            scores,
        }
    }
}

fn status_code(s: Status) -> i64 {
    Status::ALL.iter().position(|x| *x == s).map_or(-1, |p| p as i64)
}

fn schema() -> BoxResult<Schema> {
    let classes: Vec<String> = (0..CLASSES).map(|c| format!("\"c{c}\"")).collect();
    let json = format!(
        r#"{{"jobs": [{{"name": "topic", "kind": "multi-classification", "classes": [{}]}}]}}"#,
        classes.join(", ")
    );
    Ok(Schema::from_json(&json)?)
}

fn new_asset(i: usize, r: &Row) -> NewAsset {
    let mut a = NewAsset::text(format!("doc{i}"), r.text.clone());
    a.status = Some(r.status);
    let classes = r.classes.iter().map(|c| format!("c{c}")).collect();
    let annotation = NewLabel::annotation(format!("a{}", r.author)).answer("topic", Answer::Classes(classes));
    let mut prediction = NewLabel::prediction("clf", "1");
    for (c, s) in &r.scores {
        prediction = prediction.score("topic", format!("c{c}"), *s);
    }
    a.with_label(annotation).with_label(prediction)
}

fn open_sqlite(path: &Path) -> BoxResult<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -((CACHE_BYTES / 1024) as i64))?;
    Ok(conn)
}

/// Loads `n` assets into labeldb (closed and flushed on return) and SQLite, with the
/// same ids in both.
fn build(dir: &Path, n: usize) -> BoxResult<Connection> {
    let gen = Generator::new();
    let db = Db::open(dir.join("db"))?;
    db.create_project("bench", PROJECT, schema()?)?;
    let conn = open_sqlite(&dir.join("bench.sqlite"))?;
    conn.execute_batch(
        "CREATE TABLE assets(id INTEGER PRIMARY KEY, status INTEGER NOT NULL);
         CREATE TABLE ann(asset INTEGER NOT NULL, author INTEGER NOT NULL, class INTEGER NOT NULL);
         CREATE TABLE pred(asset INTEGER PRIMARY KEY, score REAL NOT NULL);
         BEGIN;",
    )?;
    {
        let mut asset_stmt = conn.prepare("INSERT INTO assets VALUES (?1, ?2)")?;
        let mut ann_stmt = conn.prepare("INSERT INTO ann VALUES (?1, ?2, ?3)")?;
        let mut pred_stmt = conn.prepare("INSERT INTO pred VALUES (?1, ?2)")?;
        for start in (0..n).step_by(CHUNK) {
            let rows: Vec<Row> = (start..(start + CHUNK).min(n)).map(|i| gen.row(i)).collect();
            let chunk: Vec<NewAsset> = rows.iter().enumerate().map(|(k, r)| new_asset(start + k, r)).collect();
            let report = db.add_assets("bench", PROJECT, chunk)?;
            if report.added.len() != rows.len() {
                return Err(format!("added {} of {} assets", report.added.len(), rows.len()).into());
            }
            for (id, r) in report.added.iter().zip(&rows) {
                let id = i64::from(id.0);
                asset_stmt.execute(params![id, status_code(r.status)])?;
                for c in &r.classes {
                    ann_stmt.execute(params![id, r.author as i64, *c as i64])?;
                }
                pred_stmt.execute(params![id, f64::from(r.scores[0].1)])?;
            }
        }
    }
    conn.execute_batch(
        "COMMIT;
         CREATE INDEX assets_status ON assets(status);
         CREATE INDEX ann_class ON ann(class, asset);
         CREATE INDEX ann_author ON ann(author, asset);
         CREATE INDEX pred_score ON pred(score);
         ANALYZE;",
    )?;
    // Move the data from the WAL into the database file, where reads find it directly.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))?;
    db.flush()?;
    drop(db);
    Ok(conn)
}

/// SQL formulations of the two queries; the fastest of each list is benchmarked.
/// Parameters: ?1 status, ?2 class or score, ?3 author.
const Q1_COUNT_SQL: [&str; 4] = [
    "SELECT COUNT(*) FROM assets a WHERE a.status = ?1
       AND EXISTS (SELECT 1 FROM ann WHERE ann.asset = a.id AND ann.class = ?2)
       AND NOT EXISTS (SELECT 1 FROM ann WHERE ann.asset = a.id AND ann.author = ?3)",
    "SELECT COUNT(*) FROM assets a WHERE a.status = ?1
       AND a.id IN (SELECT asset FROM ann WHERE class = ?2)
       AND a.id NOT IN (SELECT asset FROM ann WHERE author = ?3)",
    "SELECT COUNT(*) FROM ann c JOIN assets a ON a.id = c.asset WHERE c.class = ?2 AND a.status = ?1
       AND NOT EXISTS (SELECT 1 FROM ann x WHERE x.asset = c.asset AND x.author = ?3)",
    "SELECT COUNT(*) FROM (SELECT id FROM assets WHERE status = ?1
       INTERSECT SELECT asset FROM ann WHERE class = ?2 EXCEPT SELECT asset FROM ann WHERE author = ?3)",
];
const Q1_IDS_SQL: [&str; 4] = [
    "SELECT a.id FROM assets a WHERE a.status = ?1
       AND EXISTS (SELECT 1 FROM ann WHERE ann.asset = a.id AND ann.class = ?2)
       AND NOT EXISTS (SELECT 1 FROM ann WHERE ann.asset = a.id AND ann.author = ?3)
     ORDER BY a.id LIMIT 100",
    "SELECT a.id FROM assets a WHERE a.status = ?1
       AND a.id IN (SELECT asset FROM ann WHERE class = ?2)
       AND a.id NOT IN (SELECT asset FROM ann WHERE author = ?3)
     ORDER BY a.id LIMIT 100",
    "SELECT c.asset FROM ann c JOIN assets a ON a.id = c.asset WHERE c.class = ?2 AND a.status = ?1
       AND NOT EXISTS (SELECT 1 FROM ann x WHERE x.asset = c.asset AND x.author = ?3)
     ORDER BY c.asset LIMIT 100",
    "SELECT id FROM (SELECT id FROM assets WHERE status = ?1
       INTERSECT SELECT asset FROM ann WHERE class = ?2 EXCEPT SELECT asset FROM ann WHERE author = ?3)
     ORDER BY id LIMIT 100",
];
const Q2_COUNT_SQL: [&str; 4] = [
    "SELECT COUNT(*) FROM assets a WHERE a.status = ?1
       AND EXISTS (SELECT 1 FROM pred p WHERE p.asset = a.id AND p.score < ?2)",
    "SELECT COUNT(*) FROM pred p JOIN assets a ON a.id = p.asset WHERE p.score < ?2 AND a.status = ?1",
    "SELECT COUNT(*) FROM assets a WHERE a.status = ?1 AND a.id IN (SELECT asset FROM pred WHERE score < ?2)",
    "SELECT COUNT(*) FROM (SELECT id FROM assets WHERE status = ?1
       INTERSECT SELECT asset FROM pred WHERE score < ?2)",
];
const Q2_IDS_SQL: [&str; 4] = [
    "SELECT a.id FROM assets a WHERE a.status = ?1
       AND EXISTS (SELECT 1 FROM pred p WHERE p.asset = a.id AND p.score < ?2)
     ORDER BY a.id LIMIT 100",
    "SELECT a.id FROM pred p JOIN assets a ON a.id = p.asset WHERE p.score < ?2 AND a.status = ?1
     ORDER BY a.id LIMIT 100",
    "SELECT a.id FROM assets a WHERE a.status = ?1 AND a.id IN (SELECT asset FROM pred WHERE score < ?2)
     ORDER BY a.id LIMIT 100",
    "SELECT id FROM (SELECT id FROM assets WHERE status = ?1
       INTERSECT SELECT asset FROM pred WHERE score < ?2)
     ORDER BY id LIMIT 100",
];

/// The parameters of one query, bound by position (only the ones a statement names).
#[derive(Clone, Copy)]
enum Params {
    Q1,
    Q2,
}

fn bind(stmt: &mut rusqlite::Statement<'_>, p: Params) -> rusqlite::Result<()> {
    let (status, second) = match p {
        Params::Q1 => (status_code(Q1_STATUS), rusqlite::types::Value::Integer(Q1_CLASS)),
        Params::Q2 => (status_code(Q2_STATUS), rusqlite::types::Value::Real(Q2_SCORE)),
    };
    stmt.raw_bind_parameter(1, status)?;
    stmt.raw_bind_parameter(2, second)?;
    if stmt.parameter_count() >= 3 {
        stmt.raw_bind_parameter(3, Q1_AUTHOR)?;
    }
    Ok(())
}

fn sql_count(conn: &Connection, sql: &str, p: Params) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, p)?;
    let mut rows = stmt.raw_query();
    let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok(row.get::<_, i64>(0)? as u64)
}

fn sql_ids(conn: &Connection, sql: &str, p: Params) -> rusqlite::Result<Vec<u32>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, p)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::with_capacity(100);
    while let Some(row) = rows.next()? {
        out.push(row.get::<_, i64>(0)? as u32);
    }
    Ok(out)
}

/// Runs every formulation, checks that each returns `expected`, and returns the index
/// of the fastest (best of three runs after the checking run).
fn fastest<T: PartialEq + std::fmt::Debug>(
    what: &str,
    sqls: &[&str],
    expected: &T,
    run: impl Fn(&str) -> rusqlite::Result<T>,
) -> BoxResult<usize> {
    let mut best = (0, Duration::MAX);
    for (k, sql) in sqls.iter().enumerate() {
        let got = run(sql)?;
        if &got != expected {
            return Err(format!("{what}: SQLite formulation {k} returns {got:?}, labeldb {expected:?}").into());
        }
        let mut t = Duration::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            black_box(run(sql)?);
            t = t.min(start.elapsed());
        }
        println!("  {what}: SQLite formulation {k}: {}", fmt_duration(t));
        if t < best.1 {
            best = (k, t);
        }
    }
    Ok(best.0)
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) -> BoxResult<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// VmRSS of this process, in bytes.
fn rss_bytes() -> BoxResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/self/status")?;
    let kb: u64 = line["VmRSS:".len()..].trim().trim_end_matches("kB").trim().parse()?;
    Ok(kb * 1024)
}

fn open_raw_sled(path: &Path) -> sled::Result<sled::Db> {
    sled::Config::new().path(path).cache_capacity(CACHE_BYTES).open()
}

/// Counts the heap bytes currently allocated, so that the memory cross-check can see
/// what an open retains exactly rather than in whole pages.
struct CountingAlloc;

static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            HEAP_BYTES.fetch_add(new_size, Ordering::Relaxed);
            HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// What one open retained, measured in a fresh process.
#[derive(Clone, Copy, Default)]
struct Retained {
    /// VmRSS growth.
    rss: u64,
    /// Growth of live heap bytes.
    heap: u64,
    /// `Db::index_memory` (labeldb only).
    index_memory: u64,
}

/// The child side of the memory cross-check: opens the database one way in this fresh
/// process and prints what the open retained.
fn memory_child(how: &str, path: &Path) -> BoxResult<()> {
    let (rss0, heap0) = (rss_bytes()?, HEAP_BYTES.load(Ordering::Relaxed));
    let retained = |index_memory: usize| -> BoxResult<Retained> {
        Ok(Retained {
            rss: rss_bytes()?.saturating_sub(rss0),
            heap: HEAP_BYTES.load(Ordering::Relaxed).saturating_sub(heap0) as u64,
            index_memory: index_memory as u64,
        })
    };
    let r = match how {
        "labeldb" => {
            let db = Db::open(path)?;
            retained(db.index_memory())?
        }
        "sled" => {
            let db = open_raw_sled(path)?;
            black_box(db.first()?);
            retained(0)?
        }
        // Raw sled plus reading the index checkpoint records (tags 0x0A head, 0x0B
        // chunks; docs/format.md), which labeldb's open pulls into sled's cache.
        "sled+checkpoint" => {
            let db = open_raw_sled(path)?;
            let mut bytes = 0usize;
            for prefix in [[0x0Au8], [0x0B]] {
                for kv in db.scan_prefix(prefix) {
                    bytes += kv?.1.len();
                }
            }
            black_box(bytes);
            retained(0)?
        }
        // What labeldb's open of the full-text index keeps: the index, a 64 MiB writer
        // and a reader, as `TextIndex::open` makes them.
        "tantivy" => {
            let index = tantivy::Index::open_in_dir(path.join("text"))?;
            let writer: tantivy::IndexWriter = index.writer(64 << 20)?;
            let reader = index
                .reader_builder()
                .reload_policy(tantivy::ReloadPolicy::Manual)
                .try_into()?;
            let r = retained(0)?;
            black_box((&writer, &reader));
            r
        }
        other => return Err(format!("unknown memory measurement {other:?}").into()),
    };
    println!("retained {} {} {}", r.rss, r.heap, r.index_memory);
    Ok(())
}

/// Runs [`memory_child`] in a fresh process.
fn measure_memory(how: &str, path: &Path) -> BoxResult<Retained> {
    let out = Command::new(std::env::current_exe()?)
        .env(MEMORY_ENV, format!("{how}:{}", path.display()))
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("retained "))
        .ok_or_else(|| format!("memory child {how} failed ({}): {stdout}", out.status))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 4 {
        return Err(format!("bad memory line {line:?}").into());
    }
    Ok(Retained {
        rss: f[1].parse()?,
        heap: f[2].parse()?,
        index_memory: f[3].parse()?,
    })
}

fn run(n: usize) -> BoxResult<()> {
    // `LABELDB_BENCH_QUERY_KEEP=DIR` builds the data into DIR once and reuses it in
    // later runs with the same N (to re-time without reloading); default: a tempdir.
    let temp = tempfile::tempdir()?;
    let dir = match std::env::var_os(KEEP_ENV) {
        Some(d) => std::path::PathBuf::from(d),
        None => temp.path().to_path_buf(),
    };
    let db_path = dir.join("db");
    let copy = dir.join("sled-copy");
    let done = dir.join(format!("built-{n}"));
    let conn = if done.exists() {
        println!("reusing the {n} assets built in {}", dir.display());
        open_sqlite(&dir.join("bench.sqlite"))?
    } else {
        for stale in [&db_path, &copy] {
            if stale.exists() {
                std::fs::remove_dir_all(stale)?;
            }
        }
        let _ = std::fs::remove_file(dir.join("bench.sqlite"));
        std::fs::create_dir_all(&dir)?;
        let started = Instant::now();
        let conn = build(&dir, n)?;
        println!(
            "built {n} assets in {:.1} s: labeldb {:.1} MiB on disk, SQLite {:.1} MiB",
            started.elapsed().as_secs_f64(),
            mib(dir_bytes(&db_path)?),
            mib(std::fs::metadata(dir.join("bench.sqlite"))?.len())
        );
        // Raw sled's copy of the same bytes, taken while labeldb is closed.
        copy_dir(&db_path, &copy)?;
        std::fs::write(&done, b"")?;
        conn
    };

    let mem_labeldb = measure_memory("labeldb", &db_path)?;
    let mem_sled = measure_memory("sled", &copy)?;
    let mem_sled_ckpt = measure_memory("sled+checkpoint", &copy)?;
    let mem_tantivy = measure_memory("tantivy", &db_path)?;
    let index_memory = mem_labeldb.index_memory;

    let db = Db::open(&db_path)?;
    let info = db.index_info();
    if info.rebuilt.is_some() || info.replayed_events != 0 {
        return Err(format!("reopen did not load a current index checkpoint: {info:?}").into());
    }

    // Correctness outside timing: both engines agree, and the fastest SQL is chosen.
    let f1 = labeldb::query::parse(Q1)?;
    let f2 = labeldb::query::parse(Q2)?;
    let first100 = |f: &Filter| -> labeldb::Result<Vec<u32>> {
        let page = db.page(PROJECT, &db.select(PROJECT, f)?, Sort::Id, 100, None)?;
        Ok(page.ids.iter().map(|id| id.0).collect())
    };
    let (c1, c2) = (db.count(PROJECT, &f1)?, db.count(PROJECT, &f2)?);
    let (ids1, ids2) = (first100(&f1)?, first100(&f2)?);
    println!("{Q1:?}: {c1} assets; {Q2:?}: {c2} assets");
    let q1c = fastest("Q1 count", &Q1_COUNT_SQL, &c1, |s| sql_count(&conn, s, Params::Q1))?;
    let q1i = fastest("Q1 ids", &Q1_IDS_SQL, &ids1, |s| sql_ids(&conn, s, Params::Q1))?;
    let q2c = fastest("Q2 count", &Q2_COUNT_SQL, &c2, |s| sql_count(&conn, s, Params::Q2))?;
    let q2i = fastest("Q2 ids", &Q2_IDS_SQL, &ids2, |s| sql_ids(&conn, s, Params::Q2))?;

    let samples = Samples::default();
    let query_samples = 30;
    let mut c = Criterion::default()
        .sample_size(query_samples)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = c.benchmark_group("query");
    group.sampling_mode(SamplingMode::Flat);
    let cases: [(&str, &Filter, bool, usize, &str, Params); 4] = [
        ("q1_count", &f1, false, q1c, Q1_COUNT_SQL[q1c], Params::Q1),
        ("q1_first100", &f1, true, q1i, Q1_IDS_SQL[q1i], Params::Q1),
        ("q2_count", &f2, false, q2c, Q2_COUNT_SQL[q2c], Params::Q2),
        ("q2_first100", &f2, true, q2i, Q2_IDS_SQL[q2i], Params::Q2),
    ];
    for (name, filter, ids, _, sql, params) in cases {
        let key = format!("labeldb/{name}");
        group.bench_function(&key, |b| {
            b.iter_custom(|iters| {
                samples.run(&key, iters, || {
                    if ids {
                        first100(filter).expect("page").len() as u64
                    } else {
                        db.count(PROJECT, filter).expect("count")
                    }
                })
            })
        });
        let key = format!("sqlite/{name}");
        group.bench_function(&key, |b| {
            b.iter_custom(|iters| {
                samples.run(&key, iters, || {
                    if ids {
                        sql_ids(&conn, sql, params).expect("sqlite ids").len() as u64
                    } else {
                        sql_count(&conn, sql, params).expect("sqlite count")
                    }
                })
            })
        });
    }
    // Authorization and scope filtering: the same count through a reviewer's session
    // whose scope holds most assets (a dense bitmap: the costliest intersection).
    db.set_member("bench", PROJECT, "root", Role::Admin, None)?;
    db.set_member("root", PROJECT, "rita", Role::Reviewer, Some(SCOPE))?;
    let rita = db.as_user("rita")?;
    let scoped = rita.count(PROJECT, &f1)?;
    let want = db.count(PROJECT, &f1.clone().and(labeldb::query::parse(SCOPE)?))?;
    if scoped != want || scoped == c1 {
        return Err(format!("session count {scoped}, expected {want} (of {c1} unscoped)").into());
    }
    println!("{Q1:?} in scope {SCOPE:?}: {scoped} assets");
    group.bench_function("session/q1_count", |b| {
        b.iter_custom(|iters| samples.run("session/q1_count", iters, || rita.count(PROJECT, &f1).expect("count")))
    });
    group.finish();

    // Reopen: labeldb is flushed and closed, so each iteration's drop has nothing to
    // write; raw sled opens its copy of the same bytes and reads one key.
    db.flush()?;
    drop(rita); // a session holds the database open too
    drop(db);
    let reopen_samples = 10;
    let mut group = c.benchmark_group("reopen");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(reopen_samples);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("labeldb", |b| {
        b.iter_custom(|iters| {
            samples.run("reopen/labeldb", iters, || {
                let db = Db::open(&db_path).expect("open");
                let memory = db.index_memory();
                drop(db);
                memory
            })
        })
    });
    group.bench_function("sled", |b| {
        b.iter_custom(|iters| {
            samples.run("reopen/sled", iters, || {
                let db = open_raw_sled(&copy).expect("open sled");
                let first = db.first().expect("read").map(|(k, _)| k.len());
                drop(db);
                first
            })
        })
    });
    group.finish();
    c.final_summary();

    // Summary: medians of the samples above, ratios against the targets.
    let median = |name: &str, n: usize| samples.median(name, n);
    println!();
    println!("queries over {n} assets (labeldb: count / select+page; SQLite: fastest formulation)");
    println!(
        "{:<14} {:>12} {:>12} {:>10} {:>16}",
        "query", "labeldb", "SQLite", "SQL form", "SQLite/labeldb"
    );
    let mut q1_count = None;
    for (name, _, _, formulation, ..) in cases {
        let (l, s) = (
            median(&format!("labeldb/{name}"), query_samples),
            median(&format!("sqlite/{name}"), query_samples),
        );
        let show = |d: Option<Duration>| d.map_or("-".to_string(), fmt_duration);
        let ratio = match (l, s) {
            (Some(l), Some(s)) => fmt_ratio(s.as_secs_f64() / l.as_secs_f64()),
            _ => "-".to_string(),
        };
        println!(
            "{name:<14} {:>12} {:>12} {:>10} {:>16}",
            show(l),
            show(s),
            formulation,
            ratio
        );
        if name == "q1_count" {
            q1_count = l.zip(s);
        }
    }
    if let Some((l, s)) = q1_count {
        let micros = l.as_secs_f64() * 1e6;
        let speedup = s.as_secs_f64() / l.as_secs_f64();
        println!(
            "q1 count: {micros:.1} µs (target <= {TARGET_Q1_COUNT_MICROS} µs: {}), {speedup:.0}x SQLite (target >= {TARGET_Q1_COUNT_SPEEDUP}x: {})",
            verdict(micros <= TARGET_Q1_COUNT_MICROS),
            verdict(speedup >= TARGET_Q1_COUNT_SPEEDUP)
        );
    }
    if let (Some(l), Some(s)) = (
        median("labeldb/q1_count", query_samples),
        median("session/q1_count", query_samples),
    ) {
        let cost = s.as_secs_f64() / l.as_secs_f64() - 1.0;
        println!(
            "q1 count through a scoped session: {} vs {}: {:+.1}% (target <= +{:.0}%: {})",
            fmt_duration(s),
            fmt_duration(l),
            cost * 100.0,
            TARGET_SESSION_COST * 100.0,
            verdict(cost <= TARGET_SESSION_COST)
        );
    }
    if let (Some(l), Some(s)) = (
        median("reopen/labeldb", reopen_samples),
        median("reopen/sled", reopen_samples),
    ) {
        let r = l.as_secs_f64() / s.as_secs_f64();
        println!(
            "reopen: labeldb {}, raw sled {}: {r:.2}x (target <= {TARGET_REOPEN_RATIO}x: {})",
            fmt_duration(l),
            fmt_duration(s),
            verdict(r <= TARGET_REOPEN_RATIO)
        );
    }
    let per_asset = |b: u64| b as f64 / n as f64;
    println!(
        "index memory: index_memory() {:.1} MiB = {:.1} bytes/asset (target <= {TARGET_BYTES_PER_ASSET}: {})",
        mib(index_memory),
        per_asset(index_memory),
        verdict(per_asset(index_memory) <= TARGET_BYTES_PER_ASSET)
    );
    for (what, get) in [
        ("VmRSS", (|r: &Retained| r.rss) as fn(&Retained) -> u64),
        ("live heap", |r| r.heap),
    ] {
        let (l, s, sc, t) = (
            get(&mem_labeldb),
            get(&mem_sled),
            get(&mem_sled_ckpt),
            get(&mem_tantivy),
        );
        let extra = l.saturating_sub(sc);
        let bitmaps = extra.saturating_sub(t);
        println!(
            "  {what} retained by a fresh open: labeldb {:.1} MiB, raw sled {:.1} MiB, raw sled + checkpoint reads \
             {:.1} MiB, tantivy open {:.1} MiB; labeldb - (sled + checkpoint) = {:.1} MiB = {:.1} bytes/asset; \
             minus tantivy = {:.1} MiB = {:.1} bytes/asset",
            mib(l),
            mib(s),
            mib(sc),
            mib(t),
            mib(extra),
            per_asset(extra),
            mib(bitmaps),
            per_asset(bitmaps)
        );
    }
    Ok(())
}

fn main() {
    // SAFETY: called first, before any bitmap exists; from here CRoaring allocates
    // through Rust's global allocator (the counting one above), so its bitmaps are
    // counted in the memory figures.
    unsafe { croaring::configure_rust_alloc() };
    if let Ok(spec) = std::env::var(MEMORY_ENV) {
        let result = match spec.split_once(':') {
            Some((how, path)) => memory_child(how, Path::new(path)),
            None => Err(format!("{MEMORY_ENV} is HOW:PATH, not {spec:?}").into()),
        };
        if let Err(e) = result {
            eprintln!("error: memory child: {e}");
            std::process::exit(2);
        }
        return;
    }
    let n = asset_count(2_000, 1_000_000);
    if let Err(e) = run(n) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
