//! The `labeldb` command line, run as users and their scripts run it: the commands,
//! flags and JSON keys that the issues spell out are a contract (README.md), and every
//! error is one `error: ...` line on stderr with exit code 2.

use std::path::{Path, PathBuf};
use std::process::Command;

use labeldb::{Db, RecordRef};
use serde_json::{json, Value};

/// What a test returns: any error fails it.
type TestResult = Result<(), Box<dyn std::error::Error>>;

const SCHEMA: &str = r#"{"jobs": [
  {"name": "category", "kind": "classification", "classes": ["order", "complaint", "question"]},
  {"name": "entities", "kind": "spans", "classes": ["PRODUCT", "QUANTITY"]}
]}"#;

/// What a run of the binary did.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A database directory and the files the test writes beside it.
struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    /// A fresh directory with `labeldb init` run and project `shop` created.
    fn with_project() -> Result<Cli, Box<dyn std::error::Error>> {
        let cli = Cli {
            dir: tempfile::tempdir()?,
        };
        let init = cli.ok(&["init"])?;
        assert!(init.starts_with("initialized "), "{init}");
        let schema = cli.file("schema.json", SCHEMA)?;
        let created = cli.ok(&["project", "create", "shop", "--schema", &schema])?;
        assert!(created.contains("created project \"shop\""), "{created}");
        Ok(cli)
    }

    /// [`Cli::with_project`] with [`EMAILS`] imported.
    fn with_emails() -> Result<Cli, Box<dyn std::error::Error>> {
        let cli = Cli::with_project()?;
        let emails = cli.file("emails.jsonl", EMAILS)?;
        cli.ok(&["import", "shop", &emails])?;
        Ok(cli)
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// Writes a file beside the database and returns its path as an argument.
    fn file(&self, name: &str, content: &str) -> std::io::Result<String> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content)?;
        Ok(path.display().to_string())
    }

    fn run(&self, args: &[&str]) -> std::io::Result<Ran> {
        let out = Command::new(env!("CARGO_BIN_EXE_labeldb"))
            .arg("--db")
            .arg(self.db())
            .args(args)
            .env_remove("LABELDB_USER")
            .output()?;
        Ok(Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs a command that must succeed quietly; returns its stdout.
    fn ok(&self, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
        let ran = self.run(args)?;
        if ran.code != Some(0) || !ran.stderr.is_empty() {
            return Err(format!("{args:?}: exit {:?}, stderr {:?}", ran.code, ran.stderr).into());
        }
        Ok(ran.stdout)
    }

    /// Runs a command with `--json` appended and parses its stdout.
    fn json(&self, args: &[&str]) -> Result<Value, Box<dyn std::error::Error>> {
        let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        Ok(serde_json::from_str(&self.ok(&args)?)?)
    }

    /// Runs a command that must fail with exit code 2 and one `error: ` line naming every
    /// one of `names`, and nothing on stdout.
    fn fails(&self, args: &[&str], names: &[&str]) -> TestResult {
        let ran = self.run(args)?;
        assert_eq!(ran.code, Some(2), "{args:?}: {}", ran.stderr);
        assert_eq!(ran.stdout, "", "{args:?}");
        let lines: Vec<&str> = ran.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("error: "),
            "{args:?}: {:?}",
            ran.stderr
        );
        for name in names {
            assert!(
                lines[0].contains(name),
                "{args:?}: {:?} does not name {name:?}",
                lines[0]
            );
        }
        Ok(())
    }
}

/// Three emails: a labelled order with a span and a prediction, an unlabelled complaint
/// with accents, an unlabelled question.
const EMAILS: &str = r#"{"id": "e1", "text": "Please send 3 boxes of X-200 by Friday", "meta": {"source": "crm"}, "labels": [{"author": "alice", "answers": {"category": "order", "entities": [{"start": 12, "end": 13, "class": "QUANTITY"}, {"start": 23, "end": 28, "class": "PRODUCT"}]}, "seconds": 14.5}, {"model": "clf@3", "kind": "prediction", "answers": {"category": "order"}, "scores": {"category": {"order": 0.91, "complaint": 0.05}}}]}
{"id": "e2", "text": "Réclamation : late delivery of my X-200, still waiting"}
{"id": "e3", "text": "When does the delivery to Germany arrive?"}
"#;

