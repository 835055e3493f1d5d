//! `labeldb verify [--repair]`: exit 1 when the check finds problems.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::Global;
use crate::args::VerifyArgs;
use crate::out::{print_json, say};

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
