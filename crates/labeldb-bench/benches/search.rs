//! Full-text search: N generated ~200-byte texts (default 1,000,000) over a Zipf-distributed
//! vocabulary, each with a workflow status (40% `todo`), loaded into
//!
//! - labeldb (`Db::add_assets` in chunks of 10,000, then `Db::flush`, which commits the
//!   tantivy text index);
//! - raw tantivy with the same schema (`asset` u64 INDEXED|FAST, `content` text with
//!   positions, not stored) plus a `status` u64 INDEXED|FAST field, the same analyzer
//!   chain (SimpleTokenizer, LowerCaser, AsciiFoldingFilter: labeldb's Greek final-sigma
//!   filter is private and changes nothing on this ASCII data), the same 64 MiB writer
//!   heap and one commit;
//! - SQLite (rusqlite, bundled, WAL, one transaction): a table `assets(id, status, text)`
//!   bulk-loaded, then an external-content FTS5 index (`unicode61 remove_diacritics 2`,
//!   positions kept as tantivy's are) built with `'rebuild'`.
//!
//! In one run it measures the import of each, then a 2-term AND query `w1 AND w2`
//! (two words with a document frequency of ~3% and ~2%), alone and with `status:todo`,
//! in three forms: the count, all ids and the 10 best by BM25. labeldb answers with
//! `Db::query` (count and ids) and `Db::search` (top 10, with snippets); raw tantivy with
//! a BooleanQuery of TermQuerys (Must; the status clause scores 0) and the Count,
//! DocSetCollector and TopDocs collectors; SQLite with `MATCH 'w1 w2'`, joined to `assets`
//! for the status, `ORDER BY rank` for the top 10.
//!
//! The three engines' counts and id sets are checked equal (and labeldb's top-10 BM25
//! scores against raw tantivy's) before anything is timed. The import is timed once per
//! engine (wall and process CPU time; generating the rows is not timed); the queries are
//! sampled by criterion and the summary prints the medians and the ratios against the
//! targets. `LABELDB_BENCH_ASSETS` sets N. BENCHMARKS.md records the figures.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use labeldb::{Db, NewAsset, Schema, Status};
use rusqlite::Connection;
use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, TextFieldIndexing, TextOptions, FAST, INDEXED};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{doc, DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

mod common;
use common::{asset_count, fmt_duration, fmt_ratio, load_average, verdict, BoxResult, Samples, SplitMix64, Stopwatch};

const CHUNK: usize = 10_000;
const PROJECT: &str = "p";
const SCHEMA: &str = r#"{"jobs": [{"name": "category", "kind": "classification",
    "classes": ["order", "complaint", "question", "feedback", "spam"]}]}"#;
/// labeldb's text-index writer heap; raw tantivy gets the same.
const WRITER_HEAP: usize = 64 << 20;
/// labeldb's default page cache; SQLite gets the same.
const CACHE_BYTES: u64 = 256 << 20;
/// Distinct words; word ranks are drawn with Zipf weights 1/(rank+1).
const VOCABULARY: usize = 20_000;
/// The document frequencies the two query words are chosen closest to.
const DF_W1: f64 = 0.03;
const DF_W2: f64 = 0.02;
const TOP: usize = 10;

/// Targets from the issue.
const TARGET_VS_TANTIVY: f64 = 1.5;
const TARGET_VS_FTS5: f64 = 5.0;
const TARGET_IMPORT: f64 = 1.0;

/// The word of a rank: the base-80 digits of `rank + 80` as consonant-vowel syllables.
/// Distinct ranks give distinct words of two or more syllables; none is a query keyword
/// of labeldb or FTS5 (`and`, `or`, `not`, `near` do not have that shape).
fn word(rank: usize) -> String {
    const CONSONANTS: &[u8; 16] = b"bdfghklmnprstvwz";
    const VOWELS: &[u8; 5] = b"aeiou";
    let mut digits = Vec::new();
    let mut n = rank + 80;
    while n > 0 {
        digits.push(n % 80);
        n /= 80;
    }
    let mut w = String::with_capacity(2 * digits.len());
    for d in digits.iter().rev() {
        w.push(CONSONANTS[d / 5] as char);
        w.push(VOWELS[d % 5] as char);
    }
    w
}

/// One generated asset.
struct Row {
    text: String,
    status: Status,
}

