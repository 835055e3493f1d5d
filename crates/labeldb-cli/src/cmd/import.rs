//! `labeldb import`: a JSONL or CoNLL file into a project, with a progress bar.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use labeldb::{Format, ImportOptions};
use serde_json::json;

use super::Global;
use crate::args::{FormatArg, ImportArgs, ImportMode};
use crate::out::{print_json, say};

pub(crate) fn run(g: &Global, a: ImportArgs) -> Result<ExitCode> {
    let db = g.open()?;
    let format = match a.format {
        Some(FormatArg::Jsonl) => Format::Jsonl,
        Some(FormatArg::Conll) => Format::Conll,
        None => Format::from_path(&a.file),
    };
    let options = ImportOptions {
        job: a.job,
        author: a.author,
        skip_invalid: a.skip_invalid,
        ..ImportOptions::new(format)
    };
    let total = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
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
    let session = g.session(&db, &a.actor)?;
    if a.mode == ImportMode::AddLabels {
        let result = session.import_labels_file(&a.project, &a.file, &options, |r| {
            bar.set_message(format!("{} lines, {} labels written", r.lines, r.labels));
        });
        bar.finish_and_clear();
        let report = result?;
        db.flush()?;
        let secs = started.elapsed().as_secs_f64();
        if a.json {
            print_json(&json!({
                "lines": report.lines,
                "labels": report.labels,
                "unchanged": report.unchanged,
                "skipped": report.skipped,
                "seconds": secs,
            }))?;
        } else {
            let mut out = io::stdout().lock();
            say!(
                out,
                "added {} labels from {} lines ({} unchanged, {} lines skipped) in {:.2}s ({:.0} labels/s)",
                report.labels,
                report.lines,
                report.unchanged,
                report.skipped,
                secs,
                report.labels as f64 / secs.max(1e-9)
            );
            for s in &report.skipped_samples {
                say!(out, "  skipped line {s}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let result = session.import_file(&a.project, &a.file, &options, |r| {
        bar.set_position(r.bytes);
        bar.set_message(format!("{} imported, {} duplicates", r.imported, r.duplicates));
    });
    bar.finish_and_clear();
    let report = result?;
    db.flush()?;
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        return print_json(&json!({
            "records": report.records,
            "imported": report.imported,
            "duplicates": report.duplicates,
            "labels": report.labels,
            "invalid": report.invalid,
            "seconds": secs,
        }))
        .map(|()| ExitCode::SUCCESS);
    }
    let mut out = io::stdout().lock();
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
    Ok(ExitCode::SUCCESS)
}
