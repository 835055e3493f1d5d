//! Persistence, concurrency and corruption detection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use labeldb::{
    Answer, AssetId, Db, Durability, Error, LabelId, MetaValue, NewAsset, NewLabel, RecordRef, Status, FORMAT_VERSION,
};

use crate::{observe, schema, TestResult};

const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["order", "complaint"]},
    {"name": "objects", "kind": "boxes", "classes": ["box"]}
]}"#;

fn populate(db: &Db) -> labeldb::Result<(AssetId, AssetId)> {
    db.create_project("admin", "mail", schema(SCHEMA))?;
    db.create_project("admin", "other", schema(SCHEMA))?;
    let text = db.add_asset(
        "admin",
        "mail",
        NewAsset::text("e1", "Send 3 boxes, café ☕").with_meta("lang", MetaValue::Str("en".into())),
    )?;
    let image = db.add_asset("admin", "other", NewAsset::image("i1", "s3://bucket/i1.jpg", 640, 480))?;
    let pred = db.add_label(
        text,
        NewLabel::prediction("clf", "1").answer("category", Answer::class("order")),
    )?;
    let mut fix = NewLabel::annotation("alice").answer("category", Answer::class("complaint"));
    fix.derived_from = Some(pred);
    fix.seconds = 12.5;
    db.add_label(text, fix)?;
    db.set_status("rita", text, Status::Reviewed)?;
    db.set_priority("admin", image, -1.25)?;
    db.set_honeypot("admin", image, true)?;
    db.set_meta("admin", image, "split", Some(MetaValue::Num(0.5)))?;
    db.delete_asset("admin", image)?;
    Ok((text, image))
}

#[test]
fn reopening_keeps_everything_and_continues_the_counters() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let db = Db::open(&path)?;
    let (text, image) = populate(&db)?;
    let before = observe(&db);
    assert_eq!(before.assets.len(), 2);
    drop(db);

    let db = crate::reopen(&path)?;
    assert_eq!(observe(&db), before, "reopening changed what is visible");
    assert!(db.verify()?.is_clean());
    assert_eq!(db.path(), path.as_path());
    assert_eq!(db.asset_by_external_id("mail", "e1")?.id, text);
    assert!(db.asset(image)?.deleted);
    assert_eq!(db.project("other")?.id, labeldb::ProjectId(1));
    // New writes continue the seq, asset and label numbering: nothing is reused.
    let seq = db.last_seq();
    let next = db.add_asset("admin", "mail", NewAsset::text("e2", "more"))?;
    assert_eq!(next, AssetId(image.0 + 1));
    assert_eq!(db.last_seq(), seq + 1);
    let l = db.add_label(
        text,
        NewLabel::annotation("bob").answer("category", Answer::class("order")),
    )?;
    assert_eq!(l, LabelId::new(text, 2));
    let p = db.create_project("admin", "third", schema(SCHEMA))?;
    assert_eq!(p, labeldb::ProjectId(2));
    let after = observe(&db);
    drop(db);
    let db = crate::reopen(&path)?;
    assert_eq!(observe(&db), after);
    assert!(db.verify()?.is_clean());
    Ok(())
}

#[test]
fn durable_writes_survive_reopen_with_immediate_durability() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    {
        let db = Db::builder()
            .durability(Durability::Immediate)
            .cache_bytes(1 << 20)
            .open(&path)?;
        db.create_project("admin", "p", schema(SCHEMA))?;
        db.add_asset("admin", "p", NewAsset::text("a", "x"))?;
        db.flush()?;
        assert!(db.size_on_disk()? > 0);
    }
    let db = crate::reopen(&path)?;
    assert_eq!(db.last_seq(), 2);
    assert_eq!(db.asset_by_external_id("p", "a")?.content.text(), Some("x"));
    Ok(())
}

#[test]
fn db_is_send_sync_and_clone() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<Db>();
}

