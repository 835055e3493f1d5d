//! `labeldb verify [--repair]` (exit 1 when the check finds problems) and `labeldb compact`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::Global;
use crate::args::{CompactArgs, VerifyArgs};
use crate::out::{print_json, say};

/// `labeldb compact`: the database rewritten into a fresh directory that takes its place.
pub(crate) fn compact(g: &Global, a: CompactArgs) -> Result<ExitCode> {
    g.application_only("compact")?;
    let started = std::time::Instant::now();
    let r = labeldb::compact(&g.db)?;
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        print_json(&json!({"before": r.before, "after": r.after, "seconds": secs}))?;
    } else {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        say!(
            io::stdout().lock(),
            "compacted {:.1} MiB to {:.1} MiB in {secs:.2}s",
            mib(r.before),
            mib(r.after)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(g: &Global, a: VerifyArgs) -> Result<ExitCode> {
    g.application_only("verify")?;
    let db = g.open()?;
    let mut out = io::stdout().lock();
    if a.repair {
        let fixed = db.repair_indexes()?;
        if !a.json {
            say!(out, "rebuilt the indexes from primary data ({fixed} differences fixed)");
        }
    }
    let report = db.verify()?;
    if a.json {
        drop(out);
        print_json(&json!({"clean": report.is_clean(), "records": report.records, "problems": report.lines()}))?;
    } else {
        for p in report.lines() {
            say!(out, "problem: {p}");
        }
        say!(out, "{} records checked, {} problems", report.records, report.total());
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
