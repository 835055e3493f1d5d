//! `import --mode add-labels`: JSONL lines `{"id": EXTERNAL_ID, "labels": [...]}` that
//! add labels (in the native format's label shape) to assets that already exist, in
//! batches written by [`Db::add_labels`] (docs/formats.md).

use std::io::BufRead;
use std::path::Path;

use super::jsonl::{self, LabelTarget};
use super::{ImportOptions, INVALID_SAMPLES};
use crate::engine::Db;
use crate::model::asset::AssetId;
use crate::model::error::{Error, Result};
use crate::model::label::NewLabel;
use crate::model::project::Project;

/// What an import of labels did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelImportReport {
    /// Lines read (blank lines aside).
    pub lines: u64,
    /// Labels written.
    pub labels: u64,
    /// Labels equal to the latest of their source on the asset: not written again.
    pub unchanged: u64,
    /// Bad lines skipped (`skip_invalid`).
    pub skipped: u64,
    /// The first few skipped lines' errors, `line: message`.
    pub skipped_samples: Vec<String>,
}

impl Db {
    /// Adds the labels of a file of `add-labels` lines to a project's assets.
    pub fn import_labels_file(
        &self,
        project: &str,
        path: &Path,
        options: &ImportOptions,
        progress: impl FnMut(&LabelImportReport),
    ) -> Result<LabelImportReport> {
        let (reader, name) = super::open(path)?;
        self.import_labels_reader(project, reader, &name, options, progress)
    }

    /// Adds the labels of `add-labels` lines read from `reader`; `file_name` names the
    /// input in errors. Each batch of lines is one atomic write; an unknown or deleted
    /// asset, a bad label or a broken line stops the import naming its line, with
    /// nothing of its batch written, or is skipped and counted with `skip_invalid`.
    pub fn import_labels_reader(
        &self,
        project: &str,
        reader: impl BufRead,
        file_name: &str,
        options: &ImportOptions,
        progress: impl FnMut(&LabelImportReport),
    ) -> Result<LabelImportReport> {
        let project = self.project(project)?;
        self.import_labels_with(&project, reader, file_name, options, progress, |batch| {
            self.add_labels(batch).map(|r| (r.labels, r.unchanged))
        })
    }

    /// The import of labels, each batch written by `write`, which returns the labels
    /// written and those unchanged (the session's writes check each label first).
    pub(crate) fn import_labels_with(
        &self,
        project: &Project,
        reader: impl BufRead,
        file_name: &str,
        options: &ImportOptions,
        mut progress: impl FnMut(&LabelImportReport),
        mut write: impl FnMut(Vec<(AssetId, NewLabel)>) -> Result<(u64, u64)>,
    ) -> Result<LabelImportReport> {
        let fail = |line: u64, cause: Error| Error::Import {
            file: file_name.to_string(),
            line,
            cause: Box::new(cause),
        };
        let batch_size = options.batch_size.max(1);
        let mut report = LabelImportReport::default();
        // The labels of a batch, and the line of each.
        let mut batch: Vec<(AssetId, NewLabel)> = Vec::new();
        let mut lines: Vec<u64> = Vec::new();
        let mut flush = |batch: &mut Vec<(AssetId, NewLabel)>,
                         lines: &mut Vec<u64>,
                         report: &mut LabelImportReport|
         -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            let written = write(std::mem::take(batch)).map_err(|e| match e {
                Error::InBatch { index, cause } => fail(lines.get(index).copied().unwrap_or(0), *cause),
                other => other,
            })?;
            lines.clear();
            report.labels += written.0;
            report.unchanged += written.1;
            progress(report);
            Ok(())
        };
        let mut pending_lines = 0usize;
        for item in jsonl::lines(reader) {
            let (line, text) = item?;
            report.lines += 1;
            match text.and_then(|t| self.labels_of_line(project, &t, options.skip_invalid)) {
                Ok(labels) => {
                    lines.extend(std::iter::repeat_n(line, labels.len()));
                    batch.extend(labels);
                    pending_lines += 1;
                }
                Err(e) if options.skip_invalid => {
                    report.skipped += 1;
                    if report.skipped_samples.len() < INVALID_SAMPLES {
                        report.skipped_samples.push(format!("{line}: {e}"));
                    }
                }
                Err(e) => return Err(fail(line, e)),
            }
            if pending_lines >= batch_size {
                pending_lines = 0;
                flush(&mut batch, &mut lines, &mut report)?;
            }
        }
        flush(&mut batch, &mut lines, &mut report)?;
        Ok(report)
    }

    /// The labels of one line, for its asset. With `check`, validated against it here,
    /// so that a bad line can be skipped; else `add_labels` validates them in the batch
    /// (and its error names the item, hence the line).
    fn labels_of_line(&self, project: &Project, line: &str, check: bool) -> Result<Vec<(AssetId, NewLabel)>> {
        let (external_id, obj) = jsonl::id_and_object(line)?;
        let asset = self.asset_by_external_id(&project.name, &external_id)?;
        if asset.deleted {
            return Err(Error::AssetDeleted(external_id));
        }
        let target = LabelTarget {
            external_id: &asset.external_id,
            content: &asset.content,
        };
        let labels = jsonl::parse_labels(obj, &project.schema, &target)?;
        labels
            .into_iter()
            .map(|l| {
                if check {
                    l.validate(&project.schema, &asset.external_id, &asset.content)?;
                }
                Ok((asset.id, l))
            })
            .collect()
    }
}
