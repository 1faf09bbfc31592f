//! `[access.NAME]`: IP allow and deny lists.
//!
//! ```toml
//! [access.office]
//! allow = ["10.0.0.0/8", "2001:db8::/32"]
//! deny = ["10.0.13.0/24"]
//! ```
//!
//! Decided on the client address the gateway computed (the TCP peer, or behind trusted
//! proxies the right-most untrusted `X-Forwarded-For` entry): a header a client sends
//! directly cannot pick the address it is judged on. A `deny` entry wins over an `allow`
//! entry; with an `allow` list, everything it does not list is refused. A refused request
//! gets `403` with the gateway's JSON error body and request id.

use async_trait::async_trait;
use http::StatusCode;
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;
use toml::Spanned;

use crate::net::Cidr;
use crate::{CompileContext, Hooks, Outcome, Plugin, PolicyKind, RequestView, Response, Stage};

/// The refusal's message (fixed text: nothing from the request is echoed).
pub const DENIED: &str = "client address not allowed";

/// `[access.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Networks allowed; when absent, every address not denied is allowed.
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Networks refused, whatever `allow` says.
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
}

/// Compiled lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSettings {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl AccessSettings {
    /// Whether a client at `ip` may pass. An unknown address (a non-IP listener) passes
    /// only a policy without an `allow` list.
    pub fn admits(&self, ip: Option<IpAddr>) -> bool {
        match ip {
            Some(ip) => {
                !self.deny.iter().any(|c| c.contains(ip))
                    && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
            }
            None => self.allow.is_empty(),
        }
    }
}

/// The `access` policy kind.
pub struct Access;

impl PolicyKind for Access {
    const SECTION: &'static str = "access";
    const STAGE: Stage = Stage::Access;
    type Config = AccessConfig;
    type Settings = AccessSettings;

    fn compile(config: AccessConfig, cx: &mut CompileContext<'_>) -> Option<AccessSettings> {
        if let Some(allow) = config.allow.as_ref().filter(|a| a.get_ref().is_empty()) {
            // Read literally it refuses everyone; read as "no allow list" it admits
            // everyone not denied. Neither guess is safe to make silently.
            cx.error_hint(
                Some(allow.span()),
                "allow",
                "an empty `allow` list would refuse every client",
                "list the networks to allow, or leave `allow` out to admit every address not denied",
            );
            return None;
        }
        let allow_list: &[Spanned<String>] = config.allow.as_ref().map_or(&[], |a| a.get_ref());
        if allow_list.is_empty() && config.deny.is_empty() {
            cx.error_hint(
                None,
                "",
                "an access policy needs `allow` or `deny`",
                "for example allow = [\"10.0.0.0/8\"]",
            );
            return None;
        }
        let allow = compile_list(allow_list, "allow", cx);
        let deny = compile_list(&config.deny, "deny", cx);
        if cx.has_errors() {
            return None;
        }
        Some(AccessSettings { allow, deny })
    }

    fn build(name: &str, settings: Arc<AccessSettings>) -> Arc<dyn Plugin> {
        Arc::new(AccessPlugin {
            name: name.into(),
            settings,
        })
    }
}

/// Errors reported for one list before the rest are summed up (a generated file with
/// thousands of bad entries should not bury the first ones, or take long to report).
const MAX_REPORTED: usize = 32;