/// Draws the generated data; row `i` depends only on `i`.
struct Generator {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Generator {
    fn new() -> Generator {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..VOCABULARY)
            .map(|k| {
                acc += 1.0 / (k + 1) as f64;
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Generator {
            words: (0..VOCABULARY).map(word).collect(),
            cdf,
        }
    }

    /// Sentences of 6 to 14 words, the first capitalised, until 190 to 210 bytes.
    fn row(&self, i: usize) -> Row {
        let mut rng = SplitMix64(0x5ea4_c4ed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let status = match rng.below(100) {
            0..=39 => Status::Todo,
            40..=44 => Status::Ongoing,
            45..=74 => Status::Labeled,
            75..=89 => Status::ToReview,
            _ => Status::Reviewed,
        };
        let target = 190 + rng.below(21);
        let mut text = String::with_capacity(target + 32);
        let mut words_left = 0;
        while text.len() < target {
            let w = &self.words[self.cdf.partition_point(|&c| c <= rng.unit()).min(VOCABULARY - 1)];
            if words_left == 0 {
                if !text.is_empty() {
                    text.pop();
                    text.push_str(". ");
                }
                words_left = 6 + rng.below(9);
                text.push(w.as_bytes()[0].to_ascii_uppercase() as char);
                text.push_str(&w[1..]);
            } else {
                text.push_str(w);
            }
            text.push(' ');
            words_left -= 1;
        }
        text.pop();
        text.push('.');
        Row { text, status }
    }

    fn rows(&self, start: usize, end: usize) -> Vec<Row> {
        (start..end).map(|i| self.row(i)).collect()
    }

    /// The two query words: those whose document frequency over the first rows is
    /// closest to [`DF_W1`] and [`DF_W2`], with those frequencies.
    fn query_words(&self, n: usize) -> ((String, f64), (String, f64)) {
        let sample = n.clamp(1, 20_000);
        let mut df: HashMap<String, u32> = HashMap::new();
        let mut seen = Vec::new();
        for i in 0..sample {
            seen.clear();
            for w in self
                .row(i)
                .text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                let w = w.to_lowercase();
                if !seen.contains(&w) {
                    seen.push(w);
                }
            }
            for w in seen.drain(..) {
                *df.entry(w).or_default() += 1;
            }
        }
        let freq = |w: &String| f64::from(df.get(w).copied().unwrap_or(0)) / sample as f64;
        let closest = |target: f64, not: Option<&String>| {
            self.words
                .iter()
                .filter(|w| Some(*w) != not)
                .min_by(|a, b| (freq(a) - target).abs().total_cmp(&(freq(b) - target).abs()))
                .cloned()
                .unwrap_or_default()
        };
        let w1 = closest(DF_W1, None);
        let w2 = closest(DF_W2, Some(&w1));
        let (f1, f2) = (freq(&w1), freq(&w2));
        ((w1, f1), (w2, f2))
    }
}

fn status_code(s: Status) -> u64 {
    Status::ALL.iter().position(|x| *x == s).unwrap_or(usize::MAX) as u64
}

/// Imports into labeldb; returns the open database, the time, and the first asset id
/// (ids are consecutive in row order).
fn import_labeldb(dir: &Path, gen: &Generator, n: usize) -> BoxResult<(Db, Stopwatch, u32)> {
    let mut sw = Stopwatch::default();
    let schema = Schema::from_json(SCHEMA)?;
    let db = sw.time(|| -> BoxResult<Db> {
        let db = Db::open(dir.join("db"))?;
        db.create_project("bench", PROJECT, schema)?;
        Ok(db)
    })?;
    let mut base = None;
    for start in (0..n).step_by(CHUNK) {
        let chunk: Vec<NewAsset> = gen
            .rows(start, (start + CHUNK).min(n))
            .into_iter()
            .enumerate()
            .map(|(k, r)| {
                let mut a = NewAsset::text(format!("t{}", start + k), r.text);
                a.status = Some(r.status);
                a
            })
            .collect();
        let expected = chunk.len();
        let report = sw.time(|| db.add_assets("bench", PROJECT, chunk))?;
        let first = *base.get_or_insert(report.added.first().map_or(0, |a| a.0));
        let consecutive = report
            .added
            .iter()
            .enumerate()
            .all(|(k, a)| a.0 as usize == first as usize + start + k);
        if report.added.len() != expected || !consecutive {
            return Err(format!(
                "added {} of {expected} assets, or not with consecutive ids",
                report.added.len()
            )
            .into());
        }
    }
    sw.time(|| db.flush())?;
    Ok((db, sw, base.unwrap_or(0)))
}

/// Raw tantivy: labeldb's text schema plus a status field.
struct Tantivy {
    reader: IndexReader,
    status: Field,
    content: Field,
    /// Kept open, as labeldb keeps its writer, so that its merges are not cut short.
    _writer: IndexWriter,
}

impl Tantivy {
    fn term_query(&self, word: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(self.content, word),
            IndexRecordOption::WithFreqs,
        ))
    }

