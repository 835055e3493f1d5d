//! The permission matrix: every public `Session` method called as every role on a fixture
//! project with two labelers, a reviewer and a data scope. One table of (method, role) →
//! allowed / filtered / denied drives the test; a `Session` method with no row fails it.
//!
//! - Denied: `Error::Denied`, and nothing written but an `AccessDenied` event (the
//!   content digest of every project, asset, label, member and snapshot is unchanged).
//! - Filtered: no asset outside the caller's scope and, for labelers, no other human's
//!   label, author name or count in the result — counts and facets included.
//! - Allowed: the call succeeds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use labeldb::{
    Action, Answer, AssetId, Db, Error, Facets, Filter, ImportOptions, Label, LabelKind, MetaValue, NewAsset, NewLabel,
    Role, Selection, Session, Sort, Source, Stats, Status, Verdict,
};

use crate::{schema, temp_db, TestResult};

const SCHEMA: &str = r#"{"jobs": [{"name": "category", "kind": "classification", "classes": ["order", "complaint"]}]}"#;
const SCOPE: &str = "meta.country:fr";

/// The callers: user name and role (`None`: not a member).
const CALLERS: [(&str, Option<Role>); 7] = [
    ("root", Some(Role::Admin)),
    ("tm", Some(Role::TeamManager)),
    ("rita", Some(Role::Reviewer)),
    ("alice", Some(Role::Labeler)),
    ("bob", Some(Role::Labeler)),
    ("ro", Some(Role::ReadOnly)),
    ("mallory", None),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    /// Allowed, and sees everything (no scope).
    A,
    /// Allowed, result cut to the scope (and to one's own labels for labelers).
    F,
    /// Refused.
    D,
}
use Cell::{A, D, F};

/// The fixture's ids.
struct Fix {
    /// fr assets: a1 (alice: order, bob: complaint, a prediction), a2 (bob: complaint,
    /// reviewed by rita), a3 (nothing).
    a1: AssetId,
    a2: AssetId,
    a3: AssetId,
    /// A de asset (outside the scope), annotated by carol.
    de: AssetId,
    /// Alice's label on a1, bob's label on a1.
    alice_label: labeldb::LabelId,
    bob_label: labeldb::LabelId,
}

fn fixture() -> labeldb::Result<(tempfile::TempDir, Db, Fix)> {
    let (dir, db) = temp_db();
    db.create_project("app", "shop", schema(SCHEMA))?;
    let asset = |id: &str, country: &str, text: &str| {
        let mut a = NewAsset::text(id, text);
        a.meta.insert("country".into(), MetaValue::Str(country.into()));
        a
    };
    let ids = db
        .add_assets(
            "app",
            "shop",
            vec![
                asset("a1", "fr", "please send three boxes of bolts"),
                asset("a2", "fr", "the bolts arrived broken"),
                asset("a3", "fr", "send the invoice for the bolts"),
                asset("d1", "de", "bitte senden sie bolts"),
            ],
        )?
        .added;
    let (a1, a2, a3, de) = (ids[0], ids[1], ids[2], ids[3]);
    let class = |user: &str, c: &str| NewLabel::annotation(user).answer("category", Answer::class(c));
    let alice_label = db.add_label(a1, class("alice", "order"))?;
    let bob_label = db.add_label(a1, class("bob", "complaint"))?;
    let bob2 = db.add_label(a2, class("bob", "complaint"))?;
    db.add_label(de, class("carol", "order"))?;
    db.add_label(
        a1,
        NewLabel::prediction("clf", "1")
            .answer("category", Answer::class("order"))
            .score("category", "order", 0.9),
    )?;
    let mut review = NewLabel::new(LabelKind::Review, Source::human("rita"));
    review.verdict = Some(Verdict::Accept);
    review.derived_from = Some(bob2);
    db.add_label(a2, review)?;
    db.set_member("app", "shop", "root", Role::Admin, None)?;
    for (user, role) in &CALLERS[1..6] {
        db.set_member("root", "shop", user, role.unwrap_or(Role::ReadOnly), Some(SCOPE))?;
    }
    db.create_snapshot("app", "shop", "v1", &Filter::All, &Selection::LatestHuman)?;
    db.register_model("app", "shop", "clf", "1", "v1")?;
    Ok((
        dir,
        db,
        Fix {
            a1,
            a2,
            a3,
            de,
            alice_label,
            bob_label,
        },
    ))
}

