//! Concurrency soak: eight threads on clones of one `Db` label, move statuses, query,
//! search and snapshot at once for `LABELDB_SOAK_SECS` seconds (default 10). Each thread
//! records what it was acknowledged; at the end no acknowledged write is lost, nothing was
//! written that nobody asked for, the indexes equal a rebuild and query counts equal a
//! brute-force count over primary data — before and after reopening.
//!
//! It prints the throughput it saw (run with `--nocapture`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use labeldb::testing::Rng;
use labeldb::{
    Action, Answer, Asset, AssetId, Db, Digest, Error, Filter, Label, LabelId, LabelKind, MetaValue, NewAsset,
    NewLabel, Selection, Source, Status,
};

use crate::{data_dir, schema, TestResult};

const PROJECT: &str = "soak";
const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["ham", "spam", "other"]}
]}"#;
const CATEGORIES: [&str; 3] = ["ham", "spam", "other"];
const ASSETS: usize = 2_000;
const LABELERS: usize = 3;
const MOVERS: usize = 2;
/// Assets that labelers and movers pick half the time.
const HOT: usize = 16;

/// Queries the query thread runs (their results must be assets of the project).
const QUERIES: [&str; 8] = [
    "*",
    "status:labeled",
    "label.category:spam AND NOT status:todo",
    "author:labeler0 OR model:clf",
    "meta.src:a AND status:todo",
    "prediction.score < 0.5",
    "labels >= 2",
    "status:reviewed OR (status:to_review AND label.category:ham)",
];
const WORDS: [&str; 8] = ["free", "call", "text", "win", "love", "home", "ok", "sorry"];

/// Filters whose counts are compared with a brute-force count over primary data.
type Brute = fn(&Asset, &[Label]) -> bool;
const BRUTE: [(&str, Brute); 11] = [
    ("status:todo", |a, _| a.status == Status::Todo),
    ("status:ongoing", |a, _| a.status == Status::Ongoing),
    ("status:labeled", |a, _| a.status == Status::Labeled),
    ("status:to_review", |a, _| a.status == Status::ToReview),
    ("status:reviewed", |a, _| a.status == Status::Reviewed),
    ("label.category:spam", |_, h| {
        latest_has(h, LabelKind::Annotation, "spam")
    }),
    ("prediction.category:ham", |_, h| {
        latest_has(h, LabelKind::Prediction, "ham")
    }),
    ("author:labeler1", |_, h| {
        h.iter()
            .any(|l| l.kind == LabelKind::Annotation && l.source == Source::human("labeler1"))
    }),
    ("model:clf", |_, h| {
        h.iter()
            .any(|l| matches!(&l.source, Source::Model { name, .. } if name == "clf"))
    }),
    ("labels >= 2", |_, h| {
        let authors: HashSet<&Source> = h
            .iter()
            .filter(|l| l.kind == LabelKind::Annotation)
            .map(|l| &l.source)
            .collect();
        authors.len() >= 2
    }),
    ("meta.src:a AND NOT status:todo", |a, _| {
        a.meta.get("src") == Some(&MetaValue::Str("a".into())) && a.status != Status::Todo
    }),
];

/// Whether the latest label of this kind of some source answers `class` for `category`.
fn latest_has(history: &[Label], kind: LabelKind, class: &str) -> bool {
    let mut latest: BTreeMap<&Source, &Label> = BTreeMap::new();
    for l in history.iter().filter(|l| l.kind == kind) {
        latest.insert(&l.source, l);
    }
    latest
        .values()
        .any(|l| l.answers.get("category") == Some(&Answer::class(class)))
}

/// What one thread was acknowledged and counted.
#[derive(Default)]
struct Acks {
    /// Labels written: id and (kind, source, answers).
    labels: Vec<(LabelId, LabelKind, Source, BTreeMap<String, Answer>)>,
    /// Statuses set, in this thread's order.
    statuses: Vec<(AssetId, Status)>,
    /// `set_status` refused because another thread moved the asset first.
    illegal: u64,
    queries: u64,
    searches: u64,
    /// Snapshots created: name, digest, members.
    snapshots: Vec<(String, Digest, u64)>,
    /// Examples read back from snapshots.
    examples: u64,
}

