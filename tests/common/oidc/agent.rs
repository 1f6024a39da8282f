//! A browser's navigations spoken over HTTP, for sign-ins that cross sites (gateway and OpenID
//! Provider) without a browser: a cookie jar per host, redirects followed or stopped before a
//! chosen URL, forms read from the page and submitted.
//!
//! The rule it keeps: it sends what Chromium would send for a top-level navigation, so what passes
//! here passes in the browser tests too: cookies by host (not port) with RFC 6265 path matching,
//! `Secure` only over HTTPS, `SameSite=Strict` withheld and `Lax` kept to GET once the redirect
//! chain has crossed sites; `Sec-Fetch-Site` over the whole chain; `Origin` on a form POST.

use std::collections::HashMap;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::super::client::{Client, Reply};
use super::super::gateway::TestGateway;
use super::super::upstream::boxed;

const MAX_REDIRECTS: usize = 20;

// =============================================================================================
// URLs
// =============================================================================================

/// The first value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `url` with query parameter `name` set to `value` (`None` removes it), the others kept in order.
pub fn with_query_param(url: &str, name: &str, value: Option<&str>) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut replaced = false;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == name {
            if let (Some(value), false) = (value, replaced) {
                out.append_pair(name, value);
            }
            replaced = true;
        } else {
            out.append_pair(&k, &v);
        }
    }
    if let (Some(value), false) = (value, replaced) {
        out.append_pair(name, value);
    }
    let query = out.finish();
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{query}")
    }
}

/// A URL's parts, as a browser compares them.
#[derive(Clone, Debug)]
struct Url {
    scheme: String,
    host: String,
    port: u16,
    path_and_query: String,
}

impl Url {
    fn parse(url: &str) -> Url {
        let uri: Uri = url.parse().unwrap_or_else(|e| panic!("not a URL: {url}: {e}"));
        let scheme = uri
            .scheme_str()
            .unwrap_or_else(|| panic!("not absolute: {url}"))
            .to_owned();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        Url {
            host: uri.host().unwrap_or_else(|| panic!("no host: {url}")).to_owned(),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            scheme,
            port,
        }
    }
    fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or("/")
    }
    fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
    /// Scheme and host: 127.0.0.1 and localhost are different sites; ports do not count.
    fn site(&self) -> (String, String) {
        (self.scheme.clone(), self.host.clone())
    }
    /// `location` (a Location header or form action) resolved against this URL.
    fn join(&self, location: &str) -> String {
        if location.contains("://") {
            location.to_owned()
        } else if let Some(rest) = location.strip_prefix("//") {
            format!("{}://{rest}", self.scheme)
        } else if location.starts_with('/') {
            format!("{}{location}", self.origin())
        } else if location.starts_with('?') {
            format!("{}{}{location}", self.origin(), self.path())
        } else {
            let dir = &self.path()[..self.path().rfind('/').map_or(0, |i| i + 1)];
            format!("{}{dir}{location}", self.origin())
        }
    }
}

/// `Sec-Fetch-Site` of a navigation: the least trusting relation over its redirect chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FetchSite {
    /// Typed into the address bar.
    None,
    SameOrigin,
    SameSite,
    CrossSite,
}

impl FetchSite {
    fn between(from: &Url, to: &Url) -> FetchSite {
        if from.origin() == to.origin() {
            FetchSite::SameOrigin
        } else if from.site() == to.site() {
            FetchSite::SameSite
        } else {
            FetchSite::CrossSite
        }
    }
    fn header(self) -> &'static str {
        match self {
            FetchSite::None => "none",
            FetchSite::SameOrigin => "same-origin",
            FetchSite::SameSite => "same-site",
            FetchSite::CrossSite => "cross-site",
        }
    }
}

// =============================================================================================
// Plain HTTP to the provider
// =============================================================================================

/// One plain-HTTP/1.1 request (to a provider on 127.0.0.1), on a connection of its own.
pub async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Reply {
    let u = Url::parse(url);
    assert_eq!(u.scheme, "http", "plain HTTP only here: {url}");
    let stream = TcpStream::connect((u.host.as_str(), u.port))
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(method)
        .uri(u.path_and_query.as_str())
        .header("host", format!("{}:{}", u.host, u.port));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = match body {
        Some(bytes) => b.body(boxed(Full::new(Bytes::from(bytes)))),
        None => b.body(boxed(Empty::new())),
    }
    .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

// =============================================================================================
// Cookies
// =============================================================================================

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Clone, Debug)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: String,
    pub secure: bool,
    pub same_site: SameSite,
}

