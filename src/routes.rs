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
    /// `auth.api_prefix` and below (`/api/auth/*` by default), except `auth.backend_paths`: answered
    /// by the gateway itself, never forwarded.
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
    #[error(
        "`{pattern}` is under {prefix}, which the gateway answers itself, and auth.backend_paths does not give it to the backend"
    )]
    AuthApi { pattern: String, prefix: Box<str> },
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
            out.push(if prefix {
                Pattern::Prefix(base.to_owned())
            } else {
                Pattern::Exact(base.to_owned())
            });
        }
        Ok(PublicPaths(out))
    }

    pub fn matches(&self, path: &str) -> bool {
        self.0.iter().any(|p| p.matches(path))
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

/// The endpoints `api::handle` answers, below `auth.api_prefix` (`/tokens/{id}` stands for every
/// path below `/tokens/`). `check-config` refuses a backend path that takes one of them.
pub const API_ENDPOINTS: [&str; 8] = [
    "/register",
    "/login",
    "/me",
    "/refresh",
    "/logout",
    "/password",
    "/tokens",
    "/tokens/{id}",
];

/// Where the gateway's own JSON API lives: `auth.api_prefix` and below, less `auth.backend_paths`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPaths {
    prefix: Box<str>,
    backend: PublicPaths,
}

impl Default for ApiPaths {
    fn default() -> Self {
        ApiPaths {
            prefix: DEFAULT_API_PREFIX.into(),
            backend: PublicPaths::default(),
        }
    }
}

/// `auth.api_prefix` unless configured: where the seed documents register, login and me.
pub const DEFAULT_API_PREFIX: &str = "/api/auth";

/// Why `auth.api_prefix` or `auth.backend_paths` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiPathsError {
    #[error("`{0}` is not a backend path below auth.api_prefix (`{1}`)")]
    Outside(String, Box<str>),
    #[error("`{pattern}` would take authgate's own endpoint {endpoint}")]
    TakesEndpoint { pattern: String, endpoint: String },
}

