//! What the files say: `settings` (stack.json and networks.json parse), `permissions` (private
//! directories 0700, secrets 0600) and `tls` (the certificate's validity).
//!
//! The certificate is read with `rustls-pki-types` (PEM) and `der` (the validity dates out of
//! the DER): both are already in the build, through rustls and the secp256k1 stack, so the
//! check adds no crate; x509-parser would have added nom, asn1-rs, der-parser and
//! oid-registry for two dates.

use std::path::{Path, PathBuf};

use obol_config::stack::StackFile;
use obol_config::{NetworksFile, Paths};

use super::Check;

/// A certificate expiring sooner than this is a warning.
pub(crate) const CERT_WARN_DAYS: u64 = 14;

/// The settings and networks files as read (or why not).
#[derive(Debug)]
pub(crate) struct Local {
    pub(crate) stack_file: PathBuf,
    pub(crate) settings: Option<StackFile>,
    settings_error: Option<String>,
    pub(crate) networks_file: PathBuf,
    pub(crate) networks: Option<NetworksFile>,
    networks_error: Option<String>,
}

impl Local {
    pub(crate) fn load(paths: &Paths) -> Self {
        let stack_file = paths.stack_file();
        let networks_file = paths.networks_file();
        let (settings, settings_error) = if stack_file.exists() {
            match StackFile::load(&stack_file) {
                Ok(settings) => (Some(settings), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, None)
        };
        let (networks, networks_error) = match NetworksFile::load(&networks_file) {
            Ok(networks) => (Some(networks), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Self {
            stack_file,
            settings,
            settings_error,
            networks_file,
            networks,
            networks_error,
        }
    }

    /// `settings`: both files parse, the public URL is valid.
    pub(crate) fn settings_check(&self) -> Check {
        const NAME: &str = "settings";
        if let Some(error) = &self.settings_error {
            return Check::fail(
                NAME,
                error.clone(),
                format!(
                    "correct {} (JSON, known keys only) or write it anew with `obol stack init --force`",
                    self.stack_file.display()
                ),
            );
        }
        if let Some(error) = &self.networks_error {
            return Check::fail(
                NAME,
                error.clone(),
                format!(
                    "correct {} or remove it and add the chains again with `obol network add`",
                    self.networks_file.display()
                ),
            );
        }
        let Some(settings) = &self.settings else {
            return Check::fail(
                NAME,
                format!("no stack settings at {}", self.stack_file.display()),
                "initialise the stack: `obol stack init` (or `obol stack up`)",
            );
        };
        if let Some(url) = &settings.public_url
            && let Err(e) = obol_config::public_url::validate(url)
        {
            return Check::fail(
                NAME,
                format!("publicUrl: {e}"),
                "set an http(s) URL: `obol stack init --force --public-url URL`",
            );
        }
        let chains: Vec<&str> = self
            .networks
            .iter()
            .flat_map(|n| n.chains.keys().map(String::as_str))
            .collect();
        Check::ok(
            NAME,
            format!(
                "stack.json and networks.json parse; chains: {}",
                if chains.is_empty() {
                    "none".to_owned()
                } else {
                    chains.join(", ")
                }
            ),
        )
    }
}

/// The files holding secrets or payments, which only the owner may read: keystores, the admin
/// token, the sign-in key, offer secrets, the databases (and their side files), the settings,
/// the networks file (endpoint URLs may embed API keys) and the TLS key.
fn private_files(paths: &Paths, settings: Option<&StackFile>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut dirs = vec![
        paths.config_dir.clone(),
        paths.data_dir.clone(),
        paths.state_dir.clone(),
        paths.wallets_dir(),
        paths.secrets_dir(),
    ];
    let mut files = vec![
        paths.admin_token_file(),
        paths.siwx_key_file(),
        paths.stack_file(),
        paths.networks_file(),
    ];
    files.extend(entries(&paths.wallets_dir()).into_iter().map(|(p, _)| p));
    for (path, is_dir) in entries(&paths.secrets_dir()) {
        if is_dir {
            files.extend(entries(&path).into_iter().map(|(p, _)| p));
            dirs.push(path);
        } else {
            files.push(path);
        }
    }
    files.extend(
        entries(&paths.data_dir)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.to_string_lossy().contains(".sqlite")),
    );
    if let Some(tls) = settings.and_then(|s| s.tls.as_ref()) {
        files.push(tls.key_file.clone());
    }
    (dirs, files)
}

/// The entries of `dir` (path, is a directory), none when it cannot be read.
fn entries(dir: &Path) -> Vec<(PathBuf, bool)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, bool)> = read
        .filter_map(Result::ok)
        .map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    out.sort();
    out
}

