//! Files as tests check them.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// The permission bits (`0o777` part) of `path`.
///
/// # Panics
///
/// When `path` cannot be read.
pub fn mode(path: &Path) -> u32 {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o777
}

/// Fails the test unless `dir` is private to its owner (`0700`) and each of `files` in it is
/// readable by its owner alone (`0600`).
///
/// # Panics
///
/// When a mode differs or a path cannot be read.
pub fn assert_private(dir: &Path, files: &[&str]) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for file in files {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}
