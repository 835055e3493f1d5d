//! Entry points for the fuzz targets in `fuzz/` (and their regression replay in tests).
//! Each takes arbitrary bytes and must never panic. Not part of the stable API.

use crate::index::columns::{Block, Choice, Facts};
use crate::index::Image;
use crate::model::asset::Asset;
use crate::model::event::Event;
use crate::model::label::Label;
use crate::model::project::{Project, Schema};
use crate::store::run::Run;
use crate::store::{codec, Counters};

/// A schema with one job of each kind, for the importer targets.
pub fn schema() -> Schema {
    Schema::from_json(
        r#"{"jobs": [
            {"name": "category", "kind": "classification", "classes": ["order", "complaint", "other"]},
            {"name": "tags", "kind": "multi-classification", "classes": ["a", "b"]},
            {"name": "entities", "kind": "spans", "classes": ["PRODUCT", "QUANTITY", "person", "location"]},
            {"name": "objects", "kind": "boxes", "classes": ["RBC", "WBC"]}
        ]}"#,
    )
    .expect("the built-in fuzzing schema is valid")
}

/// Decodes `bytes` as every stored record type; whatever decodes re-encodes to bytes
/// that decode to the same value. (Bytes need not be canonical: bincode accepts an
/// overlong varint or a repeated map key with a valid crc, and decodes them to a value
/// whose encoding differs. Only crafted input has such bytes: damage fails the crc.)
pub fn decode_record(bytes: &[u8]) {
    fn one<T: serde::Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) {
        if let Ok(v) = codec::decode::<T>(b"\x03fuzz", bytes) {
            // Compared as bytes, so that a NaN float still compares equal to itself.
            let canonical = codec::encode(&v);
            let again: T = codec::decode(b"\x03fuzz", &canonical).expect("an encoded record decodes");
            assert_eq!(
                codec::encode(&again),
                canonical,
                "a record must survive encode and decode"
            );
        }
    }
    one::<Asset>(bytes);
    one::<Label>(bytes);
    one::<Event>(bytes);
    one::<Project>(bytes);
    one::<Counters>(bytes);
    one::<Block<Facts>>(bytes);
    one::<Block<Choice>>(bytes);
    one::<Run>(bytes);
    // A run as reads go: borrowed, then each entry's asset and labels.
    if let Ok(run) = codec::decode::<Run<&[u8]>>(b"\x13fuzz", bytes) {
        let _ = run.shape_problem();
        for e in run.entries(b"\x13fuzz").flatten().flatten() {
            let _ = e.asset(b"\x13fuzz");
            let _ = e.labels(b"\x13fuzz");
        }
    }
    // As `create_snapshot` reads them: borrowing from the bytes.
    let _ = codec::decode::<Block<Facts<&str>>>(b"\x11fuzz", bytes);
    let _ = codec::decode::<Block<Choice<&[u8]>>>(b"\x12fuzz", bytes);
    let _ = codec::decode::<Image>(b"\x0afuzz", bytes).map(crate::index::Indexes::from_image);
}

/// Decodes `bytes` as a portable roaring bitmap, as the index checkpoint and snapshot
/// member records are read (CRoaring validates the bytes: this is C code fed untrusted
/// input). Whatever decodes must re-encode to a bitmap equal to it, and iterate to as
/// many ids as its cardinality.
pub fn decode_bitmap(bytes: &[u8]) {
    if let Some(bm) = crate::index::from_bytes(bytes) {
        let again = crate::index::from_bytes(&crate::index::to_bytes(&bm)).expect("an encoded bitmap decodes");
        assert_eq!(again, bm, "a bitmap must survive encode and decode");
        assert_eq!(bm.iter().count() as u64, bm.cardinality());
    }
}

/// Parses `bytes` as a JSONL file against [`schema`], validating each record.
pub fn parse_jsonl(bytes: &[u8]) {
    let schema = schema();
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(text) = std::str::from_utf8(line) {
            if let Ok(asset) = crate::formats::parse_jsonl_line(text, &schema) {
                let _ = crate::model::asset::validate_new_asset(&schema, &asset);
            }
        }
    }
}

/// Parses `bytes` as a CoNLL file, validating each sentence against [`schema`].
pub fn parse_conll(bytes: &[u8]) {
    let schema = schema();
    for record in crate::formats::conll_records(bytes, "fuzz.conll", "entities", "gold") {
        if let Ok((_, Ok(asset))) = record {
            // Spans built from tags are always inside the text and on char boundaries.
            if let Err(e @ crate::model::error::Error::InvalidAnswer { .. }) =
                crate::model::asset::validate_new_asset(&schema, &asset)
            {
                panic!("CoNLL produced an invalid span: {e}");
            }
        }
    }
}

/// Parses a query; one that parses prints back to text that parses to the same filter.
pub fn parse_query(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(f) = crate::query::parse(text) {
        let printed = crate::query::to_query_string(&f);
        let again = crate::query::parse(&printed).expect("a printed filter parses");
        assert_eq!(f, again, "round trip of {printed:?}");
    }
}
