//! Label writes: single labels (CHOICE_DELTA records folded into the selection columns),
//! bulk `add_labels` with its report, unchanged labels and refused batches, and
//! `import --mode add-labels`. The data are the first 600 messages of the SMS Spam
//! Collection (three column blocks), labelled with their gold class.

use labeldb::{Answer, AssetId, Db, Error, Filter, ImportOptions, NewAsset, NewLabel, Selection};

use crate::{data_dir, schema, temp_db, TestResult};

const SCHEMA: &str = r#"{"jobs": [{"name": "category", "kind": "classification", "classes": ["ham", "spam"]}]}"#;
const N: usize = 600;

/// External id, text and gold class of a message.
type Message = (String, String, String);
type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The first `N` messages.
fn messages() -> Res<Vec<Message>> {
    let source = std::fs::read_to_string(data_dir().join("sms_spam_collection/SMSSpamCollection"))?;
    source
        .lines()
        .take(N)
        .enumerate()
        .map(|(i, line)| {
            let (class, text) = line.split_once('\t').ok_or(format!("line {}: no TAB", i + 1))?;
            Ok((format!("sms{i:04}"), text.to_string(), class.to_string()))
        })
        .collect()
}

/// The labels each message gets: the gold annotation by `a1`, and a prediction of
/// `clf@1` that is right on even ids (with a score).
fn labels_of(i: usize, gold: &str) -> [NewLabel; 2] {
    let guess = if i.is_multiple_of(2) {
        gold
    } else if gold == "ham" {
        "spam"
    } else {
        "ham"
    };
    [
        NewLabel::annotation("a1").answer("category", Answer::class(gold)),
        NewLabel::prediction("clf", "1")
            .answer("category", Answer::class(guess))
            .score("category", guess, 0.5 + (i % 50) as f32 / 100.0),
    ]
}

/// A database holding the messages without labels, and their ids.
fn unlabelled() -> Res<(tempfile::TempDir, Db, Vec<AssetId>)> {
    let (dir, db) = temp_db();
    db.create_project("app", "sms", schema(SCHEMA))?;
    let assets = messages()?
        .into_iter()
        .map(|(id, text, _)| NewAsset::text(id, text))
        .collect();
    let ids = db.add_assets("app", "sms", assets)?.added;
    Ok((dir, db, ids))
}

/// The digests of the latest-human and the `clf@1` snapshots (which depend only on
/// external ids, contents and the chosen answers), after a clean verify.
fn digests(db: &Db, name: &str) -> Res<(String, String, u64)> {
    let report = db.verify()?;
    assert!(report.is_clean(), "{name}: verify found {:?}", report.problems);
    let human = db.create_snapshot(
        "app",
        "sms",
        &format!("{name}-h"),
        &Filter::All,
        &Selection::LatestHuman,
    )?;
    let model = Selection::Model {
        name: "clf".into(),
        version: "1".into(),
    };
    let clf = db.create_snapshot("app", "sms", &format!("{name}-m"), &Filter::All, &model)?;
    Ok((human.digest.to_string(), clf.digest.to_string(), human.assets))
}

