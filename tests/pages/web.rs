//! The browser pages over HTTP: sign-in, cookie sessions on proxied requests, sign-out, the
//! account page's actions, and the attacks on them (open redirects, cross-site requests, forged
//! forms, session fixation, a cookie smuggled to the backend). The same flows in a real Chromium
//! are in tests/pages/browser.rs.

use crate::common::*;
use serde_json::json;

const NAV: [(&str, &str); 2] = [
    ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
    ("sec-fetch-mode", "navigate"),
];

#[tokio::test]
async fn a_browser_is_sent_to_sign_in_and_a_program_still_gets_401_json() {
    let (up, gw) = pair("").await;
    let r = gw.client().get("/app/page?x=1&y=2", &NAV).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/_auth/sign-in?rd=%2Fapp%2Fpage%3Fx%3D1%26y%3D2");
    // Accept alone, with HTML first, is a navigation too (a browser without Sec-Fetch-*).
    let r = gw.client().get("/app", &[("accept", "text/html,*/*")]).await;
    assert_eq!(r.status, 303);
    // Programs: requests, curl and the RAG SDKs send */* or JSON, or nothing.
    for headers in [
        vec![],
        vec![("accept", "*/*")],
        vec![("accept", "application/json")],
        vec![("accept", "text/html"), ("sec-fetch-mode", "cors")],
        vec![("accept", "text/html"), ("authorization", "Bearer not-a-token")],
    ] {
        let r = gw.client().get("/app", &headers).await;
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.json()["error"], "invalid_token", "{headers:?}");
    }
    // A POST is never redirected, navigation or not.
    let r = gw.client().call("POST", "/app", &NAV, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.seen.count(), 0);
}

#[tokio::test]
async fn the_sign_in_page_is_a_plain_form_with_strict_headers() {
    let (_up, gw) = pair("").await;
    let mut jar = Jar::default();
    let r = navigate(&gw, &mut jar, "/_auth/sign-in?rd=%2Fapp").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(csp.contains("script-src 'none'"), "{csp}");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    let html = r.text();
    for needle in [
        r#"<label for="username">"#,
        r#"name="username""#,
        r#"<label for="password">"#,
        r#"name="password" type="password""#,
        r#"<button type="submit">"#,
        r#"method="post""#,
    ] {
        assert!(html.contains(needle), "{needle} missing from {html}");
    }
    assert!(!html.contains("<script"), "no script at all");
    let csrf = set_cookie(&r, "__Host-authgate-csrf").expect("a CSRF cookie");
    assert!(
        csrf.contains("Secure") && csrf.contains("HttpOnly") && csrf.contains("Path=/"),
        "{csrf}"
    );
    // The stylesheet is served from the prefix, on this origin.
    let css = gw.client().get("/_auth/style.css", &[]).await;
    assert_eq!(css.status, 200);
    assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));
}

#[tokio::test]
async fn signing_in_sets_an_opaque_host_cookie_and_the_backend_sees_the_user_and_never_the_cookie() {
    let (up, gw) = pair("").await;
    let (user_id, _) = session(&gw, "alice").await;
    let mut jar = Jar::default();
    let r = sign_in_page(&gw, &mut jar, "alice", PASSWORD, "/app/page?x=1").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.headers["location"], "/app/page?x=1");
    let cookie = set_cookie(&r, "__Host-authgate").expect("the session cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let secret = jar.session.clone().unwrap();
    assert_eq!(secret.len(), 43, "256 random bits, base64url: {secret}");
    assert!(!secret.contains('.'), "never a JWT");

    jar.app.push("app_pref=dark".into());
    jar.app.push("app_sid=xyz".into());
    let r = navigate(&gw, &mut jar, "/app/page?x=1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen.last();
    assert_eq!(seen.target, "/app/page?x=1");
    assert_eq!(seen.one("x-user-id").as_deref(), Some(user_id.as_str()));
    let cookies = seen.all("cookie").join("; ");
    assert!(!cookies.contains("__Host-authgate"), "{cookies}");
    assert!(
        cookies.contains("app_pref=dark") && cookies.contains("app_sid=xyz"),
        "{cookies}"
    );
    // The session works for the JSON API too.
    let me = gw.client().get("/api/auth/me", &[("cookie", &jar.header())]).await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["username"], "alice");
}

