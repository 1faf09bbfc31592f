//! bare-pingora: the framework's floor for ficus's benchmarks.
//!
//! A pingora proxy that forwards every request to one plain-HTTP upstream and
//! does nothing else in any phase: `upstream_peer` clones a precomputed
//! `HttpPeer`. Whatever ficus costs beyond this binary is ficus's own work.
//!
//! Usage: bare-pingora --listen 127.0.0.1:8080 --upstream 127.0.0.1:8081 --threads 1
//!
//! SIGINT makes pingora shut down fast (SIGTERM is a graceful shutdown that may wait).

use std::net::SocketAddr;
use std::process::exit;

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

struct Args {
    listen: String,
    upstream: SocketAddr,
    threads: usize,
}

const USAGE: &str = "usage: bare-pingora --listen ADDR --upstream ADDR [--threads N]";

fn die(msg: &str) -> ! {
    eprintln!("bare-pingora: {msg}\n{USAGE}");
    exit(2)
}

fn parse_args() -> Args {
    let mut listen = None;
    let mut upstream = None;
    let mut threads = 1usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--listen" => listen = Some(value("--listen")),
            "--upstream" => {
                let v = value("--upstream");
                upstream = Some(
                    v.parse::<SocketAddr>()
                        .unwrap_or_else(|e| die(&format!("bad --upstream {v:?}: {e}"))),
                );
            }
            "--threads" => {
                let v = value("--threads");
                threads = match v.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => die(&format!("bad --threads {v:?}: want a positive integer")),
                };
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0)
            }
            other => die(&format!("unknown argument {other:?}")),
        }
    }
    Args {
        listen: listen.unwrap_or_else(|| die("--listen is required")),
        upstream: upstream.unwrap_or_else(|| die("--upstream is required")),
        threads,
    }
}

fn main() {
    let args = parse_args();

    let conf = ServerConf {
        threads: args.threads,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let peer = HttpPeer::new(args.upstream, false, String::new());
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Bare { peer });
    proxy.add_tcp(&args.listen);
    server.add_service(proxy);

    eprintln!(
        "bare-pingora: listening on {} -> {} ({} thread(s))",
        args.listen, args.upstream, args.threads
    );
    server.run_forever();
}
