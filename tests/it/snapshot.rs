//! Snapshots for training (DESIGN.md "Snapshots for training"): immutable, reproducible
//! dataset versions.
//!
//! 1. Immutability: whatever happens later, a snapshot returns the same examples and digest.
//! 2. Selection policies against a brute-force reading of their documentation.
//! 3. Determinism of shuffles, shards and splits, with pinned values.
//! 4. Diffs against a brute-force diff.
//! 5. Names, tags, deletion and model lineage.
//! 6. Export → import round trips on the shared datasets.
//! 7. Durability and damage.
//! 8. Selection columns: the upgrade of a format-1 database, damage and repair.
//!
//! `LABELDB_PROPTEST_CASES` raises the number of cases of every property here (default 32,
//! fewer for the slower ones).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;

use labeldb::query::parse;
use labeldb::ProblemKind;
use labeldb::{
    Answer, AssetId, BBox, Db, Error, Example, Filter, Format, ImportOptions, Label, LabelId, LabelKind, MetaValue,
    NewAsset, NewLabel, RecordRef, Selection, Snapshot, Source, Span, Status, Verdict,
};
use proptest::prelude::*;

use crate::{data_dir, reopen, schema, temp_db, TestResult};

const P: &str = "p";
const SCHEMA: &str = r#"{"jobs": [{"name": "cat", "kind": "classification", "classes": ["a", "b", "c"]}]}"#;
const CLASSES: [&str; 3] = ["a", "b", "c"];
const AUTHORS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
const MODEL_VERSIONS: [&str; 2] = ["1", "2"];