/// The same labels written three ways — with the assets (whole blocks), one `add_label`
/// at a time in a scattered order (deltas, folded every 16 per block), and one
/// `add_labels` batch — give the same snapshots, and every database verifies clean
/// (verify derives the columns from the records and compares them with the stored
/// blocks with their deltas applied), also after reopening.
#[test]
fn single_bulk_and_inline_labels_give_the_same_columns() -> TestResult {
    let messages = messages()?;

    let (_d1, inline) = temp_db();
    inline.create_project("app", "sms", schema(SCHEMA))?;
    let assets = messages
        .iter()
        .enumerate()
        .map(|(i, (id, text, gold))| {
            let mut a = NewAsset::text(id.clone(), text.clone());
            a.labels.extend(labels_of(i, gold));
            a
        })
        .collect();
    inline.add_assets("app", "sms", assets)?;
    let want = digests(&inline, "inline")?;
    assert_eq!(want.2, N as u64);

    let (dir, single, ids) = unlabelled()?;
    // A scattered order (7 is prime to 600), checking the columns along the way.
    for step in 0..N {
        let i = step * 7 % N;
        for label in labels_of(i, &messages[i].2) {
            single.add_label(ids[i], label)?;
        }
        if step % 97 == 0 {
            assert!(single.verify()?.is_clean(), "after {step} assets");
        }
    }
    assert_eq!(digests(&single, "single")?, want);
    drop(single);
    let single = crate::reopen(&dir.path().join("db"))?;
    assert!(single.verify()?.is_clean());

    let (_d3, bulk, ids) = unlabelled()?;
    let batch: Vec<(AssetId, NewLabel)> = messages
        .iter()
        .enumerate()
        .flat_map(|(i, (_, _, gold))| labels_of(i, gold).map(|l| (ids[i], l)))
        .collect();
    let report = bulk.add_labels(batch.clone())?;
    assert_eq!((report.labels, report.unchanged), (2 * N as u64, 0));
    assert_eq!(report.results.len(), 2 * N);
    assert_eq!(report.results[0].map(|l| l.revision()), Some(0));
    assert_eq!(report.results[1].map(|l| l.revision()), Some(1));
    assert_eq!(digests(&bulk, "bulk")?, want);

    // Again: every label equals the latest of its source, so nothing is written.
    let seq = bulk.last_seq();
    let again = bulk.add_labels(batch)?;
    assert_eq!((again.labels, again.unchanged), (0, 2 * N as u64));
    assert!(again.results.iter().all(Option::is_none));
    assert_eq!(bulk.last_seq(), seq);
    // A changed answer is written (and only it).
    let changed = NewLabel::annotation("a1").answer("category", Answer::class("spam"));
    let r = bulk.add_labels(vec![(ids[0], changed.clone()), (ids[0], changed)])?;
    assert_eq!((r.labels, r.unchanged), (1, 1), "the second repeats the first");
    assert!(bulk.verify()?.is_clean());
    Ok(())
}

/// A refused item refuses the whole batch, named by its index; nothing is written.
#[test]
fn a_bad_item_refuses_the_whole_batch_naming_it() -> TestResult {
    let (_dir, db, ids) = unlabelled()?;
    db.delete_asset("app", ids[3])?;
    let good = || NewLabel::annotation("a1").answer("category", Answer::class("ham"));
    type Case = (usize, NewLabel, AssetId, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        (
            2,
            NewLabel::annotation("a1").answer("category", Answer::class("eggs")),
            ids[2],
            |e| matches!(e, Error::UnknownClass { .. }),
        ),
        (
            2,
            NewLabel::annotation("a1").answer("topic", Answer::class("ham")),
            ids[2],
            |e| matches!(e, Error::UnknownJob { .. }),
        ),
        (2, good(), ids[3], |e| matches!(e, Error::AssetDeleted(_))),
        (2, good(), AssetId(9_999), |e| matches!(e, Error::UnknownAsset(_))),
    ];
    for (at, bad, asset, expected) in cases {
        let seq = db.last_seq();
        let mut batch: Vec<(AssetId, NewLabel)> = (0..at).map(|i| (ids[i], good())).collect();
        batch.push((asset, bad));
        batch.push((ids[5], good()));
        match db.add_labels(batch) {
            Err(Error::InBatch { index, cause }) => {
                assert_eq!(index, at);
                assert!(expected(&cause), "{cause}");
            }
            other => panic!("expected InBatch, got {other:?}"),
        }
        assert_eq!(db.last_seq(), seq, "a refused batch wrote events");
        assert!(db.history(ids[0])?.is_empty(), "a refused batch wrote labels");
    }
    assert!(db.verify()?.is_clean());
    Ok(())
}

fn label_lines(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|(id, _, gold)| {
            format!("{{\"id\": \"{id}\", \"labels\": [{{\"author\": \"a1\", \"answers\": {{\"category\": \"{gold}\"}}}}]}}\n")
        })
        .collect()
}

