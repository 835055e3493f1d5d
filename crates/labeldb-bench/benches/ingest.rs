//! Ingest: N generated ~200-byte text assets with one human label each, loaded through
//! labeldb's public batch API, into SQLite (rusqlite, bundled, WAL, one transaction,
//! equivalent tables and indexes) and as the same bytes into raw sled. A fourth,
//! informational peer, `sqlite-fts5`, adds an FTS5 index over the texts, since labeldb
//! also feeds every text to its full-text index on ingest.
//!
//! `LABELDB_BENCH_ASSETS` sets N (default 1,000,000). First each peer loads N once in a
//! child process (this binary re-run with `LABELDB_BENCH_ONESHOT`), so that its peak RSS
//! is its own; the parent prints assets/s, bytes on disk, peak RSS and the ratios. Then
//! criterion samples each peer ten times at `LABELDB_BENCH_CRITERION_ASSETS` rows
//! (default min(N, 200,000): at 1M a labeldb or sled load takes 35-150 s, and eleven of
//! each would not fit a 15-minute run). `LABELDB_BENCH_TEXT_COMMIT_SECS` overrides labeldb's
//! text-index commit interval (default: the library's) for investigations; the recorded
//! figures use the defaults. BENCHMARKS.md records the figures.
//!
//! Timing covers open, schema, inserts, flush/commit/checkpoint and close. Generating
//! the rows is the same for every peer and is not timed; nor is directory setup and
//! removal.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use labeldb::{Answer, Db, NewAsset, NewLabel, Schema};

mod common;
use common::{dir_bytes, load_average, mib, BoxResult, SplitMix64, Stopwatch, ASSETS_ENV, WORDS};

const CHUNK: usize = 10_000;
const ONESHOT_ENV: &str = "LABELDB_BENCH_ONESHOT";
const CRITERION_ASSETS_ENV: &str = "LABELDB_BENCH_CRITERION_ASSETS";
const TEXT_COMMIT_ENV: &str = "LABELDB_BENCH_TEXT_COMMIT_SECS";
/// labeldb's default page cache; raw sled gets the same so that only the layer differs.
const SLED_CACHE_BYTES: u64 = 256 << 20;

const CLASSES: [&str; 5] = ["order", "complaint", "question", "feedback", "spam"];
const AUTHORS: usize = 20;
const SCHEMA: &str = r#"{"jobs": [{"name": "category", "kind": "classification",
    "classes": ["order", "complaint", "question", "feedback", "spam"]}]}"#;

/// One generated asset and its label; row `i` depends only on `i`.
struct Row {
    external_id: String,
    text: String,
    author: String,
    class: &'static str,
    seconds: f32,
    /// Stands in for SQLite's digest column (labeldb computes blake3 itself).
    digest: [u8; 32],
}