#[test]
fn import_stats_show_audit_and_verify_print_the_documented_json() -> TestResult {
    let cli = Cli::with_project()?;
    let emails = cli.file("emails.jsonl", EMAILS)?;
    let imported = cli.ok(&["import", "shop", &emails, "--actor", "loader"])?;
    assert!(
        imported.starts_with("imported 3 assets with 2 labels from 3 records (0 duplicates skipped"),
        "{imported}"
    );

    let stats = cli.json(&["stats", "shop"])?;
    assert_eq!(stats["assets"], 3);
    assert_eq!(stats["labels"], 2);
    assert_eq!(stats["by_status"]["LABELED"], 1);
    assert_eq!(stats["by_status"]["TODO"], 2);
    // Classes count the latest human annotation per author, each span counted.
    assert_eq!(
        stats["classes"],
        json!({"category": {"order": 1}, "entities": {"PRODUCT": 1, "QUANTITY": 1}})
    );

    let shown = cli.json(&["show", "shop", "e1"])?;
    let labels = shown["labels"].as_array().ok_or("labels is an array")?;
    assert_eq!(labels.len(), 2, "{shown}");
    assert_eq!(shown["asset"]["id"], "e1", "{shown}");
    assert!(shown["lineage"].is_object(), "{shown}");

    // Importing the same file again writes nothing: every record is a duplicate.
    let again = cli.ok(&["import", "shop", &emails])?;
    assert!(
        again.starts_with("imported 0 assets with 0 labels from 3 records (3 duplicates skipped"),
        "{again}"
    );
    assert_eq!(cli.json(&["stats", "shop"])?["assets"], 3);

    let audit = cli.json(&["audit", "shop"])?;
    let events = audit.as_array().ok_or("audit is an array")?;
    assert!(!events.is_empty());
    let by_loader = cli.json(&["audit", "shop", "--actor", "loader"])?;
    let by_loader = by_loader.as_array().ok_or("audit is an array")?;
    assert!(!by_loader.is_empty() && by_loader.len() < events.len(), "{by_loader:?}");
    assert!(by_loader.iter().all(|e| e["actor"] == "loader"), "{by_loader:?}");
    let first = events[0]["seq"].as_u64().ok_or("an event has a seq")?;
    let since = cli.json(&["audit", "shop", "--since", &first.to_string()])?;
    assert_eq!(since.as_array().map(Vec::len), Some(events.len() - 1));

    let verified = cli.ok(&["verify"])?;
    assert!(verified.ends_with(", 0 problems\n"), "{verified}");
    assert_eq!(cli.json(&["verify"])?["clean"], true);
    Ok(())
}