impl ApiPaths {
    /// `prefix` must be [`is_plain_prefix`]; `backend` are exact paths or `prefix/*` patterns
    /// below it, none matching an endpoint of [`API_ENDPOINTS`].
    pub fn new(prefix: &str, backend: PublicPaths) -> Result<Self, ApiPathsError> {
        for p in &backend.0 {
            // `{prefix}/*` is below it, and then refused for taking every endpoint.
            let outside = match p {
                Pattern::Exact(e) => e.as_str() == prefix || !under(e, prefix),
                Pattern::Prefix(b) => !under(b, prefix),
            };
            if outside {
                return Err(ApiPathsError::Outside(p.to_string(), prefix.into()));
            }
        }
        for endpoint in API_ENDPOINTS {
            let takes: Box<dyn Fn(&Pattern) -> bool> = match endpoint.strip_suffix("/{id}") {
                // Every path below it: a pattern reaching below it takes some.
                Some(parent) => {
                    let parent = format!("{prefix}{parent}");
                    Box::new(move |p: &Pattern| {
                        let (Pattern::Exact(b) | Pattern::Prefix(b)) = p;
                        p.matches(&format!("{parent}/x")) || (b.as_str() != parent && under(b, &parent))
                    })
                }
                None => {
                    let path = format!("{prefix}{endpoint}");
                    Box::new(move |p: &Pattern| p.matches(&path))
                }
            };
            if let Some(p) = backend.0.iter().find(|p| takes(p)) {
                return Err(ApiPathsError::TakesEndpoint {
                    pattern: p.to_string(),
                    endpoint: format!("{prefix}{endpoint}"),
                });
            }
        }
        Ok(ApiPaths {
            prefix: prefix.into(),
            backend,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the gateway answers `path` itself.
    pub fn answers(&self, path: &str) -> bool {
        under(path, &self.prefix) && !self.backend.matches(path)
    }

    /// Refuse a pattern list (`auth.public_paths`, a policy rule's paths) that opens a path the
    /// gateway answers itself. A pattern above the prefix (`/api/*`) is fine: the API is matched first.
    pub fn check_outside(&self, patterns: &PublicPaths) -> Result<(), PatternError> {
        for p in &patterns.0 {
            let open = match p {
                Pattern::Exact(e) => self.answers(e),
                Pattern::Prefix(b) => under(b, &self.prefix) && !self.backend.covers(&PublicPaths(vec![p.clone()])),
            };
            if open {
                return Err(PatternError::AuthApi {
                    pattern: p.to_string(),
                    prefix: self.prefix.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A prefix the gateway can own (`web.prefix`, `auth.api_prefix`): a leading `/`, no trailing
/// `/`, letters, digits, `_ - .` and `/`, and no dot segment.
pub fn is_plain_prefix(prefix: &str) -> bool {
    prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && !prefix.contains("//")
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'))
        && check_path(prefix).is_ok()
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Exact(e) => path == e,
            Pattern::Prefix(base) => under(path, base),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(e) => f.write_str(e),
            Pattern::Prefix(b) => write!(f, "{b}/*"),
        }
    }
}

/// `path` is `base` or below `base/`.
fn under(path: &str, base: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Classify a path that [`check_path`] accepted.
pub fn classify(path: &str, api: &ApiPaths, public: &PublicPaths, web_prefix: &str) -> RouteClass {
    let under_prefix = path.strip_prefix(web_prefix);
    if api.answers(path) {
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
        let classify = |path, p, w| classify(path, &ApiPaths::default(), p, w);
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
        for p in ["docs", "/docs*", "/a/*/b", "/a/../b"] {
            assert!(PublicPaths::parse(&[p.to_string()]).is_err(), "{p}");
        }
    }

    fn api(prefix: &str, backend: &[&str]) -> Result<ApiPaths, ApiPathsError> {
        ApiPaths::new(prefix, public(backend))
    }

    #[test]
    fn backend_paths_under_the_api_prefix_are_forwarded() {
        let a = api("/api/auth", &["/api/auth/callback", "/api/auth/cli/*"]).unwrap();
        let p = public(&[]);
        assert_eq!(classify("/api/auth/login", &a, &p, "/_auth"), RouteClass::AuthApi);
        assert_eq!(classify("/api/auth/callback", &a, &p, "/_auth"), RouteClass::Protected);
        assert_eq!(classify("/api/auth/callback/x", &a, &p, "/_auth"), RouteClass::AuthApi);
        assert_eq!(classify("/api/auth/cli", &a, &p, "/_auth"), RouteClass::Protected);
        assert_eq!(classify("/api/auth/cli/token", &a, &p, "/_auth"), RouteClass::Protected);
        let open = public(&["/api/auth/callback"]);
        assert_eq!(classify("/api/auth/callback", &a, &open, "/_auth"), RouteClass::Public);

        let moved = api("/gw/auth", &[]).unwrap();
        assert_eq!(classify("/gw/auth/login", &moved, &p, "/_auth"), RouteClass::AuthApi);
        assert_eq!(classify("/api/auth/login", &moved, &p, "/_auth"), RouteClass::Protected);
    }

    #[test]
    fn backend_paths_that_take_an_endpoint_or_leave_the_prefix_are_refused() {
        for (backend, endpoint) in [
            ("/api/auth/login", "/api/auth/login"),
            ("/api/auth/*", "/api/auth/register"),
            ("/api/auth/tokens/*", "/api/auth/tokens"),
            ("/api/auth/tokens/abc", "/api/auth/tokens/{id}"),
        ] {
            let err = api("/api/auth", &[backend]).unwrap_err();
            assert_eq!(
                err,
                ApiPathsError::TakesEndpoint {
                    pattern: backend.into(),
                    endpoint: endpoint.into()
                }
            );
        }
        for outside in ["/api/callback", "/api/authx/y", "/api/auth"] {
            assert!(
                matches!(api("/api/auth", &[outside]), Err(ApiPathsError::Outside(..))),
                "{outside}"
            );
        }
    }

    #[test]
    fn public_paths_may_not_open_the_gateways_api() {
        let a = api("/api/auth", &["/api/auth/callback", "/api/auth/cli/*"]).unwrap();
        for ok in [
            "/api/*",
            "/api/auth/callback",
            "/api/auth/cli/*",
            "/api/auth/cli/x",
            "/api/authx",
        ] {
            assert_eq!(a.check_outside(&public(&[ok])), Ok(()), "{ok}");
        }
        for bad in ["/api/auth/*", "/api/auth/login", "/api/auth", "/api/auth/callback/*"] {
            assert!(a.check_outside(&public(&[bad])).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_prefixes() {
        for ok in ["/api/auth", "/gw/auth", "/_auth", "/a.b-c_d"] {
            assert!(is_plain_prefix(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "api/auth",
            "/api/auth/",
            "/api//auth",
            "/api/../auth",
            "/api/a*",
            "/api/a%2e",
            "/a b",
        ] {
            assert!(!is_plain_prefix(bad), "{bad}");
        }
    }
}
