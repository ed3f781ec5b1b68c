//! A real PostgreSQL server for tests, from the machine's own installation (Debian's
//! `postgresql` package; `scripts/install-tools` installs it and exports `OBOL_PG_BIN`).
//!
//! [`PgServer::start`] runs `initdb` into a temporary directory and `pg_ctl start` on a free
//! loopback port (trust authentication, user `obol`, no fsync: a test server); the server is
//! stopped (`pg_ctl stop -m immediate`) and its files removed when the value is dropped. As
//! root (CI containers), PostgreSQL refuses to run, so every command runs as the `postgres`
//! user the package creates, which owns the data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The server's superuser and database.
pub const USER: &str = "obol";

/// A running test server.
#[derive(Debug)]
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
}

impl PgServer {
    /// Starts a server, or `None` when PostgreSQL is not installed (said on stderr) outside CI.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is missing under CI, or is installed and does not start.
    pub fn start() -> Option<Self> {
        let Some(bin) = binaries() else {
            let why = "PostgreSQL is not installed: run scripts/install-tools (Debian's \
                       postgresql package) or set OBOL_PG_BIN to its bin directory";
            assert!(!crate::in_ci(), "{why}");
            eprintln!("skipped: {why}");
            return None;
        };
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("obol-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temporary directory: {e}"));
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown the data directory to postgres: {e}"));
        }
        let mut server = Self {
            dir,
            bin,
            as_postgres,
            port: 0,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        server.port = crate::http::free_port();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c max_connections=100",
            server.port,
            server.dir.path().display()
        );
        let log = server.dir.path().join("server.log");
        server.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                &data,
                "-w",
                "-t",
                "60",
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
            ],
        );
        Some(server)
    }

    /// The connection URL of database `name` (created by [`PgServer::database`]; `postgres`
    /// always exists).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", USER, name],
        );
        self.url(name)
    }

    /// Runs `sql` with `psql` on database `name`; its unaligned, tuples-only output.
    pub fn query(&self, name: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", USER, "-d", name];
        let output = self.run("psql", &[&args[..], &["-tAc", sql]].concat());
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The server's main process (the postmaster, whose children are the backends), from its
    /// `postmaster.pid`; `None` when that cannot be read.
    pub fn pid(&self) -> Option<u32> {
        let file = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        file.lines().next()?.trim().parse().ok()
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs PostgreSQL's `program` (as the `postgres` user when we are root); panics with its
    /// output when it fails.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = command
            .args(["stop", "-D", &data, "-m", "immediate", "-w"])
            .output();
    }
}

/// PostgreSQL's bin directory: `$OBOL_PG_BIN`, the directory of `pg_ctl` on the PATH, or the
/// newest `/usr/lib/postgresql/<major>/bin`.
fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("OBOL_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_initdb(&dir) {
                // A symlink farm (/usr/local/bin): PostgreSQL finds its files from the real path.
                return std::fs::canonicalize(dir.join("pg_ctl"))
                    .ok()
                    .and_then(|real| real.parent().map(Path::to_path_buf))
                    .or(Some(dir));
            }
        }
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_initdb(bin))
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The `postgres` user's uid and gid (`id -u postgres`, `id -g postgres`).
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap_or_else(|e| panic!("id {flag} postgres: {e}"));
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no postgres user: install Debian's postgresql package"))
    };
    (id("-u"), id("-g"))
}

/// A free loopback port (bound, read, released).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_answers_and_stops() {
        let Some(server) = PgServer::start() else {
            return;
        };
        let url = server.database("probe");
        assert!(url.ends_with("/probe"), "{url}");
        assert_eq!(server.query("probe", "SELECT 40 + 2"), "42");
        assert!(
            server.pid().is_some_and(|pid| pid > 1),
            "the postmaster's pid"
        );
        let data = PathBuf::from(server.data());
        drop(server);
        assert!(!data.exists(), "the files go with the server");
    }
}
