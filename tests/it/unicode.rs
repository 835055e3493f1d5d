//! Non-ASCII text: JSONL spans are code points, stored spans are UTF-8 byte offsets on
//! character boundaries, and the two convert both ways.

use std::io::Cursor;

use labeldb::{parse_jsonl_line, to_byte_offset, to_codepoint, Answer, Error, Format, ImportOptions, Span};

use crate::{observe, schema, temp_db, TestResult};

const SCHEMA: &str = r#"{"jobs": [
    {"name": "entities", "kind": "spans", "classes": ["person", "place", "food", "thing"]}
]}"#;

/// Texts with 2-, 3- and 4-byte characters, combining marks and a ZWJ emoji sequence,
/// each with the entities to mark in it.
const CASES: [(&str, &[(&str, &str)]); 4] = [
    (
        "Zoë ate 寿司 in São Paulo 🇧🇷 today",
        &[
            ("Zoë", "person"),
            ("寿司", "food"),
            ("São Paulo", "place"),
            ("🇧🇷", "thing"),
        ],
    ),
    (
        "東京タワー and 大阪城 are landmarks",
        &[("東京タワー", "place"), ("大阪城", "place")],
    ),
    (
        "the family 👩‍👩‍👧 met Ñandú Zoe\u{301} 😀!",
        &[
            ("👩‍👩‍👧", "thing"),
            ("Ñandú", "person"),
            ("Zoe\u{301}", "person"),
            ("😀", "thing"),
        ],
    ),
    ("plain ascii for contrast", &[("ascii", "thing")]),
];

/// The code-point range of the first occurrence of `entity`, computed by counting chars.
fn codepoints_of(text: &str, entity: &str) -> (usize, usize) {
    let chars: Vec<char> = text.chars().collect();
    let needle: Vec<char> = entity.chars().collect();
    let start = (0..=chars.len() - needle.len())
        .find(|&i| chars[i..i + needle.len()] == needle[..])
        .unwrap_or_else(|| panic!("{entity:?} not in {text:?}"));
    (start, start + needle.len())
}

fn jsonl_record(id: &str, text: &str, spans: &[(usize, usize, &str)]) -> String {
    let spans: Vec<_> = spans
        .iter()
        .map(|(s, e, c)| serde_json::json!({"start": s, "end": e, "class": c}))
        .collect();
    serde_json::json!({"id": id, "text": text, "labels": [{"author": "alice", "answers": {"entities": spans}}]})
        .to_string()
}

#[test]
fn jsonl_code_point_spans_are_stored_as_byte_offsets_that_slice_the_entity() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", "u", schema(SCHEMA))?;
    let mut lines = Vec::new();
    for (i, (text, entities)) in CASES.iter().enumerate() {
        let spans: Vec<(usize, usize, &str)> = entities
            .iter()
            .map(|(e, c)| {
                let (s, end) = codepoints_of(text, e);
                (s, end, *c)
            })
            .collect();
        lines.push(jsonl_record(&format!("u{i}"), text, &spans));
    }
    let report = db.import_reader(
        "admin",
        "u",
        Cursor::new(lines.join("\n")),
        "u.jsonl",
        &ImportOptions::new(Format::Jsonl),
        |_| {},
    )?;
    assert_eq!(report.imported, CASES.len() as u64);
    for (i, (text, entities)) in CASES.iter().enumerate() {
        let asset = db.asset_by_external_id("u", &format!("u{i}"))?;
        assert_eq!(asset.content.text(), Some(*text));
        let history = db.history(asset.id)?;
        let Answer::Spans(spans) = &history[0].answers["entities"] else {
            panic!("not spans: {:?}", history[0].answers);
        };
        assert_eq!(spans.len(), entities.len());
        for (span, (entity, class)) in spans.iter().zip(entities.iter()) {
            let (start, end) = (span.start as usize, span.end as usize);
            assert!(
                text.is_char_boundary(start) && text.is_char_boundary(end),
                "{span:?} in {text:?}"
            );
            assert_eq!(&text[start..end], *entity, "{text:?}");
            assert_eq!(span.class, *class);
            // Byte offsets, not code points: they differ as soon as a multi-byte char precedes.
            let expected_start = text.find(entity).expect("entity");
            assert_eq!(start, expected_start, "{entity:?} in {text:?}");
            let (cs, ce) = codepoints_of(text, entity);
            assert_eq!((to_codepoint(text, start), to_codepoint(text, end)), (cs, ce));
            assert_eq!(
                (to_byte_offset(text, cs), to_byte_offset(text, ce)),
                (Some(start), Some(end))
            );
        }
    }
    // A ZWJ sequence is several code points: spans count code points, not graphemes.
    let (s, e) = codepoints_of(CASES[2].0, "👩‍👩‍👧");
    assert_eq!(e - s, 5);
    Ok(())
}

#[test]
fn parse_jsonl_line_converts_code_points_to_bytes() -> TestResult {
    let text = "né à 東京";
    let line = jsonl_record("x", text, &[(5, 7, "place"), (0, 2, "person")]);
    let asset = parse_jsonl_line(&line, &schema(SCHEMA))?;
    let Answer::Spans(spans) = &asset.labels[0].answers["entities"] else {
        panic!("not spans");
    };
    let expected = |s: usize, e: usize, c: &str| Span {
        start: s as u32,
        end: e as u32,
        class: c.into(),
        score: None,
    };
    // n(0) é(1..3) ' '(3) à(4..6) ' '(6) 東(7..10) 京(10..13)
    assert_eq!(spans, &vec![expected(7, 13, "place"), expected(0, 3, "person")]);
    Ok(())
}

