mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn harness_selftest() {
    selftest();
}

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

#[test]
fn websocket_echo_through_gateway() {
    let ws = Origin::builder("ws").websocket().start();
    let cfg = with_origins(
        &(GATEWAY.to_string()
            + r#"
[services.ws]
instances = ["{origin:ws}"]

[[routes]]
name = "ws"
match = { path = "/ws/**" }
service = "ws"
timeouts = { read = "10s" }
"#),
        &[&ws],
    );
    let gw = Gateway::start(&cfg);
    let mut s = TcpStream::connect(gw.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        s,
        "GET /ws/chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut s);
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
