//! Header rewriting between client and backend: what is stripped, what is injected.
//!
//! The rule this module keeps (after linkerd2-proxy): [`rewrite_request`], called only by the
//! identity step (`proxy::identity`), always removes whatever the client sent first (any spelling
//! of `X-User-Id`, with `_` read as `-`, and every credential the authenticator named), and only
//! then inserts the gateway's own headers, so `Connection` can never remove a header the gateway
//! adds.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

pub use crate::config::identity_name;

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus the legacy `Keep-Alive` and `Proxy-Connection`
/// (RFC 9112 §9.6, RFC 7230 appendix A.1.2) and `HTTP2-Settings`, which only means something
/// beside an `Upgrade: h2c` (RFC 7540 §3.2.1). Never forwarded in either direction. (`Upgrade` is
/// written again by the gateway for a WebSocket handshake, and only then.)
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Headers only the gateway may set: a client's copy is always dropped. (Every other
/// `X-Forwarded-*` but `X-Forwarded-For` is dropped too; see [`rewrite_request`].)
static GATEWAY_OWNED: [HeaderName; 4] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-request-id"),
];

/// Identity headers, compared case-insensitively with `_` read as `-` (CGI-style servers merge
/// them). A client's copy is always dropped: the gateway's own two, and those that backends and
/// other auth proxies trust as the caller's identity: oauth2-proxy's `X-Auth-Request-*` and
/// `X-Forwarded-{User,Email,Groups,Preferred-Username,Access-Token}`, Authelia's and Apache's
/// `Remote-*`, the Kubernetes authenticating proxy's `X-Remote-*`, Grafana's `X-WEBAUTH-*`, and
/// RAG Modulo's `X-User-Role` and `X-User-UUID`, which its middleware reads in its bypass modes.
/// A trailing `*` makes a prefix. `auth.identity_headers` adds more.
static IDENTITY: [&str; 17] = [
    "x-user-id",
    "x-auth-assertion",
    "x-auth-request-*",
    "remote-*",
    "x-remote-*",
    "x-webauth-*",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-user",
    "x-user-email",
    "x-userid",
    "x-authenticated-user",
    "x-user-role",
    "x-user-uuid",
];

pub static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub static X_AUTH_ASSERTION: HeaderName = HeaderName::from_static("x-auth-assertion");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether `name` is an identity header in any spelling: built in, or one of `extra` (normalised
/// by [`identity_name`]).
fn is_identity(name: &HeaderName, extra: &[Box<str>]) -> bool {
    let n = name.as_str().as_bytes();
    // Every built-in name starts with `x` or `r`: most headers are ruled out by one comparison.
    let built_in = matches!(n.first(), Some(b'x' | b'X' | b'r' | b'R')) && IDENTITY.iter().any(|p| spells(p, n));
    built_in || extra.iter().any(|p| spells(p, n))
}

/// Whether header name `n` spells `pattern` (lowercase, `-`; a trailing `*` matches any rest),
/// reading `_` as `-` and ignoring case.
fn spells(pattern: &str, n: &[u8]) -> bool {
    let same = |a: u8, b: u8| a == if b == b'_' { b'-' } else { b.to_ascii_lowercase() };
    match pattern.strip_suffix('*') {
        Some(prefix) => n.len() > prefix.len() && prefix.bytes().zip(n).all(|(a, &b)| same(a, b)),
        None => pattern.len() == n.len() && pattern.bytes().zip(n).all(|(a, &b)| same(a, b)),
    }
}

/// The headers to drop from a map, found in one pass over its names: those `drop` picks, every
/// hop-by-hop header, and every header `Connection` names. Most messages drop one or two, so this
/// is cheaper than removing each candidate by name (each removal hashes the name).
fn to_drop(headers: &HeaderMap, mut drop: impl FnMut(&HeaderName) -> bool) -> SmallVec<[HeaderName; 4]> {
    let mut gone = SmallVec::new();
    let mut has_connection = false;
    for name in headers.keys() {
        has_connection |= name == header::CONNECTION;
        if HOP_BY_HOP.contains(name) || drop(name) {
            gone.push(name.clone());
        }
    }
    if has_connection {
        let named = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // The usual `keep-alive` and `upgrade` are hop-by-hop already.
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("upgrade"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok());
        for name in named {
            if headers.contains_key(&name) && !gone.contains(&name) {
                gone.push(name);
            }
        }
    }
    gone
}

fn remove_all(headers: &mut HeaderMap, names: &[HeaderName]) {
    for name in names {
        headers.remove(name);
    }
}

/// What the gateway knows about the request it forwards.
pub struct Forwarding<'a> {
    /// The peer's address, as a header value.
    pub peer: &'a HeaderValue,
    /// The peer is a listed proxy: its `X-Forwarded-For` and `Forwarded` are kept and extended.
    pub trusted_peer: bool,
    pub proto: &'static str,
    /// The host the client asked for (`Host` or `:authority`).
    pub host: Option<HeaderValue>,
    pub user: Option<&'a crate::auth::principal::UserId>,
    pub request_id: &'a HeaderValue,
    /// A WebSocket handshake: `Connection: upgrade` and `Upgrade: websocket` are passed on.
    pub upgrade: bool,
    /// `auth.identity_headers`: more identity names to strip.
    pub extra_identity: &'a [Box<str>],
    /// The credential material the authenticator found: its headers are dropped here.
    pub strip: crate::auth::Strip,
    /// The peer's address, for the log line about stripped identity headers.
    pub peer_ip: IpAddr,
}

