//! An attacker's pass over authgate as an OpenID Provider (issue 19), each attack kept as a test:
//! look-alike redirect and sign-out URIs, parameters smuggled through `state`, forged consent and
//! sign-out, forged `id_token_hint`s, codes carried across clients or given new parameters at the
//! token endpoint, token endpoint abuse (bodies, encodings, doubled parameters, HTTP/2), what
//! `userinfo` refuses, discovery under a forged `Host`, the sign-in page's `form-action`, and
//! path variants of the endpoints. Every test also asserts that the recording upstream saw
//! nothing: the provider's traffic is never forwarded. The flows that work are `tests/openid/provider.rs`.

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::Digest;

/// A registered redirect URI with a query of its own.
const WITH_QUERY: &str = "https://q.example/cb?tenant=a";
const NO_PKCE_CB: &str = "https://legacy.example/cb";
const BYE: &str = "https://rp.example/bye";

/// A provider with `rp` (trusted, PKCE), `plus` (trusted, the same redirect URI as `rp`), `ask`
/// (asks consent), `q` (a redirect URI with a query) and `legacy` (trusted, no PKCE required).
async fn provider() -> (TestUpstream, TestGateway) {
    let clients = format!(
        r#"
[[oidc.clients]]
client_id = "rp"
client_secret = "{OP_SECRET}"
redirect_uris = ["{OP_CALLBACK}"]
post_logout_redirect_uris = ["{BYE}"]
scopes = ["openid", "email", "profile"]
trusted = true
[[oidc.clients]]
client_id = "plus"
client_secret = "{OP_SECRET}"
redirect_uris = ["{OP_CALLBACK}"]
trusted = true
[[oidc.clients]]
client_id = "ask"
client_secret = "{OP_SECRET}"
redirect_uris = ["https://ask.example/cb"]
[[oidc.clients]]
client_id = "q"
client_secret = "{OP_SECRET}"
redirect_uris = ["{WITH_QUERY}"]
trusted = true
[[oidc.clients]]
client_id = "legacy"
client_secret = "{OP_SECRET}"
redirect_uris = ["{NO_PKCE_CB}"]
trusted = true
require_pkce = false
"#
    );
    op_gateway("ES256", &clients).await
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn authorize_path(client: &str, redirect: &str, extra: &str) -> String {
    format!(
        "/_auth/openid/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20email\
         &state=s1&nonce=n1&code_challenge={OP_CHALLENGE}&code_challenge_method=S256{extra}",
        enc(redirect)
    )
}

/// The request without its PKCE challenge (for `legacy`, which sends none).
fn without_pkce(path: &str) -> String {
    path.replace(
        &format!("&code_challenge={OP_CHALLENGE}&code_challenge_method=S256"),
        "",
    )
}

fn location(reply: &Reply) -> Option<String> {
    reply.headers.get("location").map(|v| v.to_str().unwrap().to_owned())
}

/// A redirect's base and every query pair, repeated ones included.
fn split(reply: &Reply) -> (String, Vec<(String, String)>) {
    let loc = location(reply).expect("a Location");
    let (base, query) = loc.split_once('?').unwrap_or((&loc, ""));
    (
        base.to_owned(),
        form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
    )
}

fn all<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn issuer(gw: &TestGateway) -> String {
    format!("https://localhost:{}", gw.addr.port())
}

async fn token_request(gw: &TestGateway, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    gw.client()
        .call("POST", "/_auth/openid/token", headers, Some(body.to_vec()))
        .await
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.finish().into_bytes()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// A fresh code for `client` at `redirect` from a signed-in jar.
async fn code_for(gw: &TestGateway, jar: &Jar, client: &str, redirect: &str, extra: &str) -> String {
    let mut path = authorize_path(client, redirect, extra);
    if client == "legacy" {
        path = without_pkce(&path);
    }
    let r = navigate(gw, &mut jar.clone(), &path).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let (_, q) = split(&r);
    all(&q, "code").first().expect("a code").to_string()
}

/// The tokens for a code of `rp`.
async fn tokens_for(gw: &TestGateway, code: &str) -> Value {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
    ]);
    let r = token_request(gw, &[FORM, ("authorization", &basic("rp", OP_SECRET))], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Whether the jar's session still signs in: `rp` gets a code without the sign-in page.
async fn still_signed_in(gw: &TestGateway, jar: &Jar) -> bool {
    let r = navigate(gw, &mut jar.clone(), &authorize_path("rp", OP_CALLBACK, "")).await;
    location(&r).is_some_and(|l| l.starts_with(OP_CALLBACK))
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn look_alike_redirect_uris_end_on_a_page_and_are_never_redirected_to() {
    let (up, gw) = provider().await;
    register(&gw, "alice").await;
    let mut jar = signed_in(&gw, "alice").await;
    for (client, uri) in [
        ("rp", "HTTPS://RP.EXAMPLE/callback"),
        ("rp", "https://RP.example/callback"),
        ("rp", "https://rp.example/Callback"),
        ("rp", "https://rp.example/callback/"),
        ("rp", "https://rp.example/callback?"),
        ("rp", "https://rp.example/callback?x=1"),
        ("rp", "https://rp.example/callback#"),
        ("rp", "https://rp.example/callback#x"),
        ("rp", "https://rp.example:443/callback"),
        ("rp", "https://rp.example./callback"),
        ("rp", "https://evil.example@rp.example/callback"),
        ("rp", "https://rp.example@evil.example/callback"),
        ("rp", "https://rp.example%40evil.example/callback"),
        ("rp", "https://rp.example/callback/../callback"),
        ("rp", "https://rp.example/%63allback"),
        ("rp", "https://rp.example/callback%00"),
        ("rp", "https://rp.example/callback "),
        ("rp", " https://rp.example/callback"),
        ("rp", "https://rp.example/callback\t"),
        ("rp", "https://rp.ex\u{0430}mple/callback"),
        ("rp", "https://xn--rp-exmple-8mg.example/callback"),
        ("rp", "http://rp.example/callback"),
        ("rp", "//rp.example/callback"),
        ("rp", "https:rp.example/callback"),
        ("rp", "https://rp.example\\@evil.example/callback"),
        // A registered URI with a query: no other query, no extra parameter, no fragment.
        ("q", "https://q.example/cb"),
        ("q", "https://q.example/cb?tenant=b"),
        ("q", "https://q.example/cb?tenant=A"),
        ("q", "https://q.example/cb?tenant=a&tenant=b"),
        ("q", "https://q.example/cb?tenant=a&x=1"),
        ("q", "https://q.example/cb?tenant=a#x"),
        ("q", "https://q.example/cb?tenant=%61"),
        // Another client's registered URI.
        ("ask", OP_CALLBACK),
        ("rp", "https://ask.example/cb"),
    ] {
        let r = navigate(&gw, &mut jar, &authorize_path(client, uri, "")).await;
        assert_eq!(r.status, 400, "{client} {uri:?}: {}", r.text());
        assert!(location(&r).is_none(), "{client} {uri:?}");
    }
    // `redirect_uri` given raw, undecoded tricks in the query itself.
    for raw in [
        "redirect_uri=https://rp.example/callback%23@evil.example",
        "redirect_uri=https%3A%2F%2Frp.example%2Fcallback&redirect_uri=https%3A%2F%2Fevil.example",
        "redirect_uri=https%3A%2F%2Fevil.example&redirect%5Furi=https%3A%2F%2Frp.example%2Fcallback",
        "redirect_uri=https%3A%2F%2Frp.example%2Fcallback%26redirect_uri%3Dhttps%3A%2F%2Fevil.example",
    ] {
        let path = format!(
            "/_auth/openid/authorize?response_type=code&client_id=rp&{raw}&scope=openid&state=s\
             &code_challenge={OP_CHALLENGE}&code_challenge_method=S256"
        );
        let r = navigate(&gw, &mut jar, &path).await;
        assert_eq!(r.status, 400, "{raw}");
        assert!(location(&r).is_none(), "{raw}");
    }
    // The registered URI with a query keeps it, once, and gets the answer added to it.
    let r = navigate(&gw, &mut jar, &authorize_path("q", WITH_QUERY, "")).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let (base, q) = split(&r);
    assert_eq!(base, "https://q.example/cb");
    assert_eq!(all(&q, "tenant"), ["a"]);
    assert_eq!(all(&q, "code").len(), 1);
    assert_eq!(all(&q, "iss"), [issuer(&gw).as_str()]);
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn state_cannot_add_headers_or_parameters_to_any_redirect() {
    let (up, gw) = provider().await;
    register(&gw, "alice").await;
    let evil = "x\r\nSet-Cookie: evil=1\r\nLocation: https://evil.example/&code=forged&iss=https://evil.example#frag";
    let state = format!("&state={}", enc(evil));
    // Signed out, `prompt=none`: an error back at the client.
    let mut anon = Jar::default();
    let path = authorize_path("rp", OP_CALLBACK, "&prompt=none").replace("&state=s1", &state);
    let signed_out = navigate(&gw, &mut anon, &path).await;
    let mut jar = signed_in(&gw, "alice").await;
    let ok = navigate(
        &gw,
        &mut jar,
        &authorize_path("rp", OP_CALLBACK, "").replace("&state=s1", &state),
    )
    .await;
    let bad_scope = navigate(
        &gw,
        &mut jar,
        &authorize_path("rp", OP_CALLBACK, "")
            .replace("&state=s1", &state)
            .replace("scope=openid%20email", "scope=openid%20groups"),
    )
    .await;
    let consent = navigate(&gw, &mut jar, &authorize_path("ask", "https://ask.example/cb", "")).await;
    assert_eq!(consent.status, 200);
    let query = authorize_path("ask", "https://ask.example/cb", "").replace("&state=s1", &state);
    let query = query.split_once('?').unwrap().1;
    let denied = submit(
        &gw,
        &mut jar,
        "/_auth/openid/consent",
        &[("query", query), ("decision", "deny")],
    )
    .await;
    for (what, r, error) in [
        ("login_required", &signed_out, Some("login_required")),
        ("a code", &ok, None),
        ("invalid_scope", &bad_scope, Some("invalid_scope")),
        ("access_denied", &denied, Some("access_denied")),
    ] {
        assert_eq!(r.status, 303, "{what}: {}", r.text());
        assert!(r.headers.get_all("location").iter().count() == 1, "{what}");
        assert_eq!(r.headers.get("cache-control").unwrap(), "no-store", "{what}");
        assert_eq!(r.headers.get("referrer-policy").unwrap(), "same-origin", "{what}");
        assert!(
            r.headers
                .get_all("set-cookie")
                .iter()
                .all(|c| !c.to_str().unwrap().contains("evil")),
            "{what}"
        );
        let loc = location(r).unwrap();
        assert!(!loc.contains(['\r', '\n', '#', ' ']), "{what}: {loc:?}");
        let (_, q) = split(r);
        assert_eq!(all(&q, "state"), [evil], "{what}: state is echoed exactly, once");
        assert_eq!(all(&q, "iss"), [issuer(&gw).as_str()], "{what}: one iss, ours (mix-up)");
        match error {
            Some(e) => {
                assert_eq!(all(&q, "error"), [e], "{what}");
                assert!(all(&q, "code").is_empty(), "{what}");
            }
            None => {
                let codes = all(&q, "code");
                assert_eq!(codes.len(), 1, "{what}");
                assert_ne!(codes[0], "forged");
            }
        }
    }
    // The same at sign-out.
    let path = format!(
        "/_auth/openid/end_session?client_id=rp&post_logout_redirect_uri={}&state={}",
        enc(BYE),
        enc(evil)
    );
    let r = navigate(&gw, &mut Jar::default(), &path).await;
    assert_eq!(r.status, 303);
    let (base, q) = split(&r);
    assert_eq!(base, BYE);
    assert_eq!(all(&q, "state"), [evil]);
    assert_eq!(q.len(), 1);
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn look_alike_sign_out_uris_are_refused_and_the_session_stays() {
    let (up, gw) = provider().await;
    register(&gw, "alice").await;
    let mut jar = signed_in(&gw, "alice").await;
    let hint = tokens_for(&gw, &code_for(&gw, &jar, "rp", OP_CALLBACK, "").await).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for uri in [
        "https://rp.example/bye/",
        "https://rp.example/Bye",
        "HTTPS://RP.EXAMPLE/bye",
        "https://rp.example/bye?x=1",
        "https://rp.example/bye#x",
        "https://rp.example/bye%2F..%2F..%2Fevil",
        "https://evil.example@rp.example/bye",
        "https://rp.example@evil.example/bye",
        "https://rp.ex\u{0430}mple/bye",
        "https://rp.example/bye ",
        "//rp.example/bye",
        "https://evil.example/",
        OP_CALLBACK,
    ] {
        for who in [format!("id_token_hint={hint}"), "client_id=rp".into(), String::new()] {
            let path = format!("/_auth/openid/end_session?{who}&post_logout_redirect_uri={}", enc(uri));
            let r = navigate(&gw, &mut jar, &path).await;
            assert_eq!(r.status, 400, "{uri:?} {who}");
            assert!(location(&r).is_none(), "{uri:?} {who}");
            assert!(jar.session.is_some(), "{uri:?} {who}");
        }
    }
    // A registered URI, but for a client other than the one named or the hint's.
    for who in [
        "client_id=ask".to_owned(),
        "client_id=plus".to_owned(),
        format!("id_token_hint={hint}&client_id=plus"),
    ] {
        let path = format!("/_auth/openid/end_session?{who}&post_logout_redirect_uri={}", enc(BYE));
        let r = navigate(&gw, &mut jar, &path).await;
        assert_eq!(r.status, 400, "{who}");
        assert!(location(&r).is_none(), "{who}");
    }
    // Given twice: a page.
    let path = format!(
        "/_auth/openid/end_session?client_id=rp&post_logout_redirect_uri={}&post_logout_redirect_uri={}",
        enc(BYE),
        enc("https://evil.example/")
    );
    let r = navigate(&gw, &mut jar, &path).await;
    assert_eq!(r.status, 400);
    assert!(location(&r).is_none());
    assert!(still_signed_in(&gw, &jar).await, "every refusal kept the session");
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn forged_or_foreign_id_token_hints_never_sign_out_without_asking() {
    let (up, gw) = provider().await;
    register(&gw, "alice").await;
    register(&gw, "mallory").await;
    let jar = signed_in(&gw, "alice").await;
    let attacker = signed_in(&gw, "mallory").await;
    let alices = tokens_for(&gw, &code_for(&gw, &jar, "rp", OP_CALLBACK, "").await).await;
    let alice_id = alices["id_token"].as_str().unwrap().to_owned();
    let alice_access = alices["access_token"].as_str().unwrap().to_owned();
    let mallorys = tokens_for(&gw, &code_for(&gw, &attacker, "rp", OP_CALLBACK, "").await).await;
    let mallory_id = mallorys["id_token"].as_str().unwrap().to_owned();
    let header = jsonwebtoken::decode_header(&alice_id).unwrap();
    let kid = header.kid.clone().unwrap();
    let claims = claims_of(&alice_id);

    // alg none, with the provider's kid.
    let none = unsigned(&json!({"alg": "none", "typ": "JWT", "kid": kid}), &claims);
    // Signed by another ES256 key under the provider's kid.
    let (other, _) = authgate::auth::keys::generate(authgate::config::JwtAlgorithm::ES256).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(kid.clone());
    let other_key = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(other.as_bytes()).unwrap(),
    )
    .unwrap();
    // HS256 keyed with the published JWKS (algorithm confusion).
    let jwks = gw.client().get("/.well-known/jwks.json", &[]).await.text();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(kid.clone());
    let hs = jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(jwks.as_bytes())).unwrap();
    // Alice's claims under Mallory's signature.
    let parts: Vec<&str> = mallory_id.split('.').collect();
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    for (what, hint) in [
        ("alg none", none),
        ("another key", other_key),
        ("HS256 keyed with the JWKS", hs),
        ("a spliced signature", spliced),
        ("the access token", alice_access.clone()),
        ("another user's real ID token", mallory_id.clone()),
        ("a gateway JWT", token(claims["sub"].as_str().unwrap())),
    ] {
        for extra in [
            String::new(),
            format!("&client_id=rp&post_logout_redirect_uri={}", enc(BYE)),
        ] {
            let mut j = jar.clone();
            let path = format!("/_auth/openid/end_session?id_token_hint={hint}{extra}");
            let r = navigate(&gw, &mut j, &path).await;
            assert_eq!(r.status, 200, "{what}{extra}: asked first, {}", r.text());
            assert!(location(&r).is_none(), "{what}");
            assert!(r.text().contains("Sign out?"), "{what}");
            assert!(j.session.is_some(), "{what}");
        }
    }
    assert!(still_signed_in(&gw, &jar).await, "no hint signed alice out");
    // HEAD with Alice's own hint is not a GET: 405, and she stays signed in.
    let r = gw
        .client()
        .call(
            "HEAD",
            &format!("/_auth/openid/end_session?id_token_hint={alice_id}"),
            &[("cookie", jar.header().as_str())],
            None,
        )
        .await;
    assert_eq!(r.status, 405);
    assert!(still_signed_in(&gw, &jar).await, "HEAD signed alice out");

    // The confirmation cannot be posted from another site.
    let path = format!(
        "id_token_hint={mallory_id}&client_id=rp&post_logout_redirect_uri={}",
        enc(BYE)
    );
    let origin = format!("https://localhost:{}", gw.addr.port());
    let cookie = format!("__Host-authgate={}", jar.session.clone().unwrap());
    for headers in [
        vec![FORM, ("cookie", cookie.as_str()), ("sec-fetch-site", "cross-site")],
        vec![FORM, ("cookie", cookie.as_str()), ("origin", "https://evil.example")],
        vec![FORM, ("cookie", cookie.as_str()), ("origin", origin.as_str())],
    ] {
        let body = form(&[("query", &path), ("csrf", "guessed")]);
        let r = gw
            .client()
            .call("POST", "/_auth/openid/end_session", &headers, Some(body))
            .await;
        assert_eq!(r.status, 403, "{headers:?}");
        assert!(location(&r).is_none());
    }
    assert!(
        still_signed_in(&gw, &jar).await,
        "no forged confirmation signed alice out"
    );
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn consent_cannot_be_forged_skipped_or_replayed_elsewhere() {
    let (up, gw) = provider().await;
    register(&gw, "alice").await;
    let mut jar = signed_in(&gw, "alice").await;
    let ask = authorize_path("ask", "https://ask.example/cb", "");
    let page = navigate(&gw, &mut jar, &ask).await;
    assert_eq!(page.status, 200);
    // Not to be framed (clickjacking the Allow button).
    assert_eq!(page.headers.get("x-frame-options").unwrap(), "DENY");
    let csp = page.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let query = ask.split_once('?').unwrap().1.to_owned();
    let cookie = jar.header();
    let csrf = jar.csrf.clone().unwrap();
    // Another site posts the form: no Origin of ours, or no CSRF cookie (SameSite=Strict), or a
    // guessed token.
    let session_only = format!("__Host-authgate={}", jar.session.clone().unwrap());
    let origin = format!("https://localhost:{}", gw.addr.port());
    for (what, headers, token) in [
        (
            "cross-site",
            vec![FORM, ("cookie", cookie.as_str()), ("sec-fetch-site", "cross-site")],
            csrf.as_str(),
        ),
        (
            "evil origin",
            vec![FORM, ("cookie", cookie.as_str()), ("origin", "https://evil.example")],
            csrf.as_str(),
        ),
        (
            "no csrf cookie",
            vec![FORM, ("cookie", session_only.as_str()), ("origin", origin.as_str())],
            csrf.as_str(),
        ),
        (
            "wrong token",
            vec![FORM, ("cookie", cookie.as_str()), ("origin", origin.as_str())],
            "0000000000000000000000000000000000000000000",
        ),
    ] {
        let body = form(&[("query", &query), ("decision", "allow"), ("csrf", token)]);
        let r = gw
            .client()
            .call("POST", "/_auth/openid/consent", &headers, Some(body))
            .await;
        assert_eq!(r.status, 403, "{what}");
        assert!(location(&r).is_none(), "{what}");
    }
    // No silent consent through `prompt` spellings, HEAD, or a GET of the consent endpoint.
    for extra in [
        "&prompt=NONE",
        "&prompt=none%20",
        "&PROMPT=none",
        "&prompt=select_account",
    ] {
        let r = navigate(&gw, &mut jar, &format!("{ask}{extra}")).await;
        let gave_code = location(&r).is_some_and(|l| l.contains("code="));
        assert!(!gave_code, "{extra}");
        assert!(r.status == 200 || r.status == 303, "{extra}: {}", r.status);
    }
    let r = gw
        .client()
        .call("HEAD", &ask, &[("cookie", cookie.as_str())], None)
        .await;
    assert_eq!(r.status, 405, "authorize is GET only: a HEAD issues no code");
    assert!(location(&r).is_none());
    let r = navigate(&gw, &mut jar, &format!("/_auth/openid/consent?{query}&decision=allow")).await;
    assert_eq!(r.status, 405);
    assert!(location(&r).is_none());
    // Markup in the query: `"` and `<` are refused in a request target; `'`, which RFC 3986
    // allows, is shown escaped in the form's hidden field.
    for (trick, status) in [("\"><script>alert(1)</script>", "400"), ("'onfocus='alert(1)", "200")] {
        let raw = format!(
            "GET {ask}&x={trick} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\
             Sec-Fetch-Site: same-origin\r\nConnection: close\r\n\r\n"
        );
        let answer = raw_exchange(&gw.ca, gw.addr, raw.as_bytes(), std::time::Duration::from_secs(3)).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{trick}: {answer}");
        assert!(!answer.contains(trick), "{trick}: {answer}");
        if status == "200" {
            assert!(answer.contains("x=&#x27;onfocus=&#x27;alert(1)"), "{answer}");
        }
    }
    // A trusted client still asks when it says `prompt=consent`.
    let r = navigate(&gw, &mut jar, &authorize_path("rp", OP_CALLBACK, "&prompt=consent")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The consent form re-checks what it carries: an unregistered URI or an unknown client is a
    // page, never a redirect.
    for q in [
        query.replace(&enc("https://ask.example/cb"), &enc("https://evil.example/cb")),
        query.replace("client_id=ask", "client_id=nobody"),
        format!("{query}&redirect_uri={}", enc("https://evil.example/cb")),
    ] {
        let r = submit(
            &gw,
            &mut jar,
            "/_auth/openid/consent",
            &[("query", q.as_str()), ("decision", "allow")],
        )
        .await;
        assert_eq!(r.status, 400, "{q}");
        assert!(location(&r).is_none(), "{q}");
    }
    // A consent shown for one client, posted signed out: to the sign-in page, no code.
    let mut anon = Jar {
        session: None,
        ..jar.clone()
    };
    let r = submit(
        &gw,
        &mut anon,
        "/_auth/openid/consent",
        &[("query", &query), ("decision", "allow")],
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(location(&r).unwrap().starts_with("/_auth/sign-in?"));
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn a_code_cannot_cross_clients_nor_take_new_parameters_at_the_token_endpoint() {
    let (up, gw) = provider().await;
    register(&gw, "alice").await;
    register(&gw, "mallory").await;
    let jar = signed_in(&gw, "alice").await;
    // `plus` shares `rp`'s redirect URI: `rp`'s code is still not `plus`'s, and it is spent.
    let code = code_for(&gw, &jar, "rp", OP_CALLBACK, "").await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
    ]);
    let r = token_request(&gw, &[FORM, ("authorization", &basic("plus", OP_SECRET))], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = token_request(&gw, &[FORM, ("authorization", &basic("rp", OP_SECRET))], &body).await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "a code shown to another client is spent"
    );
    // Basic for `plus` with `client_id=rp` in the body: refused, not read as `rp`.
    let code = code_for(&gw, &jar, "rp", OP_CALLBACK, "").await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
        ("client_id", "rp"),
    ]);
    let r = token_request(&gw, &[FORM, ("authorization", &basic("plus", OP_SECRET))], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");

    // A client without PKCE: the token request cannot set the nonce or widen the scope; the ID
    // token says what the authorization request asked.
    let code = code_for(&gw, &jar, "legacy", NO_PKCE_CB, "").await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", NO_PKCE_CB),
        ("nonce", "victims-nonce"),
        ("scope", "openid email profile groups"),
        ("client_id", "legacy"),
        ("client_secret", OP_SECRET),
    ]);
    let r = token_request(&gw, &[FORM], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = claims_of(r.json()["id_token"].as_str().unwrap());
    assert_eq!(id["nonce"], "n1");
    assert_eq!(r.json()["scope"], "openid email");
    assert!(id.get("groups").is_none() && id.get("preferred_username").is_none());

    // Login CSRF into a client: Mallory's code, delivered to Alice's client, is useless with
    // Alice's PKCE verifier (the code is bound to Mallory's challenge), and spent.
    let mallory = signed_in(&gw, "mallory").await;
    let other_verifier = "M4ll0ry-verifier-0123456789-0123456789-abcdefgh";
    let other_challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(other_verifier.as_bytes()));
    let path = authorize_path("rp", OP_CALLBACK, "").replace(OP_CHALLENGE, &other_challenge);
    let r = navigate(&gw, &mut mallory.clone(), &path).await;
    let (_, q) = split(&r);
    let planted = all(&q, "code")[0].to_owned();
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &planted),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
    ]);
    let r = token_request(&gw, &[FORM, ("authorization", &basic("rp", OP_SECRET))], &body).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    // Without PKCE the ID token carries Mallory's nonce, which Alice's client's check refuses.
    let r = navigate(
        &gw,
        &mut mallory.clone(),
        &without_pkce(&authorize_path("legacy", NO_PKCE_CB, "")).replace("nonce=n1", "nonce=mallorys"),
    )
    .await;
    let (_, q) = split(&r);
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", all(&q, "code")[0]),
        ("redirect_uri", NO_PKCE_CB),
    ]);
    let r = token_request(&gw, &[FORM, ("authorization", &basic("legacy", OP_SECRET))], &body).await;
    assert_eq!(claims_of(r.json()["id_token"].as_str().unwrap())["nonce"], "mallorys");
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn token_endpoint_abuse_is_a_clean_refusal() {
    let (up, gw) = provider().await;
    register(&gw, "alice").await;
    let jar = signed_in(&gw, "alice").await;
    let code = code_for(&gw, &jar, "rp", OP_CALLBACK, "").await;
    let good = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
    ];
    let auth = basic("rp", OP_SECRET);
    let json_body = json!({"grant_type": "authorization_code", "code": code, "redirect_uri": OP_CALLBACK,
        "code_verifier": OP_VERIFIER, "client_id": "rp", "client_secret": OP_SECRET})
    .to_string();
    let form_body = form(&good);
    let doubled = [form_body.clone(), b"&code=other".to_vec()].concat();
    let doubled_encoded = [form_body.clone(), b"&c%6Fde=other".to_vec()].concat();
    let secret_twice = [form_body.clone(), format!("&client_secret={OP_SECRET}").into_bytes()].concat();
    let cases: Vec<Case> = vec![
        (
            "a JSON body",
            vec![("content-type", "application/json".into())],
            json_body.clone().into_bytes(),
            415,
            "invalid_request",
        ),
        (
            "no content type",
            vec![("authorization", auth.clone())],
            form_body.clone(),
            415,
            "invalid_request",
        ),
        (
            "text/plain",
            vec![("content-type", "text/plain".into()), ("authorization", auth.clone())],
            form_body.clone(),
            415,
            "invalid_request",
        ),
        (
            "multipart",
            vec![
                ("content-type", "multipart/form-data; boundary=x".into()),
                ("authorization", auth.clone()),
            ],
            form_body.clone(),
            415,
            "invalid_request",
        ),
        (
            "a parameter twice",
            vec![form_ct(), ("authorization", auth.clone())],
            doubled,
            400,
            "invalid_request",
        ),
        (
            "a parameter twice, once encoded",
            vec![form_ct(), ("authorization", auth.clone())],
            doubled_encoded,
            400,
            "invalid_request",
        ),
        (
            "Basic and a body secret",
            vec![form_ct(), ("authorization", auth.clone())],
            secret_twice,
            400,
            "invalid_request",
        ),
        (
            "no client authentication",
            vec![form_ct()],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "a Bearer instead of Basic",
            vec![form_ct(), ("authorization", format!("Bearer {OP_SECRET}"))],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic, not base64",
            vec![form_ct(), ("authorization", "Basic !!!".into())],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic without a colon",
            vec![
                form_ct(),
                ("authorization", format!("Basic {}", STANDARD.encode(OP_SECRET))),
            ],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic, not UTF-8",
            vec![
                form_ct(),
                ("authorization", format!("Basic {}", STANDARD.encode(b"rp:\xff\xfe"))),
            ],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic, the secret with something after `&`",
            vec![form_ct(), ("authorization", basic("rp", &format!("{OP_SECRET}&x=y")))],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic, the secret with `&` after it",
            vec![form_ct(), ("authorization", basic("rp", &format!("{OP_SECRET}&")))],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic, the id with something after `&`",
            vec![form_ct(), ("authorization", basic("rp&x=1", OP_SECRET))],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic, the secret with an encoded NUL after it",
            vec![form_ct(), ("authorization", basic("rp", &format!("{OP_SECRET}%00")))],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic, the secret's prefix",
            vec![form_ct(), ("authorization", basic("rp", &OP_SECRET[..31]))],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic, an empty secret",
            vec![form_ct(), ("authorization", basic("rp", ""))],
            form_body.clone(),
            401,
            "invalid_client",
        ),
        (
            "Basic, another client's id with this secret",
            vec![form_ct(), ("authorization", basic("nobody", OP_SECRET))],
            form_body.clone(),
            401,
            "invalid_client",
        ),
    ];
    for (what, headers, body, status, error) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = token_request(&gw, &headers, &body).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(r.json()["error"], error, "{what}");
        assert_eq!(r.headers.get("cache-control").unwrap(), "no-store", "{what}");
        assert!(r.json().get("access_token").is_none(), "{what}");
    }
    // Two Authorization fields: neither is picked over the other, whichever comes first.
    for pair in [
        [auth.as_str(), "Basic cnA6d3Jvbmc="],
        ["Basic cnA6d3Jvbmc=", auth.as_str()],
    ] {
        let r = token_request(
            &gw,
            &[FORM, ("authorization", pair[0]), ("authorization", pair[1])],
            &form_body,
        )
        .await;
        assert_eq!(r.status, 400, "{pair:?}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_request");
    }
    // A body over the cap.
    let mut huge = form_body.clone();
    huge.extend(b"&pad=");
    huge.extend(vec![b'a'; 100 * 1024]);
    let r = token_request(&gw, &[FORM, ("authorization", &auth)], &huge).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_request");
    // Other methods: 405, JSON.
    for method in ["GET", "PUT", "DELETE", "HEAD"] {
        let r = gw.client().call(method, "/_auth/openid/token", &[], None).await;
        assert_eq!(r.status, 405, "{method}");
    }
    // After all that, the code was never taken: it still works, over HTTP/2, once.
    let r = gw
        .h2_client()
        .call(
            "POST",
            "/_auth/openid/token",
            &[FORM, ("authorization", &auth)],
            Some(form(&good)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.version, http::Version::HTTP_2);
    // Many small parameters within the cap (16 KiB): one answer, not a slow one.
    let mut many = form_body.clone();
    for i in 0..1500 {
        many.extend(format!("&p{i}=1").as_bytes());
    }
    let started = std::time::Instant::now();
    assert!(many.len() < 16 * 1024);
    let r = token_request(&gw, &[FORM, ("authorization", &auth)], &many).await;
    assert_eq!(r.json()["error"], "invalid_grant", "the code was used once");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

/// A token request that must be refused: what it tries, its headers and body, the status and
/// error expected.
type Case = (&'static str, Vec<(&'static str, String)>, Vec<u8>, u16, &'static str);

fn form_ct() -> (&'static str, String) {
    (FORM.0, FORM.1.to_owned())
}

#[tokio::test]
async fn userinfo_takes_only_the_providers_access_token() {
    let (up, gw) = provider().await;
    let (_, jwt) = session(&gw, "alice").await;
    let jar = signed_in(&gw, "alice").await;
    let tokens = tokens_for(&gw, &code_for(&gw, &jar, "rp", OP_CALLBACK, "").await).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let api = gw
        .post_json("/api/auth/tokens", json!({"name": "bot"}), Some(&jwt))
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut claims = claims_of(&access);
    // A real access token's signature over changed claims (another user, a longer life).
    claims["sub"] = json!("someone-else");
    let parts: Vec<&str> = access.split('.').collect();
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    for (what, auth) in [
        ("an API token", format!("Bearer {api}")),
        ("edited claims", format!("Bearer {edited}")),
        ("Basic", basic("rp", OP_SECRET)),
        ("the access token twice", format!("Bearer {access} {access}")),
    ] {
        let r = gw
            .client()
            .get("/_auth/openid/userinfo", &[("authorization", auth.as_str())])
            .await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(r.json().get("sub").is_none(), "{what}");
    }
    // Two Authorization fields, the real token in either: neither is picked.
    let real = format!("Bearer {access}");
    for pair in [[real.as_str(), "Bearer x"], ["Bearer x", real.as_str()]] {
        let r = gw
            .client()
            .get(
                "/_auth/openid/userinfo",
                &[("authorization", pair[0]), ("authorization", pair[1])],
            )
            .await;
        assert_eq!(r.status, 400, "{pair:?}: {}", r.text());
        assert!(r.json().get("sub").is_none());
    }
    // The provider's tokens are no credential for the gateway's own API either.
    for t in [&access, &id_token] {
        let r = gw
            .client()
            .get("/api/auth/me", &[("authorization", &format!("Bearer {t}"))])
            .await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    // Not from a query, a form body, or the session cookie.
    let r = gw
        .client()
        .get(&format!("/_auth/openid/userinfo?access_token={access}"), &[])
        .await;
    assert_eq!(r.status, 401);
    let r = gw
        .client()
        .call(
            "POST",
            "/_auth/openid/userinfo",
            &[FORM],
            Some(form(&[("access_token", &access)])),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = navigate(&gw, &mut jar.clone(), "/_auth/openid/userinfo").await;
    assert_eq!(r.status, 401);
    // The real one works, over HTTP/2 too, and is not cacheable.
    let r = gw
        .h2_client()
        .get(
            "/_auth/openid/userinfo",
            &[("authorization", &format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn discovery_ignores_the_host_the_client_names() {
    let (up, gw) = provider().await;
    let iss = issuer(&gw);
    let plain = gw.client().get("/.well-known/openid-configuration", &[]).await;
    assert_eq!(plain.status, 200);
    for headers in [
        vec![("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "http")],
        vec![("forwarded", "host=evil.example;proto=http")],
        vec![("x-original-url", "https://evil.example/")],
        vec![("host", "evil.example")],
    ] {
        let r = gw.client().get("/.well-known/openid-configuration", &headers).await;
        assert!(r.status < 500, "{headers:?}");
        if r.status == 200 {
            assert_eq!(r.body, plain.body, "{headers:?}");
        }
        assert!(!r.text().contains("evil"), "{headers:?}");
    }
    let doc = plain.json();
    assert_eq!(doc["issuer"], iss.as_str());
    for key in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "end_session_endpoint",
        "jwks_uri",
    ] {
        assert!(doc[key].as_str().unwrap().starts_with(&format!("{iss}/")), "{key}");
    }
    let r = gw
        .client()
        .call("HEAD", "/.well-known/openid-configuration", &[], None)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let r = gw
        .client()
        .call("POST", "/.well-known/openid-configuration", &[], Some(b"x".to_vec()))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn the_sign_in_pages_form_action_adds_only_a_checked_client_origin() {
    let (up, gw) = provider().await;
    let good = authorize_path("rp", OP_CALLBACK, "");
    for (rd, allowed) in [
        (good.clone(), Some("https://rp.example")),
        (authorize_path("rp", "https://evil.example/callback", ""), None),
        (authorize_path("ask", OP_CALLBACK, ""), None),
        (authorize_path("nobody", OP_CALLBACK, ""), None),
        (format!("{good}&redirect_uri={}", enc("https://evil.example/cb")), None),
        (
            good.replace("/_auth/openid/authorize?", "/_auth/openid/authorize/?"),
            None,
        ),
        (
            good.replace("/_auth/openid/authorize?", "/_auth//openid/authorize?"),
            None,
        ),
        (
            good.replace("/_auth/openid/authorize?", "/_auth/openid/./authorize?"),
            None,
        ),
        (
            good.replace("/_auth/openid/authorize?", "/_auth/openid/authorize%3F"),
            None,
        ),
        (format!("https://localhost{good}"), None),
        (format!("//evil.example{good}"), None),
        (
            format!(
                "/_auth/openid/end_session?client_id=rp&post_logout_redirect_uri={}",
                enc("https://evil.example/")
            ),
            None,
        ),
    ] {
        let r = navigate(&gw, &mut Jar::default(), &format!("/_auth/sign-in?rd={}", enc(&rd))).await;
        assert_eq!(r.status, 200, "{rd}");
        let csp = r.headers.get("content-security-policy").unwrap().to_str().unwrap();
        let action = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("form-action"))
            .unwrap();
        match allowed {
            Some(o) => assert_eq!(action, format!("form-action 'self' {o}"), "{rd}"),
            None => assert_eq!(action, "form-action 'self'", "{rd}"),
        }
        assert_eq!(csp.matches("form-action").count(), 1, "{rd}");
    }
    // rd encoded twice is not decoded twice.
    let twice = enc(&enc(&good));
    let r = navigate(&gw, &mut Jar::default(), &format!("/_auth/sign-in?rd={twice}")).await;
    let csp = r.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("form-action 'self';"), "{csp}");
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn long_requests_and_endpoint_look_alikes_are_refused_and_never_forwarded() {
    let (up, gw) = provider().await;
    register(&gw, "alice").await;
    let jar = signed_in(&gw, "alice").await;
    // A state too long to echo; a signed-out request too long for the sign-in page: both back at
    // the client as invalid_request.
    let long_state = authorize_path("rp", OP_CALLBACK, "").replace("state=s1", &format!("state={}", "s".repeat(513)));
    let r = navigate(&gw, &mut jar.clone(), &long_state).await;
    let (base, q) = split(&r);
    assert_eq!(base, OP_CALLBACK);
    assert_eq!(all(&q, "error"), ["invalid_request"]);
    let long = format!("{}&x={}", authorize_path("rp", OP_CALLBACK, ""), "x".repeat(3000));
    let r = navigate(&gw, &mut Jar::default(), &long).await;
    let (base, q) = split(&r);
    assert_eq!(base, OP_CALLBACK);
    assert_eq!(all(&q, "error"), ["invalid_request"]);
    // Very long targets: a 4xx, never a 5xx or a hang.
    for n in [16_000, 60_000] {
        let path = format!("{}&x={}", authorize_path("rp", OP_CALLBACK, ""), "x".repeat(n));
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            navigate(&gw, &mut jar.clone(), &path),
        )
        .await
        .expect("an answer");
        assert!(r.status < 500, "{n}: {}", r.status);
    }
    // Look-alikes of the token endpoint, carrying a client secret and a code: none is answered
    // as the endpoint, none reaches the backend.
    let code = code_for(&gw, &jar, "rp", OP_CALLBACK, "").await;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
        ("client_id", "rp"),
        ("client_secret", OP_SECRET),
    ]);
    for path in [
        "/_auth/openid/token/",
        "/_auth/openid//token",
        "/_auth//openid/token",
        "/_auth/openid/token;x",
        "/_auth/openid/token%3Bx",
        "/_auth/openid/%74oken",
        "/_auth/openid/TOKEN",
        "/_AUTH/openid/token",
        "/_auth/openid/./token",
        "/_auth/openid/x/../token",
        "/_auth/openid/token%00",
        "/%5Fauth/openid/token",
    ] {
        let r = gw.client().call("POST", path, &[FORM], Some(body.clone())).await;
        assert_ne!(r.status, 200, "{path}");
        assert!(r.status < 500, "{path}: {}", r.status);
        assert!(!r.text().contains("access_token"), "{path}");
    }
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
    // HTTP/2: a parameter given twice is refused the same way.
    let twice = format!("{}&client_id=rp", authorize_path("rp", OP_CALLBACK, ""));
    let cookie = jar.header();
    let r = gw.h2_client().get(&twice, &[("cookie", cookie.as_str())]).await;
    assert_eq!(r.status, 400);
    assert!(location(&r).is_none());
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");
}
