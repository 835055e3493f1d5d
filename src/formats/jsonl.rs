//! The native JSONL format: one asset per line (docs/formats.md).
//!
//! Span offsets in JSONL are Unicode code points (as in spaCy and Prodigy); inside the
//! engine they are UTF-8 byte offsets. [`to_byte_offset`] and [`to_codepoint`] convert.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde_json::{Map, Value};

use crate::model::asset::{Content, MetaValue, NewAsset, Status};
use crate::model::error::{Error, Result};
use crate::model::label::{Answer, BBox, LabelKind, NewLabel, Scores, Source, Span, Verdict};
use crate::model::project::{JobKind, Schema};

/// The lines of a JSONL input with their numbers (from 1); blank lines are skipped. Only
/// an I/O failure is an `Err` of the iterator; a line that is not UTF-8 is an `Err`
/// inside its item. [`parse_line`] turns a line into its record.
pub(crate) fn lines<R: BufRead>(mut reader: R) -> impl Iterator<Item = Result<(u64, Result<String>)>> {
    let mut line_no = 0u64;
    std::iter::from_fn(move || loop {
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(cause) => {
                return Some(Err(Error::Io {
                    path: "input".into(),
                    cause,
                }))
            }
        }
        line_no += 1;
        let line = match String::from_utf8(buf) {
            Ok(s) if s.trim().is_empty() => continue,
            Ok(s) => Ok(s),
            Err(e) => Err(Error::invalid("line", format!("not valid UTF-8 ({})", e.utf8_error()))),
        };
        return Some(Ok((line_no, line)));
    })
}

/// Parses one JSONL line into an asset, against the project's schema.
pub fn parse_line(line: &str, schema: &Schema) -> Result<NewAsset> {
    let (external_id, mut obj) = id_and_object(line)?;
    let content = match (obj.remove("text"), obj.remove("image")) {
        (Some(Value::String(t)), None) => Content::Text(t),
        (None, Some(Value::String(uri))) => Content::Image {
            uri,
            width: dimension(&mut obj, "width")?,
            height: dimension(&mut obj, "height")?,
        },
        (Some(_), Some(_)) => return Err(Error::invalid("line", "has both \"text\" and \"image\"")),
        (None, None) => return Err(Error::invalid("line", "needs \"text\" or \"image\"")),
        _ => return Err(Error::invalid("text/image", "expected a string")),
    };
    let mut asset = NewAsset {
        external_id,
        content,
        meta: BTreeMap::new(),
        status: None,
        priority: 0.0,
        honeypot: false,
        labels: Vec::new(),
    };
    if let Some(meta) = obj.remove("meta") {
        let Value::Object(meta) = meta else {
            return Err(Error::invalid("meta", "expected an object"));
        };
        for (k, v) in meta {
            let v = match v {
                Value::String(s) => MetaValue::Str(s),
                Value::Bool(b) => MetaValue::Bool(b),
                Value::Number(n) => MetaValue::Num(n.as_f64().unwrap_or(f64::NAN)),
                other => {
                    return Err(Error::invalid(
                        format!("meta {k:?}"),
                        format!("expected a string, number or boolean, got {other}"),
                    ))
                }
            };
            asset.meta.insert(k, v);
        }
    }
    if let Some(v) = obj.remove("status") {
        asset.status = Some(string(v, "status")?.parse::<Status>()?);
    }
    if let Some(v) = obj.remove("priority") {
        asset.priority = number(v, "priority")?;
    }
    if let Some(v) = obj.remove("honeypot") {
        asset.honeypot = boolean(v, "honeypot")?;
    }
    if let Some(labels) = obj.remove("labels") {
        let Value::Array(labels) = labels else {
            return Err(Error::invalid("labels", "expected an array"));
        };
        for l in labels {
            let target = LabelTarget {
                external_id: &asset.external_id,
                content: &asset.content,
            };
            let label = parse_label(l, schema, &target)?;
            asset.labels.push(label);
        }
    }
    reject_unknown(&obj, "asset")?;
    Ok(asset)
}

/// The asset a label line is parsed for: its id names it in errors, its text turns
/// code-point span offsets into byte offsets.
pub(crate) struct LabelTarget<'a> {
    pub external_id: &'a str,
    pub content: &'a Content,
}

/// A line's JSON object, with its `"id"` (a string, or a number read as one) taken out:
/// an asset line's, or an `add-labels` line's, whose labels [`parse_labels`] reads once
/// the asset is found.
pub(crate) fn id_and_object(line: &str) -> Result<(String, Map<String, Value>)> {
    let value: Value = serde_json::from_str(line).map_err(|e| Error::invalid("JSON", e))?;
    let Value::Object(mut obj) = value else {
        return Err(Error::invalid("line", "expected a JSON object"));
    };
    let external_id = match obj.remove("id") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(Error::invalid("id", format!("expected a string, got {other}"))),
        None => return Err(Error::invalid("line", "missing \"id\"")),
    };
    Ok((external_id, obj))
}

