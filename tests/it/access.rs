//! Project members: roles and data scopes, stored in the project record, changed with an
//! event each, refused with a typed error and nothing written on bad input.

use std::sync::Arc;

use labeldb::{Action, Db, Error, Member, Role};

use crate::{reopen, schema, temp_db, TestResult};

const SCHEMA: &str = r#"{"jobs": [{"name": "category", "kind": "classification", "classes": ["order", "complaint"]}]}"#;

fn member(role: Role, scope: Option<&str>) -> Member {
    Member {
        role,
        scope: scope.map(str::to_string),
    }
}

fn members(db: &Db) -> labeldb::Result<Vec<(String, Member)>> {
    db.members("shop")
}

#[test]
fn members_are_set_changed_and_removed_with_an_event_each_and_survive_reopen() -> TestResult {
    let (dir, db) = temp_db();
    db.create_project("admin", "shop", schema(SCHEMA))?;
    assert!(members(&db)?.is_empty());
    db.set_member("owner", "shop", "root", Role::Admin, None)?;
    db.set_member(
        "root",
        "shop",
        "alice",
        Role::Labeler,
        Some("meta.country:fr AND NOT meta.vip:true"),
    )?;
    db.set_member("root", "shop", "rita", Role::Reviewer, None)?;
    let seq = db.last_seq();
    // Setting what is set already writes nothing.
    db.set_member("root", "shop", "rita", Role::Reviewer, None)?;
    assert_eq!(db.last_seq(), seq);
    // A change of role or scope is an event.
    db.set_member("root", "shop", "alice", Role::Labeler, Some("meta.country:de"))?;
    db.set_member("root", "shop", "rita", Role::TeamManager, None)?;
    db.remove_member("root", "shop", "rita")?;
    let want = vec![
        ("alice".to_string(), member(Role::Labeler, Some("meta.country:de"))),
        ("root".to_string(), member(Role::Admin, None)),
    ];
    assert_eq!(members(&db)?, want);
    let events = db.audit_project("shop", None, 0)?;
    let changes: Vec<(&str, &Action)> = events
        .iter()
        .filter(|e| matches!(e.action, Action::MemberSet { .. } | Action::MemberRemoved { .. }))
        .map(|e| (e.actor.as_str(), &e.action))
        .collect();
    assert_eq!(changes.len(), 6, "{changes:?}");
    assert!(matches!(
        changes[3],
        ("root", Action::MemberSet { user, role: Role::Labeler, scope: Some(q), .. }) if user == "alice" && q == "meta.country:de"
    ));
    assert!(matches!(changes[5], ("root", Action::MemberRemoved { user, .. }) if user == "rita"));
    assert_eq!(
        changes[5].1.describe(),
        "removed member \"rita\"",
        "the audit trail describes the change"
    );
    db.flush()?;
    drop(db);
    let db = reopen(&dir.path().join("db"))?;
    assert_eq!(members(&db)?, want);
    assert!(db.verify()?.is_clean());
    Ok(())
}

#[test]
fn bad_member_changes_are_refused_with_a_typed_error_and_write_nothing() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", "shop", schema(SCHEMA))?;
    db.set_member("owner", "shop", "root", Role::Admin, None)?;
    db.set_member("root", "shop", "alice", Role::Labeler, None)?;
    let before = (db.last_seq(), members(&db)?);
    let unchanged = |what: &str| -> TestResult {
        assert_eq!((db.last_seq(), members(&db)?), before, "{what} wrote something");
        Ok(())
    };

    let e = db
        .set_member("root", "shop", "bob", Role::Labeler, Some("meta.country:fr AND ("))
        .unwrap_err();
    assert!(matches!(e, Error::Query { .. }), "{e:?}");
    unchanged("a scope that does not parse")?;

    let e = "owner".parse::<Role>().unwrap_err();
    assert!(
        matches!(&e, Error::InvalidInput { what, .. } if what == "role"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("admin, team-manager, reviewer, labeler, read-only"),
        "{e}"
    );
    for r in Role::ALL {
        assert_eq!(r.as_str().parse::<Role>()?, r);
    }

    let e = db.set_member("root", "nope", "bob", Role::Labeler, None).unwrap_err();
    assert!(matches!(&e, Error::UnknownProject(p) if p == "nope"), "{e:?}");
    let e = db.remove_member("root", "nope", "alice").unwrap_err();
    assert!(matches!(&e, Error::UnknownProject(p) if p == "nope"), "{e:?}");

    let e = db.remove_member("root", "shop", "bob").unwrap_err();
    assert!(
        matches!(&e, Error::UnknownMember { project, user } if project == "shop" && user == "bob"),
        "{e:?}"
    );
    unchanged("removing a user who is no member")?;

    for e in [
        db.remove_member("root", "shop", "root").unwrap_err(),
        db.set_member("root", "shop", "root", Role::ReadOnly, None).unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::LastAdmin { project, user } if project == "shop" && user == "root"),
            "{e:?}"
        );
        assert!(e.to_string().contains("last admin"), "{e}");
    }
    unchanged("removing or demoting the last admin")?;

    for (actor, user) in [("", "bob"), ("root", ""), ("root", "a\u{7}b")] {
        let e = db.set_member(actor, "shop", user, Role::Labeler, None).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    }
    unchanged("an invalid actor or user name")?;

    // With a second admin the first can go.
    db.set_member("root", "shop", "ada", Role::Admin, None)?;
    db.remove_member("ada", "shop", "root")?;
    assert_eq!(
        members(&db)?.into_iter().map(|(u, m)| (u, m.role)).collect::<Vec<_>>(),
        [("ada".to_string(), Role::Admin), ("alice".to_string(), Role::Labeler)]
    );
    Ok(())
}

/// Changes from many threads at once: each starts from the stored record under the
/// writer lock, and readers see them in the order they landed, so none is lost.
#[test]
fn concurrent_member_changes_lose_none() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", "shop", schema(SCHEMA))?;
    let db = Arc::new(db);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || -> labeldb::Result<()> {
                for i in 0..25 {
                    let scope = format!("meta.batch:{i}");
                    db.set_member("root", "shop", &format!("u{t}-{i}"), Role::Labeler, Some(&scope))?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a member-writing thread panicked")??;
    }
    assert_eq!(members(&db)?.len(), 200);
    assert_eq!(db.project("shop")?.members.len(), 200);
    Ok(())
}