#[test]
fn search_and_text_queries_combine_with_filters_and_rank_by_score() -> TestResult {
    let cli = Cli::with_emails()?;

    // Accents fold: `reclamation` finds `Réclamation`, with the word highlighted.
    let found = cli.json(&["search", "shop", "reclamation"])?;
    assert_eq!(found["count"], 1, "{found}");
    assert_eq!(found["hits"][0]["id"], "e2");
    assert!(
        found["hits"][0]["snippet"]
            .as_str()
            .is_some_and(|s| s.contains("[Réclamation]")),
        "{found}"
    );

    // A prefix, a filter and a limit: the count is of every match, the hits are cut.
    let found = cli.json(&["search", "shop", "deliv*", "--filter", "status:todo", "--limit", "1"])?;
    assert_eq!(found["count"], 2, "{found}");
    let hits = found["hits"].as_array().ok_or("hits is an array")?;
    assert_eq!(hits.len(), 1);
    for key in ["id", "asset_id", "score", "snippet", "status"] {
        assert!(hits[0].get(key).is_some(), "{key} missing in {found}");
    }
    assert_eq!(hits[0]["status"], "TODO");

    let phrase = cli.json(&["search", "shop", "\"late delivery\""])?;
    assert_eq!(phrase["count"], 1, "{phrase}");
    assert_eq!(phrase["hits"][0]["id"], "e2");

    let count = |query: &str| -> Result<String, Box<dyn std::error::Error>> {
        Ok(cli.ok(&["query", "shop", query, "--count"])?.trim().to_string())
    };
    assert_eq!(count("text:germany AND status:todo")?, "1");
    assert_eq!(count("text:germany AND status:labeled")?, "0");
    assert_eq!(count("x-200 AND NOT status:labeled")?, "1");
    assert_eq!(count("delivery OR label.category:order")?, "3");

    // A text query without --sort is ranked: a hit list with scores, best first.
    let ranked = cli.json(&["query", "shop", "delivery OR x-200"])?;
    let scores: Vec<f64> = ranked["hits"]
        .as_array()
        .ok_or("hits is an array")?
        .iter()
        .filter_map(|h| h["score"].as_f64())
        .collect();
    assert_eq!(scores.len(), 3, "{ranked}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // With --sort id it is a page of ids.
    let page = cli.json(&["query", "shop", "delivery", "--sort", "id"])?;
    assert_eq!(page["count"], 2);
    assert_eq!(page["ids"], json!(["e2", "e3"]));
    Ok(())
}

#[test]
fn conll_imports_one_asset_per_sentence_and_a_bad_line_stops_with_nothing_written() -> TestResult {
    let cli = Cli::with_project()?;
    let conll = "-DOCSTART- O\n\nSend\tO\n3\tB-QUANTITY\nX-200\tB-PRODUCT\n\nNew\tB-PRODUCT\nLamp\tI-PRODUCT\n";
    let file = cli.file("orders.conll", conll)?;
    let imported = cli.ok(&["import", "shop", &file, "--job", "entities", "--author", "bob"])?;
    assert!(imported.starts_with("imported 2 assets with 2 labels"), "{imported}");
    let shown = cli.json(&["show", "shop", "orders.conll:2"])?;
    assert_eq!(shown["asset"]["text"], "New Lamp", "{shown}");
    let stats = cli.json(&["stats", "shop"])?;
    assert_eq!(stats["classes"]["entities"], json!({"PRODUCT": 2, "QUANTITY": 1}));
    assert_eq!(stats["by_source"], json!({"bob": 2}));

    // Line 4 has a class the job lacks: the import stops naming it and its line, and
    // the sentence before it in the same batch is not written.
    let bad = cli.file("bad.conll", "Fine\tO\n\nOdd\tB-COLOUR\n")?;
    let before = cli.json(&["stats", "shop"])?;
    cli.fails(
        &["import", "shop", &bad, "--job", "entities"],
        &["bad.conll:3", "COLOUR"],
    )?;
    assert_eq!(cli.json(&["stats", "shop"])?, before);
    let skipped = cli.ok(&["import", "shop", &bad, "--job", "entities", "--skip-invalid"])?;
    assert!(
        skipped.starts_with("imported 1 assets with 1 labels from 2 records (0 duplicates skipped, 1 invalid skipped)"),
        "{skipped}"
    );
    assert!(skipped.contains("skipped line 3: asset \"bad.conll:2\""), "{skipped}");
    Ok(())
}

#[test]
fn errors_are_one_line_naming_what_is_wrong_with_exit_code_2() -> TestResult {
    let cli = Cli::with_project()?;
    cli.fails(&["init"], &["already exists"])?;
    let bad_schema = cli.file(
        "bad.json",
        r#"{"jobs": [{"name": "x", "kind": "nope", "classes": ["a"]}]}"#,
    )?;
    cli.fails(&["project", "create", "other", "--schema", &bad_schema], &["nope"])?;
    assert_eq!(cli.json(&["project", "list"])?.as_array().map(Vec::len), Some(1));
    cli.fails(&["stats", "nowhere"], &["nowhere"])?;
    cli.fails(&["show", "shop", "missing-id"], &["missing-id"])?;
    cli.fails(&["query", "shop", "status:"], &["status"])?;
    cli.fails(&["query", "shop", "label.nojob:x", "--count"], &["nojob"])?;
    let missing = cli.dir.path().join("absent.jsonl").display().to_string();
    cli.fails(&["import", "shop", &missing], &["absent.jsonl"])?;
    let elsewhere = Cli {
        dir: tempfile::tempdir()?,
    };
    elsewhere.fails(&["stats", "shop"], &["no database", "labeldb init"])?;
    Ok(())
}

#[test]
fn verify_exits_1_listing_a_damaged_record_and_a_damaged_text_index_is_rebuilt_with_a_note() -> TestResult {
    let cli = Cli::with_emails()?;

    // A text index file deleted while closed: the next command rebuilds it, says so on
    // stderr, and answers as before.
    let text = cli.db().join("text");
    let segment = std::fs::read_dir(&text)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .ok_or("a segment file")?;
    std::fs::remove_file(segment)?;
    let ran = cli.run(&["query", "shop", "delivery", "--count"])?;
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(0), "2\n"), "{}", ran.stderr);
    assert!(
        ran.stderr
            .starts_with("note: the text index was rebuilt from primary data on open: "),
        "{}",
        ran.stderr
    );
    assert_eq!(cli.ok(&["query", "shop", "delivery", "--count"])?, "2\n");

    // A damaged label record is primary data: verify names it and exits 1.
    let db = Db::open(cli.db())?;
    let e1 = db.asset_by_external_id("shop", "e1")?;
    let label = db.history(e1.id)?[0].id;
    db.damage_record(RecordRef::Label(label), b"\x01garbage")?;
    drop(db);
    let ran = cli.run(&["verify"])?;
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.lines().any(|l| l.starts_with("problem: ")), "{}", ran.stdout);
    let ran = cli.run(&["verify", "--json"])?;
    let report: Value = serde_json::from_str(&ran.stdout)?;
    assert_eq!((ran.code, &report["clean"]), (Some(1), &json!(false)));
    assert!(report["problems"].as_array().is_some_and(|p| !p.is_empty()));
    Ok(())
}