/// What a call's result shows, for the filtered checks.
#[derive(Default)]
struct Seen {
    assets: Vec<AssetId>,
    labels: Vec<Label>,
    authors: Vec<String>,
    /// Counts that a blind view must see as 0 (another's author filter, a class only the
    /// other labeler chose, `labels >= 2`).
    blind_probes: Vec<(String, u64)>,
    /// Counts that must not exceed the scope's size.
    totals: Vec<u64>,
}

impl Seen {
    fn assets(ids: impl IntoIterator<Item = AssetId>) -> Seen {
        Seen {
            assets: ids.into_iter().collect(),
            ..Seen::default()
        }
    }

    fn labels(labels: Vec<Label>) -> Seen {
        Seen {
            assets: labels.iter().map(Label::asset).collect(),
            labels,
            ..Seen::default()
        }
    }

    fn facets(f: &Facets) -> Seen {
        Seen {
            authors: f.by_author.keys().cloned().collect(),
            blind_probes: f
                .by_class
                .get("category")
                .map(|c| c.iter().map(|(k, v)| (format!("facet class {k}"), *v)).collect())
                .unwrap_or_default(),
            totals: f.by_status.values().copied().collect(),
            ..Seen::default()
        }
    }

    fn stats(s: &Stats) -> Seen {
        Seen {
            authors: s.by_source.keys().cloned().collect(),
            totals: vec![s.assets + s.deleted],
            ..Seen::default()
        }
    }
}

type Call = fn(&Session, &Fix) -> labeldb::Result<Seen>;

/// Blind probes for `user`: counts of what only the other labeler did.
fn probes(s: &Session, user: &str) -> labeldb::Result<Seen> {
    let other = if user == "bob" { "alice" } else { "bob" };
    // Alice chose only `order`, bob only `complaint`: the other's class must count 0.
    let other_class = if user == "bob" { "order" } else { "complaint" };
    let mut seen = Seen::default();
    for q in [
        format!("author:{other}"),
        "author:carol".to_string(),
        format!("label.category:{other_class}"),
        "labels >= 2".to_string(),
        "review.category:complaint".to_string(),
    ] {
        seen.blind_probes
            .push((q.clone(), s.count("shop", &labeldb::query::parse(&q)?)?));
    }
    seen.totals.push(s.count("shop", &Filter::All)?);
    seen.assets.extend(s.query("shop", "*")?.iter());
    Ok(seen)
}

/// An `add-labels` line: the caller's own annotation of a3.
fn own_label_line(s: &Session) -> String {
    let who = s.user().unwrap_or("app");
    format!("{{\"id\": \"a3\", \"labels\": [{{\"author\": \"{who}\", \"answers\": {{\"category\": \"order\"}}}}]}}\n")
}

