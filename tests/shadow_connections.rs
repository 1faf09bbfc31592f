//! The connections shadow copies travel on: kept between copies and reused (a copy does not
//! open a connection of its own), and a kept connection that its server closed is never a
//! shadow error for a copy without side effects: it goes again on a new connection.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn config(mono: SocketAddr, v2: SocketAddr) -> String {
    config_with(mono, v2, r#"{ service = "orders-v2", timeout = "2s" }"#)
}

fn config_with(mono: SocketAddr, v2: SocketAddr, shadow: &str) -> String {
    ConfigBuilder::new()
        .gateway(|g| {
            g.set("access_log", r#""off""#);
        })
        .service("monolith", &[mono])
        .service("orders-v2", &[v2])
        .route_with("orders", "/orders/**", "monolith", |r| {
            r.set("shadow", shadow);
        })
        .build()
}

const ANSWER: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                      Content-Length: 11\r\n\r\n{\"ok\":true}";

/// Reads one request head (no body: the copies here are GETs); `false` at end of stream.
fn read_head(s: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// A server that answers the first request of each connection, keeps the connection
/// open as HTTP/1.1 allows, and closes it without an answer when a second request comes:
/// what a server whose idle timeout just passed does to a client that reuses the
/// connection at that moment. Counts connections and requests.
fn closing_server() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (conns.clone(), requests.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            std::thread::spawn(move || {
                if read_head(&mut s) {
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = s.write_all(ANSWER.as_bytes());
                }
                // The second request is read, then the connection is closed unanswered.
                if read_head(&mut s) {
                    r.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, conns, requests)
}

#[test]
fn copies_reuse_kept_connections() {
    let mono = ok_origin("monolith");
    let v2 = ok_origin("v2");
    let gw = Gateway::start(&config(mono.addr(), v2.addr()));
    for i in 0..20u64 {
        let r = get_raw(gw.listen, "/orders/1", "test.local", &[]);
        assert_eq!(r.status, 200);
        // One copy at a time, so a kept connection is free for the next.
        wait_outcomes(&gw, i + 1);
    }
    let rep = report(&gw);
    assert_eq!(rep["compared"], 20, "{rep:#}");
    assert_eq!(rep["matched"], 20, "{rep:#}");
    assert_eq!(v2.requests(), 20);
    assert!(
        v2.connections() <= 2,
        "20 copies one after another opened {} connections to the shadow",
        v2.connections()
    );
}

#[test]
fn a_kept_connection_closed_by_its_server_is_no_shadow_error() {
    let mono = ok_origin("monolith");
    let (v2, conns, requests) = closing_server();
    let gw = Gateway::start(&config(mono.addr(), v2));
    for i in 0..6u64 {
        let r = get_raw(gw.listen, "/orders/1", "test.local", &[]);
        assert_eq!(r.status, 200);
        wait_outcomes(&gw, i + 1);
    }
    let rep = report(&gw);
    assert_eq!(rep["shadow_errors"], 0, "{rep:#}");
    assert_eq!(rep["compared"], 6, "{rep:#}");
    assert_eq!(rep["matched"], 6, "{rep:#}");
    // The kept connection was tried (the server saw requests it did not answer) and each
    // copy then went on a new one.
    assert_eq!(conns.load(Ordering::SeqCst), 6);
    assert!(
        requests.load(Ordering::SeqCst) > 6,
        "no copy was sent on a kept connection: {} requests",
        requests.load(Ordering::SeqCst)
    );
}

/// A copied `POST` is never sent on a kept connection: if the server closed it at that
/// moment the copy could not be sent again (it may have side effects), so it would be a
/// shadow error. Each goes on a new connection, and each reaches the server once.
#[test]
fn a_copied_post_never_risks_a_kept_connection() {
    let mono = ok_origin("monolith");
    let (v2, conns, requests) = closing_server();
    let gw = Gateway::start(&config_with(
        mono.addr(),
        v2,
        r#"{ service = "orders-v2", timeout = "2s", methods = ["POST"] }"#,
    ));
    for i in 0..6u64 {
        let r = raw_request(
            gw.listen,
            b"POST /orders/1 HTTP/1.1\r\nHost: test.local\r\nContent-Length: 0\r\n\
              Connection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        wait_outcomes(&gw, i + 1);
    }
    let rep = report(&gw);
    assert_eq!(rep["shadow_errors"], 0, "{rep:#}");
    assert_eq!(rep["compared"], 6, "{rep:#}");
    assert_eq!(conns.load(Ordering::SeqCst), 6);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        6,
        "a copy reached the server twice"
    );
}
