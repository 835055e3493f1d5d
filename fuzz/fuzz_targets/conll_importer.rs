//! Fuzzes the CoNLL/IOB importer, whose spans must always validate: arbitrary bytes must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| labeldb::fuzzing::parse_conll(data));