/// The matrix: method, the call, and the cell for root, tm, rita, alice, bob, ro, mallory.
fn matrix() -> Vec<(&'static str, Call, [Cell; 7])> {
    vec![
        (
            "project",
            |s, _| {
                s.project("shop").map(|p| Seen {
                    authors: p.members.keys().cloned().collect(),
                    ..Seen::default()
                })
            },
            [A, A, F, F, F, F, D],
        ),
        (
            "asset",
            |s, f| s.asset(f.a1).map(|a| Seen::assets([a.id])),
            [A, F, F, F, F, F, D],
        ),
        (
            "asset_by_external_id",
            |s, _| s.asset_by_external_id("shop", "a1").map(|a| Seen::assets([a.id])),
            [A, F, F, F, F, F, D],
        ),
        (
            "asset_ids",
            |s, _| s.asset_ids("shop").map(Seen::assets),
            [A, F, F, F, F, F, D],
        ),
        (
            "label",
            |s, f| s.label(f.alice_label).map(|l| Seen::labels(vec![l])),
            [A, F, F, F, D, F, D],
        ),
        (
            "history",
            |s, f| s.history(f.a1).map(Seen::labels),
            [A, F, F, F, F, F, D],
        ),
        (
            "ancestors",
            |s, f| s.ancestors(f.bob_label).map(Seen::labels),
            [A, F, F, D, F, F, D],
        ),
        (
            "query",
            |s, _| {
                let user = s.user().unwrap_or("").to_string();
                probes(s, &user)
            },
            [A, F, F, F, F, F, D],
        ),
        (
            "select",
            |s, _| s.select("shop", &Filter::All).map(|set| Seen::assets(set.iter())),
            [A, F, F, F, F, F, D],
        ),
        (
            "count",
            |s, _| {
                let user = s.user().unwrap_or("").to_string();
                probes(s, &user)
            },
            [A, F, F, F, F, F, D],
        ),
        (
            "search",
            |s, _| {
                s.search("shop", "bolts", None, 10).map(|(n, hits)| Seen {
                    totals: vec![n],
                    ..Seen::assets(hits.iter().map(|h| h.asset))
                })
            },
            [A, F, F, F, F, F, D],
        ),
        (
            "ranked",
            |s, _| {
                s.ranked("shop", &labeldb::query::parse("bolts OR author:bob")?, 10)
                    .map(|(n, hits)| Seen {
                        totals: vec![n],
                        ..Seen::assets(hits.iter().map(|h| h.asset))
                    })
            },
            [A, F, F, F, F, F, D],
        ),
        (
            "top",
            |s, _| {
                s.top("shop", &labeldb::query::parse("bolts")?, 10)
                    .map(|t| Seen::assets(t.into_iter().map(|(a, _)| a)))
            },
            [A, F, F, F, F, F, D],
        ),
        (
            "page",
            |s, _| {
                let all = s.db().select("shop", &Filter::All)?;
                s.page("shop", &all, Sort::Score, 10, None).map(|p| Seen::assets(p.ids))
            },
            [A, F, F, F, F, F, D],
        ),
        (
            "facets",
            |s, _| {
                let all = s.db().select("shop", &Filter::All)?;
                s.facets("shop", &all).map(|f| Seen::facets(&f))
            },
            [A, F, F, F, F, F, D],
        ),
        (
            "stats",
            |s, _| s.stats("shop").map(|st| Seen::stats(&st)),
            [A, F, F, F, F, F, D],
        ),
        (
            "audit_asset",
            |s, f| {
                s.audit_asset(f.a1)
                    .map(|e| Seen::assets(e.iter().filter_map(|e| e.action.asset()).collect::<Vec<_>>()))
            },
            [A, F, D, D, D, D, D],
        ),
        (
            "audit_project",
            |s, _| {
                s.audit_project("shop", None, 0)
                    .map(|e| Seen::assets(e.iter().filter_map(|e| e.action.asset()).collect::<Vec<_>>()))
            },
            [A, F, D, D, D, D, D],
        ),
        (
            "members",
            |s, _| s.members("shop").map(|_| Seen::default()),
            [A, A, D, D, D, D, D],
        ),
        (
            "snapshots",
            |s, _| s.snapshots("shop").map(|_| Seen::default()),
            [A, A, A, D, D, A, D],
        ),
        (
            "snapshot",
            |s, _| {
                let snap = s.snapshot("shop", "v1")?;
                let ex: Vec<_> = snap.iter().collect::<labeldb::Result<_>>()?;
                Ok(Seen {
                    totals: vec![snap.len() as u64],
                    ..Seen::assets(ex.iter().map(|e| e.asset))
                })
            },
            [A, F, F, D, D, F, D],
        ),
        (
            "snapshot_info",
            |s, _| s.snapshot_info("shop", "v1").map(|_| Seen::default()),
            [A, A, A, D, D, A, D],
        ),
        (
            "snapshot_tags",
            |s, _| s.snapshot_tags("shop", "v1").map(|_| Seen::default()),
            [A, A, A, D, D, A, D],
        ),
        (
            "snapshots_holding",
            |s, f| s.snapshots_holding(f.a1).map(|_| Seen::default()),
            [A, A, A, D, D, A, D],
        ),
        (
            "verify_snapshot",
            |s, _| s.verify_snapshot("shop", "v1").map(|_| Seen::default()),
            [A, A, A, D, D, A, D],
        ),
        (
            "model_info",
            |s, _| s.model_info("shop", "clf", "1").map(|_| Seen::default()),
            [A, A, A, D, D, A, D],
        ),
        // Writes, each on a fresh fixture.
        (
            "add_label",
            |s, f| {
                let who = s.user().unwrap_or("app");
                s.add_label(
                    f.a3,
                    NewLabel::annotation(who).answer("category", Answer::class("order")),
                )
                .map(|_| Seen::default())
            },
            [A, A, A, A, A, D, D],
        ),
        (
            "add_labels",
            |s, f| {
                let who = s.user().unwrap_or("app");
                let label = |c: &str| NewLabel::annotation(who).answer("category", Answer::class(c));
                s.add_labels(vec![(f.a3, label("order")), (f.a2, label("complaint"))])
                    .map(|_| Seen::default())
            },
            [A, A, A, A, A, D, D],
        ),
        (
            "add_asset",
            |s, _| s.add_asset("shop", NewAsset::text("new", "x")).map(|_| Seen::default()),
            [A, A, D, D, D, D, D],
        ),
        (
            "add_assets",
            |s, _| {
                s.add_assets("shop", vec![NewAsset::text("new", "x")])
                    .map(|_| Seen::default())
            },
            [A, A, D, D, D, D, D],
        ),
        (
            "import_file",
            |s, _| {
                let dir = tempfile::tempdir().map_err(|e| Error::Io {
                    path: "tmp".into(),
                    cause: e,
                })?;
                let p = dir.path().join("in.jsonl");
                std::fs::write(&p, "{\"id\": \"n1\", \"text\": \"hello\"}\n").map_err(|e| Error::Io {
                    path: "in".into(),
                    cause: e,
                })?;
                s.import_file("shop", &p, &ImportOptions::new(labeldb::Format::Jsonl), |_| {})
                    .map(|_| Seen::default())
            },
            [A, A, D, D, D, D, D],
        ),
        (
            "import_reader",
            |s, _| {
                s.import_reader(
                    "shop",
                    "{\"id\": \"n1\", \"text\": \"hello\"}\n".as_bytes(),
                    "in.jsonl",
                    &ImportOptions::new(labeldb::Format::Jsonl),
                    |_| {},
                )
                .map(|_| Seen::default())
            },
            [A, A, D, D, D, D, D],
        ),
        (
            "import_labels_file",
            |s, _| {
                let dir = tempfile::tempdir().map_err(|e| Error::Io {
                    path: "tmp".into(),
                    cause: e,
                })?;
                let p = dir.path().join("labels.jsonl");
                std::fs::write(&p, own_label_line(s)).map_err(|e| Error::Io {
                    path: "labels".into(),
                    cause: e,
                })?;
                s.import_labels_file("shop", &p, &ImportOptions::new(labeldb::Format::Jsonl), |_| {})
                    .map(|_| Seen::default())
            },
            [A, A, A, A, A, D, D],
        ),
        (
            "import_labels_reader",
            |s, _| {
                let line = own_label_line(s);
                s.import_labels_reader(
                    "shop",
                    line.as_bytes(),
                    "labels.jsonl",
                    &ImportOptions::new(labeldb::Format::Jsonl),
                    |_| {},
                )
                .map(|_| Seen::default())
            },
            [A, A, A, A, A, D, D],
        ),
        (
            "set_status",
            |s, f| s.set_status(f.a3, Status::Ongoing).map(|_| Seen::default()),
            [A, A, D, D, D, D, D],
        ),
        (
            "set_meta",
            |s, f| {
                s.set_meta(f.a3, "vip", Some(MetaValue::Bool(true)))
                    .map(|_| Seen::default())
            },
            [A, A, D, D, D, D, D],
        ),
        (
            "set_priority",
            |s, f| s.set_priority(f.a3, 5.0).map(|_| Seen::default()),
            [A, A, D, D, D, D, D],
        ),
        (
            "set_honeypot",
            |s, f| s.set_honeypot(f.a3, true).map(|_| Seen::default()),
            [A, A, D, D, D, D, D],
        ),
        (
            "delete_asset",
            |s, f| s.delete_asset(f.a3).map(|_| Seen::default()),
            [A, D, D, D, D, D, D],
        ),
        (
            "restore_asset",
            |s, f| s.restore_asset(f.a3).map(|_| Seen::default()),
            [A, D, D, D, D, D, D],
        ),
        (
            "purge_asset",
            |s, f| s.purge_asset(f.a3).map(|_| Seen::default()),
            [A, D, D, D, D, D, D],
        ),
        (
            "create_snapshot",
            |s, _| {
                s.create_snapshot("shop", "v2", &Filter::All, &Selection::LatestHuman)
                    .map(|i| Seen {
                        totals: vec![i.assets],
                        ..Seen::default()
                    })
            },
            [A, F, D, D, D, D, D],
        ),
        (
            "tag_snapshot",
            |s, _| s.tag_snapshot("shop", "prod", "v1").map(|_| Seen::default()),
            [A, A, D, D, D, D, D],
        ),
        (
            "delete_snapshot",
            |s, _| s.delete_snapshot("shop", "v3").map(|_| Seen::default()),
            [A, D, D, D, D, D, D],
        ),
        (
            "register_model",
            |s, _| s.register_model("shop", "clf", "2", "v1").map(|_| Seen::default()),
            [A, A, D, D, D, D, D],
        ),
        (
            "change_settings",
            |s, _| {
                s.change_settings("shop", |st| st.show_predictions_to_labelers = false)
                    .map(|_| Seen::default())
            },
            [A, A, D, D, D, D, D],
        ),
        (
            "set_member",
            |s, _| {
                s.set_member("shop", "dave", Role::Labeler, None)
                    .map(|_| Seen::default())
            },
            [A, A, D, D, D, D, D],
        ),
        (
            "remove_member",
            |s, _| s.remove_member("shop", "bob").map(|_| Seen::default()),
            [A, A, D, D, D, D, D],
        ),
    ]
}