/// `permissions`: the private directories 0700, the files holding secrets 0600 (nothing for
/// the group or others).
#[cfg(unix)]
pub(crate) fn permissions(paths: &Paths, settings: Option<&StackFile>) -> Check {
    use std::os::unix::fs::PermissionsExt as _;
    const NAME: &str = "permissions";
    let (dirs, files) = private_files(paths, settings);
    let open = |path: &Path| {
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
            .filter(|mode| mode & 0o077 != 0)
    };
    let mut shown = Vec::new();
    let (mut bad_dirs, mut bad_files) = (Vec::new(), Vec::new());
    for (paths, bad, want) in [
        (&dirs, &mut bad_dirs, "0700"),
        (&files, &mut bad_files, "0600"),
    ] {
        for path in paths {
            if let Some(mode) = open(path) {
                shown.push(format!("{} is {mode:04o}, not {want}", path.display()));
                bad.push(format!("'{}'", path.display()));
            }
        }
    }
    if shown.is_empty() {
        let checked = dirs.iter().chain(&files).filter(|p| p.exists()).count();
        return Check::ok(
            NAME,
            format!("{checked} private directories and files are the owner's only"),
        );
    }
    let mut fix = Vec::new();
    if !bad_files.is_empty() {
        fix.push(format!("chmod 600 {}", bad_files.join(" ")));
    }
    if !bad_dirs.is_empty() {
        fix.push(format!("chmod 700 {}", bad_dirs.join(" ")));
    }
    Check::fail(NAME, shown.join("; "), fix.join(" && "))
}

#[cfg(not(unix))]
pub(crate) fn permissions(_paths: &Paths, _settings: Option<&StackFile>) -> Check {
    Check::skip("permissions", "file modes are checked on Unix only")
}

/// `tls`: the configured certificate parses, is valid now and for [`CERT_WARN_DAYS`] more.
pub(crate) fn tls(settings: Option<&StackFile>) -> Check {
    const NAME: &str = "tls";
    let Some(tls) = settings.and_then(|s| s.tls.as_ref()) else {
        return Check::skip(
            NAME,
            "no certificate in stack.json: the gateway speaks plain HTTP (TLS ends at a proxy or tunnel in front, if any)",
        );
    };
    let file = tls.cert_file.display();
    let renew = "renew it in place (the gateway re-reads it, no restart), e.g. `certbot renew`";
    let pem = match std::fs::read(&tls.cert_file) {
        Ok(pem) => pem,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot read {file}: {e}"),
                "point stack.json's tls.certFile at the PEM certificate chain",
            );
        }
    };
    let (not_before, not_after) = match leaf_validity(&pem) {
        Ok(validity) => validity,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("{file}: {e}"),
                "give a PEM certificate chain, leaf first",
            );
        }
    };
    let now = obol_config::time::unix_now();
    let date = obol_config::time::rfc3339;
    if now < not_before {
        return Check::fail(
            NAME,
            format!("{file} is not valid before {}", date(not_before)),
            "check this machine's clock, or use a certificate valid now",
        );
    }
    if now >= not_after {
        return Check::fail(
            NAME,
            format!("{file} expired on {}", date(not_after)),
            renew,
        );
    }
    let days = (not_after - now) / 86_400;
    if days < CERT_WARN_DAYS {
        return Check::warn(
            NAME,
            format!("{file} expires on {} (in {days} days)", date(not_after)),
            renew,
        );
    }
    Check::ok(
        NAME,
        format!("{file} valid until {} ({days} days)", date(not_after)),
    )
}

/// The first certificate's `notBefore` and `notAfter` (unix seconds) in a PEM chain.
pub(crate) fn leaf_validity(pem: &[u8]) -> Result<(u64, u64), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let leaf = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or("no certificate in the file")?
        .map_err(|e| format!("not PEM: {e}"))?;
    validity(leaf.as_ref()).map_err(|e| format!("not an X.509 certificate: {e}"))
}

