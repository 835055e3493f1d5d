//! Imports of the real datasets, checked against counts computed independently here.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use labeldb::query::parse;
use labeldb::{Answer, BBox, Content, Format, ImportOptions, LabelKind, Selection, Source, Span, Status};

use crate::{data_dir, schema, temp_db, TestResult};

const WNUT_CLASSES: [&str; 6] = ["person", "location", "corporation", "product", "creative-work", "group"];

/// One sentence of a CoNLL file as this test reads it: tokens and entities as
/// `(class, first token, one past the last token)`.
#[derive(Debug, Default)]
struct Sentence {
    tokens: Vec<String>,
    entities: Vec<(String, usize, usize)>,
}

impl Sentence {
    fn text(&self) -> String {
        self.tokens.join(" ")
    }

    /// The entities as byte spans of `text()`.
    fn spans(&self) -> Vec<Span> {
        let mut starts = Vec::with_capacity(self.tokens.len() + 1);
        let mut at = 0;
        for t in &self.tokens {
            starts.push(at);
            at += t.len() + 1;
        }
        self.entities
            .iter()
            .map(|(class, first, last)| Span {
                start: starts[*first] as u32,
                end: (starts[*last - 1] + self.tokens[*last - 1].len()) as u32,
                class: class.clone(),
                score: None,
            })
            .collect()
    }
}

/// What this test's own reading of a CoNLL file finds.
#[derive(Debug, Default)]
struct Conll {
    sentences: Vec<Sentence>,
    tokens: usize,
    /// Sentence breaks that are empty lines / lines of only whitespace.
    empty_breaks: usize,
    whitespace_breaks: usize,
}

/// A deliberately simple reader: TOKEN TAB TAG per line; a blank or whitespace-only line
/// ends a sentence; `B-x` starts an entity, `I-x` continues one of class x and starts one
/// after `O` or after another class.
fn read_conll(path: &Path) -> Conll {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Conll::default();
    let mut current = Sentence::default();
    // The class of the entity open at the previous token, if any.
    let mut open: Option<String> = None;
    for line in text.split('\n') {
        if line.trim().is_empty() {
            if !current.tokens.is_empty() {
                if line.is_empty() {
                    out.empty_breaks += 1;
                } else {
                    out.whitespace_breaks += 1;
                }
                out.sentences.push(std::mem::take(&mut current));
            }
            open = None;
            continue;
        }
        let (token, tag) = line.rsplit_once('\t').unwrap_or_else(|| panic!("no TAB in {line:?}"));
        let i = current.tokens.len();
        current.tokens.push(token.to_string());
        out.tokens += 1;
        let (prefix, class) = match tag.split_once('-') {
            Some((p, c)) => (p, Some(c)),
            None => (tag, None),
        };
        match (prefix, class) {
            ("O", None) => open = None,
            ("B", Some(c)) => {
                current.entities.push((c.to_string(), i, i + 1));
                open = Some(c.to_string());
            }
            ("I", Some(c)) if open.as_deref() == Some(c) => {
                current.entities.last_mut().expect("an open entity").2 = i + 1;
            }
            ("I", Some(c)) => {
                current.entities.push((c.to_string(), i, i + 1));
                open = Some(c.to_string());
            }
            _ => panic!("unexpected tag {tag:?}"),
        }
    }
    if !current.tokens.is_empty() {
        out.sentences.push(current);
    }
    out
}