    /// `w1 AND w2`, and with `status:todo` a third Must clause that scores 0, so that
    /// the scores are those of the text alone, as labeldb's are.
    fn query(&self, w1: &str, w2: &str, todo: bool) -> BooleanQuery {
        let mut clauses = vec![(Occur::Must, self.term_query(w1)), (Occur::Must, self.term_query(w2))];
        if todo {
            let status = TermQuery::new(
                Term::from_field_u64(self.status, status_code(Status::Todo)),
                IndexRecordOption::Basic,
            );
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(Box::new(status), 0.0))));
        }
        BooleanQuery::new(clauses)
    }

    /// The asset id of a document.
    fn asset_of(&self, searcher: &Searcher, addr: DocAddress) -> tantivy::Result<u64> {
        let column = searcher.segment_reader(addr.segment_ord).fast_fields().u64("asset")?;
        Ok(column.first(addr.doc_id).unwrap_or(u64::MAX))
    }

    /// The 10 best by BM25: scores and asset ids.
    fn top(&self, q: &BooleanQuery) -> tantivy::Result<Vec<(f32, u64)>> {
        let searcher = self.reader.searcher();
        let top = searcher.search(q, &TopDocs::with_limit(TOP))?;
        top.into_iter()
            .map(|(score, addr)| Ok((score, self.asset_of(&searcher, addr)?)))
            .collect()
    }
}

fn import_tantivy(dir: &Path, gen: &Generator, n: usize, base: u32) -> BoxResult<(Tantivy, Stopwatch)> {
    let mut sw = Stopwatch::default();
    let path = dir.join("tantivy");
    std::fs::create_dir_all(&path)?;
    let (index, mut writer, asset, status, content) = sw.time(|| -> BoxResult<_> {
        let mut b = tantivy::schema::Schema::builder();
        let asset = b.add_u64_field("asset", INDEXED | FAST);
        let status = b.add_u64_field("status", INDEXED | FAST);
        let indexing = TextFieldIndexing::default()
            .set_tokenizer("peer")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions);
        let content = b.add_text_field("content", TextOptions::default().set_indexing_options(indexing));
        let index = Index::create_in_dir(&path, b.build())?;
        index.tokenizers().register(
            "peer",
            TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(LowerCaser)
                .filter(AsciiFoldingFilter)
                .build(),
        );
        let writer: IndexWriter = index.writer(WRITER_HEAP)?;
        Ok((index, writer, asset, status, content))
    })?;
    for start in (0..n).step_by(CHUNK) {
        let rows = gen.rows(start, (start + CHUNK).min(n));
        sw.time(|| -> BoxResult<()> {
            for (k, r) in rows.iter().enumerate() {
                writer.add_document(doc!(
                    asset => u64::from(base) + (start + k) as u64,
                    status => status_code(r.status),
                    content => r.text.as_str(),
                ))?;
            }
            Ok(())
        })?;
    }
    sw.time(|| writer.commit())?;
    let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
    Ok((
        Tantivy {
            reader,
            status,
            content,
            _writer: writer,
        },
        sw,
    ))
}

fn import_sqlite(dir: &Path, gen: &Generator, n: usize, base: u32) -> BoxResult<(Connection, Stopwatch)> {
    let mut sw = Stopwatch::default();
    let conn = sw.time(|| -> BoxResult<Connection> {
        let conn = Connection::open(dir.join("bench.sqlite"))?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("journal_mode is {mode}, not wal").into());
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -((CACHE_BYTES / 1024) as i64))?;
        conn.execute_batch(
            "CREATE TABLE assets(id INTEGER PRIMARY KEY, status INTEGER NOT NULL, text TEXT NOT NULL);
             CREATE VIRTUAL TABLE fts USING fts5(text, content='assets', content_rowid='id',
                 tokenize='unicode61 remove_diacritics 2');
             BEGIN;",
        )?;
        Ok(conn)
    })?;
    {
        let mut stmt = sw.time(|| conn.prepare("INSERT INTO assets VALUES (?1, ?2, ?3)"))?;
        for start in (0..n).step_by(CHUNK) {
            let rows = gen.rows(start, (start + CHUNK).min(n));
            sw.time(|| -> BoxResult<()> {
                for (k, r) in rows.iter().enumerate() {
                    let id = i64::from(base) + (start + k) as i64;
                    stmt.execute(rusqlite::params![id, status_code(r.status) as i64, r.text])?;
                }
                Ok(())
            })?;
        }
    }
    sw.time(|| -> BoxResult<()> {
        conn.execute_batch("INSERT INTO fts(fts) VALUES('rebuild'); COMMIT;")?;
        let _: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(())
    })?;
    Ok((conn, sw))
}