type ThreadResult = Result<Acks, String>;

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn e2s(e: Error) -> String {
    e.to_string()
}

/// Half the time one of the first few assets, so that writers contend for them.
fn pick_asset(rng: &mut Rng, ids: &[AssetId]) -> AssetId {
    if rng.below(2) == 0 {
        ids[rng.below(HOT.min(ids.len()))]
    } else {
        *rng.pick(ids)
    }
}

fn labeler(db: Db, ids: Vec<AssetId>, k: usize, end: Instant) -> ThreadResult {
    let mut rng = Rng::new(100 + k as u64);
    let mut acks = Acks::default();
    let user = format!("labeler{k}");
    while Instant::now() < end {
        let id = pick_asset(&mut rng, &ids);
        let category = *rng.pick(&CATEGORIES);
        let label = if rng.below(5) == 0 {
            NewLabel::prediction("clf", k.to_string())
                .answer("category", Answer::class(category))
                .score("category", category, *rng.pick(&[0.25, 0.5, 0.75]))
        } else {
            NewLabel::annotation(user.as_str()).answer("category", Answer::class(category))
        };
        let (kind, source, answers) = (label.kind, label.source.clone(), label.answers.clone());
        let lid = db.add_label(id, label).map_err(e2s)?;
        acks.labels.push((lid, kind, source, answers));
    }
    Ok(acks)
}