#[test]
fn snapshots_are_created_listed_and_exported_from_the_command_line() -> TestResult {
    let cli = Cli::with_emails()?;
    let created = cli.json(&["snapshot", "create", "shop", "v1", "--filter", "status:labeled"])?;
    assert_eq!(created["assets"], 1, "{created}");
    let listed = cli.json(&["snapshot", "list", "shop"])?;
    assert_eq!(listed[0]["name"], "v1", "{listed}");
    assert_eq!(listed[0]["digest"], created["digest"]);
    let out = cli.dir.path().join("v1.jsonl");
    let out_arg = out.display().to_string();
    cli.ok(&["snapshot", "export", "shop", "v1", "--out", &out_arg])?;
    let lines: Vec<Value> = std::fs::read_to_string(&out)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], "e1");
    assert_eq!(lines[0]["text"], "Please send 3 boxes of X-200 by Friday");
    cli.fails(&["snapshot", "create", "shop", "v1"], &["v1"])?;
    Ok(())
}

#[test]
fn the_demo_runs_and_leaves_a_database_that_verifies() -> TestResult {
    let dir = tempfile::tempdir()?;
    let demo_dir = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_labeldb"))
        .args(["demo", "--assets", "300", "--dir"])
        .arg(&demo_dir)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verify: clean"), "{stdout}");
    let db_path: &Path = &demo_dir.join("demo.labeldb");
    let stats = Command::new(env!("CARGO_BIN_EXE_labeldb"))
        .arg("--db")
        .arg(db_path)
        .args(["stats", "orders", "--json"])
        .output()?;
    let stats: Value = serde_json::from_slice(&stats.stdout)?;
    assert_eq!(stats["assets"], 300, "{stats}");
    Ok(())
}

#[test]
fn a_database_of_an_older_format_is_upgraded_by_the_first_command_with_a_note() -> TestResult {
    let cli = Cli::with_emails()?;
    let db = Db::open(cli.db())?;
    db.downgrade_to_format_3()?;
    drop(db);
    let ran = cli.run(&["query", "shop", "meta.source:crm", "--count"])?;
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(0), "1\n"), "{}", ran.stderr);
    let note = format!(
        "note: upgraded the database from format 3 to {}\n",
        labeldb::FORMAT_VERSION
    );
    assert_eq!(ran.stderr, note);
    let verified = cli.ok(&["verify"])?;
    assert!(verified.ends_with(" records checked, 0 problems\n"), "{verified}");
    Ok(())
}

#[test]
fn the_page_cache_size_is_a_global_flag_and_must_be_positive() -> TestResult {
    let cli = Cli::with_emails()?;
    let stats = cli.json(&["--cache-mib", "8", "stats", "shop"])?;
    assert_eq!(stats["assets"], 3);
    let emails = cli.file("more.jsonl", "{\"id\": \"e4\", \"text\": \"a fourth\"}\n")?;
    let imported = cli.ok(&["import", "shop", &emails, "--cache-mib", "1"])?;
    assert!(imported.starts_with("imported 1 assets"), "{imported}");
    let ran = cli.run(&["--cache-mib", "0", "stats", "shop"])?;
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.starts_with("error: ") && ran.stderr.contains("--cache-mib"),
        "{}",
        ran.stderr
    );
    Ok(())
}