/// The labels of an `add-labels` line for its asset; nothing but `labels` may remain.
pub(crate) fn parse_labels(
    mut obj: Map<String, Value>,
    schema: &Schema,
    asset: &LabelTarget<'_>,
) -> Result<Vec<NewLabel>> {
    let labels = match obj.remove("labels") {
        Some(Value::Array(labels)) => labels,
        Some(_) => return Err(Error::invalid("labels", "expected an array")),
        None => return Err(Error::invalid("line", "missing \"labels\"")),
    };
    reject_unknown(&obj, "labels line")?;
    labels.into_iter().map(|l| parse_label(l, schema, asset)).collect()
}

fn parse_label(value: Value, schema: &Schema, asset: &LabelTarget<'_>) -> Result<NewLabel> {
    let Value::Object(mut obj) = value else {
        return Err(Error::invalid("label", "expected an object"));
    };
    let source = match (obj.remove("author"), obj.remove("model"), obj.remove("rule")) {
        (Some(a), None, None) => Source::human(string(a, "author")?),
        (None, Some(m), None) => Source::model(&string(m, "model")?)?,
        (None, None, Some(r)) => Source::rule(&string(r, "rule")?)?,
        _ => {
            return Err(Error::invalid(
                "label",
                "needs exactly one of \"author\", \"model\" or \"rule\"",
            ))
        }
    };
    let kind = match obj.remove("kind") {
        Some(k) => LabelKind::parse(&string(k, "kind")?)?,
        None if source.is_human() => LabelKind::Annotation,
        None => LabelKind::Prediction,
    };
    let mut label = NewLabel::new(kind, source);
    if let Some(answers) = obj.remove("answers") {
        let Value::Object(answers) = answers else {
            return Err(Error::invalid("answers", "expected an object"));
        };
        for (job_name, v) in answers {
            let job = schema.job(&job_name).ok_or_else(|| Error::UnknownJob {
                asset: asset.external_id.to_string(),
                job: job_name.clone(),
            })?;
            let answer = match job.kind {
                JobKind::Classification { .. } => Answer::Classes(match v {
                    Value::String(s) => vec![s],
                    Value::Array(items) => items
                        .into_iter()
                        .map(|c| string(c, &format!("answers.{job_name}")))
                        .collect::<Result<_>>()?,
                    other => {
                        return Err(Error::invalid(
                            format!("answers.{job_name}"),
                            format!("expected a class or a list of classes, got {other}"),
                        ))
                    }
                }),
                JobKind::Spans => {
                    let Some(text) = asset.content.text() else {
                        return Err(Error::InvalidAnswer {
                            asset: asset.external_id.to_string(),
                            job: job_name,
                            class: None,
                            reason: "spans need a text asset, this one is an image".into(),
                        });
                    };
                    let mut spans = Vec::new();
                    for item in array(v, &job_name)? {
                        let mut o = object(item, &job_name)?;
                        let class = class_of(&mut o, &job_name)?;
                        let start = index(&mut o, "start", &job_name)?;
                        let end = index(&mut o, "end", &job_name)?;
                        let score = opt_score(&mut o, &job_name)?;
                        reject_unknown(&o, &format!("span of answers.{job_name}"))?;
                        let bad = |which: usize| Error::InvalidAnswer {
                            asset: asset.external_id.to_string(),
                            job: job_name.clone(),
                            class: Some(class.clone()),
                            reason: format!(
                                "span {start}..{end} ({which} is past the text of {} characters)",
                                text.chars().count()
                            ),
                        };
                        let bstart = to_byte_offset(text, start).ok_or_else(|| bad(start))?;
                        let bend = to_byte_offset(text, end).ok_or_else(|| bad(end))?;
                        spans.push(Span {
                            start: offset_u32(bstart)?,
                            end: offset_u32(bend)?,
                            class,
                            score,
                        });
                    }
                    Answer::Spans(spans)
                }
                JobKind::Boxes => {
                    let mut boxes = Vec::new();
                    for item in array(v, &job_name)? {
                        let mut o = object(item, &job_name)?;
                        let class = class_of(&mut o, &job_name)?;
                        let mut coord = |k: &str| -> Result<f32> {
                            let v = o.remove(k).ok_or_else(|| {
                                Error::invalid(format!("box of answers.{job_name}"), format!("missing {k:?}"))
                            })?;
                            Ok(number(v, k)? as f32)
                        };
                        let (x, y, w, h) = (coord("x")?, coord("y")?, coord("w")?, coord("h")?);
                        let score = opt_score(&mut o, &job_name)?;
                        reject_unknown(&o, &format!("box of answers.{job_name}"))?;
                        boxes.push(BBox {
                            x,
                            y,
                            w,
                            h,
                            class,
                            score,
                        });
                    }
                    Answer::Boxes(boxes)
                }
            };
            label.answers.insert(job_name, answer);
        }
    }
    if let Some(scores) = obj.remove("scores") {
        label.scores = parse_scores(scores)?;
    }
    if let Some(s) = obj.remove("seconds") {
        label.seconds = number(s, "seconds")? as f32;
    }
    if let Some(v) = obj.remove("verdict") {
        label.verdict = Some(match string(v, "verdict")?.as_str() {
            "accept" => Verdict::Accept,
            "reject" => Verdict::Reject,
            other => {
                return Err(Error::invalid(
                    "verdict",
                    format!("{other:?} (expected accept or reject)"),
                ))
            }
        });
    }
    reject_unknown(&obj, "label")?;
    Ok(label)
}

