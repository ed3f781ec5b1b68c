//! A JSON-RPC proxy in front of anvil that loses the answer to the first
//! `eth_sendRawTransaction`: it forwards the transaction (anvil mines it) and answers 502, so the
//! endpoint set fails over and sends the very same bytes to the next endpoint.
//!
//! A bare HTTP/1.1 server on tokio (keep-alive, `Content-Length` bodies: what alloy's client
//! sends), forwarding with alloy's reqwest.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::transports::http::reqwest;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Starts the proxy in front of `upstream`; returns its URL and the count of
/// `eth_sendRawTransaction` requests it saw.
pub(crate) async fn start(upstream: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sends = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sends);
    let http = reqwest::Client::new();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(
                stream,
                upstream.clone(),
                http.clone(),
                Arc::clone(&counter),
            ));
        }
    });
    (url, sends)
}

/// Answers the requests of one connection until the client closes it.
async fn serve(
    stream: TcpStream,
    upstream: String,
    http: reqwest::Client,
    sends: Arc<AtomicUsize>,
) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            line.clear();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.unwrap();
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let first_send = request["method"] == "eth_sendRawTransaction"
            && sends.fetch_add(1, Ordering::SeqCst) == 0;
        let answer = http
            .post(&upstream)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let (status, answer) = if first_send {
            ("502 Bad Gateway", &b"response lost"[..])
        } else {
            ("200 OK", &answer[..])
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        let inner = stream.get_mut();
        if inner.write_all(head.as_bytes()).await.is_err() || inner.write_all(answer).await.is_err()
        {
            return;
        }
    }
}
