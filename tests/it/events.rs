//! The event log (change feed and audit trail) and label lineage.

use labeldb::{
    Action, Answer, AssetId, Db, Error, Event, LabelId, LabelKind, MetaValue, NewAsset, NewLabel, ProjectId, Source,
    Status,
};

use crate::{schema, temp_db, TestResult};

const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["order", "complaint"]},
    {"name": "entities", "kind": "spans", "classes": ["product"]}
]}"#;

fn clf3() -> NewLabel {
    NewLabel::prediction("clf", "3")
}

fn class(label: NewLabel, c: &str) -> NewLabel {
    label.answer("category", Answer::class(c))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// The writes of [`scripted`], as the event log must record them.
struct Script {
    e1: AssetId,
    e2: AssetId,
    expected: Vec<(String, Action)>,
    started: u64,
}

/// A fixed sequence of writes, including refused and no-op ones that must leave no event.
fn scripted(db: &Db) -> Script {
    let started = now_ms();
    let mut expected = Vec::new();
    let mut expect = |actor: &str, action: Action| expected.push((actor.to_string(), action));
    let p = db.create_project("admin", "mail", schema(SCHEMA)).expect("project");
    assert_eq!(p, ProjectId(0));
    expect(
        "admin",
        Action::ProjectCreated {
            project: p,
            name: "mail".into(),
        },
    );
    let report = db
        .add_assets(
            "loader",
            "mail",
            vec![
                NewAsset::text("e1", "Please send 3 boxes"),
                NewAsset::text("e2", "Where is my order?").with_label(class(clf3(), "complaint")),
            ],
        )
        .expect("assets");
    let (e1, e2) = (report.added[0], report.added[1]);
    expect(
        "loader",
        Action::AssetsAdded {
            project: p,
            first: e1,
            last: e2,
            labels: 1,
        },
    );

    let pred = db
        .add_label(e1, class(clf3(), "order").score("category", "order", 0.55))
        .expect("prediction");
    expect(
        "model:clf@3",
        Action::LabelAdded {
            asset: e1,
            label: pred,
            kind: LabelKind::Prediction,
            source: Source::model("clf@3").expect("source"),
            status: None,
        },
    );
    let mut fix = class(NewLabel::annotation("alice"), "complaint");
    fix.derived_from = Some(pred);
    let fix = db.add_label(e1, fix).expect("correction");
    expect(
        "alice",
        Action::LabelAdded {
            asset: e1,
            label: fix,
            kind: LabelKind::Annotation,
            source: Source::human("alice"),
            status: Some((Status::Todo, Status::Labeled)),
        },
    );
    db.set_status("rita", e1, Status::ToReview).expect("to review");
    expect(
        "rita",
        Action::StatusChanged {
            asset: e1,
            before: Status::Labeled,
            after: Status::ToReview,
        },
    );
    // Refused: no event.
    assert!(matches!(
        db.set_status("rita", e1, Status::ToReview),
        Err(Error::IllegalTransition { .. })
    ));
    let again = db
        .add_label(e1, class(NewLabel::annotation("alice"), "order"))
        .expect("second annotation");
    expect(
        "alice",
        Action::LabelAdded {
            asset: e1,
            label: again,
            kind: LabelKind::Annotation,
            source: Source::human("alice"),
            status: None,
        },
    );
    db.set_meta("ali", e2, "lang", Some(MetaValue::Str("en".into())))
        .expect("meta");
    expect(
        "ali",
        Action::MetaChanged {
            asset: e2,
            key: "lang".into(),
            before: None,
            after: Some(MetaValue::Str("en".into())),
        },
    );
    // No-ops: no event.
    db.set_meta("ali", e2, "lang", Some(MetaValue::Str("en".into())))
        .expect("same meta");
    db.set_meta("ali", e2, "absent", None).expect("remove absent meta");
    db.set_priority("alice", e2, 2.5).expect("priority");
    expect(
        "alice",
        Action::PriorityChanged {
            asset: e2,
            before: 0.0,
            after: 2.5,
        },
    );
    db.set_priority("alice", e2, 2.5).expect("same priority");
    db.set_honeypot("admin", e2, true).expect("honeypot");
    expect("admin", Action::HoneypotChanged { asset: e2, after: true });
    db.delete_asset("admin", e2).expect("delete");
    expect("admin", Action::DeletedChanged { asset: e2, after: true });
    assert!(matches!(db.add_label(e2, clf3()), Err(Error::AssetDeleted(_))));
    db.restore_asset("admin", e2).expect("restore");
    expect(
        "admin",
        Action::DeletedChanged {
            asset: e2,
            after: false,
        },
    );
    db.set_meta("ali", e2, "lang", None).expect("remove meta");
    expect(
        "ali",
        Action::MetaChanged {
            asset: e2,
            key: "lang".into(),
            before: Some(MetaValue::Str("en".into())),
            after: None,
        },
    );
    Script {
        e1,
        e2,
        expected,
        started,
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[test]
fn changes_since_zero_yields_every_write_in_order_with_contiguous_seqs() -> TestResult {
    let (_dir, db) = temp_db();
    assert_eq!(db.last_seq(), 0);
    assert_eq!(db.changes_since(0).count(), 0);
    let script = scripted(&db);
    let finished = now_ms();
    let events = db.changes_since(0).collect::<labeldb::Result<Vec<_>>>()?;
    assert_eq!(seqs(&events), (1..=script.expected.len() as u64).collect::<Vec<_>>());
    assert_eq!(db.last_seq(), script.expected.len() as u64);
    for (event, (actor, action)) in events.iter().zip(&script.expected) {
        assert_eq!((&event.actor, &event.action), (actor, action), "seq {}", event.seq);
        assert!(
            script.started <= event.at && event.at <= finished,
            "seq {} at {}",
            event.seq,
            event.at
        );
        assert_eq!(db.event(event.seq)?.as_ref(), Some(event));
    }
    assert!(
        events.windows(2).all(|w| w[0].at <= w[1].at),
        "event times go backwards"
    );
    assert_eq!(db.event(0)?, None);
    assert_eq!(db.event(db.last_seq() + 1)?, None);

    // A later start yields exactly the tail.
    for since in 0..=db.last_seq() {
        let tail = db.changes_since(since).collect::<labeldb::Result<Vec<_>>>()?;
        assert_eq!(tail, events[since as usize..].to_vec(), "changes_since({since})");
    }
    assert_eq!(db.changes_since(u64::MAX).count(), 0);
    Ok(())
}

#[test]
fn audit_asset_returns_the_creating_event_then_every_event_about_it() -> TestResult {
    let (_dir, db) = temp_db();
    let s = scripted(&db);
    // Seq numbers from the script: 2 adds both assets; 3-6 are about e1; 7-12 about e2.
    assert_eq!(seqs(&db.audit_asset(s.e1)?), [2, 3, 4, 5, 6]);
    assert_eq!(seqs(&db.audit_asset(s.e2)?), [2, 7, 8, 9, 10, 11, 12]);
    let all = db.changes_since(0).collect::<labeldb::Result<Vec<_>>>()?;
    for e in db.audit_asset(s.e1)?.iter().chain(&db.audit_asset(s.e2)?) {
        assert_eq!(Some(e), all.get(e.seq as usize - 1), "audit returns the logged event");
    }
    Ok(())
}

/// `audit_actor`, collected.
fn actor_events(db: &Db, actor: &str, since: u64) -> labeldb::Result<Vec<Event>> {
    db.audit_actor(actor, since).collect()
}

#[test]
fn audit_actor_returns_that_actors_events_after_since() -> TestResult {
    let (_dir, db) = temp_db();
    scripted(&db);
    assert_eq!(seqs(&actor_events(&db, "alice", 0)?), [4, 6, 8]);
    assert_eq!(seqs(&actor_events(&db, "alice", 4)?), [6, 8]);
    assert_eq!(seqs(&actor_events(&db, "alice", 8)?), Vec::<u64>::new());
    // "ali" is a prefix of "alice": neither sees the other's events.
    assert_eq!(seqs(&actor_events(&db, "ali", 0)?), [7, 12]);
    assert_eq!(seqs(&actor_events(&db, "model:clf@3", 0)?), [3]);
    assert_eq!(seqs(&actor_events(&db, "admin", 0)?), [1, 9, 10, 11]);
    assert_eq!(seqs(&actor_events(&db, "loader", 0)?), [2]);
    assert_eq!(seqs(&actor_events(&db, "rita", 0)?), [5]);
    assert!(actor_events(&db, "nobody", 0)?.is_empty());
    for e in actor_events(&db, "admin", 0)? {
        assert_eq!(e.actor, "admin");
    }
    Ok(())
}

#[test]
fn history_ancestors_and_labels_from_follow_lineage() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", "mail", schema(SCHEMA))?;
    let other = db.add_asset(
        "admin",
        "mail",
        NewAsset::text("other", "x").with_label(class(clf3(), "order")),
    )?;
    let a = db.add_asset("admin", "mail", NewAsset::text("a", "Send 3 boxes"))?;
    let rule = Source::rule("dict@1")?;

    let p0 = db.add_label(a, class(clf3(), "order").score("category", "order", 0.4))?;
    let mut a1 = class(NewLabel::annotation("alice"), "complaint");
    a1.derived_from = Some(p0);
    let a1 = db.add_label(a, a1)?;
    let a2 = db.add_label(a, class(NewLabel::annotation("alice"), "order"))?;
    let b3 = db.add_label(a, class(NewLabel::annotation("bob"), "order"))?;
    let m4 = db.add_label(a, class(NewLabel::prediction("clf", "4"), "order"))?;
    let p5 = db.add_label(a, class(clf3(), "complaint"))?;
    let r6 = db.add_label(
        a,
        NewLabel::new(LabelKind::Prediction, rule.clone()).answer("category", Answer::class("order")),
    )?;
    let mut a7 = class(NewLabel::annotation("alice"), "complaint");
    a7.parent = Some(a2);
    a7.derived_from = Some(p0);
    let a7 = db.add_label(a, a7)?;

    let history = db.history(a)?;
    let ids: Vec<LabelId> = history.iter().map(|l| l.id).collect();
    assert_eq!(ids, [p0, a1, a2, b3, m4, p5, r6, a7]);
    assert_eq!(ids, (0..8).map(|r| LabelId::new(a, r)).collect::<Vec<_>>());
    let links: Vec<(Option<LabelId>, Option<LabelId>)> = history.iter().map(|l| (l.parent, l.derived_from)).collect();
    assert_eq!(
        links,
        [
            (None, None),
            (None, Some(p0)),
            (Some(a1), None),
            (None, None),
            (None, None),
            (Some(p0), None),
            (None, None),
            (Some(a2), Some(p0)),
        ]
    );
    assert_eq!(history[1].source, Source::human("alice"));
    assert_eq!(history[0].scores["category"]["order"], 0.4);
    assert_eq!(db.asset(a)?.revisions, 8);

    let ancestor_ids = |id| -> labeldb::Result<Vec<LabelId>> { Ok(db.ancestors(id)?.iter().map(|l| l.id).collect()) };
    assert_eq!(ancestor_ids(p0)?, []);
    assert_eq!(
        ancestor_ids(a1)?,
        [p0],
        "a correction's ancestor is the prediction it corrects"
    );
    assert_eq!(ancestor_ids(a2)?, [a1, p0]);
    assert_eq!(ancestor_ids(b3)?, []);
    assert_eq!(ancestor_ids(p5)?, [p0]);
    // Both chains, nearest first, each label once although p0 is reachable twice.
    assert_eq!(ancestor_ids(a7)?, [a2, p0, a1]);
    assert!(matches!(db.ancestors(LabelId::new(a, 99)), Err(Error::UnknownLabel(_))));

    let from = |s: &Source| -> labeldb::Result<Vec<LabelId>> { db.labels_from(s)?.map(|l| Ok(l?.id)).collect() };
    assert_eq!(from(&Source::model("clf@3")?)?, [LabelId::new(other, 0), p0, p5]);
    assert_eq!(from(&Source::model("clf@4")?)?, [m4]);
    assert_eq!(from(&rule)?, [r6]);
    assert_eq!(from(&Source::model("clf@9")?)?, []);
    assert_eq!(from(&Source::model("cl@3")?)?, [], "a model name is not a prefix match");
    assert_eq!(from(&Source::rule("clf@3")?)?, [], "rules and models are apart");
    match db.labels_from(&Source::human("alice")) {
        Err(Error::InvalidInput { what, .. }) => assert_eq!(what, "source"),
        Err(other) => panic!("expected InvalidInput for a human source, got {other:?}"),
        Ok(_) => panic!("labels_from accepted a human source"),
    }
    Ok(())
}
