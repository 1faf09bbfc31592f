mod common;
use common::*;
use std::net::SocketAddr;

struct TlsSetup {
    gw: Gateway,
    _o: Origin,
    ca: TestCa,
}

fn setup() -> TlsSetup {
    let o = Origin::start("o");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    // the default (first) certificate also covers 127.0.0.1 so that an SNI-less client can verify it
    let a = ca.issue(dir.path(), "a", &["a.example", "127.0.0.1"]);
    let b = ca.issue(dir.path(), "b", &["b.example"]);
    let listen = format!(
        r#"listen = ["{{listen}}", {{ addr = "{{listen2}}", tls = {{ certificates = [{{ cert = "{}", key = "{}", hosts = ["a.example"] }}, {{ cert = "{}", key = "{}", hosts = ["b.example"] }}] }}, http2 = true }}, {{ addr = "{{listen3}}", h2c = true }}]"#,
        a.cert_path.display(),
        a.key_path.display(),
        b.cert_path.display(),
        b.key_path.display()
    );
    let cfg = with_origins(
        &(GATEWAY.replace(r#"listen = ["{listen}"]"#, &listen)
            + r#"
[services.o]
instances = ["{origin:o}"]

[[routes]]
name = "all"
match = { path = "/**" }
service = "o"
"#),
        &[&o],
    );
    let gw = Gateway::start_in(dir, &cfg);
    TlsSetup { gw, _o: o, ca }
}

fn tls_client(ca: &TestCa, tls_addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca.reqwest_cert())
        .resolve("a.example", tls_addr)
        .resolve("b.example", tls_addr)
        .resolve("c.example", tls_addr)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_certificate_and_first_is_default() {
    let s = setup();
    let port = s.gw.listen2.port();
    let c = tls_client(&s.ca, s.gw.listen2);
    for host in ["a.example", "b.example"] {
        let r = c
            .get(format!("https://{host}:{port}/x"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("https://{host} failed (wrong certificate served?): {e:?}"));
        assert_eq!(r.status(), 200);
        let j: serde_json::Value = r.json().await.unwrap();
        assert_eq!(j["origin"], "o");
        assert_eq!(j["headers"]["x-forwarded-proto"], "https", "{j}");
    }
    // no SNI (IP address): default certificate (a, which also covers 127.0.0.1)
    let r = c.get(format!("https://127.0.0.1:{port}/x")).send().await;
    assert!(
        r.is_ok(),
        "SNI-less connection should get the default certificate: {r:?}"
    );
    // unknown name: default certificate, which does not cover c.example -> verification fails
    let r = c.get(format!("https://c.example:{port}/x")).send().await;
    assert!(
        r.is_err(),
        "c.example must not verify (no certificate for it), got {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_via_alpn() {
    let s = setup();
    let c = tls_client(&s.ca, s.gw.listen2);
    let r = c
        .get(format!("https://a.example:{}/x", s.gw.listen2.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["origin"], "o");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_and_plain_http1() {
    let s = setup();
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c
        .get(format!("http://{}/x", s.gw.listen3))
        .send()
        .await
        .expect("h2c request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["origin"], "o");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");

    let r = client().get(s.gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}
