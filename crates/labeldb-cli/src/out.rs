//! Output that several commands share: JSON printing, answers as text, search hits and
//! project counts.

use std::io::{self, Write};

use anyhow::Result;
use labeldb::{Answer, Content, Hit, Session, Stats, Status};

/// `writeln!` that returns the error from the enclosing function.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => { writeln!($out, $($arg)*)? };
}
pub(crate) use say;

/// Prints a JSON value, pretty, on stdout.
pub(crate) fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// An answer as one short line: classes, spans with their text, or a box count.
pub(crate) fn answer_text(a: &Answer, content: &Content) -> String {
    match a {
        Answer::Classes(c) => c.join(","),
        Answer::Spans(spans) => {
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
        Answer::Boxes(b) => format!("[{} boxes]", b.len()),
    }
}

/// Search or ranked-query hits: JSON, or one line each with score and snippet.
pub(crate) fn print_hits(db: &Session, count: u64, hits: &[Hit], json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        let mut list = Vec::with_capacity(hits.len());
        for h in hits {
            let a = db.asset(h.asset)?;
            list.push(serde_json::json!({"id": a.external_id, "asset_id": h.asset.0, "score": h.score, "snippet": h.snippet, "status": a.status.as_str()}));
        }
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({"count": count, "hits": list}))?;
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

/// A project's counts as a table.
pub(crate) fn print_stats(out: &mut impl Write, project: &str, s: &Stats) -> Result<()> {
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