/// Walks `Certificate → tbsCertificate → validity` (RFC 5280 §4.1).
fn validity(certificate: &[u8]) -> der::Result<(u64, u64)> {
    use der::asn1::AnyRef;
    use der::{Decode as _, Reader as _, SliceReader, Tag, TagNumber};
    let mut reader = SliceReader::new(certificate)?;
    reader.sequence(|cert| {
        let times = cert.sequence(|tbs| {
            let version = Tag::ContextSpecific {
                constructed: true,
                number: TagNumber::N0,
            };
            if tbs.peek_tag()? == version {
                AnyRef::decode(tbs)?;
            }
            // serialNumber, signature, issuer
            for _ in 0..3 {
                AnyRef::decode(tbs)?;
            }
            let times = tbs.sequence(|validity| Ok((time(validity)?, time(validity)?)))?;
            tbs.read_slice(tbs.remaining_len())?;
            Ok(times)
        })?;
        cert.read_slice(cert.remaining_len())?;
        Ok(times)
    })
}

/// An X.509 `Time`: UTCTime or GeneralizedTime, as unix seconds.
fn time<'a>(reader: &mut impl der::Reader<'a>) -> der::Result<u64> {
    use der::Decode as _;
    use der::asn1::{GeneralizedTime, UtcTime};
    let since_epoch = if reader.peek_tag()? == der::Tag::UtcTime {
        UtcTime::decode(reader)?.to_unix_duration()
    } else {
        GeneralizedTime::decode(reader)?.to_unix_duration()
    };
    Ok(since_epoch.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_certificates_validity_is_read_from_its_pem() {
        let ca = obol_testkit::tls::TestCa::new();
        let leaf = ca.leaf_valid("stack", (2024, 1, 2), (2049, 12, 31));
        let chain = format!("{}{}", leaf.cert_pem, ca.pem());
        assert_eq!(
            leaf_validity(chain.as_bytes()).unwrap(),
            (1_704_153_600, 2_524_521_600)
        );
        assert_eq!(
            leaf_validity(b"no PEM here").unwrap_err(),
            "no certificate in the file"
        );
        let broken = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
        assert!(
            leaf_validity(broken.as_bytes())
                .unwrap_err()
                .starts_with("not an X.509 certificate"),
        );
    }

    fn with_cert(dir: &Path, from: (i32, u8, u8), until: (i32, u8, u8)) -> StackFile {
        let leaf = obol_testkit::tls::TestCa::new().leaf_valid("stack", from, until);
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, leaf.cert_pem).unwrap();
        StackFile {
            tls: Some(obol_config::stack::TlsSetting {
                cert_file: cert,
                key_file: dir.join("key.pem"),
                redirect_listen: None,
            }),
            ..StackFile::default()
        }
    }

    #[test]
    fn an_expired_certificate_fails_and_one_expiring_soon_warns() {
        let dir = tempfile::tempdir().unwrap();
        let expired = tls(Some(&with_cert(dir.path(), (2020, 1, 1), (2021, 1, 1))));
        assert_eq!(expired.status, super::super::Status::Fail);
        assert!(
            expired.detail.ends_with("expired on 2021-01-01T00:00:00Z"),
            "{expired:?}"
        );
        assert!(expired.fix.unwrap().starts_with("renew it in place"));
        let in_five_days = obol_config::time::rfc3339(obol_config::time::unix_now() + 5 * 86_400);
        let day = |range: std::ops::Range<usize>| in_five_days[range].parse::<u8>().unwrap();
        let year = in_five_days[0..4].parse().unwrap();
        let soon = tls(Some(&with_cert(
            dir.path(),
            (2020, 1, 1),
            (year, day(5..7), day(8..10)),
        )));
        assert_eq!(soon.status, super::super::Status::Warn, "{soon:?}");
        assert!(soon.detail.contains("(in 4 days)"), "{soon:?}");
        let good = tls(Some(&with_cert(dir.path(), (2020, 1, 1), (2049, 1, 1))));
        assert_eq!(good.status, super::super::Status::Ok, "{good:?}");
        assert_eq!(tls(None).status, super::super::Status::Skip);
    }
}
