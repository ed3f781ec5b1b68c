//! Private files: directories 0700, files 0600, written atomically (temp file, fsync, rename);
//! SQLite databases kept the same way ([`prepare_db_file`]).

use std::fs;
use std::io::Write as _;
use std::path::Path;

use crate::ConfigError;

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ConfigError + 'a {
    move |source| ConfigError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and parents) readable by the owner only.
pub fn create_private_dir(dir: &Path) -> Result<(), ConfigError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(io("cannot create directory", dir))
}

/// Writes `bytes` to `path` atomically with mode 0600, creating the parent directory 0700: a
/// temporary file with a random name in the same directory (no two writers, threads or
/// processes, share one), synced, renamed over `path`, then the directory synced so that the
/// rename survives a crash.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    create_private_dir(parent)?;
    let file_name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let write = || -> std::io::Result<()> {
        // tempfile creates the file 0600 and removes it if anything below fails.
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".tmp")
            .tempfile_in(parent)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        #[cfg(unix)]
        fs::File::open(parent)?.sync_all()?;
        Ok(())
    };
    write().map_err(io("cannot write", path))
}

/// The files SQLite keeps beside a database: the write-ahead log, its shared-memory index and
/// the rollback journal.
pub const SQLITE_SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Makes `path` an SQLite database only its owner can read, whatever the umask; call it before
/// SQLite opens the file.
///
/// The parent directory is created 0700, or tightened to 0700 when it exists with more; the
/// database file is created 0600, or tightened to 0600; side files left by an earlier run
/// ([`SQLITE_SIDE_FILES`]) are tightened to 0600. SQLite creates missing side files with the
/// database file's mode, so they are 0600 too. A parent with the sticky bit (a shared directory
/// such as `/tmp`) is refused: it cannot be made private.
///
/// # Errors
///
/// [`ConfigError::Io`] naming the directory or file that could not be created or tightened.
pub fn prepare_db_file(path: &Path) -> Result<(), ConfigError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_private_dir(parent)?;
    make_private(parent, 0o700)?;
    let mut options = fs::OpenOptions::new();
    // Opened for appending, never truncated: an existing database is kept as it is.
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(io("cannot create", path))?;
    make_private(path, 0o600)?;
    for suffix in SQLITE_SIDE_FILES {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = Path::new(&side);
        if side.exists() {
            make_private(side, 0o600)?;
        }
    }
    Ok(())
}

/// Sets `path`'s permission bits to exactly `mode` unless they already are; refuses a sticky
/// directory (shared by every user, it must not be made private).
#[cfg(unix)]
fn make_private(path: &Path, mode: u32) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = fs::metadata(path).map_err(io("cannot read the permissions of", path))?;
    let current = metadata.permissions().mode();
    if metadata.is_dir() && current & 0o1000 != 0 {
        return Err(io(
            "refusing to keep a private database in the shared directory",
            path,
        )(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "its sticky bit says other users share it; use a directory of your own",
        )));
    }
    if current & 0o777 == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io("cannot make private", path))
}

#[cfg(not(unix))]
fn make_private(_path: &Path, _mode: u32) -> Result<(), ConfigError> {
    Ok(())
}

/// Reads a file that may not exist yet.
pub fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("cannot read", path)(e)),
    }
}

/// Reads a JSON settings file; a missing file is `T::default()`.
pub fn load_json<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    what: &'static str,
) -> Result<T, ConfigError> {
    match read_optional(path)? {
        None => Ok(T::default()),
        Some(text) => serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            what,
            message: e.to_string(),
        }),
    }
}

/// Writes a JSON settings file, pretty, 0600, atomically.
pub fn save_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), ConfigError> {
    let mut json =
        serde_json::to_vec_pretty(value).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    json.push(b'\n');
    write_private(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::thread::scope(|scope| {
            for i in 0..16 {
                let path = &path;
                scope.spawn(move || write_private(path, format!("{i}").as_bytes()).unwrap());
            }
        });
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.parse::<u32>().is_ok_and(|n| n < 16), "{text}");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }

    #[test]
    #[cfg(unix)]
    fn files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/secret.json");
        write_private(&path, b"{}").unwrap();
        write_private(&path, b"{\"x\":1}").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"x\":1}");
        obol_testkit::fs::assert_private(&dir.path().join("a/b"), &["secret.json"]);
        assert_eq!(read_optional(&dir.path().join("missing")).unwrap(), None);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Runs `f` with the most permissive umask, then restores the previous one.
    #[cfg(unix)]
    fn with_open_umask<T>(f: impl FnOnce() -> T) -> T {
        use rustix::process::umask;
        let previous = umask(rustix::fs::Mode::empty());
        let result = f();
        umask(previous);
        result
    }

    #[test]
    #[cfg(unix)]
    fn sqlite_databases_and_their_side_files_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/pool.sqlite");
        with_open_umask(|| {
            prepare_db_file(&path).unwrap();
            let db = rusqlite::Connection::open(&path).unwrap();
            db.pragma_update(None, "journal_mode", "WAL").unwrap();
            db.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
                .unwrap();
            for file in ["pool.sqlite", "pool.sqlite-wal", "pool.sqlite-shm"] {
                assert_eq!(mode(&dir.path().join("a/b").join(file)), 0o600, "{file}");
            }
        });
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    }

    #[test]
    #[cfg(unix)]
    fn an_existing_database_is_tightened_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        set_mode(&data, 0o755);
        let path = data.join("store.sqlite");
        for (file, text) in [("store.sqlite", "db"), ("store.sqlite-wal", "wal")] {
            fs::write(data.join(file), text).unwrap();
            set_mode(&data.join(file), 0o644);
        }
        prepare_db_file(&path).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&data.join("store.sqlite-wal")), 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), "db", "contents kept");
        assert!(
            !data.join("store.sqlite-shm").exists(),
            "missing side files are left to SQLite"
        );
    }

    #[test]
    #[cfg(unix)]
    fn a_shared_directory_is_refused_not_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        set_mode(&shared, 0o1777);
        let err = prepare_db_file(&shared.join("store.sqlite")).unwrap_err();
        assert!(err.to_string().contains("shared directory"), "{err}");
        assert_eq!(mode(&shared), 0o1777);
    }
}
