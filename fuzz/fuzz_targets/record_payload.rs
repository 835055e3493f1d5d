//! Fuzzes the record decoder past its checksum: the input is `version byte ‖ payload`, and
//! the target appends the crc32 that `decode_record` checks, so every input reaches the
//! bincode decoding of each record type (and `Indexes::from_image`). `record_decoder`
//! fuzzes the same function on raw bytes, where libFuzzer must guess the crc itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut record = data.to_vec();
    record.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
    labeldb::fuzzing::decode_record(&record);
});