const FTS_COUNT: &str = "SELECT count(*) FROM fts WHERE fts MATCH ?1";
const FTS_IDS: &str = "SELECT rowid FROM fts WHERE fts MATCH ?1";
const FTS_TOP: &str = "SELECT rowid FROM fts WHERE fts MATCH ?1 ORDER BY rank LIMIT 10";
const FTS_COUNT_TODO: &str =
    "SELECT count(*) FROM fts JOIN assets a ON a.id = fts.rowid WHERE fts MATCH ?1 AND a.status = ?2";
const FTS_IDS_TODO: &str =
    "SELECT fts.rowid FROM fts JOIN assets a ON a.id = fts.rowid WHERE fts MATCH ?1 AND a.status = ?2";
const FTS_TOP_TODO: &str = "SELECT fts.rowid FROM fts JOIN assets a ON a.id = fts.rowid
     WHERE fts MATCH ?1 AND a.status = ?2 ORDER BY fts.rank LIMIT 10";

/// Runs an FTS5 statement with the MATCH expression (and the status code when the
/// statement has a second parameter); returns the first column of every row.
fn fts(conn: &Connection, sql: &str, expr: &str) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    stmt.raw_bind_parameter(1, expr)?;
    if stmt.parameter_count() >= 2 {
        stmt.raw_bind_parameter(2, status_code(Status::Todo) as i64)?;
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(row.get::<_, i64>(0)?);
    }
    Ok(out)
}

/// What a query returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Count,
    Ids,
    Top,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::Count => "count",
            Form::Ids => "ids",
            Form::Top => "top10",
        }
    }
}

/// Searchable segments in the last commit of the tantivy index in `dir`.
fn segments(dir: &Path) -> BoxResult<usize> {
    Ok(Index::open_in_dir(dir)?.searchable_segment_metas()?.len())
}

