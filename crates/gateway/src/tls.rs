//! HTTPS for the public listener (docs/design/operator.md, slice 1).
//!
//! [`Tls::from_files`] reads a PEM certificate chain and its private key; [`Tls::watch`]
//! re-reads them when either file changes (checked every few seconds), so a renewed certificate
//! is served to new connections without a restart and without dropping open ones. A pair that
//! does not load (unreadable, not PEM, key not matching) keeps the previous one in service and
//! is logged once per change.
//!
//! [`serve_tls`] accepts TCP connections and runs each TLS handshake as its own task with a
//! deadline, so a client that never finishes its handshake holds nothing but its own task.
//! Rustls with the workspace's crypto provider (aws-lc-rs); HTTP/1.1 over TLS 1.2 and 1.3.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::Router;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// No PEM certificate in the certificate file.
    #[error("{0}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it")]
    NoCertificate(PathBuf),
    /// No usable PEM private key in the key file.
    #[error("{path}: no usable PEM private key in it ({reason})")]
    NoKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key} is not the key of the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The certificate and key files of the public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What a file looked like when last read: a change of either means read again.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The serving certificate, swapped in place when its files change.
#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// The files' stamps at the last attempt (good or bad), so a bad pair is reported once.
    seen: Mutex<(Stamp, Stamp)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl Reloading {
    fn stamps(&self) -> (Stamp, Stamp) {
        (stamp(&self.files.cert), stamp(&self.files.key))
    }

    /// Reads the files again when they changed; keeps the current pair when they do not load.
    fn refresh(&self) {
        let now = self.stamps();
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match load(&self.files, &self.provider) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "TLS certificate not reloaded; the previous one stays in service");
            }
        }
    }
}

/// Reads and checks a certificate chain and its key.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key_pem = read(&files.key)?;
    let no_key = |reason: String| TlsError::NoKey {
        path: files.key.clone(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| no_key(e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| no_key(e.to_string()))?;
    let certified = CertifiedKey::new(certs, signing);
    if certified.keys_match().is_err() {
        return Err(TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }
    Ok(certified)
}

/// The public listener's TLS: its configuration and the reloading certificate behind it.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
    reloading: Arc<Reloading>,
}

impl Tls {
    /// Loads `files` (refusing a pair that does not load: the listener must start with a
    /// certificate).
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file at fault.
    pub fn from_files(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = load(&files, &provider)?;
        let reloading = Arc::new(Reloading {
            seen: Mutex::new((stamp(&files.cert), stamp(&files.key))),
            files,
            provider: provider.clone(),
            current: ArcSwap::from_pointee(key),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::NoKey {
                path: reloading.files.key.clone(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(reloading.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            reloading,
        })
    }

    /// Re-reads the files every `every` while the returned task runs (abort it to stop).
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let reloading = self.reloading.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let reloading = reloading.clone();
                // File reads and key parsing off the async workers.
                let _ = tokio::task::spawn_blocking(move || reloading.refresh()).await;
            }
        })
    }
}

/// Accepted TLS connections, handshakes done.
struct TlsListener {
    connections: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The acceptor stopped (its listener failed for good): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts on `listener` and hands each connection whose handshake finishes in time to `tx`,
/// until the receiving side is gone.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: tokio::sync::mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Serves `app` over HTTPS on `listener` (see the module docs) until `shutdown` completes.
pub async fn serve_tls(
    listener: TcpListener,
    tls: &Tls,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let (tx, connections) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(tls.config.clone());
    tokio::spawn(accept_tls(listener, acceptor, tx));
    // This listener is the edge and speaks HTTPS: say so to the app (402 `resource` URLs),
    // whatever a client claims.
    let app = app.layer(axum::middleware::map_request(
        |mut request: axum::extract::Request| async move {
            request.headers_mut().insert(
                "x-forwarded-proto",
                axum::http::HeaderValue::from_static("https"),
            );
            request
        },
    ));
    crate::server::serve_on(TlsListener { connections, local }, app, shutdown).await
}
