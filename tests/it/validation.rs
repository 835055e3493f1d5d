//! Every validation error: the typed error names what failed, and nothing is written.

use std::io::Cursor;

use labeldb::{
    Action, Answer, AssetId, BBox, Db, Error, Format, ImportOptions, LabelId, LabelKind, MetaValue, NewAsset, NewLabel,
    Schema, Source, Span, Status, Verdict,
};

use crate::{observe, schema, temp_db, TestResult, LEGAL};

const SCHEMA: &str = r#"{"jobs": [
    {"name": "category", "kind": "classification", "classes": ["order", "complaint"]},
    {"name": "tags", "kind": "multi-classification", "classes": ["urgent", "vip"]},
    {"name": "entities", "kind": "spans", "classes": ["product", "quantity"]},
    {"name": "objects", "kind": "boxes", "classes": ["box", "bottle"]}
]}"#;

/// Multi-byte characters of 2 (é), 3 (☕) and 4 (😀) bytes.
const TEXT: &str = "café ☕: 3 boxes 😀 please";
const IMAGE_W: u32 = 100;
const IMAGE_H: u32 = 50;

struct Fixture {
    _dir: tempfile::TempDir,
    db: Db,
    text: AssetId,
    image: AssetId,
}

fn fixture() -> Fixture {
    let (dir, db) = temp_db();
    db.create_project("admin", "shop", schema(SCHEMA))
        .expect("create project");
    let text = db
        .add_asset("admin", "shop", NewAsset::text("t1", TEXT))
        .expect("add text");
    let image = db
        .add_asset("admin", "shop", NewAsset::image("i1", "img/1.png", IMAGE_W, IMAGE_H))
        .expect("add image");
    Fixture {
        _dir: dir,
        db,
        text,
        image,
    }
}

#[derive(Clone, Copy)]
enum Target {
    Text,
    Image,
}

/// Checks that `label` is refused both on the existing asset and when it comes with a new
/// asset of the same content, that `ok(error, external id)` holds for each error, and that
/// nothing was written either time.
fn assert_refused(f: &Fixture, target: Target, label: NewLabel, ok: impl Fn(&Error, &str) -> bool) {
    let (id, ext, fresh) = match target {
        Target::Text => (f.text, "t1", NewAsset::text("new-t", TEXT)),
        Target::Image => (f.image, "i1", NewAsset::image("new-i", "img/2.png", IMAGE_W, IMAGE_H)),
    };
    let before = observe(&f.db);
    match f.db.add_label(id, label.clone()) {
        Err(e) => assert!(ok(&e, ext), "add_label on {ext}: unexpected error {e:?}"),
        Ok(l) => panic!("add_label on {ext} accepted {label:?} as {l}"),
    }
    assert_eq!(observe(&f.db), before, "a refused add_label changed the database");

    let fresh_ext = fresh.external_id.clone();
    match f.db.add_asset("admin", "shop", fresh.with_label(label.clone())) {
        Err(e) => assert!(ok(&e, &fresh_ext), "add_asset {fresh_ext}: unexpected error {e:?}"),
        Ok(id) => panic!("add_asset accepted {label:?} as {id}"),
    }
    assert_eq!(observe(&f.db), before, "a refused add_asset changed the database");
    match f.db.asset_by_external_id("shop", &fresh_ext) {
        Err(Error::UnknownExternalId { project, external_id }) => {
            assert_eq!((project.as_str(), external_id.as_str()), ("shop", fresh_ext.as_str()))
        }
        other => panic!("refused asset {fresh_ext} is visible: {other:?}"),
    }
}

fn alice() -> NewLabel {
    NewLabel::annotation("alice")
}

fn span(start: usize, end: usize, class: &str) -> Span {
    Span {
        start: start as u32,
        end: end as u32,
        class: class.into(),
        score: None,
    }
}

fn bbox(x: f32, y: f32, w: f32, h: f32, class: &str) -> BBox {
    BBox {
        x,
        y,
        w,
        h,
        class: class.into(),
        score: None,
    }
}

fn is_invalid_answer(e: &Error, asset: &str, job: &str, class: Option<&str>) -> bool {
    matches!(e, Error::InvalidAnswer { asset: a, job: j, class: c, .. }
        if a == asset && j == job && c.as_deref() == class)
}

fn jsonl(lines: &[&str]) -> Cursor<Vec<u8>> {
    Cursor::new(lines.join("\n").into_bytes())
}

fn jsonl_line(id: &str, class: &str) -> String {
    format!(
        r#"{{"id": "{id}", "text": "hello {id}", "labels": [{{"author": "alice", "answers": {{"category": "{class}"}}}}]}}"#
    )
}

// ---- projects and schemas ----

#[test]
fn unknown_project_is_refused_by_every_entry_point() {
    let f = fixture();
    let before = observe(&f.db);
    let unknown = |r: Result<(), Error>, what: &str| match r {
        Err(Error::UnknownProject(p)) => assert_eq!(p, "nope", "{what}"),
        other => panic!("{what}: expected UnknownProject, got {other:?}"),
    };
    unknown(f.db.project("nope").map(drop), "project");
    unknown(
        f.db.add_asset("admin", "nope", NewAsset::text("x", "y")).map(drop),
        "add_asset",
    );
    unknown(
        f.db.add_assets("admin", "nope", vec![NewAsset::text("x", "y")])
            .map(drop),
        "add_assets",
    );
    unknown(f.db.asset_ids("nope").map(drop), "asset_ids");
    unknown(
        f.db.asset_by_external_id("nope", "t1").map(drop),
        "asset_by_external_id",
    );
    let opts = ImportOptions::new(Format::Jsonl);
    unknown(
        f.db.import_reader(
            "admin",
            "nope",
            jsonl(&[&jsonl_line("a", "order")]),
            "in.jsonl",
            &opts,
            |_| {},
        )
        .map(drop),
        "import_reader",
    );
    assert_eq!(observe(&f.db), before);
}

