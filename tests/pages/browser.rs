//! The browser half of the gateway as a person meets it, in headless Chromium: sign in from a
//! protected page and come back to it, make an API token and use it from a program, end sessions,
//! sign out, and a page on another site that cannot make a signed-in browser post to the backend.
//!
//! The rule these tests keep: each asserts on what the recording upstream received (the user, the
//! cookies, whether anything arrived at all), not only on what the browser shows.
//!
//! Needs Chromium and chromedriver (`scripts/test` installs them); without them the tests fail,
//! unless `AUTHGATE_SKIP_BROWSER=1`. With `AUTHGATE_SCREENSHOTS=1` the screenshots test writes the
//! README's pictures into `docs/screenshots/`; otherwise into `target/tmp/screenshots/`.

use crate::common::browser::{Browser, DESKTOP, OtherSite, PHONE, Page, WAIT, png_size, screenshot_dir};
use crate::common::*;

/// The session cookie the gateway sets (`__Host-`: Secure, Path=/, no Domain).
const COOKIE: &str = "__Host-authgate";
const SIGN_IN: &str = "/_auth/sign-in";
const ACCOUNT: &str = "/_auth/account";
const USER: &str = "alice";

/// A browser, a recording upstream and a gateway in front of it.
struct Setup {
    browser: Browser,
    up: TestUpstream,
    gw: TestGateway,
}

