//! HTTP on loopback for tests: servers on free ports, and one-line requests whose failure
//! fails the test.
//!
//! [`spawn`] serves an axum router the way the gateway serves its own (the client's address
//! as `ConnectInfo`, `TCP_NODELAY`), so a test upstream, a test seller and a mock facilitator
//! all start the same way; [`bind`] gives the listener to a crate that serves with its own
//! function. [`get_json`] and [`get_text`] read a `GET`, and [`Fetch`] finishes any request
//! built with reqwest's builder (headers, bearer, body) the same way.

use std::net::SocketAddr;

use axum::Router;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

/// A listener on a free loopback port, and its base URL (`http://127.0.0.1:<port>`).
///
/// # Panics
///
/// When no loopback port can be bound.
pub async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    (listener, url)
}

/// Serves `router` on a free loopback port until the test ends; returns its base URL.
///
/// # Panics
///
/// When no loopback port can be bound.
pub async fn spawn(router: Router) -> String {
    let (listener, url) = bind().await;
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    url
}

/// A loopback port that was free a moment ago (for a process the test starts, which binds
/// it itself).
///
/// # Panics
///
/// When no loopback port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// The body of `GET url`, as JSON.
///
/// # Panics
///
/// When the request fails or the body is not `T`.
pub async fn get_json<T: DeserializeOwned>(url: impl reqwest::IntoUrl) -> T {
    reqwest::Client::new().get(url).fetch_json().await
}

/// The body of `GET url`, as text.
///
/// # Panics
///
/// When the request fails.
pub async fn get_text(url: impl reqwest::IntoUrl) -> String {
    reqwest::Client::new().get(url).fetch_text().await
}

/// Sends a request and reads its body, whatever the status; a transport error or an
/// unreadable body fails the test.
#[allow(async_fn_in_trait, reason = "used in tests, awaited where called")]
pub trait Fetch {
    /// The body as JSON.
    async fn fetch_json<T: DeserializeOwned>(self) -> T;
    /// The body as text.
    async fn fetch_text(self) -> String;
}

impl Fetch for reqwest::RequestBuilder {
    async fn fetch_json<T: DeserializeOwned>(self) -> T {
        let response = self.send().await.expect("an answer");
        response.json().await.expect("a JSON body")
    }

    async fn fetch_text(self) -> String {
        let response = self.send().await.expect("an answer");
        response.text().await.expect("a text body")
    }
}