#[test]
fn members_are_added_listed_and_removed_with_their_roles_and_scopes() -> TestResult {
    let cli = Cli::with_project()?;
    let added = cli.ok(&["member", "add", "shop", "root", "--role", "admin"])?;
    assert_eq!(added, "member \"root\" of shop: admin\n");
    cli.ok(&[
        "member",
        "add",
        "shop",
        "alice",
        "--role",
        "labeler",
        "--scope",
        "meta.source:crm",
    ])?;
    cli.ok(&["member", "add", "shop", "rita", "--role", "reviewer", "--actor", "root"])?;
    assert_eq!(
        cli.json(&["member", "list", "shop"])?,
        json!([
            {"user": "alice", "role": "labeler", "scope": "meta.source:crm"},
            {"user": "rita", "role": "reviewer", "scope": null},
            {"user": "root", "role": "admin", "scope": null},
        ])
    );
    let listed = cli.ok(&["member", "list", "shop"])?;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("alice") && l.ends_with("meta.source:crm")),
        "{listed}"
    );
    cli.ok(&["member", "remove", "shop", "rita", "--actor", "root"])?;
    let audit = cli.ok(&["audit", "shop", "--actor", "root"])?;
    assert!(
        audit.contains("member \"rita\": reviewer") && audit.contains("removed member \"rita\""),
        "{audit}"
    );
    cli.fails(
        &["member", "add", "shop", "bob", "--role", "owner"],
        &["\"owner\"", "team-manager"],
    )?;
    cli.fails(
        &[
            "member", "add", "shop", "bob", "--role", "labeler", "--scope", "status:",
        ],
        &["query error"],
    )?;
    cli.fails(&["member", "remove", "shop", "root"], &["last admin"])?;
    cli.fails(&["member", "remove", "shop", "bob"], &["\"bob\"", "not a member"])?;
    cli.fails(&["member", "list", "nope"], &["unknown project \"nope\""])?;
    assert_eq!(cli.json(&["member", "list", "shop"])?.as_array().map(Vec::len), Some(2));
    Ok(())
}

/// `--user` (or `LABELDB_USER`) makes every command act through that user's session:
/// a labeler sees their own labels only and is refused what the policy refuses, and
/// `audit --action` shows the denied attempts.
#[test]
fn user_flag_acts_through_a_session_and_audit_filters_by_action_and_time() -> TestResult {
    let cli = Cli::with_emails()?;
    cli.ok(&["member", "add", "shop", "root", "--role", "admin"])?;
    cli.ok(&[
        "member",
        "add",
        "shop",
        "bob",
        "--role",
        "labeler",
        "--scope",
        "meta.source:crm",
        "--actor",
        "root",
    ])?;
    // The app sees alice's annotation on e1; bob, a labeler, does not (blind consensus).
    let app = cli.json(&["show", "shop", "e1"])?;
    let bob = cli.json(&["--user", "bob", "show", "shop", "e1"])?;
    let authors = |v: &Value| v.to_string().matches("\"alice\"").count();
    assert!(authors(&app) > 0, "{app}");
    assert_eq!(authors(&bob), 0, "{bob}");
    assert_eq!(
        cli.ok(&["--user", "bob", "query", "shop", "author:alice", "--count"])?,
        "0\n"
    );
    assert_eq!(cli.ok(&["query", "shop", "author:alice", "--count"])?, "1\n");
    // Out of scope, and a write the policy refuses: denied, one line, exit 2.
    cli.fails(
        &["--user", "bob", "show", "shop", "e2"],
        &["\"bob\" may not read", "e2"],
    )?;
    cli.fails(
        &["--user", "bob", "member", "add", "shop", "eve", "--role", "admin"],
        &["may not manage-members"],
    )?;
    cli.fails(&["--user", "nobody", "stats", "shop"], &["\"nobody\" may not read"])?;
    cli.fails(&["--user", "bob", "verify"], &["without --user"])?;
    // LABELDB_USER is the same as --user.
    let ran = Command::new(env!("CARGO_BIN_EXE_labeldb"))
        .args(["--db", &cli.db().display().to_string(), "member", "list", "shop"])
        .env("LABELDB_USER", "bob")
        .output()?;
    assert_eq!(ran.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&ran.stderr).contains("may not read-members"));
    // The audit shows the attempts, filtered by action and time.
    let denied = cli.json(&["audit", "shop", "--action", "access-denied"])?;
    let denied = denied.as_array().cloned().unwrap_or_default();
    assert_eq!(denied.len(), 4, "{denied:?}");
    assert!(denied
        .iter()
        .all(|e| e["what"].as_str().is_some_and(|w| w.starts_with("denied "))));
    assert_eq!(
        cli.json(&[
            "audit",
            "shop",
            "--action",
            "AccessDenied",
            "--from",
            "2999-01-01T00:00:00Z"
        ])?,
        json!([])
    );
    let all = cli.json(&[
        "audit",
        "shop",
        "--from",
        "2000-01-01T00:00:00Z",
        "--to",
        "2999-01-01T00:00:00Z",
    ])?;
    assert!(all.as_array().is_some_and(|a| a.len() > 4), "{all}");
    let bad = cli.run(&["audit", "shop", "--from", "yesterday"])?;
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("is not an RFC 3339 time"), "{}", bad.stderr);
    Ok(())
}

