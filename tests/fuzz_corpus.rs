//! The fuzzers' committed seeds, replayed on the stable toolchain in every `cargo test`:
//! each file under `fuzz/corpus/<target>/` goes through the same check its libFuzzer
//! target runs (`fuzz/src/lib.rs`, included here), and none may panic. Inputs that once
//! crashed a parser are kept among the seeds, so this is also their regression test.
//!
//! Seen to fail when broken: with a `panic!` put at the top of `parse_wikimon`, 46 of 97
//! seeds failed, each reported by target and file name (every wikimon_frame seed, and
//! the replay_lines and recentchange seeds that hold wikimon messages).

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
mod checks;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of one target's seed folder, sorted; fails if the folder is missing or empty.
fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the seed corpus of fuzz target {target} is missing: cannot read {}: {e}",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the seed corpus of fuzz target {target} is empty: {} holds no files",
        dir.display()
    );
    files
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[test]
fn no_committed_seed_panics_its_target() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (target, check) in checks::TARGETS {
        for file in seeds(target) {
            let data =
                fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            count += 1;
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| check(&data))) {
                failures.push(format!(
                    "{target}: {} panicked: {}",
                    file.display(),
                    panic_message(payload.as_ref())
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} seeds panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_fuzz_target_has_its_check_here() {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    on_disk.sort();
    let mut checked: Vec<String> = checks::TARGETS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    checked.sort();
    assert_eq!(
        on_disk, checked,
        "fuzz/fuzz_targets/*.rs and the TARGETS of fuzz/src/lib.rs must name the same targets"
    );
}
