//! Snapshots: N generated ~200-byte text assets (default 1,000,000), each with one human
//! annotation answering a classification job and a spans job (1 to 3 entities), loaded
//! once into labeldb. Against named peers in the same run it measures
//!
//! - `Db::create_snapshot` of every asset with `latest-human` (target < 1 s), each
//!   iteration under a new name, deleted again outside the timing; informational peer:
//!   SQLite materialising the same (asset, label) member rows in external-id order;
//! - `Snapshot::iter` over every example (content and answers) against a raw sled full
//!   scan of the same bytes (target >= 0.5x its throughput): a separate sled database
//!   (same 256 MiB cache) holding, per asset, its asset and label records as labeldb
//!   encodes them (`Db::encoded_records`; labeldb itself keeps the same payloads packed
//!   in runs of 64 assets) under two keys; informational: raw sled doing two point gets
//!   per example in the same order, without decoding;
//! - `Snapshot::get(i)` at splitmix64-random positions against raw sled getting the same
//!   two records (target <= 2x its time);
//! - `Snapshot::export_jsonl` to a file against SQLite (rusqlite, bundled, WAL) exporting
//!   the same rows to JSONL with serde_json per row. The two files are checked
//!   byte-identical outside the timing.
//!
//! External ids are zero-padded, so the snapshot's external-id order is also id order.
//! `LABELDB_BENCH_ASSETS` sets N. Building the data is not timed. The summary at the end
//! prints the medians of criterion's samples and the ratios against the targets.
//! BENCHMARKS.md records the figures.

use std::cell::Cell;
use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use labeldb::{Answer, Db, Filter, NewAsset, NewLabel, Schema, Selection, Snapshot, Span};
use rusqlite::Connection;
use serde_json::{json, Value};

mod common;
use common::{asset_count, fmt_duration, load_average, mib, verdict, BoxResult, Samples, SplitMix64, WORDS};

const CHUNK: usize = 10_000;
const PROJECT: &str = "p";
/// labeldb's default page cache; raw sled and SQLite get the same.
const CACHE_BYTES: u64 = 256 << 20;
/// Random gets per criterion iteration.
const GETS: usize = 10_000;

const CLASSES: [&str; 5] = ["order", "complaint", "question", "feedback", "spam"];
const ENTITIES: [&str; 3] = ["person", "place", "org"];
const AUTHORS: usize = 20;
const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["order", "complaint", "question", "feedback", "spam"]},
    {"name": "entities", "kind": "spans", "classes": ["person", "place", "org"]}]}"#;

/// Targets from the issue.
const TARGET_CREATE_SECS: f64 = 1.0;
const TARGET_ITER_THROUGHPUT: f64 = 0.5;
const TARGET_GET_TIME: f64 = 2.0;

/// One generated asset and its annotation; row `i` depends only on `i`.
struct Row {
    external_id: String,
    text: String,
    author: String,
    class: &'static str,
    /// Byte ranges of whole words (ASCII, so also code-point ranges), with a class.
    spans: Vec<(u32, u32, &'static str)>,
    seconds: f32,
}

impl Row {
    fn new(i: usize) -> Row {
        let mut rng = SplitMix64(0x5a95_4075 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let target = 190 + rng.below(21);
        let mut text = String::with_capacity(target + 16);
        let mut words = Vec::new();
        let mut words_left = 0;
        while text.len() < target {
            if words_left == 0 {
                if !text.is_empty() {
                    text.pop();
                    text.push_str(". ");
                }
                words_left = 6 + rng.below(9);
            }
            let w = WORDS[rng.below(WORDS.len())];
            words.push((text.len() as u32, (text.len() + w.len()) as u32));
            text.push_str(w);
            text.push(' ');
            words_left -= 1;
        }
        text.pop();
        text.push('.');
        let mut picked: Vec<usize> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let w = rng.below(words.len());
            if !picked.contains(&w) {
                picked.push(w);
            }
        }
        picked.sort_unstable();
        let spans = picked
            .into_iter()
            .map(|w| (words[w].0, words[w].1, ENTITIES[rng.below(ENTITIES.len())]))
            .collect();
        Row {
            external_id: format!("a{i:07}"),
            text,
            author: format!("annotator{:02}", rng.below(AUTHORS)),
            class: CLASSES[rng.below(CLASSES.len())],
            spans,
            seconds: (rng.below(60_000) as f32) / 1000.0,
        }
    }