#[tokio::test]
async fn a_failed_sign_in_says_the_same_for_a_wrong_password_and_an_unknown_user() {
    let (_up, gw) = pair("").await;
    session(&gw, "bob").await;
    let mut pages = Vec::new();
    for (user, pass) in [("bob", "wrong password!"), ("nobody-here", "wrong password!")] {
        let mut jar = Jar::default();
        let r = sign_in_page(&gw, &mut jar, user, pass, "/").await;
        assert_eq!(r.status, 401);
        assert!(jar.session.is_none());
        let html = r.text();
        assert!(html.contains("Wrong username or password."), "{html}");
        assert!(html.contains(r#"name="password""#), "the form again");
        pages.push(html.replace(user, "USER").replace(&csrf_field(&html), "CSRF"));
    }
    assert_eq!(pages[0], pages[1], "the two failures must read the same");
}

#[tokio::test]
async fn the_login_limits_apply_to_the_page_as_to_the_api() {
    let (_up, gw) = pair("[login]\nmax_failures_per_account = 2\n").await;
    session(&gw, "carol").await;
    let mut jar = Jar::default();
    for _ in 0..2 {
        let r = sign_in_page(&gw, &mut jar, "carol", "not her password", "/").await;
        assert_eq!(r.status, 401);
    }
    let r = sign_in_page(&gw, &mut jar, "carol", PASSWORD, "/").await;
    assert_eq!(r.status, 429, "locked even with the right password");
    assert!(r.headers.contains_key("retry-after"));
    assert!(jar.session.is_none());
    // And the API sees the same lock.
    assert_eq!(login(&gw, "carol", PASSWORD).await.status, 429);
}

#[tokio::test]
async fn every_open_redirect_trick_lands_on_the_root() {
    let (_up, gw) = pair("").await;
    session(&gw, "dave").await;
    for rd in [
        "//evil.example",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "http:evil.example",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "%2F%2Fevil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "/../evil",
    ] {
        let mut jar = Jar::default();
        let r = sign_in_page(&gw, &mut jar, "dave", PASSWORD, rd).await;
        assert_eq!(r.status, 303, "{rd}");
        assert_eq!(r.headers["location"], "/", "{rd:?}");
    }
    // Encoded twice in the sign-in URL: decoded once, still refused.
    let mut jar = signed_in(&gw, "dave").await;
    let r = navigate(&gw, &mut jar, "/_auth/sign-in?rd=%252F%252Fevil.example").await;
    assert_eq!(r.headers["location"], "/");
}

#[tokio::test]
async fn a_cross_site_request_with_the_cookie_is_refused_and_never_forwarded() {
    let (up, gw) = pair("").await;
    session(&gw, "erin").await;
    let jar = signed_in(&gw, "erin").await;
    let cookie = jar.header();
    let own = format!("https://localhost:{}", gw.addr.port());
    for (method, extra) in [
        (
            "POST",
            vec![("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")],
        ),
        ("POST", vec![("sec-fetch-site", "same-site")]),
        ("POST", vec![("origin", "https://evil.example")]),
        ("POST", vec![("origin", "null")]),
        ("POST", vec![]),
        ("PUT", vec![("sec-fetch-site", "cross-site")]),
        ("PATCH", vec![("origin", "http://localhost")]),
        ("DELETE", vec![("sec-fetch-site", "none")]),
        // Sec-Fetch-Site decides when sent: a matching Origin does not rescue cross-site.
        ("POST", vec![("sec-fetch-site", "cross-site"), ("origin", own.as_str())]),
    ] {
        let mut headers = vec![
            ("cookie", cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        headers.extend(extra.iter().copied());
        let r = gw
            .client()
            .call(method, "/api/collections", &headers, Some(b"a=1".to_vec()))
            .await;
        assert_eq!(r.status, 403, "{method} {extra:?}");
        assert_eq!(r.json()["error"], "forbidden");
    }
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
    // From the gateway's own origin it goes through; so does any GET.
    for extra in [("sec-fetch-site", "same-origin"), ("origin", own.as_str())] {
        let r = gw
            .client()
            .call(
                "POST",
                "/api/collections",
                &[("cookie", cookie.as_str()), extra],
                Some(b"{}".to_vec()),
            )
            .await;
        assert_eq!(r.status, 200, "{extra:?}");
    }
    let r = gw
        .client()
        .get(
            "/api/collections",
            &[("cookie", cookie.as_str()), ("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.count(), 3);
}

#[tokio::test]
async fn a_header_credential_wins_over_the_cookie_and_the_cookie_is_still_stripped() {
    let (up, gw) = pair("").await;
    let (alice, _) = session(&gw, "alice2").await;
    let (bob, bob_jwt) = session(&gw, "bob2").await;
    let jar = signed_in(&gw, "alice2").await;
    let cookie = format!("{}; theme=1", jar.header());
    let r = gw
        .client()
        .get(
            "/x",
            &[("cookie", cookie.as_str()), ("authorization", &bearer(&bob_jwt))],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = up.seen.last();
    assert_eq!(seen.one("x-user-id").as_deref(), Some(bob.as_str()));
    assert_ne!(alice, bob);
    assert_eq!(seen.all("cookie"), vec!["theme=1".to_owned()]);
    // A bad header credential is not rescued by a good cookie.
    let r = gw
        .client()
        .get("/x", &[("cookie", cookie.as_str()), ("authorization", "Bearer nope")])
        .await;
    assert_eq!(r.status, 401);
    // A cookie in disguise (another case, spaces) never reaches the backend either, public or not.
    let (up2, gw2) = pair("[auth]\npublic_paths = [\"/pub/*\"]\n").await;
    let r = gw2
        .client()
        .get(
            "/pub/x",
            &[("cookie", " __HOST-AUTHGATE = abc ; __Host-authgate-csrf=x; keep=1")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up2.seen.last().all("cookie"), vec!["keep=1".to_owned()]);
}

#[tokio::test]
async fn a_forged_or_foreign_form_post_is_refused() {
    let (_up, gw) = pair("").await;
    session(&gw, "frank").await;
    // No CSRF cookie at all (a form on another site posting to the sign-in URL).
    let r = gw
        .client()
        .call(
            "POST",
            "/_auth/sign-in",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", "https://evil.example"),
            ],
            Some(format!("username=frank&password={}", PASSWORD.replace(' ', "+")).into_bytes()),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(set_cookie(&r, "__Host-authgate").is_none());
    // The right cookie but another token in the field.
    let mut jar = Jar::default();
    navigate(&gw, &mut jar, "/_auth/sign-in").await;
    let mut wrong = jar.clone();
    wrong.csrf = Some("A".repeat(43));
    let cookie = jar.header();
    let body = format!(
        "username=frank&password={}&csrf={}",
        PASSWORD.replace(' ', "+"),
        "A".repeat(43)
    );
    let r = gw
        .client()
        .call(
            "POST",
            "/_auth/sign-in",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", cookie.as_str()),
                ("sec-fetch-site", "same-origin"),
            ],
            Some(body.into_bytes()),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("This form has expired"));
    // The account actions need it too: a signed-in user's token creation from another site.
    let jar = signed_in(&gw, "frank").await;
    let cookie = format!("__Host-authgate={}", jar.session.clone().unwrap());
    let r = gw
        .client()
        .call(
            "POST",
            "/_auth/account/tokens",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", cookie.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
            Some(b"name=stolen".to_vec()),
        )
        .await;
    assert_eq!(r.status, 403);
    let jwt = login_token(&gw, "frank").await;
    let tokens = gw
        .client()
        .get("/api/auth/tokens", &[("authorization", &bearer(&jwt))])
        .await;
    assert_eq!(tokens.json().as_array().map(Vec::len), Some(0), "{}", tokens.text());
    // Not a form at all.
    let r = gw
        .client()
        .call(
            "POST",
            "/_auth/sign-in",
            &[("content-type", "application/json")],
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn sign_in_issues_a_new_session_id_and_ends_the_one_held_before() {
    let (up, gw) = pair("").await;
    session(&gw, "gina").await;
    let mut jar = signed_in(&gw, "gina").await;
    let first = jar.session.clone().unwrap();
    let r = sign_in_page(&gw, &mut jar, "gina", PASSWORD, "/").await;
    assert_eq!(r.status, 303);
    let second = jar.session.clone().unwrap();
    assert_ne!(first, second, "no fixation: a new id at every sign-in");
    let old = gw
        .client()
        .get("/x", &[("cookie", &format!("__Host-authgate={first}"))])
        .await;
    assert_eq!(old.status, 401, "the session held before sign-in has ended");
    // An id the attacker chose is never adopted: it names no session, and sign-in replaces it.
    let planted = "P".repeat(43);
    let mut jar = Jar {
        session: Some(planted.clone()),
        ..Jar::default()
    };
    sign_in_page(&gw, &mut jar, "gina", PASSWORD, "/").await;
    assert_ne!(jar.session.as_deref(), Some(planted.as_str()));
    let r = gw
        .client()
        .get("/x", &[("cookie", &format!("__Host-authgate={planted}"))])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(up.seen.count(), 0);
}

#[tokio::test]
async fn signing_out_ends_the_session_and_clears_the_cookie() {
    let (up, gw) = pair("").await;
    session(&gw, "hank").await;
    let mut jar = signed_in(&gw, "hank").await;
    let secret = jar.session.clone().unwrap();
    let r = submit(&gw, &mut jar, "/_auth/sign-out", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("You are signed out"));
    let cleared = set_cookie(&r, "__Host-authgate").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(jar.session.is_none());
    let r = gw
        .client()
        .get(
            "/x",
            &[("cookie", &format!("__Host-authgate={secret}")), NAV[0], NAV[1]],
        )
        .await;
    assert_eq!(r.status, 303, "back to sign-in");
    assert!(
        set_cookie(&r, "__Host-authgate").unwrap().contains("Max-Age=0"),
        "the dead cookie is cleared"
    );
    assert_eq!(up.seen.count(), 0);
}

#[tokio::test]
async fn the_account_page_makes_and_revokes_tokens_and_ends_sessions() {
    let (up, gw) = pair("").await;
    let (user_id, _) = session(&gw, "ivy").await;
    let mut a = signed_in(&gw, "ivy").await;
    let mut b = signed_in(&gw, "ivy").await;
    let page = navigate(&gw, &mut a, "/_auth/account").await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("Signed in as ivy") && html.contains(&user_id), "{html}");
    assert_eq!(html.matches("account/sessions/end").count(), 2, "both sessions listed");
    assert!(html.contains("(this browser)"));

    // A token, shown once, that a program can use.
    let r = submit(
        &gw,
        &mut a,
        "/_auth/account/tokens",
        &[("name", "laptop"), ("expires_in", "")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    let at = html.find(r#"id="new-token">"#).unwrap() + r#"id="new-token">"#.len();
    let token = html[at..at + html[at..].find('<').unwrap()].to_owned();
    logscan::secret(&token);
    assert!(token.starts_with("agt_"), "{token}");
    let r = gw
        .client()
        .get("/api/data", &[("authorization", &bearer(&token))])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some(user_id.as_str()));
    let again = navigate(&gw, &mut a, "/_auth/account").await.text();
    assert!(
        again.contains("laptop") && !again.contains(&token),
        "listed, secret not shown again"
    );
    let id_at = again.find(r#"name="id" value=""#).unwrap() + r#"name="id" value=""#.len();
    let token_id = again[id_at..id_at + 36].to_owned();
    let r = submit(&gw, &mut a, "/_auth/account/tokens/revoke", &[("id", &token_id)]).await;
    assert_eq!(r.status, 303);
    let r = gw
        .client()
        .get("/api/data", &[("authorization", &bearer(&token))])
        .await;
    assert_eq!(r.status, 401, "revoked");

    // End session b from a: b's next navigation goes to sign-in.
    let html = navigate(&gw, &mut a, "/_auth/account").await.text();
    let rows: Vec<&str> = html.split("<tr>").filter(|r| r.contains("sessions/end")).collect();
    let other = rows.iter().find(|r| !r.contains("(this browser)")).unwrap();
    let at = other.find(r#"name="id" value=""#).unwrap() + r#"name="id" value=""#.len();
    let b_id = other[at..at + 36].to_owned();
    let r = submit(&gw, &mut a, "/_auth/account/sessions/end", &[("id", &b_id)]).await;
    assert_eq!(r.status, 303);
    let r = navigate(&gw, &mut b, "/app").await;
    assert_eq!(r.status, 303);
    assert!(r.headers["location"].to_str().unwrap().starts_with("/_auth/sign-in"));
    assert_eq!(navigate(&gw, &mut a, "/app").await.status, 200, "a is still in");
}

#[tokio::test]
async fn a_password_change_keeps_this_session_and_ends_the_others_and_every_jwt() {
    let (_up, gw) = pair("").await;
    let (_, jwt) = session(&gw, "jack").await;
    let mut a = signed_in(&gw, "jack").await;
    let mut b = signed_in(&gw, "jack").await;
    let r = submit(
        &gw,
        &mut a,
        "/_auth/account/password",
        &[
            ("current_password", "not it at all"),
            ("new_password", "a brand new passphrase"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("The current password is wrong."));
    let r = submit(
        &gw,
        &mut a,
        "/_auth/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "a brand new passphrase"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(navigate(&gw, &mut a, "/app").await.status, 200, "this session stays");
    assert_eq!(navigate(&gw, &mut b, "/app").await.status, 303, "the other ended");
    assert_eq!(status_with_jwt(&gw, &jwt).await, 401, "older JWTs ended");
    assert_eq!(login(&gw, "jack", "a brand new passphrase").await.status, 200);
}

#[tokio::test]
async fn sign_out_everywhere_and_disabling_the_user_end_every_session() {
    let (_up, gw) = pair("").await;
    session(&gw, "kim").await;
    let mut a = signed_in(&gw, "kim").await;
    let mut b = signed_in(&gw, "kim").await;
    let r = submit(&gw, &mut a, "/_auth/account/sign-out-everywhere", &[]).await;
    assert_eq!(r.status, 200);
    assert!(a.session.is_none(), "cookie cleared");
    assert_eq!(navigate(&gw, &mut b, "/app").await.status, 303);

    let mut c = signed_in(&gw, "kim").await;
    assert_eq!(navigate(&gw, &mut c, "/app").await.status, 200);
    let user = gw.gateway.accounts().find_user("kim").await.unwrap();
    gw.gateway.accounts().set_disabled(&user, true).await.unwrap();
    assert_eq!(navigate(&gw, &mut c, "/app").await.status, 303);
    let r = sign_in_page(&gw, &mut Jar::default(), "kim", PASSWORD, "/").await;
    assert_eq!(r.status, 401, "a disabled user cannot sign in");
}

#[tokio::test]
async fn registration_follows_accounts_registration() {
    let (_up, gw) = pair("").await;
    let mut jar = Jar::default();
    let page = navigate(&gw, &mut jar, "/_auth/register?rd=%2Fwelcome").await;
    assert_eq!(page.status, 200);
    let r = submit(
        &gw,
        &mut jar,
        "/_auth/register?rd=%2Fwelcome",
        &[
            ("username", "newbie"),
            ("email", "n@example.com"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.headers["location"], "/welcome");
    assert!(jar.session.is_some(), "signed in at once");
    let r = submit(
        &gw,
        &mut Jar {
            csrf: jar.csrf.clone(),
            ..Jar::default()
        },
        "/_auth/register",
        &[
            ("username", "newbie"),
            ("email", "n@example.com"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("That username is taken"));

    let (_up, closed) = pair("[accounts]\nregistration = \"closed\"\n").await;
    let r = closed.client().get("/_auth/register", &NAV).await;
    assert_eq!(r.status, 404);
    let signin = closed.client().get("/_auth/sign-in", &NAV).await.text();
    assert!(!signin.contains("/_auth/register"), "no link to a closed door");
    let r = closed
        .post_json(
            "/api/auth/register",
            json!({"username": "x1", "password": PASSWORD, "email": "x@example.com"}),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "forbidden");
}

#[tokio::test]
async fn hostile_cookies_and_forms_get_clear_4xx_answers() {
    let (up, gw) = pair("").await;
    for cookie in [
        "__Host-authgate=short",
        "__Host-authgate=",
        "__Host-authgate=a; __Host-authgate=b",
        &format!("__Host-authgate={}", "x".repeat(5000)),
        "__Host-authgate=%00%00",
    ] {
        let r = gw.client().get("/x", &[("cookie", cookie)]).await;
        assert_eq!(r.status, 401, "{cookie:.40}");
        assert_eq!(r.json()["error"], "invalid_token");
    }
    let r = gw
        .client()
        .call(
            "POST",
            "/_auth/sign-in",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(vec![b'a'; 64 * 1024]),
        )
        .await;
    assert_eq!(r.status, 413);
    for path in ["/_auth/nope", "/_auth/account/../sign-in"] {
        let r = gw.client().get(path, &NAV).await;
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
    }
    let r = gw.client().call("DELETE", "/_auth/sign-in", &[], None).await;
    assert_eq!(r.status, 405);
    assert_eq!(up.seen.count(), 0);
}

// ---- Attacks (security review): each of these shows a hole, or pins down a defence. ----

const WS_HANDSHAKE: [(&str, &str); 4] = [
    ("connection", "upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// Cross-site WebSocket hijacking: a WebSocket handshake is a GET, but unlike a GET its answer is
/// readable from another origin (no CORS), and a same-site page (a sibling subdomain) gets the
/// SameSite=Lax cookie sent with it. A cookie session's handshake must pass the same-origin check
/// as an unsafe method does.
#[tokio::test]
async fn a_cross_site_websocket_handshake_with_the_cookie_is_refused() {
    let (up, gw) = pair("").await;
    session(&gw, "wendy").await;
    let jar = signed_in(&gw, "wendy").await;
    let cookie = jar.header();
    for extra in [
        vec![("sec-fetch-site", "same-site"), ("origin", "https://sibling.localhost")],
        vec![("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")],
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
    ] {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend(WS_HANDSHAKE);
        headers.extend(extra.iter().copied());
        let r = gw.client().get("/ws", &headers).await;
        assert_eq!(r.status, 403, "{extra:?}");
        assert_eq!(r.json()["error"], "forbidden");
    }
    assert_eq!(up.seen.count(), 0, "no cross-site handshake was forwarded");
    // From the gateway's own page it is forwarded.
    let mut headers = vec![("cookie", cookie.as_str()), ("sec-fetch-site", "same-origin")];
    headers.extend(WS_HANDSHAKE);
    gw.client().get("/ws", &headers).await;
    assert_eq!(up.seen.count(), 1);
}

/// Slow POST on the sign-in form: a client that declares a body and stops sending must be cut off
/// (408), as a proxied body is after `limits.body_idle_timeout`, not hold a task forever.
#[tokio::test]
async fn a_stalled_form_body_is_cut_off_not_held_forever() {
    let (_up, gw) = pair("[limits]\nbody_idle_timeout = \"1s\"\n").await;
    for path in ["/_auth/sign-in", "/_auth/register", "/_auth/account/tokens"] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 100\r\nSec-Fetch-Site: same-origin\r\n\r\nusername=a"
        );
        let out = raw_exchange(&gw.ca, gw.addr, req.as_bytes(), std::time::Duration::from_secs(4)).await;
        assert!(out.starts_with("HTTP/1.1 408"), "{path}: {out:.200}");
    }
}

/// A front proxy that folds two `Cookie` fields with `, ` (generic field folding, wrong for
/// cookies), or a client that writes one that way: the session secret must still not reach the
/// backend, on a public path or a protected one.
#[tokio::test]
async fn the_session_cookie_after_a_comma_never_reaches_the_backend() {
    let (up, gw) = pair("[auth]\npublic_paths = [\"/pub/*\"]\n").await;
    let secret = "S".repeat(43);
    for cookie in [
        format!("app=1, __Host-authgate={secret}"),
        format!("app=1,__host-authgate={secret}; keep=2"),
        format!("keep=2; app=1 , __Host-authgate-csrf={secret}"),
    ] {
        let r = gw.client().get("/pub/x", &[("cookie", cookie.as_str())]).await;
        assert_eq!(r.status, 200);
        let seen = up.seen.last().all("cookie").join("; ");
        assert!(
            !seen.to_ascii_lowercase().contains("__host-authgate"),
            "{cookie} -> {seen}"
        );
    }
}

/// Markup in everything a user or a browser controls is shown as text on the pages.
#[tokio::test]
async fn markup_in_names_agents_and_echoed_fields_is_escaped() {
    let (_up, gw) = pair("").await;
    session(&gw, "xavier").await;
    let evil = r#"<img src=x onerror=alert(1)>"'&"#;
    let mut jar = Jar::default();
    let page = navigate(&gw, &mut jar, "/_auth/sign-in").await;
    assert_eq!(page.status, 200);
    // A session whose User-Agent names no known browser is listed by its first 40 characters.
    let form = format!(
        "username=xavier&password={}&csrf={}",
        PASSWORD.replace(' ', "+"),
        jar.csrf.clone().unwrap()
    );
    let r = gw
        .client()
        .call(
            "POST",
            "/_auth/sign-in",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", jar.header().as_str()),
                ("sec-fetch-site", "same-origin"),
                ("user-agent", evil),
            ],
            Some(form.into_bytes()),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    jar.keep(&r);
    let r = submit(
        &gw,
        &mut jar,
        "/_auth/account/tokens",
        &[("name", evil), ("expires_in", "")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = navigate(&gw, &mut jar, "/_auth/account").await.text();
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    // Echoed back on a failed sign-in and a failed registration.
    let r = sign_in_page(&gw, &mut Jar::default(), evil, "wrong password!", "/").await;
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("<img src=x"));
    let mut jar = Jar::default();
    navigate(&gw, &mut jar, "/_auth/register").await;
    let r = submit(
        &gw,
        &mut jar,
        "/_auth/register",
        &[("username", evil), ("email", evil), ("password", "short")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!r.text().contains("<img src=x"), "{}", r.text());
}

/// Id tampering on the account page: another user's session or token id does nothing to them.
#[tokio::test]
async fn another_users_session_and_token_ids_cannot_be_ended_from_the_account_page() {
    let (up, gw) = pair("").await;
    session(&gw, "yara").await;
    session(&gw, "zed").await;
    let mut yara = signed_in(&gw, "yara").await;
    let mut zed = signed_in(&gw, "zed").await;
    let r = submit(
        &gw,
        &mut yara,
        "/_auth/account/tokens",
        &[("name", "y"), ("expires_in", "")],
    )
    .await;
    let html = r.text();
    let at = html.find(r#"id="new-token">"#).unwrap() + r#"id="new-token">"#.len();
    let token = html[at..at + html[at..].find('<').unwrap()].to_owned();
    let page = navigate(&gw, &mut yara, "/_auth/account").await.text();
    let ids: Vec<String> = page
        .match_indices(r#"name="id" value=""#)
        .map(|(i, m)| page[i + m.len()..i + m.len() + 36].to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "one token, one session");
    for id in &ids {
        for action in ["/_auth/account/tokens/revoke", "/_auth/account/sessions/end"] {
            let r = submit(&gw, &mut zed, action, &[("id", id)]).await;
            assert_eq!(r.status, 303, "{action}");
        }
    }
    // Zed's own session is still there, and so is everything of Yara's.
    assert_eq!(navigate(&gw, &mut zed, "/app").await.status, 200);
    assert_eq!(navigate(&gw, &mut yara, "/app").await.status, 200);
    let r = gw.client().get("/app", &[("authorization", &bearer(&token))]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.count(), 3);
}

/// The JSON API's unsafe endpoints, reached with a cookie session from another site: refused
/// before they act (no logout, no token, no password change).
#[tokio::test]
async fn a_cookie_session_cannot_drive_the_auth_api_from_another_site() {
    let (_up, gw) = pair("").await;
    session(&gw, "abel").await;
    let mut jar = signed_in(&gw, "abel").await;
    let cookie = jar.header();
    for (method, path, body) in [
        ("POST", "/api/auth/logout", ""),
        ("POST", "/api/auth/logout", r#"{"all":true}"#),
        ("POST", "/api/auth/tokens", r#"{"name":"stolen"}"#),
        ("POST", "/api/auth/refresh", ""),
        (
            "POST",
            "/api/auth/password",
            r#"{"current_password":"x","new_password":"yyyyyyyyyyyyyyyy"}"#,
        ),
        ("DELETE", "/api/auth/tokens/00000000-0000-0000-0000-000000000000", ""),
    ] {
        for site in [
            vec![("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")],
            vec![("sec-fetch-site", "same-site")],
            vec![("content-type", "text/plain")],
        ] {
            let mut headers = vec![("cookie", cookie.as_str()), ("content-type", "application/json")];
            headers.extend(site.iter().copied());
            let r = gw
                .client()
                .call(method, path, &headers, Some(body.as_bytes().to_vec()))
                .await;
            assert_eq!(r.status, 403, "{method} {path} {site:?}: {}", r.text());
        }
    }
    assert_eq!(navigate(&gw, &mut jar, "/app").await.status, 200, "still signed in");
    let jwt = login_token(&gw, "abel").await;
    let tokens = gw
        .client()
        .get("/api/auth/tokens", &[("authorization", &bearer(&jwt))])
        .await;
    assert_eq!(tokens.json().as_array().map(Vec::len), Some(0));
}

/// `rd` on the other doors: registration, and an already signed-in browser's sign-in page.
#[tokio::test]
async fn rd_tricks_land_on_the_root_from_every_door() {
    let (_up, gw) = pair("").await;
    session(&gw, "bea").await;
    let tricks = [
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "%2F%09%2Fevil.example",
        "%2F%0D%0ASet-Cookie:%20x=1",
        "%2F%E3%80%80%2Fevil.example",
        "%2F%EF%BC%8Fevil.example",
        "%2F%252e%252e%2F%2Fevil.example",
        "%5C%5Cevil.example",
        "https:%2F%2Fevil.example",
        "%2F.%2F%2Fevil.example",
    ];
    let mut signed = signed_in(&gw, "bea").await;
    for rd in tricks {
        let r = navigate(&gw, &mut signed, &format!("/_auth/sign-in?rd={rd}")).await;
        assert_eq!(r.status, 303, "{rd}");
        assert_eq!(r.headers["location"], "/", "{rd}");
        // The first rd is the one read; a second cannot override a checked first.
        let r = navigate(&gw, &mut signed, &format!("/_auth/sign-in?rd=%2Fok&rd={rd}")).await;
        assert_eq!(r.headers["location"], "/ok", "{rd}");
    }
    for (i, rd) in tricks.iter().enumerate() {
        let mut jar = Jar::default();
        let path = format!("/_auth/register?rd={rd}");
        let page = navigate(&gw, &mut jar, &path).await;
        assert!(!page.text().contains("evil.example"), "{rd}");
        let name = format!("newbie{i}");
        let r = submit(
            &gw,
            &mut jar,
            &path,
            &[("username", &name), ("email", "n@example.com"), ("password", PASSWORD)],
        )
        .await;
        assert_eq!(r.status, 303, "{rd}: {}", r.text());
        assert_eq!(r.headers["location"], "/", "{rd}");
    }
}

/// Bad input on a page gets a page, not the JSON meant for programs: a browser shows it to a person.
#[tokio::test]
async fn a_bad_request_to_a_page_is_answered_with_a_page() {
    let (_up, gw) = pair("").await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Option<Vec<u8>>, u16);
    let cases: [Case; 4] = [
        (
            "POST",
            "/_auth/sign-in",
            &[("content-type", "text/plain")],
            Some(b"a=1".to_vec()),
            415,
        ),
        ("POST", "/_auth/sign-in", &form, Some(vec![b'a'; 64 * 1024]), 413),
        ("DELETE", "/_auth/sign-in", &[], None, 405),
        ("PUT", "/_auth/account", &form, None, 405),
    ];
    for (method, path, headers, body, status) in cases {
        let r = gw.client().call(method, path, headers, body).await;
        assert_eq!(r.status, status, "{method} {path}");
        let kind = r.headers["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/html"), "{method} {path}: {kind} {}", r.text());
        assert_eq!(r.headers["cache-control"], "no-store");
        assert!(r.headers.contains_key("content-security-policy"));
    }
}

/// HTTP/2: the session cookie in its own crumb beside the app's is read once and stripped, and
/// the same-origin check takes `:authority` (no Host field) for the gateway's origin.
#[tokio::test]
async fn over_http2_cookie_crumbs_are_stripped_and_origin_is_checked_against_the_authority() {
    let (up, gw) = pair("").await;
    let (user_id, _) = session(&gw, "hugo").await;
    let jar = signed_in(&gw, "hugo").await;
    let crumb = format!("__Host-authgate={}", jar.session.clone().unwrap());
    let h2 = gw.h2_client();
    let r = h2
        .get(
            "/app",
            &[("cookie", "app=1"), ("cookie", crumb.as_str()), ("cookie", "b=2")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen.last();
    assert_eq!(seen.one("x-user-id").as_deref(), Some(user_id.as_str()));
    assert_eq!(seen.all("cookie"), vec!["app=1; b=2".to_owned()]);
    let own = format!("https://localhost:{}", gw.addr.port());
    for (origin, status) in [("https://evil.example", 403), ("null", 403), (own.as_str(), 200)] {
        let r = h2
            .call(
                "POST",
                "/app",
                &[("cookie", crumb.as_str()), ("origin", origin)],
                Some(b"{}".to_vec()),
            )
            .await;
        assert_eq!(r.status, status, "{origin}");
    }
    assert_eq!(up.seen.count(), 2);
}

#[tokio::test]
async fn signing_in_again_and_again_keeps_at_most_fifty_sessions_and_ends_the_oldest() {
    let (_up, gw) = pair("").await;
    session(&gw, "repeat").await;
    let user = gw.gateway.accounts().find_user("repeat").await.unwrap();
    let mut first = None;
    for i in 0..52 {
        let made = gw
            .gateway
            .accounts()
            .start_session(
                &user,
                std::time::Duration::from_secs(3600),
                "127.0.0.1".parse().unwrap(),
                "t",
                None,
            )
            .await
            .unwrap();
        logscan::secret(&made.secret);
        if i == 0 {
            first = Some(made.secret);
        }
        // Distinct creation times order them.
        if i < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
    }
    let live = gw.gateway.accounts().list_sessions(&user, None).await.unwrap();
    assert_eq!(live.len(), 50);
    let r = gw
        .client()
        .get("/x", &[("cookie", &format!("__Host-authgate={}", first.unwrap()))])
        .await;
    assert_eq!(r.status, 401, "the oldest session was ended");
}

#[tokio::test]
async fn with_local_sign_in_off_the_page_has_no_password_form_and_refuses_one() {
    let (_up, gw) = pair("[accounts]\nlocal_sign_in = false\n").await;
    session(&gw, "nolocal").await;
    let page = gw.client().get("/_auth/sign-in", &NAV).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        !html.contains(r#"name="password""#) && !html.contains("/_auth/register"),
        "{html}"
    );
    let mut jar = Jar::default();
    navigate(&gw, &mut jar, "/_auth/sign-in").await;
    let r = submit(
        &gw,
        &mut jar,
        "/_auth/sign-in",
        &[("username", "nolocal"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(jar.session.is_none());
    assert_eq!(gw.client().get("/_auth/register", &NAV).await.status, 404);
    // Programs keep /api/auth/login.
    assert_eq!(login(&gw, "nolocal", PASSWORD).await.status, 200);
}