/// Rewrite a request's headers for the backend. Returns how many client identity headers were dropped.
pub fn rewrite_request(headers: &mut HeaderMap, fwd: &Forwarding<'_>) -> usize {
    // Behind a trusted proxy that ended TLS, the client spoke its scheme, not ours.
    let proto = if fwd.trusted_peer {
        forwarded_proto(headers).unwrap_or(fwd.proto)
    } else {
        fwd.proto
    };
    let mut spoofed = 0;
    let gone = to_drop(headers, |name| {
        if is_identity(name, fwd.extra_identity) {
            spoofed += 1;
            return true;
        }
        fwd.strip.headers().contains(name)
            || GATEWAY_OWNED.contains(name)
            // The backend is reached by its own authority; the client's goes in X-Forwarded-Host.
            || name == header::HOST
            // Every other X-Forwarded-* is the gateway's to set.
            || (name.as_str().starts_with("x-forwarded-") && *name != X_FORWARDED_FOR)
            // Nothing an untrusted client says about the path it came by is passed on.
            || (!fwd.trusted_peer && (*name == X_FORWARDED_FOR || name == header::FORWARDED))
    });
    remove_all(headers, &gone);
    if fwd.strip.session_cookie {
        strip_own_cookies(headers);
    }

    append_forwarded_for(headers, fwd.peer, fwd.trusted_peer);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = &fwd.host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    headers.insert(X_REQUEST_ID.clone(), fwd.request_id.clone());
    if let Some(user) = fwd.user {
        headers.insert(X_USER_ID.clone(), user.header_value());
    }
    if fwd.upgrade {
        // Written by the gateway, never copied: the client's `Upgrade` may list other protocols.
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static(crate::upgrade::WEBSOCKET));
    }
    spoofed
}

/// Remove the gateway's cookies (`auth::session::OWN_COOKIES`) from every `Cookie` field; the
/// app's own cookies pass untouched, and a field left empty goes.
fn strip_own_cookies(headers: &mut HeaderMap) {
    let kept: SmallVec<[HeaderValue; 2]> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| crate::auth::session::without_own(v.as_bytes()))
        .filter_map(|v| HeaderValue::from_bytes(&v).ok())
        .collect();
    headers.remove(header::COOKIE);
    for v in kept {
        headers.append(header::COOKIE, v);
    }
}

/// The scheme a trusted proxy reports: the last entry of its `X-Forwarded-Proto`, the one it wrote
/// itself, when that is `http` or `https`.
pub fn forwarded_proto(headers: &HeaderMap) -> Option<&'static str> {
    let last = headers.get_all(&X_FORWARDED_PROTO).iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    if entry.eq_ignore_ascii_case("https") {
        Some("https")
    } else if entry.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// The client's address, for the login limits and the audit log. It is the peer's own, unless the