    fn new_asset(&self) -> NewAsset {
        let spans = self
            .spans
            .iter()
            .map(|&(start, end, class)| Span {
                start,
                end,
                class: class.to_string(),
                score: None,
            })
            .collect();
        let mut label = NewLabel::annotation(self.author.as_str())
            .answer("category", Answer::class(self.class))
            .answer("entities", Answer::Spans(spans));
        label.seconds = self.seconds;
        NewAsset::text(self.external_id.as_str(), self.text.as_str()).with_label(label)
    }

    /// The answers as labeldb exports them (docs/formats.md), which SQLite stores.
    fn answers_json(&self) -> String {
        let entities: Vec<Value> = self
            .spans
            .iter()
            .map(|&(start, end, class)| json!({"start": start as usize, "end": end as usize, "class": class}))
            .collect();
        json!({"category": self.class, "entities": entities}).to_string()
    }
}

fn rows(start: usize, end: usize) -> Vec<Row> {
    (start..end).map(Row::new).collect()
}

/// Raw sled keys of an asset's two records.
fn sled_keys(asset: u32) -> ([u8; 5], [u8; 5]) {
    let id = asset.to_be_bytes();
    ([b'a', id[0], id[1], id[2], id[3]], [b'l', id[0], id[1], id[2], id[3]])
}

/// The three stores, loaded with the same `n` rows.
struct Built {
    db: Db,
    sled: sled::Db,
    conn: Connection,
    /// labeldb's id of row 0; row `i` is asset `base + i`.
    base: u32,
    /// Bytes of the records labeldb reads per full pass (asset and label records).
    record_bytes: u64,
}

fn build(dir: &Path, n: usize) -> BoxResult<Built> {
    let db = Db::open(dir.join("db"))?;
    db.create_project("bench", PROJECT, Schema::from_json(SCHEMA)?)?;
    let conn = Connection::open(dir.join("bench.sqlite"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -((CACHE_BYTES / 1024) as i64))?;
    conn.execute_batch(
        "CREATE TABLE assets(id INTEGER PRIMARY KEY, external_id TEXT NOT NULL UNIQUE, text TEXT NOT NULL);
         CREATE TABLE labels(id INTEGER PRIMARY KEY, asset INTEGER NOT NULL, author TEXT NOT NULL,
             kind TEXT NOT NULL, answers TEXT NOT NULL, seconds REAL NOT NULL);
         BEGIN;",
    )?;
    let mut base = None;
    {
        let mut asset_stmt = conn.prepare("INSERT INTO assets VALUES (?1, ?2, ?3)")?;
        let mut label_stmt = conn.prepare("INSERT INTO labels VALUES (?1, ?1, ?2, 'annotation', ?3, ?4)")?;
        for start in (0..n).step_by(CHUNK) {
            let end = (start + CHUNK).min(n);
            let chunk_rows = rows(start, end);
            let chunk: Vec<NewAsset> = chunk_rows.iter().map(Row::new_asset).collect();
            let report = db.add_assets("bench", PROJECT, chunk)?;
            let first = *base.get_or_insert(report.added.first().map_or(0, |a| a.0));
            if report.added.len() != end - start
                || report
                    .added
                    .iter()
                    .enumerate()
                    .any(|(k, a)| a.0 as usize != first as usize + start + k)
            {
                return Err("labeldb did not add the chunk with consecutive ids".into());
            }
            for (k, r) in chunk_rows.iter().enumerate() {
                let id = i64::from(first) + (start + k) as i64;
                asset_stmt.execute(rusqlite::params![id, r.external_id, r.text])?;
                label_stmt.execute(rusqlite::params![id, r.author, r.answers_json(), f64::from(r.seconds)])?;
            }
        }
    }
    conn.execute_batch("COMMIT")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))?;
    db.flush()?;
    let base = base.unwrap_or(0);

