mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn versioned(o: &Origin, version: &str) -> String {
    ConfigBuilder::new()
        .service("o", &[o.addr()])
        .route_with("all", "/**", "o", |r| {
            r.set(
                "response_headers",
                format!("{{ set = {{ \"x-version\" = {} }} }}", toml_str(version)),
            );
        })
        .build()
}

fn reloads(gw: &Gateway, result: &str) -> f64 {
    metric_sum(
        &gw.metrics(),
        "ficus_config_reloads_total",
        &[("result", result)],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_no_request() {
    let o = Origin::start("o");
    let gw = Gateway::start(&versioned(&o, "v0"));
    let ok_before = reloads(&gw, "ok");
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, total, bad) = (stop.clone(), total.clone(), bad.clone());
        let url = gw.url("/load");
        tasks.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::SeqCst) {
                match c.get(&url).send().await {
                    Ok(r) => {
                        let st = r.status();
                        let body = r.text().await;
                        if st != 200 || body.is_err() {
                            bad.lock()
                                .unwrap()
                                .push(format!("status {st} body {body:?}"));
                        }
                    }
                    Err(e) => bad.lock().unwrap().push(format!("error: {e:?}")),
                }
                total.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // let the load get going
    let t0 = Instant::now();
    while total.load(Ordering::SeqCst) < 20 && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A reload every 100 ms under load: the pace is part of the test.
    for i in 1..=20 {
        gw.rewrite_config(&versioned(&o, &format!("v{i}")));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the last version must become visible
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last_seen = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = c.get(gw.url("/probe")).send().await {
            last_seen = r
                .headers()
                .get("x-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if last_seen == "v20" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // keep the load running a little after the final reload (load over time is the test)
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let bad = bad.lock().unwrap();
    let total = total.load(Ordering::SeqCst);
    eprintln!(
        "reload under load: {total} requests, {} failures",
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{} of {total} requests failed during reloads, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(
        total >= 100,
        "only {total} requests were made; load too light to be meaningful"
    );
    assert_eq!(last_seen, "v20", "final config not applied");
    assert!(
        reloads(&gw, "ok") > ok_before,
        "ficus_config_reloads_total{{result=\"ok\"}} did not increase"
    );
}

#[test]
fn invalid_reload_keeps_old_routes_and_counts_failure() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let cfg_a = ConfigBuilder::new()
        .service("a", &[a.addr()])
        .route("a", "/a/**", "a")
        .build();
    let gw = Gateway::start(&cfg_a);
    assert_eq!(gw.get("/a/x").origin().as_deref(), Some("a"));
    let failed0 = reloads(&gw, "failed");

    let invalid_semantic = ConfigBuilder::new()
        .service("b", &[b.addr()])
        .route("b", "/b/**", "does-not-exist")
        .build();
    gw.rewrite_config(&invalid_semantic);
    let failed1 = poll_until(Duration::from_secs(5), || {
        let f = reloads(&gw, "failed");
        (f > failed0).then_some(f)
    })
    .expect("failed reload counter did not increase after an invalid config");
    // The errors are logged, also after access-log lines have been written (the access
    // log's writer once held stdout's lock for good and silenced every later diagnostic).
    poll_until(Duration::from_secs(3), || {
        let logs = gw.logs();
        (logs.contains("config reload failed") && logs.contains("does-not-exist")).then_some(())
    })
    .unwrap_or_else(|| panic!("the failed reload was not logged:\n{}", gw.logs()));
    assert_eq!(
        gw.get("/a/x").origin().as_deref(),
        Some("a"),
        "old routes must keep working"
    );
    assert_eq!(
        gw.get("/b/x").status,
        404,
        "routes from the invalid file must not be applied"
    );

    gw.rewrite_config("this is [not valid toml\n");
    poll_until(Duration::from_secs(5), || {
        (reloads(&gw, "failed") > failed1).then_some(())
    })
    .expect("failed reload counter did not increase after a syntax error");
    assert_eq!(gw.get("/a/x").origin().as_deref(), Some("a"));
    let r = gw.admin_get("/readyz").unwrap();
    assert_eq!(r.status, 200, "still ready after failed reloads");

    // now a valid one
    let ok0 = reloads(&gw, "ok");
    let cfg_b = ConfigBuilder::new()
        .service("b", &[b.addr()])
        .route("b", "/b/**", "b")
        .build();
    let t = Instant::now();
    gw.rewrite_config(&cfg_b);
    poll_until(Duration::from_secs(5), || {
        (gw.get("/b/x").origin().as_deref() == Some("b")).then_some(())
    })
    .expect("valid config not applied within 5s");
    let el = t.elapsed();
    assert!(
        el < Duration::from_secs(3),
        "valid reload took {el:?} (spec: ~2s)"
    );
    assert_eq!(gw.get("/a/x").status, 404, "route a was removed");
    assert!(reloads(&gw, "ok") > ok0);
}

#[test]
fn in_place_write_is_picked_up() {
    let o = Origin::start("o");
    let gw = Gateway::start(&versioned(&o, "one"));
    assert_eq!(gw.get("/x").header("x-version"), Some("one"));
    std::fs::write(gw.config_path(), gw.subst(&versioned(&o, "two"))).unwrap();
    poll_until(Duration::from_secs(5), || {
        (gw.get("/x").header("x-version") == Some("two")).then_some(())
    })
    .expect("in-place edit not applied within 5s");
}

#[test]
fn sighup_triggers_reload() {
    let o = Origin::start("o");
    let mut gw = Gateway::start(&versioned(&o, "one"));
    let ok0 = reloads(&gw, "ok");
    gw.signal(libc::SIGHUP);
    poll_until(Duration::from_secs(5), || {
        (reloads(&gw, "ok") > ok0).then_some(())
    })
    .expect("SIGHUP did not cause a (successful) reload");
    assert!(gw.is_running(), "SIGHUP must not terminate the gateway");
    assert_eq!(gw.get("/x").status, 200);
}

/// A config mounted the Kubernetes ConfigMap way, `routes.toml -> ..data/routes.toml` with
/// `..data -> v1`: swapping `..data` to a new directory reloads (no event names the file
/// itself), and so does editing the current target in place.
#[test]
fn symlinked_config_follows_the_link_swap() {
    let o = Origin::start("o");
    let k8s_path = |p: &std::path::Path| p.parent().unwrap().join("k8s/routes.toml");
    let gw = Gateway::builder(&versioned(&o, "one"))
        .args(move |p| {
            let k8s = p.parent().unwrap().join("k8s");
            std::fs::create_dir_all(k8s.join("v1")).unwrap();
            std::fs::copy(p, k8s.join("v1/routes.toml")).unwrap();
            std::os::unix::fs::symlink("v1", k8s.join("..data")).unwrap();
            std::os::unix::fs::symlink("..data/routes.toml", k8s.join("routes.toml")).unwrap();
            vec![
                "run".into(),
                "--config".into(),
                k8s_path(p).display().to_string(),
            ]
        })
        .start();
    assert_eq!(gw.get("/x").header("x-version"), Some("one"));
    let k8s = gw.config_path().parent().unwrap().join("k8s");
    std::fs::create_dir_all(k8s.join("v2")).unwrap();
    std::fs::write(k8s.join("v2/routes.toml"), gw.subst(&versioned(&o, "two"))).unwrap();
    std::os::unix::fs::symlink("v2", k8s.join("..data_tmp")).unwrap();
    std::fs::rename(k8s.join("..data_tmp"), k8s.join("..data")).unwrap();
    poll_until(Duration::from_secs(5), || {
        (gw.get("/x").header("x-version") == Some("two")).then_some(())
    })
    .expect("the ..data swap was not applied within 5s");
    // The new target directory is watched: an in-place edit there is picked up too.
    std::fs::write(
        k8s.join("v2/routes.toml"),
        gw.subst(&versioned(&o, "three")),
    )
    .unwrap();
    poll_until(Duration::from_secs(5), || {
        (gw.get("/x").header("x-version") == Some("three")).then_some(())
    })
    .expect("an in-place edit of the link's target was not applied within 5s");
}

/// `systemctl reload` (SIGHUP) sent while the gateway is still reading a big config and
/// starting must not end the process (SIGHUP's default action): it starts and serves.
#[test]
fn sighup_during_start_does_not_kill_the_gateway() {
    let o = Origin::start("o");
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = free_addr();
    let mut cfg = format!(
        "[gateway]\nlisten = [\"{listen}\"]\nadmin = \"127.0.0.1:0\"\naccess_log = \"off\"\n\n\
         [services.o]\ninstances = [\"{}\"]\n",
        o.addr()
    );
    // Enough routes that reading them takes a while on a debug build.
    for i in 0..20_000 {
        cfg.push_str(&format!(
            "\n[[routes]]\nname = \"r{i}\"\nmatch = {{ path = \"/r{i}/**\" }}\nservice = \"o\"\n"
        ));
    }
    cfg.push_str("\n[[routes]]\nname = \"all\"\nmatch = { path = \"/**\" }\nservice = \"o\"\n");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, cfg).expect("write config");
    let ready = dir.path().join("ready.json");
    let mut child = std::process::Command::new(common::gateway::bin())
        .args(["run", "--config"])
        .arg(&path)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ficus");
    let pid = child.id() as i32;
    // Before `main` runs, any program dies of a SIGHUP: start once ficus has set it aside
    // (bit 0 of `SigIgn` in /proc/PID/status), which it does first thing.
    let ignores_hup = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("SigIgn:"))?;
                u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
            })
            .is_some_and(|mask| mask & 1 == 1)
    };
    let waited = Instant::now();
    while !ignores_hup() && !ready.exists() && waited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    let mut sent = 0;
    while !ready.exists() && start.elapsed() < Duration::from_secs(60) {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("ficus exited during start after {sent} SIGHUPs: {status}");
        }
        // SAFETY: signals our own child by pid.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        sent += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let alive = child.try_wait().expect("try_wait").is_none();
    let served = alive
        && try_raw_request(
            listen,
            b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .is_ok_and(|r| r.status == 200);
    unsafe { libc::kill(pid, libc::SIGINT) };
    let _ = child.wait();
    assert!(ready.exists(), "never ready ({sent} SIGHUPs sent)");
    assert!(
        sent > 3,
        "the start was too quick to test anything ({sent} SIGHUPs)"
    );
    assert!(
        alive && served,
        "after {sent} SIGHUPs during start: alive {alive}, served {served}"
    );
}
