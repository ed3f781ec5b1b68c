//! Private files: directories 0700, files 0600, written atomically (temp file, fsync, rename).

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

/// Writes `bytes` to `path` atomically with mode 0600, creating the parent directory 0700.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    create_private_dir(parent)?;
    let file_name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io("cannot write", path))
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
    #[cfg(unix)]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/secret.json");
        write_private(&path, b"{}").unwrap();
        write_private(&path, b"{\"x\":1}").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"x\":1}");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        assert_eq!(read_optional(&dir.path().join("missing")).unwrap(), None);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }
}
