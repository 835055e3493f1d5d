//! Replays the fuzzers' inputs without a fuzzer: every seed in `fuzz/seeds/<target>/` and
//! every minimized crash in `tests/fuzz_regressions/<target>/` goes through the same
//! `labeldb::fuzzing` entry point as the fuzz target `<target>` (docs/testing.md,
//! "Fuzzing"). Those entry points must never panic, so any panic fails the test, naming
//! the file.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The regular files of `dir`, sorted; none when it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `entry` on every seed and regression file of `target`; fails listing each file
/// that panicked.
fn replay(target: &str, entry: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = files_in(&root.join("fuzz/seeds").join(target));
    assert!(
        !seeds.is_empty(),
        "no seed files in fuzz/seeds/{target}: the replay would test nothing"
    );
    let regressions = files_in(&root.join("tests/fuzz_regressions").join(target));
    let mut panicked = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| entry(&bytes)));
        if let Err(payload) = outcome {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic payload)");
            panicked.push(format!(
                "{}: {message}",
                path.strip_prefix(root).unwrap_or(path).display()
            ));
        }
    }
    assert!(
        panicked.is_empty(),
        "{} of {} {target} inputs panicked:\n{}",
        panicked.len(),
        seeds.len() + regressions.len(),
        panicked.join("\n")
    );
}

#[test]
fn record_decoder_inputs_never_panic() {
    replay("record_decoder", labeldb::fuzzing::decode_record);
}

#[test]
fn query_parser_inputs_never_panic() {
    replay("query_parser", labeldb::fuzzing::parse_query);
}

#[test]
fn jsonl_importer_inputs_never_panic() {
    replay("jsonl_importer", labeldb::fuzzing::parse_jsonl);
}

#[test]
fn conll_importer_inputs_never_panic() {
    replay("conll_importer", labeldb::fuzzing::parse_conll);
}

#[test]
fn bitmap_decoder_inputs_never_panic() {
    replay("bitmap_decoder", labeldb::fuzzing::decode_bitmap);
}