#[test]
fn clones_read_consistently_from_four_threads_while_a_writer_writes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path().join("db"))?;
    db.create_project("admin", "p", schema(SCHEMA))?;
    let ids = db
        .add_assets(
            "admin",
            "p",
            (0..8)
                .map(|i| NewAsset::text(format!("a{i}"), format!("text {i}")))
                .collect(),
        )?
        .added;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let db = db.clone();
            let ids = ids.clone();
            let done = done.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut last_seq = 0;
                let mut rounds = 0u64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let seq = db.last_seq();
                    if seq < last_seq {
                        return Err(format!("reader {r}: last_seq went back from {last_seq} to {seq}"));
                    }
                    last_seq = seq;
                    // Every event up to last_seq is readable.
                    if db.event(seq).map_err(|e| e.to_string())?.is_none() {
                        return Err(format!("reader {r}: event {seq} missing"));
                    }
                    for &id in &ids {
                        let asset = db.asset(id).map_err(|e| e.to_string())?;
                        let history = db.history(id).map_err(|e| e.to_string())?;
                        // History is read after the asset, so it holds at least its revisions.
                        if history.len() < asset.revisions as usize {
                            return Err(format!(
                                "reader {r}: {id} has {} revisions but history {}",
                                asset.revisions,
                                history.len()
                            ));
                        }
                        for (rev, l) in history.iter().enumerate() {
                            if l.id != LabelId::new(id, rev as u32) {
                                return Err(format!("reader {r}: {id} history has a gap at {rev}"));
                            }
                        }
                        // An annotated asset is LABELED: status and revisions change together.
                        if asset.revisions > 0 && asset.status != Status::Labeled {
                            return Err(format!("reader {r}: {id} has labels but status {}", asset.status));
                        }
                    }
                    let feed: Vec<u64> = db
                        .changes_since(0)
                        .map(|e| e.map(|e| e.seq))
                        .collect::<labeldb::Result<_>>()
                        .map_err(|e| e.to_string())?;
                    if feed.iter().enumerate().any(|(i, s)| *s != i as u64 + 1) || (feed.len() as u64) < seq {
                        return Err(format!(
                            "reader {r}: feed of {} events is not contiguous up to {seq}",
                            feed.len()
                        ));
                    }
                    rounds += 1;
                    if finished {
                        return Ok(rounds);
                    }
                }
            })
        })
        .collect();
    let writer = {
        let db = db.clone();
        let ids = ids.clone();
        std::thread::spawn(move || -> labeldb::Result<()> {
            for i in 0..200usize {
                let id = ids[i % ids.len()];
                let user = if i % 2 == 0 { "alice" } else { "bob" };
                db.add_label(
                    id,
                    NewLabel::annotation(user).answer("category", Answer::class("order")),
                )?;
                db.set_meta("admin", id, "n", Some(MetaValue::Num(i as f64)))?;
            }
            Ok(())
        })
    };
    let written = writer.join().expect("writer panicked");
    done.store(true, Ordering::Release);
    for r in readers {
        let rounds = r.join().expect("reader panicked")?;
        assert!(rounds >= 1);
    }
    written?;
    assert_eq!(db.last_seq(), 2 + 400);
    for &id in &ids {
        assert_eq!(db.history(id)?.len(), 25);
    }
    Ok(())
}

/// Flips one byte in the middle of a stored record through the test hook.
fn damage(db: &Db, record: RecordRef) -> TestResult {
    let mut bytes = db
        .raw_record(record.clone())?
        .ok_or_else(|| format!("no record {record:?}"))?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    db.damage_record(record, &bytes)?;
    Ok(())
}

fn expect_corruption(r: labeldb::Result<()>, key: &str, what: &str) {
    match r {
        Err(Error::Corruption { key: k, reason }) => {
            assert_eq!(k, key, "{what}");
            assert!(!reason.is_empty(), "{what}: no reason");
        }
        other => panic!("{what}: expected Corruption at {key}, got {other:?}"),
    }
}

/// A populated database with three damaged records: an asset, a label and an event.
fn damaged_db(path: &std::path::Path) -> Result<(Db, AssetId, AssetId), Box<dyn std::error::Error>> {
    let db = Db::open(path)?;
    let (text, image) = populate(&db)?;
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    damage(&db, RecordRef::Asset(text))?;
    damage(&db, RecordRef::Label(LabelId::new(text, 1)))?;
    damage(&db, RecordRef::Event(4))?;
    Ok((db, text, image))
}