#[test]
fn offsets_round_trip_between_code_points_and_bytes_at_every_boundary() {
    for (text, _) in CASES {
        let n = text.chars().count();
        let boundaries: Vec<usize> = text.char_indices().map(|(b, _)| b).chain([text.len()]).collect();
        assert_eq!(boundaries.len(), n + 1);
        for (cp, &byte) in boundaries.iter().enumerate() {
            assert_eq!(to_byte_offset(text, cp), Some(byte), "{text:?} cp {cp}");
            assert_eq!(to_codepoint(text, byte), cp, "{text:?} byte {byte}");
        }
        for past in [n + 1, n + 2, n + 100] {
            assert_eq!(to_byte_offset(text, past), None, "{text:?} cp {past} is past the end");
        }
    }
    assert_eq!(to_byte_offset("", 0), Some(0));
    assert_eq!(to_byte_offset("", 1), None);
    assert_eq!(to_codepoint("", 0), 0);
}

#[test]
fn a_code_point_offset_past_the_end_is_an_error_and_writes_nothing() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", "u", schema(SCHEMA))?;
    let text = "Zoë 😀"; // 5 code points, 9 bytes
    assert_eq!(text.chars().count(), 5);
    // Up to the last code point is fine; one past it is not, even though it is < 9 bytes.
    parse_jsonl_line(&jsonl_record("ok", text, &[(4, 5, "thing")]), &schema(SCHEMA))?;
    for (start, end) in [(4, 6), (6, 7), (0, 10)] {
        let line = jsonl_record("bad", text, &[(start, end, "thing")]);
        match parse_jsonl_line(&line, &schema(SCHEMA)) {
            Err(Error::InvalidAnswer { asset, job, class, .. }) => {
                assert_eq!(
                    (asset.as_str(), job.as_str(), class.as_deref()),
                    ("bad", "entities", Some("thing"))
                )
            }
            other => panic!("{start}..{end}: expected InvalidAnswer, got {other:?}"),
        }
        let before = observe(&db);
        let opts = ImportOptions::new(Format::Jsonl);
        match db.import_reader("admin", "u", Cursor::new(line), "bad.jsonl", &opts, |_| {}) {
            Err(Error::Import {
                line: 1, cause: source, ..
            }) => {
                assert!(matches!(*source, Error::InvalidAnswer { .. }), "{source:?}")
            }
            other => panic!("{start}..{end}: expected Error::Import at line 1, got {other:?}"),
        }
        assert_eq!(observe(&db), before);
    }
    Ok(())
}

#[test]
fn conll_tokens_with_multibyte_characters_get_byte_spans() -> TestResult {
    let (_dir, db) = temp_db();
    db.create_project("admin", "u", schema(SCHEMA))?;
    let input =
        "Zoë\tB-person\nflew\tO\nto\tO\nSão\tB-place\nPaulo\tI-place\n🇧🇷\tB-thing\n\n寿司\tB-food\n美味しい\tO\n";
    let report = db.import_reader(
        "admin",
        "u",
        Cursor::new(input),
        "u.conll",
        &ImportOptions::new(Format::Conll),
        |_| {},
    )?;
    assert_eq!(report.imported, 2);
    let expect = [
        (
            "u.conll:1",
            "Zoë flew to São Paulo 🇧🇷",
            vec![("Zoë", "person"), ("São Paulo", "place"), ("🇧🇷", "thing")],
        ),
        ("u.conll:2", "寿司 美味しい", vec![("寿司", "food")]),
    ];
    for (ext, text, entities) in expect {
        let asset = db.asset_by_external_id("u", ext)?;
        assert_eq!(asset.content.text(), Some(text));
        let Answer::Spans(spans) = &db.history(asset.id)?[0].answers["entities"] else {
            panic!("not spans");
        };
        let got: Vec<(&str, &str)> = spans
            .iter()
            .map(|s| (&text[s.start as usize..s.end as usize], s.class.as_str()))
            .collect();
        assert_eq!(got, entities, "{ext}");
    }
    Ok(())
}

#[test]
fn a_conll_token_with_a_unicode_space_is_never_silently_truncated() -> TestResult {
    // WNUT-17 is TOKEN TAB TAG, and its tokens "may contain any Unicode": a no-break space
    // (U+00A0) or an ideographic space (U+3000) inside a token must be kept or refused,
    // never dropped with what follows it.
    for token in ["10\u{a0}kg", "東京\u{3000}タワー"] {
        let (_dir, db) = temp_db();
        db.create_project("admin", "u", schema(SCHEMA))?;
        let input = format!("{token}\tB-thing\nrice\tO\n");
        let opts = ImportOptions::new(Format::Conll);
        match db.import_reader("admin", "u", Cursor::new(input), "n.conll", &opts, |_| {}) {
            Err(Error::Import { line: 1, .. }) => {}
            Err(other) => panic!("{token:?}: unexpected error {other:?}"),
            Ok(_) => {
                let asset = db.asset_by_external_id("u", "n.conll:1")?;
                let text = asset.content.text().unwrap_or_default().to_string();
                assert_eq!(text, format!("{token} rice"), "{token:?}: the token lost characters");
                let Answer::Spans(spans) = &db.history(asset.id)?[0].answers["entities"] else {
                    panic!("not spans");
                };
                assert_eq!(&text[spans[0].start as usize..spans[0].end as usize], token);
            }
        }
    }
    Ok(())
}