fn per_class(sentences: &[Sentence]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for s in sentences {
        for (class, _, _) in &s.entities {
            *counts.entry(class.clone()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn wnut17_imports_every_sentence_and_entity_exactly() -> TestResult {
    let (_dir, db) = temp_db();
    let classes = serde_json::to_string(&WNUT_CLASSES)?;
    let json = format!(r#"{{"jobs": [{{"name": "entities", "kind": "spans", "classes": {classes}}}]}}"#);
    db.create_project("admin", "wnut", schema(&json))?;
    // (file, sentences, tokens, entities) from SOURCE.md.
    let files = [
        ("wnut17train.conll", 3_394, 62_730, 1_975),
        ("emerging.dev.conll", 1_009, 15_733, 836),
        ("emerging.test.annotated", 1_287, 23_394, 1_079),
    ];
    let mut total = 0u64;
    let mut all_classes: BTreeMap<String, u64> = BTreeMap::new();
    for (file, sentences, tokens, entities) in files {
        let path = data_dir().join("wnut17").join(file);
        let expected = read_conll(&path);
        assert_eq!(
            expected.sentences.len(),
            sentences,
            "{file}: this test's own reader disagrees with SOURCE.md"
        );
        assert_eq!(expected.tokens, tokens, "{file}: tokens");
        let counts = per_class(&expected.sentences);
        assert_eq!(counts.values().sum::<u64>(), entities, "{file}: entities");
        if file == "wnut17train.conll" {
            // The quirk: both kinds of sentence break occur.
            assert_eq!(
                (expected.empty_breaks, expected.whitespace_breaks),
                (1_000, 2_394),
                "{file}: breaks"
            );
        }

        let mut progress = Vec::new();
        let report = db.import_file("loader", "wnut", &path, &ImportOptions::new(Format::Conll), |r| {
            progress.push(r.imported)
        })?;
        assert_eq!(report.records, sentences as u64, "{file}: records");
        assert_eq!(report.imported, sentences as u64, "{file}: imported");
        assert_eq!(report.labels, sentences as u64, "{file}: one gold label per sentence");
        assert_eq!((report.duplicates, report.invalid), (0, 0), "{file}");
        assert_eq!(report.bytes, std::fs::metadata(&path)?.len(), "{file}: bytes consumed");
        assert_eq!(progress.last().copied(), Some(sentences as u64), "{file}: progress");
        assert!(
            progress.windows(2).all(|w| w[0] <= w[1]),
            "{file}: progress goes backwards"
        );
        total += sentences as u64;

        let mut imported_counts: BTreeMap<String, u64> = BTreeMap::new();
        for (i, sentence) in expected.sentences.iter().enumerate() {
            let ext = format!("{file}:{}", i + 1);
            let asset = db.asset_by_external_id("wnut", &ext)?;
            let text = sentence.text();
            assert_eq!(asset.content.text(), Some(text.as_str()), "{ext}: text");
            assert_eq!(
                asset.status,
                Status::Labeled,
                "{ext}: a gold annotation labels the asset"
            );
            assert_eq!(asset.revisions, 1, "{ext}");
            let history = db.history(asset.id)?;
            assert_eq!(history.len(), 1, "{ext}: history");
            let label = &history[0];
            assert_eq!(label.kind, LabelKind::Annotation, "{ext}");
            assert_eq!(label.source, Source::human("gold"), "{ext}");
            let Some(Answer::Spans(spans)) = label.answers.get("entities") else {
                panic!("{ext}: no spans answer in {:?}", label.answers);
            };
            assert_eq!(spans, &sentence.spans(), "{ext}: spans");
            for (span, (class, first, last)) in spans.iter().zip(&sentence.entities) {
                let slice = &text[span.start as usize..span.end as usize];
                assert_eq!(slice, sentence.tokens[*first..*last].join(" "), "{ext}: span text");
                *imported_counts.entry(class.clone()).or_insert(0) += 1;
            }
        }
        assert_eq!(imported_counts, counts, "{file}: spans per class");
        for (c, n) in counts {
            *all_classes.entry(c).or_default() += n;
        }
    }
    assert_eq!(db.asset_ids("wnut")?.len() as u64, total);
    let train1 = db.asset_by_external_id("wnut", "wnut17train.conll:1")?;
    assert!(
        train1.content.text().is_some_and(|t| t.starts_with("@paulwalk It 's")),
        "{train1:?}"
    );

    // Importing the same files again doubles nothing.
    let before = db.last_seq();
    for (file, sentences, _, _) in files {
        let path = data_dir().join("wnut17").join(file);
        let again = db.import_file("loader", "wnut", &path, &ImportOptions::new(Format::Conll), |_| {})?;
        assert_eq!(
            (again.imported, again.duplicates),
            (0, sentences as u64),
            "{file}: re-import"
        );
    }
    assert_eq!(db.last_seq(), before);
    assert_eq!(db.asset_ids("wnut")?.len() as u64, total);

    let stats = db.stats("wnut")?;
    assert_eq!((stats.assets, stats.deleted, stats.labels), (total, 0, total));
    let by_status: BTreeMap<Status, u64> = Status::ALL
        .iter()
        .map(|s| (*s, if *s == Status::Labeled { total } else { 0 }))
        .collect();
    assert_eq!(stats.by_status, by_status);
    assert_eq!(stats.by_kind, BTreeMap::from([(LabelKind::Annotation, total)]));
    assert_eq!(stats.by_source, BTreeMap::from([("gold".to_string(), total)]));
    assert_eq!(
        stats.classes,
        BTreeMap::from([("entities".to_string(), all_classes.clone())])
    );
    assert_eq!(all_classes.values().sum::<u64>(), 1_975 + 836 + 1_079);
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    Ok(())
}

#[test]
fn sms_spam_collection_imports_as_jsonl_with_747_spam() -> TestResult {
    let source = std::fs::read_to_string(data_dir().join("sms_spam_collection/SMSSpamCollection"))?;
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("sms.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
    let mut messages = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let (label, text) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("line {}: no TAB", i + 1));
        assert!(label == "ham" || label == "spam", "line {}: label {label:?}", i + 1);
        let record = serde_json::json!({
            "id": format!("sms-{}", i + 1),
            "text": text,
            "labels": [{"author": "gold", "answers": {"spam": label}}],
        });
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
        messages.push((label.to_string(), text.to_string()));
    }
    out.flush()?;
    drop(out);
    assert_eq!(messages.len(), 5_574);
    assert_eq!(messages.iter().filter(|(l, _)| l == "spam").count(), 747);

    let (_dbdir, db) = temp_db();
    db.create_project(
        "admin",
        "sms",
        schema(r#"{"jobs": [{"name": "spam", "kind": "classification", "classes": ["ham", "spam"]}]}"#),
    )?;
    let report = db.import_file("loader", "sms", &jsonl, &ImportOptions::new(Format::Jsonl), |_| {})?;
    assert_eq!(
        (report.records, report.imported, report.labels, report.invalid),
        (5_574, 5_574, 5_574, 0)
    );

    let ids = db.asset_ids("sms")?;
    assert_eq!(ids.len(), 5_574);
    let mut spam = 0;
    for (i, (label, text)) in messages.iter().enumerate() {
        let ext = format!("sms-{}", i + 1);
        let asset = db.asset_by_external_id("sms", &ext)?;
        assert_eq!(asset.content.text(), Some(text.as_str()), "{ext}");
        let history = db.history(asset.id)?;
        assert_eq!(history.len(), 1, "{ext}");
        assert_eq!(history[0].answers["spam"], Answer::class(label.as_str()), "{ext}");
        spam += usize::from(history[0].answers["spam"] == Answer::class("spam"));
    }
    assert_eq!(spam, 747);

    let stats = db.stats("sms")?;
    assert_eq!((stats.assets, stats.labels), (5_574, 5_574));
    let classes = BTreeMap::from([("ham".to_string(), 4_827), ("spam".to_string(), 747)]);
    assert_eq!(stats.classes, BTreeMap::from([("spam".to_string(), classes)]));
    assert_eq!(stats.by_status[&Status::Labeled], 5_574);
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    Ok(())
}

#[test]
fn add_assets_reports_exactly_the_existing_external_ids_however_they_interleave_with_stored_ones() -> TestResult {
    // The check scans the stored ids between a chunk's smallest and largest id when
    // few lie there and falls back to one point read per id when many do: both paths,
    // with duplicates at the ends, in the middle, and ids sorting between stored ones.
    let (_dir, db) = temp_db();
    db.create_project(
        "admin",
        "p",
        schema(r#"{"jobs": [{"name": "c", "kind": "classification", "classes": ["x"]}]}"#),
    )?;
    let stored: Vec<String> = (0..500).map(|i| format!("k{:04}", i * 2)).collect();
    let news = |ids: &[&str]| {
        ids.iter()
            .map(|id| labeldb::NewAsset::text(*id, "text"))
            .collect::<Vec<_>>()
    };
    let all: Vec<&str> = stored.iter().map(String::as_str).collect();
    assert!(db.add_assets("admin", "p", news(&all))?.duplicates.is_empty());
    let cases: [(&[&str], &[&str]); 5] = [
        // Few stored ids in range: the merged scan.
        (&["k0100", "k0101", "k0102"], &["k0100", "k0102"]),
        (&["k0101", "k0103", "k0105"], &["k0101"]), // k0101 came in just above
        (&["k0998", "k0998a", "zz"], &["k0998"]),
        // Hundreds of stored ids in range: point reads.
        (
            &["a", "k0000", "k0500", "k0501", "k0998", "zz2"],
            &["k0000", "k0500", "k0998"],
        ),
        (&["k0001", "k0999"], &[]),
    ];
    for (input, expected) in cases {
        let report = db.add_assets("admin", "p", news(input))?;
        let mut dups = report.duplicates.clone();
        dups.sort();
        assert_eq!(dups, expected, "{input:?}");
        assert_eq!(report.added.len(), input.len() - expected.len(), "{input:?}");
    }
    Ok(())
}

/// One BCCD image as this test reads its Pascal VOC file: id (file stem), image file
/// name, size, and each object's class with its corners `xmin, ymin, xmax, ymax`.
struct VocImage {
    id: String,
    file: String,
    width: u32,
    height: u32,
    boxes: Vec<(String, [u32; 4])>,
}

/// The texts between `<tag>` and `</tag>`, in order. BCCD's XML has no attributes on
/// these elements and no nesting of one in itself, so plain scanning is exact here.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find(&close).unwrap_or_else(|| panic!("<{tag}> without {close}"));
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

fn one<'a>(xml: &'a str, tag: &str) -> &'a str {
    match elements(xml, tag)[..] {
        [text] => text.trim(),
        ref found => panic!("{} <{tag}> elements, expected one", found.len()),
    }
}

fn read_voc(path: &Path) -> VocImage {
    let xml = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let int = |xml: &str, tag: &str| -> u32 {
        one(xml, tag)
            .parse()
            .unwrap_or_else(|e| panic!("{}: <{tag}>: {e}", path.display()))
    };
    let size = one(&xml, "size");
    VocImage {
        id: path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string(),
        file: one(&xml, "filename").to_string(),
        width: int(size, "width"),
        height: int(size, "height"),
        boxes: elements(&xml, "object")
            .into_iter()
            .map(|object| {
                let b = one(object, "bndbox");
                let corners = ["xmin", "ymin", "xmax", "ymax"].map(|t| int(b, t));
                (one(object, "name").to_string(), corners)
            })
            .collect(),
    }
}

/// Boxes per class over `images`.
fn boxes_per_class<'a>(images: impl IntoIterator<Item = &'a VocImage>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for image in images {
        for (class, _) in &image.boxes {
            *counts.entry(class.clone()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn bccd_boxes_import_as_jsonl_refusing_the_two_zero_area_boxes_and_keeping_every_other_box_exactly() -> TestResult {
    let root = data_dir().join("bccd");
    let mut files: Vec<_> = std::fs::read_dir(root.join("Annotations"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let images: Vec<VocImage> = files.iter().map(|p| read_voc(p)).collect();
    // Counts from SOURCE.md, found again by this test's own reader.
    assert_eq!(images.len(), 364);
    let all = boxes_per_class(&images);
    assert_eq!(
        all,
        BTreeMap::from([("Platelets".into(), 361), ("RBC".into(), 4_155), ("WBC".into(), 372)])
    );
    let zero_area: Vec<&str> = images
        .iter()
        .filter(|i| i.boxes.iter().any(|(_, [x0, y0, x1, y1])| x0 == x1 || y0 == y1))
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(zero_area, ["BloodImage_00338", "BloodImage_00343"]);
    let mut split = BTreeMap::new();
    for s in ["train", "val", "test"] {
        for id in std::fs::read_to_string(root.join(format!("ImageSets/Main/{s}.txt")))?.lines() {
            assert!(split.insert(id.trim().to_string(), s).is_none(), "{id} in two splits");
        }
    }
    assert_eq!(split.len(), 364);

    // Native JSONL: VOC corners become the top-left corner and the size in pixels.
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("bccd.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
    for image in &images {
        let boxes: Vec<_> = image
            .boxes
            .iter()
            .map(|(class, [x0, y0, x1, y1])| serde_json::json!({"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, "class": class}))
            .collect();
        let record = serde_json::json!({
            "id": image.id,
            "image": format!("JPEGImages/{}", image.file),
            "width": image.width,
            "height": image.height,
            "meta": {"split": split[&image.id]},
            "labels": [{"author": "bccd", "answers": {"cells": boxes}}],
        });
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(out);
    let line_of = |id: &str| images.iter().position(|i| i.id == id).map(|p| p + 1);
    let (first_bad, second_bad) = (
        line_of(zero_area[0]).ok_or("no line")?,
        line_of(zero_area[1]).ok_or("no line")?,
    );

    const SCHEMA: &str = r#"{"jobs": [{"name": "cells", "kind": "boxes", "classes": ["RBC", "WBC", "Platelets"]}]}"#;
    let (_dbdir, db) = temp_db();
    db.create_project("admin", "bccd", schema(SCHEMA))?;

    // Strict: the first zero-area box stops the import, naming its line; the file is one
    // batch, so nothing is written.
    let Err(e) = db.import_file("loader", "bccd", &jsonl, &ImportOptions::new(Format::Jsonl), |_| {}) else {
        panic!("a zero-area box was accepted");
    };
    let message = e.to_string();
    assert!(
        message.contains(&format!("bccd.jsonl:{first_bad}:")) && message.contains("positive size"),
        "{message}"
    );
    assert_eq!(db.asset_ids("bccd")?.len(), 0);

    let options = ImportOptions {
        skip_invalid: true,
        ..ImportOptions::new(Format::Jsonl)
    };
    let report = db.import_file("loader", "bccd", &jsonl, &options, |_| {})?;
    assert_eq!(
        (report.records, report.imported, report.labels, report.invalid),
        (364, 362, 362, 2)
    );
    assert_eq!(report.invalid_samples.len(), 2);
    for (sample, line) in report.invalid_samples.iter().zip([first_bad, second_bad]) {
        assert!(
            sample.starts_with(&format!("{line}:")) && sample.contains("positive size"),
            "{sample}"
        );
    }

    let kept: Vec<&VocImage> = images.iter().filter(|i| !zero_area.contains(&i.id.as_str())).collect();
    for image in &kept {
        let asset = db.asset_by_external_id("bccd", &image.id)?;
        assert_eq!(
            asset.content,
            Content::Image {
                uri: format!("JPEGImages/{}", image.file),
                width: image.width,
                height: image.height
            },
            "{}",
            image.id
        );
        assert_eq!(asset.status, Status::Labeled, "{}", image.id);
        let history = db.history(asset.id)?;
        let expected: Vec<BBox> = image
            .boxes
            .iter()
            .map(|(class, [x0, y0, x1, y1])| BBox {
                x: *x0 as f32,
                y: *y0 as f32,
                w: (x1 - x0) as f32,
                h: (y1 - y0) as f32,
                class: class.clone(),
                score: None,
            })
            .collect();
        assert_eq!(history.len(), 1, "{}", image.id);
        assert_eq!(history[0].answers["cells"], Answer::Boxes(expected), "{}", image.id);
    }
    assert_eq!(kept.iter().map(|i| i.boxes.len()).sum::<usize>(), 4_888 - 14 - 12);
    let stats = db.stats("bccd")?;
    assert_eq!((stats.assets, stats.labels), (362, 362));
    assert_eq!(
        stats.classes,
        BTreeMap::from([("cells".to_string(), boxes_per_class(kept.iter().copied()))])
    );

    // Queries against the same questions asked of this test's own reading.
    let count = |pred: &dyn Fn(&VocImage) -> bool| kept.iter().filter(|i| pred(i)).count() as u64;
    let has = |i: &VocImage, class: &str| i.boxes.iter().any(|(c, _)| c == class);
    type Predicate<'a> = &'a dyn Fn(&VocImage) -> bool;
    let cases: [(&str, Predicate); 4] = [
        ("label.cells:WBC", &|i| has(i, "WBC")),
        ("label.cells:Platelets AND meta.split:test", &|i| {
            has(i, "Platelets") && split[&i.id] == "test"
        }),
        ("NOT label.cells:RBC", &|i| !has(i, "RBC")),
        ("meta.split:train OR meta.split:val", &|i| split[&i.id] != "test"),
    ];
    for (query, pred) in cases {
        assert_eq!(db.query("bccd", query)?.len(), count(pred), "{query}");
    }

    // A training snapshot of train ∪ val exports and re-imports to the same digest.
    let trainval = parse("meta.split:train OR meta.split:val")?;
    let info = db.create_snapshot("trainer", "bccd", "trainval", &trainval, &Selection::LatestHuman)?;
    assert_eq!(info.assets, count(&|i| split[&i.id] != "test"));
    crate::snapshot::round_trip(&db, "bccd", "trainval", SCHEMA)?;
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    Ok(())
}
