//! `[server]`: the main listener, its timeouts and HTTP limits, forwarded-header trust, HSTS and the
//! optional HTTP-to-HTTPS redirect listener.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Dur, parse_addr, secs};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub plaintext: bool,
    pub shutdown_grace: Dur,
    pub tls_handshake_timeout: Dur,
    pub header_read_timeout: Dur,
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 control frames (PING, SETTINGS, RST_STREAM, PRIORITY, empty DATA) a client may send
    /// in 10 s; past it the connection gets GOAWAY and is closed.
    pub h2_control_frames: u32,
    /// A connection with no request in flight and none started for this long is closed.
    pub idle_timeout: Dur,
    /// Peers (CIDRs) whose `X-Forwarded-For` / `Forwarded` are kept and appended to; from any
    /// other peer those headers are replaced.
    pub trusted_proxies: Vec<String>,
    /// `Strict-Transport-Security` on HTTPS answers; empty to send none.
    pub hsts: String,
    /// An optional plain-HTTP listener that redirects everything to HTTPS.
    pub redirect_http: Option<String>,
    /// The HTTPS port the redirects name, when clients reach the gateway on another port than the
    /// one it listens on (a container's published port); default: the listening port.
    pub redirect_https_port: Option<u16>,
    /// The host name HTTPS redirects name (`gw.example.com`); default: the client's `Host` when the
    /// TLS certificate covers it, else the certificate's first DNS name.
    pub public_host: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:8443".into(),
            plaintext: false,
            shutdown_grace: secs(30),
            tls_handshake_timeout: secs(10),
            header_read_timeout: secs(10),
            max_header_bytes: 64 * 1024,
            h2_max_concurrent_streams: 128,
            h2_control_frames: 1000,
            idle_timeout: secs(60),
            trusted_proxies: Vec::new(),
            hsts: "max-age=31536000; includeSubDomains".into(),
            redirect_http: None,
            redirect_https_port: None,
            public_host: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub shutdown_grace: Duration,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_control_frames: u32,
    pub idle_timeout: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub hsts: Option<http::HeaderValue>,
    pub redirect_http: Option<SocketAddr>,
    pub redirect_https_port: Option<u16>,
    /// A valid host name (no port), lowercased.
    pub public_host: Option<String>,
}

/// `has_tls`: whether `[tls]` is configured (the redirect listener needs somewhere to send to).
pub(super) fn validate(s: &RawServer, has_tls: bool) -> Result<ServerConfig, ConfigError> {
    let listen = parse_addr("server.listen", &s.listen)?;
    for (key, d) in [
        ("server.tls_handshake_timeout", s.tls_handshake_timeout),
        ("server.header_read_timeout", s.header_read_timeout),
        ("server.idle_timeout", s.idle_timeout),
    ] {
        if d.0.is_zero() {
            return Err(ConfigError::invalid(
                key,
                "is zero",
                "give a positive duration such as \"10s\"",
            ));
        }
    }
    if s.max_header_bytes < 1024 {
        return Err(ConfigError::invalid(
            "server.max_header_bytes",
            format!("is {}, below 1024", s.max_header_bytes),
            "use at least 1024 (the default is 65536)",
        ));
    }
    if s.h2_max_concurrent_streams == 0 {
        return Err(ConfigError::invalid(
            "server.h2_max_concurrent_streams",
            "is 0",
            "use a positive number (the default is 128)",
        ));
    }
    if s.h2_control_frames < 10 {
        return Err(ConfigError::invalid(
            "server.h2_control_frames",
            format!("is {}, below 10", s.h2_control_frames),
            "use at least 10 control frames per 10 s (the default is 1000)",
        ));
    }

    let mut trusted_proxies = Vec::with_capacity(s.trusted_proxies.len());
    for cidr in &s.trusted_proxies {
        let net = cidr
            .parse::<ipnet::IpNet>()
            .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                ConfigError::invalid(
                    "server.trusted_proxies",
                    format!("`{cidr}` is not an IP address or CIDR"),
                    "list load balancers as CIDRs, e.g. [\"10.0.0.0/8\", \"192.0.2.7/32\"]",
                )
            })?;
        trusted_proxies.push(net);
    }
    let hsts = match s.hsts.trim() {
        "" => None,
        v => Some(http::HeaderValue::from_str(v).map_err(|_| {
            ConfigError::invalid(
                "server.hsts",
                "is not a valid header value",
                "use e.g. \"max-age=31536000; includeSubDomains\", or \"\" to send none",
            )
        })?),
    };
    let redirect_http = match &s.redirect_http {
        Some(addr) if !has_tls => {
            return Err(ConfigError::invalid(
                "server.redirect_http",
                format!("is set to {addr} but there is no [tls] to redirect to"),
                "remove it, or configure [tls]",
            ));
        }
        Some(addr) => Some(parse_addr("server.redirect_http", addr)?),
        None => None,
    };
    if s.redirect_https_port == Some(0) {
        return Err(ConfigError::invalid(
            "server.redirect_https_port",
            "is 0",
            "give the HTTPS port clients connect to, such as 443, or leave it out to use the listening port",
        ));
    }
    let public_host = match &s.public_host {
        Some(h) => Some(valid_host(h).filter(|_| !h.contains(':')).ok_or_else(|| {
            ConfigError::invalid(
                "server.public_host",
                format!("{h:?} is not a host name"),
                "give the name clients use, without scheme or port, such as \"gw.example.com\"",
            )
        })?),
        None => None,
    };
    Ok(ServerConfig {
        listen,
        shutdown_grace: s.shutdown_grace.0,
        tls_handshake_timeout: s.tls_handshake_timeout.0,
        header_read_timeout: s.header_read_timeout.0,
        max_header_bytes: s.max_header_bytes,
        h2_max_concurrent_streams: s.h2_max_concurrent_streams,
        h2_control_frames: s.h2_control_frames,
        idle_timeout: s.idle_timeout.0,
        trusted_proxies,
        hsts,
        redirect_http,
        redirect_https_port: s.redirect_https_port,
        public_host,
    })
}

/// The host of a `Host` value (`name`, `name:port`, `1.2.3.4`, `[::1]:8080`), lowercased and
/// without its port, as it appears in a URL; `None` unless it is a DNS name of letters, digits
/// and hyphens (RFC 1123), an IPv4 address or a bracketed IPv6 address, with an optional port.
pub fn valid_host(value: &str) -> Option<String> {
    let value = value.trim();
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (inner, after) = rest.split_once(']')?;
            inner.parse::<Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                a => Some(a.strip_prefix(':')?),
            };
            (&value[..inner.len() + 2], port)
        }
        None => match value.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        },
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().ok()? == 0)
    {
        return None;
    }
    if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
        return Some(host.to_ascii_lowercase());
    }
    let dns = host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        // All-numeric dotted names are IPv4 addresses or nothing.
        && !host.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    dns.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_parsed_strictly() {
        for (value, host) in [
            ("gw.example.com", "gw.example.com"),
            ("GW.Example.com:8443", "gw.example.com"),
            ("localhost", "localhost"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(valid_host(value).as_deref(), Some(host), "{value}");
        }
        for value in [
            "",
            "evil.example/x",
            "evil.example@x",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "host:",
            "host:0",
            "host:99999",
            "host:8a",
            "[::1",
            "[zz]:1",
            "[::1]x",
            "1.2.3",
            "\u{0430}.example",
            "a_b.example",
        ] {
            assert_eq!(valid_host(value), None, "{value:?}");
        }
    }
}
