//! Which kind of route a request is: answered by the gateway, public, or protected.
//!
//! The rule this module keeps: the decision is made on the raw path exactly as it will be
//! forwarded, and any path that another HTTP stack could read differently (dot segments,
//! percent-encoded `/`, `\`, `.`, `;` or `%`, backslashes, NUL and other control bytes, invalid
//! escapes, escapes that do not decode to valid UTF-8, overlong forms among them) is refused with
//! 400 instead of being normalised. Matching is case-sensitive.

use std::fmt;

/// Where a request goes after its path is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// `/api/auth/*`: answered by the gateway itself, never forwarded.
    AuthApi,
    /// `/.well-known/jwks.json`: the gateway's public keys.
    Jwks,
    /// Listed in `auth.public_paths`: forwarded without a credential and without `X-User-Id`.
    Public,
    /// Everything else: forwarded only with a valid credential.
    Protected,
    /// The browser pages under `web.prefix` (`/_auth` by default), answered by the gateway.
    Web,
    /// `{web.prefix}/verify`: forward-auth, the decision for a request an ingress proxies itself.
    Verify,
}

impl RouteClass {
    /// A stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::AuthApi => "auth_api",
            RouteClass::Jwks => "jwks",
            RouteClass::Public => "public",
            RouteClass::Protected => "protected",
            RouteClass::Web => "web",
            RouteClass::Verify => "verify",
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotOriginForm,
    DotSegment,
    EncodedDelimiter,
    Backslash,
    ControlByte,
    BadEscape,
    /// Decoded, the path is not UTF-8: a stray byte, a truncated sequence, or an overlong form
    /// such as `%c0%ae` (a `.` to a decoder that accepts them).
    BadUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "the request target must be a path starting with /",
            PathError::DotSegment => "the path contains a . or .. segment",
            PathError::EncodedDelimiter => "the path contains a percent-encoded /, \\, ., ; or %",
            PathError::Backslash => "the path contains a backslash",
            PathError::ControlByte => "the path contains a NUL or control byte",
            PathError::BadEscape => "the path contains an invalid percent escape",
            PathError::BadUtf8 => "the path does not decode to valid UTF-8",
        })
    }
}

/// Refuse any path whose meaning another parser could read differently.
pub fn check_path(path: &str) -> Result<(), PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let mut i = 0;
    // Whether any byte, raw or decoded, is outside ASCII: only then is the decoded path checked
    // for UTF-8 (the common path allocates nothing).
    let mut non_ascii = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
            b if b < 0x20 || b == 0x7f => return Err(PathError::ControlByte),
            b if b >= 0x80 => non_ascii = true,
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) else {
                    return Err(PathError::BadEscape);
                };
                match (h << 4) | l {
                    // `;` too: a server that decodes once and then drops `;params` reads
                    // `/docs/..%3b/x` as `/docs/../x`.
                    b'/' | b'\\' | b'.' | b'%' | b';' => return Err(PathError::EncodedDelimiter),
                    d if d < 0x20 || d == 0x7f => return Err(PathError::ControlByte),
                    d if d >= 0x80 => non_ascii = true,
                    _ => {}
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if non_ascii && std::str::from_utf8(&percent_decode(bytes)).is_err() {
        return Err(PathError::BadUtf8);
    }
    if memchr::memchr(b'.', bytes).is_none() {
        return Ok(());
    }
    for segment in path.split('/') {
        // `..;x` is `..` to servlet containers: parameters do not hide a dot segment.
        let name = segment.split(';').next().unwrap_or(segment);
        if name == "." || name == ".." {
            return Err(PathError::DotSegment);
        }
    }
    Ok(())
}

/// The bytes a path stands for, its escapes decoded once (they were checked to be well formed).
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h << 4) | l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `/docs/*`: `/docs` itself and anything below `/docs/`. Stored as `/docs`.
    Prefix(String),
}

/// Why an `auth.public_paths` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "`{0}` is not an exact path or a `prefix/*` pattern (it must start with /, hold no *, ?, dot segment or escape)"
    )]
    NotAPattern(String),
    #[error("`{0}` overlaps /api/auth/*, which the gateway answers itself")]
    AuthApi(String),
}

/// The `auth.public_paths` patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicPaths(Vec<Pattern>);

