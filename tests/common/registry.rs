//! The service registry as the tests see it: `/registry` JSON, the admin API, and reading
//! who served a request.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{metric_sum, try_raw_request, Gateway, RawResponse};

/// `GET /registry` as JSON (panics with the gateway logs on failure).
pub fn registry(gw: &Gateway) -> Value {
    let r = gw
        .admin_get("/registry")
        .unwrap_or_else(|e| panic!("GET /registry: {e}\n{}", gw.logs()));
    assert_eq!(r.status, 200, "GET /registry: {}", r.text());
    r.json()
}

/// The service named `name` in a `/registry` document.
pub fn service_of(doc: &Value, name: &str) -> Option<Value> {
    doc["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// The live service entry from `/registry` (panics if absent).
pub fn service(gw: &Gateway, name: &str) -> Value {
    let doc = registry(gw);
    service_of(&doc, name).unwrap_or_else(|| panic!("service {name} not in /registry: {doc:#}"))
}

/// The instance `addr` of service `svc`, if present.
pub fn instance(gw: &Gateway, svc: &str, addr: SocketAddr) -> Option<Value> {
    let doc = registry(gw);
    let s = service_of(&doc, svc)?;
    s["instances"]
        .as_array()?
        .iter()
        .find(|i| i["addr"] == addr.to_string())
        .cloned()
}

/// Instance addresses of `svc` in `/registry`, sorted.
pub fn instance_addrs(gw: &Gateway, svc: &str) -> Vec<String> {
    let mut v: Vec<String> = service(gw, svc)["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["addr"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Polls `/registry` until instance `addr` of `svc` has `health` (e.g. "healthy"); panics with
/// the registry and logs after `timeout`.
pub fn wait_health(gw: &Gateway, svc: &str, addr: SocketAddr, health: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let inst = instance(gw, svc, addr);
        if inst.as_ref().is_some_and(|i| i["health"] == health) {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "instance {addr} of {svc} not {health} after {timeout:?}; last: {inst:#?}\nregistry: {:#}\n{}",
                registry(gw),
                gw.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A request to the admin listener with an optional bearer token and JSON body.
pub fn admin_request(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("Content-Length: 0\r\n\r\n");
    }
    try_raw_request(gw.admin, req.as_bytes(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{method} {path} on admin: {e}\n{}", gw.logs()))
}

/// Registers `addr` with service `svc` (expects 201) and returns the registration id.
pub fn register(gw: &Gateway, svc: &str, token: Option<&str>, body: &str) -> String {
    let r = admin_request(
        gw,
        "POST",
        &format!("/registry/services/{svc}/instances"),
        token,
        Some(body),
    );
    assert_eq!(r.status, 201, "register {body}: {} {}", r.status, r.text());
    r.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", r.text()))
        .to_string()
}

/// Sum of a metric's samples with these labels (0 when absent).
pub fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&gw.metrics(), name, labels).unwrap_or(0.0)
}

/// `GET path` on the gateway's main listener, `Connection: close`, with extra headers; panics
/// on I/O errors.
pub fn get_with(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    crate::common::get_raw(gw.listen, path, "test.local", headers)
}

/// Like [`get_with`] but returns I/O errors.
pub fn try_get(gw: &Gateway, path: &str, timeout: Duration) -> io::Result<RawResponse> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n");
    try_raw_request(gw.listen, req.as_bytes(), timeout)
}

/// The origin name that served a response (`x-origin` header), or "-".
pub fn served_by(r: &RawResponse) -> String {
    r.header("x-origin").unwrap_or("-").to_string()
}