#[test]
fn a_damaged_record_is_reported_as_corruption_naming_its_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let (mut db, text, image) = damaged_db(&path)?;
    for round in ["damaged", "damaged and reopened"] {
        let asset = format!("asset/{}", text.0);
        expect_corruption(db.asset(text).map(drop), &asset, round);
        expect_corruption(db.asset_by_external_id("mail", "e1").map(drop), &asset, round);
        expect_corruption(db.set_status("rita", text, Status::ToReview), &asset, round);
        expect_corruption(db.add_label(text, NewLabel::annotation("bob")).map(drop), &asset, round);
        let label = format!("label/{}/1", text.0);
        expect_corruption(db.history(text).map(drop), &label, round);
        expect_corruption(db.label(LabelId::new(text, 1)).map(drop), &label, round);
        expect_corruption(db.event(4).map(drop), "event/4", round);
        let feed: Vec<labeldb::Result<labeldb::Event>> = db.changes_since(0).collect();
        assert!(feed[..3].iter().all(|e| e.is_ok()), "{round}: events 1-3 are intact");
        match &feed[3] {
            Err(Error::Corruption { key, .. }) => assert_eq!(key, "event/4", "{round}: changes_since"),
            other => panic!("{round}: changes_since: expected Corruption at event/4, got {other:?}"),
        }
        // Undamaged records still read.
        assert!(db.asset(image)?.deleted, "{round}");
        assert_eq!(db.label(LabelId::new(text, 0))?.id, LabelId::new(text, 0), "{round}");
        assert!(db.event(5)?.is_some(), "{round}");
        if round == "damaged" {
            drop(db);
            db = crate::reopen(&path)?;
        }
    }
    Ok(())
}

#[test]
fn verify_lists_every_damaged_record_by_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (db, text, _) = damaged_db(&dir.path().join("db"))?;
    let report = match db.verify() {
        Ok(r) => r,
        Err(e) => panic!("verify failed instead of reporting the damage: {e:?}"),
    };
    assert!(!report.is_clean(), "verify found nothing");
    assert!(report.records > 0);
    let keys = [
        format!("asset/{}", text.0),
        format!("label/{}/1", text.0),
        "event/4".to_string(),
    ];
    for key in keys {
        assert!(
            report.problems.iter().any(|p| p.message.contains(&key)),
            "verify does not name {key}: {:?}",
            report.problems
        );
    }
    Ok(())
}

#[test]
fn a_damaged_index_checkpoint_is_rebuilt_on_open_and_rewritten_by_the_next_flush() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let db = Db::open(&path)?;
    populate(&db)?;
    let before = observe(&db);
    db.flush()?;
    damage(&db, RecordRef::IndexCheckpoint)?;
    drop(db);

    let db = crate::reopen(&path)?;
    assert!(db.index_info().rebuilt.is_some(), "{:?}", db.index_info());
    assert_eq!(observe(&db), before);
    db.flush()?;
    drop(db);

    let db = crate::reopen(&path)?;
    let info = db.index_info();
    assert_eq!(
        (info.rebuilt, info.checkpoint_seq),
        (None, before.last_seq),
        "the rebuilt index was not checkpointed"
    );
    assert_eq!(observe(&db), before);
    let report = db.verify()?;
    assert!(report.is_clean(), "{:?}", report.problems);
    Ok(())
}

/// Writes a raw value under `key` with sled directly: labeldb has no hook for the META
/// records (format version, counters).
fn overwrite_meta(path: &std::path::Path, name: &str, value: Vec<u8>) -> TestResult {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let sled = loop {
        match sled::open(path) {
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => break other?,
        }
    };
    // Key layout (src/store/keys.rs): tag 0x00, then the record's name.
    sled.insert([&[0x00][..], name.as_bytes()].concat(), value)?;
    sled.flush()?;
    Ok(())
}

/// A record as src/store/codec.rs writes it: version byte 1, the bincode (varint) payload,
/// crc32 of both, big-endian.
fn record(payload: &[u8]) -> Vec<u8> {
    let mut r = vec![1u8];
    r.extend_from_slice(payload);
    let crc = crc32fast::hash(&r);
    r.extend_from_slice(&crc.to_be_bytes());
    r
}