/// Cookies per host (not per port, as browsers keep them), with RFC 6265 path matching.
#[derive(Clone, Debug, Default)]
pub struct CookieJar {
    hosts: HashMap<String, Vec<Cookie>>,
}

impl CookieJar {
    /// The value of cookie `name` for `host`, whatever its path.
    pub fn get(&self, host: &str, name: &str) -> Option<String> {
        self.hosts
            .get(host)?
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.clone())
    }

    /// Set a cookie by hand (path `/`, Secure, SameSite=Lax), replacing one of that name.
    pub fn set(&mut self, host: &str, name: &str, value: &str) {
        self.store(
            host,
            Cookie {
                name: name.to_owned(),
                value: value.to_owned(),
                path: "/".to_owned(),
                secure: true,
                same_site: SameSite::Lax,
            },
        );
    }

    /// Forget cookie `name` for `host` (every path).
    pub fn remove(&mut self, host: &str, name: &str) {
        if let Some(cookies) = self.hosts.get_mut(host) {
            cookies.retain(|c| c.name != name);
        }
    }

    /// Every cookie held for `host`.
    pub fn all(&self, host: &str) -> Vec<Cookie> {
        self.hosts.get(host).cloned().unwrap_or_default()
    }

    fn store(&mut self, host: &str, cookie: Cookie) {
        let cookies = self.hosts.entry(host.to_owned()).or_default();
        cookies.retain(|c| !(c.name == cookie.name && c.path == cookie.path));
        cookies.push(cookie);
    }

    /// Take the `Set-Cookie` headers of an answer from `url`.
    fn keep(&mut self, url: &Url, reply: &Reply) {
        for header in reply.headers.get_all("set-cookie") {
            let Ok(header) = header.to_str() else { continue };
            let mut parts = header.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let dir = &url.path()[..url.path().rfind('/').unwrap_or(0)];
            let mut cookie = Cookie {
                name: name.trim().to_owned(),
                value: value.trim().to_owned(),
                path: if dir.is_empty() { "/".into() } else { dir.into() },
                secure: false,
                same_site: SameSite::Lax,
            };
            let mut expired = false;
            for attr in parts {
                let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                match k.trim().to_ascii_lowercase().as_str() {
                    "path" if v.starts_with('/') => cookie.path = v.trim().to_owned(),
                    "secure" => cookie.secure = true,
                    "samesite" => {
                        cookie.same_site = match v.trim().to_ascii_lowercase().as_str() {
                            "strict" => SameSite::Strict,
                            "none" => SameSite::None,
                            _ => SameSite::Lax,
                        }
                    }
                    "max-age" => expired |= v.trim().parse::<i64>().is_ok_and(|s| s <= 0),
                    // Deleting cookies set a date in 1970; no test cookie expires otherwise.
                    "expires" => expired |= v.contains("1970"),
                    _ => {}
                }
            }
            if expired {
                if let Some(cookies) = self.hosts.get_mut(&url.host) {
                    cookies.retain(|c| !(c.name == cookie.name && c.path == cookie.path));
                }
            } else {
                self.store(&url.host, cookie);
            }
        }
    }

    /// The `Cookie` header for a request to `url` in a navigation of relation `site`.
    fn header(&self, url: &Url, method: &str, site: FetchSite) -> Option<String> {
        let path = url.path();
        let pairs: Vec<String> = self
            .hosts
            .get(&url.host)?
            .iter()
            .filter(|c| !c.secure || url.scheme == "https")
            .filter(|c| {
                c.path == "/" || path == c.path || path.starts_with(&format!("{}/", c.path.trim_end_matches('/')))
            })
            .filter(|c| match (c.same_site, site) {
                (_, FetchSite::None | FetchSite::SameOrigin | FetchSite::SameSite) => true,
                (SameSite::None, FetchSite::CrossSite) => c.secure,
                (SameSite::Lax, FetchSite::CrossSite) => method == "GET",
                (SameSite::Strict, FetchSite::CrossSite) => false,
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

// =============================================================================================
// The agent: a browser's navigations over HTTP
// =============================================================================================

/// Where a navigation ended: the last URL requested and its answer, or, when stopped, the URL it
/// was about to request (`stopped`) and the redirect that pointed there.
pub struct Landing {
    pub url: String,
    pub reply: Reply,
    pub stopped: bool,
    /// Every URL requested, in order.
    pub chain: Vec<String>,
}

impl Landing {
    pub fn text(&self) -> String {
        self.reply.text()
    }
}

/// A browser without a browser; see the module doc. Gateways are reached over the test TLS client
/// at `https://localhost:<port>`, providers over plain HTTP at `http://127.0.0.1:<port>`.
pub struct Agent {
    gateways: Vec<(u16, Client)>,
    pub jar: CookieJar,
    /// The page the agent is on (the last URL it requested), the initiator of the next
    /// [`Agent::follow`].
    pub current: Option<String>,
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

const USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

impl Agent {
    /// An agent that can reach providers only; add gateways with [`Agent::gateway`].
    pub fn new() -> Agent {
        Agent {
            gateways: Vec::new(),
            jar: CookieJar::default(),
            current: None,
        }
    }

    /// An agent for `gw` (and any provider).
    pub fn for_gateway(gw: &TestGateway) -> Agent {
        let mut agent = Agent::new();
        agent.gateway(gw);
        agent
    }

    /// Reach `gw` too (a second replica, say: cookies for localhost are shared, as in a browser).
    pub fn gateway(&mut self, gw: &TestGateway) -> &mut Self {
        self.gateways.push((gw.addr.port(), gw.client()));
        self
    }

    /// Type `url` into the address bar: GET, redirects followed.
    pub async fn open(&mut self, url: &str) -> Landing {
        self.navigate("GET", url, None, None, &|_| false).await
    }

    /// [`Agent::open`], stopping before any URL `stop` accepts.
    pub async fn open_until(&mut self, url: &str, stop: impl Fn(&str) -> bool) -> Landing {
        self.navigate("GET", url, None, None, &stop).await
    }

    /// A link followed from the current page (or a stopped redirect resumed): GET, with that page
    /// as the initiator, redirects followed.
    pub async fn follow(&mut self, url: &str) -> Landing {
        let from = self.current.clone();
        self.navigate("GET", url, None, from.as_deref(), &|_| false).await
    }

    /// Submit a form of `page` with `fields` added to (or replacing) its own inputs: the first
    /// form holding inputs named like all of `fields`, else the first POST form. Redirects
    /// followed, stopping before any URL `stop` accepts.
    pub async fn submit_until(
        &mut self,
        page: &Landing,
        fields: &[(&str, &str)],
        stop: impl Fn(&str) -> bool,
    ) -> Landing {
        let html = page.text();
        let forms = parse_forms(&html);
        let form = forms
            .iter()
            .find(|f| !fields.is_empty() && fields.iter().all(|(k, _)| f.inputs.iter().any(|(n, _)| n == k)))
            .or_else(|| forms.iter().find(|f| f.method.eq_ignore_ascii_case("post")))
            .unwrap_or_else(|| panic!("no form to submit on {}:\n{html}", page.url));
        let mut values: Vec<(String, String)> = form.inputs.clone();
        for (k, v) in fields {
            values.retain(|(n, _)| n != k);
            values.push(((*k).to_owned(), (*v).to_owned()));
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(values.iter())
            .finish();
        let action = Url::parse(&page.url).join(form.action.as_deref().unwrap_or(&page.url));
        let method = if form.method.eq_ignore_ascii_case("post") {
            "POST"
        } else {
            "GET"
        };
        self.navigate(method, &action, Some(body.into_bytes()), Some(&page.url), &stop)
            .await
    }

    /// [`Agent::submit_until`] without a stop.
    pub async fn submit(&mut self, page: &Landing, fields: &[(&str, &str)]) -> Landing {
        self.submit_until(page, fields, |_| false).await
    }

    /// GET `url` as the next hop of the redirect chain a `stop` ended (from the current page, a
    /// cross-site navigation when that page is on another site), without following the answer.
    pub async fn resume(&mut self, url: &str) -> Reply {
        let target = Url::parse(url);
        let site = self
            .current
            .as_deref()
            .map_or(FetchSite::None, |from| FetchSite::between(&Url::parse(from), &target));
        let reply = self.request("GET", &target, None, site, None).await;
        self.current = Some(url.to_owned());
        reply
    }

    /// The `__Host-authgate` session cookie the gateways set, if any.
    pub fn session(&self) -> Option<String> {
        self.jar.get("localhost", "__Host-authgate")
    }

    /// A gateway's path, as a URL this agent opens.
    pub fn gateway_url(gw: &TestGateway, path: &str) -> String {
        format!("https://localhost:{}{path}", gw.addr.port())
    }

    async fn navigate(
        &mut self,
        method: &str,
        url: &str,
        body: Option<Vec<u8>>,
        initiator: Option<&str>,
        stop: &dyn Fn(&str) -> bool,
    ) -> Landing {
        let mut method = method.to_owned();
        let mut body = body;
        let mut url = url.to_owned();
        let origin = initiator.map(|i| Url::parse(i).origin());
        let mut previous = initiator.map(Url::parse);
        let mut site = FetchSite::None;
        let mut chain = Vec::new();
        loop {
            let target = Url::parse(&url);
            if let Some(p) = &previous {
                site = site.max(FetchSite::between(p, &target));
            }
            chain.push(url.clone());
            // A form POST carries its page's origin; after a cross-origin redirect, "null".
            let origin_header = match (&body, &origin) {
                (Some(_), Some(o)) if chain.len() == 1 => Some(o.clone()),
                (Some(_), _) => Some("null".to_owned()),
                _ => None,
            };
            let reply = self
                .request(&method, &target, body.clone(), site, origin_header.as_deref())
                .await;
            self.current = Some(url.clone());
            let location = reply
                .headers
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(|l| target.join(l));
            match (reply.status, location) {
                (301 | 302 | 303 | 307 | 308, Some(next)) => {
                    assert!(chain.len() < MAX_REDIRECTS, "too many redirects: {chain:?}");
                    if !matches!(reply.status, 307 | 308) {
                        method = "GET".into();
                        body = None;
                    }
                    if stop(&next) {
                        return Landing {
                            url: next,
                            reply,
                            stopped: true,
                            chain,
                        };
                    }
                    previous = Some(target);
                    url = next;
                }
                _ => {
                    return Landing {
                        url,
                        reply,
                        stopped: false,
                        chain,
                    };
                }
            }
        }
    }

    async fn request(
        &mut self,
        method: &str,
        url: &Url,
        body: Option<Vec<u8>>,
        site: FetchSite,
        origin: Option<&str>,
    ) -> Reply {
        let cookie = self.jar.header(url, method, site);
        let mut headers: Vec<(&str, &str)> = vec![
            (
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
            ("user-agent", USER_AGENT),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
            ("sec-fetch-site", site.header()),
        ];
        if let Some(c) = &cookie {
            headers.push(("cookie", c.as_str()));
        }
        if body.is_some() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let reply = match url.scheme.as_str() {
            "https" => {
                assert_eq!(url.host, "localhost", "gateways are reached as localhost: {url:?}");
                let client = self
                    .gateways
                    .iter()
                    .find(|(port, _)| *port == url.port)
                    .map(|(_, c)| c)
                    .unwrap_or_else(|| panic!("no gateway on port {} for this agent (Agent::gateway)", url.port));
                client.call(method, &url.path_and_query, &headers, body).await
            }
            _ => {
                http(
                    method,
                    &format!("{}{}", url.origin(), url.path_and_query),
                    &headers,
                    body,
                )
                .await
            }
        };
        self.jar.keep(url, &reply);
        reply
    }
}

// =============================================================================================
// Forms in HTML (the provider's pages and the gateway's: simple, well-formed markup)
// =============================================================================================

#[derive(Debug)]
struct Form {
    action: Option<String>,
    method: String,
    /// Named `input`s (not buttons), with their values.
    inputs: Vec<(String, String)>,
}

fn parse_forms(html: &str) -> Vec<Form> {
    let mut forms = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let after = &rest[start..];
        let end = after.find("</form>").unwrap_or(after.len());
        let inner = &after[..end];
        let tag_end = inner.find('>').unwrap_or(inner.len());
        let tag = &inner[..tag_end];
        let mut inputs = Vec::new();
        let mut scan = &inner[tag_end..];
        while let Some(i) = scan.find("<input") {
            let input = &scan[i..];
            let close = input.find('>').unwrap_or(input.len());
            let input_tag = &input[..close];
            let kind = attr(input_tag, "type").unwrap_or_default().to_ascii_lowercase();
            let named = attr(input_tag, "name");
            if let (Some(name), false) = (named, matches!(kind.as_str(), "submit" | "button" | "image" | "reset")) {
                inputs.push((name, attr(input_tag, "value").unwrap_or_default()));
            }
            scan = &input[close..];
        }
        forms.push(Form {
            action: attr(tag, "action"),
            method: attr(tag, "method").unwrap_or_else(|| "get".into()),
            inputs,
        });
        rest = &after[end..];
    }
    forms
}

/// The value of attribute `name` in one tag (quoted with `"` or `'`), entities decoded.
fn attr(tag: &str, name: &str) -> Option<String> {
    let bytes = tag.as_bytes();
    let mut from = 0;
    while let Some(i) = tag[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let before_ok = at > 0 && bytes[at - 1].is_ascii_whitespace();
        let rest = tag[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value = rest[1..].trim_start();
        let quote = value.chars().next()?;
        if quote == '"' || quote == '\'' {
            let inner = &value[1..];
            return Some(decode_entities(&inner[..inner.find(quote)?]));
        }
        let end = value
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .unwrap_or(value.len());
        return Some(decode_entities(&value[..end]));
    }
    None
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