impl Row {
    fn new(i: usize) -> Row {
        let mut rng = SplitMix64(0x1abe_1db0 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let target = 190 + rng.below(21);
        let mut text = String::with_capacity(target + 16);
        let mut words_left = 0;
        while text.len() < target {
            if words_left == 0 {
                if !text.is_empty() {
                    text.pop();
                    text.push_str(". ");
                }
                words_left = 6 + rng.below(9);
            }
            text.push_str(WORDS[rng.below(WORDS.len())]);
            text.push(' ');
            words_left -= 1;
        }
        text.pop();
        text.push('.');
        let mut digest = [0u8; 32];
        for c in digest.chunks_mut(8) {
            c.copy_from_slice(&rng.next().to_le_bytes());
        }
        Row {
            external_id: format!("a{i}"),
            text,
            author: format!("annotator{:02}", rng.below(AUTHORS)),
            class: CLASSES[rng.below(CLASSES.len())],
            seconds: (rng.below(60_000) as f32) / 1000.0,
            digest,
        }
    }

    /// The label's answers as SQLite stores them and raw sled receives them.
    fn answers_json(&self) -> String {
        format!(r#"{{"category":["{}"]}}"#, self.class)
    }
}

fn rows(start: usize, end: usize) -> Vec<Row> {
    (start..end).map(Row::new).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Labeldb,
    Sqlite,
    Sled,
    /// Not a target peer: SQLite with a full-text index, labeldb's feature set on ingest.
    SqliteFts,
}

impl Peer {
    const ALL: [Peer; 4] = [Peer::Labeldb, Peer::Sqlite, Peer::Sled, Peer::SqliteFts];

    fn name(self) -> &'static str {
        match self {
            Peer::Labeldb => "labeldb",
            Peer::Sqlite => "sqlite",
            Peer::Sled => "sled",
            Peer::SqliteFts => "sqlite-fts5",
        }
    }

    fn parse(s: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Loads `n` rows into a fresh database under `dir`, closes it, and returns the
    /// timed durations.
    fn load(self, dir: &Path, n: usize) -> BoxResult<Stopwatch> {
        match self {
            Peer::Labeldb => load_labeldb(dir, n),
            Peer::Sqlite | Peer::SqliteFts => load_sqlite(dir, n, self == Peer::SqliteFts),
            Peer::Sled => load_sled(dir, n),
        }
    }
}

fn load_labeldb(dir: &Path, n: usize) -> BoxResult<Stopwatch> {
    let mut sw = Stopwatch::default();
    let schema = Schema::from_json(SCHEMA)?;
    let mut builder = Db::builder();
    if let Some(secs) = std::env::var(TEXT_COMMIT_ENV).ok().and_then(|v| v.parse().ok()) {
        builder = builder.commit_interval(Duration::from_secs_f64(secs));
    }
    let db = sw.time(|| -> BoxResult<Db> {
        let db = builder.open(dir.join("db"))?;
        db.create_project("bench", "p", schema)?;
        Ok(db)
    })?;
    for start in (0..n).step_by(CHUNK) {
        let chunk: Vec<NewAsset> = rows(start, (start + CHUNK).min(n))
            .into_iter()
            .map(|r| {
                let mut label = NewLabel::annotation(r.author).answer("category", Answer::class(r.class));
                label.seconds = r.seconds;
                NewAsset::text(r.external_id, r.text).with_label(label)
            })
            .collect();
        let expected = chunk.len();
        let report = sw.time(|| db.add_assets("bench", "p", chunk))?;
        if report.added.len() != expected {
            return Err(format!("added {} of {expected} assets", report.added.len()).into());
        }
    }
    sw.time(|| -> BoxResult<()> {
        db.flush()?;
        drop(db);
        Ok(())
    })?;
    Ok(sw)
}

/// With `fts`, the texts also go into an FTS5 index, as labeldb's go into its tantivy
/// text index (unicode61 with diacritics removed ~ lower-casing and ASCII folding;
/// FTS5 keeps positions by default, as labeldb's index does).
fn load_sqlite(dir: &Path, n: usize, fts: bool) -> BoxResult<Stopwatch> {
    let mut sw = Stopwatch::default();
    let now = now_ms();
    let conn = sw.time(|| -> BoxResult<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(dir.join("bench.sqlite"))?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("journal_mode is {mode}, not wal").into());
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE projects(id INTEGER PRIMARY KEY, name TEXT UNIQUE, schema TEXT, created INTEGER);
             CREATE TABLE assets(id INTEGER PRIMARY KEY, project INTEGER, external_id TEXT, text TEXT,
                 digest BLOB, status INTEGER, meta TEXT, created INTEGER, UNIQUE(project, external_id));
             CREATE TABLE labels(id INTEGER PRIMARY KEY, asset INTEGER, kind INTEGER, author TEXT,
                 answers TEXT, created INTEGER, seconds REAL);
             CREATE INDEX labels_by_asset ON labels(asset);",
        )?;
        if fts {
            conn.execute_batch(
                "CREATE VIRTUAL TABLE assets_fts USING fts5(text, content='assets', content_rowid='id',
                     tokenize='unicode61 remove_diacritics 2');",
            )?;
        }
        conn.execute(
            "INSERT INTO projects VALUES (1, 'p', ?1, ?2)",
            rusqlite::params![SCHEMA, now],
        )?;
        conn.execute_batch("BEGIN")?;
        Ok(conn)
    })?;
    {
        let (mut asset_stmt, mut label_stmt, mut fts_stmt) = sw.time(|| -> BoxResult<_> {
            Ok((
                conn.prepare("INSERT INTO assets VALUES (?1, 1, ?2, ?3, ?4, 1, '{}', ?5)")?,
                conn.prepare("INSERT INTO labels VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6)")?,
                if fts {
                    Some(conn.prepare("INSERT INTO assets_fts(rowid, text) VALUES (?1, ?2)")?)
                } else {
                    None
                },
            ))
        })?;
        for start in (0..n).step_by(CHUNK) {
            let chunk: Vec<(Row, String)> = rows(start, (start + CHUNK).min(n))
                .into_iter()
                .map(|r| {
                    let answers = r.answers_json();
                    (r, answers)
                })
                .collect();
            sw.time(|| -> BoxResult<()> {
                for (i, (r, answers)) in chunk.iter().enumerate() {
                    let id = (start + i + 1) as i64;
                    asset_stmt.execute(rusqlite::params![id, r.external_id, r.text, &r.digest[..], now])?;
                    label_stmt.execute(rusqlite::params![id, id, r.author, answers, now, r.seconds as f64])?;
                    if let Some(stmt) = fts_stmt.as_mut() {
                        stmt.execute(rusqlite::params![id, r.text])?;
                    }
                }
                Ok(())
            })?;
        }
    }
    sw.time(|| -> BoxResult<()> {
        conn.execute_batch("COMMIT")?;
        let _: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        conn.close().map_err(|(_, e)| e)?;
        Ok(())
    })?;
    Ok(sw)
}

