//! The `labeldb` command-line tool: a thin layer over the library. `args` holds the
//! grammar, `cmd/` one file per command group, `out` what several commands print.

mod args;
mod cmd;
mod demo;
mod out;

use std::io;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use args::{Cli, Command};

/// The import's allocations are many and small, and cross threads (parsing, writing,
/// tantivy's indexing): a 200,000-line JSONL import took 5.5 user CPU-s with glibc's
/// allocator and 3.7 with mimalloc, and ~25% less time (BENCHMARKS.md, "Import through
/// the CLI"). The library leaves the choice of allocator to its application.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Runs one command; the exit code is 0, or 1 when a check found problems.
fn run(cli: Cli) -> Result<ExitCode> {
    let g = cmd::Global {
        db: cli.db,
        cache_mib: cli.cache_mib,
        user: cli.acting_user,
    };
    match cli.command {
        Command::Init => cmd::project::init(&g),
        Command::Project { command } => cmd::project::run(&g, command),
        Command::Import(a) => cmd::import::run(&g, a),
        Command::Stats(a) => cmd::inspect::stats(&g, a),
        Command::Show(a) => cmd::inspect::show(&g, a),
        Command::Audit(a) => cmd::inspect::audit(&g, a),
        Command::Verify(a) => cmd::verify::run(&g, a),
        Command::Compact(a) => cmd::verify::compact(&g, a),
        Command::Search(a) => cmd::find::search(&g, a),
        Command::Query(a) => cmd::find::query(&g, a),
        Command::Snapshot { command } => cmd::snapshot::run(&g, command),
        Command::Model { command } => cmd::model::run(&g, command),
        Command::Member { command } => cmd::member::run(&g, command),
        Command::Demo(a) => cmd::demo::run(a),
    }
}