#[test]
fn duplicate_project_is_refused_and_the_first_one_is_kept() {
    let f = fixture();
    let before = observe(&f.db);
    let other = schema(r#"{"jobs": [{"name": "x", "kind": "classification", "classes": ["a"]}]}"#);
    match f.db.create_project("admin", "shop", other) {
        Err(Error::ProjectExists(name)) => assert_eq!(name, "shop"),
        other => panic!("expected ProjectExists, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);
    assert_eq!(f.db.project("shop").expect("project").schema, schema(SCHEMA));
}

#[test]
fn invalid_schemas_are_refused_and_create_nothing() {
    let (_dir, db) = temp_db();
    let job = |name: &str, kind: labeldb::JobKind, classes: &[&str]| labeldb::Job {
        name: name.into(),
        kind,
        classes: classes.iter().map(|c| c.to_string()).collect(),
    };
    let single = labeldb::JobKind::Classification { multi: false };
    let cases: Vec<(&str, Schema, &str)> = vec![
        ("empty", Schema { jobs: vec![] }, "at least one job"),
        (
            "duplicate job",
            Schema {
                jobs: vec![job("cat", single, &["a"]), job("cat", labeldb::JobKind::Spans, &["b"])],
            },
            "\"cat\"",
        ),
        (
            "duplicate class",
            Schema {
                jobs: vec![job("cat", single, &["a", "b", "a"])],
            },
            "\"a\"",
        ),
        (
            "no classes",
            Schema {
                jobs: vec![job("cat", single, &[])],
            },
            "\"cat\"",
        ),
        (
            "empty class name",
            Schema {
                jobs: vec![job("cat", single, &[""])],
            },
            "cat",
        ),
    ];
    for (what, s, mentions) in cases {
        match db.create_project("admin", "p", s) {
            Err(Error::InvalidSchema(msg)) => assert!(msg.contains(mentions), "{what}: {msg:?} lacks {mentions:?}"),
            other => panic!("{what}: expected InvalidSchema, got {other:?}"),
        }
        assert!(
            matches!(db.project("p"), Err(Error::UnknownProject(_))),
            "{what}: project created"
        );
        assert_eq!(db.last_seq(), 0, "{what}: an event was written");
    }
    let files = [
        ("empty", r#"{"jobs": []}"#, "at least one job"),
        (
            "duplicate job",
            r#"{"jobs": [{"name": "j", "kind": "spans", "classes": ["a"]}, {"name": "j", "kind": "boxes", "classes": ["a"]}]}"#,
            "\"j\"",
        ),
        (
            "duplicate class",
            r#"{"jobs": [{"name": "j", "kind": "spans", "classes": ["a", "a"]}]}"#,
            "\"a\"",
        ),
        (
            "unknown kind",
            r#"{"jobs": [{"name": "j", "kind": "polygons", "classes": ["a"]}]}"#,
            "\"polygons\"",
        ),
        ("unknown field", r#"{"jobs": [], "extra": 1}"#, "extra"),
        ("not JSON", r#"{"jobs": "#, ""),
    ];
    for (what, text, mentions) in files {
        match Schema::from_json(text) {
            Err(Error::InvalidSchema(msg)) => assert!(msg.contains(mentions), "{what}: {msg:?} lacks {mentions:?}"),
            other => panic!("{what}: expected InvalidSchema, got {other:?}"),
        }
    }
    assert!(db.projects().is_empty());
}

// ---- jobs, classes and answer shapes ----

#[test]
fn unknown_job_is_refused_naming_asset_and_job() {
    let f = fixture();
    let label = alice().answer("colour", Answer::class("red"));
    assert_refused(
        &f,
        Target::Text,
        label,
        |e, asset| matches!(e, Error::UnknownJob { asset: a, job } if a == asset && job == "colour"),
    );
    let scored = NewLabel::prediction("clf", "1").score("colour", "red", 0.5);
    assert_refused(
        &f,
        Target::Image,
        scored,
        |e, asset| matches!(e, Error::UnknownJob { asset: a, job } if a == asset && job == "colour"),
    );
}

#[test]
fn unknown_class_is_refused_naming_asset_job_and_class() {
    let f = fixture();
    let is = |job: &'static str, class: &'static str| move |e: &Error, asset: &str| matches!(e, Error::UnknownClass { asset: a, job: j, class: c } if a == asset && j == job && c == class);
    assert_refused(
        &f,
        Target::Text,
        alice().answer("category", Answer::class("refund")),
        is("category", "refund"),
    );
    let multi = Answer::Classes(vec!["urgent".into(), "spam".into()]);
    assert_refused(&f, Target::Text, alice().answer("tags", multi), is("tags", "spam"));
    let spans = Answer::Spans(vec![span(0, 5, "product"), span(11, 12, "colour")]);
    assert_refused(
        &f,
        Target::Text,
        alice().answer("entities", spans),
        is("entities", "colour"),
    );
    let boxes = Answer::Boxes(vec![bbox(1.0, 1.0, 5.0, 5.0, "crate")]);
    assert_refused(
        &f,
        Target::Image,
        alice().answer("objects", boxes),
        is("objects", "crate"),
    );
}

#[test]
fn span_outside_the_text_is_refused() {
    let f = fixture();
    let len = TEXT.len();
    for (start, end) in [(0, len + 1), (len - 1, len + 10), (len + 1, len + 2)] {
        let label = alice().answer("entities", Answer::Spans(vec![span(start, end, "product")]));
        assert_refused(&f, Target::Text, label, |e, a| {
            is_invalid_answer(e, a, "entities", Some("product"))
        });
    }
    // The whole text is a valid span: the bound is inclusive of the end.
    f.db.add_label(
        f.text,
        alice().answer("entities", Answer::Spans(vec![span(0, len, "product")])),
    )
    .expect("a span over the whole text is valid");
}

#[test]
fn span_not_on_a_char_boundary_is_refused() {
    let f = fixture();
    let e_acute = TEXT.find('é').expect("é");
    let coffee = TEXT.find('☕').expect("☕");
    let emoji = TEXT.find('😀').expect("😀");
    let cases = [
        (0, e_acute + 1),          // ends inside é (2 bytes)
        (e_acute + 1, TEXT.len()), // starts inside é
        (coffee + 1, coffee + 3),  // inside ☕ (3 bytes)
        (emoji, emoji + 2),        // ends inside 😀 (4 bytes)
        (emoji + 3, emoji + 4),    // starts inside 😀
        (emoji + 1, emoji + 3),    // wholly inside 😀
    ];
    for (start, end) in cases {
        assert!(!TEXT.is_char_boundary(start) || !TEXT.is_char_boundary(end));
        let label = alice().answer("entities", Answer::Spans(vec![span(start, end, "quantity")]));
        assert_refused(&f, Target::Text, label, |e, a| {
            is_invalid_answer(e, a, "entities", Some("quantity"))
        });
    }
    // The same characters, whole, are fine.
    let whole = vec![
        span(0, e_acute + 2, "product"),
        span(coffee, coffee + 3, "product"),
        span(emoji, emoji + 4, "product"),
    ];
    let id =
        f.db.add_label(f.text, alice().answer("entities", Answer::Spans(whole)))
            .expect("whole chars");
    let Answer::Spans(stored) = &f.db.label(id).expect("label").answers["entities"] else {
        panic!("not spans");
    };
    let texts: Vec<&str> = stored.iter().map(|s| &TEXT[s.start as usize..s.end as usize]).collect();
    assert_eq!(texts, ["café", "☕", "😀"]);
}

#[test]
fn empty_or_reversed_span_is_refused() {
    let f = fixture();
    for (start, end) in [(3, 3), (0, 0), (9, 2)] {
        let label = alice().answer("entities", Answer::Spans(vec![span(start, end, "product")]));
        assert_refused(&f, Target::Text, label, |e, a| {
            is_invalid_answer(e, a, "entities", Some("product"))
        });
    }
}

#[test]
fn box_outside_the_image_is_refused() {
    let f = fixture();
    let (w, h) = (IMAGE_W as f32, IMAGE_H as f32);
    let cases = [
        bbox(w - 5.0, 0.0, 10.0, 10.0, "box"),
        bbox(0.0, h - 5.0, 10.0, 10.0, "box"),
        bbox(-1.0, 0.0, 10.0, 10.0, "box"),
        bbox(0.0, -0.5, 10.0, 10.0, "box"),
        bbox(w, h, 1.0, 1.0, "box"),
        bbox(0.0, 0.0, w + 1.0, h, "box"),
    ];
    for b in cases {
        let label = alice().answer("objects", Answer::Boxes(vec![b]));
        assert_refused(&f, Target::Image, label, |e, a| {
            is_invalid_answer(e, a, "objects", Some("box"))
        });
    }
    f.db.add_label(
        f.image,
        alice().answer("objects", Answer::Boxes(vec![bbox(0.0, 0.0, w, h, "box")])),
    )
    .expect("a box covering the whole image is valid");
}

#[test]
fn box_with_zero_or_negative_size_is_refused() {
    let f = fixture();
    let cases = [
        bbox(10.0, 10.0, 0.0, 5.0, "bottle"),
        bbox(10.0, 10.0, 5.0, 0.0, "bottle"),
        bbox(10.0, 10.0, -5.0, 5.0, "bottle"),
        bbox(10.0, 10.0, 5.0, -5.0, "bottle"),
        bbox(10.0, 10.0, f32::NAN, 5.0, "bottle"),
        bbox(f32::INFINITY, 10.0, 5.0, 5.0, "bottle"),
    ];
    for b in cases {
        let label = alice().answer("objects", Answer::Boxes(vec![b]));
        assert_refused(&f, Target::Image, label, |e, a| {
            is_invalid_answer(e, a, "objects", Some("bottle"))
        });
    }
}

#[test]
fn spans_on_an_image_and_boxes_on_a_text_are_refused() {
    let f = fixture();
    let spans = alice().answer("entities", Answer::Spans(vec![span(0, 1, "product")]));
    assert_refused(&f, Target::Image, spans, |e, a| {
        is_invalid_answer(e, a, "entities", None)
    });
    let boxes = alice().answer("objects", Answer::Boxes(vec![bbox(0.0, 0.0, 1.0, 1.0, "box")]));
    assert_refused(&f, Target::Text, boxes, |e, a| is_invalid_answer(e, a, "objects", None));
}

#[test]
fn wrong_answer_shape_is_refused() {
    let f = fixture();
    let shape = |job: &'static str| move |e: &Error, a: &str| is_invalid_answer(e, a, job, None);
    let spans_for_classes = Answer::Spans(vec![span(0, 4, "order")]);
    assert_refused(
        &f,
        Target::Text,
        alice().answer("category", spans_for_classes),
        shape("category"),
    );
    assert_refused(
        &f,
        Target::Text,
        alice().answer("entities", Answer::class("product")),
        shape("entities"),
    );
    assert_refused(
        &f,
        Target::Image,
        alice().answer("objects", Answer::class("box")),
        shape("objects"),
    );
    let boxes_for_classes = Answer::Boxes(vec![bbox(0.0, 0.0, 1.0, 1.0, "order")]);
    assert_refused(
        &f,
        Target::Image,
        alice().answer("category", boxes_for_classes),
        shape("category"),
    );
    // A single-choice job takes exactly one class.
    let two = Answer::Classes(vec!["order".into(), "complaint".into()]);
    assert_refused(&f, Target::Text, alice().answer("category", two), shape("category"));
    assert_refused(
        &f,
        Target::Text,
        alice().answer("category", Answer::Classes(vec![])),
        shape("category"),
    );
    // A multi-choice job takes several, but each once.
    let twice = Answer::Classes(vec!["vip".into(), "vip".into()]);
    assert_refused(&f, Target::Text, alice().answer("tags", twice), |e, a| {
        is_invalid_answer(e, a, "tags", Some("vip"))
    });
    f.db.add_label(
        f.text,
        alice().answer("tags", Answer::Classes(vec!["vip".into(), "urgent".into()])),
    )
    .expect("two distinct classes for a multi-choice job");
}

#[test]
fn score_outside_0_1_or_for_an_unknown_class_is_refused() {
    let f = fixture();
    for s in [1.5, -0.1, f32::NAN, f32::INFINITY] {
        let label = NewLabel::prediction("clf", "1")
            .answer("category", Answer::class("order"))
            .score("category", "order", s);
        assert_refused(&f, Target::Text, label, |e, a| {
            is_invalid_answer(e, a, "category", Some("order"))
        });
        let mut spans = vec![span(0, 4, "product")];
        spans[0].score = Some(s);
        let label = NewLabel::prediction("clf", "1").answer("entities", Answer::Spans(spans));
        assert_refused(&f, Target::Text, label, |e, a| {
            is_invalid_answer(e, a, "entities", Some("product"))
        });
        let mut boxes = vec![bbox(0.0, 0.0, 5.0, 5.0, "box")];
        boxes[0].score = Some(s);
        let label = NewLabel::prediction("clf", "1").answer("objects", Answer::Boxes(boxes));
        assert_refused(&f, Target::Image, label, |e, a| {
            is_invalid_answer(e, a, "objects", Some("box"))
        });
    }
    let label = NewLabel::prediction("clf", "1").score("category", "refund", 0.5);
    assert_refused(
        &f,
        Target::Text,
        label,
        |e, a| matches!(e, Error::UnknownClass { asset, job, class } if asset == a && job == "category" && class == "refund"),
    );
    // The bounds themselves are valid.
    let label = NewLabel::prediction("clf", "1")
        .score("category", "order", 1.0)
        .score("category", "complaint", 0.0);
    f.db.add_label(f.text, label).expect("scores 0 and 1 are valid");
}

#[test]
fn malformed_label_fields_are_refused_as_invalid_input() {
    let f = fixture();
    let invalid =
        |what: &'static str| move |e: &Error, _: &str| matches!(e, Error::InvalidInput { what: w, .. } if w == what);
    let mut model_annotation = NewLabel::prediction("clf", "1");
    model_annotation.kind = LabelKind::Annotation;
    assert_refused(&f, Target::Text, model_annotation, invalid("label"));
    let mut verdict = alice();
    verdict.verdict = Some(Verdict::Accept);
    assert_refused(&f, Target::Text, verdict, invalid("verdict"));
    for s in [-1.0, f32::NAN, f32::INFINITY] {
        let mut seconds = alice();
        seconds.seconds = s;
        assert_refused(&f, Target::Text, seconds, invalid("seconds"));
    }
    assert_refused(&f, Target::Text, NewLabel::annotation(""), invalid("user name"));
    assert_refused(&f, Target::Text, NewLabel::annotation("a\nb"), invalid("user name"));
    assert_refused(
        &f,
        Target::Text,
        NewLabel::prediction("clf", ""),
        invalid("source version"),
    );
    for spec in ["clf", "clf@", "@3", ""] {
        match Source::model(spec) {
            Err(Error::InvalidInput { what, .. }) => assert_eq!(what, "model", "{spec:?}"),
            other => panic!("Source::model({spec:?}) = {other:?}"),
        }
    }
    // A label written with a new asset cannot point at revisions.
    let mut with_parent = alice();
    with_parent.parent = Some(LabelId::new(f.text, 0));
    let before = observe(&f.db);
    match f
        .db
        .add_asset("admin", "shop", NewAsset::text("n", "x").with_label(with_parent))
    {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);
}

#[test]
fn malformed_assets_and_values_are_refused_as_invalid_input() {
    let f = fixture();
    let before = observe(&f.db);
    let long = "x".repeat(labeldb::MAX_EXTERNAL_ID_LEN + 1);
    let cases: Vec<(&str, NewAsset)> = vec![
        ("empty external id", NewAsset::text("", "x")),
        ("long external id", NewAsset::text(long, "x")),
        ("control char in id", NewAsset::text("a\tb", "x")),
        ("zero width", NewAsset::image("z", "img.png", 0, 10)),
        ("zero height", NewAsset::image("z", "img.png", 10, 0)),
        ("empty uri", NewAsset::image("z", "", 10, 10)),
        (
            "bad meta key",
            NewAsset::text("z", "x").with_meta("a key", MetaValue::Bool(true)),
        ),
        (
            "NaN meta",
            NewAsset::text("z", "x").with_meta("k", MetaValue::Num(f64::NAN)),
        ),
        (
            "long meta",
            NewAsset::text("z", "x").with_meta("k", MetaValue::Str("v".repeat(labeldb::MAX_META_VALUE_LEN + 1))),
        ),
        ("NaN priority", {
            let mut a = NewAsset::text("z", "x");
            a.priority = f64::NAN;
            a
        }),
    ];
    for (what, asset) in cases {
        match f.db.add_asset("admin", "shop", asset) {
            Err(Error::InvalidInput { .. }) => {}
            other => panic!("{what}: expected InvalidInput, got {other:?}"),
        }
        assert_eq!(observe(&f.db), before, "{what}");
    }
    let invalid = |r: labeldb::Result<()>, what: &str| match r {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!("{what}: expected InvalidInput, got {other:?}"),
    };
    invalid(f.db.set_priority("admin", f.text, f64::NAN), "NaN priority");
    invalid(
        f.db.set_priority("admin", f.text, f64::NEG_INFINITY),
        "infinite priority",
    );
    invalid(
        f.db.set_meta("admin", f.text, "", Some(MetaValue::Bool(true))),
        "empty meta key",
    );
    invalid(
        f.db.set_meta("admin", f.text, "k", Some(MetaValue::Num(f64::INFINITY))),
        "infinite meta",
    );
    invalid(f.db.set_status("", f.text, Status::Ongoing), "empty actor");
    invalid(
        f.db.add_asset("", "shop", NewAsset::text("z", "x")).map(drop),
        "empty actor",
    );
    assert_eq!(observe(&f.db), before);
}

#[test]
fn unknown_asset_is_refused_by_every_write() {
    let f = fixture();
    let before = observe(&f.db);
    let ghost = AssetId(9_999);
    let unknown = |r: labeldb::Result<()>, what: &str| match r {
        Err(Error::UnknownAsset(id)) => assert_eq!(id, ghost, "{what}"),
        other => panic!("{what}: expected UnknownAsset, got {other:?}"),
    };
    unknown(f.db.add_label(ghost, alice()).map(drop), "add_label");
    unknown(f.db.set_status("admin", ghost, Status::Ongoing), "set_status");
    unknown(f.db.set_meta("admin", ghost, "k", None), "set_meta");
    unknown(f.db.set_priority("admin", ghost, 1.0), "set_priority");
    unknown(f.db.set_honeypot("admin", ghost, true), "set_honeypot");
    unknown(f.db.delete_asset("admin", ghost), "delete_asset");
    unknown(f.db.restore_asset("admin", ghost), "restore_asset");
    unknown(f.db.asset(ghost).map(drop), "asset");
    unknown(f.db.audit_asset(ghost).map(drop), "audit_asset");
    match f.db.label(LabelId::new(f.text, 7)) {
        Err(Error::UnknownLabel(l)) => assert_eq!(l, LabelId::new(f.text, 7)),
        other => panic!("expected UnknownLabel, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);
}

// ---- workflow ----

#[test]
fn every_status_transition_follows_the_documented_table() {
    let f = fixture();
    assert!(
        !Status::Todo.can_become(Status::Reviewed),
        "TODO -> REVIEWED must be illegal"
    );
    assert!(
        !Status::Todo.can_become(Status::ToReview),
        "TODO -> TO_REVIEW must be illegal"
    );
    assert!(
        !Status::Reviewed.can_become(Status::Labeled),
        "REVIEWED -> LABELED must be illegal"
    );
    for from in Status::ALL {
        for to in Status::ALL {
            let legal = LEGAL.contains(&(from, to));
            assert_eq!(from.can_become(to), legal, "can_become({from}, {to})");
            let ext = format!("s-{from}-{to}");
            let mut new = NewAsset::text(ext.clone(), "status test");
            new.status = Some(from);
            let id = f.db.add_asset("admin", "shop", new).expect("add asset");
            let asset = f.db.asset(id).expect("asset");
            assert_eq!(asset.status, from, "the initial status is the one given");
            let before = observe(&f.db);
            let result = f.db.set_status("bob", id, to);
            if legal {
                result.unwrap_or_else(|e| panic!("{from} -> {to} refused: {e}"));
                let after = f.db.asset(id).expect("asset");
                assert_eq!(after.status, to);
                assert_eq!(after.version, asset.version + 1);
                assert_eq!(f.db.last_seq(), before.last_seq + 1);
                let event = f.db.event(f.db.last_seq()).expect("event").expect("present");
                assert_eq!(event.actor, "bob");
                assert_eq!(
                    event.action,
                    Action::StatusChanged {
                        asset: id,
                        before: from,
                        after: to
                    }
                );
            } else {
                match result {
                    Err(Error::IllegalTransition {
                        asset,
                        from: f0,
                        to: t0,
                    }) => {
                        assert_eq!((asset.as_str(), f0, t0), (ext.as_str(), from, to))
                    }
                    other => panic!("{from} -> {to}: expected IllegalTransition, got {other:?}"),
                }
                assert_eq!(observe(&f.db), before, "{from} -> {to} changed the database");
            }
        }
    }
}

#[test]
fn a_soft_deleted_asset_refuses_every_change_until_restored() {
    let f = fixture();
    f.db.delete_asset("admin", f.text).expect("delete");
    assert!(f.db.asset(f.text).expect("asset").deleted);
    let before = observe(&f.db);
    let deleted = |r: labeldb::Result<()>, what: &str| match r {
        Err(Error::AssetDeleted(ext)) => assert_eq!(ext, "t1", "{what}"),
        other => panic!("{what}: expected AssetDeleted, got {other:?}"),
    };
    deleted(
        f.db.add_label(f.text, alice().answer("category", Answer::class("order")))
            .map(drop),
        "add_label",
    );
    deleted(f.db.set_status("admin", f.text, Status::Ongoing), "set_status");
    deleted(
        f.db.set_meta("admin", f.text, "k", Some(MetaValue::Bool(true))),
        "set_meta",
    );
    deleted(f.db.set_priority("admin", f.text, 3.0), "set_priority");
    deleted(f.db.set_honeypot("admin", f.text, true), "set_honeypot");
    assert_eq!(observe(&f.db), before);
    // Deleting again is a no-op, not an error and not an event.
    f.db.delete_asset("admin", f.text).expect("delete twice");
    assert_eq!(observe(&f.db), before);
    // Re-adding its external id does not resurrect or duplicate it.
    match f.db.add_asset("admin", "shop", NewAsset::text("t1", "other")) {
        Err(Error::AssetExists { project, external_id }) => {
            assert_eq!((project.as_str(), external_id.as_str()), ("shop", "t1"))
        }
        other => panic!("expected AssetExists for an existing id, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);
    f.db.restore_asset("admin", f.text).expect("restore");
    f.db.add_label(f.text, alice().answer("category", Answer::class("order")))
        .expect("label after restore");
    assert_eq!(f.db.asset(f.text).expect("asset").status, Status::Labeled);
}

#[test]
fn a_stale_parent_is_a_conflict_and_writes_nothing() {
    let f = fixture();
    let answer = |c: &str| alice().answer("category", Answer::class(c));
    let first = f.db.add_label(f.text, answer("order")).expect("first");
    let mut second = answer("complaint");
    second.parent = Some(first);
    let second = f.db.add_label(f.text, second).expect("parent is the latest revision");
    assert_eq!(f.db.label(second).expect("label").parent, Some(first));
    // Bob's revision does not make alice's latest stale: parents are per source.
    let bob =
        f.db.add_label(
            f.text,
            NewLabel::annotation("bob").answer("category", Answer::class("order")),
        )
        .expect("bob");
    assert_eq!(f.db.label(bob).expect("label").parent, None);

    let before = observe(&f.db);
    let mut stale = answer("order");
    stale.parent = Some(first);
    match f.db.add_label(f.text, stale) {
        Err(Error::Conflict {
            asset,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(asset, "t1");
            assert_eq!(expected, Some(first));
            assert_eq!(actual, Some(second));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);

    // A parent given for a source with no revision yet is a conflict too.
    let mut none_yet = NewLabel::annotation("carol").answer("category", Answer::class("order"));
    none_yet.parent = Some(first);
    match f.db.add_label(f.text, none_yet) {
        Err(Error::Conflict {
            asset,
            expected,
            actual,
            ..
        }) => {
            assert_eq!((asset.as_str(), expected, actual), ("t1", Some(first), None))
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    // And so is another source's latest revision.
    let mut foreign = answer("order");
    foreign.parent = Some(bob);
    assert!(matches!(f.db.add_label(f.text, foreign), Err(Error::Conflict { .. })));
    assert_eq!(observe(&f.db), before);
}

#[test]
fn derived_from_must_be_an_existing_revision_of_the_same_asset() {
    let f = fixture();
    let pred = f.db.add_label(
        f.text,
        NewLabel::prediction("clf", "1").answer("category", Answer::class("order")),
    );
    let pred = pred.expect("prediction");
    let img =
        f.db.add_label(f.image, alice().answer("objects", Answer::Boxes(vec![])))
            .expect("image label");
    let before = observe(&f.db);
    for d in [img, LabelId::new(f.text, 1), LabelId::new(f.text, 50)] {
        let mut l = alice().answer("category", Answer::class("complaint"));
        l.derived_from = Some(d);
        match f.db.add_label(f.text, l) {
            Err(Error::InvalidInput { what, .. }) => assert_eq!(what, "derived_from"),
            other => panic!("derived_from {d}: expected InvalidInput, got {other:?}"),
        }
    }
    assert_eq!(observe(&f.db), before);
    let mut fix = alice().answer("category", Answer::class("complaint"));
    fix.derived_from = Some(pred);
    let fix = f.db.add_label(f.text, fix).expect("derived from the prediction");
    assert_eq!(f.db.label(fix).expect("label").derived_from, Some(pred));
}

// ---- imports ----

#[test]
fn a_bad_third_line_of_five_fails_the_import_and_writes_none_of_the_batch() {
    let bad_lines = [
        ("malformed JSON", r#"{"id": "a3", "text": "#.to_string()),
        ("unknown class", jsonl_line("a3", "refund")),
        ("unknown job", r#"{"id": "a3", "text": "x", "labels": [{"author": "alice", "answers": {"colour": "red"}}]}"#.into()),
        ("span past the text", r#"{"id": "a3", "text": "abc", "labels": [{"author": "alice", "answers": {"entities": [{"start": 1, "end": 9, "class": "product"}]}}]}"#.into()),
        ("unknown field", r#"{"id": "a3", "text": "x", "colour": "red"}"#.into()),
        ("no content", r#"{"id": "a3"}"#.into()),
    ];
    for (what, bad) in bad_lines {
        let f = fixture();
        let before = observe(&f.db);
        let lines = [
            jsonl_line("a1", "order"),
            jsonl_line("a2", "order"),
            bad,
            jsonl_line("a4", "order"),
            jsonl_line("a5", "complaint"),
        ];
        let input = jsonl(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        let opts = ImportOptions::new(Format::Jsonl);
        match f.db.import_reader("admin", "shop", input, "batch.jsonl", &opts, |_| {}) {
            Err(Error::Import {
                file,
                line,
                cause: source,
            }) => {
                assert_eq!((file.as_str(), line), ("batch.jsonl", 3), "{what}");
                let ok = match what {
                    "unknown class" => {
                        matches!(*source, Error::UnknownClass { ref asset, ref class, .. } if asset == "a3" && class == "refund")
                    }
                    "unknown job" => {
                        matches!(*source, Error::UnknownJob { ref asset, ref job } if asset == "a3" && job == "colour")
                    }
                    "span past the text" => matches!(*source, Error::InvalidAnswer { ref asset, .. } if asset == "a3"),
                    _ => matches!(*source, Error::InvalidInput { .. }),
                };
                assert!(ok, "{what}: unexpected cause {source:?}");
            }
            other => panic!("{what}: expected Error::Import, got {other:?}"),
        }
        assert_eq!(observe(&f.db), before, "{what}: something was written");
        for id in ["a1", "a2", "a3", "a4", "a5"] {
            assert!(
                matches!(
                    f.db.asset_by_external_id("shop", id),
                    Err(Error::UnknownExternalId { .. })
                ),
                "{what}: {id}"
            );
        }
    }
}

#[test]
fn import_line_numbers_count_blank_lines_and_name_the_file() -> TestResult {
    let f = fixture();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("with-blanks.jsonl");
    let text = [
        jsonl_line("a1", "order"),
        String::new(),
        "   ".into(),
        jsonl_line("a2", "refund"),
    ]
    .join("\n");
    std::fs::write(&path, text)?;
    let before = observe(&f.db);
    match f
        .db
        .import_file("admin", "shop", &path, &ImportOptions::new(Format::Jsonl), |_| {})
    {
        Err(Error::Import { file, line, .. }) => assert_eq!((file.as_str(), line), ("with-blanks.jsonl", 4)),
        other => panic!("expected Error::Import, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);
    match f.db.import_file(
        "admin",
        "shop",
        &dir.path().join("missing.jsonl"),
        &ImportOptions::new(Format::Jsonl),
        |_| {},
    ) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("missing.jsonl")),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_bad_conll_line_fails_the_import_with_its_line_number() {
    let f = fixture();
    let before = observe(&f.db);
    let input = "Send\tO\n3\tB-quantity\nboxes\tI-quantity\n\nmore\tO\ncrates\tX-product\n\nlast\tO\n";
    let opts = ImportOptions::new(Format::Conll);
    match f
        .db
        .import_reader("admin", "shop", Cursor::new(input), "bad.conll", &opts, |_| {})
    {
        Err(Error::Import {
            file,
            line,
            cause: source,
        }) => {
            assert_eq!((file.as_str(), line), ("bad.conll", 6));
            assert!(matches!(*source, Error::InvalidInput { .. }), "{source:?}");
        }
        other => panic!("expected Error::Import, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);
    let unknown = "Send\tO\nwidgets\tB-widget\n";
    match f
        .db
        .import_reader("admin", "shop", Cursor::new(unknown), "u.conll", &opts, |_| {})
    {
        Err(Error::Import {
            line: 1, cause: source, ..
        }) => {
            assert!(
                matches!(*source, Error::UnknownClass { ref asset, ref job, ref class }
                if asset == "u.conll:1" && job == "entities" && class == "widget"),
                "{source:?}"
            )
        }
        other => panic!("expected Error::Import at the sentence's first line, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);
}

#[test]
fn an_import_error_keeps_earlier_batches_and_a_rerun_completes_it() {
    let f = fixture();
    let lines: Vec<String> = (1..=5)
        .map(|i| jsonl_line(&format!("a{i}"), if i == 4 { "refund" } else { "order" }))
        .collect();
    let mut opts = ImportOptions::new(Format::Jsonl);
    opts.batch_size = 2;
    let input = jsonl(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    match f.db.import_reader("admin", "shop", input, "in.jsonl", &opts, |_| {}) {
        Err(Error::Import { line: 4, .. }) => {}
        other => panic!("expected Error::Import at line 4, got {other:?}"),
    }
    // The first batch (lines 1-2) is written whole, the failing batch (3-4) not at all.
    for (id, present) in [("a1", true), ("a2", true), ("a3", false), ("a4", false), ("a5", false)] {
        assert_eq!(f.db.asset_by_external_id("shop", id).is_ok(), present, "{id}");
    }
    let fixed: Vec<String> = (1..=5).map(|i| jsonl_line(&format!("a{i}"), "order")).collect();
    let input = jsonl(&fixed.iter().map(String::as_str).collect::<Vec<_>>());
    let report =
        f.db.import_reader("admin", "shop", input, "in.jsonl", &opts, |_| {})
            .expect("rerun");
    assert_eq!(
        (report.records, report.imported, report.duplicates, report.labels),
        (5, 3, 2, 3)
    );
    assert_eq!(f.db.asset_ids("shop").expect("ids").len(), 2 + 5);
}

#[test]
fn skip_invalid_counts_and_samples_bad_records_and_imports_the_rest() {
    let f = fixture();
    let lines = [
        jsonl_line("a1", "order"),
        jsonl_line("a2", "refund"),
        jsonl_line("a3", "complaint"),
        "not json".to_string(),
        jsonl_line("a5", "order"),
        jsonl_line("a1", "order"),
    ];
    let mut opts = ImportOptions::new(Format::Jsonl);
    opts.skip_invalid = true;
    let input = jsonl(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let mut progress_calls = 0;
    let report =
        f.db.import_reader("admin", "shop", input, "in.jsonl", &opts, |_| progress_calls += 1)
            .expect("import");
    assert_eq!(report.records, 6);
    assert_eq!(report.imported, 3);
    assert_eq!(
        report.invalid, 3,
        "two bad lines and one duplicate id: {:?}",
        report.invalid_samples
    );
    assert_eq!(report.labels, 3);
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.invalid_samples.len(), 3);
    for (sample, line) in report.invalid_samples.iter().zip(["2: ", "4: ", "6: "]) {
        assert!(sample.starts_with(line), "{sample:?} should start with {line:?}");
    }
    assert!(report.invalid_samples[0].contains("refund"));
    assert!(progress_calls >= 1);
    for (id, present) in [("a1", true), ("a2", false), ("a3", true), ("a5", true)] {
        assert_eq!(f.db.asset_by_external_id("shop", id).is_ok(), present, "{id}");
    }
    let a1 = f.db.asset_by_external_id("shop", "a1").expect("a1");
    assert_eq!(a1.content.text(), Some("hello a1"));
    assert_eq!(
        f.db.history(a1.id).expect("history")[0].answers["category"],
        Answer::class("order")
    );
}

#[test]
fn reimporting_the_same_file_reports_only_duplicates_and_changes_nothing() {
    let f = fixture();
    let lines: Vec<String> = (1..=5).map(|i| jsonl_line(&format!("a{i}"), "order")).collect();
    let text = lines.join("\n");
    let opts = ImportOptions::new(Format::Jsonl);
    let first =
        f.db.import_reader("admin", "shop", Cursor::new(text.clone()), "in.jsonl", &opts, |_| {})
            .expect("first");
    assert_eq!(
        (first.records, first.imported, first.duplicates, first.labels),
        (5, 5, 0, 5)
    );
    let before = observe(&f.db);
    let second =
        f.db.import_reader("admin", "shop", Cursor::new(text), "in.jsonl", &opts, |_| {})
            .expect("second");
    assert_eq!(
        (second.records, second.imported, second.duplicates, second.labels),
        (5, 0, 5, 0)
    );
    assert_eq!(observe(&f.db), before, "a re-import wrote something");

    // add_assets is idempotent the same way and reports the duplicates by name.
    let report =
        f.db.add_assets(
            "admin",
            "shop",
            vec![NewAsset::text("a2", "changed"), NewAsset::text("b1", "new")],
        )
        .expect("add_assets");
    assert_eq!(report.duplicates, ["a2"]);
    assert_eq!(report.added.len(), 1);
    assert_eq!(
        f.db.asset_by_external_id("shop", "a2").expect("a2").content.text(),
        Some("hello a2")
    );
}

#[test]
fn a_duplicate_external_id_within_one_input_is_an_error() {
    let f = fixture();
    let before = observe(&f.db);
    let lines = [
        jsonl_line("a1", "order"),
        jsonl_line("a2", "order"),
        jsonl_line("a3", "order"),
        jsonl_line("a2", "complaint"),
    ];
    let input = jsonl(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    match f.db.import_reader(
        "admin",
        "shop",
        input,
        "dup.jsonl",
        &ImportOptions::new(Format::Jsonl),
        |_| {},
    ) {
        Err(Error::Import {
            line, cause: source, ..
        }) => {
            assert_eq!(line, 4);
            assert!(
                matches!(*source, Error::DuplicateExternalId(ref id) if id == "a2"),
                "{source:?}"
            );
        }
        other => panic!("expected Error::Import, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);
    match f.db.add_assets(
        "admin",
        "shop",
        vec![
            NewAsset::text("d", "x"),
            NewAsset::text("e", "y"),
            NewAsset::text("d", "z"),
        ],
    ) {
        Err(Error::DuplicateExternalId(id)) => assert_eq!(id, "d"),
        other => panic!("expected DuplicateExternalId, got {other:?}"),
    }
    assert_eq!(observe(&f.db), before);
}
