//! Secrets an auth policy needs (an HMAC key, a client secret): read from a file or an
//! environment variable, never written in routes.toml, never printed.

use std::fmt;
use toml::Spanned;

use crate::CompileContext;

/// Secret bytes. `Debug` prints their length only; equality compares them (a changed secret
/// file is a changed policy).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// As text (client secrets); `None` when it is not UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

/// Where a kind's config may name a secret: `NAME_file`, `NAME_env`, and the inline `NAME`
/// that is refused.
pub struct SecretKeys<'a> {
    /// The key's base name (`secret`, `client_secret`).
    pub name: &'static str,
    pub file: Option<&'a Spanned<String>>,
    pub env: Option<&'a Spanned<String>>,
    /// Whatever was written inline: refused, whatever its type.
    pub inline: Option<&'a Spanned<toml::Value>>,
}

impl SecretKeys<'_> {
    pub fn is_given(&self) -> bool {
        self.file.is_some() || self.env.is_some() || self.inline.is_some()
    }

    /// Reads the secret; reports an inline one, both sources, an unreadable file, an unset
    /// or empty variable. `None` when nothing usable was given (reported unless absent).
    pub fn read(&self, cx: &mut CompileContext<'_>) -> Option<Secret> {
        let name = self.name;
        if let Some(v) = self.inline {
            cx.error_hint(
                Some(v.span()),
                name,
                format!("`{name}` is never written in routes.toml"),
                format!(
                    "put it in a file readable by ficus and name it with `{name}_file`, or in an environment variable named by `{name}_env`"
                ),
            );
            return None;
        }
        match (self.file, self.env) {
            (Some(f), Some(_)) => {
                cx.error(
                    Some(f.span()),
                    &format!("{name}_file"),
                    format!("give `{name}_file` or `{name}_env`, not both"),
                );
                None
            }
            (Some(f), None) => {
                let path = cx.resolve_path(f.get_ref());
                match crate::files::read_bounded(&path) {
                    Ok(mut bytes) => {
                        // A file written by `echo` ends in a newline that is not part of it.
                        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                            bytes.pop();
                        }
                        if bytes.is_empty() {
                            cx.error(
                                Some(f.span()),
                                &format!("{name}_file"),
                                format!("{} is empty", path.display()),
                            );
                            return None;
                        }
                        if world_readable(&path) {
                            cx.warning(
                                Some(f.span()),
                                &format!("{name}_file"),
                                format!(
                                    "{} can be read by every user of this machine; `chmod 600` it",
                                    path.display()
                                ),
                            );
                        }
                        Some(Secret(bytes))
                    }
                    Err(e) => {
                        cx.error(
                            Some(f.span()),
                            &format!("{name}_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (None, Some(e)) => match std::env::var(e.get_ref()) {
                Ok(v) if !v.trim().is_empty() => Some(Secret(v.into_bytes())),
                Ok(_) => {
                    cx.error(
                        Some(e.span()),
                        &format!("{name}_env"),
                        format!("environment variable `{}` is empty", e.get_ref()),
                    );
                    None
                }
                Err(_) => {
                    cx.error_hint(
                        Some(e.span()),
                        &format!("{name}_env"),
                        format!("environment variable `{}` is not set", e.get_ref()),
                        "export it before starting ficus",
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }
}

/// Whether every user may read the file (mode `o+r`).
fn world_readable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret(b"hunter2hunter2".to_vec());
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("14 bytes"));
    }
}
