//! A per-test scratch directory, removed when the test passes and kept (with its
//! path printed) when it fails, so the recording and logs can be inspected.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process and call: `{prefix}-{pid}-{n}`.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/carillon-tests/{prefix}-{pid}-{n}`.
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir()
            .join("carillon-tests")
            .join(unique_name(prefix));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create test directory {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            // Best effort: a leftover directory in $TMPDIR is harmless.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