#[test]
fn damaged_counters_or_a_newer_format_refuse_to_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    drop(Db::open(&path)?);
    overwrite_meta(&path, "counters", vec![1, 2, 3, 4, 5, 6])?;
    match crate::reopen(&path) {
        Err(Error::Corruption { key, .. }) => assert_eq!(key, "meta/counters"),
        Err(other) => panic!("expected Corruption, got {other:?}"),
        Ok(_) => panic!("opened a database with damaged counters"),
    }

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    drop(Db::open(&path)?);
    let newer = FORMAT_VERSION + 1;
    assert!(newer < 251, "a single-byte varint");
    overwrite_meta(&path, "format", record(&[newer as u8]))?;
    match crate::reopen(&path) {
        Err(Error::FormatTooNew { found, supported }) => assert_eq!((found, supported), (newer, FORMAT_VERSION)),
        Err(other) => panic!("expected FormatTooNew, got {other:?}"),
        Ok(_) => panic!("opened a database of a newer format"),
    }
    Ok(())
}

/// Mail `i`: external id `m{i}`, one annotation.
fn mail(i: u32) -> NewAsset {
    NewAsset::text(format!("m{i}"), format!("mail number {i}"))
        .with_label(NewLabel::annotation("alice").answer("category", Answer::class("order")))
}

/// Assets of one write are stored in runs of at most 64 ids that never cross a block
/// of 64 (docs/format.md, "Asset runs"); later changes go to per-asset records that
/// take precedence. Everything reads back the same before and after a reopen, and a
/// purge drops the asset's entry (the whole run once it is empty).
#[test]
fn assets_read_back_through_their_runs_and_later_changes_take_precedence() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let mut db = Db::open(&path)?;
    db.create_project("admin", "mail", schema(SCHEMA))?;
    // Ids 0..10, then 10..140: runs 0 (10), 10 (54), 64 (64), 128 (12).
    db.add_assets("admin", "mail", (0..10).map(mail).collect())?;
    db.add_assets("admin", "mail", (10..140).map(mail).collect())?;
    for first in [0, 10, 64, 128] {
        assert!(db.raw_record(RecordRef::Run(AssetId(first)))?.is_some(), "run/{first}");
    }
    assert!(db.raw_record(RecordRef::Run(AssetId(11)))?.is_none());
    assert!(
        db.raw_record(RecordRef::Asset(AssetId(20)))?.is_none(),
        "no asset record until it changes"
    );

    db.set_status("rita", AssetId(20), Status::Reviewed)?;
    db.add_label(
        AssetId(70),
        NewLabel::annotation("bob").answer("category", Answer::class("complaint")),
    )?;
    db.purge_asset("admin", AssetId(5))?;
    for id in 128..140 {
        db.purge_asset("admin", AssetId(id))?;
    }
    assert!(db.raw_record(RecordRef::Asset(AssetId(20)))?.is_some());
    assert!(
        db.raw_record(RecordRef::Run(AssetId(128)))?.is_none(),
        "an emptied run is removed"
    );
    // A purged external id can be added again, as a new asset.
    let again = db.add_asset("admin", "mail", mail(5))?;
    assert_eq!(again, AssetId(140));

    for round in ["written", "reopened"] {
        assert_eq!(db.asset(AssetId(20))?.status, Status::Reviewed, "{round}");
        assert_eq!(db.asset(AssetId(21))?.status, Status::Labeled, "{round}");
        let history = db.history(AssetId(70))?;
        assert_eq!(history.len(), 2, "{round}");
        assert_eq!(history[1].source.to_string(), "bob", "{round}");
        assert_eq!(db.asset(AssetId(70))?.revisions, 2, "{round}");
        assert_eq!(db.label(LabelId::new(AssetId(70), 0))?.source.to_string(), "alice");
        assert!(matches!(db.asset(AssetId(5)), Err(Error::UnknownAsset(_))), "{round}");
        assert!(matches!(db.asset(AssetId(130)), Err(Error::UnknownAsset(_))), "{round}");
        assert_eq!(db.asset_by_external_id("mail", "m5")?.id, AssetId(140), "{round}");
        assert_eq!(db.asset_by_external_id("mail", "m63")?.id, AssetId(63), "{round}");
        assert!(db.asset_by_external_id("mail", "m130").is_err(), "{round}");
        let ids = db.asset_ids("mail")?;
        let want: Vec<AssetId> = (0..128).filter(|&i| i != 5).chain([140]).map(AssetId).collect();
        assert_eq!(ids, want, "{round}");
        let report = db.add_assets("admin", "mail", vec![mail(64), mail(129)])?;
        assert_eq!(report.duplicates, ["m64"], "{round}");
        db.purge_asset("admin", report.added[0])?;
        let report = db.verify()?;
        assert!(report.is_clean(), "{round}: {:?}", report.problems);
        if round == "written" {
            drop(db);
            db = crate::reopen(&path)?;
        }
    }
    Ok(())
}

