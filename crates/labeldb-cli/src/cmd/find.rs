//! Finding assets: `labeldb search` (full text, ranked) and `labeldb query` (the query
//! language, paged, with facets).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use labeldb::{facets_json, Asset, Facets, Page, Sort};
use serde_json::json;

use super::Global;
use crate::args::{QueryArgs, SearchArgs, SortArg};
use crate::out::{print_hits, print_json, say};

pub(crate) fn search(g: &Global, a: SearchArgs) -> Result<ExitCode> {
    let app = g.open()?;
    let db = &g.session(&app, "cli")?;
    let filter = a.filter.map(|f| labeldb::query::parse(&f)).transpose()?;
    let (count, hits) = db.search(&a.project, &a.text, filter.as_ref(), a.limit)?;
    print_hits(db, count, &hits, a.json)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn query(g: &Global, a: QueryArgs) -> Result<ExitCode> {
    let app = g.open()?;
    let db = &g.session(&app, "cli")?;
    let filter = labeldb::query::parse(&a.query)?;
    if a.count {
        say!(io::stdout(), "{}", db.count(&a.project, &filter)?);
        return Ok(ExitCode::SUCCESS);
    }
    let sort = match a.sort {
        None if labeldb::query::has_text(&filter) && a.after.is_none() && !a.facets => {
            let (count, hits) = db.ranked(&a.project, &filter, a.limit)?;
            print_hits(db, count, &hits, a.json)?;
            return Ok(ExitCode::SUCCESS);
        }
        None | Some(SortArg::Id) => Sort::Id,
        Some(SortArg::Priority) => Sort::Priority,
        Some(SortArg::Score) => Sort::Score,
    };
    let set = db.select(&a.project, &filter)?;
    let page = db.page(&a.project, &set, sort, a.limit, a.after.as_deref())?;
    let assets = page
        .ids
        .iter()
        .map(|id| db.asset(*id))
        .collect::<labeldb::Result<Vec<_>>>()?;
    let facets = if a.facets {
        Some(db.facets(&a.project, &set)?)
    } else {
        None
    };
    if a.json {
        let mut v = json!({
            "count": set.len(),
            "ids": assets.iter().map(|a| a.external_id.clone()).collect::<Vec<_>>(),
            "asset_ids": page.ids.iter().map(|id| id.0).collect::<Vec<_>>(),
            "next": page.next,
        });
        if let Some(f) = &facets {
            v["facets"] = facets_json(f);
        }
        print_json(&v)?;
    } else {
        print_page(set.len(), &assets, &page, facets.as_ref())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A page of query results, the cursor of the next and the facets, as text.
fn print_page(count: u64, assets: &[Asset], page: &Page, facets: Option<&Facets>) -> Result<()> {
    let mut out = io::stdout().lock();
    say!(out, "{count} assets match");
    for a in assets {
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
    if let Some(f) = facets {
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
    Ok(())
}
