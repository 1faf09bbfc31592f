//! Responses stream to HTTP/1 clients as the upstream produces them, also when they carry
//! a `Content-Length` (pingora holds those back in its write buffer unless told otherwise).
//!
//! The origin is a raw TCP server that writes a response head, then the body in pieces
//! with pauses, and notes when it sent each piece; the client notes when each arrives.
//! Margins are generous (the machines are small and shared): a piece must arrive long
//! before the origin sends the next one, which a held-back response cannot do.

mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a head or body piece may take from the origin to the client. The pauses
/// between pieces are at least 300 ms, so a piece held until the next one is sent fails.
const ON_TIME: Duration = Duration::from_millis(200);

/// What the slow origin sends after it has read a request head: `head`, then each piece
/// of `body` after its pause.
#[derive(Clone)]
struct Script {
    head: &'static str,
    body: Vec<(Duration, &'static [u8])>,
}

/// When the origin sent the head (index 0) and each body piece.
type Sent = Arc<Mutex<Vec<Instant>>>;

/// A raw TCP origin that plays `script` on every connection.
async fn slow_origin(script: Script) -> (SocketAddr, Sent) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent: Sent = Arc::default();
    let log = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            conn.set_nodelay(true).unwrap();
            let script = script.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                conn.write_all(script.head.as_bytes()).await.unwrap();
                log.lock().unwrap().push(Instant::now());
                for (pause, piece) in script.body {
                    tokio::time::sleep(pause).await;
                    if conn.write_all(piece).await.is_err() {
                        return;
                    }
                    log.lock().unwrap().push(Instant::now());
                }
                // Keep the connection until the gateway is done with it.
                let _ = conn.read(&mut buf).await;
            });
        }
    });
    (addr, sent)
}

fn config(origin: SocketAddr, listen: &str) -> String {
    format!(
        r#"
[gateway]
listen = [{listen}]
admin = "{{admin}}"
threads = 2
access_log = "off"

[services.slow]
instances = ["{origin}"]

[[routes]]
name = "all"
match = {{ path = "/**" }}
service = "slow"
"#
    )
}

/// A plain gateway in front of `origin`, and its URL for `path`.
fn plain_gateway(origin: SocketAddr) -> (Gateway, reqwest::Client, String) {
    let gw = Gateway::start(&config(origin, r#""{listen}""#));
    let url = gw.url("/stream");
    (gw, http1_client(reqwest::Client::builder()), url)
}

/// A gateway with a TLS listener in front of `origin`, and its URL for `path`.
fn tls_gateway(origin: SocketAddr) -> (Gateway, reqwest::Client, String) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(dir.path(), "gw", &["gw.example"]);
    let listen = format!(
        r#"{{ addr = "{{listen}}", tls = {{ certificates = [{{ cert = "{}", key = "{}" }}] }} }}"#,
        cert.cert_path.display(),
        cert.key_path.display()
    );
    let gw = Gateway::builder(&config(origin, &listen)).dir(dir).start();
    let client = http1_client(
        reqwest::Client::builder()
            .add_root_certificate(ca.reqwest_cert())
            .resolve("gw.example", gw.listen),
    );
    let url = format!("https://gw.example:{}/stream", gw.listen.port());
    (gw, client, url)
}

fn http1_client(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends one GET and notes when the head and each body chunk arrive.
async fn fetch(client: &reqwest::Client, url: &str) -> (Instant, Vec<(Instant, Vec<u8>)>) {
    let mut resp = client.get(url).send().await.expect("response head");
    let head = Instant::now();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let mut chunks = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("body chunk") {
        chunks.push((Instant::now(), chunk.to_vec()));
    }
    (head, chunks)
}

/// When each byte of the body arrived.
fn byte_arrivals(chunks: &[(Instant, Vec<u8>)]) -> Vec<Instant> {
    chunks
        .iter()
        .flat_map(|(at, bytes)| bytes.iter().map(move |_| *at))
        .collect()
}

/// Asserts the head and every body byte reached the client within [`ON_TIME`] of the
/// origin sending it. One byte per piece, so byte `i` is piece `i`.
fn assert_on_time(sent: &[Instant], head: Instant, chunks: &[(Instant, Vec<u8>)]) {
    let arrivals = byte_arrivals(chunks);
    assert_eq!(sent.len(), arrivals.len() + 1, "head and one send per byte");
    let late = |sent: Instant, got: Instant| got.saturating_duration_since(sent);
    assert!(
        late(sent[0], head) < ON_TIME,
        "head arrived {:?} after the origin sent it (the body's last byte was sent {:?} after it)",
        late(sent[0], head),
        sent[sent.len() - 1] - sent[0],
    );
    for (i, got) in arrivals.iter().enumerate() {
        assert!(
            late(sent[i + 1], *got) < ON_TIME,
            "body byte {i} arrived {:?} after the origin sent it",
            late(sent[i + 1], *got),
        );
    }
}

/// A head with `Content-Length: 5`, then one byte every 300 ms.
fn drip() -> Script {
    let pause = Duration::from_millis(300);
    Script {
        head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
        body: (0..5).map(|_| (pause, &b"*"[..])).collect(),
    }
}

/// A long poll: the head at once, the (known-length) answer a second later.
fn long_poll() -> Script {
    Script {
        head: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n",
        body: vec![(Duration::from_secs(1), &b"{\"event\":1}"[..])],
    }
}

async fn check_drip(gateway: fn(SocketAddr) -> (Gateway, reqwest::Client, String)) {
    let (origin, sent) = slow_origin(drip()).await;
    let (_gw, client, url) = gateway(origin);
    let (head, chunks) = fetch(&client, &url).await;
    let body: Vec<u8> = chunks.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(body, b"*****");
    let sent = sent.lock().unwrap().clone();
    assert_on_time(&sent, head, &chunks);
}

async fn check_long_poll(gateway: fn(SocketAddr) -> (Gateway, reqwest::Client, String)) {
    let (origin, sent) = slow_origin(long_poll()).await;
    let (_gw, client, url) = gateway(origin);
    let (head, chunks) = fetch(&client, &url).await;
    let sent = sent.lock().unwrap().clone();
    let late = head.saturating_duration_since(sent[0]);
    assert!(
        late < ON_TIME,
        "long-poll head arrived {late:?} after the origin sent it; it must not wait for the body"
    );
    let body: Vec<u8> = chunks.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(body, b"{\"event\":1}");
    let (last, _) = chunks.last().expect("a body");
    assert!(last.saturating_duration_since(sent[1]) < ON_TIME);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_length_body_streams_byte_by_byte() {
    check_drip(plain_gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_length_body_streams_byte_by_byte_over_tls() {
    check_drip(tls_gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_head_arrives_before_its_body() {
    check_long_poll(plain_gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_head_arrives_before_its_body_over_tls() {
    check_long_poll(tls_gateway).await;
}
