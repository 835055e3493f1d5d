//! Full-text search: `text:` filters, `Db::search` and `Db::ranked`, checked against this
//! test's own analysis of the texts (split on non-alphanumerics, lower-case, fold
//! accents), and the text index's consistency across deletes, rebuilds and a killed writer.
//!
//! Text search sees what the text index last committed; `Db::flush` commits at once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use labeldb::query::{has_text, parse};
use labeldb::{Answer, AssetId, Db, Format, ImportOptions, NewAsset, NewLabel};

use crate::{data_dir, kill_child, schema, temp_db, TestResult};

const SPAM_SCHEMA: &str = r#"{"jobs": [{"name": "spam", "kind": "classification", "classes": ["ham", "spam"]}]}"#;

// ---- this test's own text analysis ----

/// Folds the accented letters that the test data holds (lower case) to ASCII, as
/// ASCII folding does; anything else is itself. [`sms_messages`] checks that the SMS
/// corpus holds no other letter that folding could change.
fn fold(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ä' => 'a',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ò' | 'ó' | 'ô' | 'ö' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ç' => 'c',
        c => c,
    }
}

/// The words of a text: maximal runs of alphanumeric characters, lower-cased char by
/// char, then folded.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().flat_map(char::to_lowercase).map(fold).collect())
        .collect()
}

/// Whether `seq` occurs consecutively in `ws`.
fn has_phrase(ws: &[String], seq: &[&str]) -> bool {
    ws.windows(seq.len()).any(|w| w.iter().zip(seq).all(|(a, b)| a == b))
}

/// The assets a query selects, by id; panics naming the query on an error.
fn q(db: &Db, project: &str, query: &str) -> BTreeSet<AssetId> {
    match db.query(project, query) {
        Ok(set) => set.iter().collect(),
        Err(e) => panic!("{query:?}: {e}"),
    }
}

// ---- the SMS spam collection ----

const SMS: &str = "sms";

/// One SMS as this test knows it.
struct Msg {
    id: AssetId,
    text: String,
    spam: bool,
    /// Whether it was imported with its gold annotation (every tenth is not, so that
    /// statuses and `NOT label…` differ).
    labelled: bool,
    words: Vec<String>,
}

/// The messages of the SMS spam collection, `(label, text)`, after checking that every
/// non-ASCII letter in them is one [`fold`] knows or one that folding leaves alone.
fn sms_messages() -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let source = std::fs::read_to_string(data_dir().join("sms_spam_collection/SMSSpamCollection"))?;
    let mut out = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let (label, text) = line.split_once('\t').ok_or_else(|| format!("line {}: no TAB", i + 1))?;
        assert!(label == "ham" || label == "spam", "line {}: label {label:?}", i + 1);
        out.push((label.to_string(), text.to_string()));
    }
    let letters: BTreeSet<char> = out
        .iter()
        .flat_map(|(_, t)| t.chars())
        .filter(|c| !c.is_ascii() && c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    // Folded by `fold`, or CJK / Hangzhou numerals, which ASCII folding leaves alone.
    let known: BTreeSet<char> = "üúéèì鈥〨".chars().collect();
    assert!(
        letters.is_subset(&known),
        "the corpus has letters this test's folding does not know: {:?}",
        letters.difference(&known).collect::<Vec<_>>()
    );
    Ok(out)
}