fn load_sled(dir: &Path, n: usize) -> BoxResult<Stopwatch> {
    let mut sw = Stopwatch::default();
    let db = sw.time(|| {
        sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(SLED_CACHE_BYTES)
            .open()
    })?;
    for start in (0..n).step_by(CHUNK) {
        let chunk: Vec<(Row, String)> = rows(start, (start + CHUNK).min(n))
            .into_iter()
            .map(|r| {
                let payload = format!("{}\t{}", r.author, r.answers_json());
                (r, payload)
            })
            .collect();
        sw.time(|| -> BoxResult<()> {
            let mut batch = sled::Batch::default();
            for (r, payload) in &chunk {
                batch.insert(r.external_id.as_bytes(), r.text.as_bytes());
                let mut label_key = r.external_id.clone().into_bytes();
                label_key[0] = b'l';
                batch.insert(label_key, payload.as_bytes());
            }
            db.apply_batch(batch)?;
            Ok(())
        })?;
    }
    sw.time(|| -> BoxResult<()> {
        db.flush()?;
        drop(db);
        Ok(())
    })?;
    Ok(sw)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where the bytes are: each entry of the database directory with its size.
fn disk_breakdown(dir: &Path) -> BoxResult<String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    // Peers that make one directory (sled, labeldb) are described inside it.
    if let [only] = entries.as_slice() {
        if only.file_type()?.is_dir() {
            entries = std::fs::read_dir(only.path())?.collect::<Result<_, _>>()?;
        }
    }
    let mut parts = Vec::new();
    for e in entries {
        let meta = e.metadata()?;
        let bytes = if meta.is_dir() {
            dir_bytes(&e.path())?
        } else {
            meta.len()
        };
        parts.push((bytes, e.file_name().to_string_lossy().into_owned()));
    }
    parts.sort_by(|a, b| b.cmp(a));
    Ok(parts
        .iter()
        .map(|(b, name)| format!("{name} {:.1} MiB", mib(*b)))
        .collect::<Vec<_>>()
        .join(", "))
}

/// A `kB` field of /proc/self/status, in bytes.
fn proc_status_bytes(field: &str) -> BoxResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .ok_or_else(|| format!("no {field} in /proc/self/status"))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse()?;
    Ok(kb * 1024)
}

/// What one one-shot load measured.
struct Measured {
    peer: Peer,
    secs: f64,
    cpu_secs: f64,
    bytes: u64,
    peak_rss: u64,
    base_rss: u64,
}

impl Measured {
    fn per_sec(&self, n: usize) -> f64 {
        n as f64 / self.secs
    }
}

/// The child side: one load in a fresh process, one line of results on stdout.
fn oneshot(peer: Peer, n: usize) -> BoxResult<()> {
    let dir = tempfile::tempdir()?;
    let base_rss = proc_status_bytes("VmRSS")?;
    // Resets VmHWM to the current RSS; the process is fresh, so this only drops
    // start-up transients.
    std::fs::write("/proc/self/clear_refs", "5")?;
    let sw = peer.load(dir.path(), n)?;
    let peak_rss = proc_status_bytes("VmHWM")?;
    let bytes = dir_bytes(dir.path())?;
    eprintln!("{} on disk: {}", peer.name(), disk_breakdown(dir.path())?);
    println!(
        "oneshot {} {} {} {bytes} {peak_rss} {base_rss}",
        peer.name(),
        sw.wall.as_secs_f64(),
        sw.cpu.as_secs_f64()
    );
    Ok(())
}