/// Session methods that act on no project, so that no authorization applies.
const NOT_AUTHORIZED: [&str; 3] = ["user", "actor", "db"];

/// Every content the database holds but the event log: projects, members, settings,
/// assets, histories, snapshots.
fn digest(db: &Db) -> labeldb::Result<String> {
    let mut out = String::new();
    for p in db.projects() {
        let _ = writeln!(out, "{p:?}");
        for id in db.asset_ids(&p.name)? {
            let _ = writeln!(out, "{:?} {:?}", db.asset(id)?, db.history(id)?);
        }
        let _ = writeln!(out, "{:?}", db.snapshots(&p.name)?);
    }
    Ok(out)
}

fn check_filtered(cell: &str, user: &str, role: Role, scope: &BTreeSet<AssetId>, seen: &Seen) {
    for a in &seen.assets {
        assert!(scope.contains(a), "{cell}: asset {a} is outside the scope");
    }
    for t in &seen.totals {
        assert!(
            *t <= scope.len() as u64,
            "{cell}: a count of {t} exceeds the scope's {} assets",
            scope.len()
        );
    }
    if role != Role::Labeler {
        return;
    }
    for l in &seen.labels {
        let own = l.kind == LabelKind::Annotation && l.source == Source::human(user);
        let machine = matches!(l.kind, LabelKind::Prediction | LabelKind::Inference);
        assert!(own || machine, "{cell}: label {} by {} is visible", l.id, l.source);
    }
    for a in &seen.authors {
        assert!(
            a == user || a.starts_with("model:") || a.starts_with("rule:"),
            "{cell}: author {a:?} is visible"
        );
    }
    for (probe, n) in &seen.blind_probes {
        let own_class =
            (user == "alice" && probe.ends_with("order")) || (user == "bob" && probe.ends_with("complaint"));
        if !own_class {
            assert_eq!(*n, 0, "{cell}: {probe} counts {n}");
        }
    }
}