/// A damaged run: reading the asset whose entry the damage hit is Corruption naming the
/// run, while its other assets still read as they were (a point read checks the
/// entry's own crc); `verify` names the run; opening still works (the external-id map
/// comes from the FACTS blocks).
#[test]
fn a_damaged_run_is_corruption_naming_the_run_for_the_asset_it_hit() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let mut db = Db::open(&path)?;
    db.create_project("admin", "mail", schema(SCHEMA))?;
    let assets = (0..70).map(mail).collect();
    db.add_assets("admin", "mail", assets)?;
    let before: Vec<_> = (64..70).map(|i| db.asset(AssetId(i))).collect::<Result<_, _>>()?;
    // Flip a byte of asset 66's text inside run 64.
    let mut bytes = db.raw_record(RecordRef::Run(AssetId(64)))?.ok_or("no run/64")?;
    let at = bytes
        .windows(14)
        .position(|w| w == b"mail number 66")
        .ok_or("text not in the run")?;
    bytes[at + 5] ^= 0x20;
    db.damage_record(RecordRef::Run(AssetId(64)), &bytes)?;
    for round in ["damaged", "damaged and reopened"] {
        for (i, was) in (64..70).zip(&before) {
            if i != 66 {
                assert_eq!(&db.asset(AssetId(i))?, was, "{round}: asset {i}");
            }
        }
        let id = AssetId(66);
        expect_corruption(db.asset(id).map(drop), "run/64", round);
        expect_corruption(db.history(id).map(drop), "run/64", round);
        expect_corruption(db.set_status("rita", id, Status::Reviewed), "run/64", round);
        expect_corruption(db.asset_by_external_id("mail", "m66").map(drop), "run/64", round);
        assert_eq!(db.asset(AssetId(63))?.external_id, "m63", "{round}");
        let report = db.verify()?;
        assert!(
            report.problems.iter().any(|p| p.message.contains("run/64")),
            "{round}: verify does not name run/64: {:?}",
            report.problems
        );
        if round == "damaged" {
            drop(db);
            db = crate::reopen(&path)?;
        }
    }
    Ok(())
}

/// A run's offset table pointing outside its body (a damaged record): reading the two
/// assets whose entries that offset bounds is Corruption naming the run, not a panic;
/// the run's other assets read as they were; `verify` names the run.
#[test]
fn a_run_whose_offset_table_is_damaged_is_corruption_naming_the_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path().join("db"))?;
    db.create_project("admin", "mail", schema(SCHEMA))?;
    db.add_assets("admin", "mail", (0..70).map(mail).collect())?;
    // Run 64 holds 6 entries: record version, layout byte, the table's length (28) and
    // its 7 little-endian offsets. Entry 3 (asset 67) starts at the fourth offset.
    let mut bytes = db.raw_record(RecordRef::Run(AssetId(64)))?.ok_or("no run/64")?;
    assert_eq!(bytes[1..3], [0xff, 28], "layout byte and table length");
    bytes[3 + 3 * 4 + 3] = 0x7f;
    db.damage_record(RecordRef::Run(AssetId(64)), &bytes)?;
    for id in [66, 67] {
        expect_corruption(db.asset(AssetId(id)).map(drop), "run/64", &format!("asset {id}"));
    }
    for id in [64, 65, 68, 69] {
        assert_eq!(db.asset(AssetId(id))?.external_id, format!("m{id}"));
    }
    let report = db.verify()?;
    assert!(
        report.problems.iter().any(|p| p.message.contains("run/64")),
        "verify does not name run/64: {:?}",
        report.problems
    );
    Ok(())
}

