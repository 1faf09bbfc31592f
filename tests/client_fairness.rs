//! One client address cannot hold an unbounded number of connections
//! (`max_connections_per_client`, issue 13): one connection over the cap is closed as soon
//! as it is accepted, on plain and TLS listeners alike (before any TLS byte), counted in
//! `ficus_connections_refused_total{reason="client_cap"}`; other addresses still connect,
//! a closed connection makes room again, and a trusted proxy's address is not capped.
//!
//! The per-address rules for requests holding upstream connections (fair share, reserve)
//! are tested with stalled HTTP/2 readers in `tests/h2_stall.rs`.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A TCP connection from the loopback address `from` to `to`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let from: IpAddr = from.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket
        .connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    s
}

/// Sends a keep-alive GET on `s` and reads its answer's head and (short) body.
fn keep_alive_get(s: &mut impl ReadWrite, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: a.example\r\n\r\n");
    // A connection the gateway closed may refuse the write: no answer then.
    if s.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // The echo origin's answer fits in a few reads; stop at the end of its JSON body.
    while !out.ends_with(b"}") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// How a connection that sends nothing ends: `Some(elapsed)` when the gateway closed it
/// (EOF or reset) within `within`.
fn closed_by_gateway(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    s.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => Some(started.elapsed()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(started.elapsed()),
        _ => None,
    }
}

const CLIENT: &str = "127.0.0.3";
const OTHER: &str = "127.0.0.4";

/// With `max_connections_per_client = 3`: two plain and one TLS connection from one
/// address are served; a fourth (plain) and a fifth (TLS) are closed at once, long before
/// the head and handshake deadlines, and counted; another address is served meanwhile;
/// once one of the three closes, the address connects again.
#[test]
fn connections_over_the_per_address_cap_are_closed_at_once() {
    let o = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(dir.path(), "a", &["a.example"]);
    let listen = format!(
        r#"["{{listen}}", {{ addr = "{{listen}}", tls = {{ certificates = [{{ cert = "{}", key = "{}", hosts = ["a.example"] }}] }} }}]"#,
        cert.cert_path.display(),
        cert.key_path.display(),
    );
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("listen", listen);
        })
        .limits(|l| {
            l.set("max_connections_per_client", 3);
        })
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let gw = Gateway::builder(&cfg).dir(dir).start();
    let (plain, tls) = (gw.listeners[0], gw.listeners[1]);

    // Three connections, each known to be accepted (it answered a request).
    let mut held_plain: Vec<TcpStream> = (0..2).map(|_| connect_from(CLIENT, plain)).collect();
    for s in &mut held_plain {
        let out = keep_alive_get(s, "/held");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    let mut held_tls = ca.client_over(connect_from(CLIENT, tls), b"http/1.1");
    let out = keep_alive_get(&mut held_tls, "/held-tls");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // Over the cap: closed at once, without a byte (no 408 after header_read_timeout, no
    // TLS alert after tls_handshake_timeout: both are 10 s).
    let mut fourth = connect_from(CLIENT, plain);
    let closed = closed_by_gateway(&mut fourth, Duration::from_secs(5));
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(2)),
        "{closed:?}"
    );
    let mut fifth = connect_from(CLIENT, tls);
    let closed = closed_by_gateway(&mut fifth, Duration::from_secs(5));
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(2)),
        "{closed:?}"
    );
    let refused = |gw: &Gateway| {
        metric_sum(
            &gw.metrics(),
            "ficus_connections_refused_total",
            &[("reason", "client_cap")],
        )
    };
    assert_eq!(refused(&gw), Some(2.0), "{}", gw.metrics());

    // Another address is not affected.
    let other = send_from(
        OTHER.parse().unwrap(),
        plain,
        b"GET /other HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(other.status, 200);

    // One of the three ends: the address has room again (the gateway notices the close
    // when it next reads that connection, at once for an idle keep-alive one).
    drop(held_plain.pop());
    let again = poll_until(Duration::from_secs(5), || {
        let mut s = connect_from(CLIENT, plain);
        let out = keep_alive_get(&mut s, "/again");
        out.starts_with("HTTP/1.1 200").then_some(())
    });
    assert!(again.is_some(), "{}", gw.metrics());
    // The held ones still work.
    let out = keep_alive_get(&mut held_plain[0], "/still");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let out = keep_alive_get(&mut held_tls, "/still-tls");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// A trusted proxy's address (a CDN, a load balancer: many clients behind one peer) is
/// not held to the cap.
#[test]
fn a_trusted_proxy_is_not_capped() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .gateway(|g| {
            g.set("trusted_proxies", r#"["127.0.0.5"]"#);
        })
        .limits(|l| {
            l.set("max_connections_per_client", 1);
        })
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let gw = Gateway::start(&cfg);
    let mut conns: Vec<TcpStream> = (0..4)
        .map(|_| connect_from("127.0.0.5", gw.listen))
        .collect();
    for s in &mut conns {
        let out = keep_alive_get(s, "/via-proxy");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    // An untrusted address with the same cap gets one.
    let mut first = connect_from(CLIENT, gw.listen);
    assert!(keep_alive_get(&mut first, "/one").starts_with("HTTP/1.1 200"));
    let mut second = connect_from(CLIENT, gw.listen);
    assert!(closed_by_gateway(&mut second, Duration::from_secs(5)).is_some());
}

/// With `new_connections_per_client_per_second = 20`: an address that reconnects as fast
/// as it can gets a burst of 20 and then about 20 a second; the rest are closed at once
/// and counted as `reason="client_rate"`; another address is served all the while.
#[test]
fn an_address_reconnecting_in_a_loop_is_held_to_its_connection_rate() {
    let o = Origin::start("o");
    let cfg = ConfigBuilder::new()
        .limits(|l| {
            l.set("new_connections_per_client_per_second", 20);
        })
        .service("o", &[o.addr()])
        .catch_all("o")
        .build();
    let gw = Gateway::start(&cfg);
    let started = Instant::now();
    let (mut served, mut closed) = (0u32, 0u32);
    while started.elapsed() < Duration::from_millis(1500) {
        let mut s = connect_from(CLIENT, gw.listen);
        let out = keep_alive_get(&mut s, "/loop");
        if out.starts_with("HTTP/1.1 200") {
            served += 1;
        } else {
            closed += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst, plus the rate over the time taken, plus one for rounding.
    let most = 20 + (20.0 * elapsed).ceil() as u32 + 1;
    assert!(
        (20..=most).contains(&served),
        "{served} served in {elapsed:.2} s (at most {most}), {closed} closed"
    );
    assert!(closed > 0, "the loop was never held back");
    let refused = metric_sum(
        &gw.metrics(),
        "ficus_connections_refused_total",
        &[("reason", "client_rate")],
    );
    assert_eq!(refused, Some(f64::from(closed)), "{}", gw.metrics());
    // Another address has its own bucket.
    let other = send_from(
        OTHER.parse().unwrap(),
        gw.listen,
        b"GET /other HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(other.status, 200);
}
