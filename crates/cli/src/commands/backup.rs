//! `obol stack backup FILE` and `obol stack restore FILE`.
//!
//! A backup is a plain tar: `obol-backup.json` (the [`Manifest`]) first, then the files under
//! `config/` and `data/` as they sit in the stack's directories. Every SQLite database is an
//! online copy made with SQLite's backup API — by the running daemon for the stores it holds
//! open (the payment guard and sign-in store are locked by it alone), else here — so a backup
//! taken while paid calls are served is a consistent snapshot of each store.
//!
//! Left out: `admin.token` and `siwx-session.key` (secrets regenerated at start), the daemon's
//! state and log; keystores and offer secrets unless `--include-keys`.

use std::fs;
use std::io::{Read, Write as _};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};
use obol_config::fs as private_fs;
use obol_daemon::backup::databases;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::Context;
use super::stack::admin;
use crate::output;

/// The manifest's name, the tar's first entry.
const MANIFEST: &str = "obol-backup.json";

/// The backup format this program writes and the newest it reads.
const FORMAT: u32 = 1;

/// What a backup holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    format: u32,
    obol_version: String,
    created: String,
    #[serde(default)]
    includes_keys: bool,
    #[serde(default)]
    notes: Vec<String>,
    files: Vec<Entry>,
}

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    /// `config/…` or `data/…`.
    path: String,
    /// `resource store`, `payment guard`, …, `settings`, `keystore`.
    kind: String,
    /// A database's `PRAGMA user_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema_version: Option<i64>,
    size: u64,
    sha256: String,
}

/// Removes a directory when dropped (the staging copies).
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A file to put in the tar: where it is read from now, and its entry.
struct Source {
    from: PathBuf,
    entry: Entry,
}

fn sha256_of(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((format!("{:x}", hasher.finalize()), size))
}

fn kind_of_database(paths: &obol_config::Paths, name: &str) -> String {
    databases(paths)
        .into_iter()
        .find(|db| db.path.file_name().is_some_and(|n| n == name))
        .map_or_else(|| "database".to_owned(), |db| db.kind.to_owned())
}