/// The matrix as the markdown table that docs/access.md holds.
fn matrix_markdown(matrix: &[(&'static str, Call, [Cell; 7])]) -> String {
    let mut out = String::from("| `Session` method |");
    for (user, role) in CALLERS {
        let role = role.map_or("not a member".to_string(), |r| r.to_string());
        out += &format!(" {user} ({role}) |");
    }
    out += "\n|---|";
    out += &"---|".repeat(CALLERS.len());
    for (method, _, cells) in matrix {
        out += &format!("\n| `{method}` |");
        for cell in cells {
            out += match cell {
                A => " allowed |",
                F => " filtered |",
                D => " denied |",
            };
        }
    }
    out + "\n"
}

#[test]
fn docs_access_md_holds_the_permission_matrix() -> TestResult {
    let table = matrix_markdown(&matrix());
    let docs = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/access.md"))?;
    assert!(
        docs.contains(&table),
        "docs/access.md does not hold the permission matrix; it should read:\n{table}"
    );
    Ok(())
}

#[test]
fn every_session_method_as_every_role_is_allowed_filtered_or_denied_as_the_matrix_says() -> TestResult {
    let matrix = matrix();
    // A method with no row fails the test.
    let mut methods = BTreeSet::new();
    for file in ["src/access/reads.rs", "src/access/writes.rs", "src/access/session.rs"] {
        let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))?;
        let mut in_session = false;
        for line in text.lines() {
            if !line.starts_with(' ') && !line.is_empty() && line != "}" {
                in_session = line.starts_with("impl Session {");
            }
            if let Some(rest) = line.trim_start().strip_prefix("pub fn ").filter(|_| in_session) {
                methods.insert(rest.split(['(', '<']).next().unwrap_or_default().to_string());
            }
        }
    }
    let rows: BTreeSet<String> = matrix.iter().map(|(m, _, _)| m.to_string()).collect();
    for m in &methods {
        assert!(
            rows.contains(m) || NOT_AUTHORIZED.contains(&m.as_str()),
            "Session::{m} has no row in the permission matrix"
        );
    }
    assert!(methods.len() > 40, "found only {} Session methods", methods.len());

    let (_shared_dir, shared, fix) = fixture()?;
    let scope: BTreeSet<AssetId> = [fix.a1, fix.a2, fix.a3].into();
    assert!(!scope.contains(&fix.de));
    let mut cells = 0;
    for (method, call, expected) in &matrix {
        let writes = matches!(*method, "add_label" | "add_labels" | "add_asset" | "add_assets")
            || method.starts_with("import_")
            || method.starts_with("set_")
            || method.ends_with("_asset") && !method.starts_with("audit")
            || method.starts_with("create_")
            || method.starts_with("tag_")
            || method.starts_with("delete_")
            || method.starts_with("register_")
            || method.starts_with("change_")
            || method.starts_with("remove_");
        for ((user, role), cell) in CALLERS.iter().zip(expected) {
            let name = format!("{method} as {user}");
            let fresh = if writes { Some(fixture()?) } else { None };
            let (db, f) = match &fresh {
                Some((_, db, f)) => (db, f),
                None => (&shared, &fix),
            };
            // What a write needs to exist first (an asset to restore, a snapshot that
            // no model was trained on, to delete).
            match *method {
                "restore_asset" => db.delete_asset("app", f.a3)?,
                "delete_snapshot" => {
                    db.create_snapshot("app", "shop", "v3", &Filter::All, &Selection::LatestHuman)?;
                }
                _ => {}
            }
            let session = db.as_user(user)?;
            let before = digest(db)?;
            let seq = db.last_seq();
            let result = call(&session, f);
            match (cell, result) {
                (
                    D,
                    Err(Error::Denied {
                        user: u,
                        action,
                        resource,
                    }),
                ) => {
                    assert_eq!(&u, user, "{name}");
                    assert!(!action.is_empty() && !resource.is_empty(), "{name}");
                    assert_eq!(digest(db)?, before, "{name}: a denied call changed the database");
                    let events: Vec<_> = db.changes_since(seq).collect::<labeldb::Result<_>>()?;
                    assert!(
                        !events.is_empty()
                            && events
                                .iter()
                                .all(|e| e.actor == *user && matches!(e.action, Action::AccessDenied { .. })),
                        "{name}: wrote {events:?}"
                    );
                }
                (D, other) => panic!("{name}: expected Denied, got {:?}", other.map(|_| "Ok")),
                (A | F, Err(e)) => panic!("{name}: expected success, got {e}"),
                (A, Ok(_)) => {}
                (F, Ok(seen)) => check_filtered(&name, user, role.unwrap_or(Role::ReadOnly), &scope, &seen),
            }
            cells += 1;
        }
    }
    assert_eq!(cells, matrix.len() * CALLERS.len());
    println!("permission matrix: {cells} cells over {} methods", matrix.len());
    Ok(())
}