/// `add-labels` lines: every label written once, a re-run writes nothing, an unknown id
/// stops the import naming its line (nothing of its batch written) or is skipped.
#[test]
fn importing_label_lines_adds_labels_once_and_names_a_bad_line() -> TestResult {
    let messages = messages()?;
    let (_dir, db, ids) = unlabelled()?;
    let lines = label_lines(&messages);
    let options = ImportOptions {
        batch_size: 100,
        ..ImportOptions::new(labeldb::Format::Jsonl)
    };
    let r = db.import_labels_reader("sms", lines.as_bytes(), "labels.jsonl", &options, |_| {})?;
    assert_eq!((r.lines, r.labels, r.unchanged, r.skipped), (N as u64, N as u64, 0, 0));
    let spam = db.count("sms", &labeldb::query::parse("label.category:spam")?)?;
    let gold_spam = messages.iter().filter(|m| m.2 == "spam").count() as u64;
    assert_eq!(spam, gold_spam);
    assert_eq!(db.history(ids[17])?.len(), 1);

    let seq = db.last_seq();
    let again = db.import_labels_reader("sms", lines.as_bytes(), "labels.jsonl", &options, |_| {})?;
    assert_eq!((again.labels, again.unchanged), (0, N as u64));
    assert_eq!(db.last_seq(), seq, "a re-run wrote");

    // An unknown id on line 3 of a fresh file: an error naming the line; the batch
    // holding lines 1-2 is not written.
    let (_dir2, fresh, fresh_ids) = unlabelled()?;
    let mut bad = label_lines(&messages[..5]);
    let third = bad.lines().nth(2).unwrap_or_default().replace("sms0002", "nope");
    bad = bad
        .lines()
        .enumerate()
        .map(|(i, l)| if i == 2 { format!("{third}\n") } else { format!("{l}\n") })
        .collect();
    match fresh.import_labels_reader("sms", bad.as_bytes(), "bad.jsonl", &options, |_| {}) {
        Err(Error::Import { file, line, cause }) => {
            assert_eq!((file.as_str(), line), ("bad.jsonl", 3));
            assert!(matches!(*cause, Error::UnknownExternalId { .. }), "{cause}");
        }
        other => panic!("expected an import error, got {other:?}"),
    }
    assert!(fresh.history(fresh_ids[0])?.is_empty());
    let skipping = ImportOptions {
        skip_invalid: true,
        ..options.clone()
    };
    let r = fresh.import_labels_reader("sms", bad.as_bytes(), "bad.jsonl", &skipping, |_| {})?;
    assert_eq!((r.lines, r.labels, r.skipped), (5, 4, 1));
    assert!(r.skipped_samples[0].starts_with("3: "), "{:?}", r.skipped_samples);

    // A broken line and a label outside the schema name their lines too.
    for (text, cause_is) in [
        ("{\"id\": \"sms0001\", \"labels\": [", "JSON"),
        (
            "{\"id\": \"sms0001\", \"labels\": [{\"author\": \"a1\", \"answers\": {\"category\": \"eggs\"}}]}",
            "eggs",
        ),
        ("{\"id\": \"sms0001\", \"labels\": [], \"text\": \"x\"}", "text"),
    ] {
        let input = format!("{}{text}\n", label_lines(&messages[..1]));
        let seq = fresh.last_seq();
        match fresh.import_labels_reader("sms", input.as_bytes(), "b.jsonl", &options, |_| {}) {
            Err(e @ Error::Import { line: 2, .. }) => assert!(e.to_string().contains(cause_is), "{e}"),
            other => panic!("expected an error on line 2, got {other:?}"),
        }
        assert_eq!(fresh.last_seq(), seq);
    }
    Ok(())
}

/// A delta that empties a block (a review without a verdict after an accepted one, the
/// asset's only review) reads as no block: verify is clean and the selection is empty.
/// The model test found this one.
#[test]
fn a_delta_that_empties_a_block_reads_as_no_block() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("app", "sms", schema(SCHEMA))?;
    let mut asset = NewAsset::text("m1", "free entry in 2 a weekly competition");
    let mut accepted = NewLabel::new(labeldb::LabelKind::Review, labeldb::Source::human("rita"));
    accepted.verdict = Some(labeldb::Verdict::Accept);
    asset.labels.push(accepted);
    let id = db.add_asset("app", "sms", asset)?;
    let reviewed = db.create_snapshot("app", "sms", "before", &Filter::All, &Selection::LatestReviewed)?;
    assert_eq!(reviewed.assets, 1);
    db.add_label(
        id,
        NewLabel::new(labeldb::LabelKind::Review, labeldb::Source::human("rita")),
    )?;
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    let after = db.create_snapshot("app", "sms", "after", &Filter::All, &Selection::LatestReviewed)?;
    assert_eq!(after.assets, 0);
    Ok(())
}