/// The regular files below `dir`, recursively, sorted.
fn files_below(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(found);
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            found.extend(files_below(&entry.path())?);
        } else if kind.is_file() {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

fn relative(base: &Path, path: &Path, prefix: &str) -> String {
    let rest = path.strip_prefix(base).unwrap_or(path);
    format!("{prefix}/{}", rest.to_string_lossy())
}

/// `obol stack backup FILE [--include-keys]`.
pub(crate) async fn backup(
    ctx: &Context,
    file: &Path,
    include_keys: bool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let paths = &ctx.paths;
    let progress = |line: &str| {
        if !ctx.json {
            output::note(line);
        }
    };
    if !paths.stack_file().exists() && !paths.data_dir.exists() {
        bail!(
            "there is no stack to back up in {} (no stack.json, no data)",
            paths.config_dir.display()
        );
    }
    private_fs::create_private_dir(&paths.state_dir)?;
    let staging = Staging(
        tempfile::Builder::new()
            .prefix(".backup.")
            .tempdir_in(&paths.state_dir)
            .context("cannot create a staging directory")?
            .keep(),
    );
    let mut sources = Vec::new();
    let mut notes = Vec::new();
    let mut push =
        |from: PathBuf, path: String, kind: String, schema_version| -> anyhow::Result<()> {
            let (sha256, size) = sha256_of(&from)?;
            sources.push(Source {
                from,
                entry: Entry {
                    path,
                    kind,
                    schema_version,
                    size,
                    sha256,
                },
            });
            Ok(())
        };

    // The databases the running daemon holds open: copied by it.
    let mut copied = std::collections::BTreeSet::new();
    let mut daemon_dir = None;
    if let Some((_, client)) = admin(ctx)? {
        let snapshot = client
            .backup()
            .await
            .context("the running daemon could not copy its databases")?;
        if !snapshot.dir.starts_with(&paths.state_dir) {
            bail!(
                "the daemon copied its databases to {}, outside the state directory",
                snapshot.dir.display()
            );
        }
        let dir = Staging(snapshot.dir.clone());
        for file in &snapshot.files {
            let kind = kind_of_database(paths, &file.file);
            progress(&format!(
                "copied the {kind} ({}, schema {}) from the running stack",
                file.file, file.schema_version
            ));
            push(
                dir.0.join(&file.file),
                format!("data/{}", file.file),
                kind,
                Some(file.schema_version),
            )?;
            copied.insert(file.file.clone());
        }
        notes.extend(snapshot.notes);
        daemon_dir = Some(dir);
    }
    // Every other database in the data directory: copied here.
    for path in files_below(&paths.data_dir)? {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if !name.ends_with(".sqlite") || path.parent() != Some(paths.data_dir.as_path()) {
            continue;
        }
        if copied.contains(&name) {
            continue;
        }
        let dest = staging.0.join(&name);
        let db = rusqlite::Connection::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        let version = obol_sqlite::backup(&db, &dest)
            .with_context(|| format!("cannot copy {}", path.display()))?;
        drop(db);
        let kind = kind_of_database(paths, &name);
        progress(&format!("copied the {kind} ({name}, schema {version})"));
        push(dest, format!("data/{name}"), kind, Some(version))?;
    }
    if payment_store_is_postgres(ctx)? && !notes.iter().any(|n| n.contains("PostgreSQL")) {
        notes.push(
            "the payment guard is on PostgreSQL: its database is not included; back it up with \
             pg_dump"
                .to_owned(),
        );
    }
    // Settings.
    for (from, kind) in [
        (paths.stack_file(), "settings"),
        (paths.networks_file(), "networks"),
        (paths.tokens_file(), "tokens"),
    ] {
        if from.is_file() {
            let path = relative(&paths.config_dir, &from, "config");
            push(from, path, kind.to_owned(), None)?;
        }
    }
    let keystores = files_below(&paths.wallets_dir())?;
    let secrets = files_below(&paths.secrets_dir())?;
    if include_keys {
        for from in keystores {
            let path = relative(&paths.config_dir, &from, "config");
            push(from, path, "keystore".to_owned(), None)?;
        }
        for from in secrets {
            let path = relative(&paths.config_dir, &from, "config");
            push(from, path, "secret".to_owned(), None)?;
        }
    } else if !keystores.is_empty() || !secrets.is_empty() {
        notes.push(format!(
            "{} keystore(s) and {} offer secret(s) not included (--include-keys includes them)",
            keystores.len(),
            secrets.len()
        ));
    }

    let manifest = Manifest {
        format: FORMAT,
        obol_version: env!("CARGO_PKG_VERSION").to_owned(),
        created: obol_config::time::now_rfc3339(),
        includes_keys: include_keys,
        notes: notes.clone(),
        files: sources.iter().map(|s| s.entry.clone()).collect(),
    };
    let bytes = write_tar(file, &manifest, &sources)?;
    drop(daemon_dir);
    drop(staging);
    let elapsed = started.elapsed().as_millis();
    if ctx.json {
        output::json(&json!({"status": "written", "file": file, "bytes": bytes,
            "elapsedMs": elapsed, "manifest": manifest}))?;
    } else {
        println!(
            "backup written: {} ({} files, {} KiB, {elapsed} ms)",
            file.display(),
            manifest.files.len(),
            bytes.div_ceil(1024)
        );
        for note in &notes {
            println!("  note: {note}");
        }
        println!("  not included: admin.token and siwx-session.key (regenerated at start)");
    }
    Ok(ExitCode::SUCCESS)
}

fn payment_store_is_postgres(ctx: &Context) -> anyhow::Result<bool> {
    let setting = obol_config::stack::StackFile::load(&ctx.paths.stack_file())?.payment_store;
    let url = std::env::var(obol_config::env::PAYMENT_STORE)
        .ok()
        .filter(|v| !v.is_empty())
        .or(setting);
    Ok(url.is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://")))
}

/// Writes the tar to a temporary file beside `file` (0600), then renames it over `file`.
fn write_tar(file: &Path, manifest: &Manifest, sources: &[Source]) -> anyhow::Result<u64> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = file
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let mut tar = tar::Builder::new(tmp);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = |size: u64| {
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        header
    };
    let json = serde_json::to_vec_pretty(manifest)?;
    tar.append_data(&mut header(json.len() as u64), MANIFEST, json.as_slice())?;
    for source in sources {
        let reader = fs::File::open(&source.from)
            .with_context(|| format!("cannot read {}", source.from.display()))?;
        tar.append_data(&mut header(source.entry.size), &source.entry.path, reader)?;
    }
    let tmp = tar.into_inner()?;
    tmp.as_file().sync_all()?;
    let bytes = tmp.as_file().metadata()?.len();
    tmp.persist(file)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(bytes)
}

/// Where an entry of a backup goes: `config/…` under the config directory, `data/…` under the
/// data directory; anything else (absolute, `..`, another top directory) is refused.
fn target(paths: &obol_config::Paths, path: &str) -> anyhow::Result<PathBuf> {
    let mut parts = Path::new(path).components();
    let base = match parts.next() {
        Some(Component::Normal(top)) if top == "config" => &paths.config_dir,
        Some(Component::Normal(top)) if top == "data" => &paths.data_dir,
        _ => bail!("the backup holds an unexpected path {path:?}"),
    };
    let rest = parts.as_path();
    if rest.as_os_str().is_empty() || !rest.components().all(|c| matches!(c, Component::Normal(_)))
    {
        bail!("the backup holds an unexpected path {path:?}");
    }
    Ok(base.join(rest))
}

/// Checks the manifest against what this program reads: the format, and each database's
/// schema version against the version this program writes (an older one is migrated at start).
fn check_versions(paths: &obol_config::Paths, manifest: &Manifest) -> anyhow::Result<()> {
    let this = env!("CARGO_PKG_VERSION");
    if manifest.format > FORMAT {
        bail!(
            "this backup's format is {} (written by obol {}); this obol ({this}) reads up to \
             format {FORMAT}: upgrade obol",
            manifest.format,
            manifest.obol_version
        );
    }
    let known = databases(paths);
    for entry in &manifest.files {
        let (Some(found), Some(name)) = (entry.schema_version, entry.path.strip_prefix("data/"))
        else {
            continue;
        };
        if let Some(db) = known
            .iter()
            .find(|db| db.path.file_name().is_some_and(|n| n == name))
            && found > db.schema_version
        {
            bail!(
                "the backup's {} ({}) has schema version {found} (written by obol {}); this obol \
                 ({this}) knows up to version {}: upgrade obol",
                db.kind,
                entry.path,
                manifest.obol_version,
                db.schema_version
            );
        }
    }
    Ok(())
}

/// A file read from the tar into a temporary file beside its target.
struct Restored {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
    database: bool,
}

/// `obol stack restore FILE [--force]`.
pub(crate) fn restore(ctx: &Context, file: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let paths = &ctx.paths;
    if admin(ctx)?.is_some() {
        bail!("the stack is running; stop it first: obol stack down");
    }
    let reader = fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive
        .entries()
        .with_context(|| format!("{} is not a tar file", file.display()))?;
    let not_a_backup = || {
        anyhow::anyhow!(
            "{} is not an obol backup (no {MANIFEST} first)",
            file.display()
        )
    };
    let mut first = entries.next().ok_or_else(not_a_backup)??;
    if first.path()?.as_ref() != Path::new(MANIFEST) || first.size() > 1 << 20 {
        return Err(not_a_backup());
    }
    let mut text = String::new();
    first.read_to_string(&mut text)?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: the manifest cannot be read", file.display()))?;
    check_versions(paths, &manifest)?;

    let mut existing: Vec<String> = manifest
        .files
        .iter()
        .filter_map(|e| {
            target(paths, &e.path)
                .ok()
                .filter(|t| t.exists())
                .map(|_| e.path.clone())
        })
        .collect();
    for db in databases(paths) {
        if db.path.exists() {
            let path = relative(&paths.data_dir, &db.path, "data");
            if !existing.contains(&path) {
                existing.push(path);
            }
        }
    }
    if !existing.is_empty() && !force {
        bail!(
            "this stack already has state ({}); pass --force to replace it",
            existing.join(", ")
        );
    }

    let mut restored = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for entry in entries {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(listed) = manifest.files.iter().find(|e| e.path == path) else {
            bail!("the backup holds {path:?}, which its manifest does not list");
        };
        if !entry.header().entry_type().is_file() || !seen.insert(path.clone()) {
            bail!("the backup's {path:?} is not one regular file");
        }
        let target = target(paths, &path)?;
        let parent = target.parent().unwrap_or(Path::new("."));
        private_fs::create_private_dir(parent)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".restore.")
            .suffix(".tmp")
            .tempfile_in(parent)
            .with_context(|| format!("cannot write in {}", parent.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 64 << 10];
        loop {
            let n = entry.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            tmp.write_all(&buffer[..n])?;
        }
        if format!("{:x}", hasher.finalize()) != listed.sha256 {
            bail!(
                "{path}: its sha256 does not match the manifest (the backup is damaged or was \
                 altered); nothing was restored"
            );
        }
        tmp.as_file().sync_all()?;
        let database = listed.schema_version.is_some();
        if let Some(version) = listed.schema_version {
            let found = obol_sqlite::schema_version(tmp.path())
                .with_context(|| format!("{path}: not an SQLite database"))?;
            if found != version {
                bail!("{path}: schema version {found}, the manifest says {version}");
            }
        }
        restored.push(Restored {
            tmp,
            target,
            database,
        });
    }
    if let Some(missing) = manifest.files.iter().find(|e| !seen.contains(&e.path)) {
        bail!(
            "the backup lacks {}, which its manifest lists",
            missing.path
        );
    }

    // Everything read and checked: put it in place.
    for file in restored {
        if file.database {
            remove_side_files(&file.target)?;
        }
        file.tmp
            .persist(&file.target)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", file.target.display()))?;
    }
    let mut removed = Vec::new();
    for db in databases(paths) {
        let path = relative(&paths.data_dir, &db.path, "data");
        if db.path.exists() && !seen.contains(&path) {
            fs::remove_file(&db.path)
                .with_context(|| format!("cannot remove {}", db.path.display()))?;
            remove_side_files(&db.path)?;
            removed.push(path);
        }
    }
    if ctx.json {
        output::json(
            &json!({"status": "restored", "file": file, "created": manifest.created,
            "obolVersion": manifest.obol_version, "files": manifest.files, "removed": removed,
            "notes": manifest.notes}),
        )?;
    } else {
        println!(
            "restored {} files from {} (taken {} by obol {})",
            manifest.files.len(),
            file.display(),
            manifest.created,
            manifest.obol_version
        );
        for path in &removed {
            println!("  removed {path} (not in the backup)");
        }
        for note in &manifest.notes {
            println!("  note: {note}");
        }
        println!("  start it with `obol stack up` (older schemas are migrated at start)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes a database's `-wal`, `-shm` and `-journal` files: left beside a restored copy, a
/// stale log would be replayed into it.
fn remove_side_files(path: &Path) -> anyhow::Result<()> {
    for suffix in private_fs::SQLITE_SIDE_FILES {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match fs::remove_file(&side) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("cannot remove {}", Path::new(&side).display()));
            }
            _ => {}
        }
    }
    Ok(())
}