/// The list's networks, sorted and without duplicates: order carries no meaning, so a
/// reordered list is the same policy (and keeps its instance across a reload).
fn compile_list(list: &[Spanned<String>], key: &str, cx: &mut CompileContext<'_>) -> Vec<Cidr> {
    let mut out = Vec::with_capacity(list.len());
    let mut bad = 0;
    for (i, entry) in list.iter().enumerate() {
        let key = format!("{key}[{i}]");
        match Cidr::parse(entry.get_ref()) {
            Some(c) => {
                if c.network() != c {
                    cx.warning(
                        Some(entry.span()),
                        &key,
                        format!(
                            "`{}` has host bits set; it means the network {}",
                            entry.get_ref(),
                            c.network()
                        ),
                    );
                }
                out.push(c.network());
            }
            None => {
                bad += 1;
                if bad <= MAX_REPORTED {
                    cx.error_hint(
                        Some(entry.span()),
                        &key,
                        format!("`{}` is not an IP address or network", entry.get_ref()),
                        "write an address or a network like \"10.0.0.0/8\" or \"2001:db8::/32\"",
                    );
                }
            }
        }
    }
    if bad > MAX_REPORTED {
        cx.error(
            None,
            key,
            format!(
                "{} more entries of `{key}` are not IP addresses or networks",
                bad - MAX_REPORTED
            ),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// An access policy instance.
pub struct AccessPlugin {
    name: Arc<str>,
    settings: Arc<AccessSettings>,
}

#[async_trait]
impl Plugin for AccessPlugin {
    fn kind(&self) -> &'static str {
        Access::SECTION
    }

    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn on_request(&self, req: &mut RequestView<'_>) -> Outcome {
        if self.settings.admits(req.client_ip) {
            Outcome::Continue
        } else {
            Outcome::Respond(
                Response::error(StatusCode::FORBIDDEN, DENIED)
                    .with_log_detail(format!("access policy \"{}\"", self.name)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(allow: &[&str], deny: &[&str]) -> AccessSettings {
        AccessSettings {
            allow: allow.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
            deny: deny.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn deny_wins_over_allow() {
        let s = settings(&["10.0.0.0/8"], &["10.0.13.0/24"]);
        assert!(s.admits(ip("10.1.1.1")));
        assert!(!s.admits(ip("10.0.13.7")));
        assert!(!s.admits(ip("192.168.1.1")));
        assert!(!s.admits(None));
    }

    #[test]
    fn deny_only_admits_the_rest() {
        let s = settings(&[], &["203.0.113.0/24", "2001:db8:bad::/48"]);
        assert!(s.admits(ip("198.51.100.1")));
        assert!(!s.admits(ip("203.0.113.9")));
        assert!(!s.admits(ip("2001:db8:bad::1")));
        assert!(s.admits(ip("2001:db8:900d::1")));
        assert!(s.admits(None));
    }

    #[test]
    fn compile_reports_every_bad_entry_and_warns_on_host_bits() {
        let cfg: AccessConfig =
            toml::from_str("allow = [\"10.1.2.3/8\", \"nope\"]\ndeny = [\"1.2.3.4/40\"]").unwrap();
        let mut cx = CompileContext::new(Path::new("."));
        assert!(Access::compile(cfg, &mut cx).is_none());
        let problems = cx.into_problems();
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["allow[0]", "allow[1]", "deny[0]"]);
        assert!(problems[0].message.contains("10.0.0.0/8"));
        assert!(problems[1].span.is_some());
    }

    #[test]
    fn order_and_duplicates_do_not_make_another_policy() {
        let compile = |src: &str| {
            let cfg: AccessConfig = toml::from_str(src).unwrap();
            Access::compile(cfg, &mut CompileContext::new(Path::new("."))).unwrap()
        };
        assert_eq!(
            compile("allow = [\"10.0.0.0/8\", \"192.0.2.1\"]"),
            compile("allow = [\"192.0.2.1\", \"10.0.0.0/8\", \"192.0.2.1/32\"]")
        );
    }

    #[test]
    fn a_flood_of_bad_entries_is_summed_up() {
        let entries: Vec<String> = (0..500).map(|i| format!("\"bad{i}\"")).collect();
        let cfg: AccessConfig = toml::from_str(&format!("deny = [{}]", entries.join(","))).unwrap();
        let mut cx = CompileContext::new(Path::new("."));
        assert!(Access::compile(cfg, &mut cx).is_none());
        let problems = cx.into_problems();
        assert_eq!(problems.len(), MAX_REPORTED + 1);
        assert!(problems[MAX_REPORTED].message.contains("468 more entries"));
    }

    #[test]
    fn an_empty_allow_list_is_an_error_not_a_guess() {
        let cfg: AccessConfig = toml::from_str("allow = []\ndeny = [\"10.0.0.1\"]").unwrap();
        let mut cx = CompileContext::new(Path::new("."));
        assert!(Access::compile(cfg, &mut cx).is_none());
        let p = cx.into_problems();
        assert_eq!(p[0].key, "allow");
        assert!(p[0].message.contains("empty `allow` list"));
    }

    #[test]
    fn empty_policy_is_an_error() {
        let cfg: AccessConfig = toml::from_str("").unwrap();
        let mut cx = CompileContext::new(Path::new("."));
        assert!(Access::compile(cfg, &mut cx).is_none());
        assert!(cx.has_errors());
    }
}