/// The parent side: runs each peer's one-shot in a child process.
fn measure(peer: Peer, n: usize) -> BoxResult<Measured> {
    let out = Command::new(std::env::current_exe()?)
        .env(ONESHOT_ENV, peer.name())
        .env(ASSETS_ENV, n.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("oneshot "))
        .ok_or_else(|| format!("{} one-shot failed ({}): {stdout}", peer.name(), out.status))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 7 {
        return Err(format!("bad one-shot line {line:?}").into());
    }
    Ok(Measured {
        peer,
        secs: f[2].parse()?,
        cpu_secs: f[3].parse()?,
        bytes: f[4].parse()?,
        peak_rss: f[5].parse()?,
        base_rss: f[6].parse()?,
    })
}

fn summary(n: usize) -> BoxResult<()> {
    let load_before = load_average();
    let results = Peer::ALL
        .into_iter()
        .map(|p| measure(p, n))
        .collect::<BoxResult<Vec<_>>>()?;
    let sampled = n.clamp(1, 100_000);
    let mean_text = (0..sampled).map(|i| Row::new(i).text.len()).sum::<usize>() as f64 / sampled as f64;
    println!();
    println!("ingest one-shot: {n} assets (mean text {mean_text:.0} bytes), one human label each");
    println!("load average {load_before} before, {} after", load_average());
    println!(
        "{:<11} {:>9} {:>9} {:>10} {:>10} {:>13} {:>9}",
        "peer", "wall s", "CPU s", "assets/s", "disk MiB", "peak RSS MiB", "base MiB"
    );
    for m in &results {
        println!(
            "{:<11} {:>9.2} {:>9.2} {:>10.0} {:>10.1} {:>13.1} {:>9.1}",
            m.peer.name(),
            m.secs,
            m.cpu_secs,
            m.per_sec(n),
            mib(m.bytes),
            mib(m.peak_rss),
            mib(m.base_rss)
        );
    }
    let l = &results[0];
    for (peer, target) in results[1..].iter().zip([Some(1.0), Some(0.5), None]) {
        let r = l.per_sec(n) / peer.per_sec(n);
        let verdict = match target {
            Some(t) if r >= t => format!("target >= {t:.1}x: met"),
            Some(t) => format!("target >= {t:.1}x: MISSED"),
            None => "no target".to_string(),
        };
        println!(
            "labeldb / {:<11} throughput {r:.2}x ({verdict}), CPU-time throughput {:.2}x, disk {:.2}x, \
             peak RSS {:.2}x",
            peer.peer.name(),
            peer.cpu_secs / l.cpu_secs,
            l.bytes as f64 / peer.bytes as f64,
            l.peak_rss as f64 / peer.peak_rss as f64
        );
    }
    println!();
    Ok(())
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    let count = |var: &str| {
        std::env::var(var).ok().map(|v| {
            v.replace('_', "")
                .parse::<usize>()
                .expect("a row count must be a number")
        })
    };
    let n = count(ASSETS_ENV).unwrap_or(if test_mode { 1_000 } else { 1_000_000 });
    let criterion_n = count(CRITERION_ASSETS_ENV).unwrap_or(n.min(200_000));
    if let Ok(peer) = std::env::var(ONESHOT_ENV) {
        let peer = Peer::parse(&peer).expect("LABELDB_BENCH_ONESHOT names a peer");
        if let Err(e) = oneshot(peer, n) {
            eprintln!("error: {peer:?} one-shot: {e}");
            std::process::exit(2);
        }
        return;
    }
    if !test_mode {
        if let Err(e) = summary(n) {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("ingest");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(criterion_n as u64));
    for peer in Peer::ALL {
        group.bench_function(BenchmarkId::new(peer.name(), criterion_n), |b| {
            // Each load runs in a fresh child process, as the one-shots do: sled 0.34 does
            // not give back all of a dropped database's memory, and ten in-process loads
            // of the raw sled peer grew past this machine's 23 GiB and were OOM-killed.
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += Duration::from_secs_f64(measure(peer, criterion_n).expect("load").secs);
                }
                total
            })
        });
    }
    group.finish();
    c.final_summary();
}
