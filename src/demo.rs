//! `ficus demo`: a small shop's legacy monolith, its migrated "deliveries" service and the
//! "orders" service being shadowed, all in-process on loopback, with the gateway in front
//! using the repository's routes.toml.
//!
//! The sample origins answer every path with a JSON note of who served it, so a newcomer
//! can watch requests land on one side of the migration or the other; `/orders/{id}` (and
//! `/v2/orders/{id}`) get an order document instead, whose `generated_at` changes on every
//! answer (noise) and whose `total` the new orders service rounds differently (a real
//! mismatch), for the shadow comparison to find.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::services::listening::Service;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{self, ConfigError};

/// How a sample origin rounds the VAT of an order: the one thing the new orders service
/// does differently from the monolith.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VatRounding {
    /// Each line's VAT rounded to the cent, then added up (the monolith's way).
    PerLine,
    /// The VAT of the whole order rounded once (the new service's way): one cent less on
    /// the demo's order.
    PerOrder,
}

/// A sample origin that says who it is.
pub struct SampleOrigin {
    pub name: &'static str,
    pub vat: VatRounding,
}

/// The demo's order lines: SKU, quantity, unit price in cents (VAT excluded). Chosen so
/// that rounding the VAT per line and per order differ by a cent.
const ORDER_LINES: [(&str, u64, u64); 3] = [
    ("TEA-EARL-GREY-250G", 1, 499),
    ("MUG-STONEWARE", 2, 1249),
    ("SPOON-BRASS", 1, 99),
];
/// VAT rate in percent.
const VAT_PERCENT: u64 = 20;

/// `total` in cents, VAT included.
fn order_total(vat: VatRounding) -> u64 {
    // Half up to the cent: (x + 50) / 100 on cent-percent.
    let round = |cent_percent: u64| (cent_percent + 50) / 100;
    let lines: Vec<u64> = ORDER_LINES.iter().map(|(_, q, p)| q * p).collect();
    let subtotal: u64 = lines.iter().sum();
    let tax = match vat {
        VatRounding::PerLine => lines.iter().map(|l| round(l * VAT_PERCENT)).sum(),
        VatRounding::PerOrder => round(subtotal * VAT_PERCENT),
    };
    subtotal + tax
}

/// The order id in `/orders/{id}` or `/v2/orders/{id}`, if the target is one.
fn order_id(target: &str) -> Option<u64> {
    let path = target.split('?').next().unwrap_or_default();
    let id = path
        .strip_prefix("/orders/")
        .or_else(|| path.strip_prefix("/v2/orders/"))?;
    id.parse().ok()
}

/// A timestamp that differs on every answer, even two in the same microsecond: the order
/// document's noisy field.
fn generated_at() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let next = |last: u64| now.max(last + 1);
    // The closure always returns `Some`: the update cannot fail.
    let last = LAST
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| Some(next(last)))
        .unwrap_or_else(|last| last);
    rfc3339(next(last))
}

/// `2026-12-05T12:00:00.123456Z` from microseconds since the Unix epoch.
fn rfc3339(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm, for dates after 1970).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        micros % 1_000_000
    )
}

/// The order document the sample origins serve for `/orders/{id}`.
fn order(id: u64, vat: VatRounding) -> serde_json::Value {
    let euros = |cents: u64| cents as f64 / 100.0;
    let items: Vec<serde_json::Value> = ORDER_LINES
        .iter()
        .map(
            |(sku, qty, price)| serde_json::json!({"sku": sku, "qty": qty, "price": euros(*price)}),
        )
        .collect();
    serde_json::json!({
        "id": id,
        "status": "paid",
        "items": items,
        "total": euros(order_total(vat)),
        "currency": "EUR",
        "generated_at": generated_at(),
    })
}

#[async_trait]
impl ServeHttp for SampleOrigin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let target = String::from_utf8_lossy(req.raw_path()).into_owned();
        let method = req.method.to_string();
        let header = |n: &str| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let body = match order_id(&target) {
            Some(id) => order(id, self.vat),
            None => serde_json::json!({
                "served_by": self.name,
                "method": method,
                "path": target,
                "request_id": header("x-request-id"),
                "x_forwarded_for": header("x-forwarded-for"),
            }),
        };
        let mut body = body.to_string();
        body.push('\n');
        let mut resp = Response::new(body.into_bytes());
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        // Says who answered where the body does not (an order document is the same from
        // every side but for the fields the shadow comparison is meant to find).
        resp.headers_mut()
            .insert("x-sample-origin", http::HeaderValue::from_static(self.name));
        let len = resp.body().len();
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
        resp
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("the demo needs services `monolith`, `deliveries` and `orders` with one instance each, and a listener, in {0}")]
    MissingService(String),
    #[error("{0}")]
    Server(#[from] crate::server::ServerError),
    #[error("{what} address {addr} is in use: stop what listens there, or change it in {file}")]
    PortInUse {
        what: &'static str,
        addr: SocketAddr,
        file: String,
    },
}

/// The demo's own sample origins would lose a port race silently (the gateway would proxy
/// to whatever else listens there): every address must be free before anything starts.
fn check_free(addrs: &[(&'static str, SocketAddr)], file: &Path) -> Result<(), DemoError> {
    for &(what, addr) in addrs {
        if std::net::TcpListener::bind(addr).is_err() {
            return Err(DemoError::PortInUse {
                what,
                addr,
                file: file.display().to_string(),
            });
        }
    }
    Ok(())
}

/// How to run this binary again, as the user would type it: relative to the working
/// directory when it is below it.
fn this_binary() -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| "ficus".into());
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or(exe);
    shown.display().to_string()
}

