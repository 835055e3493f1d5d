//! Fuzzes the stored-record decoder (codec::decode for every record type, crc-checked): arbitrary bytes must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| labeldb::fuzzing::decode_record(data));
