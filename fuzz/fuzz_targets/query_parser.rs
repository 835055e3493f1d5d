//! Fuzzes the query language parser and its print/parse round trip: arbitrary bytes must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| labeldb::fuzzing::parse_query(data));