    // Raw sled: the exact records labeldb reads for each example.
    let sled = sled::Config::new()
        .path(dir.join("sled"))
        .cache_capacity(CACHE_BYTES)
        .open()?;
    let mut record_bytes = 0u64;
    for start in (0..n).step_by(CHUNK) {
        let mut batch = sled::Batch::default();
        for i in start..(start + CHUNK).min(n) {
            let asset = base + i as u32;
            let (ak, lk) = sled_keys(asset);
            let (a, labels) = db.encoded_records(labeldb::AssetId(asset))?;
            let l = labels.into_iter().next().ok_or("missing label")?;
            record_bytes += (a.len() + l.len()) as u64;
            batch.insert(&ak[..], a);
            batch.insert(&lk[..], l);
        }
        sled.apply_batch(batch)?;
    }
    sled.flush()?;
    Ok(Built {
        db,
        sled,
        conn,
        base,
        record_bytes,
    })
}

/// Reads every example; returns the bytes of text and the answers seen.
fn iter_labeldb(snapshot: &Snapshot) -> labeldb::Result<(u64, u64)> {
    let (mut bytes, mut answers) = (0u64, 0u64);
    for ex in snapshot.iter() {
        let ex = ex?;
        bytes += ex.content.text().map_or(0, str::len) as u64;
        answers += ex.answers.len() as u64;
    }
    Ok((bytes, answers))
}

/// Raw sled full scan: every key and value.
fn scan_sled(sled: &sled::Db) -> sled::Result<u64> {
    let mut bytes = 0u64;
    for kv in sled.iter() {
        let (k, v) = kv?;
        bytes += (k.len() + v.len()) as u64;
    }
    Ok(bytes)
}

/// Raw sled, two point gets per asset, for `assets` in order.
fn gets_sled(sled: &sled::Db, assets: impl Iterator<Item = u32>) -> BoxResult<u64> {
    let mut bytes = 0u64;
    for asset in assets {
        let (ak, lk) = sled_keys(asset);
        let a = sled.get(ak)?.ok_or("missing asset")?;
        let l = sled.get(lk)?.ok_or("missing label")?;
        bytes += (a.len() + l.len()) as u64;
    }
    Ok(bytes)
}

fn export_labeldb(snapshot: &Snapshot, path: &Path) -> BoxResult<u64> {
    let mut out = BufWriter::new(File::create(path)?);
    let lines = snapshot.export_jsonl(&mut out)?;
    out.flush()?;
    Ok(lines)
}

/// The same lines as labeldb's export, built with serde_json per row.
fn export_sqlite(conn: &Connection, path: &Path) -> BoxResult<u64> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut stmt = conn.prepare_cached(
        "SELECT a.external_id, a.text, l.author, l.kind, l.answers, l.seconds
         FROM assets a JOIN labels l ON l.asset = a.id ORDER BY a.external_id",
    )?;
    let mut rows = stmt.query([])?;
    let mut lines = 0;
    while let Some(r) = rows.next()? {
        let answers: Value = serde_json::from_str(r.get_ref(4)?.as_str()?)?;
        let label = json!({
            "author": r.get_ref(2)?.as_str()?,
            "kind": r.get_ref(3)?.as_str()?,
            "answers": answers,
            "seconds": r.get::<_, f64>(5)? as f32,
        });
        let line = json!({"id": r.get_ref(0)?.as_str()?, "labels": [label], "text": r.get_ref(1)?.as_str()?});
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        lines += 1;
    }
    out.flush()?;
    Ok(lines)
}

/// The first line where two files differ, if they do.
fn first_difference(a: &Path, b: &Path) -> BoxResult<Option<(usize, String, String)>> {
    let (mut a, mut b) = (
        BufReader::new(File::open(a)?).lines(),
        BufReader::new(File::open(b)?).lines(),
    );
    for k in 0.. {
        match (a.next().transpose()?, b.next().transpose()?) {
            (None, None) => return Ok(None),
            (x, y) if x != y => return Ok(Some((k + 1, x.unwrap_or_default(), y.unwrap_or_default()))),
            _ => {}
        }
    }
    Ok(None)
}

