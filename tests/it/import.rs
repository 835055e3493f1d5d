//! Imports of the real datasets, checked against counts computed independently here.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use labeldb::{Answer, Format, ImportOptions, LabelKind, Source, Span, Status};

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
