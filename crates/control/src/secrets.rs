//! Secrets: values an offer refers to by name (`secretRef {name, key}`) and never holds, such
//! as the seller's API key for a hosted upstream. The store, the admin API and every output
//! carry only the reference; the value lives in its own private file and, once read, in a
//! sensitive header.
//!
//! Embedded mode keeps each secret at `<config>/secrets/<namespace>/<name>.json` (a JSON object
//! of keys to values, 0600 in 0700 directories), the shape of a Kubernetes `Secret`'s data.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::validate::is_dns_label;

/// The largest secret value accepted (a header value; API keys are far shorter).
pub const MAX_SECRET_LEN: usize = 8 * 1024;

/// Why a secret could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A name, key or value breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// The file could not be read or written.
    #[error(transparent)]
    Io(#[from] obol_config::ConfigError),
    /// The file is not a JSON object of strings.
    #[error("secret {path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the value).
        message: String,
    },
    /// Where the secrets are kept could not be read (a Kubernetes API failure), or the secret
    /// has not been read from there yet. The message names the secret, never a value.
    #[error("{0}")]
    Unavailable(String),
}

/// A secret value: printed as `***`, compared and handed out only on purpose.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SecretValue(String);

impl TryFrom<String> for SecretValue {
    type Error = SecretError;

    fn try_from(text: String) -> Result<Self, SecretError> {
        Self::new(&text)
    }
}

impl From<SecretValue> for String {
    fn from(value: SecretValue) -> Self {
        value.0
    }
}

impl SecretValue {
    /// `text` as a secret value: not empty, at most [`MAX_SECRET_LEN`] bytes, printable ASCII
    /// (it is sent as a header); surrounding white space (a key file's newline) is dropped.
    pub fn new(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Invalid("the secret value is empty".into()));
        }
        if text.len() > MAX_SECRET_LEN {
            return Err(SecretError::Invalid(format!(
                "the secret value is longer than {MAX_SECRET_LEN} bytes"
            )));
        }
        if !text
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Err(SecretError::Invalid(
                "the secret value must be printable ASCII on one line".into(),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A secret's data: keys to values.
pub type SecretData = BTreeMap<String, SecretValue>;

/// What may be said about a secret: its name and keys, never its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its keys, sorted.
    pub keys: Vec<String>,
}

/// Where the reconciler reads the secrets offers refer to.
///
/// [`get`](Self::get) is synchronous: the gateway's route table is built from it in one pass.
/// A source that can only read asynchronously (the Kubernetes API) reads in
/// [`refresh`](Self::refresh), which the reconciler awaits before it probes an offer naming
/// the secret, and answers `get` from what it read last.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    /// The value under `key` of secret `namespace/name`; `None` when the secret or the key
    /// does not exist.
    fn get(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<SecretValue>, SecretError>;

    /// Reads secret `namespace/name` again where it is kept, for the next `get`s. Never fails:
    /// what could not be read, `get` reports. By default nothing (the source reads in `get`).
    async fn refresh(&self, _namespace: &str, _name: &str) {}

    /// How to create a missing secret, for the condition's message.
    fn missing_hint(&self) -> String {
        "obol secret set, or sell --upstream-auth-file".to_owned()
    }
}

/// No secrets at all (an embedding without a secrets directory): every reference is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn get(&self, _: &str, _: &str, _: &str) -> Result<Option<SecretValue>, SecretError> {
        Ok(None)
    }
}

/// `true` for a secret key: letters, digits, `-`, `_` and `.` (as a Kubernetes `Secret`'s
/// keys), at most 253 bytes, not `.` or `..`.
pub fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_label(what: &str, value: &str) -> Result<(), SecretError> {
    if is_dns_label(value) {
        Ok(())
    } else {
        Err(SecretError::Invalid(format!(
            "{what} {value:?} must be a DNS label (lower-case letters, digits and '-', at most 63)"
        )))
    }
}

/// Checks secret `namespace/name` before it is written anywhere: DNS labels, at least one key,
/// every key as a Kubernetes Secret's.
///
/// # Errors
///
/// [`SecretError::Invalid`] naming what is wrong (never a value).
pub fn check_secret(namespace: &str, name: &str, data: &SecretData) -> Result<(), SecretError> {
    check_label("namespace", namespace)?;
    check_label("secret name", name)?;
    if data.is_empty() {
        return Err(SecretError::Invalid(
            "a secret needs at least one key".into(),
        ));
    }
    if let Some(key) = data.keys().find(|k| !is_secret_key(k)) {
        return Err(SecretError::Invalid(format!(
            "key {key:?} must be letters, digits, '-', '_' or '.' (at most 253)"
        )));
    }
    Ok(())
}

/// Where secrets are written when the stack's resources live in a cluster (its Secrets):
/// what `obol secret set|list|delete` and `sell --upstream-auth-file` change there. The
/// embedded daemon writes [`FileSecrets`] behind its admin API.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates or replaces secret `namespace/name` with `data` ([`check_secret`] first).
    async fn put(&self, namespace: &str, name: &str, data: &SecretData) -> Result<(), SecretError>;
    /// Deletes secret `namespace/name`; `false` when there was none.
    async fn delete(&self, namespace: &str, name: &str) -> Result<bool, SecretError>;
    /// The secrets of `namespace`, by name, with their keys (never their values).
    async fn list(&self, namespace: &str) -> Result<Vec<SecretInfo>, SecretError>;
}

/// Secrets in private files under one directory.
#[derive(Debug)]
pub struct FileSecrets {
    dir: PathBuf,
}

