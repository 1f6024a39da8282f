//! The pages' HTML, rendered from the templates in `templates/` with minijinja (autoescaped: every
//! value a user or the store supplied is text, never markup), and the headers every page carries.
//!
//! The rule this module keeps: a page is static markup and one stylesheet from this origin. No
//! script, inline or not; a strict `Content-Security-Policy`; never framed; never cached.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use minijinja::Environment;
use serde::Serialize;

use crate::config::WebConfig;

const TEMPLATES: [(&str, &str); 7] = [
    ("base.html", include_str!("templates/base.html")),
    ("sign_in.html", include_str!("templates/sign_in.html")),
    ("register.html", include_str!("templates/register.html")),
    ("account.html", include_str!("templates/account.html")),
    ("message.html", include_str!("templates/message.html")),
    ("consent.html", include_str!("templates/consent.html")),
    ("end_session.html", include_str!("templates/end_session.html")),
];

pub const STYLE: &str = include_str!("templates/style.css");

/// `default-src 'self'` with scripts, plugins, framing and foreign form targets off; images may
/// come from this origin or any https origin (the operator's logo).
const CSP: &str = "default-src 'self'; script-src 'none'; object-src 'none'; img-src 'self' https:; \
                   style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub type PageResponse = Response<Full<Bytes>>;

/// The compiled templates and what every page shows.
pub struct Pages {
    env: Environment<'static>,
    pub prefix: String,
    product: String,
    logo: Option<String>,
}

/// What every page's layout needs.
#[derive(Serialize)]
struct Layout<'a, T: Serialize> {
    title: &'a str,
    product: &'a str,
    prefix: &'a str,
    logo: Option<&'a str>,
    #[serde(flatten)]
    page: T,
}

impl Pages {
    pub fn new(config: &WebConfig) -> Pages {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are part of the binary; one that does not compile fails the tests.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "page template does not compile");
            }
        }
        Pages {
            env,
            prefix: config.prefix.clone(),
            product: config.product_name.clone(),
            logo: config.logo_url.clone(),
        }
    }

    /// Render `template` with `page`'s fields under the layout, as a response.
    pub fn render<T: Serialize>(&self, status: StatusCode, template: &str, title: &str, page: T) -> PageResponse {
        let layout = Layout {
            title,
            product: &self.product,
            prefix: &self.prefix,
            logo: self.logo.as_deref(),
            page,
        };
        let html = self.env.get_template(template).and_then(|t| t.render(&layout));
        match html {
            Ok(html) => respond(status, "text/html; charset=utf-8", Bytes::from(html)),
            Err(e) => {
                tracing::error!(template, error = %e, "page did not render");
                respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(b"This page could not be shown. The gateway's log says why.\n"),
                )
            }
        }
    }

    /// A page with a heading, a sentence and, optionally, one link onward.
    pub fn message(&self, status: StatusCode, title: &str, message: &str, link: Option<(&str, &str)>) -> PageResponse {
        #[derive(Serialize)]
        struct Message<'a> {
            message: &'a str,
            link: Option<&'a str>,
            link_text: Option<&'a str>,
        }
        self.render(
            status,
            "message.html",
            title,
            Message {
                message,
                link: link.map(|l| l.0),
                link_text: link.map(|l| l.1),
            },
        )
    }

    /// The stylesheet (cacheable: it changes only with the binary).
    pub fn style(&self) -> PageResponse {
        let mut resp = respond(
            StatusCode::OK,
            "text/css; charset=utf-8",
            Bytes::from_static(STYLE.as_bytes()),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
        resp
    }
}

/// A response with every page's security headers.
pub fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> PageResponse {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Let this page's forms lead to `origin` too: a form whose answer redirects there (an OpenID
/// client's redirect URI) is otherwise blocked by `form-action 'self'`, which browsers apply to
/// every redirect after the submission. `origin` is a checked, registered URI's origin.
pub fn allow_form_target(resp: &mut PageResponse, origin: &str) {
    let csp = CSP.replace("form-action 'self'", &format!("form-action 'self' {origin}"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// 303 See Other to `location` (a path on this origin, already checked), with the page headers.
pub fn see_other(location: &str) -> PageResponse {
    let mut resp = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", Bytes::new());
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    } else {
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
    }
    resp
}

/// A unix time as a short UTC date and time, for the pages.
pub fn when(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // "2026-11-30T16:43:12Z" -> "2026-11-30 16:43 UTC"
    match (s.get(..10), s.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> Pages {
        Pages::new(&WebConfig {
            prefix: "/_auth".into(),
            product_name: "Acme <RAG>".into(),
            logo_url: None,
            idle_timeout: std::time::Duration::from_secs(3600),
            lifetime: std::time::Duration::from_secs(7200),
        })
    }

    #[test]
    fn every_template_renders_and_escapes_what_it_is_given() {
        #[derive(Serialize)]
        struct SignIn<'a> {
            message: &'a str,
            username: &'a str,
            rd: &'a str,
            csrf: &'a str,
            registration_open: bool,
            local: bool,
        }
        let resp = pages().render(
            StatusCode::OK,
            "sign_in.html",
            "Sign in",
            SignIn {
                message: "<b>x</b>",
                username: "\"><script>alert(1)</script>",
                rd: "/app?a=1&b=2",
                csrf: "tok",
                registration_open: true,
                local: true,
            },
        );
        assert_eq!(resp.status(), StatusCode::OK);
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(resp.into_body()))
            .unwrap()
            .unwrap()
            .to_bytes();
        let html = std::str::from_utf8(&body).unwrap();
        assert!(!html.contains("<script>") && !html.contains("<b>x"), "{html}");
        assert!(html.contains("Acme &lt;RAG&gt;"), "the product name is text too");
        assert!(html.contains(r#"name="username""#) && html.contains(r#"name="password""#));
        // minijinja leaves `/` as is in a URL component; the HTML escape then writes it `&#x2f;`.
        assert!(html.contains("rd=&#x2f;app%3Fa%3D1%26b%3D2"), "{html}");
        let user = serde_json::json!({"user": {"id": "u", "username": "a", "email": "e", "created": "c"}});
        for (name, data) in [
            ("register.html", serde_json::json!({})),
            ("account.html", user),
            ("message.html", serde_json::json!({})),
        ] {
            let r = pages().render(StatusCode::OK, name, "t", data);
            assert_eq!(r.status(), StatusCode::OK, "{name}");
        }
    }

    #[test]
    fn times_are_short_utc() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_796_056_992), "2026-11-30 16:43 UTC");
    }
}