/// `import --mode add-labels`: labels for existing assets, the documented JSON counts, a
/// re-run that writes nothing, an unknown id that names its line (nothing written) or is
/// skipped with `--skip-invalid`.
#[test]
fn import_add_labels_adds_labels_once_and_names_a_bad_line() -> TestResult {
    let cli = Cli::with_emails()?;
    let lines = cli.file(
        "labels.jsonl",
        concat!(
            r#"{"id": "e2", "labels": [{"author": "bob", "answers": {"category": "complaint"}}]}"#,
            "\n",
            r#"{"id": "e3", "labels": [{"model": "clf@3", "answers": {"category": "order"}, "scores": {"category": {"order": 0.4}}}]}"#,
            "\n"
        ),
    )?;
    let first = cli.json(&["import", "shop", &lines, "--mode", "add-labels"])?;
    assert_eq!(
        (
            &first["lines"],
            &first["labels"],
            &first["unchanged"],
            &first["skipped"]
        ),
        (&json!(2), &json!(2), &json!(0), &json!(0)),
        "{first}"
    );
    assert!(first["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{first}");
    let again = cli.json(&["import", "shop", &lines, "--mode", "add-labels"])?;
    assert_eq!(
        (&again["labels"], &again["unchanged"]),
        (&json!(0), &json!(2)),
        "{again}"
    );
    assert_eq!(cli.ok(&["query", "shop", "author:bob", "--count"])?, "1\n");

    let bad = cli.file(
        "bad.jsonl",
        concat!(
            r#"{"id": "e1", "labels": [{"author": "carol", "answers": {"category": "order"}}]}"#,
            "\n",
            r#"{"id": "nope", "labels": [{"author": "carol", "answers": {"category": "order"}}]}"#,
            "\n"
        ),
    )?;
    cli.fails(
        &["import", "shop", &bad, "--mode", "add-labels"],
        &["bad.jsonl:2", "nope"],
    )?;
    assert_eq!(cli.ok(&["query", "shop", "author:carol", "--count"])?, "0\n");
    let skipped = cli.json(&["import", "shop", &bad, "--mode", "add-labels", "--skip-invalid"])?;
    assert_eq!(
        (&skipped["labels"], &skipped["skipped"]),
        (&json!(1), &json!(1)),
        "{skipped}"
    );
    assert_eq!(cli.ok(&["query", "shop", "author:carol", "--count"])?, "1\n");
    Ok(())
}

/// `stats --json` reports the database's bytes on disk and live bytes; `compact` rewrites
/// it (JSON `{"before", "after", "seconds"}`) and it reads the same afterwards; `--user`
/// may not compact.
#[test]
fn stats_report_disk_usage_and_compact_keeps_the_data() -> TestResult {
    let cli = Cli::with_emails()?;
    let stats = cli.json(&["stats", "shop"])?;
    let (on_disk, live) = (&stats["bytes_on_disk"], &stats["live_bytes"]);
    assert!(on_disk.as_u64() >= live.as_u64() && live.as_u64() > Some(0), "{stats}");
    let report = cli.json(&["compact"])?;
    assert!(
        report["before"].as_u64().is_some() && report["after"].as_u64().is_some(),
        "{report}"
    );
    assert!(report["seconds"].as_f64().is_some(), "{report}");
    let again = cli.json(&["stats", "shop"])?;
    assert_eq!(again["live_bytes"], stats["live_bytes"], "{again}");
    assert_eq!(again["by_status"], stats["by_status"], "{again}");
    cli.fails(&["--user", "bob", "compact"], &["without --user"])?;
    assert!(cli.json(&["verify"])?["clean"] == json!(true));
    Ok(())
}