impl FileSecrets {
    /// Secrets under `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn file(&self, namespace: &str, name: &str) -> Result<PathBuf, SecretError> {
        check_label("namespace", namespace)?;
        check_label("secret name", name)?;
        Ok(self.dir.join(namespace).join(format!("{name}.json")))
    }

    fn read(path: &Path) -> Result<Option<SecretData>, SecretError> {
        let Some(text) = obol_config::fs::read_optional(path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SecretError::Corrupt {
                path: path.to_path_buf(),
                // serde's message can quote the input; only say where it broke.
                message: format!(
                    "not a JSON object of printable strings (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })
    }

    /// Creates or replaces secret `namespace/name` with `data` (at least one key).
    pub fn put(&self, namespace: &str, name: &str, data: &SecretData) -> Result<(), SecretError> {
        let path = self.file(namespace, name)?;
        check_secret(namespace, name, data)?;
        let json = serde_json::to_vec_pretty(data)
            .map_err(|e| SecretError::Invalid(format!("cannot encode the secret: {e}")))?;
        obol_config::fs::write_private(&path, &json)?;
        Ok(())
    }

    /// Deletes secret `namespace/name`; `false` when there was none.
    pub fn delete(&self, namespace: &str, name: &str) -> Result<bool, SecretError> {
        let path = self.file(namespace, name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(SecretError::Io(obol_config::ConfigError::Io {
                action: "cannot delete",
                path,
                source,
            })),
        }
    }

    /// The secrets of `namespace`, by name, with their keys.
    pub fn list(&self, namespace: &str) -> Result<Vec<SecretInfo>, SecretError> {
        check_label("namespace", namespace)?;
        let dir = self.dir.join(namespace);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(SecretError::Io(obol_config::ConfigError::Io {
                    action: "cannot list",
                    path: dir,
                    source,
                }));
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|n| is_dns_label(n))
            else {
                continue;
            };
            if let Some(data) = Self::read(&entry.path())? {
                out.push(SecretInfo {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    keys: data.into_keys().collect(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

impl SecretSource for FileSecrets {
    fn get(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<SecretValue>, SecretError> {
        let path = self.file(namespace, name)?;
        Ok(Self::read(&path)?.and_then(|mut data| data.remove(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> SecretData {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretValue::new(v).unwrap()))
            .collect()
    }

    #[test]
    fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = FileSecrets::new(dir.path().join("secrets"));
        assert_eq!(secrets.get("default", "api", "token").unwrap(), None);
        assert!(secrets.list("default").unwrap().is_empty());

        secrets
            .put(
                "default",
                "api",
                &data(&[("token", "sk-1\n"), ("other", "x")]),
            )
            .unwrap();
        let value = secrets.get("default", "api", "token").unwrap().unwrap();
        assert_eq!(value.expose(), "sk-1");
        assert_eq!(format!("{value:?}"), "***");
        assert_eq!(secrets.get("default", "api", "missing").unwrap(), None);
        assert_eq!(secrets.get("other", "api", "token").unwrap(), None);
        assert_eq!(
            secrets.list("default").unwrap(),
            [SecretInfo {
                namespace: "default".into(),
                name: "api".into(),
                keys: vec!["other".into(), "token".into()],
            }]
        );

        // A put replaces the whole secret.
        secrets
            .put("default", "api", &data(&[("token", "sk-2")]))
            .unwrap();
        assert_eq!(
            secrets
                .get("default", "api", "token")
                .unwrap()
                .unwrap()
                .expose(),
            "sk-2"
        );
        assert_eq!(secrets.get("default", "api", "other").unwrap(), None);

        assert!(secrets.delete("default", "api").unwrap());
        assert!(!secrets.delete("default", "api").unwrap());
        assert_eq!(secrets.get("default", "api", "token").unwrap(), None);
    }

    #[test]
    #[cfg(unix)]
    fn files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = FileSecrets::new(dir.path().join("secrets"));
        secrets.put("default", "api", &data(&[("k", "v")])).unwrap();
        obol_testkit::fs::assert_private(&dir.path().join("secrets/default"), &["api.json"]);
    }

    #[test]
    fn bad_names_keys_values_and_files_are_refused_without_echoing_values() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = FileSecrets::new(dir.path());
        for (namespace, name) in [("default", "../x"), ("Default", "api"), ("default", "")] {
            let error = secrets.get(namespace, name, "k").unwrap_err();
            assert!(error.to_string().contains("DNS label"), "{error}");
        }
        for key in ["", ".", "..", "a/b", "a b"] {
            let mut bad = SecretData::new();
            bad.insert(key.into(), SecretValue::new("v").unwrap());
            assert!(secrets.put("default", "api", &bad).is_err(), "{key:?}");
        }
        assert!(secrets.put("default", "api", &SecretData::new()).is_err());
        for value in ["", " \n", "a\nb", "é", &"x".repeat(MAX_SECRET_LEN + 1)] {
            assert!(SecretValue::new(value).is_err(), "{value:?}");
        }

        std::fs::create_dir_all(dir.path().join("default")).unwrap();
        std::fs::write(
            dir.path().join("default/api.json"),
            r#"{"token": 7, "x": "sk-never-printed"}"#,
        )
        .unwrap();
        let error = secrets.get("default", "api", "token").unwrap_err();
        assert!(error.to_string().contains("not a JSON object"), "{error}");
        assert!(!error.to_string().contains("sk-never"), "{error}");
    }
}