fn run(n: usize) -> BoxResult<()> {
    let temp = tempfile::tempdir()?;
    let dir = temp.path();
    let gen = Generator::new();
    let ((w1, f1), (w2, f2)) = gen.query_words(n);
    let load_before = load_average();

    let (db, sw_labeldb, base) = import_labeldb(dir, &gen, n)?;
    let labeldb_segments = segments(&db.path().join("text"))?;
    let (tv, sw_tantivy) = import_tantivy(dir, &gen, n, base)?;
    let tantivy_segments = tv.reader.searcher().segment_readers().len();
    let (conn, sw_sqlite) = import_sqlite(dir, &gen, n, base)?;
    let load_after = load_average();

    // Correctness outside timing: the three engines agree.
    let text_query = format!("text:{w1} AND text:{w2}");
    let todo_query = format!("{text_query} AND status:todo");
    let search_text = format!("{w1} {w2}");
    let todo_filter = labeldb::query::parse("status:todo")?;
    let fts_expr = format!("{w1} {w2}");
    let mut matches = [0u64; 2];
    for (k, todo) in [false, true].into_iter().enumerate() {
        let q = if todo { &todo_query } else { &text_query };
        let ids: Vec<u64> = db.query(PROJECT, q)?.iter().map(|a| u64::from(a.0)).collect();
        let tq = tv.query(&w1, &w2, todo);
        let searcher = tv.reader.searcher();
        let t_count = searcher.search(&tq, &Count)? as u64;
        let mut t_ids = searcher
            .search(&tq, &DocSetCollector)?
            .into_iter()
            .map(|addr| tv.asset_of(&searcher, addr))
            .collect::<tantivy::Result<Vec<u64>>>()?;
        t_ids.sort_unstable();
        let (count_sql, ids_sql, top_sql) = if todo {
            (FTS_COUNT_TODO, FTS_IDS_TODO, FTS_TOP_TODO)
        } else {
            (FTS_COUNT, FTS_IDS, FTS_TOP)
        };
        let f_count = fts(&conn, count_sql, &fts_expr)?.first().copied().unwrap_or(-1);
        let mut f_ids: Vec<u64> = fts(&conn, ids_sql, &fts_expr)?.into_iter().map(|i| i as u64).collect();
        f_ids.sort_unstable();
        let what = if todo { "with status:todo" } else { "alone" };
        if t_count != ids.len() as u64 || f_count != ids.len() as i64 || t_ids != ids || f_ids != ids {
            return Err(format!(
                "{w1} AND {w2} {what}: labeldb {} ids, tantivy count {t_count} ({} ids), FTS5 count {f_count} \
                 ({} ids), or the id sets differ",
                ids.len(),
                t_ids.len(),
                f_ids.len()
            )
            .into());
        }
        // Top 10: labeldb ranks by tantivy's BM25 over the same documents, so the scores
        // must be raw tantivy's (ties may order differently); FTS5's BM25 differs, so
        // only its membership is checked.
        let (total, hits) = db.search(PROJECT, &search_text, todo.then_some(&todo_filter), TOP)?;
        let top = db.top(PROJECT, &labeldb::query::parse(q)?, TOP)?;
        let t_top = tv.top(&tq)?;
        let l_scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
        if top.iter().map(|t| t.1).collect::<Vec<_>>() != l_scores {
            return Err(format!("top 10 {what}: Db::top {top:?} differs from Db::search {l_scores:?}").into());
        }
        let t_scores: Vec<f32> = t_top.iter().map(|(s, _)| *s).collect();
        let same = l_scores.len() == t_scores.len()
            && l_scores
                .iter()
                .zip(&t_scores)
                .all(|(a, b)| (a - b).abs() <= 1e-4 * a.abs().max(1.0));
        if total != ids.len() as u64 || !same {
            return Err(
                format!("top 10 {what}: labeldb {total} matches, scores {l_scores:?}; tantivy {t_scores:?}").into(),
            );
        }
        let f_top = fts(&conn, top_sql, &fts_expr)?;
        if f_top.len() != ids.len().min(TOP) || f_top.iter().any(|i| ids.binary_search(&(*i as u64)).is_err()) {
            return Err(format!("FTS5 top 10 {what}: {f_top:?} are not 10 of the matches").into());
        }
        matches[k] = ids.len() as u64;
    }
    println!(
        "{n} texts; w1 {w1:?} (df {:.2}%), w2 {w2:?} (df {:.2}%): {} match both, {} also status:todo; \
         the engines agree",
        f1 * 100.0,
        f2 * 100.0,
        matches[0],
        matches[1]
    );
    if matches[1] == 0 {
        println!("warning: no match with status:todo at this N; the query figures mean little");
    }

    let samples = Samples::default();
    let query_samples = 30;
    let mut c = Criterion::default()
        .sample_size(query_samples)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = c.benchmark_group("search");
    group.sampling_mode(SamplingMode::Flat);
    let mut cases = Vec::new();
    let parsed = [labeldb::query::parse(&text_query)?, labeldb::query::parse(&todo_query)?];
    for todo in [false, true] {
        for form in [Form::Count, Form::Ids, Form::Top] {
            let case = format!("{}{}", form.name(), if todo { "+todo" } else { "" });
            let q = if todo { todo_query.as_str() } else { text_query.as_str() };
            let filter = todo.then_some(&todo_filter);
            let key = format!("labeldb/{case}");
            group.bench_function(&key, |b| {
                b.iter_custom(|iters| {
                    samples.run(&key, iters, || match form {
                        Form::Count => db.query(PROJECT, q).expect("query").len() as usize,
                        Form::Ids => db
                            .query(PROJECT, q)
                            .expect("query")
                            .iter()
                            .map(|a| a.0)
                            .collect::<Vec<_>>()
                            .len(),
                        Form::Top => db.top(PROJECT, &parsed[usize::from(todo)], TOP).expect("top").len(),
                    })
                })
            });
            if form == Form::Top {
                // Informational: the same top 10 with a count of all matches and snippets.
                let key = format!("labeldb/search10{}", if todo { "+todo" } else { "" });
                group.bench_function(&key, |b| {
                    b.iter_custom(|iters| {
                        samples.run(&key, iters, || {
                            db.search(PROJECT, &search_text, filter, TOP).expect("search").1.len()
                        })
                    })
                });
            }
            let key = format!("tantivy/{case}");
            group.bench_function(&key, |b| {
                b.iter_custom(|iters| {
                    samples.run(&key, iters, || {
                        let tq = tv.query(&w1, &w2, todo);
                        match form {
                            Form::Count => tv.reader.searcher().search(&tq, &Count).expect("count"),
                            Form::Ids => tv.reader.searcher().search(&tq, &DocSetCollector).expect("ids").len(),
                            Form::Top => tv.top(&tq).expect("top").len(),
                        }
                    })
                })
            });
            let key = format!("fts5/{case}");
            let sql = match (form, todo) {
                (Form::Count, false) => FTS_COUNT,
                (Form::Ids, false) => FTS_IDS,
                (Form::Top, false) => FTS_TOP,
                (Form::Count, true) => FTS_COUNT_TODO,
                (Form::Ids, true) => FTS_IDS_TODO,
                (Form::Top, true) => FTS_TOP_TODO,
            };
            group.bench_function(&key, |b| {
                b.iter_custom(|iters| samples.run(&key, iters, || fts(&conn, sql, &fts_expr).expect("fts5").len()))
            });
            cases.push((case, todo));
        }
    }
    group.finish();
    c.final_summary();

    // Summary: import, then the medians of the query samples with their ratios.
    println!();
    println!("search bench: {n} texts, load average {load_before} before the imports, {load_after} after");
    println!("import (one run each; wall and process CPU time)");
    println!("{:<22} {:>9} {:>9} {:>11}", "engine", "wall s", "CPU s", "texts/s");
    let imports = [
        ("labeldb", &sw_labeldb),
        ("raw tantivy", &sw_tantivy),
        ("SQLite load + FTS5", &sw_sqlite),
    ];
    for (name, sw) in imports {
        println!(
            "{name:<22} {:>9.2} {:>9.2} {:>11.0}",
            sw.wall.as_secs_f64(),
            sw.cpu.as_secs_f64(),
            n as f64 / sw.wall.as_secs_f64()
        );
    }
    let import_ratio = sw_sqlite.wall.as_secs_f64() / sw_labeldb.wall.as_secs_f64();
    println!(
        "labeldb / SQLite+FTS5 throughput {import_ratio:.2}x (target >= {TARGET_IMPORT:.1}x: {}), CPU-time {:.2}x; \
         labeldb / raw tantivy {:.2}x",
        verdict(import_ratio >= TARGET_IMPORT),
        sw_sqlite.cpu.as_secs_f64() / sw_labeldb.cpu.as_secs_f64(),
        sw_tantivy.wall.as_secs_f64() / sw_labeldb.wall.as_secs_f64()
    );
    println!("segments searched: labeldb {labeldb_segments}, raw tantivy {tantivy_segments}");
    println!();
    println!("queries: {w1} AND {w2} (medians of {query_samples} samples)");
    println!(
        "{:<12} {:>11} {:>11} {:>11} {:>16} {:>13}",
        "case", "labeldb", "tantivy", "FTS5", "labeldb/tantivy", "FTS5/labeldb"
    );
    let mut verdicts = Vec::new();
    for (case, todo) in &cases {
        let get = |engine: &str| samples.median(&format!("{engine}/{case}"), query_samples);
        let (Some(l), Some(t), Some(f)) = (get("labeldb"), get("tantivy"), get("fts5")) else {
            continue;
        };
        let (vs_t, vs_f) = (l.as_secs_f64() / t.as_secs_f64(), f.as_secs_f64() / l.as_secs_f64());
        println!(
            "{case:<12} {:>11} {:>11} {:>11} {:>16} {:>13}",
            fmt_duration(l),
            fmt_duration(t),
            fmt_duration(f),
            fmt_ratio(vs_t),
            fmt_ratio(vs_f)
        );
        if *todo {
            verdicts.push(format!(
                "{case}: {vs_t:.2}x tantivy's time (target <= {TARGET_VS_TANTIVY}x: {}), {vs_f:.1}x faster than FTS5 \
                 (target >= {TARGET_VS_FTS5}x: {})",
                verdict(vs_t <= TARGET_VS_TANTIVY),
                verdict(vs_f >= TARGET_VS_FTS5)
            ));
        }
    }
    for v in verdicts {
        println!("{v}");
    }
    for case in ["search10", "search10+todo"] {
        if let Some(l) = samples.median(&format!("labeldb/{case}"), query_samples) {
            println!(
                "{case}: Db::search (top 10 with the count of all matches and snippets) {}",
                fmt_duration(l)
            );
        }
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