/// Format 3 listed a run's entries; format 4 gives runs an offset table. Opening a
/// format-3 database rewrites its runs (purged entries included) and every asset, its
/// history and every other read come back the same.
#[test]
fn a_format_3_database_has_its_runs_rewritten_when_opened_and_reads_the_same() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let db = Db::open(&path)?;
    db.create_project("admin", "mail", schema(SCHEMA))?;
    db.add_assets("admin", "mail", (0..10).map(mail).collect())?;
    db.add_assets("admin", "mail", (10..140).map(mail).collect())?;
    db.purge_asset("admin", AssetId(5))?;
    db.set_status("rita", AssetId(20), Status::Reviewed)?;
    db.add_label(
        AssetId(70),
        NewLabel::annotation("bob").answer("category", Answer::class("complaint")),
    )?;
    let read_all = |db: &Db| -> Result<Vec<_>, Error> {
        (0..140)
            .map(|i| Ok((db.asset(AssetId(i)).ok(), db.history(AssetId(i)).ok())))
            .collect()
    };
    let before = read_all(&db)?;
    assert!(before[5].0.is_none() && before[70].1.as_ref().is_some_and(|h| h.len() == 2));
    db.downgrade_to_format_3()?;
    let report = db.verify()?;
    assert!(
        report.problems.iter().any(|p| p.message.contains("format version 3")),
        "{:?}",
        report.problems
    );
    assert!(
        report.problems.iter().any(|p| p.message.contains("run/0")),
        "verify reads a format-3 run as damaged: {:?}",
        report.problems
    );
    drop(db);
    let db = crate::reopen(&path)?;
    assert_eq!(db.index_info().upgraded_from, Some(3));
    assert_eq!(read_all(&db)?, before);
    let run = db.raw_record(RecordRef::Run(AssetId(0)))?.ok_or("no run/0")?;
    assert_eq!(run[1], 0xff, "run/0 is in format 4's layout");
    let report = db.verify()?;
    assert!(report.is_clean(), "after the upgrade: {:?}", report.problems);
    assert_eq!(db.asset_by_external_id("mail", "m63")?.id, AssetId(63));
    Ok(())
}

/// `stats` counted from each asset's own reads (`asset`, `history`): what the one-pass
/// range scan must equal.
fn stats_one_by_one(db: &Db, project: &str) -> labeldb::Result<labeldb::Stats> {
    let mut s = labeldb::Stats::default();
    for status in Status::ALL {
        s.by_status.insert(status, 0);
    }
    for id in db.asset_ids(project)? {
        let asset = db.asset(id)?;
        if asset.deleted {
            s.deleted += 1;
            continue;
        }
        s.assets += 1;
        *s.by_status.entry(asset.status).or_default() += 1;
        let history = db.history(id)?;
        let mut latest: std::collections::HashMap<String, &labeldb::Label> = Default::default();
        for l in &history {
            s.labels += 1;
            *s.by_kind.entry(l.kind).or_default() += 1;
            *s.by_source.entry(l.source.to_string()).or_default() += 1;
            if l.kind == labeldb::LabelKind::Annotation {
                latest.insert(l.source.to_string(), l);
                s.human_seconds += f64::from(l.seconds);
            }
        }
        for l in latest.values() {
            for (job, answer) in &l.answers {
                let per_class = s.classes.entry(job.clone()).or_default();
                for class in answer.class_occurrences() {
                    *per_class.entry(class.to_string()).or_default() += 1;
                }
            }
        }
    }
    Ok(s)
}

/// Two projects written in turns (so that each one's id range holds the other's runs),
/// a third with three assets far apart (read one by one), later labels, status changes,
/// soft deletes and a purge: `stats` equals the counts from each asset's own reads, and
/// damage to one project's records fails only that project's stats.
#[test]
fn stats_read_in_one_pass_equal_the_counts_from_each_asset_and_fail_only_on_the_projects_own_damage() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path().join("db"))?;
    for p in ["mail", "other", "rare"] {
        db.create_project("admin", p, schema(SCHEMA))?;
    }
    let mut mails = Vec::new();
    for round in 0..6u32 {
        if round % 3 == 0 {
            db.add_asset("admin", "rare", NewAsset::text(format!("r{round}"), "rare"))?;
        }
        let batch: Vec<NewAsset> = (0..40).map(|i| mail(round * 40 + i)).collect();
        mails.extend(db.add_assets("admin", "mail", batch)?.added);
        let others: Vec<NewAsset> = (0..30)
            .map(|i| NewAsset::text(format!("o{round}-{i}"), "other mail"))
            .collect();
        db.add_assets("admin", "other", others)?;
    }
    for (k, &id) in mails.iter().enumerate() {
        match k % 5 {
            0 => {
                let mut l = NewLabel::annotation("bob").answer("category", Answer::class("complaint"));
                l.seconds = 2.5;
                db.add_label(id, l)?;
            }
            1 => db.set_status("rita", id, Status::Reviewed)?,
            2 if k % 3 == 0 => db.delete_asset("admin", id)?,
            3 => {
                db.add_label(
                    id,
                    NewLabel::prediction("clf", "2").answer("category", Answer::class("order")),
                )?;
            }
            _ => {}
        }
    }
    db.purge_asset("admin", mails[7])?;
    for p in ["mail", "other", "rare"] {
        assert_eq!(db.stats(p)?, stats_one_by_one(&db, p)?, "{p}");
    }
    // 240 mails, one purged; deleted: k = 12 mod 15 (16 of them); bob's complaint on
    // k = 0 mod 5 (48), none deleted; alice's order on every live mail.
    let stats = db.stats("mail")?;
    assert_eq!((stats.assets, stats.deleted), (223, 16));
    assert_eq!(stats.classes["category"]["complaint"], 48);
    assert_eq!(stats.classes["category"]["order"], 223);

    // A damaged label of a mail: mail's stats name it; other's, whose id range holds
    // it, are still counted.
    let hit = mails[100];
    damage(&db, RecordRef::Label(LabelId::new(hit, 1)))?;
    expect_corruption(db.stats("mail").map(drop), &format!("label/{}/1", hit.0), "mail");
    assert_eq!(db.stats("other")?, stats_one_by_one(&db, "other")?);
    Ok(())
}