/// Every method that names an asset, on the asset outside the scope, as every scoped
/// member: denied, with the event, nothing else written.
#[test]
fn an_asset_outside_the_scope_is_denied_to_every_scoped_member() -> TestResult {
    let (_dir, db, f) = fixture()?;
    type AssetCall<'f> = Box<dyn Fn(&Session) -> labeldb::Result<()> + 'f>;
    let calls: Vec<(&str, AssetCall<'_>)> = vec![
        ("asset", Box::new(|s| s.asset(f.de).map(drop))),
        (
            "asset_by_external_id",
            Box::new(|s| s.asset_by_external_id("shop", "d1").map(drop)),
        ),
        ("history", Box::new(|s| s.history(f.de).map(drop))),
        ("audit_asset", Box::new(|s| s.audit_asset(f.de).map(drop))),
        ("snapshots_holding", Box::new(|s| s.snapshots_holding(f.de).map(drop))),
        (
            "add_label",
            Box::new(|s| {
                s.add_label(
                    f.de,
                    NewLabel::annotation(s.actor()).answer("category", Answer::class("order")),
                )
                .map(drop)
            }),
        ),
        (
            "add_labels",
            Box::new(|s| {
                let label = |c: &str| NewLabel::annotation(s.actor()).answer("category", Answer::class(c));
                s.add_labels(vec![(f.a3, label("order")), (f.de, label("order"))])
                    .map(drop)
            }),
        ),
        (
            "set_meta",
            Box::new(|s| s.set_meta(f.de, "vip", Some(MetaValue::Bool(true))).map(drop)),
        ),
    ];
    let before = digest(&db)?;
    let mut denied = BTreeMap::new();
    for (user, _) in &CALLERS[1..6] {
        let s = db.as_user(user)?;
        for (name, call) in &calls {
            match call(&s) {
                Err(Error::Denied { .. }) => *denied.entry(*name).or_insert(0) += 1,
                other => panic!("{name} as {user}: {:?}", other.err()),
            }
        }
    }
    assert_eq!(digest(&db)?, before);
    assert!(denied.values().all(|n| *n == 5), "{denied:?}");
    let app = db.as_user("root")?;
    assert_eq!(app.history(f.de)?.len(), 1, "the admin without a scope sees it");
    Ok(())
}

