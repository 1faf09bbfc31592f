//! [`ConfigBuilder`]: routes.toml for a test, instead of the same TOML pasted into every file.
//!
//! ```ignore
//! let cfg = ConfigBuilder::new()
//!     .gateway(|g| g.set("grace_period", r#""1s""#))
//!     .limits(|l| l.set("max_body_bytes", "1000"))
//!     .service("api", &[origin.addr()])
//!     .service_with("orders", &[a.addr(), b.addr()], |s| {
//!         s.set("health", r#"{ path = "/health", interval = "100ms" }"#)
//!     })
//!     .route("api", "/api/**", "api")
//!     .route_with("orders", "/orders/**", "orders", |r| r.set("fallback", r#""api""#))
//!     .raw("[registry]\ntoken = \"t\"\n")
//!     .build();
//! let gw = Gateway::start(&cfg);
//! ```
//!
//! Values are TOML as written (`set`), or a string to quote (`set_str`). The `[gateway]`
//! table starts with `listen = ["{listen}"]`, `admin = "{admin}"`, `threads = 2` and
//! `access_log = "text"`; the gateway fixture replaces the placeholders (see
//! [`crate::common::Gateway`]). The output order is `[gateway]`, `[gateway.limits]`, the
//! extra tables, services, routes, then raw text: the escape hatch for anything else.

use std::fmt::Display;
use std::net::SocketAddr;

/// The keys of one TOML table, in the order first set.
#[derive(Debug, Clone, Default)]
pub struct Table {
    entries: Vec<(String, String)>,
}

impl Table {
    /// Sets `key` to a TOML value written out (`"10s"` with its quotes, `2`, `{ a = 1 }`).
    pub fn set(&mut self, key: &str, toml_value: impl Display) -> &mut Self {
        let value = toml_value.to_string();
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.entries.push((key.to_string(), value)),
        }
        self
    }

    /// Sets `key` to the string `value`, quoted.
    pub fn set_str(&mut self, key: &str, value: &str) -> &mut Self {
        self.set(key, toml_str(value))
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.entries.retain(|(k, _)| k != key);
        self
    }

    fn write(&self, out: &mut String) {
        for (k, v) in &self.entries {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    // A JSON string is a valid TOML basic string for everything a test writes.
    serde_json::to_string(s).expect("a string serializes")
}

/// `["a", "b"]` of addresses.
pub fn toml_addrs(addrs: &[SocketAddr]) -> String {
    let plain: Vec<(SocketAddr, &str)> = addrs.iter().map(|a| (*a, "")).collect();
    toml_instances(&plain)
}

/// Instances with their keys: a plain address where the keys are empty, else a table.
/// `toml_instances(&[(a, ""), (b, "weight = 3")])` is `["A", { addr = "B", weight = 3 }]`.
pub fn toml_instances(instances: &[(SocketAddr, &str)]) -> String {
    let items: Vec<String> = instances
        .iter()
        .map(|(addr, keys)| {
            let addr = toml_str(&addr.to_string());
            if keys.is_empty() {
                addr
            } else {
                format!("{{ addr = {addr}, {keys} }}")
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// Builds a routes.toml; see the module docs.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    gateway: Table,
    limits: Table,
    tables: Vec<(String, Table)>,
    services: Vec<(String, Table)>,
    routes: Vec<(String, Table)>,
    raw: String,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    pub fn new() -> ConfigBuilder {
        let mut gateway = Table::default();
        gateway
            .set("listen", r#"["{listen}"]"#)
            .set("admin", r#""{admin}""#)
            .set("threads", 2)
            .set("access_log", r#""text""#);
        ConfigBuilder {
            gateway,
            limits: Table::default(),
            tables: Vec::new(),
            services: Vec::new(),
            routes: Vec::new(),
            raw: String::new(),
        }
    }

    /// Edits the `[gateway]` table.
    pub fn gateway(mut self, edit: impl FnOnce(&mut Table)) -> Self {
        edit(&mut self.gateway);
        self
    }

    /// Edits `[gateway.limits]` (written only if it has keys).
    pub fn limits(mut self, edit: impl FnOnce(&mut Table)) -> Self {
        edit(&mut self.limits);
        self
    }

    /// Edits any other top-level table, e.g. `table("registry", |t| ...)`.
    pub fn table(mut self, name: &str, edit: impl FnOnce(&mut Table)) -> Self {
        edit(entry(&mut self.tables, name));
        self
    }

    /// `[services.NAME]` with these static instances.
    pub fn service(self, name: &str, instances: &[SocketAddr]) -> Self {
        self.service_with(name, instances, |_| {})
    }

    /// `[services.NAME]` with these static instances (none: no `instances` key), then
    /// `edit` for the other keys.
    pub fn service_with(
        mut self,
        name: &str,
        instances: &[SocketAddr],
        edit: impl FnOnce(&mut Table),
    ) -> Self {
        let t = entry(&mut self.services, name);
        if !instances.is_empty() {
            t.set("instances", toml_addrs(instances));
        }
        edit(t);
        self
    }

    /// A `[[routes]]` entry: `name`, `match = { path = PATH }`, `service`.
    pub fn route(self, name: &str, path: &str, service: &str) -> Self {
        self.route_with(name, path, service, |_| {})
    }

    /// Like [`route`](Self::route), then `edit` for the other keys (`set("match", ...)`
    /// replaces the match).
    pub fn route_with(
        mut self,
        name: &str,
        path: &str,
        service: &str,
        edit: impl FnOnce(&mut Table),
    ) -> Self {
        let mut t = Table::default();
        t.set_str("name", name)
            .set("match", format!("{{ path = {} }}", toml_str(path)))
            .set_str("service", service);
        edit(&mut t);
        self.routes.push((name.to_string(), t));
        self
    }

    /// Edits the route called `name` (added before); panics if there is none.
    pub fn edit_route(mut self, name: &str, edit: impl FnOnce(&mut Table)) -> Self {
        let (_, t) = self
            .routes
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no route {name} in the config builder"));
        edit(t);
        self
    }

    /// A catch-all route `all` (`/**`) to `service`.
    pub fn catch_all(self, service: &str) -> Self {
        self.route("all", "/**", service)
    }

    /// Appends TOML text as it is, after everything else.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push('\n');
        self.raw.push_str(toml);
        self.raw.push('\n');
        self
    }

    pub fn build(&self) -> String {
        let mut out = String::from("[gateway]\n");
        self.gateway.write(&mut out);
        if !self.limits.entries.is_empty() {
            out.push_str("\n[gateway.limits]\n");
            self.limits.write(&mut out);
        }
        for (name, t) in &self.tables {
            out.push_str(&format!("\n[{name}]\n"));
            t.write(&mut out);
        }
        for (name, t) in &self.services {
            out.push_str(&format!("\n[services.{}]\n", toml_key(name)));
            t.write(&mut out);
        }
        for (_, t) in &self.routes {
            out.push_str("\n[[routes]]\n");
            t.write(&mut out);
        }
        out.push_str(&self.raw);
        out
    }
}

/// The table called `name` in `tables`, added empty if missing.
fn entry<'a>(tables: &'a mut Vec<(String, Table)>, name: &str) -> &'a mut Table {
    let i = match tables.iter().position(|(n, _)| n == name) {
        Some(i) => i,
        None => {
            tables.push((name.to_string(), Table::default()));
            tables.len() - 1
        }
    };
    &mut tables[i].1
}

/// A table key: bare when it can be, else quoted.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_string()
    } else {
        toml_str(name)
    }
}
