//! Fuzzes the JSONL importer, line by line, with validation against the fuzzing schema: arbitrary bytes must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| labeldb::fuzzing::parse_jsonl(data));