/// Blind consensus: a labeler sees their own labels plus predictions; with
/// `show_predictions_to_labelers` off, their own labels alone. A reviewer may not review
/// an asset they annotated.
#[test]
fn labelers_see_their_own_labels_and_predictions_as_the_setting_says() -> TestResult {
    let (_dir, db, f) = fixture()?;
    let alice = db.as_user("alice")?;
    let kinds = |s: &Session| -> labeldb::Result<Vec<(LabelKind, String)>> {
        Ok(s.history(f.a1)?
            .into_iter()
            .map(|l| (l.kind, l.source.to_string()))
            .collect())
    };
    assert_eq!(
        kinds(&alice)?,
        vec![
            (LabelKind::Annotation, "alice".into()),
            (LabelKind::Prediction, "model:clf@1".into())
        ]
    );
    assert_eq!(
        alice.count("shop", &labeldb::query::parse("prediction.category:order")?)?,
        1
    );
    assert_eq!(
        alice.asset(f.a1)?.revisions,
        0,
        "the revision count of others is hidden"
    );
    assert_eq!(db.asset(f.a1)?.revisions, 3);
    db.as_user("root")?
        .change_settings("shop", |s| s.show_predictions_to_labelers = false)?;
    assert_eq!(kinds(&alice)?, vec![(LabelKind::Annotation, "alice".into())]);
    assert_eq!(
        alice.count(
            "shop",
            &labeldb::query::parse("prediction.category:order OR model:clf")?
        )?,
        0
    );
    assert!(matches!(alice.label(f.bob_label), Err(Error::Denied { .. })));
    // The reviewer sees every label in scope, and may not review what they annotated.
    let rita = db.as_user("rita")?;
    assert_eq!(rita.history(f.a1)?.len(), 3);
    rita.add_label(
        f.a3,
        NewLabel::annotation("rita").answer("category", Answer::class("order")),
    )?;
    let mut review = NewLabel::new(LabelKind::Review, Source::human("rita"));
    review.verdict = Some(Verdict::Accept);
    assert!(matches!(
        rita.add_label(f.a3, review.clone()),
        Err(Error::Denied { .. })
    ));
    rita.add_label(f.a1, review)?;
    // A labeler cannot write in another's name, nor review.
    let forged = NewLabel::annotation("bob").answer("category", Answer::class("order"));
    assert!(matches!(alice.add_label(f.a3, forged), Err(Error::Denied { .. })));
    // Team managers manage labelers and reviewers, not admins or themselves upwards.
    let tm = db.as_user("tm")?;
    tm.set_member("shop", "erin", Role::Reviewer, Some(SCOPE))?;
    assert!(matches!(
        tm.set_member("shop", "erin", Role::Admin, None),
        Err(Error::Denied { .. })
    ));
    assert!(matches!(tm.remove_member("shop", "root"), Err(Error::Denied { .. })));
    let denied: Vec<_> = db
        .audit_project("shop", None, 0)?
        .into_iter()
        .filter(|e| matches!(e.action, Action::AccessDenied { .. }))
        .map(|e| e.actor)
        .collect();
    assert_eq!(denied, ["alice", "rita", "alice", "tm", "tm"]);
    Ok(())
}

