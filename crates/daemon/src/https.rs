//! HTTPS on the public listener (docs/design/operator.md, slice 1): the certificate named by
//! `--tls-cert/--tls-key` or the settings' `tls`, served by [`obol_gateway::tls`] and re-read
//! when its files change; and the optional plain-HTTP listener that redirects to HTTPS.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use obol_config::stack::TlsSetting;
use obol_gateway::tls::{Tls, TlsFiles};
use tokio::net::TcpListener;

use crate::DaemonError;

/// How often the certificate files are checked for a renewal.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The TLS of the public listener, when configured (`options` before `settings`); refused at
/// start when its files do not load.
pub(crate) fn load(
    options: Option<&TlsSetting>,
    settings: Option<&TlsSetting>,
) -> Result<Option<(Tls, TlsSetting)>, DaemonError> {
    let Some(setting) = options.or(settings) else {
        return Ok(None);
    };
    let tls = Tls::from_files(TlsFiles {
        cert: setting.cert_file.clone(),
        key: setting.key_file.clone(),
    })
    .map_err(|e| DaemonError::Start(format!("TLS: {e}")))?;
    Ok(Some((tls, setting.clone())))
}

/// Serves `app` on `listener`: over HTTPS with `tls` (watching its files while it runs), else
/// plain HTTP.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return obol_gateway::server::serve(listener, app, shutdown).await;
    };
    let watching = tls.watch(RELOAD_EVERY);
    let served = obol_gateway::tls::serve_tls(listener, &tls, app, shutdown).await;
    watching.abort();
    served
}

/// A router answering every request with a permanent redirect to the same path under
/// `public_url` (the HTTPS public URL).
pub(crate) fn redirect(public_url: &str) -> Router {
    let base = public_url.trim_end_matches('/').to_owned();
    Router::new().fallback(move |uri: Uri| {
        let base = base.clone();
        async move { to_https(&base, &uri) }
    })
}

fn to_https(base: &str, uri: &Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match HeaderValue::from_str(&format!("{base}{path}")) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_sent_to_the_same_path_over_https() {
        let uri: Uri = "/services/echo/items?q=1".parse().unwrap();
        let response = to_https("https://shop.example", &uri);
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://shop.example/services/echo/items?q=1"
        );
    }
}