/// peer is a trusted proxy: then it is the nearest address in `X-Forwarded-For` that is not a trusted
/// proxy as well. Each entry was written by the hop to its right, so the walk goes from the right
/// and stops at the first entry that is not an address; what lies to its left, nobody vouches for.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    if !is_trusted(&client) {
        return client;
    }
    for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else { return client };
        for entry in line.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            // Plain addresses, and the `1.2.3.4:80` and `[::1]:80` some proxies write.
            let Some(ip) = entry
                .parse::<IpAddr>()
                .ok()
                .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
            else {
                return client;
            };
            client = ip.to_canonical();
            if !is_trusted(&client) {
                return client;
            }
        }
    }
    client
}

/// `X-Forwarded-For`: the peer, after what a trusted proxy already listed.
fn append_forwarded_for(headers: &mut HeaderMap, peer: &HeaderValue, trusted_peer: bool) {
    let own = peer.clone();
    let prior: Vec<&str> = if trusted_peer {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let value = if prior.is_empty() {
        own
    } else {
        let joined = format!("{}, {}", prior.join(", "), own.to_str().unwrap_or("unknown"));
        HeaderValue::from_str(&joined).unwrap_or(own)
    };
    headers.insert(X_FORWARDED_FOR.clone(), value);
}

/// An address as a header value, formatted on the stack.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    use std::io::Write;
    // The longest text form of an address (IPv4-mapped IPv6) is 45 bytes.
    let mut buf = [0u8; 64];
    let mut rest = &mut buf[..];
    let written = write!(rest, "{ip}").is_ok();
    let len = 64 - rest.len();
    match HeaderValue::from_bytes(&buf[..len]) {
        Ok(v) if written => v,
        _ => HeaderValue::from_static("unknown"),
    }
}