/// The scope set is cached and follows writes: an asset that enters the scope is seen
/// at once.
#[test]
fn a_scope_follows_writes() -> TestResult {
    let (_dir, db, f) = fixture()?;
    let ro = db.as_user("ro")?;
    assert_eq!(ro.count("shop", &Filter::All)?, 3);
    db.set_meta("app", f.de, "country", Some(MetaValue::Str("fr".into())))?;
    assert_eq!(ro.count("shop", &Filter::All)?, 4);
    assert_eq!(ro.history(f.de)?.len(), 1);
    db.set_meta("app", f.a1, "country", Some(MetaValue::Str("it".into())))?;
    assert_eq!(ro.count("shop", &Filter::All)?, 3);
    assert!(matches!(ro.asset(f.a1), Err(Error::Denied { .. })));
    Ok(())
}

/// A scoped member's counts and selections equal the application's over `filter AND
/// scope`, for every shape the evaluator pushes the scope into (a leaf, either side of
/// an AND, an AND NOT, an OR, text), and stay equal after writes move the scope and
/// the leaves it caches.
#[test]
fn scoped_queries_equal_the_filter_and_the_scope() -> TestResult {
    let (_dir, db, f) = fixture()?;
    let rita = db.as_user("rita")?;
    let scope = labeldb::query::parse(SCOPE)?;
    let queries = [
        "*",
        "status:todo",
        "status:labeled",
        "label.category:complaint",
        "author:bob",
        "status:labeled AND label.category:complaint",
        "label.category:complaint AND NOT author:alice",
        "NOT author:alice AND label.category:complaint",
        "author:bob AND status:labeled AND NOT author:alice",
        "meta.country:de AND author:carol",
        "(author:alice OR author:carol) AND NOT status:todo",
        "bolts AND author:bob",
        "bolts",
        "honeypot OR author:carol",
        "honeypot AND NOT author:bob",
    ];
    let check = |round: &str| -> TestResult {
        for q in queries {
            let filter = labeldb::query::parse(q)?;
            let scoped = filter.clone().and(scope.clone());
            let want: Vec<AssetId> = db.query("shop", &format!("({q}) AND {SCOPE}"))?.iter().collect();
            assert_eq!(
                rita.count("shop", &filter)?,
                db.count("shop", &scoped)?,
                "{round}: count {q}"
            );
            let got: Vec<AssetId> = rita.query("shop", q)?.iter().collect();
            assert_eq!(got, want, "{round}: query {q}");
        }
        Ok(())
    };
    check("fixture")?;
    db.add_label(
        f.a3,
        NewLabel::annotation("carol").answer("category", Answer::class("complaint")),
    )?;
    db.set_meta("app", f.de, "country", Some(MetaValue::Str("fr".into())))?;
    check("after writes")?;
    db.set_meta("app", f.a2, "country", Some(MetaValue::Str("it".into())))?;
    db.delete_asset("app", f.a1)?;
    check("after a move out of scope and a delete")?;
    Ok(())
}