/// Moves the statuses of the assets with `id % MOVERS == k` (so that each asset's status
/// writes come from one thread, in its order), racing the labelers' automatic moves.
fn mover(db: Db, ids: Vec<AssetId>, k: usize, end: Instant) -> ThreadResult {
    let mine: Vec<AssetId> = ids.into_iter().filter(|id| id.0 as usize % MOVERS == k).collect();
    let mut rng = Rng::new(200 + k as u64);
    let mut acks = Acks::default();
    let actor = format!("mover{k}");
    while Instant::now() < end {
        let id = pick_asset(&mut rng, &mine);
        let from = db.asset(id).map_err(e2s)?.status;
        let targets: Vec<Status> = Status::ALL.into_iter().filter(|s| from.can_become(*s)).collect();
        let to = *rng.pick(&targets);
        match db.set_status(&actor, id, to) {
            Ok(()) => acks.statuses.push((id, to)),
            Err(Error::IllegalTransition { .. }) => acks.illegal += 1,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(acks)
}

fn querier(db: Db, all: HashSet<AssetId>, end: Instant) -> ThreadResult {
    let mut rng = Rng::new(300);
    let mut acks = Acks::default();
    while Instant::now() < end {
        let q = *rng.pick(&QUERIES);
        let set = db.query(PROJECT, q).map_err(e2s)?;
        ensure(set.iter().all(|id| all.contains(&id)), || {
            format!("{q:?} returned an asset outside the project")
        })?;
        ensure(set.len() <= all.len() as u64, || {
            format!("{q:?}: {} results", set.len())
        })?;
        acks.queries += 1;
    }
    Ok(acks)
}

fn searcher(db: Db, all: HashSet<AssetId>, end: Instant) -> ThreadResult {
    let mut rng = Rng::new(400);
    let mut acks = Acks::default();
    while Instant::now() < end {
        let word = *rng.pick(&WORDS);
        let query = if rng.below(2) == 0 {
            word.to_string()
        } else {
            format!("{word} AND NOT status:todo")
        };
        let (total, hits) = db.search(PROJECT, &query, None, 10).map_err(e2s)?;
        ensure(hits.len() <= 10 && hits.len() as u64 <= total, || {
            format!("{query:?}: {} hits of {total}", hits.len())
        })?;
        for hit in &hits {
            ensure(all.contains(&hit.asset), || {
                format!("{query:?} found {:?} outside the project", hit.asset)
            })?;
            let text = db
                .asset(hit.asset)
                .map_err(e2s)?
                .content
                .text()
                .unwrap_or("")
                .to_lowercase();
            // ASCII folding can match a word spelled with accents; only plain texts are checked.
            ensure(!text.is_ascii() || text.contains(word), || {
                format!("{query:?} found {text:?}")
            })?;
        }
        acks.searches += 1;
    }
    Ok(acks)
}

fn snapshotter(db: Db, end: Instant) -> ThreadResult {
    let mut rng = Rng::new(500);
    let mut acks = Acks::default();
    let filters = [
        Filter::All,
        Filter::Status(Status::Labeled),
        labeldb::query::parse("label.category:spam").map_err(e2s)?,
    ];
    let mut n = 0;
    while Instant::now() < end {
        let name = format!("soak-{n}");
        n += 1;
        let info = db
            .create_snapshot(
                "snapshotter",
                PROJECT,
                &name,
                rng.pick(&filters),
                &Selection::LatestHuman,
            )
            .map_err(e2s)?;
        let snap = db.snapshot(PROJECT, &name).map_err(e2s)?;
        ensure(snap.len() as u64 == info.assets, || {
            format!("{name}: {} members, {} in its info", snap.len(), info.assets)
        })?;
        for _ in 0..snap.len().min(4) {
            let ex = snap.get(rng.below(snap.len())).map_err(e2s)?;
            let label = db.label(ex.label).map_err(e2s)?;
            let asset = db.asset(ex.asset).map_err(e2s)?;
            ensure(
                ex.answers == label.answers && label.kind == LabelKind::Annotation,
                || format!("{name}: example {} does not carry label {}", ex.external_id, ex.label),
            )?;
            ensure(
                ex.content == asset.content && ex.external_id == asset.external_id,
                || format!("{name}: example {} is not its asset", ex.external_id),
            )?;
            acks.examples += 1;
        }
        acks.snapshots.push((name, info.digest, info.assets));
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(acks)
}

/// Every query count from the indexes next to its brute-force count over primary data.
fn counts(db: &Db) -> labeldb::Result<Vec<(&'static str, u64, u64)>> {
    let mut data = Vec::new();
    for id in db.asset_ids(PROJECT)? {
        data.push((db.asset(id)?, db.history(id)?));
    }
    BRUTE
        .iter()
        .map(|(q, f)| {
            let brute = data.iter().filter(|(a, h)| !a.deleted && f(a, h)).count() as u64;
            Ok((*q, db.query(PROJECT, q)?.len(), brute))
        })
        .collect()
}

fn check_counts(db: &Db, when: &str) -> TestResult {
    for (q, indexed, brute) in counts(db)? {
        assert_eq!(
            indexed, brute,
            "{when}: {q:?} counts {indexed} from the indexes, {brute} by brute force"
        );
    }
    Ok(())
}

#[test]
fn eight_threads_on_one_db_lose_no_write_and_keep_indexes_equal_to_a_rebuild() -> TestResult {
    let secs: u64 = match std::env::var("LABELDB_SOAK_SECS") {
        Ok(v) if !v.is_empty() => v.parse()?,
        _ => 10,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let db = Db::open(&path)?;
    db.create_project("admin", PROJECT, schema(SCHEMA))?;
    let source = std::fs::read_to_string(data_dir().join("sms_spam_collection/SMSSpamCollection"))?;
    let mut assets = Vec::new();
    for (i, line) in source.lines().take(ASSETS).enumerate() {
        let (class, text) = line.split_once('\t').ok_or("no TAB in SMSSpamCollection")?;
        let mut a = NewAsset::text(format!("sms-{i}"), text).with_meta("src", MetaValue::Str(["a", "b"][i % 2].into()));
        if i % 5 == 0 {
            a = a.with_label(NewLabel::annotation("gold").answer("category", Answer::class(class)));
        }
        assets.push(a);
    }
    let initial_labels = assets.iter().map(|a| a.labels.len() as u64).sum::<u64>();
    let ids = db.add_assets("admin", PROJECT, assets)?.added;
    assert_eq!(ids.len(), ASSETS);
    db.flush()?;
    let all: HashSet<AssetId> = ids.iter().copied().collect();
    let initial: HashMap<AssetId, Status> = ids
        .iter()
        .map(|id| Ok((*id, db.asset(*id)?.status)))
        .collect::<labeldb::Result<_>>()?;
    let start_seq = db.last_seq();

    let duration = Duration::from_secs(secs);
    let started = Instant::now();
    let end = started + duration;
    let (tx, rx) = mpsc::channel::<(String, ThreadResult)>();
    let mut handles = Vec::new();
    let mut spawn = |name: String, f: Box<dyn FnOnce() -> ThreadResult + Send>| -> std::io::Result<()> {
        let tx = tx.clone();
        let thread_name = name.clone();
        handles.push(std::thread::Builder::new().name(name).spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err("the thread panicked".into()));
            let _ = tx.send((thread_name, result));
        })?);
        Ok(())
    };
    for k in 0..LABELERS {
        let (db, ids) = (db.clone(), ids.clone());
        spawn(format!("labeler{k}"), Box::new(move || labeler(db, ids, k, end)))?;
    }
    for k in 0..MOVERS {
        let (db, ids) = (db.clone(), ids.clone());
        spawn(format!("mover{k}"), Box::new(move || mover(db, ids, k, end)))?;
    }
    let (qdb, qall) = (db.clone(), all.clone());
    spawn("querier".into(), Box::new(move || querier(qdb, qall, end)))?;
    let (sdb, sall) = (db.clone(), all.clone());
    spawn("searcher".into(), Box::new(move || searcher(sdb, sall, end)))?;
    let ndb = db.clone();
    spawn("snapshotter".into(), Box::new(move || snapshotter(ndb, end)))?;
    drop(tx);

    let deadline = end + Duration::from_secs(60);
    let mut results: BTreeMap<String, Acks> = BTreeMap::new();
    for _ in 0..handles.len() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((name, Ok(acks))) => {
                results.insert(name, acks);
            }
            Ok((name, Err(e))) => panic!("thread {name} failed: {e}"),
            Err(_) => panic!(
                "deadlock? only {:?} of 8 threads finished by {secs} s + 60 s",
                results.keys()
            ),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for h in handles {
        h.join().map_err(|_| "a thread panicked after reporting")?;
    }

    // No lost write, and no write nobody asked for: every acknowledged label is there with
    // its answers, and the labels and the event log hold exactly the acknowledged writes.
    let acks: Vec<&Acks> = results.values().collect();
    let labels: Vec<_> = acks.iter().flat_map(|a| &a.labels).collect();
    for (id, kind, source, answers) in &labels {
        let stored = db.label(*id)?;
        assert_eq!(
            (&stored.kind, &stored.source, &stored.answers),
            (kind, source, answers),
            "label {id}"
        );
    }
    let revisions: u64 = ids
        .iter()
        .map(|id| db.asset(*id).map(|a| u64::from(a.revisions)))
        .sum::<labeldb::Result<_>>()?;
    assert_eq!(
        revisions,
        initial_labels + labels.len() as u64,
        "labels stored vs acknowledged"
    );
    let acked_labels: HashSet<LabelId> = labels.iter().map(|l| l.0).collect();
    assert_eq!(acked_labels.len(), labels.len(), "a label id was acknowledged twice");
    let mut logged_labels = HashSet::new();
    let mut logged_statuses: BTreeMap<String, Vec<(AssetId, Status)>> = BTreeMap::new();
    let mut logged_snapshots = Vec::new();
    let mut replayed = initial.clone();
    for e in db.changes_since(start_seq) {
        let e = e?;
        match e.action {
            Action::LabelAdded {
                label, asset, status, ..
            } => {
                logged_labels.insert(label);
                if let Some((_, after)) = status {
                    replayed.insert(asset, after);
                }
            }
            Action::StatusChanged { asset, after, .. } => {
                logged_statuses.entry(e.actor.clone()).or_default().push((asset, after));
                replayed.insert(asset, after);
            }
            Action::SnapshotCreated {
                name, digest, assets, ..
            } => logged_snapshots.push((name, digest, assets)),
            other => panic!("event {} was not written by the soak: {other:?}", e.seq),
        }
    }
    assert_eq!(logged_labels, acked_labels, "LabelAdded events vs acknowledged labels");
    for k in 0..MOVERS {
        let actor = format!("mover{k}");
        assert_eq!(
            logged_statuses.remove(&actor).unwrap_or_default(),
            results[&actor].statuses,
            "{actor}'s StatusChanged events vs its acknowledged status changes"
        );
    }
    assert!(
        logged_statuses.is_empty(),
        "status changes by unknown actors: {logged_statuses:?}"
    );
    assert_eq!(
        logged_snapshots, results["snapshotter"].snapshots,
        "SnapshotCreated events"
    );

    // Each asset's status is the last one its mover set — or LABELED, when that was TODO or
    // ONGOING and an acknowledged annotation may have moved it on afterwards. It also
    // equals a replay of the event log.
    let annotated: HashSet<AssetId> = labels
        .iter()
        .filter(|l| l.1 == LabelKind::Annotation)
        .map(|l| l.0.asset())
        .collect();
    let mut last_set: HashMap<AssetId, Status> = initial.clone();
    for k in 0..MOVERS {
        last_set.extend(results[&format!("mover{k}")].statuses.iter().copied());
    }
    for id in &ids {
        let status = db.asset(*id)?.status;
        let set = last_set[id];
        let moved_on =
            matches!(set, Status::Todo | Status::Ongoing) && annotated.contains(id) && status == Status::Labeled;
        assert!(status == set || moved_on, "asset {id:?} is {status}, last set to {set}");
        assert_eq!(
            status, replayed[id],
            "asset {id:?}: status vs a replay of the event log"
        );
    }

    db.flush()?;
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    check_counts(&db, "after the soak")?;
    let snapshots = &results["snapshotter"].snapshots;
    for (name, digest, _) in snapshots {
        assert_eq!(&db.snapshot_info(PROJECT, name)?.digest, digest, "{name}");
        assert_eq!(db.verify_snapshot(PROJECT, name)?, Vec::<String>::new(), "{name}");
    }
    let before: Vec<_> = counts(&db)?;
    drop(db);
    let db = crate::reopen(&path)?;
    let report = db.verify()?;
    assert!(report.is_clean(), "after reopen: {:?}", report.problems);
    check_counts(&db, "after reopen")?;
    assert_eq!(counts(&db)?, before, "counts changed across reopen");
    for (name, digest, _) in snapshots {
        assert_eq!(&db.snapshot_info(PROJECT, name)?.digest, digest, "{name} after reopen");
    }

    let sum = |f: fn(&Acks) -> u64| acks.iter().map(|a| f(a)).sum::<u64>();
    let statuses = sum(|a| a.statuses.len() as u64);
    let (queries, searches) = (sum(|a| a.queries), sum(|a| a.searches));
    println!(
        "soak: {elapsed:.1} s, 8 threads, {ASSETS} assets: {} labels ({:.0}/s), {statuses} status changes ({:.0}/s, {} refused \
         as illegal after a race), {queries} queries ({:.0}/s), {searches} searches ({:.0}/s), {} snapshots ({} examples read)",
        labels.len(),
        labels.len() as f64 / elapsed,
        statuses as f64 / elapsed,
        sum(|a| a.illegal),
        queries as f64 / elapsed,
        searches as f64 / elapsed,
        snapshots.len(),
        sum(|a| a.examples),
    );
    assert!(!labels.is_empty() && statuses > 0 && queries > 0 && searches > 0 && !snapshots.is_empty());
    Ok(())
}