fn cases(default: u32) -> u32 {
    std::env::var("LABELDB_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        max_shrink_iters: 1024,
        // This module owns no regression file: a failure prints its minimal case.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn model(version: &str) -> Selection {
    Selection::Model {
        name: "m".into(),
        version: version.into(),
    }
}

fn class(job: &str, c: &str) -> BTreeMap<String, Answer> {
    BTreeMap::from([(job.to_string(), Answer::class(c))])
}

/// A review by `rev` with this verdict, of revision `of`, with these answers (none: it
/// takes the reviewed revision's).
fn review(verdict: Verdict, of: Option<LabelId>, answer: Option<&str>) -> NewLabel {
    let mut l = NewLabel::new(LabelKind::Review, Source::human("rev"));
    l.verdict = Some(verdict);
    l.derived_from = of;
    if let Some(c) = answer {
        l = l.answer("cat", Answer::class(c));
    }
    l
}

fn examples(s: &Snapshot) -> labeldb::Result<Vec<Example>> {
    s.iter().collect()
}

fn ids(s: &Snapshot) -> labeldb::Result<Vec<String>> {
    s.iter().map(|e| e.map(|e| e.external_id)).collect()
}

// ---- the brute-force reading of the selection policies ----

/// What `selection` chooses from an asset's history, read from the documentation of
/// [`Selection`] and written independently of the engine: the revision and its answers.
fn expected_choice(selection: &Selection, history: &[Label]) -> Option<(LabelId, BTreeMap<String, Answer>)> {
    match selection {
        Selection::LatestHuman => history
            .iter()
            .rfind(|l| l.kind == LabelKind::Annotation)
            .map(|l| (l.id, l.answers.clone())),
        Selection::Model { name, version } => {
            let source = Source::Model {
                name: name.clone(),
                version: version.clone(),
            };
            history
                .iter()
                .rfind(|l| l.kind == LabelKind::Prediction && l.source == source)
                .map(|l| (l.id, l.answers.clone()))
        }
        Selection::LatestReviewed => {
            let r = history.iter().rfind(|l| l.kind == LabelKind::Review)?;
            if r.verdict != Some(Verdict::Accept) {
                return None;
            }
            if !r.answers.is_empty() {
                return Some((r.id, r.answers.clone()));
            }
            match r.derived_from {
                Some(d) => Some((r.id, history.iter().find(|l| l.id == d)?.answers.clone())),
                // A review with no answers and nothing it derives from accepts nothing more.
                None => Some((r.id, r.answers.clone())),
            }
        }
        Selection::Majority => {
            // The latest human annotation of each author votes for its answers.
            let mut latest: BTreeMap<String, &Label> = BTreeMap::new();
            for l in history.iter().filter(|l| l.kind == LabelKind::Annotation) {
                latest.insert(l.source.to_string(), l);
            }
            // Groups of identical answers: (answers, votes, most recent revision).
            let mut groups: Vec<(&BTreeMap<String, Answer>, usize, LabelId)> = Vec::new();
            for l in latest.values() {
                match groups.iter_mut().find(|g| *g.0 == l.answers) {
                    Some(g) => {
                        g.1 += 1;
                        g.2 = g.2.max(l.id);
                    }
                    None => groups.push((&l.answers, 1, l.id)),
                }
            }
            // The largest group; on a tie, the one holding the most recent revision.
            groups
                .into_iter()
                .max_by(|x, y| x.1.cmp(&y.1).then(x.2.cmp(&y.2)))
                .map(|(answers, _, id)| (id, answers.clone()))
        }
    }
}

/// One expected example: external id, chosen revision, chosen answers.
type Expected = (String, LabelId, BTreeMap<String, Answer>);

/// The examples a snapshot of the live assets for which `keep` holds must have now, from
/// primary data, in external-id order.
fn expected_examples(
    db: &Db,
    project: &str,
    keep: impl Fn(&labeldb::Asset) -> bool,
    selection: &Selection,
) -> labeldb::Result<Vec<Expected>> {
    let mut out = Vec::new();
    for id in db.asset_ids(project)? {
        let asset = db.asset(id)?;
        if asset.deleted || !keep(&asset) {
            continue;
        }
        if let Some((label, answers)) = expected_choice(selection, &db.history(id)?) {
            out.push((asset.external_id, label, answers));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The snapshot's examples as (external id, revision, answers), checking each example's
/// content against its asset.
fn observed_examples(db: &Db, s: &Snapshot) -> labeldb::Result<Vec<Expected>> {
    let mut out = Vec::new();
    for e in s.iter() {
        let e = e?;
        let asset = db.asset(e.asset)?;
        assert_eq!(
            (&asset.external_id, &asset.content),
            (&e.external_id, &e.content),
            "example {}",
            e.external_id
        );
        assert_eq!(
            e.label.asset(),
            e.asset,
            "example {}: label of another asset",
            e.external_id
        );
        out.push((e.external_id, e.label, e.answers));
    }
    Ok(out)
}

// ---- generated label histories ----

/// One label write on an asset.
#[derive(Clone, Debug)]
enum Write {
    /// A human annotation by `AUTHORS[author % authors]` choosing `CLASSES[class]`.
    Annotate { author: u8, class: u8 },
    /// A prediction of model `m@MODEL_VERSIONS[version]`, with a score.
    Predict { version: u8, class: u8, score: u8 },
    /// A review of revision `of % revisions` (none when the asset has no revision or
    /// `of` is `None`), with corrected answers or without.
    Review {
        accept: bool,
        of: Option<u8>,
        answer: Option<u8>,
    },
}

fn write_gen(authors: u8) -> impl Strategy<Value = Write> {
    prop_oneof![
        4 => (0..authors, 0..3u8).prop_map(|(author, class)| Write::Annotate { author, class }),
        2 => (0..2u8, 0..3u8, 0..=100u8).prop_map(|(version, class, score)| Write::Predict { version, class, score }),
        3 => (any::<bool>(), prop::option::weighted(0.8, any::<u8>()), prop::option::of(0..3u8))
            .prop_map(|(accept, of, answer)| Write::Review { accept, of, answer }),
    ]
}

/// Writes `w` on asset `id` through `Db::add_label`.
fn apply_write(db: &Db, id: AssetId, w: &Write) -> labeldb::Result<LabelId> {
    let label = match *w {
        Write::Annotate { author, class } => {
            NewLabel::annotation(AUTHORS[usize::from(author)]).answer("cat", Answer::class(CLASSES[usize::from(class)]))
        }
        Write::Predict { version, class, score } => {
            let c = CLASSES[usize::from(class)];
            NewLabel::prediction("m", MODEL_VERSIONS[usize::from(version)])
                .answer("cat", Answer::class(c))
                .score("cat", c, f32::from(score) / 100.0)
        }
        Write::Review { accept, of, answer } => {
            let revisions = db.asset(id)?.revisions;
            let of = of
                .filter(|_| revisions > 0)
                .map(|o| LabelId::new(id, u32::from(o) % revisions));
            let verdict = if accept { Verdict::Accept } else { Verdict::Reject };
            review(verdict, of, answer.map(|c| CLASSES[usize::from(c)]))
        }
    };
    db.add_label(id, label)
}

/// Creates project `P` and one asset `a{i}` per history, each written label by label.
fn populate(db: &Db, histories: &[Vec<Write>]) -> labeldb::Result<Vec<AssetId>> {
    db.create_project("admin", P, schema(SCHEMA))?;
    let mut out = Vec::new();
    for (i, h) in histories.iter().enumerate() {
        let id = db.add_asset(
            "admin",
            P,
            NewAsset::text(format!("a{i:02}"), format!("text of asset {i}")),
        )?;
        for w in h {
            apply_write(db, id, w)?;
        }
        out.push(id);
    }
    Ok(out)
}

// ---- 1. immutability ----

/// An operation after the snapshots were taken. Asset numbers are taken modulo the
/// number of assets.
#[derive(Clone, Debug)]
enum Later {
    Label {
        asset: u8,
        write: Write,
    },
    Status {
        asset: u8,
        to: u8,
    },
    Meta {
        asset: u8,
        value: u8,
    },
    /// `add_assets` with the external id of an existing asset, other content and a label.
    Reimport {
        asset: u8,
        class: u8,
    },
    Delete {
        asset: u8,
    },
    Restore {
        asset: u8,
    },
    NewAsset {
        write: Option<Write>,
    },
    Reopen,
}

fn later_gen() -> impl Strategy<Value = Later> {
    prop_oneof![
        6 => (any::<u8>(), write_gen(3)).prop_map(|(asset, write)| Later::Label { asset, write }),
        3 => (any::<u8>(), 0..5u8).prop_map(|(asset, to)| Later::Status { asset, to }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(asset, value)| Later::Meta { asset, value }),
        2 => (any::<u8>(), 0..3u8).prop_map(|(asset, class)| Later::Reimport { asset, class }),
        2 => any::<u8>().prop_map(|asset| Later::Delete { asset }),
        1 => any::<u8>().prop_map(|asset| Later::Restore { asset }),
        2 => prop::option::of(write_gen(3)).prop_map(|write| Later::NewAsset { write }),
        1 => Just(Later::Reopen),
    ]
}

/// The snapshots taken in the immutability property: name, filter, selection.
fn immutability_snapshots() -> Vec<(&'static str, &'static str, Selection)> {
    vec![
        ("snap-human", "*", Selection::LatestHuman),
        ("snap-majority", "*", Selection::Majority),
        ("snap-reviewed", "*", Selection::LatestReviewed),
        ("snap-model", "*", model("1")),
        ("snap-labeled", "status:labeled", Selection::LatestHuman),
    ]
}

/// What a snapshot returned when it was made.
struct Recorded {
    name: &'static str,
    info: labeldb::SnapshotInfo,
    examples: Vec<Example>,
}

fn check_unchanged(db: &Db, recorded: &[Recorded], after: &str) -> labeldb::Result<()> {
    for r in recorded {
        let s = db.snapshot(P, r.name)?;
        assert_eq!(s.info(), &r.info, "{}: info changed after {after}", r.name);
        assert_eq!(
            db.snapshot_info(P, r.name)?,
            r.info,
            "{}: snapshot_info changed after {after}",
            r.name
        );
        assert_eq!(s.len(), r.examples.len(), "{}: length changed after {after}", r.name);
        for (i, want) in r.examples.iter().enumerate() {
            assert_eq!(&s.get(i)?, want, "{}: example {i} changed after {after}", r.name);
        }
    }
    Ok(())
}

fn is_refusal(e: &Error) -> bool {
    matches!(e, Error::AssetDeleted(_) | Error::IllegalTransition { .. })
}

fn run_immutability(histories: Vec<Vec<Write>>, later: Vec<Later>) -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let mut db = Db::open(&path)?;
    let mut assets = populate(&db, &histories)?;
    let mut recorded = Vec::new();
    for (name, filter, selection) in immutability_snapshots() {
        let info = db.create_snapshot("trainer", P, name, &parse(filter)?, &selection)?;
        let s = db.snapshot(P, name)?;
        assert_eq!(s.info(), &info);
        let keep = |a: &labeldb::Asset| filter == "*" || a.status == Status::Labeled;
        assert_eq!(
            observed_examples(&db, &s)?,
            expected_examples(&db, P, keep, &selection)?,
            "{name} when it was made"
        );
        recorded.push(Recorded {
            name,
            info,
            examples: examples(&s)?,
        });
    }
    let members: BTreeSet<String> = recorded
        .iter()
        .flat_map(|r| r.examples.iter().map(|e| e.external_id.clone()))
        .collect();

    for (step, op) in later.iter().enumerate() {
        let pick = |n: u8| assets[usize::from(n) % assets.len()];
        let result = match op {
            Later::Label { asset, write } => apply_write(&db, pick(*asset), write).map(|_| ()),
            Later::Status { asset, to } => db.set_status("lead", pick(*asset), Status::ALL[usize::from(*to)]),
            Later::Meta { asset, value } => {
                db.set_meta("lead", pick(*asset), "batch", Some(MetaValue::Num(f64::from(*value))))
            }
            Later::Reimport { asset, class } => {
                let ext = db.asset(pick(*asset))?.external_id;
                let again = NewAsset::text(ext.clone(), "other content under the same external id").with_label(
                    NewLabel::annotation("importer").answer("cat", Answer::class(CLASSES[usize::from(*class)])),
                );
                let report = db.add_assets("importer", P, vec![again])?;
                assert_eq!(
                    (report.added.len(), report.duplicates),
                    (0, vec![ext]),
                    "re-import of an existing id"
                );
                Ok(())
            }
            Later::Delete { asset } => db.delete_asset("lead", pick(*asset)),
            Later::Restore { asset } => db.restore_asset("lead", pick(*asset)),
            Later::NewAsset { write } => {
                let id = db.add_asset(
                    "lead",
                    P,
                    NewAsset::text(format!("n{step:03}"), format!("new text {step}")),
                )?;
                assets.push(id);
                match write {
                    Some(w) => apply_write(&db, id, w).map(|_| ()),
                    None => Ok(()),
                }
            }
            Later::Reopen => {
                drop(db);
                db = reopen(&path)?;
                Ok(())
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if is_refusal(&e) => {}
            Err(e) => panic!("step {step} {op:?}: {e}"),
        }
        check_unchanged(&db, &recorded, &format!("step {step} {op:?}"))?;
    }

    for r in &recorded {
        assert_eq!(db.verify_snapshot(P, r.name)?, Vec::<String>::new(), "{}", r.name);
    }
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);

    // Purging a member is refused, naming every snapshot that holds it; nothing changes.
    let project = P;
    for ext in &members {
        let asset = db.asset_by_external_id(P, ext)?;
        let holders: Vec<&str> = recorded
            .iter()
            .filter(|r| r.examples.iter().any(|e| &e.external_id == ext))
            .map(|r| r.name)
            .collect();
        let mut held = db.snapshots_holding(project, asset.id)?;
        held.sort();
        let mut want: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
        want.sort();
        assert_eq!(held, want, "snapshots holding {ext}");
        let seq = db.last_seq();
        match db.purge_asset("admin", asset.id) {
            Err(e @ Error::HeldBySnapshots { .. }) => {
                let msg = e.to_string();
                for h in &holders {
                    assert!(msg.contains(h), "purge of {ext}: {msg:?} does not name {h}");
                }
            }
            other => panic!("purge of member {ext}: expected a refusal, got {other:?}"),
        }
        assert_eq!(db.last_seq(), seq, "a refused purge wrote an event");
        assert_eq!(db.asset(asset.id)?, asset, "a refused purge changed {ext}");
    }
    // Purging an asset no snapshot holds succeeds, and changes no snapshot.
    let loose = db.add_asset(
        "admin",
        P,
        NewAsset::text("loose", "never in a snapshot")
            .with_label(NewLabel::annotation("alice").answer("cat", Answer::class("a"))),
    )?;
    let mut purged = vec![loose];
    purged.extend(assets.iter().copied().filter(|id| {
        let ext = db.asset(*id).map(|a| a.external_id).unwrap_or_default();
        !members.contains(&ext)
    }));
    for id in purged {
        assert_eq!(db.snapshots_holding(project, id)?, Vec::<String>::new());
        db.purge_asset("admin", id)?;
        assert!(
            matches!(db.asset(id), Err(Error::UnknownAsset(_))),
            "{id} still readable after its purge"
        );
    }
    check_unchanged(&db, &recorded, "the purges")?;
    drop(db);
    let db = reopen(&path)?;
    check_unchanged(&db, &recorded, "the final reopen")?;
    for r in &recorded {
        assert_eq!(
            db.verify_snapshot(P, r.name)?,
            Vec::<String>::new(),
            "{} at the end",
            r.name
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(32))]

    /// Three annotators: with five, `verify_snapshot` reports false problems on majority
    /// snapshots (see `verify_snapshot_is_clean_for_a_majority_snapshot_taken_after_a_losing_annotator_changed_answer`).
    #[test]
    fn every_snapshot_returns_the_same_examples_and_digest_whatever_happens_later(
        histories in prop::collection::vec(prop::collection::vec(write_gen(3), 0..7), 2..9),
        later in prop::collection::vec(later_gen(), 1..30),
    ) {
        if let Err(e) = run_immutability(histories, later) {
            panic!("{e}");
        }
    }
}

// ---- 2. selection semantics ----

fn run_selection(histories: Vec<Vec<Write>>, labeled_only: Vec<bool>) -> TestResult {
    let (_dir, db) = temp_db();
    let assets = populate(&db, &histories)?;
    // Move some assets out of LABELED, so that the status filter has something to leave out.
    for (id, move_out) in assets.iter().zip(labeled_only) {
        if move_out && db.asset(*id)?.status == Status::Labeled {
            db.set_status("lead", *id, Status::ToReview)?;
        }
    }
    let selections = [
        Selection::LatestHuman,
        Selection::Majority,
        Selection::LatestReviewed,
        model("1"),
        model("2"),
    ];
    for (n, selection) in selections.iter().enumerate() {
        for (f, filter) in ["*", "status:labeled"].into_iter().enumerate() {
            let name = format!("s{n}-{f}");
            db.create_snapshot("trainer", P, &name, &parse(filter)?, selection)?;
            let s = db.snapshot(P, &name)?;
            let keep = |a: &labeldb::Asset| filter == "*" || a.status == Status::Labeled;
            let want = expected_examples(&db, P, keep, selection)?;
            assert_eq!(observed_examples(&db, &s)?, want, "{selection} with filter {filter:?}");
            assert_eq!(s.info().assets, want.len() as u64);
            assert_eq!(&s.info().selection, selection);
            assert_eq!(s.info().filter, filter);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn every_selection_chooses_what_a_brute_force_reading_of_its_documentation_chooses(
        histories in prop::collection::vec(prop::collection::vec(write_gen(5), 0..9), 1..10),
        labeled_only in prop::collection::vec(any::<bool>(), 10),
    ) {
        if let Err(e) = run_selection(histories, labeled_only) {
            panic!("{e}");
        }
    }
}

/// Adds asset `ext` with the given labels written one by one (reviews may refer to the
/// revisions before them as `LabelId::new(id, rev)`), returning its id.
fn asset_with(db: &Db, ext: &str, labels: Vec<Box<dyn Fn(AssetId) -> NewLabel>>) -> labeldb::Result<AssetId> {
    let id = db.add_asset("admin", P, NewAsset::text(ext, format!("text of {ext}")))?;
    for l in labels {
        db.add_label(id, l(id))?;
    }
    Ok(id)
}

fn ann(author: &'static str, c: &'static str) -> Box<dyn Fn(AssetId) -> NewLabel> {
    Box::new(move |_| NewLabel::annotation(author).answer("cat", Answer::class(c)))
}

fn pred(version: &'static str, c: &'static str) -> Box<dyn Fn(AssetId) -> NewLabel> {
    Box::new(move |_| {
        NewLabel::prediction("m", version)
            .answer("cat", Answer::class(c))
            .score("cat", c, 0.9)
    })
}

fn rev(verdict: Verdict, of: Option<u32>, answer: Option<&'static str>) -> Box<dyn Fn(AssetId) -> NewLabel> {
    Box::new(move |id| review(verdict, of.map(|r| LabelId::new(id, r)), answer))
}

/// An example as (external id, revision number, answers).
type Chosen = (String, u32, BTreeMap<String, Answer>);

/// The examples of a snapshot as [`Chosen`].
fn chosen(s: &Snapshot) -> labeldb::Result<Vec<Chosen>> {
    s.iter()
        .map(|e| e.map(|e| (e.external_id, e.label.revision(), e.answers)))
        .collect()
}

#[test]
fn majority_takes_the_largest_group_of_each_authors_latest_answers_and_breaks_a_tie_for_the_group_with_the_most_recent_revision(
) -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    use Verdict::Accept;
    // Two against one: the group's most recent revision is chosen (bob's, rev 1).
    asset_with(&db, "m1", vec![ann("alice", "a"), ann("bob", "a"), ann("carol", "b")])?;
    // A tie: the group holding the most recent revision (bob's b, rev 1) wins.
    asset_with(&db, "m2", vec![ann("alice", "a"), ann("bob", "b")])?;
    // Only each author's latest annotation votes: alice's two a's are one vote, and her
    // change of mind to c (rev 3) makes a three-way tie (a, b, c) that carol's a wins as the
    // most recent revision (rev 4).
    asset_with(
        &db,
        "m3",
        vec![
            ann("alice", "a"),
            ann("alice", "a"),
            ann("bob", "b"),
            ann("alice", "c"),
            ann("carol", "a"),
        ],
    )?;
    // Predictions and reviews do not vote.
    asset_with(
        &db,
        "m4",
        vec![
            ann("alice", "a"),
            pred("1", "b"),
            pred("2", "b"),
            rev(Accept, Some(0), Some("b")),
            ann("bob", "c"),
        ],
    )?;
    // Re-annotating with the same answer moves the group's most recent revision.
    asset_with(&db, "m5", vec![ann("alice", "a"), ann("bob", "b"), ann("alice", "a")])?;
    // No human annotation: left out.
    asset_with(&db, "m6", vec![pred("1", "a"), rev(Accept, Some(0), None)])?;
    db.create_snapshot("trainer", P, "maj", &Filter::All, &Selection::Majority)?;
    let want = vec![
        ("m1".to_string(), 1, class("cat", "a")),
        ("m2".to_string(), 1, class("cat", "b")),
        ("m3".to_string(), 4, class("cat", "a")),
        ("m4".to_string(), 4, class("cat", "c")),
        ("m5".to_string(), 2, class("cat", "a")),
    ];
    assert_eq!(chosen(&db.snapshot(P, "maj")?)?, want);
    Ok(())
}

#[test]
fn latest_reviewed_takes_the_latest_review_only_when_it_accepts_and_without_answers_the_reviewed_revisions(
) -> TestResult {
    use Verdict::{Accept, Reject};
    let (_dir, db) = temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    // Accepted without answers: the reviewed revision's answers, the review's revision.
    asset_with(&db, "r1", vec![ann("alice", "a"), rev(Accept, Some(0), None)])?;
    // Accepted with corrected answers: the review's answers.
    asset_with(&db, "r2", vec![ann("alice", "a"), rev(Accept, Some(0), Some("c"))])?;
    // Accepted, then rejected: the latest review rejects, left out.
    asset_with(
        &db,
        "r3",
        vec![
            ann("alice", "a"),
            rev(Accept, Some(0), None),
            rev(Reject, Some(0), None),
        ],
    )?;
    // Rejected, then accepted: in.
    asset_with(
        &db,
        "r4",
        vec![
            ann("alice", "a"),
            rev(Reject, Some(0), None),
            ann("alice", "b"),
            rev(Accept, Some(2), None),
        ],
    )?;
    // The reviewed revision is not the latest: its answers (a), not the latest's (b).
    asset_with(
        &db,
        "r5",
        vec![ann("alice", "a"), ann("alice", "b"), rev(Accept, Some(0), None)],
    )?;
    // A review of a prediction takes the prediction's answers.
    asset_with(
        &db,
        "r6",
        vec![pred("1", "c"), ann("bob", "a"), rev(Accept, Some(0), None)],
    )?;
    // Annotations after the accepted review do not change the choice.
    asset_with(
        &db,
        "r7",
        vec![ann("alice", "a"), rev(Accept, Some(0), None), ann("alice", "b")],
    )?;
    // Never reviewed: left out.
    asset_with(&db, "r8", vec![ann("alice", "a")])?;
    db.create_snapshot("trainer", P, "rev", &Filter::All, &Selection::LatestReviewed)?;
    let want = vec![
        ("r1".to_string(), 1, class("cat", "a")),
        ("r2".to_string(), 1, class("cat", "c")),
        ("r4".to_string(), 3, class("cat", "b")),
        ("r5".to_string(), 2, class("cat", "a")),
        ("r6".to_string(), 2, class("cat", "c")),
        ("r7".to_string(), 1, class("cat", "a")),
    ];
    assert_eq!(chosen(&db.snapshot(P, "rev")?)?, want);
    Ok(())
}

#[test]
fn assets_without_a_label_the_selection_chooses_are_left_out_and_the_status_filter_applies() -> TestResult {
    use Verdict::Accept;
    let (_dir, db) = temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    asset_with(&db, "none", vec![])?;
    asset_with(&db, "only-pred", vec![pred("1", "a")])?;
    asset_with(&db, "only-pred-v2", vec![pred("2", "b")])?;
    asset_with(&db, "human", vec![ann("alice", "b")])?;
    asset_with(
        &db,
        "human-reviewed",
        vec![ann("alice", "c"), pred("1", "a"), rev(Accept, Some(0), None)],
    )?;
    let moved = asset_with(&db, "human-to-review", vec![ann("alice", "a")])?;
    db.set_status("lead", moved, Status::ToReview)?;
    let deleted = asset_with(&db, "human-deleted", vec![ann("alice", "a")])?;
    db.delete_asset("lead", deleted)?;

    let cases: Vec<(Selection, &str, Vec<&str>)> = vec![
        (
            Selection::LatestHuman,
            "*",
            vec!["human", "human-reviewed", "human-to-review"],
        ),
        (
            Selection::Majority,
            "*",
            vec!["human", "human-reviewed", "human-to-review"],
        ),
        (Selection::LatestReviewed, "*", vec!["human-reviewed"]),
        (model("1"), "*", vec!["human-reviewed", "only-pred"]),
        (model("2"), "*", vec!["only-pred-v2"]),
        (
            Selection::LatestHuman,
            "status:labeled",
            vec!["human", "human-reviewed"],
        ),
        (Selection::Majority, "status:labeled", vec!["human", "human-reviewed"]),
        (model("1"), "status:labeled", vec!["human-reviewed"]),
        (model("1"), "status:todo", vec!["only-pred"]),
    ];
    for (n, (selection, filter, want)) in cases.into_iter().enumerate() {
        let name = format!("s{n}");
        db.create_snapshot("trainer", P, &name, &parse(filter)?, &selection)?;
        let s = db.snapshot(P, &name)?;
        assert_eq!(ids(&s)?, want, "{selection} {filter:?}");
        assert_eq!(s.info().filter, filter);
    }
    Ok(())
}

#[test]
fn selections_parse_from_and_print_to_their_documented_names() -> TestResult {
    for (text, selection) in [
        ("latest-human", Selection::LatestHuman),
        ("majority", Selection::Majority),
        ("latest-reviewed", Selection::LatestReviewed),
        ("model:m@1", model("1")),
    ] {
        assert_eq!(text.parse::<Selection>()?, selection);
        assert_eq!(selection.to_string(), text);
    }
    for bad in ["", "latest", "model:", "model:m", "model:@1", "Majority"] {
        assert!(
            matches!(bad.parse::<Selection>(), Err(Error::InvalidInput { .. })),
            "{bad:?} parsed"
        );
    }
    Ok(())
}

// ---- 3. determinism ----

/// A project of `n` text assets `id-{i}` (zero-padded to `width`), each annotated with a
/// class, and its latest-human snapshot `name`.
fn dataset(db: &Db, range: std::ops::Range<usize>, width: usize, name: &str) -> labeldb::Result<Snapshot> {
    if db.project(P).is_err() {
        db.create_project("admin", P, schema(SCHEMA))?;
    }
    let assets = range
        .map(|i| {
            NewAsset::text(format!("id-{i:0width$}"), format!("text {i}"))
                .with_label(NewLabel::annotation("alice").answer("cat", Answer::class(CLASSES[i % 3])))
        })
        .collect();
    db.add_assets("admin", P, assets)?;
    db.create_snapshot("trainer", P, name, &Filter::All, &Selection::LatestHuman)?;
    db.snapshot(P, name)
}

/// splitmix64, as documented on `Snapshot::shuffled`.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The documented shuffle: Fisher–Yates from the end, driven by splitmix64.
fn fisher_yates<T>(mut items: Vec<T>, seed: u64) -> Vec<T> {
    let mut rng = SplitMix(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

#[test]
fn shuffled_is_a_permutation_fixed_by_the_seed_and_different_seeds_give_different_orders() -> TestResult {
    let (_dir, db) = temp_db();
    let s = dataset(&db, 0..40, 2, "s")?;
    let all = ids(&s)?;
    let sorted: BTreeSet<&String> = all.iter().collect();
    let mut orders = BTreeSet::new();
    for seed in [0, 1, 2, 3, 42, 1 << 40, u64::MAX] {
        let a = ids(&s.shuffled(seed))?;
        assert_eq!(a, ids(&s.shuffled(seed))?, "seed {seed}: two shuffles differ");
        assert_eq!(
            a,
            ids(&db.snapshot(P, "s")?.shuffled(seed))?,
            "seed {seed}: differs on a fresh handle"
        );
        assert_eq!(a.len(), all.len());
        assert_eq!(
            a.iter().collect::<BTreeSet<_>>(),
            sorted,
            "seed {seed}: not a permutation"
        );
        assert_eq!(
            a,
            fisher_yates(all.clone(), seed),
            "seed {seed}: not the documented shuffle"
        );
        assert_ne!(a, all, "seed {seed}: the identity");
        assert!(orders.insert(a), "seed {seed}: the same order as another seed");
    }
    // Shuffling a view shuffles its examples (the examples, then the order).
    let twice = ids(&s.shuffled(1).shuffled(2))?;
    assert_eq!(twice, fisher_yates(fisher_yates(all.clone(), 1), 2));
    Ok(())
}

#[test]
fn iteration_over_many_blocks_equals_get_in_order_for_the_snapshot_and_its_views() -> TestResult {
    // Iteration reads blocks of 1,024 examples ahead on threads, with range scans when a
    // block's assets are dense (the whole snapshot) and point reads when not (a shuffle).
    let (_dir, db) = temp_db();
    let s = dataset(&db, 0..2_600, 4, "s")?;
    // Labels written after the snapshot sit in the scanned ranges and must be ignored.
    for id in s.iter().take(50) {
        let e = id?;
        db.add_label(
            e.asset,
            NewLabel::annotation("bob").answer("cat", Answer::class(CLASSES[0])),
        )?;
    }
    let views = [s.clone(), s.shuffled(7), s.shard(1, 3)?, s.shuffled(3).shard(0, 2)?];
    for (n, v) in views.iter().enumerate() {
        let by_get = (0..v.len()).map(|i| v.get(i)).collect::<labeldb::Result<Vec<_>>>()?;
        assert_eq!(examples(v)?, by_get, "view {n}");
        for e in &by_get {
            assert_eq!(e.answers.len(), 1, "view {n}: {e:?}");
        }
    }
    for e in examples(&s)? {
        let i: usize = e.external_id["id-".len()..].parse()?;
        assert_eq!(
            e.answers,
            class("cat", CLASSES[i % 3]),
            "{}: a later label was taken",
            e.external_id
        );
    }
    // An iterator dropped part-way leaves nothing behind that blocks the next one.
    let mut it = s.iter();
    assert!(it.next().transpose()?.is_some());
    drop(it);
    assert_eq!(s.iter().count(), 2_600);
    Ok(())
}

#[test]
fn shuffled_order_of_ten_known_ids_with_seed_42_is_pinned() -> TestResult {
    let (_dir, db) = temp_db();
    let s = dataset(&db, 0..10, 1, "s")?;
    let pinned = [
        "id-0", "id-9", "id-5", "id-8", "id-6", "id-4", "id-7", "id-2", "id-1", "id-3",
    ];
    assert_eq!(ids(&s.shuffled(42))?, pinned);
    Ok(())
}

#[test]
fn shards_are_disjoint_cover_everything_and_differ_in_size_by_at_most_one_and_bad_ranks_are_errors() -> TestResult {
    let (_dir, db) = temp_db();
    let s = dataset(&db, 0..23, 2, "s")?;
    for view in [s.clone(), s.shuffled(9)] {
        let all = ids(&view)?;
        for world in 1..=9 {
            let mut seen: Vec<String> = Vec::new();
            let mut sizes = Vec::new();
            for rank in 0..world {
                let shard = view.shard(rank, world)?;
                let got = ids(&shard)?;
                // Every world-th example starting at rank, in the view's order.
                let want: Vec<String> = all.iter().skip(rank).step_by(world).cloned().collect();
                assert_eq!(got, want, "rank {rank} of {world}");
                sizes.push(got.len());
                seen.extend(got);
            }
            let distinct: BTreeSet<&String> = seen.iter().collect();
            assert_eq!(distinct.len(), seen.len(), "world {world}: shards overlap");
            assert_eq!(
                distinct,
                all.iter().collect::<BTreeSet<_>>(),
                "world {world}: shards do not cover"
            );
            let (min, max) = (sizes.iter().min().copied(), sizes.iter().max().copied());
            assert!(
                max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                "world {world}: sizes {sizes:?}"
            );
        }
        for (rank, world) in [(0, 0), (1, 0), (1, 1), (3, 3), (4, 3), (usize::MAX, 2)] {
            assert!(
                matches!(view.shard(rank, world), Err(Error::InvalidInput { .. })),
                "rank {rank} of world {world} is not an error"
            );
        }
    }
    assert!(
        matches!(s.get(s.len()), Err(Error::InvalidInput { .. })),
        "get past the end"
    );
    Ok(())
}

const RATIOS: [(&str, f64); 3] = [("train", 0.8), ("val", 0.1), ("test", 0.1)];

fn splits(s: &Snapshot) -> labeldb::Result<BTreeMap<&'static str, BTreeSet<String>>> {
    RATIOS
        .iter()
        .map(|(name, _)| Ok((*name, ids(&s.split(name, &RATIOS)?)?.into_iter().collect())))
        .collect()
}

#[test]
fn splits_are_disjoint_cover_everything_are_proportional_and_keep_existing_assets_when_assets_are_added() -> TestResult
{
    let (_dir, db) = temp_db();
    let s1 = dataset(&db, 0..1_000, 4, "s1")?;
    let all: BTreeSet<String> = ids(&s1)?.into_iter().collect();
    let first = splits(&s1)?;
    let mut union = BTreeSet::new();
    for (name, ratio) in RATIOS {
        let part = &first[name];
        let expected = ratio * 1_000.0;
        assert!(
            (part.len() as f64 - expected).abs() <= 50.0,
            "{name}: {} of 1,000 for a ratio of {ratio}",
            part.len()
        );
        for id in part {
            assert!(union.insert(id.clone()), "{id} is in two splits");
        }
    }
    assert_eq!(union, all, "splits do not cover the snapshot");
    // A split of a view is that view's examples of the split, in the view's order.
    let shuffled_train = ids(&s1.shuffled(5).split("train", &RATIOS)?)?;
    let want: Vec<String> = ids(&s1.shuffled(5))?
        .into_iter()
        .filter(|i| first["train"].contains(i))
        .collect();
    assert_eq!(shuffled_train, want);

    // More assets, a new snapshot: every old asset stays in its split.
    let s2 = dataset(&db, 1_000..1_300, 4, "s2")?;
    let second = splits(&s2)?;
    for (name, _) in RATIOS {
        let old: BTreeSet<String> = second[name].intersection(&all).cloned().collect();
        assert_eq!(old, first[name], "{name} changed for existing assets");
    }
    assert_eq!(second.values().map(BTreeSet::len).sum::<usize>(), 1_300);

    for bad in [
        vec![("train", -0.1), ("test", 1.1)],
        vec![("train", 0.0)],
        vec![("train", f64::NAN)],
        vec![("train", f64::INFINITY)],
    ] {
        assert!(
            matches!(s1.split("train", &bad), Err(Error::InvalidInput { .. })),
            "ratios {bad:?}"
        );
    }
    assert!(
        matches!(s1.split("dev", &RATIOS), Err(Error::InvalidInput { .. })),
        "unknown split name"
    );
    Ok(())
}

#[test]
fn split_of_ten_known_ids_is_pinned() -> TestResult {
    let (_dir, db) = temp_db();
    let s = dataset(&db, 0..10, 1, "s")?;
    let got: Vec<(&str, Vec<String>)> = RATIOS
        .iter()
        .map(|(name, _)| Ok((*name, ids(&s.split(name, &RATIOS)?)?)))
        .collect::<labeldb::Result<_>>()?;
    let pinned: Vec<(&str, Vec<String>)> = vec![
        (
            "train",
            vec!["id-1", "id-3", "id-4", "id-5", "id-6", "id-7", "id-8", "id-9"],
        ),
        ("val", vec!["id-2"]),
        ("test", vec!["id-0"]),
    ]
    .into_iter()
    .map(|(n, v)| (n, v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(got, pinned);
    Ok(())
}

const MIXED: &str = r#"{"jobs": [
    {"name": "cat", "kind": "classification", "classes": ["a", "b", "c"]},
    {"name": "ents", "kind": "spans", "classes": ["PER", "LOC"]},
    {"name": "objs", "kind": "boxes", "classes": ["car", "person"]}
]}"#;

/// The fixed dataset of the pinned digest, written in `order` by `author`, with
/// metadata and statuses that the digest must ignore.
fn pinned_dataset(db: &Db, order: &[usize], author: &str, noise: bool) -> labeldb::Result<Snapshot> {
    db.create_project("admin", P, schema(MIXED))?;
    let span = |start, end, class: &str| Span {
        start,
        end,
        class: class.into(),
        score: None,
    };
    let assets = [
        NewAsset::text("t-1", "Anna lives in Zürich").with_label(
            NewLabel::annotation(author)
                .answer("cat", Answer::class("a"))
                .answer("ents", Answer::Spans(vec![span(0, 4, "PER"), span(14, 21, "LOC")])),
        ),
        NewAsset::text("t-2", "no entities here").with_label(
            NewLabel::annotation(author)
                .answer("cat", Answer::class("b"))
                .answer("ents", Answer::Spans(vec![])),
        ),
        NewAsset::image("i-1", "img/1.jpg", 640, 480).with_label(NewLabel::annotation(author).answer(
            "objs",
            Answer::Boxes(vec![BBox {
                x: 10.0,
                y: 20.5,
                w: 100.0,
                h: 50.25,
                class: "car".into(),
                score: None,
            }]),
        )),
        NewAsset::text("t-3", "not labelled"),
    ];
    for &i in order {
        let mut a = assets[i].clone();
        if noise {
            a = a.with_meta("source", MetaValue::Str(format!("batch-{i}")));
            a.priority = i as f64;
        }
        let id = db.add_asset("admin", P, a)?;
        if noise && db.asset(id)?.status == Status::Labeled {
            db.set_status("lead", id, Status::ToReview)?;
        }
    }
    db.create_snapshot("trainer", P, "pinned", &Filter::All, &Selection::LatestHuman)?;
    db.snapshot(P, "pinned")
}

#[test]
fn digest_of_a_fixed_dataset_is_pinned_and_depends_only_on_external_ids_contents_and_chosen_answers() -> TestResult {
    let (_dir, db) = temp_db();
    let s = pinned_dataset(&db, &[0, 1, 2, 3], "alice", false)?;
    assert_eq!(ids(&s)?, ["i-1", "t-1", "t-2"]);
    let pinned = "a1973fcf871547915de4998c6d9df26647737e52c4ae37151c19b92d6c4b7161";
    assert_eq!(s.info().digest.to_string(), pinned, "the digest definition changed");
    // Another insertion order (so other internal ids), author, metadata, priority and
    // status give the same digest.
    let (_dir2, other) = temp_db();
    let t = pinned_dataset(&other, &[3, 2, 1, 0], "zoe", true)?;
    assert_eq!(t.info().digest, s.info().digest);
    // Any change of a chosen answer changes it.
    let (_dir3, third) = temp_db();
    let u = pinned_dataset(&third, &[0, 1, 2, 3], "alice", false)?;
    let t2 = third.asset_by_external_id(P, "t-2")?;
    third.add_label(t2.id, NewLabel::annotation("alice").answer("cat", Answer::class("c")))?;
    third.create_snapshot("trainer", P, "changed", &Filter::All, &Selection::LatestHuman)?;
    assert_ne!(third.snapshot_info(P, "changed")?.digest, u.info().digest);
    Ok(())
}

// ---- 4. diff ----

/// The brute-force diff of two recorded example lists: added, removed, relabelled
/// (external id, revision before, revision after).
type BruteDiff = (Vec<String>, Vec<String>, Vec<(String, LabelId, LabelId)>);

fn brute_diff(a: &[Example], b: &[Example]) -> BruteDiff {
    let a: BTreeMap<&str, &Example> = a.iter().map(|e| (e.external_id.as_str(), e)).collect();
    let b: BTreeMap<&str, &Example> = b.iter().map(|e| (e.external_id.as_str(), e)).collect();
    let added = b
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    let removed = a
        .keys()
        .filter(|k| !b.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    let relabelled = a
        .iter()
        .filter_map(|(k, ea)| {
            let eb = b.get(k)?;
            (ea.answers != eb.answers).then(|| (k.to_string(), ea.label, eb.label))
        })
        .collect();
    (added, removed, relabelled)
}

fn as_brute(d: labeldb::Diff) -> BruteDiff {
    (
        d.added,
        d.removed,
        d.relabelled
            .into_iter()
            .map(|r| (r.external_id, r.before, r.after))
            .collect(),
    )
}

fn run_diff(histories: Vec<Vec<Write>>, later: Vec<Later>) -> TestResult {
    let (_dir, db) = temp_db();
    let mut assets = populate(&db, &histories)?;
    let selections = [
        Selection::LatestHuman,
        Selection::Majority,
        Selection::LatestReviewed,
        model("1"),
    ];
    for (n, sel) in selections.iter().enumerate() {
        db.create_snapshot("trainer", P, &format!("before-{n}"), &Filter::All, sel)?;
    }
    for (step, op) in later.iter().enumerate() {
        let pick = |n: u8| assets[usize::from(n) % assets.len()];
        let result = match op {
            Later::Label { asset, write } => apply_write(&db, pick(*asset), write).map(|_| ()),
            Later::Delete { asset } => db.delete_asset("lead", pick(*asset)),
            Later::Restore { asset } => db.restore_asset("lead", pick(*asset)),
            Later::NewAsset { write } => {
                let id = db.add_asset("lead", P, NewAsset::text(format!("n{step:03}"), "new"))?;
                assets.push(id);
                write.as_ref().map_or(Ok(()), |w| apply_write(&db, id, w).map(|_| ()))
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(e) if is_refusal(&e) => {}
            Err(e) => panic!("step {step} {op:?}: {e}"),
        }
    }
    for (n, sel) in selections.iter().enumerate() {
        db.create_snapshot("trainer", P, &format!("after-{n}"), &Filter::All, sel)?;
    }
    let mut all = Vec::new();
    for n in 0..selections.len() {
        for when in ["before", "after"] {
            let s = db.snapshot(P, &format!("{when}-{n}"))?;
            let e = examples(&s)?;
            all.push((format!("{when}-{n}"), s, e));
        }
    }
    // Every ordered pair, across selections too; a view diffs as its whole snapshot.
    for (na, sa, ea) in &all {
        for (nb, sb, eb) in &all {
            assert_eq!(as_brute(sa.diff(sb)?), brute_diff(ea, eb), "{na} → {nb}");
        }
        assert_eq!(sa.diff(sa)?, labeldb::Diff::default(), "{na} → itself");
        assert_eq!(
            as_brute(sa.shuffled(3).diff(&all[0].1)?),
            brute_diff(ea, &all[0].2),
            "view of {na}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn diff_lists_what_a_brute_force_comparison_of_the_examples_finds(
        histories in prop::collection::vec(prop::collection::vec(write_gen(3), 0..5), 1..8),
        later in prop::collection::vec(later_gen(), 0..20),
    ) {
        if let Err(e) = run_diff(histories, later) {
            panic!("{e}");
        }
    }
}

#[test]
fn diff_names_added_removed_and_relabelled_assets_with_both_revisions() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    let same = asset_with(&db, "same", vec![ann("alice", "a")])?;
    let relabel = asset_with(&db, "relabel", vec![ann("alice", "a")])?;
    let gone = asset_with(&db, "gone", vec![ann("alice", "a")])?;
    db.create_snapshot("trainer", P, "v1", &Filter::All, &Selection::LatestHuman)?;
    // A new revision with the same answers is not a relabel; new answers are.
    db.add_label(same, NewLabel::annotation("bob").answer("cat", Answer::class("a")))?;
    db.add_label(relabel, NewLabel::annotation("bob").answer("cat", Answer::class("b")))?;
    db.delete_asset("lead", gone)?;
    asset_with(&db, "new", vec![ann("alice", "c")])?;
    db.create_snapshot("trainer", P, "v2", &Filter::All, &Selection::LatestHuman)?;
    let d = db.snapshot(P, "v1")?.diff(&db.snapshot(P, "v2")?)?;
    assert_eq!(d.added, ["new"]);
    assert_eq!(d.removed, ["gone"]);
    assert_eq!(
        d.relabelled,
        [labeldb::Relabel {
            external_id: "relabel".into(),
            before: LabelId::new(relabel, 0),
            after: LabelId::new(relabel, 1),
        }]
    );
    Ok(())
}

// ---- 5. names, tags, deletion, lineage ----

fn invalid<T: std::fmt::Debug>(r: labeldb::Result<T>, what: &str) -> String {
    match r {
        Err(e @ Error::InvalidInput { .. }) => e.to_string(),
        other => panic!("{what}: expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn snapshot_names_are_unique_per_project_and_a_refused_create_writes_nothing() -> TestResult {
    let (_dir, db) = temp_db();
    let s1 = dataset(&db, 0..5, 1, "v1")?;
    db.create_project("admin", "other", schema(SCHEMA))?;
    let seq = db.last_seq();
    match db.create_snapshot("trainer", P, "v1", &Filter::All, &Selection::Majority) {
        Err(Error::SnapshotExists { project, name }) => assert_eq!((project.as_str(), name.as_str()), (P, "v1")),
        other => panic!("duplicate name: expected SnapshotExists, got {other:?}"),
    }
    assert_eq!(db.last_seq(), seq, "a refused create wrote an event");
    assert_eq!(
        db.snapshot_info(P, "v1")?,
        *s1.info(),
        "a refused create changed the snapshot"
    );
    // The same name in another project is another snapshot.
    let other = db.create_snapshot("trainer", "other", "v1", &Filter::All, &Selection::LatestHuman)?;
    assert_eq!(other.assets, 0);
    assert_eq!(db.snapshots(P)?.len(), 1);
    for bad in ["", "a\nb"] {
        invalid(
            db.create_snapshot("trainer", P, bad, &Filter::All, &Selection::LatestHuman),
            "bad name",
        );
    }
    invalid(db.snapshot(P, "nope").map(|s| s.len()), "unknown snapshot");
    assert!(matches!(
        db.snapshot("nope", "v1").map(|s| s.len()),
        Err(Error::UnknownProject(_))
    ));
    Ok(())
}

#[test]
fn tags_resolve_move_and_cannot_shadow_a_snapshot_name() -> TestResult {
    let (dir, db) = temp_db();
    // Snapshot handles keep the database open: keep only their descriptions.
    let s1 = dataset(&db, 0..5, 1, "v1")?.info().clone();
    let s2 = dataset(&db, 5..8, 1, "v2")?.info().clone();
    assert_ne!(s1.digest, s2.digest);
    db.tag_snapshot("lead", P, "latest", "v1")?;
    assert_eq!(db.snapshot(P, "latest")?.info(), &s1);
    db.tag_snapshot("lead", P, "latest", "v2")?;
    assert_eq!(db.snapshot(P, "latest")?.info(), &s2, "the tag did not move");
    db.tag_snapshot("lead", P, "prod", "v2")?;
    let mut listed: Vec<(String, Vec<String>)> = db.snapshots(P)?.into_iter().map(|(i, t)| (i.name, t)).collect();
    listed.iter_mut().for_each(|(_, tags)| tags.sort());
    assert_eq!(
        listed,
        [
            ("v1".to_string(), vec![]),
            ("v2".to_string(), vec!["latest".to_string(), "prod".to_string()])
        ]
    );
    // A tag may not take a snapshot's name, a snapshot may not take a tag's name, and a
    // tag must point at a snapshot.
    let seq = db.last_seq();
    invalid(db.tag_snapshot("lead", P, "v1", "v2"), "tag named like a snapshot");
    invalid(
        db.create_snapshot("trainer", P, "latest", &Filter::All, &Selection::LatestHuman),
        "snapshot named like a tag",
    );
    invalid(db.tag_snapshot("lead", P, "x", "missing"), "tag of a missing snapshot");
    invalid(db.tag_snapshot("lead", P, "", "v1"), "empty tag");
    assert_eq!(db.last_seq(), seq, "a refused tag wrote an event");
    assert_eq!(db.snapshot(P, "v1")?.info(), &s1);
    // Tags survive a reopen.
    let path = db.path().to_path_buf();
    drop(db);
    let db = reopen(&path)?;
    assert_eq!(db.snapshot(P, "latest")?.info(), &s2);
    drop(dir);
    Ok(())
}

#[test]
fn delete_removes_the_snapshot_and_its_tags_and_is_refused_while_a_registered_model_was_trained_on_it() -> TestResult {
    let (_dir, db) = temp_db();
    let s1 = dataset(&db, 0..5, 1, "v1")?;
    dataset(&db, 5..8, 1, "v2")?;
    db.tag_snapshot("lead", P, "prod", "v1")?;
    db.tag_snapshot("lead", P, "latest", "v2")?;
    db.tag_snapshot("lead", P, "candidate", "v2")?;
    let project = P;
    // Registered through a tag: the lineage names the snapshot and its digest.
    let registered = db.register_model("trainer", P, "clf", "1", "prod")?;
    let info = db.model_info(project, "clf", "1")?.ok_or("clf@1 is not registered")?;
    assert_eq!(info, registered);
    assert_eq!(
        (info.project, info.name.as_str(), info.version.as_str()),
        (db.project(P)?.id, "clf", "1")
    );
    assert_eq!(
        (info.trained_on.as_str(), info.trained_on_digest),
        ("v1", s1.info().digest)
    );
    assert_eq!(db.model_info(project, "clf", "2")?, None);
    match db.register_model("trainer", P, "clf", "1", "v2") {
        Err(Error::ModelExists { project, model }) => assert_eq!((project.as_str(), model.as_str()), (P, "clf@1")),
        other => panic!("a second registration of clf@1: expected ModelExists, got {other:?}"),
    }
    invalid(
        db.register_model("trainer", P, "clf", "3", "missing"),
        "a model trained on a missing snapshot",
    );

    let seq = db.last_seq();
    let msg = invalid(db.delete_snapshot("lead", P, "v1"), "delete of a training set");
    assert!(msg.contains("clf@1"), "{msg}");
    assert_eq!(db.last_seq(), seq);
    assert_eq!(db.snapshot(P, "prod")?.info(), s1.info());

    // v2 can go: its tags go with it, its name is free again.
    let held = db.asset_by_external_id(P, "id-5")?.id;
    assert_eq!(db.snapshots_holding(project, held)?, ["v2"]);
    db.delete_snapshot("lead", P, "v2")?;
    for gone in ["v2", "latest", "candidate"] {
        invalid(db.snapshot(P, gone).map(|s| s.len()), gone);
    }
    assert_eq!(
        db.snapshots(P)?
            .into_iter()
            .map(|(i, t)| (i.name, t))
            .collect::<Vec<_>>(),
        [("v1".to_string(), vec!["prod".to_string()])]
    );
    assert_eq!(db.snapshots_holding(project, held)?, Vec::<String>::new());
    db.purge_asset("admin", held)?;
    invalid(db.delete_snapshot("lead", P, "v2"), "a second delete");
    let again = db.create_snapshot("trainer", P, "v2", &Filter::All, &Selection::LatestHuman)?;
    assert_eq!(again.assets, 7);
    // The tag `latest` no longer exists, so it can now be a snapshot name.
    db.create_snapshot("trainer", P, "latest", &Filter::All, &Selection::LatestHuman)?;
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    Ok(())
}

// ---- 6. export → import round trips ----

/// Exports snapshot `name` of `db` to JSONL, imports it into project `P` of a fresh
/// database with `schema_json`, snapshots it with the same selection, and checks that
/// digest and every example (external id, content, answers) are equal.
pub(crate) fn round_trip(db: &Db, project: &str, name: &str, schema_json: &str) -> TestResult {
    let a = db.snapshot(project, name)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("export.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let lines = a.export_jsonl(&mut out)?;
    out.flush()?;
    drop(out);
    assert_eq!(lines, a.len() as u64);

    let fresh = Db::open(dir.path().join("fresh"))?;
    fresh.create_project("admin", P, schema(schema_json))?;
    let report = fresh.import_file("loader", P, &file, &ImportOptions::new(Format::Jsonl), |_| {})?;
    assert_eq!((report.imported, report.invalid), (a.len() as u64, 0));
    let info = fresh.create_snapshot("trainer", P, name, &Filter::All, &a.info().selection)?;
    let b = fresh.snapshot(P, name)?;
    assert_eq!(b.len(), a.len(), "{name}: length");
    for i in 0..a.len() {
        let (x, y) = (a.get(i)?, b.get(i)?);
        assert_eq!(
            (&x.external_id, &x.content, &x.answers),
            (&y.external_id, &y.content, &y.answers),
            "{name}: example {i}"
        );
    }
    assert_eq!(info.digest, a.info().digest, "{name}: digest after the round trip");
    assert_eq!(fresh.verify_snapshot(P, name)?, Vec::<String>::new());
    Ok(())
}

const WNUT: &str = r#"{"jobs": [{"name": "entities", "kind": "spans",
    "classes": ["person", "location", "corporation", "product", "creative-work", "group"]}]}"#;

#[test]
fn wnut17_latest_human_snapshot_has_the_same_digest_and_examples_after_export_and_import() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", "a", schema(WNUT))?;
    let mut options = ImportOptions::new(Format::Conll);
    options.job = Some("entities".into());
    let path = data_dir().join("wnut17/wnut17train.conll");
    let report = db.import_file("loader", "a", &path, &options, |_| {})?;
    assert_eq!(report.imported, 3_394);
    let info = db.create_snapshot("trainer", "a", "train", &Filter::All, &Selection::LatestHuman)?;
    assert_eq!(info.assets, 3_394);
    round_trip(&db, "a", "train", WNUT)
}

const SMS: &str = r#"{"jobs": [{"name": "spam", "kind": "classification", "classes": ["ham", "spam"]}]}"#;

#[test]
fn sms_spam_collection_snapshot_has_the_same_digest_and_examples_after_export_and_import() -> TestResult {
    let source = std::fs::read_to_string(data_dir().join("sms_spam_collection/SMSSpamCollection"))?;
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("sms.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
    for (i, line) in source.lines().enumerate() {
        let (label, text) = line.split_once('\t').ok_or_else(|| format!("line {}: no TAB", i + 1))?;
        let record = serde_json::json!({
            "id": format!("sms-{:04}", i + 1),
            "text": text,
            "labels": [{"author": "gold", "answers": {"spam": label}}],
        });
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(out);
    let (_dbdir, db) = temp_db();
    db.create_project("admin", "a", schema(SMS))?;
    db.import_file("loader", "a", &jsonl, &ImportOptions::new(Format::Jsonl), |_| {})?;
    let s = {
        db.create_snapshot("trainer", "a", "all", &Filter::All, &Selection::LatestHuman)?;
        db.snapshot("a", "all")?
    };
    assert_eq!(s.len(), 5_574);
    let spam = s
        .iter()
        .filter(|e| e.as_ref().is_ok_and(|e| e.answers == class("spam", "spam")))
        .count();
    assert_eq!(spam, 747);
    round_trip(&db, "a", "all", SMS)
}

const NER: &str = r#"{"jobs": [
    {"name": "cat", "kind": "classification", "classes": ["a", "b", "c"]},
    {"name": "ents", "kind": "spans", "classes": ["PER", "LOC"]}
]}"#;

#[test]
fn model_selection_with_scored_predictions_has_the_same_digest_and_examples_after_export_and_import() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", "a", schema(NER))?;
    let texts = [
        "Zoë met Ann in Zürich",
        "日本の東京 and Paris",
        "plain ascii Bob",
        "emoji 👍 Lisbon 🇵🇹 end",
    ];
    for i in 0..40u32 {
        let text = texts[i as usize % texts.len()];
        let id = db.add_asset(
            "admin",
            "a",
            NewAsset::text(format!("doc-{i:02}"), format!("{text} #{i}")),
        )?;
        let t = db.asset(id)?.content.text().unwrap_or_default().to_string();
        // Spans on the first and last whitespace-separated words, in bytes.
        let first = t.find(' ').unwrap_or(t.len());
        let last = t.rfind(' ').map_or(0, |p| p + 1);
        let c = CLASSES[i as usize % 3];
        let score = (i % 10) as f32 / 10.0 + 0.05;
        let spans = vec![
            Span {
                start: 0,
                end: first as u32,
                class: "PER".into(),
                score: Some(score),
            },
            Span {
                start: last as u32,
                end: t.len() as u32,
                class: "LOC".into(),
                score: Some(1.0 - score),
            },
        ];
        db.add_label(id, NewLabel::annotation("alice").answer("cat", Answer::class("a")))?;
        if i % 7 == 3 {
            continue; // no prediction of v2: left out
        }
        db.add_label(
            id,
            NewLabel::prediction("ner", "2")
                .answer("cat", Answer::class(c))
                .answer("ents", Answer::Spans(spans))
                .score("cat", c, score)
                .score("cat", "b", 0.5),
        )?;
        // A later prediction of another version must not be taken.
        db.add_label(
            id,
            NewLabel::prediction("ner", "3")
                .answer("cat", Answer::class("b"))
                .score("cat", "b", 0.99),
        )?;
    }
    let selection = "model:ner@2".parse::<Selection>()?;
    let info = db.create_snapshot("trainer", "a", "preds", &Filter::All, &selection)?;
    assert_eq!(info.assets, 40 - 6);
    round_trip(&db, "a", "preds", NER)
}

#[test]
fn latest_reviewed_selection_has_the_same_digest_and_examples_after_export_and_import() -> TestResult {
    use Verdict::{Accept, Reject};
    let (_dir, db) = temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    for i in 0..30u32 {
        let c = CLASSES[i as usize % 3];
        let labels = match i % 5 {
            0 => vec![ann("alice", c), rev(Accept, Some(0), None)],
            1 => vec![ann("alice", c), rev(Accept, Some(0), Some("b"))],
            2 => vec![ann("alice", c), rev(Reject, Some(0), None)],
            3 => vec![pred("1", c), ann("bob", "a"), rev(Accept, Some(0), None)],
            _ => vec![
                ann("alice", c),
                ann("bob", "c"),
                rev(Accept, Some(1), None),
                ann("carol", "a"),
            ],
        };
        asset_with(&db, &format!("r{i:02}"), labels)?;
    }
    let info = db.create_snapshot("trainer", P, "reviewed", &Filter::All, &Selection::LatestReviewed)?;
    assert_eq!(info.assets, 24);
    round_trip(&db, P, "reviewed", SCHEMA)
}

#[test]
fn majority_selection_has_the_same_digest_and_examples_after_export_and_import() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    for i in 0..30u32 {
        let labels = match i % 3 {
            0 => vec![ann("alice", "a"), ann("bob", "b"), ann("carol", "b")],
            1 => vec![ann("alice", "a"), ann("bob", "c")],
            _ => vec![ann("alice", "c")],
        };
        asset_with(&db, &format!("m{i:02}"), labels)?;
    }
    db.create_snapshot("trainer", P, "maj", &Filter::All, &Selection::Majority)?;
    round_trip(&db, P, "maj", SCHEMA)
}

#[test]
fn an_accepted_review_of_an_annotation_without_answers_survives_export_and_import() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    // An annotation may answer no job ("nothing to label here"); a reviewer accepts it.
    let id = db.add_asset("admin", P, NewAsset::text("empty", "nothing to label"))?;
    let empty = db.add_label(id, NewLabel::annotation("alice"))?;
    db.add_label(id, review(Verdict::Accept, Some(empty), None))?;
    asset_with(
        &db,
        "full",
        vec![ann("alice", "a"), rev(Verdict::Accept, Some(0), None)],
    )?;
    let info = db.create_snapshot("trainer", P, "reviewed", &Filter::All, &Selection::LatestReviewed)?;
    assert_eq!(info.assets, 2);
    round_trip(&db, P, "reviewed", SCHEMA)
}

// ---- 7. durability and damage ----

#[test]
fn digest_and_examples_are_stable_across_reopen_and_verify_is_clean_with_snapshots() -> TestResult {
    use Verdict::Accept;
    let (dir, db) = temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    for i in 0..20u32 {
        let c = CLASSES[i as usize % 3];
        asset_with(
            &db,
            &format!("a{i:02}"),
            vec![
                ann("alice", c),
                ann("bob", "a"),
                pred("1", c),
                rev(Accept, Some(1), None),
            ],
        )?;
    }
    let mut before = Vec::new();
    for (name, filter, sel) in immutability_snapshots() {
        let info = db.create_snapshot("trainer", P, name, &parse(filter)?, &sel)?;
        let s = db.snapshot(P, name)?;
        before.push((
            info,
            examples(&s)?,
            ids(&s.shuffled(42))?,
            ids(&s.split("val", &RATIOS)?)?,
        ));
    }
    db.register_model("trainer", P, "m", "1", "snap-human")?;
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    let path = db.path().to_path_buf();
    drop(db);
    let db = reopen(&path)?;
    for (info, ex, shuffled, val) in &before {
        let s = db.snapshot(P, &info.name)?;
        assert_eq!(s.info(), info, "{}: info after reopen", info.name);
        assert_eq!(&examples(&s)?, ex, "{}: examples after reopen", info.name);
        assert_eq!(&ids(&s.shuffled(42))?, shuffled, "{}: shuffle after reopen", info.name);
        assert_eq!(
            &ids(&s.split("val", &RATIOS)?)?,
            val,
            "{}: split after reopen",
            info.name
        );
        assert_eq!(db.verify_snapshot(P, &info.name)?, Vec::<String>::new());
    }
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    drop(dir);
    Ok(())
}

/// Flips a byte in the middle of member chunk `chunk` of snapshot `id`, by opening the
/// database's sled tree directly; the key is `0D ‖ snapshot id u32 ‖ chunk number u32`
/// (docs/format.md). `RecordRef` has no variant for a snapshot chunk yet.
fn damage_snapshot_chunk(path: &Path, id: u32, chunk: u32) -> TestResult {
    let mut key = vec![0x0D];
    key.extend_from_slice(&id.to_be_bytes());
    key.extend_from_slice(&chunk.to_be_bytes());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let tree = loop {
        match sled::open(path) {
            Ok(t) => break t,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut bytes = tree.get(&key)?.ok_or("no such snapshot chunk")?.to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    tree.insert(key, bytes)?;
    tree.flush()?;
    Ok(())
}

#[test]
fn a_damaged_snapshot_chunk_is_corruption_naming_its_key() -> TestResult {
    let (dir, db) = temp_db();
    let damaged = dataset(&db, 0..50, 2, "damaged")?.info().clone();
    let intact = dataset(&db, 50..60, 2, "intact")?.info().clone();
    let path = db.path().to_path_buf();
    drop(db);
    damage_snapshot_chunk(&path, damaged.id, 0)?;
    let db = reopen(&path)?;
    let key = format!("snapshot-chunk/{}/0", damaged.id);
    match db.snapshot(P, "damaged").map(|s| s.len()) {
        Err(Error::Corruption { key: k, reason }) => {
            assert_eq!(k, key);
            assert!(!reason.is_empty());
        }
        other => panic!("expected corruption at {key}, got {other:?}"),
    }
    // The description is intact; verification names the key; the other snapshot reads.
    assert_eq!(db.snapshot_info(P, "damaged")?, damaged);
    let problems = db.verify_snapshot(P, "damaged")?;
    assert!(problems.iter().any(|p| p.contains(&key)), "{problems:?}");
    let report = db.verify()?;
    assert!(
        report.problems.iter().any(|p| p.message.contains(&key)),
        "{:?}",
        report.problems
    );
    assert_eq!(db.snapshot(P, "intact")?.info(), &intact);
    assert_eq!(db.verify_snapshot(P, "intact")?, Vec::<String>::new());
    drop(dir);
    Ok(())
}

#[test]
fn verify_snapshot_is_clean_for_a_majority_snapshot_taken_after_a_losing_annotator_changed_answer() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", P, schema(SCHEMA))?;
    // carol, dave and erin say b, alice and bob say a; then carol changes to c. Latest
    // answers: a 2 votes (most recent rev 4), b 2 votes (rev 1), c 1 vote: a wins, rev 4.
    asset_with(
        &db,
        "x",
        vec![
            ann("carol", "b"),
            ann("dave", "b"),
            ann("erin", "b"),
            ann("alice", "a"),
            ann("bob", "a"),
            ann("carol", "c"),
        ],
    )?;
    db.create_snapshot("trainer", P, "maj", &Filter::All, &Selection::Majority)?;
    assert_eq!(
        chosen(&db.snapshot(P, "maj")?)?,
        [("x".to_string(), 4, class("cat", "a"))]
    );
    assert_eq!(db.verify_snapshot(P, "maj")?, Vec::<String>::new());
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    Ok(())
}

#[test]
fn snapshot_writes_refuse_an_invalid_actor_and_write_nothing() -> TestResult {
    type SnapshotWrite = fn(&Db, &str, AssetId) -> labeldb::Result<()>;
    let writes: [(&str, SnapshotWrite); 5] = [
        ("create_snapshot", |db, actor, _| {
            db.create_snapshot(actor, P, "v2", &Filter::All, &Selection::LatestHuman)
                .map(|_| ())
        }),
        ("tag_snapshot", |db, actor, _| db.tag_snapshot(actor, P, "latest", "v1")),
        ("register_model", |db, actor, _| {
            db.register_model(actor, P, "clf", "1", "v1").map(|_| ())
        }),
        ("delete_snapshot", |db, actor, _| db.delete_snapshot(actor, P, "v1")),
        ("purge_asset", |db, actor, held| db.purge_asset(actor, held)),
    ];
    let mut accepted = Vec::new();
    for (what, write) in writes {
        for actor in ["", "a\u{7}b"] {
            let (_dir, db) = temp_db();
            let held = dataset(&db, 0..3, 1, "v1")?.get(0)?.asset;
            let seq = db.last_seq();
            match write(&db, actor, held) {
                Err(Error::InvalidInput { .. }) => assert_eq!(db.last_seq(), seq, "{what} by {actor:?} wrote an event"),
                other => accepted.push(format!("{what} by {actor:?}: {other:?}")),
            }
        }
    }
    assert_eq!(accepted, Vec::<String>::new(), "writes that took an invalid actor");
    Ok(())
}

/// Members per stored chunk (src/snapshot/mod.rs `CHUNK`).
const CHUNK: usize = 65_536;

#[test]
fn a_snapshot_of_several_chunks_reads_back_in_order_and_a_damaged_later_chunk_names_its_key() -> TestResult {
    let (dir, db) = temp_db();
    let n = CHUNK + 100;
    let s = dataset(&db, 0..n, 6, "big")?;
    let info = s.info().clone();
    assert_eq!((info.assets, info.chunks), (n as u64, 2));
    for i in [0, CHUNK - 1, CHUNK, n - 1] {
        let e = s.get(i)?;
        assert_eq!(e.external_id, format!("id-{i:06}"), "example {i}");
        assert_eq!(e.answers, class("cat", CLASSES[i % 3]), "example {i}");
    }
    assert_eq!(db.verify_snapshot(P, "big")?, Vec::<String>::new());
    let path = db.path().to_path_buf();
    drop(s);
    drop(db);
    damage_snapshot_chunk(&path, info.id, 1)?;
    let db = reopen(&path)?;
    let key = format!("snapshot-chunk/{}/1", info.id);
    match db.snapshot(P, "big").map(|s| s.len()) {
        Err(Error::Corruption { key: k, .. }) => assert_eq!(k, key),
        other => panic!("expected corruption at {key}, got {other:?}"),
    }
    drop(db);
    drop(dir);
    Ok(())
}

// ---- 8. selection columns ----

/// `n` assets over several column blocks (256 asset ids each) with every kind of label
/// the selections read — one author, three authors whose majority is or is not the
/// latest annotation, predictions of two model versions, accepted and rejected reviews,
/// nothing — and every 50th asset purged.
fn column_dataset(db: &Db, n: u32) -> labeldb::Result<()> {
    use Verdict::{Accept, Reject};
    db.create_project("admin", P, schema(SCHEMA))?;
    for i in 0..n {
        let c = CLASSES[i as usize % 3];
        let labels = match i % 6 {
            0 => vec![ann("alice", c)],
            // majority (alice and bob) is not the latest annotation (carol) unless c is b
            1 => vec![ann("alice", c), ann("bob", c), ann("carol", "b"), pred("2", "b")],
            2 => vec![pred("1", c), pred("2", "a"), pred("1", "b")],
            3 => vec![ann("alice", c), rev(Accept, Some(0), None)],
            4 => vec![ann("bob", c), rev(Reject, Some(0), None), ann("bob", "a")],
            _ => vec![],
        };
        let id = asset_with(db, &format!("c{:04}", (i * 7919) % n), labels)?;
        if i % 50 == 49 {
            db.purge_asset("admin", id)?;
        }
    }
    Ok(())
}

fn all_selections() -> Vec<Selection> {
    vec![
        Selection::LatestHuman,
        Selection::Majority,
        Selection::LatestReviewed,
        model("1"),
        model("2"),
    ]
}

#[test]
fn a_format_1_database_gets_its_selection_columns_when_opened_and_snapshots_are_unchanged() -> TestResult {
    let (dir, db) = temp_db();
    column_dataset(&db, 600)?;
    let mut before = Vec::new();
    for (i, sel) in all_selections().iter().enumerate() {
        let info = db.create_snapshot("trainer", P, &format!("before-{i}"), &Filter::All, sel)?;
        assert!(info.assets > 0, "{sel}: no members");
        before.push((info, examples(&db.snapshot(P, &format!("before-{i}"))?)?));
    }
    db.downgrade_to_format_1()?;
    let report = db.verify()?;
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Format && p.message.contains("format version 1")),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Derived && p.message.contains("facts/0: missing")),
        "{:?}",
        report.problems
    );
    let path = db.path().to_path_buf();
    drop(db);
    let db = reopen(&path)?;
    assert_eq!(db.index_info().upgraded_from, Some(1));
    let report = db.verify()?;
    assert!(report.is_clean(), "after the upgrade: {:?}", report.problems);
    for (i, sel) in all_selections().iter().enumerate() {
        let info = db.create_snapshot("trainer", P, &format!("after-{i}"), &Filter::All, sel)?;
        let (old, old_examples) = &before[i];
        assert_eq!((info.assets, info.digest), (old.assets, old.digest), "{sel}");
        assert_eq!(&examples(&db.snapshot(P, &info.name)?)?, old_examples, "{sel}");
        assert_eq!(db.verify_snapshot(P, &info.name)?, Vec::<String>::new(), "{sel}");
    }
    drop(dir);
    Ok(())
}

#[test]
fn a_damaged_or_stale_facts_block_is_found_refuses_create_and_repair_rebuilds_it() -> TestResult {
    let (dir, db) = temp_db();
    column_dataset(&db, 600)?;
    let good = db.create_snapshot("trainer", P, "good", &Filter::All, &Selection::LatestHuman)?;

    // A valid record with another block's entries: verify finds the block stale.
    let block0 = db.raw_record(RecordRef::Facts(AssetId(0)))?.ok_or("no facts block 0")?;
    db.damage_record(RecordRef::Facts(AssetId(256)), &block0)?;
    let report = db.verify()?;
    assert!(
        report.problems.iter().any(|p| p.kind == ProblemKind::Derived
            && p.message.contains("facts/1: differs from what its assets' labels give")),
        "{:?}",
        report.problems
    );

    // Bytes that fail their crc: create is refused naming the key, and writes nothing.
    let mut bytes = block0.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    db.damage_record(RecordRef::Facts(AssetId(0)), &bytes)?;
    let seq = db.last_seq();
    match db.create_snapshot("trainer", P, "bad", &Filter::All, &Selection::LatestHuman) {
        Err(Error::Corruption { key, .. }) => assert_eq!(key, "facts/0"),
        other => panic!("expected corruption at facts/0, got {other:?}"),
    }
    assert_eq!(db.last_seq(), seq);
    assert!(db.snapshot_info(P, "bad").is_err());
    let report = db.verify()?;
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Derived && p.message.contains("facts/0")),
        "{:?}",
        report.problems
    );

    db.repair_indexes()?;
    let report = db.verify()?;
    assert!(report.is_clean(), "after repair: {:?}", report.problems);
    let again = db.create_snapshot("trainer", P, "again", &Filter::All, &Selection::LatestHuman)?;
    assert_eq!((again.assets, again.digest), (good.assets, good.digest));
    drop(dir);
    Ok(())
}