fn run(n: usize) -> BoxResult<()> {
    let temp = tempfile::tempdir()?;
    let dir = temp.path();
    let started = Instant::now();
    let Built {
        db,
        sled,
        conn,
        base,
        record_bytes,
    } = build(dir, n)?;
    println!(
        "built {n} assets in {:.1} s; the records of one pass are {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mib(record_bytes)
    );

    // Correctness outside timing.
    let all = Filter::All;
    let info = db.create_snapshot("bench", PROJECT, "base", &all, &Selection::LatestHuman)?;
    let snapshot = db.snapshot(PROJECT, "base")?;
    if info.assets != n as u64 || snapshot.len() != n {
        return Err(format!("the snapshot has {} examples, not {n}", snapshot.len()).into());
    }
    let mut rng = SplitMix64(0x6e7a_11d5);
    let positions: Vec<usize> = (0..GETS).map(|_| rng.below(n)).collect();
    for &i in positions.iter().take(1000) {
        let ex = snapshot.get(i)?;
        let row = Row::new(i);
        if ex.asset.0 != base + i as u32 || ex.external_id != row.external_id || ex.answers.len() != 2 {
            return Err(format!("example {i} is {ex:?}, not row {i}").into());
        }
    }
    let (l_path, s_path) = (dir.join("labeldb.jsonl"), dir.join("sqlite.jsonl"));
    let (l_lines, s_lines) = (export_labeldb(&snapshot, &l_path)?, export_sqlite(&conn, &s_path)?);
    if l_lines != n as u64 || s_lines != n as u64 {
        return Err(format!("exported {l_lines} (labeldb) and {s_lines} (SQLite) lines of {n}").into());
    }
    if let Some((line, l, s)) = first_difference(&l_path, &s_path)? {
        return Err(format!("the exports differ at line {line}:\n labeldb {l}\n SQLite  {s}").into());
    }
    let export_bytes = std::fs::metadata(&l_path)?.len();
    println!("the exports are byte-identical ({:.1} MiB)", mib(export_bytes));
    if scan_sled(&sled)? != record_bytes + 10 * n as u64 {
        return Err("the raw sled scan does not read the records copied".into());
    }

    let samples = Samples::default();
    let long_samples = 10;
    let get_samples = 20;
    let mut c = Criterion::default()
        .sample_size(long_samples)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("snapshot");
    group.sampling_mode(SamplingMode::Flat);

    let made = Cell::new(0u64);
    group.bench_function("create/labeldb", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                made.set(made.get() + 1);
                let name = format!("s{}", made.get());
                let t = Instant::now();
                black_box(
                    db.create_snapshot("bench", PROJECT, &name, &all, &Selection::LatestHuman)
                        .expect("create"),
                );
                total += t.elapsed();
                db.delete_snapshot("bench", PROJECT, &name).expect("delete");
            }
            samples.record("create/labeldb", iters, total)
        })
    });
    group.bench_function("create/sqlite", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                conn.execute_batch(
                    "CREATE TABLE snap AS SELECT a.id AS asset, l.id AS label
                     FROM assets a JOIN labels l ON l.asset = a.id ORDER BY a.external_id",
                )
                .expect("materialise");
                total += t.elapsed();
                conn.execute_batch("DROP TABLE snap").expect("drop");
            }
            samples.record("create/sqlite", iters, total)
        })
    });
    group.bench_function("iter/labeldb", |b| {
        b.iter_custom(|iters| samples.run("iter/labeldb", iters, || iter_labeldb(&snapshot).expect("iter")))
    });
    group.bench_function("iter/sled-scan", |b| {
        b.iter_custom(|iters| samples.run("iter/sled-scan", iters, || scan_sled(&sled).expect("scan")))
    });
    group.bench_function("iter/sled-gets", |b| {
        b.iter_custom(|iters| {
            samples.run("iter/sled-gets", iters, || {
                gets_sled(&sled, (0..n as u32).map(|i| base + i)).expect("gets")
            })
        })
    });
    group.bench_function("export/labeldb", |b| {
        b.iter_custom(|iters| {
            samples.run("export/labeldb", iters, || {
                export_labeldb(&snapshot, &l_path).expect("export")
            })
        })
    });
    group.bench_function("export/sqlite", |b| {
        b.iter_custom(|iters| {
            samples.run("export/sqlite", iters, || {
                export_sqlite(&conn, &s_path).expect("export")
            })
        })
    });
    group.sample_size(get_samples);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("get/labeldb", |b| {
        b.iter_custom(|iters| {
            samples.run("get/labeldb", iters, || {
                let mut bytes = 0;
                for &i in &positions {
                    bytes += snapshot.get(i).expect("get").content.text().map_or(0, str::len);
                }
                bytes
            })
        })
    });
    group.bench_function("get/sled", |b| {
        b.iter_custom(|iters| {
            samples.run("get/sled", iters, || {
                gets_sled(&sled, positions.iter().map(|&i| base + i as u32)).expect("gets")
            })
        })
    });
    group.finish();
    c.final_summary();

    let median = |name: &str, samples_n: usize| samples.median(name, samples_n);
    println!();
    println!(
        "snapshot bench: {n} assets, load average {} (medians of criterion's samples)",
        load_average()
    );
    println!("{:<32} {:>11} {:>14}", "case", "time", "per example");
    let rows: [(&str, &str, usize, usize); 9] = [
        ("create_snapshot (labeldb)", "create/labeldb", long_samples, n),
        ("materialise members (SQLite)", "create/sqlite", long_samples, n),
        ("iter all (labeldb)", "iter/labeldb", long_samples, n),
        ("full scan (raw sled)", "iter/sled-scan", long_samples, n),
        ("2 gets per example (raw sled)", "iter/sled-gets", long_samples, n),
        ("get(i) x10,000 (labeldb)", "get/labeldb", get_samples, GETS),
        ("2 gets x10,000 (raw sled)", "get/sled", get_samples, GETS),
        ("export_jsonl (labeldb)", "export/labeldb", long_samples, n),
        ("export JSONL (SQLite)", "export/sqlite", long_samples, n),
    ];
    for (what, key, k, per) in rows {
        if let Some(d) = median(key, k) {
            println!(
                "{what:<32} {:>11} {:>14}",
                fmt_duration(d),
                fmt_duration(d / per as u32)
            );
        }
    }
    let ratio = |a: &str, ka: usize, b: &str, kb: usize| -> Option<f64> {
        Some(median(a, ka)?.as_secs_f64() / median(b, kb)?.as_secs_f64())
    };
    if let Some(d) = median("create/labeldb", long_samples) {
        let s = d.as_secs_f64();
        println!(
            "create: {s:.3} s (target < {TARGET_CREATE_SECS} s: {}); {:.2}x SQLite materialising the members",
            verdict(s < TARGET_CREATE_SECS),
            ratio("create/labeldb", long_samples, "create/sqlite", long_samples).unwrap_or(f64::NAN)
        );
    }
    if let (Some(r), Some(g)) = (
        ratio("iter/sled-scan", long_samples, "iter/labeldb", long_samples),
        ratio("iter/sled-gets", long_samples, "iter/labeldb", long_samples),
    ) {
        println!(
            "iter: {r:.2}x raw sled full-scan throughput (target >= {TARGET_ITER_THROUGHPUT}x: {}); \
             {g:.2}x raw sled's two gets per example",
            verdict(r >= TARGET_ITER_THROUGHPUT)
        );
    }
    if let Some(r) = ratio("get/labeldb", get_samples, "get/sled", get_samples) {
        println!(
            "get: {r:.2}x raw sled's time (target <= {TARGET_GET_TIME}x: {})",
            verdict(r <= TARGET_GET_TIME)
        );
    }
    if let Some(r) = ratio("export/sqlite", long_samples, "export/labeldb", long_samples) {
        println!("export: {r:.2}x SQLite's throughput (no target)");
    }
    Ok(())
}

fn main() {
    let n = asset_count(2_000, 1_000_000);
    if let Err(e) = run(n) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