/// Rewrite a backend response's headers for the client. (`X-Request-Id` is set by the caller, on
/// every answer, forwarded or not.)
pub fn rewrite_response(headers: &mut HeaderMap, switching_protocols: bool) {
    // 101 keeps Connection/Upgrade: they are the handshake.
    let upgrade = if switching_protocols {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    let gone = to_drop(headers, |_| false);
    remove_all(headers, &gone);
    if let Some(u) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// A client-supplied request id is kept when it is short and plain; otherwise a new one is made.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID)
        && !v.is_empty()
        && v.len() <= 128
        && v.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'='))
    {
        return v.clone();
    }
    let id = uuid::Uuid::new_v4();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf)).unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::UserId;

    static PEER: HeaderValue = HeaderValue::from_static("10.0.0.9");

    fn fwd<'a>(user: Option<&'a UserId>, rid: &'a HeaderValue) -> Forwarding<'a> {
        Forwarding {
            peer: &PEER,
            trusted_peer: true,
            proto: "https",
            host: Some(HeaderValue::from_static("gw.example")),
            user,
            request_id: rid,
            upgrade: false,
            extra_identity: &[],
            strip: crate::auth::Strip {
                query_token: false,
                session_cookie: false,
            },
            peer_ip: IpAddr::from([10, 0, 0, 9]),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn client_identity_headers_in_every_spelling_are_replaced() {
        let user = UserId::parse("real").unwrap();
        let rid = HeaderValue::from_static("r1");
        let mut h = map(&[
            ("X-User-Id", "evil1"),
            ("x_user_id", "evil2"),
            ("X_User_Id", "evil3"),
            ("x-auth-assertion", "e"),
        ]);
        let dropped = rewrite_request(&mut h, &fwd(Some(&user), &rid));
        assert_eq!(dropped, 3);
        assert_eq!(h.get_all(&X_USER_ID).iter().collect::<Vec<_>>(), vec!["real"]);
        assert!(h.keys().all(|k| !k.as_str().contains('_')));
    }

    #[test]
    fn identity_headers_backends_trust_are_stripped_in_every_spelling() {
        let rid = HeaderValue::from_static("r1");
        let names = [
            "Remote-User",
            "X-Remote-User",
            "X-Auth-Request-User",
            "X-Auth-Request-Email",
            "X-Forwarded-User",
            "x_forwarded_email",
            "X-User",
            "X-User-Email",
            "X-Userid",
            "X_Authenticated_User",
            "X-User-Role",
            "x_user_uuid",
            "X-Tenant-Id",
            "x_tenant_id",
            "X-Auth-Request-Groups",
            "X_Auth_Request_Preferred_Username",
            "Remote-Groups",
            "Remote-Email",
            "X-Remote-Group",
            "X-WEBAUTH-USER",
            "x_forwarded_groups",
            "X-Org-Role",
            "x_org_id",
        ];
        let mut h = map(&names.iter().map(|n| (*n, "admin")).collect::<Vec<_>>());
        h.insert("x-kept", HeaderValue::from_static("1"));
        let extra = [identity_name("X_Tenant_ID").unwrap(), identity_name("X-Org-*").unwrap()];
        let mut f = fwd(None, &rid);
        f.extra_identity = &extra;
        let dropped = rewrite_request(&mut h, &f);
        assert_eq!(dropped, names.len());
        assert!(h.values().all(|v| v != "admin"), "{h:?}");
        assert_eq!(h["x-kept"], "1");
        for bad in ["bad name", "*", "X-*-Id", "**", ""] {
            assert_eq!(identity_name(bad), None, "{bad}");
        }
        // A prefix is not its own stem, and near names are kept.
        let mut h = map(&[("remote", "1"), ("x-remotex", "1"), ("x-org", "1"), ("x-users", "1")]);
        let dropped = rewrite_request(&mut h, &f);
        assert_eq!(dropped, 0, "{h:?}");
    }

    #[test]
    fn an_h2c_upgrade_and_its_settings_are_never_forwarded() {
        let rid = HeaderValue::from_static("r1");
        let mut h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ]);
        rewrite_request(&mut h, &fwd(None, &rid));
        for gone in ["connection", "upgrade", "http2-settings"] {
            assert!(h.get(gone).is_none(), "{gone} forwarded");
        }
        // A WebSocket handshake gets the gateway's own two headers, whatever the client listed.
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let mut f = fwd(None, &rid);
        f.upgrade = true;
        rewrite_request(&mut h, &f);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn connection_cannot_remove_what_the_gateway_adds() {
        let user = UserId::parse("u").unwrap();
        let rid = HeaderValue::from_static("r1");
        let mut h = map(&[
            ("connection", "x-user-id, x-forwarded-for, x-request-id, keep-alive"),
            ("x-custom", "1"),
        ]);
        rewrite_request(&mut h, &fwd(Some(&user), &rid));
        assert_eq!(h[&X_USER_ID], "u");
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.9");
        assert_eq!(h[&X_REQUEST_ID], "r1");
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h["x-custom"], "1");
    }

    #[test]
    fn credentials_and_hop_by_hop_are_removed() {
        let rid = HeaderValue::from_static("r1");
        let mut h = map(&[
            ("authorization", "Bearer t"),
            ("proxy-authorization", "Basic x"),
            ("x-api-key", "agt_x"),
            ("te", "trailers"),
            ("keep-alive", "5"),
            ("connection", "close, x-drop"),
            ("x-drop", "1"),
            ("x-original-url", "/admin"),
            ("host", "gw.example"),
        ]);
        rewrite_request(&mut h, &fwd(None, &rid));
        for gone in [
            "authorization",
            "proxy-authorization",
            "x-api-key",
            "te",
            "keep-alive",
            "connection",
            "x-drop",
            "x-original-url",
            "host",
            "x-user-id",
        ] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
        assert_eq!(h[&X_FORWARDED_HOST], "gw.example");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn forwarded_for_is_appended() {
        let rid = HeaderValue::from_static("r1");
        let mut h = map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")]);
        rewrite_request(&mut h, &fwd(None, &rid));
        assert_eq!(h[&X_FORWARDED_FOR], "1.2.3.4, 5.6.7.8, 10.0.0.9");
    }

    #[test]
    fn an_untrusted_peers_forwarding_headers_are_replaced() {
        let rid = HeaderValue::from_static("r1");
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-port", "1"),
            ("x-forwarded-prefix", "/admin"),
            ("x-real-ip", "1.2.3.4"),
        ]);
        let mut f = fwd(None, &rid);
        f.trusted_peer = false;
        rewrite_request(&mut h, &f);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.9");
        for gone in ["forwarded", "x-forwarded-port", "x-forwarded-prefix", "x-real-ip"] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
    }

    #[test]
    fn a_trusted_proxys_scheme_is_kept_and_anyone_elses_replaced() {
        let rid = HeaderValue::from_static("r1");
        let rewritten = |pairs: &[(&str, &str)], trusted: bool| {
            let mut h = map(pairs);
            let mut f = fwd(None, &rid);
            f.proto = "http";
            f.trusted_peer = trusted;
            rewrite_request(&mut h, &f);
            h.get_all(&X_FORWARDED_PROTO)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(rewritten(&[("x-forwarded-proto", "https")], true), ["https"]);
        assert_eq!(rewritten(&[("x-forwarded-proto", "HTTPS")], true), ["https"]);
        // The proxy's own entry is the last one; what the client put before it is not believed.
        assert_eq!(rewritten(&[("x-forwarded-proto", "https, http")], true), ["http"]);
        assert_eq!(
            rewritten(&[("x-forwarded-proto", "http"), ("x-forwarded-proto", "https")], true),
            ["https"]
        );
        assert_eq!(rewritten(&[("x-forwarded-proto", "javascript")], true), ["http"]);
        assert_eq!(rewritten(&[], true), ["http"]);
        assert_eq!(rewritten(&[("x-forwarded-proto", "https")], false), ["http"]);
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_address() {
        let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let client = |pairs: &[(&str, &str)], peer: &str| client_ip(&map(pairs), ip(peer), &trusted);
        let xff = |v: &'static str| [("x-forwarded-for", v)];

        // An untrusted peer is the client, whatever it claims.
        assert_eq!(client(&xff("203.0.113.7"), "198.51.100.1"), ip("198.51.100.1"));
        // A trusted peer with nothing to say is the client.
        assert_eq!(client(&[], "127.0.0.1"), ip("127.0.0.1"));
        assert_eq!(client(&xff("203.0.113.7"), "127.0.0.1"), ip("203.0.113.7"));
        // Trusted hops are skipped; a forged entry left of the real client is never reached.
        assert_eq!(
            client(&xff("1.1.1.1, 203.0.113.7, 10.1.2.3"), "127.0.0.1"),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(
                &[
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "203.0.113.7, 10.0.0.2")
                ],
                "127.0.0.1"
            ),
            ip("203.0.113.7")
        );
        // Ports and IPv6.
        assert_eq!(client(&xff("203.0.113.7:4711"), "127.0.0.1"), ip("203.0.113.7"));
        assert_eq!(client(&xff("[2001:db8::1]:443"), "127.0.0.1"), ip("2001:db8::1"));
        assert_eq!(client(&xff("2001:db8::1"), "127.0.0.1"), ip("2001:db8::1"));
        // Something that is not an address ends the walk at the last hop that vouched for it.
        assert_eq!(client(&xff("203.0.113.7, unknown"), "127.0.0.1"), ip("127.0.0.1"));
        assert_eq!(
            client(&xff("203.0.113.7, garbage, 10.0.0.5"), "127.0.0.1"),
            ip("10.0.0.5")
        );
        // Only trusted hops: the farthest of them.
        assert_eq!(client(&xff("10.0.0.4, 10.0.0.5"), "127.0.0.1"), ip("10.0.0.4"));
        // An IPv4-mapped entry is the IPv4 address, trusted or not as such.
        assert_eq!(
            client(&xff("203.0.113.7, ::ffff:10.0.0.5"), "127.0.0.1"),
            ip("203.0.113.7")
        );
        assert_eq!(client(&xff("::ffff:203.0.113.7"), "127.0.0.1"), ip("203.0.113.7"));
        // Empty entries are skipped.
        assert_eq!(client(&xff(" , 203.0.113.7 ,"), "127.0.0.1"), ip("203.0.113.7"));
    }

    #[test]
    fn request_id_is_kept_only_when_plain() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        assert_ne!(request_id(&map(&[("x-request-id", "a b\"<script>")])), "a b\"<script>");
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
