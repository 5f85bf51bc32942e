//! The recorded streams of `../shared/corpus`, read-only, beside the repository.

/// The full path of a corpus file, failing the test with what is missing if it is not
/// there.
pub fn corpus_path(path: &str) -> String {
    let full = format!("{}/../shared/corpus/{path}", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&full).exists(),
        "missing the shared corpus file {full}: the tests expect ../shared/corpus beside the repository"
    );
    full
}

/// The text of a corpus file, failing the test with what is missing if it cannot be
/// read.
pub fn corpus_text(path: &str) -> String {
    let full = corpus_path(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("cannot read the shared corpus file {full}: {e}"))
}
