//! The raw serde model of routes.toml: a one-to-one mirror of the file.
//!
//! Nothing here is used on the request path. `compile` turns these types into runtime types.
//! Every struct denies unknown keys, so a typo is an error rather than a silently ignored
//! setting.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// `[gateway]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    #[serde(default)]
    pub listen: Vec<Spanned<RawListen>>,
    pub admin: Option<Spanned<String>>,
    pub threads: Option<usize>,
    pub grace_period: Option<Spanned<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    pub access_log: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: RawLimits,
}

/// One listener: a bare address string or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawListen {
    Addr(String),
    Table(RawListener),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub addr: String,
    pub tls: Option<RawListenerTls>,
    #[serde(default)]
    pub http2: bool,
    #[serde(default)]
    pub h2c: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `[gateway.limits]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub body_read_timeout: Option<Spanned<String>>,
}

/// `[services.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    #[serde(default)]
    pub instances: Vec<Spanned<RawInstance>>,
    pub tls: Option<RawUpstreamTls>,
    pub timeouts: Option<RawTimeouts>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawInstance {
    Addr(String),
    Table(RawInstanceTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstanceTable {
    pub addr: String,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub sni: Option<String>,
    pub verify: Option<bool>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<Spanned<String>>,
    pub read: Option<Spanned<String>>,
    pub total: Option<Spanned<String>>,
}

/// `[[routes]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<String>,
    #[serde(rename = "match")]
    pub matcher: Spanned<RawMatch>,
    pub service: Spanned<String>,
    pub strip_prefix: Option<Spanned<String>>,
    pub rewrite: Option<Spanned<String>>,
    #[serde(default)]
    pub request_headers: RawHeaderEdits,
    #[serde(default)]
    pub response_headers: RawHeaderEdits,
    pub timeouts: Option<RawTimeouts>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path: Spanned<String>,
    pub host: Option<Spanned<String>>,
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderEdits {
    #[serde(default)]
    pub set: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub add: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
}
