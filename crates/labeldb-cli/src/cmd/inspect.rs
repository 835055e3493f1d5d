//! Reading a project back: `labeldb stats`, `labeldb show` and `labeldb audit`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use labeldb::{asset_json, event_json, label_json, stats_json, Asset, Content, Label, Session, Source};
use serde_json::json;

use super::Global;
use crate::args::{AuditArgs, ShowArgs, StatsArgs};
use crate::out::{answer_text, print_json, print_stats, say};

pub(crate) fn stats(g: &Global, a: StatsArgs) -> Result<ExitCode> {
    let app = g.open()?;
    let db = &g.session(&app, "cli")?;
    let s = db.stats(&a.project)?;
    // The database's, not the project's: what the directory holds and what is live.
    let usage = app.disk_usage()?;
    if a.json {
        let mut v = stats_json(&a.project, &s);
        v["bytes_on_disk"] = json!(usage.on_disk);
        v["live_bytes"] = json!(usage.live);
        print_json(&v)?;
    } else {
        let mut out = io::stdout().lock();
        print_stats(&mut out, &a.project, &s)?;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        say!(
            out,
            "database: {:.1} MiB on disk, {:.1} MiB live (labeldb compact reclaims the difference)",
            mib(usage.on_disk),
            mib(usage.live)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn show(g: &Global, a: ShowArgs) -> Result<ExitCode> {
    let app = g.open()?;
    let db = &g.session(&app, "cli")?;
    let asset = db.asset_by_external_id(&a.project, &a.external_id)?;
    let history = db.history(asset.id)?;
    let mut lineage = Vec::new();
    for l in &history {
        lineage.push(db.ancestors(l.id)?);
    }
    if a.json {
        let labels: Vec<_> = history.iter().map(|l| label_json(l, &asset.content)).collect();
        let lineage: serde_json::Map<_, _> = history
            .iter()
            .zip(&lineage)
            .map(|(l, anc)| {
                let ids: Vec<String> = anc.iter().map(|a| a.id.to_string()).collect();
                (l.id.to_string(), json!(ids))
            })
            .collect();
        print_json(&json!({"asset": asset_json(&asset), "labels": labels, "lineage": lineage}))?;
    } else {
        print_asset(db, &a.project, &asset, &history, &lineage)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// An asset, its labels and their lineage as text.
fn print_asset(db: &Session, project: &str, asset: &Asset, history: &[Label], lineage: &[Vec<Label>]) -> Result<()> {
    let mut out = io::stdout().lock();
    say!(out, "{} {} in {project}", asset.external_id, asset.id);
    match &asset.content {
        Content::Text(t) => say!(out, "  text:     {t}"),
        Content::Image { uri, width, height } => say!(out, "  image:    {uri} ({width}x{height})"),
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
    for (l, anc) in history.iter().zip(lineage) {
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
        if let Source::Model { name, version } = &l.source {
            if let Some(m) = db.model_info(project, name, version)? {
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
    Ok(())
}

pub(crate) fn audit(g: &Global, a: AuditArgs) -> Result<ExitCode> {
    let app = g.open()?;
    let db = &g.session(&app, "cli")?;
    let mut events = db.audit_project(&a.project, a.actor.as_deref(), a.since)?;
    let norm = |s: &str| s.replace(['-', '_'], "").to_lowercase();
    let action = a.action.as_deref().map(norm);
    events.retain(|e| {
        let name = serde_json::to_value(&e.action)
            .ok()
            .and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned()));
        action
            .as_ref()
            .is_none_or(|want| name.is_some_and(|n| norm(&n) == *want))
            && a.from.is_none_or(|t| e.at >= t)
            && a.to.is_none_or(|t| e.at < t)
    });
    if a.json {
        print_json(&json!(events.iter().map(event_json).collect::<Vec<_>>()))?;
    } else {
        let mut out = io::stdout().lock();
        for e in &events {
            say!(out, "{:>8}  {}  {:<16} {}", e.seq, e.at, e.actor, e.action.describe());
        }
    }
    Ok(ExitCode::SUCCESS)
}
