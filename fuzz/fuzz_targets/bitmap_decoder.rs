//! Fuzzes the decoding of stored roaring bitmaps (index checkpoint, snapshot members):
//! CRoaring must reject malformed bytes, never crash, and what it accepts must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| labeldb::fuzzing::decode_bitmap(data));