/// The SMS collection imported as native JSONL into project `sms` (a classification job
/// `spam`, a gold annotation on all but every tenth message), flushed.
fn sms_db() -> Result<(tempfile::TempDir, Db, Vec<Msg>), Box<dyn std::error::Error>> {
    let messages = sms_messages()?;
    let (dir, db) = temp_db();
    let jsonl = dir.path().join("sms.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
    for (i, (label, text)) in messages.iter().enumerate() {
        let mut record = serde_json::json!({"id": format!("sms-{i}"), "text": text});
        if i % 10 != 9 {
            record["labels"] = serde_json::json!([{"author": "gold", "answers": {"spam": label}}]);
        }
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.into_inner()?.sync_all()?;
    db.create_project("admin", SMS, schema(SPAM_SCHEMA))?;
    let report = db.import_file("loader", SMS, &jsonl, &ImportOptions::new(Format::Jsonl), |_| {})?;
    assert_eq!((report.imported, report.invalid), (messages.len() as u64, 0));
    db.flush()?;

    let mut by_index: BTreeMap<usize, AssetId> = BTreeMap::new();
    for id in db.asset_ids(SMS)? {
        let ext = db.asset(id)?.external_id;
        let i = ext
            .strip_prefix("sms-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("external id {ext:?}"))?;
        by_index.insert(i, id);
    }
    assert_eq!(by_index.len(), messages.len());
    let msgs = messages
        .into_iter()
        .enumerate()
        .map(|(i, (label, text))| Msg {
            id: by_index[&i],
            spam: label == "spam",
            labelled: i % 10 != 9,
            words: words(&text),
            text,
        })
        .collect();
    Ok((dir, db, msgs))
}

/// The ids of the messages for which `pred` holds.
fn expect(msgs: &[Msg], pred: impl Fn(&Msg) -> bool) -> BTreeSet<AssetId> {
    msgs.iter().filter(|m| pred(m)).map(|m| m.id).collect()
}

fn has_word(m: &Msg, w: &str) -> bool {
    m.words.iter().any(|x| x == w)
}

#[test]
fn sms_term_queries_select_exactly_the_messages_containing_that_word() -> TestResult {
    let (_dir, db, msgs) = sms_db()?;
    // Frequent words, a rare one, one in no message, and `u`, which `ü` folds to.
    for (term, at_least) in [
        ("free", 100),
        ("call", 300),
        ("txt", 100),
        ("win", 10),
        ("love", 50),
        ("ok", 100),
        ("ur", 100),
        ("u", 500),
        ("jurong", 1),
        ("xylophonist", 0),
    ] {
        let expected = expect(&msgs, |m| has_word(m, term));
        assert!(
            expected.len() >= at_least,
            "{term}: the data changed? {} messages",
            expected.len()
        );
        assert_eq!(q(&db, SMS, &format!("text:{term}")), expected, "text:{term}");
        assert_eq!(q(&db, SMS, term), expected, "bare {term}");
        assert_eq!(
            db.query(SMS, &format!("text:{term}"))?.len(),
            expected.len() as u64,
            "{term}"
        );
    }
    // Upper case and accents in the query are analysed like the text.
    assert_eq!(q(&db, SMS, "FREE"), expect(&msgs, |m| has_word(m, "free")));
    assert_eq!(q(&db, SMS, "ü"), expect(&msgs, |m| has_word(m, "u")));
    // A word with punctuation inside is the phrase of its parts.
    assert_eq!(
        q(&db, SMS, "don't"),
        expect(&msgs, |m| has_phrase(&m.words, &["don", "t"]))
    );

    // A sample of the whole vocabulary: every 60th word in sorted order (digits-only words too).
    let vocabulary: BTreeSet<&str> = msgs.iter().flat_map(|m| m.words.iter().map(String::as_str)).collect();
    for w in vocabulary.iter().step_by(60) {
        assert_eq!(
            q(&db, SMS, &format!("text:{w}")),
            expect(&msgs, |m| has_word(m, w)),
            "text:{w}"
        );
    }
    Ok(())
}

/// Plain words joined by AND are answered from the posting lists directly (not by a
/// tantivy query): exact over many segments, with deleted documents, with words some
/// segments lack, and equal to the tantivy-query path (which an `OR` forces).
#[test]
fn sms_conjunctions_of_words_are_exact_across_segments_and_deleted_documents() -> TestResult {
    let messages = sms_messages()?;
    let (_dir, db) = committing_db(Duration::from_secs(3600))?;
    let mut kept: Vec<(AssetId, Vec<String>)> = Vec::new();
    // Eight flushed chunks: eight commits, so several segments.
    for (chunk, part) in messages[..2400].chunks(300).enumerate() {
        let assets = part
            .iter()
            .enumerate()
            .map(|(i, (_, text))| NewAsset::text(format!("m{chunk}-{i}"), text.clone()))
            .collect();
        let report = db.add_assets("admin", DOCS, assets)?;
        kept.extend(report.added.into_iter().zip(part.iter().map(|(_, t)| words(t))));
        db.flush()?;
    }
    for (id, _) in kept.iter().step_by(7) {
        db.delete_asset("admin", *id)?;
    }
    db.flush()?;
    let live: Vec<&(AssetId, Vec<String>)> = kept
        .iter()
        .enumerate()
        .filter(|(j, _)| j % 7 != 0)
        .map(|(_, k)| k)
        .collect();
    let brute = |ws: &[&str]| -> BTreeSet<AssetId> {
        live.iter()
            .filter(|(_, words)| ws.iter().all(|w| words.iter().any(|x| x == w)))
            .map(|(id, _)| *id)
            .collect()
    };
    let frequent = ["u", "to", "i", "you", "the", "call", "free", "ok", "now", "ur", "txt"];
    let mut cases: Vec<Vec<&str>> = Vec::new();
    for (i, a) in frequent.iter().enumerate() {
        for b in &frequent[i + 1..] {
            cases.push(vec![a, b]);
        }
        cases.push(vec![a, "jurong"]);
        cases.push(vec![a, "xylophonist"]);
    }
    cases.push(vec!["u", "to", "you"]);
    cases.push(vec!["call", "free", "now", "txt"]);
    let mut nonempty = 0;
    for ws in &cases {
        let query = ws.join(" AND ");
        let expected = brute(ws);
        nonempty += usize::from(!expected.is_empty());
        assert_eq!(q(&db, DOCS, &query), expected, "{query}");
        assert_eq!(
            q(&db, DOCS, &format!("({query}) OR xylophonist")),
            expected,
            "{query} as one tantivy query"
        );
        assert_eq!(db.query(DOCS, &query)?.len(), expected.len() as u64, "{query}");
        // Ranked from the posting lists as tantivy ranks the same conjunction.
        let want = db.top(DOCS, &parse(&format!("({query}) OR xylophonist"))?, 10_000)?;
        assert_eq!(want.len(), expected.len(), "{query}: tantivy's ranking");
        for limit in [3, 10_000] {
            assert_ranks_like(&db.top(DOCS, &parse(&query)?, limit)?, &want, limit, &query);
        }
        // Deleted assets' documents are gone from the index, not just filtered out.
        assert_eq!(
            q(&db, DOCS, &format!("deleted AND {query}")),
            BTreeSet::new(),
            "{query}"
        );
    }
    assert!(nonempty > 40, "the cases should mostly match something: {nonempty}");
    Ok(())
}

#[test]
fn sms_phrase_and_prefix_queries_select_exactly_the_messages_with_that_sequence_or_word_start() -> TestResult {
    let (_dir, db, msgs) = sms_db()?;
    for phrase in [
        &["call", "now"][..],
        &["please", "call"],
        &["to", "claim", "call"],
        &["free", "entry"],
    ] {
        let expected = expect(&msgs, |m| has_phrase(&m.words, phrase));
        assert!(!expected.is_empty(), "{phrase:?} occurs in no message");
        let quoted = format!("\"{}\"", phrase.join(" "));
        assert_eq!(q(&db, SMS, &format!("text:{quoted}")), expected, "text:{quoted}");
        assert_eq!(q(&db, SMS, &quoted), expected, "{quoted}");
    }
    // Words in the wrong order are a different phrase.
    assert_eq!(
        q(&db, SMS, "text:\"now call\""),
        expect(&msgs, |m| has_phrase(&m.words, &["now", "call"]))
    );
    for prefix in ["win", "free", "txt", "c", "08"] {
        let expected = expect(&msgs, |m| m.words.iter().any(|w| w.starts_with(prefix)));
        assert!(!expected.is_empty(), "{prefix}*");
        assert_eq!(q(&db, SMS, &format!("{prefix}*")), expected, "{prefix}*");
        assert_eq!(q(&db, SMS, &format!("text:{prefix}*")), expected, "text:{prefix}*");
    }
    // `win*` is more than `win`: winner, winning, ...
    assert!(q(&db, SMS, "win*").len() > q(&db, SMS, "win").len());
    Ok(())
}

#[test]
fn sms_text_filters_combined_with_labels_and_status_equal_a_brute_force_evaluation() -> TestResult {
    let (_dir, db, msgs) = sms_db()?;
    let spam_label = |m: &Msg| m.labelled && m.spam;
    let cases: Vec<(&str, BTreeSet<AssetId>)> = vec![
        (
            "text:free AND label.spam:spam",
            expect(&msgs, |m| has_word(m, "free") && spam_label(m)),
        ),
        (
            "text:free AND NOT label.spam:spam",
            expect(&msgs, |m| has_word(m, "free") && !spam_label(m)),
        ),
        (
            "(text:call OR text:txt) AND status:labeled",
            expect(&msgs, |m| (has_word(m, "call") || has_word(m, "txt")) && m.labelled),
        ),
        (
            "(text:call OR text:txt) AND status:todo",
            expect(&msgs, |m| (has_word(m, "call") || has_word(m, "txt")) && !m.labelled),
        ),
        ("NOT text:ok", expect(&msgs, |m| !has_word(m, "ok"))),
        (
            "label.spam:ham AND win* AND NOT text:\"call now\"",
            expect(&msgs, |m| {
                m.labelled
                    && !m.spam
                    && m.words.iter().any(|w| w.starts_with("win"))
                    && !has_phrase(&m.words, &["call", "now"])
            }),
        ),
        ("free txt", expect(&msgs, |m| has_word(m, "free") && has_word(m, "txt"))),
    ];
    for (query, expected) in cases {
        assert!(!expected.is_empty(), "{query}: matches nothing in the data");
        assert_eq!(q(&db, SMS, query), expected, "{query}");
    }
    Ok(())
}

#[test]
fn search_counts_every_match_and_returns_the_best_by_descending_score_with_the_word_highlighted() -> TestResult {
    let (_dir, db, msgs) = sms_db()?;
    let filter = parse("label.spam:spam")?;
    let expected = expect(&msgs, |m| has_word(m, "free") && m.labelled && m.spam);
    assert!(expected.len() > 10);

    let (count, hits) = db.search(SMS, "free", Some(&filter), 10)?;
    assert_eq!(count, expected.len() as u64);
    assert_eq!(hits.len(), 10);
    let (all_count, all) = db.search(SMS, "free", Some(&filter), 10_000)?;
    assert_eq!(all_count, count);
    // Every match exactly once, each satisfying the filter.
    let all_ids: BTreeSet<AssetId> = all.iter().map(|h| h.asset).collect();
    assert_eq!(all.len(), all_ids.len(), "a hit is repeated");
    assert_eq!(all_ids, expected);
    for list in [&hits, &all] {
        for pair in list.windows(2) {
            assert!(pair[0].score >= pair[1].score, "not by descending score: {pair:?}");
        }
        for h in list.iter() {
            assert!(h.score > 0.0, "{h:?}");
            assert!(h.snippet.to_lowercase().contains("[free]"), "{h:?}");
            let m = msgs
                .iter()
                .find(|m| m.id == h.asset)
                .ok_or("a hit outside the corpus")?;
            assert!(
                m.labelled && m.spam && has_word(m, "free"),
                "{h:?} does not match: {:?}",
                m.text
            );
        }
    }
    // The first ten are the ten best of all the matches.
    let top: Vec<f32> = hits.iter().map(|h| h.score).collect();
    let best: Vec<f32> = all.iter().take(10).map(|h| h.score).collect();
    assert_eq!(top, best);

    // Without a filter: every message with the word.
    let (count, _) = db.search(SMS, "free", None, 1)?;
    assert_eq!(count, expect(&msgs, |m| has_word(m, "free")).len() as u64);
    Ok(())
}

#[test]
fn top_returns_the_ids_and_scores_of_search_without_counting_or_snippets() -> TestResult {
    let (_dir, db, msgs) = sms_db()?;
    let filter = parse("label.spam:spam")?;
    for (text, words) in [("free", vec!["free"]), ("free call", vec!["free", "call"])] {
        let (count, all) = db.search(SMS, text, Some(&filter), 10_000)?;
        let by_id: std::collections::BTreeMap<AssetId, f32> = all.iter().map(|h| (h.asset, h.score)).collect();
        let expected = expect(&msgs, |m| words.iter().all(|w| has_word(m, w)) && m.labelled && m.spam);
        assert_eq!(count, expected.len() as u64);
        assert!(expected.len() > 5, "{text}: too few matches to compare rankings");
        // `text AND rest` ranks the text query within rest's bitmap (either side, and
        // with the text parts spread over the conjunction); an OR around it is not of
        // that shape and ranks within the match set.
        for query in [
            format!("({text}) AND label.spam:spam"),
            format!("label.spam:spam AND ({text})"),
            format!("({text}) AND label.spam:spam AND NOT deleted"),
            format!("(({text}) AND label.spam:spam) OR {NOTHING}"),
        ] {
            let f = parse(&query)?;
            for limit in [1, 10, 10_000] {
                let top = db.top(SMS, &f, limit)?;
                assert_eq!(top.len(), expected.len().min(limit), "{query} limit {limit}");
                for (id, score) in &top {
                    let want = by_id.get(id).ok_or_else(|| format!("{query}: {id:?} is not a match"))?;
                    assert!(
                        (score - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{query}: {id:?} {score} vs {want}"
                    );
                }
                // The best `limit` scores, in order, are those of the full ranking.
                let best: Vec<f32> = all.iter().take(limit).map(|h| h.score).collect();
                let got: Vec<f32> = top.iter().map(|t| t.1).collect();
                for (g, b) in got.iter().zip(&best) {
                    assert!(
                        (g - b).abs() <= 1e-4 * b.abs().max(1.0),
                        "{query} limit {limit}: {got:?} vs {best:?}"
                    );
                }
            }
        }
        // A text-only filter ranks among all the project's live assets.
        let (count, all) = db.search(SMS, text, None, 10_000)?;
        let top = db.top(SMS, &parse(text)?, 10_000)?;
        assert_eq!(top.len() as u64, count, "{text} alone");
        let same = top
            .iter()
            .zip(&all)
            .all(|(t, h)| (t.1 - h.score).abs() <= 1e-4 * h.score.abs().max(1.0));
        assert!(same, "{text} alone: the ranking differs from search's");
        let ids: BTreeSet<AssetId> = top.iter().map(|t| t.0).collect();
        assert_eq!(
            ids,
            all.iter().map(|h| h.asset).collect::<BTreeSet<_>>(),
            "{text} alone"
        );
    }
    Ok(())
}

/// A filter that matches nothing and has no text: OR-ed to a filter, it keeps the
/// matches but hides the filter's text part from the conjunction split.
const NOTHING: &str = "(status:todo AND NOT status:todo)";

/// Asserts that `got`, the best `limit` of some matches, ranks like `want`, a full
/// ranking of the same matches computed another way: as many hits, each asset with its
/// score in `want`, and the scores best first as in `want`. Scores agree to 1e-4 (a sum
/// of three or more words' scores may be added up in another order); ties may be in
/// any order.
fn assert_ranks_like(got: &[(AssetId, f32)], want: &[(AssetId, f32)], limit: usize, what: &str) {
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
    let by_id: BTreeMap<AssetId, f32> = want.iter().copied().collect();
    assert_eq!(got.len(), want.len().min(limit), "{what} limit {limit}: hits");
    for ((id, score), (_, best)) in got.iter().zip(want) {
        let of_id = by_id.get(id).unwrap_or_else(|| panic!("{what}: {id:?} is not a match"));
        assert!(close(*score, *of_id), "{what}: {id:?} scores {score}, not {of_id}");
        assert!(
            close(*score, *best),
            "{what} limit {limit}: {score} where the best left is {best}"
        );
        assert!(*score > 0.0, "{what}: {id:?} unscored");
    }
}

#[test]
fn search_ranks_alike_whether_the_text_part_is_scored_alone_or_as_the_union_of_its_words() -> TestResult {
    let (_dir, db, _msgs) = sms_db()?;
    // Text and non-text conjuncts in any arrangement; OR-ing NOTHING to the same filter
    // scores every match by the union of the text leaves (a tantivy query) instead.
    for filter in [
        "free",
        "free AND call",
        "free AND label.spam:spam AND call",
        "call AND you AND NOT label.spam:spam AND now",
        "u AND u AND to",
        "(free OR txt) AND NOT label.spam:ham AND claim*",
        "\"call now\" AND free AND status:labeled",
        "(win OR prize OR cash) AND label.spam:spam",
    ] {
        let split = parse(filter)?;
        let union = parse(&format!("({filter}) OR {NOTHING}"))?;
        let (count, all) = db.ranked(SMS, &union, 10_000)?;
        assert!(count > 3, "{filter}: too few matches ({count}) to compare rankings");
        let want: Vec<(AssetId, f32)> = all.iter().map(|h| (h.asset, h.score)).collect();
        for limit in [1, 10, 10_000] {
            let (n, hits) = db.ranked(SMS, &split, limit)?;
            assert_eq!(n, count, "{filter}: count");
            let got: Vec<(AssetId, f32)> = hits.iter().map(|h| (h.asset, h.score)).collect();
            assert_ranks_like(&got, &want, limit, filter);
            assert_ranks_like(&db.top(SMS, &split, limit)?, &want, limit, filter);
        }
    }
    Ok(())
}

#[test]
fn top_follows_the_scored_matches_with_unscored_ones_by_id() -> TestResult {
    let (_dir, db, ids) = docs_db(&["free tickets", "no match", "free free free", "neither"])?;
    db.add_label(ids[1], NewLabel::annotation("ann").answer("spam", Answer::class("ham")))?;
    db.flush()?;
    let top = db.top(DOCS, &parse("text:free OR status:labeled")?, 10)?;
    let got: Vec<AssetId> = top.iter().map(|t| t.0).collect();
    assert_eq!(
        got,
        vec![ids[2], ids[0], ids[1]],
        "best score first, the unscored match last"
    );
    assert_eq!(top[2].1, 0.0);
    assert!(db.top(DOCS, &parse("text:free AND status:labeled")?, 10)?.is_empty());
    assert_eq!(
        db.top(DOCS, &parse("status:todo")?, 2)?
            .iter()
            .map(|t| t.0)
            .collect::<Vec<_>>(),
        vec![ids[0], ids[2]]
    );
    Ok(())
}

// ---- small fixtures ----

const DOCS: &str = "docs";

/// A project `docs` with these texts (external ids `d0`, `d1`, ...), flushed.
fn docs_db(texts: &[&str]) -> Result<(tempfile::TempDir, Db, Vec<AssetId>), Box<dyn std::error::Error>> {
    let (dir, db) = temp_db();
    db.create_project("admin", DOCS, schema(SPAM_SCHEMA))?;
    let news = texts
        .iter()
        .enumerate()
        .map(|(i, t)| NewAsset::text(format!("d{i}"), *t))
        .collect();
    let ids = db.add_assets("admin", DOCS, news)?.added;
    db.flush()?;
    Ok((dir, db, ids))
}

/// The ids at these positions.
fn at(ids: &[AssetId], is: &[usize]) -> BTreeSet<AssetId> {
    is.iter().map(|i| ids[*i]).collect()
}

#[test]
fn accented_cjk_and_emoji_texts_are_indexed_and_found_by_folded_words() -> TestResult {
    let texts = [
        "Réclamation client n°42",  // 0
        "RÉCLAMATION URGENTE",      // 1
        "reclamations en retard",   // 2
        "東京 の 天気 晴れ",        // 3
        "party 🎉🎉 tonight 👍",    // 4
        "naïve café, crème brûlée", // 5
        "Straße",                   // 6
        "🎉",                       // 7
        "",                         // 8
        "日本語のテキスト",         // 9
    ];
    let (_dir, db, ids) = docs_db(&texts)?;
    let cases: [(&str, &[usize]); 21] = [
        ("reclamation", &[0, 1]),
        ("réclamation", &[0, 1]),
        ("RÉCLAMATION", &[0, 1]),
        ("text:Réclamation", &[0, 1]),
        ("réclam*", &[0, 1, 2]),
        ("RECLAM*", &[0, 1, 2]),
        ("\"réclamation urgente\"", &[1]),
        ("42", &[0]),
        ("東京", &[3]),
        ("天気", &[3]),
        ("東*", &[3]),
        // A run of CJK letters without spaces is one word.
        ("日本語のテキスト", &[9]),
        ("日本語*", &[9]),
        ("party", &[4]),
        // Emoji are not word characters: the words on both sides are adjacent.
        ("\"party tonight\"", &[4]),
        ("\"🎉\"", &[]),
        ("cafe", &[5]),
        ("CAFÉ", &[5]),
        ("crè*", &[5]),
        ("strasse", &[6]),
        ("straße", &[6]),
    ];
    for (query, expected) in cases {
        assert_eq!(q(&db, DOCS, query), at(&ids, expected), "{query}");
    }
    assert_eq!(q(&db, DOCS, "brulee naive"), at(&ids, &[5]));
    // Every text asset is indexed, the empty and emoji-only ones too.
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    // Search highlights the accented word for a folded query.
    let (count, hits) = db.search(DOCS, "reclamation", None, 10)?;
    assert_eq!(count, 2);
    for h in &hits {
        assert!(h.snippet.to_lowercase().contains("[réclamation]"), "{h:?}");
    }
    Ok(())
}

#[test]
fn a_greek_word_in_capitals_is_found_by_that_word_in_any_letter_case() -> TestResult {
    // Upper-case Σ lower-cases to σ inside a word and to ς at its end (`str::to_lowercase`).
    let (_dir, db, ids) = docs_db(&["ΟΔΟΣ ΑΘΗΝΑΣ", "η οδος"])?;
    for query in ["ΟΔΟΣ", "οδος", "Οδος", "text:ΟΔΟΣ"] {
        assert_eq!(q(&db, DOCS, query), at(&ids, &[0, 1]), "{query}");
    }
    Ok(())
}

#[test]
fn a_prefix_of_a_character_that_folds_to_punctuation_finds_only_words_with_that_start() -> TestResult {
    // ASCII folding turns `⑴` (alphanumeric) into `(1)` and `⒈` into `1.`.
    let (_dir, db, ids) = docs_db(&["list ⑴ first", "1st place", "⒈ item", "12 items"])?;
    assert_eq!(q(&db, DOCS, "⑴"), at(&ids, &[0]));
    assert_eq!(q(&db, DOCS, "⑴*"), at(&ids, &[0]));
    assert_eq!(q(&db, DOCS, "⒈*"), at(&ids, &[2]));
    // `⒈` is indexed as `1.`, which does start with `1`.
    assert_eq!(q(&db, DOCS, "1*"), at(&ids, &[1, 2, 3]));
    Ok(())
}

#[test]
fn a_phrase_prefix_finds_every_completion_however_many_words_share_the_prefix() -> TestResult {
    // 1,000 distinct words start with `n`; each follows `call` in one text. (So many that
    // every segment of the index holds far more than 50 of them, however the writer's
    // threads split the documents.)
    let texts: Vec<String> = (0..1000).map(|i| format!("call n{i:03} please")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, db, ids) = docs_db(&refs)?;
    let all: BTreeSet<AssetId> = ids.iter().copied().collect();
    assert_eq!(q(&db, DOCS, "n*"), all);
    let got = q(&db, DOCS, "\"call n\"*");
    let missed: Vec<_> = all.difference(&got).take(5).collect();
    assert_eq!(got.len(), all.len(), "\"call n\"* misses {missed:?}, ...");
    assert_eq!(got, all);
    assert_eq!(q(&db, DOCS, "\"call n7\"*"), at(&ids, &(700..800).collect::<Vec<_>>()));
    Ok(())
}

#[test]
fn search_hits_of_a_prefix_query_have_snippets_with_the_matched_words_highlighted() -> TestResult {
    let (_dir, db, ids) = docs_db(&["we have a winner today", "nothing here", "Winning big, win again"])?;
    let (count, hits) = db.search(DOCS, "win*", None, 10)?;
    assert_eq!(count, 2);
    assert_eq!(hits.iter().map(|h| h.asset).collect::<BTreeSet<_>>(), at(&ids, &[0, 2]));
    for h in &hits {
        assert!(h.snippet.to_lowercase().contains("[win"), "{h:?}");
    }
    Ok(())
}

#[test]
fn ranked_returns_up_to_limit_of_the_matches_even_those_that_match_only_a_non_text_part() -> TestResult {
    let (_dir, db, ids) = docs_db(&["free tickets", "no match", "free free free", "neither"])?;
    db.add_label(ids[1], NewLabel::annotation("ann").answer("spam", Answer::class("ham")))?;
    db.flush()?;
    let filter = parse("text:free OR status:labeled")?;
    let (count, hits) = db.ranked(DOCS, &filter, 10)?;
    assert_eq!(count, 3);
    assert_eq!(
        hits.iter().map(|h| h.asset).collect::<BTreeSet<_>>(),
        at(&ids, &[0, 1, 2])
    );
    Ok(())
}

// ---- lifecycle: delete, restore, purge, new assets ----

/// A database whose text index commits in the background every `interval`, with the
/// empty project `DOCS`.
fn committing_db(interval: Duration) -> Result<(tempfile::TempDir, Db), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = Db::builder().commit_interval(interval).open(dir.path().join("db"))?;
    db.create_project("admin", DOCS, schema(SPAM_SCHEMA))?;
    Ok((dir, db))
}

#[test]
fn soft_delete_restore_purge_and_new_assets_show_in_text_results_once_committed() -> TestResult {
    // No background commit during the test: only `flush` commits the text index.
    let (dir, db) = committing_db(Duration::from_secs(3600))?;
    let texts = ["apple pie", "apple tart", "pear tart", "apple crumble"];
    let news = texts
        .iter()
        .enumerate()
        .map(|(i, t)| NewAsset::text(format!("d{i}"), *t))
        .collect();
    let ids = db.add_assets("admin", DOCS, news)?.added;
    // Not committed yet: text search does not see them.
    assert_eq!(q(&db, DOCS, "apple"), BTreeSet::new());
    db.flush()?;
    assert_eq!(q(&db, DOCS, "apple"), at(&ids, &[0, 1, 3]));

    db.delete_asset("admin", ids[1])?;
    // A soft-deleted asset leaves the results at once (the deleted bitmap), and after
    // the commit the text index no longer holds it.
    assert_eq!(q(&db, DOCS, "apple"), at(&ids, &[0, 3]));
    db.flush()?;
    assert_eq!(q(&db, DOCS, "apple"), at(&ids, &[0, 3]));
    assert_eq!(q(&db, DOCS, "tart"), at(&ids, &[2]));
    assert_eq!(q(&db, DOCS, "deleted"), at(&ids, &[1]));
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);

    db.restore_asset("admin", ids[1])?;
    db.flush()?;
    assert_eq!(q(&db, DOCS, "apple"), at(&ids, &[0, 1, 3]));
    assert_eq!(q(&db, DOCS, "\"apple tart\""), at(&ids, &[1]));

    db.purge_asset("admin", ids[3])?;
    // Purged: gone from results at once, and from the index after the commit.
    assert_eq!(q(&db, DOCS, "apple"), at(&ids, &[0, 1]));
    db.flush()?;
    assert_eq!(q(&db, DOCS, "crumble"), BTreeSet::new());
    assert_eq!(q(&db, DOCS, "apple"), at(&ids, &[0, 1]));

    let new = db.add_asset("admin", DOCS, NewAsset::text("d9", "Apple strudel"))?;
    assert_eq!(q(&db, DOCS, "strudel"), BTreeSet::new());
    db.flush()?;
    assert_eq!(q(&db, DOCS, "strudel"), BTreeSet::from([new]));
    assert_eq!(q(&db, DOCS, "apple"), [ids[0], ids[1], new].into_iter().collect());
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);

    // The same holds after a reopen.
    drop(db);
    let db = crate::reopen(&dir.path().join("db"))?;
    assert_eq!(q(&db, DOCS, "apple"), [ids[0], ids[1], new].into_iter().collect());
    assert_eq!(db.index_info().text_rebuilt, None);
    Ok(())
}

#[test]
fn a_text_filter_does_not_reach_a_soft_deleted_asset_once_committed_even_when_the_filter_mentions_deleted() -> TestResult
{
    let (_dir, db, ids) = docs_db(&["apple pie", "apple tart"])?;
    db.delete_asset("admin", ids[1])?;
    db.flush()?;
    // `deleted` reaches the asset, but the text index holds only live text assets.
    assert_eq!(q(&db, DOCS, "deleted"), at(&ids, &[1]));
    assert_eq!(q(&db, DOCS, "deleted AND text:tart"), BTreeSet::new());
    assert_eq!(q(&db, DOCS, "deleted AND NOT text:tart"), at(&ids, &[1]));
    assert_eq!(q(&db, DOCS, "text:apple"), at(&ids, &[0]));
    Ok(())
}

#[test]
fn a_new_text_asset_becomes_searchable_by_the_background_commit_without_a_flush() -> TestResult {
    let (_dir, db) = committing_db(Duration::from_millis(50))?;
    let id = db.add_asset("admin", DOCS, NewAsset::text("d0", "background commit"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while q(&db, DOCS, "background").is_empty() {
        assert!(Instant::now() < deadline, "not searchable 10 s after the write");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(q(&db, DOCS, "background"), BTreeSet::from([id]));
    Ok(())
}

#[test]
fn after_flush_a_search_sees_every_write_even_while_the_background_committer_races_it() -> TestResult {
    // With a 1 ms interval the committer thread commits between almost every write and
    // flush; a flush that finds nothing new to commit must still see the committer's
    // commit reloaded (it once returned between the committer's commit and reload).
    let (_dir, db) = committing_db(Duration::from_millis(1))?;
    for i in 0..100 {
        let id = db.add_asset("admin", DOCS, NewAsset::text(format!("d{i}"), format!("word{i} tail")))?;
        db.flush()?;
        assert_eq!(
            q(&db, DOCS, &format!("word{i}")),
            BTreeSet::from([id]),
            "write {i} after flush"
        );
    }
    Ok(())
}

// ---- consistency: verify, rebuild, a killed writer ----

/// A text query's expected result over the stored assets: live text assets whose words
/// satisfy `pred`.
fn brute(db: &Db, project: &str, pred: impl Fn(&[String]) -> bool) -> Result<BTreeSet<AssetId>, labeldb::Error> {
    let mut out = BTreeSet::new();
    for id in db.asset_ids(project)? {
        let a = db.asset(id)?;
        if let (false, Some(t)) = (a.deleted, a.content.text()) {
            if pred(&words(t)) {
                out.insert(id);
            }
        }
    }
    Ok(out)
}

/// A damage done to the text index directory while the database is closed.
#[derive(Debug)]
enum Damage {
    /// The whole directory deleted.
    Directory,
    /// `meta.json` overwritten with a JSON document cut short.
    Meta,
    /// The largest file with this extension (of the biggest segment) deleted.
    Delete(&'static str),
    /// The largest file with this extension cut to half its length.
    Halve(&'static str),
    /// The middle byte of the largest file with this extension inverted.
    Flip(&'static str),
}

impl Damage {
    fn apply(&self, text: &Path) -> std::io::Result<()> {
        match self {
            Damage::Directory => std::fs::remove_dir_all(text),
            Damage::Meta => std::fs::write(text.join("meta.json"), "{\"segments\": ["),
            Damage::Delete(extension) => std::fs::remove_file(largest_index_file(text, extension)?),
            Damage::Halve(extension) => {
                let file = largest_index_file(text, extension)?;
                let len = std::fs::metadata(&file)?.len();
                std::fs::OpenOptions::new().write(true).open(file)?.set_len(len / 2)
            }
            Damage::Flip(extension) => {
                let file = largest_index_file(text, extension)?;
                let mut bytes = std::fs::read(&file)?;
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0xff;
                std::fs::write(file, bytes)
            }
        }
    }
}

/// The largest file of the text index with this extension.
fn largest_index_file(text: &Path, extension: &str) -> std::io::Result<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(text)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == extension) {
            files.push((std::fs::metadata(&path)?.len(), path));
        }
    }
    files.sort();
    files
        .pop()
        .map(|(_, path)| path)
        .ok_or_else(|| std::io::Error::other(format!("no .{extension} file in {}", text.display())))
}

#[test]
fn a_text_index_damaged_while_closed_is_rebuilt_on_open_with_the_same_results() -> TestResult {
    let (dir, db, msgs) = sms_db()?;
    // Some soft deletes, so that the rebuild must leave them out.
    for m in msgs.iter().filter(|m| has_word(m, "free")).step_by(3) {
        db.delete_asset("admin", m.id)?;
    }
    db.flush()?;
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    let queries = [
        "free",
        "call",
        "\"call now\"",
        "win*",
        "text:free AND label.spam:spam",
        "deleted",
    ];
    let before: Vec<BTreeSet<AssetId>> = queries.iter().map(|query| q(&db, SMS, query)).collect();
    assert_eq!(
        before[0],
        &expect(&msgs, |m| has_word(m, "free")) - &q(&db, SMS, "deleted"),
        "free"
    );
    let path = db.path().to_path_buf();
    drop(db);

    // Each damage, and the reason the rebuild gives: a damaged segment file is found by
    // its checksum on open, not by the search that would read it (term dictionary,
    // postings, positions, asset-id column).
    let damages = [
        (Damage::Directory, "no usable commit"),
        (Damage::Meta, "damaged"),
        (Damage::Delete("idx"), "damaged"),
        (Damage::Halve("term"), "damaged"),
        (Damage::Flip("term"), "checksum"),
        (Damage::Flip("idx"), "checksum"),
        (Damage::Flip("pos"), "checksum"),
        (Damage::Flip("fast"), "checksum"),
    ];
    for (damage, reason) in damages {
        let what = format!("{damage:?}");
        damage.apply(&path.join("text"))?;
        let db = crate::reopen(&path)?;
        let rebuilt = db.index_info().text_rebuilt;
        assert!(
            rebuilt.as_ref().is_some_and(|r| r.contains(reason)),
            "{what}: {rebuilt:?}"
        );
        for (query, expected) in queries.iter().zip(&before) {
            assert_eq!(&q(&db, SMS, query), expected, "{what}: {query}");
        }
        let report = db.verify()?;
        assert!(report.is_clean(), "{what}: {:?}", report.problems);
        // The rebuilt index was committed: the next open uses it.
        drop(db);
        let db = crate::reopen(&path)?;
        assert_eq!(db.index_info().text_rebuilt, None, "{what}");
        assert_eq!(q(&db, SMS, "free"), before[0], "{what}");
    }
    drop(dir);
    Ok(())
}

/// A segment file of an index that an earlier open checked, damaged in place keeping
/// its length and time (as bit rot would): open does not read such a file again, so
/// `verify` is what finds it, and `verify --repair` rebuilds; so too for a file deleted
/// under an open database.
#[test]
fn a_checked_segment_file_damaged_in_place_is_named_by_verify_and_repaired() -> TestResult {
    use std::io::{Read, Seek, SeekFrom, Write as _};
    let (dir, db, _) = sms_db()?;
    let before = q(&db, SMS, "free OR call");
    let path = db.path().to_path_buf();
    drop(db);
    // This open checks the files and lists them as checked.
    let db = crate::reopen(&path)?;
    assert_eq!(db.index_info().text_rebuilt, None);
    drop(db);

    let file = largest_index_file(&path.join("text"), "term")?;
    let modified = std::fs::metadata(&file)?.modified()?;
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&file)?;
    let middle = f.metadata()?.len() / 2;
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(middle))?;
    f.read_exact(&mut byte)?;
    f.seek(SeekFrom::Start(middle))?;
    f.write_all(&[byte[0] ^ 0xff])?;
    f.set_modified(modified)?;
    drop(f);

    let db = crate::reopen(&path)?;
    assert_eq!(
        db.index_info().text_rebuilt,
        None,
        "open trusts files it checked before"
    );
    // Verify names the damage, repair rebuilds, and search answers as before.
    let named_and_repaired = |what: &dyn Fn(&str) -> bool| -> TestResult {
        let report = db.verify()?;
        assert!(
            report.problems.iter().any(|p| what(&p.message)),
            "{:?}",
            report.problems
        );
        db.repair_indexes()?;
        let report = db.verify()?;
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(q(&db, SMS, "free OR call"), before);
        Ok(())
    };
    let name = file.file_name().and_then(|n| n.to_str()).ok_or("a file name")?;
    named_and_repaired(&|p| p.contains(name) && p.contains("checksum"))?;
    // A segment file deleted under an open database.
    std::fs::remove_file(largest_index_file(&path.join("text"), "pos")?)?;
    named_and_repaired(&|p| p.contains("cannot be checked"))?;
    drop(dir);
    Ok(())
}

/// Words of the killed writer's texts (`text-writer` in src/bin/labeldb-crash-child.rs).
const VOCABULARY: [&str; 8] = ["alpha", "beta", "gamma", "delta", "Épsilon", "zeta", "eta", "théta"];

/// The file the child creates after its first write.
fn started_marker(db_path: &Path) -> std::path::PathBuf {
    db_path.with_extension("started")
}

/// Runs the crash child's `text-writer` scenario (adds, deletes and restores text assets
/// in `docs`, src/bin/labeldb-crash-child.rs) on the database at `path` and SIGKILLs it
/// `delay` after its first write.
fn write_and_get_killed(path: &Path, delay: Duration) -> TestResult {
    let marker = started_marker(path);
    let _ = std::fs::remove_file(&marker);
    kill_child(
        &["text-writer".as_ref(), path.as_os_str(), marker.as_os_str()],
        &marker,
        delay,
    )
}

/// What a text query requires of a text's words.
type WordsPredicate = Box<dyn Fn(&[String]) -> bool>;

/// Every text query of the killed-writer test with its brute-force predicate.
fn child_queries() -> Vec<(String, WordsPredicate)> {
    let mut out: Vec<(String, WordsPredicate)> = Vec::new();
    for w in VOCABULARY {
        let folded = words(w).remove(0);
        let term = folded.clone();
        out.push((format!("text:{w}"), Box::new(move |ws: &[String]| ws.contains(&term))));
    }
    out.push((
        "et*".into(),
        Box::new(|ws: &[String]| ws.iter().any(|w| w.starts_with("et"))),
    ));
    out.push((
        "\"alpha delta\"".into(),
        Box::new(|ws: &[String]| has_phrase(ws, &["alpha", "delta"])),
    ));
    out.push((
        "text:theta AND NOT text:beta".into(),
        Box::new(|ws: &[String]| ws.iter().any(|w| w == "theta") && !ws.iter().any(|w| w == "beta")),
    ));
    out
}

#[test]
fn a_killed_text_writer_leaves_a_verified_index_equal_to_the_stored_texts_and_to_a_repair() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    {
        let db = Db::open(&path)?;
        db.create_project("admin", DOCS, schema(SPAM_SCHEMA))?;
        db.flush()?;
    }
    for delay in [400, 1100] {
        write_and_get_killed(&path, Duration::from_millis(delay))?;
        let db = crate::reopen(&path)?;
        let info = db.index_info();
        assert!(!db.asset_ids(DOCS)?.is_empty(), "the child wrote nothing durable");
        let report = db.verify()?;
        assert!(
            report.is_clean(),
            "killed after {delay} ms: {:?} after {info:?}",
            report.problems
        );
        let mut before = Vec::new();
        for (query, pred) in child_queries() {
            let got = q(&db, DOCS, &query);
            assert_eq!(
                got,
                brute(&db, DOCS, pred)?,
                "killed after {delay} ms: {query} after {info:?}"
            );
            before.push(got);
        }
        db.repair_indexes()?;
        for ((query, _), expected) in child_queries().into_iter().zip(&before) {
            assert_eq!(&q(&db, DOCS, &query), expected, "after repair: {query}");
        }
        let report = db.verify()?;
        assert!(report.is_clean(), "after repair: {:?}", report.problems);
    }
    Ok(())
}

// ---- ranking without text ----

#[test]
fn has_text_is_true_exactly_for_filters_with_a_text_part_outside_not() -> TestResult {
    for (query, expected) in [
        ("text:free", true),
        ("free", true),
        ("\"call now\"", true),
        ("win*", true),
        ("status:todo AND (label.spam:spam OR free)", true),
        ("NOT status:todo AND free", true),
        ("status:todo", false),
        ("label.spam:spam OR honeypot", false),
        ("NOT text:free", false),
        ("status:todo AND NOT (free OR call)", false),
        ("*", false),
        ("", false),
    ] {
        assert_eq!(has_text(&parse(query)?), expected, "{query:?}");
    }
    Ok(())
}

#[test]
fn ranked_on_a_filter_without_text_returns_the_first_matches_in_id_order() -> TestResult {
    let texts: Vec<String> = (0..30).map(|i| format!("text number {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (_dir, db, ids) = docs_db(&refs)?;
    for i in [3, 5, 8, 13, 21, 29] {
        db.add_label(
            ids[i],
            NewLabel::annotation("ann").answer("spam", Answer::class("spam")),
        )?;
    }
    db.add_asset("admin", DOCS, NewAsset::image("img", "a.jpg", 10, 10))?;
    db.flush()?;
    for (query, limit, expected) in [
        ("label.spam:spam", 4, vec![3, 5, 8, 13]),
        ("label.spam:spam", 100, vec![3, 5, 8, 13, 21, 29]),
        ("NOT text:13 AND status:todo AND NOT text:0", 3, vec![1, 2, 4]),
        ("status:labeled AND NOT text:13", 3, vec![3, 5, 8]),
    ] {
        let filter = parse(query)?;
        let (count, hits) = db.ranked(DOCS, &filter, limit)?;
        assert_eq!(count, db.count(DOCS, &filter)?, "{query}");
        let got: Vec<AssetId> = hits.iter().map(|h| h.asset).collect();
        let expected: Vec<AssetId> = expected.iter().map(|i| ids[*i]).collect();
        assert_eq!(got, expected, "{query} limit {limit}");
        for h in &hits {
            assert_eq!(h.score, 0.0, "{h:?}");
            assert!(texts.contains(&h.snippet), "{h:?}");
        }
    }
    // Every asset, text or not, in id order.
    let (count, hits) = db.ranked(DOCS, &parse("*")?, 100)?;
    assert_eq!(count, 31);
    let got: Vec<AssetId> = hits.iter().map(|h| h.asset).collect();
    assert_eq!(got, db.asset_ids(DOCS)?);
    Ok(())
}
