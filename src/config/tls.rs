//! Listener certificates, checked when the config is compiled: the chain and key are read
//! and must belong together, the `hosts` entries must be names an SNI can carry, and the
//! certificate should be in date and cover those names.
//!
//! This module only checks; the server loads the files again when it binds the listener.
//! Checking here is what makes `ficus check` and a reload refuse a certificate whose key
//! does not match, instead of a gateway that starts and fails every handshake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use thiserror::Error;
use toml::Spanned;

use super::compiler::{span_of, Compiler};
use super::listeners::Certificate;
use super::raw::RawCertificate;
use crate::router::pattern::HostPattern;

const KEY: &str = "gateway.listen.tls.certificates";

/// Why a certificate entry cannot be served.
#[derive(Debug, Error)]
enum CertError {
    #[error("cannot read {what} file {}: {source}", .path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate file {} holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("certificate file {}: {message}", .path.display())]
    BadCertificate { path: PathBuf, message: String },
    #[error("key file {} holds no PEM private key", .0.display())]
    NoKey(PathBuf),
    #[error("key file {}: {message}", .path.display())]
    BadKey { path: PathBuf, message: String },
    #[error("certificate {} and key {} do not match", .cert.display(), .key.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

impl CertError {
    fn hint(&self) -> &'static str {
        match self {
            CertError::Read { .. } => "check the path; a relative path is resolved from the config file's directory",
            CertError::NoCertificate(_) => "`cert` needs a PEM file with `-----BEGIN CERTIFICATE-----` blocks, the server's certificate first; are `cert` and `key` swapped?",
            CertError::BadCertificate { .. } => "the first certificate in `cert` must be the server's own, in PEM",
            CertError::NoKey(_) | CertError::BadKey { .. } => "`key` needs a PEM private key (PKCS#8 `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`): RSA, ECDSA P-256/P-384 or Ed25519",
            CertError::Mismatch { .. } => "every handshake would fail; pair the certificate with the key it was issued for",
        }
    }
}