/// Where the demo's pieces listen.
struct DemoAddrs {
    listen: SocketAddr,
    admin: SocketAddr,
    monolith: SocketAddr,
    deliveries: SocketAddr,
    orders: SocketAddr,
}

/// What the demo prints first: where everything is, and commands to paste.
fn banner(a: &DemoAddrs, ficus: &str, config: &Path) -> String {
    let DemoAddrs {
        listen,
        admin,
        monolith,
        deliveries,
        orders,
    } = a;
    let config = config.display();
    format!(
        "ficus demo
  gateway          http://{listen}
  legacy monolith  http://{monolith}  (sample)
  deliveries svc   http://{deliveries}  (sample, the first migrated path)
  orders svc       http://{orders}  (sample, the next path: shadowed, not answering clients yet)
  admin            http://{admin}

Try:
  curl -s http://{listen}/products/7        # not migrated: the monolith answers
  curl -s http://{listen}/deliveries/42     # migrated: the deliveries service answers (path rewritten)
  curl -s --path-as-is http://{listen}/public/../deliveries/1   # normalized before routing
  curl -s 'http://{listen}/a%2Fb'           # refused: encoded slash (400)
  curl -s --interface 127.0.0.2 http://{listen}/admin/users   # refused by the access policy (403)
  curl -s http://{admin}/metrics | grep ficus_requests_total
  {ficus} explain --config {config} GET http://{listen}/deliveries/42

Shadow traffic (docs/migration.md): /orders is still answered by the monolith, and a copy
of each GET goes to the orders service; the two answers are compared.
  for i in $(seq 10); do curl -s http://{listen}/orders/42; done
  {ficus} shadow orders --config {config}   # one real mismatch ($.total), learned noise ($.generated_at)
  curl -s http://{admin}/shadow/orders      # the same record as JSON
  curl -s http://{admin}/metrics | grep ficus_shadow_
  {ficus} explain --config {config} GET http://{listen}/orders/42

Edit {config} while this runs: changes apply without a restart. Ctrl-C stops.
"
    )
}

/// One sample origin as a server service on `addr`.
fn sample_service(what: &str, origin: SampleOrigin, addr: SocketAddr) -> Service<SampleOrigin> {
    let mut s = Service::new(format!("demo {what}"), origin);
    s.threads = Some(1);
    s.add_tcp(&addr.to_string());
    s
}

/// Runs the demo until Ctrl-C. `ready_file` is as for `ficus run`.
pub fn run(path: &Path, ready_file: Option<crate::sockets::ReadyFile>) -> Result<(), DemoError> {
    let cfg = config::load(path)?;
    let addr_of = |name: &str| {
        cfg.service_index(name)
            .and_then(|i| cfg.services[i].statics.first())
            .map(|inst| inst.addr)
            .ok_or_else(|| DemoError::MissingService(path.display().to_string()))
    };
    let addrs = DemoAddrs {
        monolith: addr_of("monolith")?,
        deliveries: addr_of("deliveries")?,
        orders: addr_of("orders")?,
        listen: cfg
            .gateway
            .listeners
            .first()
            .map(|l| l.addr)
            .ok_or_else(|| DemoError::MissingService(path.display().to_string()))?,
        admin: cfg.gateway.admin,
    };
    check_free(
        &[
            ("gateway", addrs.listen),
            ("admin", addrs.admin),
            ("sample monolith", addrs.monolith),
            ("sample deliveries service", addrs.deliveries),
            ("sample orders service", addrs.orders),
        ],
        path,
    )?;
    println!("{}", banner(&addrs, &this_binary(), path));
    crate::server::run(cfg, ready_file, |server| {
        let legacy = SampleOrigin {
            name: "legacy-monolith",
            vat: VatRounding::PerLine,
        };
        server.add_service(sample_service("monolith", legacy, addrs.monolith));
        let deliveries = SampleOrigin {
            name: "deliveries-service",
            vat: VatRounding::PerLine,
        };
        server.add_service(sample_service("deliveries", deliveries, addrs.deliveries));
        let orders = SampleOrigin {
            name: "orders-service",
            vat: VatRounding::PerOrder,
        };
        server.add_service(sample_service("orders", orders, addrs.orders));
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_roundings_differ_by_a_cent() {
        assert_eq!(order_total(VatRounding::PerLine), 3716);
        assert_eq!(order_total(VatRounding::PerOrder), 3715);
    }

    #[test]
    fn order_paths() {
        assert_eq!(order_id("/orders/42"), Some(42));
        assert_eq!(order_id("/v2/orders/42?x=1"), Some(42));
        assert_eq!(order_id("/orders/"), None);
        assert_eq!(order_id("/orders/abc"), None);
        assert_eq!(order_id("/deliveries/42"), None);
    }

    #[test]
    fn timestamps_are_rfc3339_and_never_repeat() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_764_936_000_123_456),
            "2025-12-05T12:00:00.123456Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        let a = generated_at();
        let b = generated_at();
        assert!(b > a, "{a} then {b}");
    }
}