impl Setup {
    /// The gateway's origin as the browser names it.
    fn origin(&self) -> String {
        format!("https://localhost:{}", self.gw.addr.port())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Register [`USER`] through the JSON API; its user id.
    async fn account(&self) -> String {
        let r = register(&self.gw, USER).await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["user_id"].as_str().unwrap().to_owned()
    }

    /// Open the sign-in page and sign in as [`USER`] with [`PASSWORD`]; wait until the browser has
    /// left the sign-in page.
    async fn sign_in(&self, page: &Page) {
        page.goto(&self.url(SIGN_IN)).await;
        fill_sign_in(page).await;
        wait_to_leave(page, SIGN_IN).await;
    }
}

/// `None` when the browser tests are skipped (`AUTHGATE_SKIP_BROWSER=1` and no Chromium).
async fn setup() -> Option<Setup> {
    let browser = Browser::start().await?;
    let (up, gw) = pair("").await;
    Some(Setup { browser, up, gw })
}

/// On the sign-in page: type [`USER`] and [`PASSWORD`], press the submit button.
async fn fill_sign_in(page: &Page) {
    page.type_into("username", USER).await;
    page.type_into("password", PASSWORD).await;
    page.click_and_wait("button[type=submit]").await;
}

/// Wait until the browser is no longer on `path` (a form posted and answered).
async fn wait_to_leave(page: &Page, path: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while page.path().await == path {
        if std::time::Instant::now() > deadline {
            panic!("still on {path} after {WAIT:?}; the page says:\n{}", page.text().await);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What the backend has received since last asked, less the browser's own `/favicon.ico`
/// requests (which carry the cookie too, at a moment of the browser's choosing).
fn received(up: &TestUpstream) -> Vec<Seen> {
    up.seen
        .take()
        .into_iter()
        .filter(|r| r.target != "/favicon.ico")
        .collect()
}

/// The last request of [`received`]; there must be one.
fn last_received(up: &TestUpstream) -> Seen {
    received(up).pop().expect("the backend received nothing")
}

/// Every `Cookie` header value the backend received in one request, joined.
fn cookies_seen(seen: &Seen) -> String {
    seen.all("cookie").join("; ")
}

/// What the harness itself needs, and what holds before the browser pages exist as after:
/// Chromium reaches the gateway over TLS, its cookies go to the backend on a public path, each
/// page has its own cookie jar, and an anonymous visit to a protected path never reaches the backend.
#[tokio::test]
async fn chromium_reaches_the_gateway_and_an_anonymous_visit_stops_there() {
    let Some(s) = setup().await else { return };
    let page = s.browser.page().await;

    page.goto(&s.url("/.well-known/jwks.json")).await;
    let jwks: serde_json::Value = serde_json::from_str(page.text().await.trim()).expect("the browser shows the JWKS");
    assert!(jwks["keys"].is_array(), "{jwks}");

    // A cookie of the application's own, set by a page, goes to the backend untouched.
    page.execute("document.cookie = 'app_pref=dark; Path=/; Secure; SameSite=Lax'; return null")
        .await;
    page.goto(&s.url("/docs/readme")).await;
    let seen = last_received(&s.up);
    assert_eq!(seen.target, "/docs/readme");
    assert_eq!(cookies_seen(&seen), "app_pref=dark");
    assert_eq!(seen.one("sec-fetch-mode").as_deref(), Some("navigate"));
    assert_eq!(seen.one("x-user-id"), None);
    let (width, height) = DESKTOP;
    assert_eq!(page.execute("return window.innerWidth").await, width);
    assert_eq!(page.execute("return window.innerHeight").await, height);

    let png = page
        .screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots/jwks.png"))
        .await;
    assert_eq!(png_size(&png), DESKTOP);

    page.goto(&s.url("/app/page")).await;
    assert!(received(&s.up).is_empty(), "an anonymous visit reached the backend");

    // Another page is another person: none of the first page's cookies.
    let phone = s.browser.phone().await;
    phone.goto(&s.url("/.well-known/jwks.json")).await;
    assert_eq!(phone.execute("return document.cookie").await, "");
    // (window.innerWidth is 980 there: a page without a viewport meta is laid out as on a phone.)
    assert_eq!(phone.execute("return screen.width").await, PHONE.0);
}

/// What the cross-origin test below relies on in the browser, shown on a public path: a form
/// posted from another site carries no SameSite=Lax cookie; from another port of the same host it
/// does (with `Sec-Fetch-Site: same-site` and that page's `Origin`); from the gateway's own page it
/// says `same-origin` and the gateway's origin.
#[tokio::test]
async fn chromium_sends_lax_cookies_on_same_site_posts_only() {
    let Some(s) = setup().await else { return };
    let page = s.browser.page().await;
    page.goto(&s.url("/docs/start")).await;
    page.execute("document.cookie = '__Host-probe=1; Path=/; Secure; SameSite=Lax'; return null")
        .await;

    let post = format!(
        "<!doctype html><form id=f method=post action=\"{}\"><input name=a value=1></form>\
         <script>document.getElementById('f').submit()</script>",
        s.url("/docs/post")
    );
    let cross_site = OtherSite::start(&post).await;
    let same_site = OtherSite::start_tls(&post).await;
    let cross_origin = format!("http://127.0.0.1:{}", cross_site.addr.port());
    let sibling = format!("https://localhost:{}", same_site.addr.port());
    for (from, site, cookie) in [
        (&cross_origin, "cross-site", ""),
        (&sibling, "same-site", "__Host-probe=1"),
    ] {
        s.up.seen.take();
        page.goto(&format!("{from}/")).await;
        page.wait_for_origin(&s.origin()).await;
        let seen = last_received(&s.up);
        assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/docs/post"));
        assert_eq!(seen.one("sec-fetch-site").as_deref(), Some(site), "from {from}");
        assert_eq!(seen.one("origin").as_deref(), Some(from.as_str()));
        assert_eq!(cookies_seen(&seen), cookie, "from {from}");
    }

    page.goto(&s.url("/docs/start")).await;
    s.up.seen.take();
    page.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/docs/post';
         document.body.appendChild(f); f.submit(); return null",
    )
    .await;
    page.wait_for_path("/docs/post").await;
    let seen = last_received(&s.up);
    assert_eq!(seen.one("sec-fetch-site").as_deref(), Some("same-origin"));
    assert_eq!(seen.one("origin"), Some(s.origin()));
    assert_eq!(cookies_seen(&seen), "__Host-probe=1");
}

#[tokio::test]
async fn signing_in_from_a_protected_page_returns_there_and_the_backend_sees_the_user_not_the_cookie() {
    let Some(s) = setup().await else { return };
    let user_id = s.account().await;
    let page = s.browser.page().await;

    page.goto(&s.url("/app/page")).await;
    page.wait_for_path(SIGN_IN).await;
    assert_eq!(page.query("rd").await.as_deref(), Some("/app/page"));
    assert!(received(&s.up).is_empty(), "the anonymous visit reached the backend");
    // A form a person can fill: labelled inputs, the password masked.
    assert!(page.find_all("label").await.len() >= 2, "{}", page.source().await);
    page.find("input[name=password][type=password]").await;

    fill_sign_in(&page).await;
    page.wait_for_path("/app/page").await;
    assert!(
        page.text().await.contains(r#""path":"/app/page""#),
        "{}",
        page.text().await
    );

    let cookie = page.cookie(COOKIE).await.expect("the session cookie is set");
    logscan::secret(cookie.value());
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
    let script_sees = page.execute("return document.cookie").await;
    assert!(
        !script_sees.to_string().contains(COOKIE),
        "HttpOnly: scripts see {script_sees}"
    );

    // A cookie of the application's own, set by the page, arrives beside the user; ours never does.
    page.execute("document.cookie = 'app_pref=dark; Path=/; Secure; SameSite=Lax'; return null")
        .await;
    page.goto(&s.url("/app/next")).await;
    page.wait_for_path("/app/next").await;
    let seen = received(&s.up);
    assert_eq!(
        seen.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
        ["/app/page", "/app/next"]
    );
    for request in &seen {
        assert_eq!(
            request.one("x-user-id").as_deref(),
            Some(user_id.as_str()),
            "{}",
            request.target
        );
        let cookies = cookies_seen(request);
        assert!(
            !cookies.contains(COOKIE),
            "{}: the backend got {cookies}",
            request.target
        );
        assert!(
            !cookies.contains(cookie.value()),
            "{}: the backend got {cookies}",
            request.target
        );
    }
    assert_eq!(cookies_seen(&seen[1]), "app_pref=dark");
}

#[tokio::test]
async fn a_token_made_on_the_account_page_works_from_a_program() {
    let Some(s) = setup().await else { return };
    let user_id = s.account().await;
    let page = s.browser.page().await;
    s.sign_in(&page).await;

    page.goto(&s.url(ACCOUNT)).await;
    assert!(page.text().await.contains(USER), "{}", page.text().await);
    page.type_into("name", "laptop").await;
    page.submit_form_of("name").await;
    let shown = page.find("#new-token").await;
    let mut token = shown.text().await.unwrap().trim().to_owned();
    if token.is_empty() {
        // Shown in a read-only input, to copy.
        token = shown.prop("value").await.unwrap().unwrap_or_default().trim().to_owned();
    }
    assert!(!token.is_empty(), "#new-token is empty: {}", page.source().await);
    logscan::secret(&token);
    // Listed, and shown once only.
    page.goto(&s.url(ACCOUNT)).await;
    assert!(page.text().await.contains("laptop"), "{}", page.text().await);
    assert!(!page.source().await.contains(&token), "the secret is shown again");

    s.up.seen.take();
    let r =
        s.gw.client()
            .get("/app/api", &[("authorization", &bearer(&token))])
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = last_received(&s.up);
    assert_eq!(seen.target, "/app/api");
    assert_eq!(seen.one("x-user-id").as_deref(), Some(user_id.as_str()));
}

#[tokio::test]
async fn signing_out_everywhere_from_another_browser_sends_the_first_to_sign_in() {
    let Some(s) = setup().await else { return };
    let user_id = s.account().await;
    let (first, second) = (s.browser.page().await, s.browser.page().await);
    s.sign_in(&first).await;
    s.sign_in(&second).await;

    first.goto(&s.url("/app/one")).await;
    first.wait_for_path("/app/one").await;
    assert_eq!(last_received(&s.up).one("x-user-id").as_deref(), Some(user_id.as_str()));

    second.goto(&s.url(ACCOUNT)).await;
    // The sessions are listed with End buttons (the other one's at least; this one may be marked
    // as the current session instead).
    let ends = "//*[@type='submit' and (contains(normalize-space(.), 'End') or contains(@value, 'End'))]";
    second.find_xpath(ends).await;
    second.click_button("everywhere").await;

    s.up.seen.take();
    first.goto(&s.url("/app/two")).await;
    first.wait_for_path(SIGN_IN).await;
    assert_eq!(first.query("rd").await.as_deref(), Some("/app/two"));
    assert!(received(&s.up).is_empty(), "an ended session reached the backend");
}

#[tokio::test]
async fn signing_out_ends_the_session_and_its_cookie_no_longer_works() {
    let Some(s) = setup().await else { return };
    s.account().await;
    let page = s.browser.page().await;
    s.sign_in(&page).await;
    page.goto(&s.url(ACCOUNT)).await;
    let old = page.cookie(COOKIE).await.expect("signed in").value().to_owned();
    logscan::secret(&old);

    page.click_and_wait("#sign-out").await;
    assert!(
        page.text().await.to_lowercase().contains("signed out"),
        "{}",
        page.text().await
    );
    assert!(page.cookie(COOKIE).await.is_none(), "the cookie is still there");

    s.up.seen.take();
    page.goto(&s.url("/app/after")).await;
    page.wait_for_path(SIGN_IN).await;
    // The old cookie, kept by someone and replayed from a program, is refused too.
    let replayed = format!("{COOKIE}={old}");
    let r = s.gw.client().get("/app/replay", &[("cookie", &replayed)]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(received(&s.up).is_empty(), "a signed-out session reached the backend");
}

/// A page elsewhere posts a form to the gateway as soon as it opens. From another site the browser
/// does not send the SameSite=Lax cookie; from another origin of the same site (another port on
/// localhost) it does, and only the gateway's origin check stands between the page and the backend.
/// The same post from the gateway's own origin does arrive, so the refusals are not an accident.
#[tokio::test]
async fn a_form_on_another_origin_cannot_post_through_the_signed_in_browser() {
    let Some(s) = setup().await else { return };
    let user_id = s.account().await;
    let page = s.browser.page().await;
    s.sign_in(&page).await;

    let attack = format!(
        "<!doctype html><title>Win a prize</title>\
         <form id=f method=post action=\"{}\"><input name=amount value=1000></form>\
         <script>document.getElementById('f').submit()</script>",
        s.url("/app/transfer")
    );
    let cross_site = OtherSite::start(&attack).await;
    let same_site = OtherSite::start_tls(&attack).await;
    s.up.seen.take();
    for from in [
        format!("http://127.0.0.1:{}/", cross_site.addr.port()),
        format!("https://localhost:{}/", same_site.addr.port()),
    ] {
        page.goto(&from).await;
        // The form was posted and the gateway has answered.
        page.wait_for_origin(&s.origin()).await;
        let posts: Vec<_> = s.up.seen.take().into_iter().filter(|r| r.method == "POST").collect();
        assert!(posts.is_empty(), "a post from {from} reached the backend: {posts:?}");
    }

    page.goto(&s.url("/app/page")).await;
    page.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/app/transfer';
         const i = document.createElement('input'); i.name = 'amount'; i.value = '5'; f.appendChild(i);
         document.body.appendChild(f); f.submit(); return null",
    )
    .await;
    page.wait_for_path("/app/transfer").await;
    let seen = last_received(&s.up);
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/app/transfer"));
    assert_eq!(seen.one("x-user-id").as_deref(), Some(user_id.as_str()));
    assert_eq!(seen.body, b"amount=5");
}

/// The README's pictures: the sign-in page (desktop and phone) and the account page with a token.
#[tokio::test]
async fn the_sign_in_and_account_pages_are_screenshotted() {
    let Some(s) = setup().await else { return };
    s.account().await;
    let dir = screenshot_dir();

    let phone = s.browser.phone().await;
    phone.goto(&s.url(SIGN_IN)).await;
    phone.find("input[name=username]").await;
    let png = phone.screenshot(&dir.join("sign-in-phone.png")).await;
    assert_eq!(png_size(&png).0, PHONE.0);

    let page = s.browser.page().await;
    page.goto(&s.url(SIGN_IN)).await;
    page.find("input[name=username]").await;
    let png = page.screenshot(&dir.join("sign-in.png")).await;
    assert_eq!(png_size(&png), DESKTOP);

    fill_sign_in(&page).await;
    wait_to_leave(&page, SIGN_IN).await;
    page.goto(&s.url(ACCOUNT)).await;
    page.type_into("name", "laptop").await;
    page.submit_form_of("name").await;
    page.find("#new-token").await;
    // The account page as it is afterwards: the token listed, its secret no longer shown.
    page.goto(&s.url(ACCOUNT)).await;
    let png = page.screenshot(&dir.join("account.png")).await;
    assert_eq!(png_size(&png), DESKTOP);
}

/// Single sign-on in the browser, against two real OpenID Providers (panva's oidc-provider):
/// sign in with provider A, reach a protected page as A's linked user, sign out, sign in with
/// provider B, and be another user. The sign-in page with both buttons is screenshotted.
#[tokio::test]
async fn single_sign_on_with_two_providers_in_the_browser() {
    use crate::common::oidc::{OidcAccount, OidcClient, Provider, ProviderConfig};
    let Some(browser) = Browser::start().await else { return };
    assert!(
        crate::common::oidc::available(),
        "Node.js or tests/oidc/node_modules missing: run scripts/test"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pw = "password-at-the-provider";
    let a = Provider::start(
        ProviderConfig::new()
            .client(OidcClient::for_gateway(
                "gw-a",
                "client-secret-a-0123456789",
                port,
                "acme",
            ))
            .account(OidcAccount::new("sub-a", "ada", pw).email("ada@acme.example", true)),
    );
    let b = Provider::start(
        ProviderConfig::new()
            .client(OidcClient::for_gateway(
                "gw-b",
                "client-secret-b-0123456789",
                port,
                "globex",
            ))
            .account(OidcAccount::new("sub-b", "ada", pw).email("ada@globex.example", true)),
    );
    let toml = format!(
        "[[oidc.providers]]\nid = \"acme\"\nname = \"Acme SSO\"\nissuer = \"{}\"\nclient_id = \"gw-a\"\n\
         client_secret = \"client-secret-a-0123456789\"\n\
         [[oidc.providers]]\nid = \"globex\"\nname = \"Globex Entra ID\"\nissuer = \"{}\"\nclient_id = \"gw-b\"\n\
         client_secret = \"client-secret-b-0123456789\"\n",
        a.issuer(),
        b.issuer()
    );
    let up = TestUpstream::start().await;
    let gw = TestGateway::builder(&up.url())
        .listener(listener)
        .extra(&toml)
        .start()
        .await;
    let origin = format!("https://localhost:{port}");
    let started = std::time::Instant::now();
    while !gw.admin_get("/readyz").await.1.contains(r#""globex":true"#) {
        assert!(started.elapsed() < WAIT, "providers never loaded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let page = browser.page().await;
    page.goto(&format!("{origin}/app/page")).await;
    page.wait_for_path(SIGN_IN).await;
    let png = page.screenshot(&screenshot_dir().join("sign-in-sso.png")).await;
    assert_eq!(png_size(&png), DESKTOP);

    // Provider A: its button, its login form, back to the page.
    let mut users = Vec::new();
    for (button, sign_out_after) in [("Acme SSO", true), ("Globex Entra ID", false)] {
        if users.len() == 1 {
            page.goto(&format!("{origin}/app/page")).await;
            page.wait_for_path(SIGN_IN).await;
        }
        page.find_xpath(&format!("//a[contains(., '{button}')]"))
            .await
            .click()
            .await
            .unwrap();
        page.find("#provider-sign-in").await;
        page.type_into("login", "ada").await;
        page.type_into("password", pw).await;
        page.click_and_wait("#provider-sign-in").await;
        page.wait_for_path("/app/page").await;
        let seen = last_received(&up);
        assert_eq!(seen.target, "/app/page");
        assert!(!cookies_seen(&seen).contains(COOKIE));
        let user = seen.one("x-user-id").expect("the backend was told who");
        if let Some(c) = page.cookie(COOKIE).await {
            logscan::secret(c.value());
        }
        users.push(user);
        if sign_out_after {
            page.goto(&format!("{origin}{ACCOUNT}")).await;
            page.click_and_wait("#sign-out").await;
            assert!(page.text().await.contains("signed out"), "{}", page.text().await);
            assert!(page.cookie(COOKIE).await.is_none(), "the cookie is gone");
        }
    }
    assert_ne!(users[0], users[1], "two providers' ada are two users");
}