/// The certificate chain and key of one entry, read and matched.
fn load(cert: &Path, key: &Path) -> Result<Vec<Vec<u8>>, CertError> {
    use rustls_pki_types::pem::{self, PemObject};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read = |what, path: &Path| {
        ficus_plugins::files::read_bounded(path).map_err(|source| CertError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("key", key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::BadCertificate {
            path: cert.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate(cert.to_path_buf()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => CertError::NoKey(key.to_path_buf()),
        e => CertError::BadKey {
            path: key.to_path_buf(),
            message: e.to_string(),
        },
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| {
        CertError::BadKey {
            path: key.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    let ders = chain.iter().map(|c| c.to_vec()).collect();
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CertError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })
        }
        // `Unknown`: the key type cannot tell its public key; rustls serves it unchecked.
        _ => Ok(ders),
    }
}

/// An SNI name from `hosts`, or why it can never match. SNI carries a DNS name without a
/// trailing dot (RFC 6066), compared case-insensitively.
enum SniName {
    Valid(String),
    /// Valid once the trailing dot is dropped.
    TrailingDot(String),
}

fn sni_name(raw: &str) -> Result<SniName, (String, &'static str)> {
    let h = raw.to_ascii_lowercase();
    if h.is_empty() {
        return Err((
            "an empty host never matches an SNI name".into(),
            "remove it; clients that send no SNI get the listener's first certificate",
        ));
    }
    if h == "*" || h == "*." {
        return Err((
            format!("`{raw}` is not a wildcard for every name"),
            "a certificate for every other name goes first in the list: the first certificate serves every name no other certificate claims",
        ));
    }
    let bare = h.strip_suffix('.').unwrap_or(&h);
    let ip = bare
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .unwrap_or(bare);
    if ip.parse::<IpAddr>().is_ok() {
        return Err((
            format!("`{raw}` is an IP address, and SNI never carries one (RFC 6066)"),
            "remove it; clients that connect by IP address send no SNI and get the listener's first certificate",
        ));
    }
    if h.trim() != h {
        return Err((
            format!("`{raw}` has spaces around it"),
            "write the name without spaces",
        ));
    }
    if let Err(e) = HostPattern::parse(&h) {
        return Err((
            format!("`{raw}` can never match an SNI name: {e}"),
            "write an exact name (`shop.example`) or one leading wildcard label (`*.shop.example`)",
        ));
    }
    if bare.ends_with('.') || bare.is_empty() {
        return Err((
            format!("`{raw}` has an empty label"),
            "write an exact name (`shop.example`) or one leading wildcard label (`*.shop.example`)",
        ));
    }
    Ok(if bare.len() < h.len() {
        SniName::TrailingDot(bare.to_string())
    } else {
        SniName::Valid(h)
    })
}

/// Whether a certificate's DNS SAN (lowercase, without trailing dot) covers a `hosts` name.
fn san_covers(san: &str, host: &str) -> bool {
    if san == host {
        return true;
    }
    // A wildcard SAN covers exactly one label (RFC 6125 §6.4.3); a wildcard host entry is
    // only covered by the same wildcard SAN.
    match (san.strip_prefix("*."), host.starts_with("*.")) {
        (Some(suffix), false) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        _ => false,
    }
}

/// Warnings about the server's own certificate: out of its validity period, or not
/// covering some of `hosts`.
fn check_end_entity(
    c: &mut Compiler<'_>,
    span: Range<usize>,
    cert_path: &Path,
    der: &[u8],
    hosts: &[String],
) {
    let file = cert_path.display();
    let cert = match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert,
        Err(e) => {
            c.d.error_hint(
                span,
                KEY,
                format!("certificate file {file}: the first certificate cannot be parsed: {e}"),
                "the first certificate in `cert` must be the server's own X.509 certificate",
            );
            return;
        }
    };
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        c.d.warning(
            span.clone(),
            KEY,
            format!(
                "certificate {file} expired on {} (notAfter)",
                utc(validity.not_after)
            ),
            Some("clients will refuse it; renew the certificate".into()),
        );
    } else if now < validity.not_before {
        c.d.warning(
            span.clone(),
            KEY,
            format!(
                "certificate {file} is not valid before {} (notBefore)",
                utc(validity.not_before)
            ),
            Some(
                "clients will refuse it until then; check the issuer's or this host's clock".into(),
            ),
        );
    }
    if hosts.is_empty() {
        return;
    }
    let sans: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    Some(d.to_ascii_lowercase().trim_end_matches('.').to_string())
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let uncovered: Vec<&str> = hosts
        .iter()
        .filter(|h| !sans.iter().any(|s| san_covers(s, h)))
        .map(String::as_str)
        .collect();
    if !uncovered.is_empty() {
        let names = if sans.is_empty() {
            "no DNS names".to_string()
        } else {
            format!("only {}", sans.join(", "))
        };
        c.d.warning(
            span,
            KEY,
            format!(
                "certificate {file} does not cover {} listed in `hosts`: its subjectAltName has {names}",
                uncovered.join(", ")
            ),
            Some("clients will refuse it for those names; list the certificate issued for them, or get one that covers them".into()),
        );
    }
}

fn utc(t: x509_parser::time::ASN1Time) -> String {
    let dt = t.to_datetime();
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        dt.date(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Compiles the certificate entries of one TLS listener. Entries whose files cannot be
/// served are errors at the entry; odd `hosts` entries are errors or warnings at the name.
pub(super) fn compile_certificates(
    c: &mut Compiler<'_>,
    entries: &[Spanned<RawCertificate>],
) -> Vec<Certificate> {
    let mut certs = Vec::new();
    // Normalised name -> index of the first certificate that lists it. Later listings are
    // dropped, so the first one serves the name (exact and wildcard names alike).
    let mut claimed: HashMap<String, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let span = span_of(entry);
        let raw = entry.get_ref();
        let cert_path = c.resolve_path(&raw.cert);
        let key_path = c.resolve_path(&raw.key);
        let mut hosts = Vec::new();
        for h in &raw.hosts {
            let hspan = span_of(h);
            let name = match sni_name(h.get_ref()) {
                Ok(SniName::Valid(n)) => n,
                Ok(SniName::TrailingDot(n)) => {
                    c.d.warning(
                        hspan.clone(),
                        format!("{KEY}.hosts"),
                        format!(
                            "`{}` ends in a dot, which SNI names never carry; read as `{n}`",
                            h.get_ref()
                        ),
                        Some(format!("write `{n}`")),
                    );
                    n
                }
                Err((message, hint)) => {
                    c.d.error_hint(hspan, format!("{KEY}.hosts"), message, hint);
                    continue;
                }
            };
            match claimed.get(&name) {
                Some(&first) => {
                    let which = if first == i {
                        "twice for this certificate".to_string()
                    } else {
                        format!(
                            "for certificates {} and {} of this listener; certificate {} serves it",
                            first + 1,
                            i + 1,
                            first + 1
                        )
                    };
                    c.d.warning(
                        hspan,
                        format!("{KEY}.hosts"),
                        format!("`{name}` is listed {which}"),
                        Some("list each name once, under the certificate that covers it".into()),
                    );
                }
                None => {
                    claimed.insert(name.clone(), i);
                    hosts.push(name);
                }
            }
        }
        match load(&cert_path, &key_path) {
            Ok(chain) => {
                if let Some(der) = chain.first() {
                    check_end_entity(c, span, &cert_path, der, &hosts);
                }
            }
            Err(e) => c.d.error_hint(span, KEY, e.to_string(), e.hint()),
        }
        certs.push(Certificate {
            cert_path,
            key_path,
            hosts,
        });
    }
    certs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(h: &str) -> Option<String> {
        match sni_name(h) {
            Ok(SniName::Valid(n)) => Some(n),
            _ => None,
        }
    }

    #[test]
    fn sni_names() {
        assert_eq!(valid("Shop.Example").as_deref(), Some("shop.example"));
        assert_eq!(valid("*.shop.example").as_deref(), Some("*.shop.example"));
        assert!(
            matches!(sni_name("shop.example."), Ok(SniName::TrailingDot(n)) if n == "shop.example")
        );
        for bad in [
            "",
            "*",
            "*.",
            "a*.shop.example",
            "*.*.shop.example",
            "sh op.example",
            " shop.example",
            "127.0.0.1",
            "::1",
            "[::1]",
            "127.0.0.1.",
            "shop.example..",
            ".shop.example",
            "shop.example:443",
            "shop.éxample",
            "-shop.example",
        ] {
            assert!(sni_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn wildcard_sans_cover_one_label() {
        assert!(san_covers("shop.example", "shop.example"));
        assert!(san_covers("*.shop.example", "api.shop.example"));
        assert!(!san_covers("*.shop.example", "a.b.shop.example"));
        assert!(!san_covers("*.shop.example", "shop.example"));
        assert!(san_covers("*.shop.example", "*.shop.example"));
        assert!(!san_covers("api.shop.example", "*.shop.example"));
        assert!(!san_covers("api.example", "shop.example"));
    }
}