/// A second open of a database that is open already (here in this process; another
/// process meets the same directory lock) is `Error::InUse` naming the directory, in one
/// line a person understands, and the first handle goes on working.
#[test]
fn a_database_held_open_is_refused_as_in_use() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let db = Db::open(&path)?;
    db.create_project("admin", "p", schema(SCHEMA))?;
    let err = Db::open(&path)
        .err()
        .ok_or("a second open of a held database succeeded")?;
    assert!(matches!(&err, Error::InUse { path: p } if *p == path), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("database {} is in use by another process", path.display())
    );
    assert_eq!(db.projects().len(), 1);
    db.flush()?;
    Ok(())
}

/// Format 4 stored project settings as bincode fields; format 5 stores them as JSON so
/// that a new setting reads as its default. Opening a format-4 database rewrites its
/// project records: settings, members and schema come back the same, the new setting at
/// its default.
#[test]
fn a_format_4_database_has_its_project_settings_rewritten_when_opened() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let db = Db::open(&path)?;
    db.create_project("admin", "mail", schema(SCHEMA))?;
    db.add_assets("admin", "mail", (0..5).map(mail).collect())?;
    db.change_settings("admin", "mail", |s| {
        s.consensus = 2;
        s.routing.insert("category".into(), 0.8);
    })?;
    db.set_member("admin", "mail", "root", labeldb::Role::Admin, Some("status:todo"))?;
    let before = db.project("mail")?;
    db.downgrade_to_format_4()?;
    assert!(db
        .verify()?
        .problems
        .iter()
        .any(|p| p.message.contains("format version 4")));
    drop(db);
    let db = crate::reopen(&path)?;
    assert_eq!(db.index_info().upgraded_from, Some(4));
    assert_eq!(db.project("mail")?, before);
    assert!(db.project("mail")?.settings.show_predictions_to_labelers);
    let report = db.verify()?;
    assert!(report.is_clean(), "after the upgrade: {:?}", report.problems);
    Ok(())
}

/// Settings are checked before anything is written, and each changed setting is one
/// event.
#[test]
fn settings_changes_are_checked_and_recorded_one_event_each() -> TestResult {
    let (_dir, db) = crate::temp_db();
    db.create_project("admin", "mail", schema(SCHEMA))?;
    let seq = db.last_seq();
    let bad = db.change_settings("admin", "mail", |s| s.review_coverage = 1.5);
    assert!(
        matches!(&bad, Err(Error::InvalidInput { what, .. }) if what == "setting review_coverage"),
        "{bad:?}"
    );
    assert_eq!(db.last_seq(), seq, "nothing written");
    let changed = db.change_settings("admin", "mail", |s| {
        s.consensus = 3;
        s.show_predictions_to_labelers = false;
    })?;
    assert_eq!(changed, ["consensus", "show_predictions_to_labelers"]);
    assert_eq!(db.last_seq(), seq + 2);
    assert!(db.change_settings("admin", "mail", |s| s.consensus = 3)?.is_empty());
    assert_eq!(db.last_seq(), seq + 2);
    Ok(())
}
