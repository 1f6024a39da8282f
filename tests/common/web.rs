//! A browser's side of the sign-in pages, spoken over the test client: fetch a form, keep its CSRF
//! cookie and field, post it from the gateway's own origin, and keep the session cookie.

use super::client::Reply;
use super::gateway::TestGateway;

/// A cookie jar of one: the gateway's CSRF cookie and session cookie, as a browser would hold them.
#[derive(Default, Clone)]
pub struct Jar {
    pub csrf: Option<String>,
    pub session: Option<String>,
    /// The app's own cookies, sent along.
    pub app: Vec<String>,
}

impl Jar {
    /// The `Cookie` header this jar sends.
    pub fn header(&self) -> String {
        let mut parts: Vec<String> = self.app.clone();
        if let Some(c) = &self.csrf {
            parts.push(format!("__Host-authgate-csrf={c}"));
        }
        if let Some(s) = &self.session {
            parts.push(format!("__Host-authgate={s}"));
        }
        parts.join("; ")
    }

    /// Take the cookies an answer sets (an empty value with Max-Age=0 deletes).
    pub fn keep(&mut self, reply: &Reply) {
        for v in reply.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let value = (!value.is_empty() && !v.contains("Max-Age=0")).then(|| value.to_owned());
            match name {
                "__Host-authgate-csrf" => self.csrf = value,
                "__Host-authgate" => self.session = value,
                _ => {}
            }
        }
    }
}

/// The `Set-Cookie` value an answer gives `name`, whole.
pub fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// The value of the hidden `csrf` field of a page.
pub fn csrf_field(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a form with a csrf field");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A browser navigation (GET) with the jar's cookies.
pub async fn navigate(gw: &TestGateway, jar: &mut Jar, path: &str) -> Reply {
    let cookie = jar.header();
    let mut headers = vec![
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
    ];
    if !cookie.is_empty() {
        headers.push(("cookie", cookie.as_str()));
    }
    let r = gw.client().get(path, &headers).await;
    jar.keep(&r);
    r
}

/// Submit a form from the gateway's own page: `fields` url-encoded, the jar's CSRF token added.
pub async fn submit(gw: &TestGateway, jar: &mut Jar, path: &str, fields: &[(&str, &str)]) -> Reply {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        form.append_pair(k, v);
    }
    if let Some(c) = &jar.csrf {
        form.append_pair("csrf", c);
    }
    let body = form.finish();
    let cookie = jar.header();
    let origin = format!("https://localhost:{}", gw.addr.port());
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("cookie", cookie.as_str()),
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "navigate"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
        ),
    ];
    let r = gw.client().call("POST", path, &headers, Some(body.into_bytes())).await;
    jar.keep(&r);
    r
}

/// Sign in through the page (open it first, for its CSRF cookie); the answer to the POST.
pub async fn sign_in_page(gw: &TestGateway, jar: &mut Jar, username: &str, password: &str, rd: &str) -> Reply {
    let rd: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    let path = format!("/_auth/sign-in?rd={rd}");
    // The form as a browser without a session sees it (one signed in is sent straight on).
    let mut fresh = Jar {
        session: None,
        ..jar.clone()
    };
    let page = navigate(gw, &mut fresh, &path).await;
    assert_eq!(page.status, 200, "{}", page.text());
    jar.csrf = fresh.csrf;
    assert_eq!(csrf_field(&page.text()), jar.csrf.clone().unwrap());
    submit(gw, jar, &path, &[("username", username), ("password", password)]).await
}

/// A signed-in jar for `username` (password [`super::PASSWORD`]).
pub async fn signed_in(gw: &TestGateway, username: &str) -> Jar {
    let mut jar = Jar::default();
    let r = sign_in_page(gw, &mut jar, username, super::PASSWORD, "/").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(jar.session.is_some(), "no session cookie");
    jar
}