fn parse_scores(v: Value) -> Result<Scores> {
    let mut out = Scores::new();
    for (job, classes) in object(v, "scores")? {
        let entry = out.entry(job.clone()).or_default();
        for (class, s) in object(classes, &format!("scores.{job}"))? {
            entry.insert(class, number(s, &format!("scores.{job}"))? as f32);
        }
    }
    Ok(out)
}

/// The byte offset of code point `cp` in `text` (`cp` = number of characters is the end).
pub fn to_byte_offset(text: &str, cp: usize) -> Option<usize> {
    if cp == 0 {
        return Some(0);
    }
    match text.char_indices().nth(cp) {
        Some((b, _)) => Some(b),
        None if text.chars().count() == cp => Some(text.len()),
        None => None,
    }
}

/// The code-point offset of byte offset `byte` in `text` (which must be a char boundary).
pub fn to_codepoint(text: &str, byte: usize) -> usize {
    text.get(..byte)
        .map_or_else(|| text.chars().count(), |s| s.chars().count())
}

fn offset_u32(b: usize) -> Result<u32> {
    u32::try_from(b).map_err(|_| Error::invalid("span", "offset over 4 GiB"))
}

fn reject_unknown(obj: &Map<String, Value>, what: &str) -> Result<()> {
    match obj.keys().next() {
        Some(k) => Err(Error::invalid(what, format!("unknown field {k:?}"))),
        None => Ok(()),
    }
}

fn string(v: Value, what: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(Error::invalid(what, format!("expected a string, got {other}"))),
    }
}

fn number(v: Value, what: &str) -> Result<f64> {
    match v.as_f64() {
        Some(n) if n.is_finite() => Ok(n),
        _ => Err(Error::invalid(what, format!("expected a number, got {v}"))),
    }
}

fn boolean(v: Value, what: &str) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| Error::invalid(what, format!("expected true or false, got {v}")))
}

fn array(v: Value, what: &str) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(Error::invalid(
            format!("answers.{what}"),
            format!("expected a list, got {other}"),
        )),
    }
}

fn object(v: Value, what: &str) -> Result<Map<String, Value>> {
    match v {
        Value::Object(o) => Ok(o),
        other => Err(Error::invalid(what, format!("expected an object, got {other}"))),
    }
}

fn class_of(o: &mut Map<String, Value>, job: &str) -> Result<String> {
    match o.remove("class").or_else(|| o.remove("label")) {
        Some(v) => string(v, &format!("class in answers.{job}")),
        None => Err(Error::invalid(format!("answers.{job}"), "missing \"class\"")),
    }
}

fn index(o: &mut Map<String, Value>, key: &str, job: &str) -> Result<usize> {
    match o.remove(key).and_then(|v| v.as_u64()) {
        Some(n) => usize::try_from(n).map_err(|_| Error::invalid(format!("{key} in answers.{job}"), "too large")),
        None => Err(Error::invalid(
            format!("span of answers.{job}"),
            format!("{key:?} must be a non-negative integer"),
        )),
    }
}

fn opt_score(o: &mut Map<String, Value>, job: &str) -> Result<Option<f32>> {
    o.remove("score")
        .map(|v| number(v, &format!("score in answers.{job}")).map(|n| n as f32))
        .transpose()
}

fn dimension(obj: &mut Map<String, Value>, key: &str) -> Result<u32> {
    match obj.remove(key).and_then(|v| v.as_u64()) {
        Some(n) => u32::try_from(n).map_err(|_| Error::invalid(key, format!("{n} is too large"))),
        None => Err(Error::invalid(
            key,
            "an image needs a non-negative integer width and height",
        )),
    }
}