impl PublicPaths {
    pub fn parse(patterns: &[String]) -> Result<Self, PatternError> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let (base, prefix) = match p.strip_suffix("/*") {
                Some(base) => (base, true),
                None => (p.as_str(), false),
            };
            let checked = if base.is_empty() { "/" } else { base };
            if base.contains('*') || base.contains('?') || check_path(checked).is_err() {
                return Err(PatternError::NotAPattern(p.clone()));
            }
            if base.starts_with("/api/auth") {
                return Err(PatternError::AuthApi(p.clone()));
            }
            out.push(if prefix {
                Pattern::Prefix(base.to_owned())
            } else {
                Pattern::Exact(base.to_owned())
            });
        }
        Ok(PublicPaths(out))
    }

    pub fn matches(&self, path: &str) -> bool {
        self.0.iter().any(|p| match p {
            Pattern::Exact(e) => path == e,
            Pattern::Prefix(base) => under(path, base),
        })
    }

    /// Whether every path `other` matches, this matches too (a policy rule shadowed by an earlier
    /// one). Empty lists: nothing is covered by none, everything covers none.
    pub fn covers(&self, other: &PublicPaths) -> bool {
        other.0.iter().all(|p| match p {
            Pattern::Exact(e) => self.matches(e),
            Pattern::Prefix(b) => self.0.iter().any(|q| matches!(q, Pattern::Prefix(a) if under(b, a))),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each pattern's path, and whether it is a `prefix/*` (stored without the `/*`).
    pub fn patterns(&self) -> impl Iterator<Item = (&str, bool)> {
        self.0.iter().map(|p| match p {
            Pattern::Exact(e) => (e.as_str(), false),
            Pattern::Prefix(b) => (b.as_str(), true),
        })
    }
}

/// `path` is `base` or below `base/`.
fn under(path: &str, base: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Classify a path that [`check_path`] accepted.
pub fn classify(path: &str, public: &PublicPaths, web_prefix: &str) -> RouteClass {
    let under_prefix = path.strip_prefix(web_prefix);
    if path == "/api/auth" || path.starts_with("/api/auth/") {
        RouteClass::AuthApi
    } else if under_prefix == Some("/verify") {
        RouteClass::Verify
    } else if under_prefix.is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
        RouteClass::Web
    } else if path == "/.well-known/jwks.json" {
        RouteClass::Jwks
    } else if public.matches(path) {
        RouteClass::Public
    } else {
        RouteClass::Protected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(p: &[&str]) -> PublicPaths {
        PublicPaths::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (path, err) in [
            ("/api/auth/../x", PathError::DotSegment),
            ("/./x", PathError::DotSegment),
            ("/x/..", PathError::DotSegment),
            ("/x/..;jsessionid=1/y", PathError::DotSegment),
            ("/a%2fb", PathError::EncodedDelimiter),
            ("/a%2Fb", PathError::EncodedDelimiter),
            ("/a%5cb", PathError::EncodedDelimiter),
            ("/%2e%2e/x", PathError::EncodedDelimiter),
            ("/a%252fb", PathError::EncodedDelimiter),
            ("/a\\b", PathError::Backslash),
            ("/a%00b", PathError::ControlByte),
            ("/a%0d%0ab", PathError::ControlByte),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/docs/..%3b/api/admin", PathError::EncodedDelimiter),
            ("/docs/..%3B/api/admin", PathError::EncodedDelimiter),
            ("/docs/..%3bjsessionid=1/api/admin", PathError::EncodedDelimiter),
            ("/docs/%c0%ae%c0%ae/api/admin", PathError::BadUtf8),
            ("/docs/%C0%AE/x", PathError::BadUtf8),
            ("/a%e0%80%ae", PathError::BadUtf8),
            ("/a%ff", PathError::BadUtf8),
            ("/a%c3", PathError::BadUtf8),
            ("/a%ed%a0%80", PathError::BadUtf8),
            ("*", PathError::NotOriginForm),
            ("", PathError::NotOriginForm),
        ] {
            assert_eq!(check_path(path), Err(err), "{path}");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "/",
            "/api/search",
            "/a/b.c/d..e",
            "/a;b/c",
            "/%41pi",
            "/caf%c3%a9",
            "/%e2%82%ac",
            "//x",
            "/.well-known/jwks.json",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn public_prefix_matches_itself_and_below_only() {
        let p = public(&["/docs/*", "/api/health"]);
        assert!(p.matches("/docs"));
        assert!(p.matches("/docs/"));
        assert!(p.matches("/docs/a/b"));
        assert!(!p.matches("/docsx"));
        assert!(!p.matches("/Docs/a"));
        assert!(p.matches("/api/health"));
        assert!(!p.matches("/api/health/x"));
        assert!(!p.matches("/api/healthz"));
        assert!(!p.matches("/API/health"));
    }

    #[test]
    fn auth_api_is_gateway_owned() {
        let p = public(&[]);
        assert_eq!(classify("/api/auth/login", &p, "/_auth"), RouteClass::AuthApi);
        assert_eq!(classify("/api/auth", &p, "/_auth"), RouteClass::AuthApi);
        assert_eq!(classify("/api/authx", &p, "/_auth"), RouteClass::Protected);
        assert_eq!(classify("/api/search", &p, "/_auth"), RouteClass::Protected);
        assert_eq!(classify("/_auth/sign-in", &p, "/_auth"), RouteClass::Web);
        assert_eq!(classify("/_auth", &p, "/_auth"), RouteClass::Web);
        assert_eq!(classify("/_auth/verify", &p, "/_auth"), RouteClass::Verify);
        assert_eq!(classify("/_auth/verify/", &p, "/_auth"), RouteClass::Web);
        assert_eq!(classify("/_auth/verifyx", &p, "/_auth"), RouteClass::Web);
        assert_eq!(classify("/_authx/sign-in", &p, "/_auth"), RouteClass::Protected);
    }

    #[test]
    fn bad_public_patterns_are_refused() {
        for p in ["docs", "/docs*", "/a/*/b", "/a/../b", "/api/auth/*"] {
            assert!(PublicPaths::parse(&[p.to_string()]).is_err(), "{p}");
        }
    }
}
