//! The `labeldb` command-line tool: a thin layer over the library.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use labeldb::json::{asset_json, event_json, label_json, snapshot_json};
use labeldb::{Db, Format, ImportOptions, Schema, Selection, Sort, Source, Status};

/// The import's allocations are many and small, and cross threads (parsing, writing,
/// tantivy's indexing): a 200,000-line JSONL import took 5.5 user CPU-s with glibc's
/// allocator and 3.7 with mimalloc, and ~25% less time (BENCHMARKS.md, "Import through
/// the CLI"). The library leaves the choice of allocator to its application.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "labeldb", version, about = "An embedded data-labelling database")]
struct Cli {
    /// The database directory.
    #[arg(long, global = true, default_value = "./labeldb.db")]
    db: PathBuf,
    /// sled's page cache in MiB. A large import's memory grows to about twice this
    /// (1M assets: ~1 GB at 256, ~0.5 GB at 32, in the same time).
    #[arg(long, global = true, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    cache_mib: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty database.
    Init,
    /// Manage projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Import assets and labels from a JSONL or CoNLL file.
    Import {
        /// The project.
        project: String,
        /// The file.
        file: PathBuf,
        /// The format (default: from the file extension, .jsonl → jsonl, else conll).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// CoNLL: the spans job the tags answer.
        #[arg(long)]
        job: Option<String>,
        /// CoNLL: the author of the imported annotations.
        #[arg(long, default_value = "gold")]
        author: String,
        /// Skip and count bad records instead of stopping at the first.
        #[arg(long)]
        skip_invalid: bool,
        /// Who is importing (recorded in the event log).
        #[arg(long, default_value = "import")]
        actor: String,
    },
    /// Counts by status, label kind, source and class.
    Stats {
        /// The project.
        project: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One asset: content, state, label history and lineage.
    Show {
        /// The project.
        project: String,
        /// The asset's external id.
        external_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The event log of a project.
    Audit {
        /// The project.
        project: String,
        /// Only events by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only events after this seq.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
    /// Check every record and invariant; exit 0 only when all hold (1 when not).
    Verify {
        /// Rebuild the derived indexes from primary data first.
        #[arg(long)]
        repair: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Full-text search over text assets, best matches first (BM25), with snippets.
    Search {
        /// The project.
        project: String,
        /// Words, "phrases", prefix*, in the query language.
        text: String,
        /// Also require this filter (query language).
        #[arg(long)]
        filter: Option<String>,
        /// How many results.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Query a project's assets with the query language (docs/query.md).
    Query {
        /// The project.
        project: String,
        /// The query, e.g. 'status:labeled AND label.category:order AND NOT author:bob'.
        query: String,
        /// Print only the number of matching assets.
        #[arg(long)]
        count: bool,
        /// Assets per page.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Continue after this cursor (printed with the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Order of the results (default: relevance for text queries, else id).
        #[arg(long, value_enum)]
        sort: Option<SortArg>,
        /// Also count the results by status, class and author.
        #[arg(long)]
        facets: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Snapshot dataset versions: create, list, show, diff, tag, delete, verify, export.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Register model versions with the snapshot they were trained on.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Run the whole labelling loop on generated customer-order emails.
    Demo {
        /// Where to put the demo database (default: a new directory under the temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How many emails.
        #[arg(long, default_value_t = 10_000)]
        assets: usize,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project from a schema file.
    Create {
        /// Its name.
        name: String,
        /// The schema file: {"jobs": [{"name", "kind", "classes"}]}.
        #[arg(long)]
        schema: PathBuf,
        /// Who creates it.
        #[arg(long, default_value = "admin")]
        actor: String,
    },
    /// List projects.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Freeze the assets matching a filter with the labels a selection policy chooses.
    Create {
        /// The project.
        project: String,
        /// The snapshot's name.
        name: String,
        /// Which assets (query language; default all live assets).
        #[arg(long, default_value = "*")]
        filter: String,
        /// latest-reviewed, majority, latest-human or model:NAME@VERSION.
        #[arg(long = "select", default_value = "latest-human")]
        selection: String,
        /// Who creates it.
        #[arg(long, default_value = "admin")]
        actor: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a project's snapshots.
    List {
        /// The project.
        project: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Describe a snapshot (by name or tag).
    Show {
        /// The project.
        project: String,
        /// Name or tag.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Assets added, removed and relabelled from snapshot A to snapshot B.
    Diff {
        /// The project.
        project: String,
        /// The first snapshot.
        a: String,
        /// The second snapshot.
        b: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Point a tag at a snapshot (moving it if it exists).
    Tag {
        /// The project.
        project: String,
        /// The tag.
        tag: String,
        /// The snapshot.
        name: String,
        /// Who moves it.
        #[arg(long, default_value = "admin")]
        actor: String,
    },
    /// Delete a snapshot and its tags.
    Delete {
        /// The project.
        project: String,
        /// The snapshot.
        name: String,
        /// Who deletes it.
        #[arg(long, default_value = "admin")]
        actor: String,
    },
    /// Recompute a snapshot's digest from the data and compare; exit 1 on a difference.
    Verify {
        /// The project.
        project: String,
        /// Name or tag.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a snapshot (or a shard or split of it) as native JSONL.
    Export {
        /// The project.
        project: String,
        /// Name or tag.
        name: String,
        /// The output file.
        #[arg(long)]
        out: PathBuf,
        /// Only shard RANK/WORLD, e.g. 0/4.
        #[arg(long)]
        shard: Option<String>,
        /// Only this split (by a stable hash of the external id).
        #[arg(long)]
        split: Option<String>,
        /// The split ratios.
        #[arg(long, default_value = "train=0.8,val=0.1,test=0.1")]
        ratios: String,
        /// Shuffle with this seed first.
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Register NAME@VERSION as trained on a snapshot.
    Register {
        /// The project.
        project: String,
        /// NAME@VERSION.
        model: String,
        /// The snapshot (name or tag) it was trained on.
        #[arg(long)]
        trained_on: String,
        /// Who registers it.
        #[arg(long, default_value = "admin")]
        actor: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SortArg {
    Id,
    Priority,
    Score,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Jsonl,
    Conll,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Opens an existing database (only `init` and `demo` create one) with a page cache of
/// `cache_mib` MiB.
fn open(path: &Path, cache_mib: u64) -> Result<Db> {
    if !path.exists() {
        bail!(
            "no database at {} (run `labeldb init` first, or pass --db)",
            path.display()
        );
    }
    let db = Db::builder().cache_bytes(cache_mib << 20).open(path)?;
    // An upgrade or derived data rebuilt on open is no error, but worth knowing of.
    let info = db.index_info();
    if let Some(from) = info.upgraded_from {
        eprintln!(
            "note: upgraded the database from format {from} to {}",
            labeldb::FORMAT_VERSION
        );
    }
    for (what, why) in [
        ("the label/state indexes were", &info.rebuilt),
        ("the text index was", &info.text_rebuilt),
    ] {
        if let Some(why) = why {
            eprintln!("note: {what} rebuilt from primary data on open: {why}");
        }
    }
    Ok(db)
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

macro_rules! say {
    ($out:expr, $($arg:tt)*) => { writeln!($out, $($arg)*)? };
}

fn run(cli: Cli) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    match cli.command {
        Command::Init => {
            if cli.db.exists() {
                bail!("{} already exists", cli.db.display());
            }
            let db = Db::builder().cache_bytes(cli.cache_mib << 20).open(&cli.db)?;
            db.flush()?;
            say!(
                out,
                "initialized {} (format {})",
                cli.db.display(),
                labeldb::FORMAT_VERSION
            );
        }
        Command::Project {
            command: ProjectCommand::Create { name, schema, actor },
        } => {
            let db = open(&cli.db, cli.cache_mib)?;
            let text = std::fs::read_to_string(&schema).with_context(|| format!("reading {}", schema.display()))?;
            let schema = Schema::from_json(&text).with_context(|| format!("in {}", schema.display()))?;
            let id = db.create_project(&actor, &name, schema)?;
            db.flush()?;
            say!(out, "created project {name:?} ({id})");
        }
        Command::Project {
            command: ProjectCommand::List { json },
        } => {
            let db = open(&cli.db, cli.cache_mib)?;
            let projects = db.projects();
            if json {
                drop(out);
                let list: Vec<_> = projects
                    .iter()
                    .map(|p| json!({"name": p.name, "id": p.id.0, "schema": p.schema.to_json()}))
                    .collect();
                print_json(&json!(list))?;
            } else {
                for p in projects {
                    let jobs: Vec<String> = p
                        .schema
                        .jobs
                        .iter()
                        .map(|j| format!("{} ({}, {} classes)", j.name, j.kind.as_str(), j.classes.len()))
                        .collect();
                    say!(out, "{:<24} {}", p.name, jobs.join(", "));
                }
            }
        }
        Command::Import {
            project,
            file,
            format,
            job,
            author,
            skip_invalid,
            actor,
        } => {
            let db = open(&cli.db, cli.cache_mib)?;
            let format = match format {
                Some(FormatArg::Jsonl) => Format::Jsonl,
                Some(FormatArg::Conll) => Format::Conll,
                None => Format::from_path(&file),
            };
            let options = ImportOptions {
                job,
                author,
                skip_invalid,
                ..ImportOptions::new(format)
            };
            let total = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let bar = if io::stderr().is_terminal() {
                ProgressBar::new(total)
            } else {
                ProgressBar::hidden()
            };
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let started = std::time::Instant::now();
            let result = db.import_file(&actor, &project, &file, &options, |r| {
                bar.set_position(r.bytes);
                bar.set_message(format!("{} imported, {} duplicates", r.imported, r.duplicates));
            });
            bar.finish_and_clear();
            let report = result?;
            db.flush()?;
            let secs = started.elapsed().as_secs_f64();
            say!(
                out,
                "imported {} assets with {} labels from {} records ({} duplicates skipped, {} invalid skipped) in {:.2}s ({:.0} assets/s)",
                report.imported,
                report.labels,
                report.records,
                report.duplicates,
                report.invalid,
                secs,
                report.imported as f64 / secs.max(1e-9)
            );
            for s in &report.invalid_samples {
                say!(out, "  skipped line {s}");
            }
        }
        Command::Stats { project, json } => {
            let db = open(&cli.db, cli.cache_mib)?;
            let s = db.stats(&project)?;
            if json {
                drop(out);
                print_json(&json!({
                    "project": project,
                    "assets": s.assets,
                    "deleted": s.deleted,
                    "labels": s.labels,
                    "by_status": s.by_status.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                    "by_kind": s.by_kind.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                    "by_source": s.by_source,
                    "classes": s.classes,
                    "human_seconds": s.human_seconds,
                }))?;
            } else {
                print_stats(&mut out, &project, &s)?;
            }
        }
        Command::Show {
            project,
            external_id,
            json,
        } => {
            let db = open(&cli.db, cli.cache_mib)?;
            let asset = db.asset_by_external_id(&project, &external_id)?;
            let history = db.history(asset.id)?;
            let mut lineage = Vec::new();
            for l in &history {
                lineage.push((l.id, db.ancestors(l.id)?));
            }
            if json {
                drop(out);
                let labels: Vec<_> = history.iter().map(|l| label_json(l, &asset.content)).collect();
                let lineage: serde_json::Map<_, _> = lineage
                    .iter()
                    .map(|(id, anc)| {
                        (
                            id.to_string(),
                            json!(anc.iter().map(|a| a.id.to_string()).collect::<Vec<_>>()),
                        )
                    })
                    .collect();
                print_json(&json!({"asset": asset_json(&asset), "labels": labels, "lineage": lineage}))?;
            } else {
                say!(out, "{} {} in {project}", asset.external_id, asset.id);
                match &asset.content {
                    labeldb::Content::Text(t) => say!(out, "  text:     {t}"),
                    labeldb::Content::Image { uri, width, height } => say!(out, "  image:    {uri} ({width}x{height})"),
                }
                say!(
                    out,
                    "  status:   {}{}",
                    asset.status,
                    if asset.deleted { " (deleted)" } else { "" }
                );
                say!(out, "  priority: {}   honeypot: {}", asset.priority, asset.honeypot);
                for (k, v) in &asset.meta {
                    say!(out, "  meta.{k}: {v}");
                }
                say!(out, "  digest:   {}", asset.digest);
                say!(out, "labels ({}):", history.len());
                for (l, (_, anc)) in history.iter().zip(&lineage) {
                    let answers: Vec<String> = l
                        .answers
                        .iter()
                        .map(|(j, a)| format!("{j}={}", answer_text(a, &asset.content)))
                        .collect();
                    say!(
                        out,
                        "  {:<8} {:<10} {:<16} {}",
                        l.id,
                        l.kind.as_str(),
                        l.source.to_string(),
                        answers.join("  ")
                    );
                    if let Some(v) = l.verdict {
                        say!(out, "           verdict: {v:?}");
                    }
                    if let labeldb::Source::Model { name, version } = &l.source {
                        if let Some(m) = db.model_info(&project, name, version)? {
                            say!(
                                out,
                                "           model {name}@{version} trained on snapshot {:?} ({})",
                                m.trained_on,
                                m.trained_on_digest
                            );
                        }
                    }
                    if !anc.is_empty() {
                        let chain: Vec<String> = anc
                            .iter()
                            .map(|a| format!("{} ({} by {})", a.id, a.kind, a.source))
                            .collect();
                        say!(out, "           lineage: {}", chain.join(" <- "));
                    }
                }
            }
        }
        Command::Audit {
            project,
            actor,
            since,
            json,
        } => {
            let db = open(&cli.db, cli.cache_mib)?;
            let p = db.project(&project)?;
            let events: Vec<labeldb::Event> = match &actor {
                Some(a) => db.audit_actor(a, since)?,
                None => db.changes_since(since).collect::<labeldb::Result<_>>()?,
            };
            let mut mine = Vec::new();
            for e in events {
                if db.event_project(&e)? == Some(p.id) {
                    mine.push(e);
                }
            }
            if json {
                drop(out);
                print_json(&json!(mine.iter().map(event_json).collect::<Vec<_>>()))?;
            } else {
                for e in &mine {
                    say!(out, "{:>8}  {}  {:<16} {}", e.seq, e.at, e.actor, e.action.describe());
                }
            }
        }
        Command::Search {
            project,
            text,
            filter,
            limit,
            json,
        } => {
            let db = open(&cli.db, cli.cache_mib)?;
            let filter = filter.map(|f| labeldb::query::parse(&f)).transpose()?;
            let (count, hits) = db.search(&project, &text, filter.as_ref(), limit)?;
            print_hits(&db, out, count, &hits, json)?;
        }
        Command::Query {
            project,
            query,
            count,
            limit,
            after,
            sort,
            facets,
            json,
        } => {
            let db = open(&cli.db, cli.cache_mib)?;
            let filter = labeldb::query::parse(&query)?;
            if count {
                say!(out, "{}", db.count(&project, &filter)?);
                return Ok(ExitCode::SUCCESS);
            }
            let set = db.select(&project, &filter)?;
            let sort = match sort {
                None if labeldb::query::has_text(&filter) && after.is_none() && !facets => {
                    let (count, hits) = db.ranked(&project, &filter, limit)?;
                    print_hits(&db, out, count, &hits, json)?;
                    return Ok(ExitCode::SUCCESS);
                }
                None | Some(SortArg::Id) => Sort::Id,
                Some(SortArg::Priority) => Sort::Priority,
                Some(SortArg::Score) => Sort::Score,
            };
            let page = db.page(&project, &set, sort, limit, after.as_deref())?;
            let assets = page
                .ids
                .iter()
                .map(|id| db.asset(*id))
                .collect::<labeldb::Result<Vec<_>>>()?;
            let facets = if facets { Some(db.facets(&project, &set)?) } else { None };
            if json {
                drop(out);
                let mut v = json!({
                    "count": set.len(),
                    "ids": assets.iter().map(|a| a.external_id.clone()).collect::<Vec<_>>(),
                    "asset_ids": page.ids.iter().map(|id| id.0).collect::<Vec<_>>(),
                    "next": page.next,
                });
                if let Some(f) = &facets {
                    v["facets"] = json!({
                        "by_status": f.by_status.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                        "by_class": f.by_class,
                        "by_author": f.by_author,
                    });
                }
                print_json(&v)?;
            } else {
                say!(out, "{} assets match", set.len());
                for a in &assets {
                    say!(
                        out,
                        "  {:<24} {:<10} priority {:<6} {}",
                        a.external_id,
                        a.status.as_str(),
                        a.priority,
                        a.id
                    );
                }
                if let Some(next) = &page.next {
                    say!(out, "next page: --after {next}");
                }
                if let Some(f) = &facets {
                    say!(out, "by status:");
                    for (s, n) in &f.by_status {
                        say!(out, "  {:<10} {n:>8}", s.as_str());
                    }
                    for (job, classes) in &f.by_class {
                        let parts: Vec<String> = classes.iter().map(|(c, n)| format!("{c}={n}")).collect();
                        say!(out, "{job}: {}", parts.join("  "));
                    }
                    let authors: Vec<String> = f.by_author.iter().map(|(a, n)| format!("{a}={n}")).collect();
                    say!(out, "authors: {}", authors.join("  "));
                }
            }
        }
        Command::Verify { repair, json } => {
            let db = open(&cli.db, cli.cache_mib)?;
            if repair {
                let fixed = db.repair_indexes()?;
                if !json {
                    say!(out, "rebuilt the indexes from primary data ({fixed} differences fixed)");
                }
            }
            let report = db.verify()?;
            if json {
                drop(out);
                print_json(
                    &json!({"clean": report.is_clean(), "records": report.records, "problems": report.lines()}),
                )?;
            } else {
                for p in report.lines() {
                    say!(out, "problem: {p}");
                }
                say!(out, "{} records checked, {} problems", report.records, report.total());
            }
            if !report.is_clean() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Snapshot { command } => return snapshot_command(&cli.db, cli.cache_mib, command),
        Command::Model {
            command:
                ModelCommand::Register {
                    project,
                    model,
                    trained_on,
                    actor,
                },
        } => {
            let db = open(&cli.db, cli.cache_mib)?;
            let Source::Model { name, version } = Source::model(&model)? else {
                bail!("{model:?} is not NAME@VERSION");
            };
            let info = db.register_model(&actor, &project, &name, &version, &trained_on)?;
            db.flush()?;
            say!(
                out,
                "registered {name}@{version}, trained on snapshot {:?} ({})",
                info.trained_on,
                info.trained_on_digest
            );
        }
        Command::Demo { dir, assets } => {
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("labeldb-demo-{}-{}", std::process::id(), labeldb_now()))
            });
            say!(out, "labeldb demo: {assets} customer-order emails in {}", dir.display());
            out.flush()?;
            let started = std::time::Instant::now();
            let report = labeldb::demo::run(&dir, assets, |phase| eprintln!("  … {phase}"))?;
            let total = started.elapsed();
            say!(out, "\nphases:");
            for (name, took, writes) in &report.phases {
                let rate = *writes as f64 / took.as_secs_f64().max(1e-9);
                say!(
                    out,
                    "  {name:<24} {:>8.3}s  {writes:>7} writes  {rate:>10.0}/s",
                    took.as_secs_f64()
                );
            }
            print_stats(&mut out, labeldb::demo::PROJECT, &report.stats)?;
            say!(out, "\nannotators (category accuracy against the truth):");
            for (name, (labels, right)) in &report.annotators {
                say!(
                    out,
                    "  {name:<8} {labels:>6} labels  {:>5.1}% right",
                    100.0 * *right as f64 / (*labels).max(1) as f64
                );
            }
            say!(out, "  model clf@1 {:>5.1}% right", 100.0 * report.model_accuracy);
            say!(out, "\nqueries:");
            for (q, n, took) in &report.queries {
                say!(out, "  {n:>6} in {:>7.1} µs  {q}", took.as_secs_f64() * 1e6);
            }
            let (text, matches, hits) = &report.search;
            say!(out, "\nsearch {text:?} among complaints: {matches} matches, best:");
            for (id, snippet) in hits {
                say!(out, "  {id:<12} {snippet}");
            }
            let (info, took, [train, val, test]) = &report.snapshot;
            say!(
                out,
                "\nsnapshot {:?}: {} assets in {:.1} ms, digest {}\n  split train/val/test: {train}/{val}/{test}",
                info.name,
                info.assets,
                took.as_secs_f64() * 1e3,
                info.digest
            );
            say!(
                out,
                "\n{} events in the log, {:.1} MiB on disk, verify: {}, total {:.2}s",
                report.events,
                report.bytes_on_disk as f64 / (1 << 20) as f64,
                if report.verified { "clean" } else { "PROBLEMS" },
                total.as_secs_f64()
            );
            say!(
                out,
                "try: labeldb --db {} show orders email-1",
                dir.join("demo.labeldb").display()
            );
            if !report.verified {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_hits(db: &Db, mut out: impl Write, count: u64, hits: &[labeldb::Hit], json: bool) -> Result<()> {
    if json {
        let mut list = Vec::with_capacity(hits.len());
        for h in hits {
            let a = db.asset(h.asset)?;
            list.push(json!({"id": a.external_id, "asset_id": h.asset.0, "score": h.score, "snippet": h.snippet, "status": a.status.as_str()}));
        }
        serde_json::to_writer_pretty(&mut out, &json!({"count": count, "hits": list}))?;
        writeln!(out)?;
        return Ok(());
    }
    say!(out, "{count} assets match");
    for h in hits {
        let a = db.asset(h.asset)?;
        say!(
            out,
            "  {:<20} {:>7.3}  {:<10} {}",
            a.external_id,
            h.score,
            a.status.as_str(),
            h.snippet.replace('\n', " ")
        );
    }
    Ok(())
}

fn labeldb_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn answer_text(a: &labeldb::Answer, content: &labeldb::Content) -> String {
    match a {
        labeldb::Answer::Classes(c) => c.join(","),
        labeldb::Answer::Spans(spans) => {
            let text = content.text().unwrap_or("");
            let parts: Vec<String> = spans
                .iter()
                .map(|s| {
                    format!(
                        "{}:{:?}",
                        s.class,
                        text.get(s.start as usize..s.end as usize).unwrap_or("?")
                    )
                })
                .collect();
            format!("[{}]", parts.join(" "))
        }
        labeldb::Answer::Boxes(b) => format!("[{} boxes]", b.len()),
    }
}

fn print_stats(out: &mut impl Write, project: &str, s: &labeldb::Stats) -> Result<()> {
    say!(
        out,
        "\nproject {project}: {} assets ({} deleted), {} label revisions",
        s.assets,
        s.deleted,
        s.labels
    );
    say!(out, "by status:");
    for st in Status::ALL {
        say!(
            out,
            "  {:<10} {:>8}",
            st.as_str(),
            s.by_status.get(&st).copied().unwrap_or(0)
        );
    }
    say!(out, "labels by kind:");
    for (k, v) in &s.by_kind {
        say!(out, "  {:<10} {:>8}", k.as_str(), v);
    }
    say!(out, "labels by source:");
    for (k, v) in &s.by_source {
        say!(out, "  {k:<16} {v:>8}");
    }
    say!(out, "classes (latest human annotation per author):");
    for (job, classes) in &s.classes {
        let parts: Vec<String> = classes.iter().map(|(c, n)| format!("{c}={n}")).collect();
        say!(out, "  {job:<10} {}", parts.join("  "));
    }
    Ok(())
}

fn snapshot_command(db_path: &Path, cache_mib: u64, command: SnapshotCommand) -> Result<ExitCode> {
    let db = open(db_path, cache_mib)?;
    let mut out = io::stdout().lock();
    match command {
        SnapshotCommand::Create {
            project,
            name,
            filter,
            selection,
            actor,
            json,
        } => {
            let f = labeldb::query::parse(&filter)?;
            let selection: Selection = selection.parse()?;
            let started = std::time::Instant::now();
            let info = db.create_snapshot(&actor, &project, &name, &f, &selection)?;
            db.flush()?;
            if json {
                drop(out);
                print_json(&snapshot_json(&info, &[]))?;
            } else {
                say!(
                    out,
                    "created snapshot {:?}: {} assets, digest {} ({:.3}s)",
                    info.name,
                    info.assets,
                    info.digest,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        SnapshotCommand::List { project, json } => {
            let list = db.snapshots(&project)?;
            if json {
                drop(out);
                print_json(&json!(list
                    .iter()
                    .map(|(i, t)| snapshot_json(i, t))
                    .collect::<Vec<_>>()))?;
            } else {
                for (i, tags) in &list {
                    let tags = if tags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", tags.join(", "))
                    };
                    say!(
                        out,
                        "{:<20} {:>9} assets  {:<16} {}{tags}",
                        i.name,
                        i.assets,
                        i.selection.to_string(),
                        &i.digest.to_string()[..16]
                    );
                }
            }
        }
        SnapshotCommand::Show { project, name, json } => {
            let info = db.snapshot_info(&project, &name)?;
            let tags: Vec<String> = db
                .snapshots(&project)?
                .into_iter()
                .find(|(i, _)| i.name == info.name)
                .map(|(_, t)| t)
                .unwrap_or_default();
            if json {
                drop(out);
                print_json(&snapshot_json(&info, &tags))?;
            } else {
                say!(out, "snapshot {:?} of {project}", info.name);
                say!(out, "  assets:    {}", info.assets);
                say!(out, "  digest:    {}", info.digest);
                say!(out, "  filter:    {}", info.filter);
                say!(out, "  selection: {}", info.selection);
                say!(out, "  seq:       {}", info.seq);
                say!(out, "  created:   {} by {}", info.created_at, info.created_by);
                say!(out, "  tags:      {}", tags.join(", "));
            }
        }
        SnapshotCommand::Diff { project, a, b, json } => {
            let d = db.snapshot(&project, &a)?.diff(&db.snapshot(&project, &b)?)?;
            if json {
                drop(out);
                print_json(&json!({
                    "added": d.added,
                    "removed": d.removed,
                    "relabelled": d.relabelled.iter().map(|r| json!({
                        "id": r.external_id, "before": r.before.to_string(), "after": r.after.to_string()
                    })).collect::<Vec<_>>(),
                }))?;
            } else {
                say!(
                    out,
                    "{} added, {} removed, {} relabelled",
                    d.added.len(),
                    d.removed.len(),
                    d.relabelled.len()
                );
                for x in &d.added {
                    say!(out, "  + {x}");
                }
                for x in &d.removed {
                    say!(out, "  - {x}");
                }
                for r in &d.relabelled {
                    say!(out, "  ~ {} ({} -> {})", r.external_id, r.before, r.after);
                }
            }
        }
        SnapshotCommand::Tag {
            project,
            tag,
            name,
            actor,
        } => {
            db.tag_snapshot(&actor, &project, &tag, &name)?;
            db.flush()?;
            say!(out, "tag {tag:?} -> snapshot {name:?}");
        }
        SnapshotCommand::Delete { project, name, actor } => {
            db.delete_snapshot(&actor, &project, &name)?;
            db.flush()?;
            say!(out, "deleted snapshot {name:?}");
        }
        SnapshotCommand::Verify { project, name, json } => {
            let problems = db.verify_snapshot(&project, &name)?;
            if json {
                drop(out);
                print_json(&json!({"clean": problems.is_empty(), "problems": problems}))?;
            } else {
                for p in &problems {
                    say!(out, "problem: {p}");
                }
                say!(
                    out,
                    "snapshot {name:?}: {}",
                    if problems.is_empty() {
                        "digest verified"
                    } else {
                        "PROBLEMS"
                    }
                );
            }
            if !problems.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        SnapshotCommand::Export {
            project,
            name,
            out: path,
            shard,
            split,
            ratios,
            seed,
        } => {
            let mut snap = db.snapshot(&project, &name)?;
            if let Some(split) = split {
                let parsed: Vec<(String, f64)> = ratios
                    .split(',')
                    .map(|part| {
                        let (n, r) = part.split_once('=').context("--ratios is NAME=RATIO,...")?;
                        Ok((
                            n.trim().to_string(),
                            r.trim().parse::<f64>().with_context(|| format!("ratio {r:?}"))?,
                        ))
                    })
                    .collect::<Result<_>>()?;
                let refs: Vec<(&str, f64)> = parsed.iter().map(|(n, r)| (n.as_str(), *r)).collect();
                snap = snap.split(&split, &refs)?;
            }
            if let Some(seed) = seed {
                snap = snap.shuffled(seed);
            }
            if let Some(shard) = shard {
                let (r, w) = shard.split_once('/').context("--shard is RANK/WORLD, e.g. 0/4")?;
                snap = snap.shard(r.parse().context("shard rank")?, w.parse().context("shard world size")?)?;
            }
            let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let mut w = io::BufWriter::new(file);
            let n = snap.export_jsonl(&mut w)?;
            say!(out, "wrote {n} examples to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
