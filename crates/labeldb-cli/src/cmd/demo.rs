//! `labeldb demo`: the whole labelling loop on generated customer-order emails.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;

use crate::args::DemoArgs;
use crate::demo::{self, DemoReport, PROJECT};
use crate::out::{print_stats, say};

pub(crate) fn run(a: DemoArgs) -> Result<ExitCode> {
    // By default a new directory under the temp dir: this process's id, and a number
    // that no earlier run left behind.
    let dir = a.dir.unwrap_or_else(|| {
        let base = std::env::temp_dir().join(format!("labeldb-demo-{}", std::process::id()));
        (0..)
            .map(|n| base.with_extension(n.to_string()))
            .find(|d| !d.exists())
            .unwrap_or(base)
    });
    let mut out = io::stdout().lock();
    say!(
        out,
        "labeldb demo: {} customer-order emails in {}",
        a.assets,
        dir.display()
    );
    out.flush()?;
    let started = std::time::Instant::now();
    let report = demo::run(&dir, a.assets, |phase| eprintln!("  … {phase}"))?;
    print_report(&mut out, &report, started.elapsed())?;
    say!(
        out,
        "try: labeldb --db {} show orders email-1",
        dir.join("demo.labeldb").display()
    );
    Ok(if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(out: &mut impl Write, report: &DemoReport, total: std::time::Duration) -> Result<()> {
    say!(out, "\nphases:");
    for (name, took, writes) in &report.phases {
        let rate = *writes as f64 / took.as_secs_f64().max(1e-9);
        say!(
            out,
            "  {name:<24} {:>8.3}s  {writes:>7} writes  {rate:>10.0}/s",
            took.as_secs_f64()
        );
    }
    print_stats(out, PROJECT, &report.stats)?;
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
    Ok(())
}
