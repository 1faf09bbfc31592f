mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).expect("read handshake response");
        assert!(
            n > 0,
            "connection closed during handshake: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).to_string()
}

/// A gateway with a `/ws/**` route to a WebSocket echo origin, with this upstream `read`.
fn ws_gateway(read: &str) -> (Gateway, Origin) {
    let ws = Origin::builder("ws")
        .fallback(Handler::websocket_echo())
        .start();
    let cfg = ConfigBuilder::new()
        .service("ws", &[ws.addr()])
        .route_with("ws", "/ws/**", "ws", |r| {
            r.set("timeouts", format!("{{ read = {} }}", toml_str(read)));
        })
        .build();
    (Gateway::start(&cfg), ws)
}

/// Sends a WebSocket upgrade request for `path` and returns the response head.
fn upgrade(s: &mut TcpStream, path: &str, key: &str) -> String {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    read_head(s)
}

#[test]
fn websocket_echo_through_gateway() {
    let (gw, ws) = ws_gateway("10s");
    let mut s = TcpStream::connect(gw.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let head = upgrade(&mut s, "/ws/chat", key);
    let status_line = head.lines().next().unwrap_or("");
    assert!(
        status_line.contains(" 101"),
        "expected 101, got head:\n{head}"
    );
    let accept = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| v.trim().to_string())
        })
        .expect("Sec-WebSocket-Accept header");
    assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );

    // text frame
    s.write_all(&ws_frame(0x81, b"hello ficus", Some([1, 2, 3, 4])))
        .unwrap();
    let (b0, payload) = ws_read_frame(&mut s).expect("echo frame");
    assert_eq!(b0, 0x81);
    assert_eq!(payload, b"hello ficus");

    // larger binary frame (16-bit extended length), then several in a row
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&ws_frame(0x82, &big, Some([9, 8, 7, 6])))
        .unwrap();
    let (b0, payload) = ws_read_frame(&mut s).expect("echo binary frame");
    assert_eq!(b0, 0x82);
    assert_eq!(payload, big);
    for i in 0..20 {
        let msg = format!("msg {i}");
        s.write_all(&ws_frame(0x81, msg.as_bytes(), Some([i, 0, 0, 1])))
            .unwrap();
    }
    for i in 0..20 {
        let (_, payload) = ws_read_frame(&mut s).expect("echo");
        assert_eq!(payload, format!("msg {i}").as_bytes());
    }

    // close handshake
    s.write_all(&ws_frame(0x88, &[0x03, 0xe8], Some([5, 5, 5, 5])))
        .unwrap();
    let (b0, payload) = ws_read_frame(&mut s).expect("close frame");
    assert_eq!(b0 & 0x0f, 0x8);
    assert_eq!(payload, vec![0x03, 0xe8]);

    let seen = ws.last().unwrap();
    assert_eq!(seen.path, "/ws/chat");
    assert_eq!(
        seen.header("upgrade").map(|u| u.to_ascii_lowercase()),
        Some("websocket".into())
    );
    assert_eq!(seen.header("sec-websocket-key"), Some(key));
}

/// A WebSocket whose upstream stays silent for the route's `read` timeout is closed, and
/// that is logged as an idle tunnel: not the client's fault (408) and not an upstream
/// failure counted against the instance.
#[test]
fn idle_websocket_is_closed_without_blaming_anyone() {
    let (gw, _ws) = ws_gateway("500ms");
    let mut s = TcpStream::connect(gw.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = upgrade(&mut s, "/ws/idle", "dGhlIHNhbXBsZSBub25jZQ==");
    assert!(head.lines().next().unwrap_or("").contains(" 101"), "{head}");
    let started = std::time::Instant::now();
    let mut b = [0u8; 64];
    let closed = matches!(s.read(&mut b), Ok(0) | Err(_));
    assert!(closed, "the idle tunnel should be closed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
    let logged = poll_until(Duration::from_secs(3), || {
        let logs = gw.logs();
        logs.contains("upgraded connection idle").then_some(logs)
    });
    assert!(logged.is_some(), "{}", gw.logs());
    let metrics = gw.admin_get("/metrics").unwrap().text();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"ficus_upstream_errors_total{service="ws",kind="read_timeout"} 0"#),
        "an idle tunnel is no upstream failure:\n{metrics}"
    );
}
