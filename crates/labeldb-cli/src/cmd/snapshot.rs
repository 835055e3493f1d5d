//! `labeldb snapshot create|list|show|diff|tag|delete|verify|export`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use labeldb::{diff_json, snapshot_json, Ratios, Selection, Session, Shard};
use serde_json::json;

use super::Global;
use crate::args::{SnapshotCommand, SnapshotCreateArgs, SnapshotExportArgs, SnapshotShowArgs};
use crate::out::{print_json, say};

pub(crate) fn run(g: &Global, command: SnapshotCommand) -> Result<ExitCode> {
    let app = g.open()?;
    let db = &g.session(&app, "cli")?;
    let mut out = io::stdout().lock();
    match command {
        SnapshotCommand::Create(a) => create(&g.session(&app, &a.actor)?, a)?,
        SnapshotCommand::List(a) => {
            let list = db.snapshots(&a.project)?;
            if a.json {
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
        SnapshotCommand::Show(a) => show(db, a)?,
        SnapshotCommand::Diff(a) => {
            let d = db.snapshot(&a.project, &a.a)?.diff(&db.snapshot(&a.project, &a.b)?)?;
            if a.json {
                drop(out);
                print_json(&diff_json(&d))?;
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
        SnapshotCommand::Tag(a) => {
            g.session(&app, &a.actor)?.tag_snapshot(&a.project, &a.tag, &a.name)?;
            db.db().flush()?;
            say!(out, "tag {:?} -> snapshot {:?}", a.tag, a.name);
        }
        SnapshotCommand::Delete(a) => {
            g.session(&app, &a.actor)?.delete_snapshot(&a.project, &a.name)?;
            db.db().flush()?;
            say!(out, "deleted snapshot {:?}", a.name);
        }
        SnapshotCommand::Verify(a) => {
            let problems = db.verify_snapshot(&a.project, &a.name)?;
            if a.json {
                drop(out);
                print_json(&json!({"clean": problems.is_empty(), "problems": problems}))?;
            } else {
                for p in &problems {
                    say!(out, "problem: {p}");
                }
                let verdict = if problems.is_empty() {
                    "digest verified"
                } else {
                    "PROBLEMS"
                };
                say!(out, "snapshot {:?}: {verdict}", a.name);
            }
            if !problems.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        SnapshotCommand::Export(a) => export(db, a)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn create(db: &Session, a: SnapshotCreateArgs) -> Result<()> {
    let f = labeldb::query::parse(&a.filter)?;
    let selection: Selection = a.selection.parse()?;
    let started = std::time::Instant::now();
    let info = db.create_snapshot(&a.project, &a.name, &f, &selection)?;
    db.db().flush()?;
    if a.json {
        print_json(&snapshot_json(&info, &[]))?;
    } else {
        say!(
            io::stdout(),
            "created snapshot {:?}: {} assets, digest {} ({:.3}s)",
            info.name,
            info.assets,
            info.digest,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn show(db: &Session, a: SnapshotShowArgs) -> Result<()> {
    let info = db.snapshot_info(&a.project, &a.name)?;
    let tags = db.snapshot_tags(&a.project, &info.name)?;
    if a.json {
        return print_json(&snapshot_json(&info, &tags));
    }
    let mut out = io::stdout().lock();
    say!(out, "snapshot {:?} of {}", info.name, a.project);
    say!(out, "  assets:    {}", info.assets);
    say!(out, "  digest:    {}", info.digest);
    say!(out, "  filter:    {}", info.filter);
    say!(out, "  selection: {}", info.selection);
    say!(out, "  seq:       {}", info.seq);
    say!(out, "  created:   {} by {}", info.created_at, info.created_by);
    say!(out, "  tags:      {}", tags.join(", "));
    Ok(())
}

fn export(db: &Session, a: SnapshotExportArgs) -> Result<()> {
    let mut snap = db.snapshot(&a.project, &a.name)?;
    if let Some(split) = &a.split {
        let ratios: Ratios = a.ratios.parse()?;
        snap = snap.split(split, &ratios.as_pairs())?;
    }
    if let Some(seed) = a.seed {
        snap = snap.shuffled(seed);
    }
    if let Some(shard) = &a.shard {
        let Shard { rank, world } = shard.parse()?;
        snap = snap.shard(rank, world)?;
    }
    let file = std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let n = snap.export_jsonl(&mut io::BufWriter::new(file))?;
    say!(io::stdout(), "wrote {n} examples to {}", a.out.display());
    Ok(())
}
