//! authgate as an OpenID Provider, spoken to over real TLS: discovery, the code flow with PKCE
//! through the sign-in page and a session, consent, the token endpoint, userinfo, and what the
//! provider's tokens may not do (pass as a gateway credential). The relying-party libraries'
//! view (authlib in Chromium, PyJWT) is `tests/openid/relying_parties.rs`.

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A secret that form-encoding changes (`+`, `/`, `%`, `:`).
const SECRET_PLUS: &str = "p+q/r%2Bs:t~0123456789abcdefghijklmnop";

/// A gateway that is an OpenID Provider for `rp` (trusted) and `ask` (asks consent), signing
/// with ES256.
async fn provider() -> (TestUpstream, TestGateway) {
    provider_signing("ES256").await
}

/// The same, signing with `alg`: ES256 (a key authgate generates) or RS256 (one from openssl).
async fn provider_signing(alg: &str) -> (TestUpstream, TestGateway) {
    let clients = format!(
        r#"
[[oidc.clients]]
client_id = "rp"
client_secret = "{OP_SECRET}"
redirect_uris = ["{OP_CALLBACK}"]
post_logout_redirect_uris = ["https://rp.example/bye"]
scopes = ["openid", "email", "profile", "groups"]
trusted = true
[[oidc.clients]]
client_id = "ask"
client_secret = "{OP_SECRET}"
redirect_uris = ["https://ask.example/cb"]
[[oidc.clients]]
client_id = "plus"
client_secret = "{SECRET_PLUS}"
redirect_uris = ["{OP_CALLBACK}"]
trusted = true
"#
    );
    op_gateway(alg, &clients).await
}

fn authorize_path(client: &str, redirect: &str, extra: &str) -> String {
    let r: String = form_urlencoded::byte_serialize(redirect.as_bytes()).collect();
    format!(
        "/_auth/openid/authorize?response_type=code&client_id={client}&redirect_uri={r}&scope=openid%20email%20profile\
         &state=st%20ate%2F1&nonce=n-0S6_WzA2Mj&code_challenge={OP_CHALLENGE}&code_challenge_method=S256{extra}"
    )
}

/// The query pairs of a redirect's `Location`.
fn location_query(reply: &Reply) -> (String, Vec<(String, String)>) {
    let loc = reply
        .headers
        .get("location")
        .expect("a Location")
        .to_str()
        .unwrap()
        .to_owned();
    let (base, query) = loc.split_once('?').unwrap_or((&loc, ""));
    let pairs = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    (base.to_owned(), pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn exchange(gw: &TestGateway, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        ser.append_pair(k, v);
    }
    let auth = basic.map(|(id, secret)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    });
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    gw.client()
        .call("POST", "/_auth/openid/token", &headers, Some(ser.finish().into_bytes()))
        .await
}

/// The signed-in browser's code for `rp`, redeemed at the token endpoint: the token response.
async fn rp_tokens(gw: &TestGateway, jar: &mut Jar) -> Value {
    let (_, q) = location_query(&navigate(gw, jar, &authorize_path("rp", OP_CALLBACK, "")).await);
    let code = param(&q, "code").unwrap().to_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
    ];
    exchange(gw, &form, Some(("rp", OP_SECRET))).await.json()
}

/// The claims of a JWT after checking its signature against the gateway's JWKS.
async fn verified_claims(gw: &TestGateway, token: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert!(matches!(
        header.alg,
        jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::RS256
    ));
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&gw.client().get("/.well-known/jwks.json", &[]).await.text()).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the kid is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[aud]);
    v.set_issuer(&[format!("https://localhost:{}", gw.addr.port())]);
    jsonwebtoken::decode::<Value>(token, &key, &v).unwrap().claims
}

#[tokio::test]
async fn discovery_names_every_endpoint_on_the_issuer() {
    let (_up, gw) = provider().await;
    let r = gw.client().get("/.well-known/openid-configuration", &[]).await;
    assert_eq!(r.status, 200);
    let d = r.json();
    let iss = format!("https://localhost:{}", gw.addr.port());
    assert_eq!(d["issuer"], iss.as_str());
    assert_eq!(d["authorization_endpoint"], format!("{iss}/_auth/openid/authorize"));
    assert_eq!(d["token_endpoint"], format!("{iss}/_auth/openid/token"));
    assert_eq!(d["userinfo_endpoint"], format!("{iss}/_auth/openid/userinfo"));
    assert_eq!(d["end_session_endpoint"], format!("{iss}/_auth/openid/end_session"));
    assert_eq!(d["jwks_uri"], format!("{iss}/.well-known/jwks.json"));
    assert_eq!(d["id_token_signing_alg_values_supported"], serde_json::json!(["ES256"]));
    assert_eq!(d["code_challenge_methods_supported"], serde_json::json!(["S256"]));
}

#[tokio::test]
async fn the_code_flow_signs_in_and_its_tokens_pass_nowhere_else() {
    let (up, gw) = provider().await;
    register(&gw, "alice").await;
    let mut jar = Jar::default();
    // Not signed in: to the sign-in page, which comes back to authorize.
    let start = authorize_path("rp", OP_CALLBACK, "");
    let r = navigate(&gw, &mut jar, &start).await;
    assert_eq!(r.status, 303);
    let (to, q) = location_query(&r);
    assert_eq!(to, "/_auth/sign-in");
    assert_eq!(param(&q, "rd"), Some(start.as_str()));
    // The sign-in page lets its form's redirects end at the client.
    let page = navigate(
        &gw,
        &mut jar.clone(),
        &format!(
            "/_auth/sign-in?rd={}",
            form_urlencoded::byte_serialize(start.as_bytes()).collect::<String>()
        ),
    )
    .await;
    let csp = page.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("form-action 'self' https://rp.example"), "{csp}");
    let r = sign_in_page(&gw, &mut jar, "alice", PASSWORD, &start).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers.get("location").unwrap().to_str().unwrap(), start);
    let r = navigate(&gw, &mut jar, &start).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let (to, q) = location_query(&r);
    assert_eq!(to, OP_CALLBACK);
    assert_eq!(param(&q, "state"), Some("st ate/1"), "state is echoed exactly");
    assert_eq!(
        param(&q, "iss"),
        Some(format!("https://localhost:{}", gw.addr.port()).as_str())
    );
    let code = param(&q, "code").unwrap().to_owned();

    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
    ];
    let r = exchange(&gw, &form, Some(("rp", OP_SECRET))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    let tokens = r.json();
    assert_eq!(tokens["token_type"], "Bearer");
    let id_token = tokens["id_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let claims = verified_claims(&gw, id_token, "rp").await;
    let me = gw.gateway.accounts().find_user("alice").await.unwrap();
    assert_eq!(claims["sub"], me.id.as_str());
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["email"], me.email.as_str());
    assert_eq!(
        claims["email_verified"], false,
        "a local registration's email is not verified"
    );
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["groups"], serde_json::json!([]));
    let at_hash = URL_SAFE_NO_PAD.encode(&Sha256::digest(access.as_bytes())[..16]);
    assert_eq!(claims["at_hash"], at_hash.as_str());

    // The code is used once.
    let again = exchange(&gw, &form, Some(("rp", OP_SECRET))).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"], "invalid_grant");

    // userinfo takes the access token, and only it.
    let bearer = format!("Bearer {access}");
    let info = gw
        .client()
        .get("/_auth/openid/userinfo", &[("authorization", &bearer)])
        .await;
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(info.json()["sub"], me.id.as_str());
    assert_eq!(info.json()["email"], me.email.as_str());
    let with_id = format!("Bearer {id_token}");
    let info = gw
        .client()
        .get("/_auth/openid/userinfo", &[("authorization", &with_id)])
        .await;
    assert_eq!(info.status, 401);
    assert!(
        info.headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Neither token is a gateway credential: 401, and the backend sees nothing.
    for t in [access, id_token] {
        let r = gw
            .client()
            .get("/api/search", &[("authorization", &format!("Bearer {t}"))])
            .await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    assert_eq!(up.seen.count(), 0, "nothing was forwarded");

    // Disabled: the code it had is refused, and userinfo with its token too.
    let r = navigate(&gw, &mut jar, &start).await;
    let (_, q) = location_query(&r);
    let code = param(&q, "code").unwrap().to_owned();
    gw.gateway.accounts().set_disabled(&me, true).await.unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
        ("client_id", "rp"),
        ("client_secret", OP_SECRET),
    ];
    let r = exchange(&gw, &form, None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_grant");
    let info = gw
        .client()
        .get("/_auth/openid/userinfo", &[("authorization", &bearer)])
        .await;
    assert_eq!(info.status, 401);
}

#[tokio::test]
async fn refusals_are_the_errors_the_specifications_name() {
    let (_up, gw) = provider().await;
    register(&gw, "bob").await;
    let mut jar = signed_in(&gw, "bob").await;

    // An unregistered redirect URI: a page here, never a redirect.
    for path in [
        authorize_path("rp", "https://evil.example/callback", ""),
        authorize_path("rp", "https://rp.example/callback/", ""),
        authorize_path("nobody", OP_CALLBACK, ""),
        format!("{}&client_id=rp", authorize_path("rp", OP_CALLBACK, "")),
    ] {
        let r = navigate(&gw, &mut jar, &path).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(r.headers.get("location").is_none(), "{path}");
    }
    // Errors a client can be told, at its redirect URI with its state.
    for (extra, error) in [
        ("&response_type=token", None),
        ("&request=eyJ", Some("request_not_supported")),
        ("&prompt=none%20login", Some("invalid_request")),
    ] {
        let r = navigate(&gw, &mut jar, &authorize_path("rp", OP_CALLBACK, extra)).await;
        match error {
            None => assert_eq!(r.status, 400, "duplicate response_type: {extra}"),
            Some(error) => {
                assert_eq!(r.status, 303, "{extra}");
                let (to, q) = location_query(&r);
                assert_eq!(to, OP_CALLBACK);
                assert_eq!(param(&q, "error"), Some(error), "{extra}");
                assert_eq!(param(&q, "state"), Some("st ate/1"));
            }
        }
    }
    let bad_scope = authorize_path("rp", OP_CALLBACK, "").replace("scope=openid%20email%20profile", "scope=email");
    let (_, q) = location_query(&navigate(&gw, &mut jar, &bad_scope).await);
    assert_eq!(param(&q, "error"), Some("invalid_scope"));
    let no_pkce = authorize_path("rp", OP_CALLBACK, "").replace(
        &format!("&code_challenge={OP_CHALLENGE}&code_challenge_method=S256"),
        "",
    );
    let (_, q) = location_query(&navigate(&gw, &mut jar, &no_pkce).await);
    assert_eq!(param(&q, "error"), Some("invalid_request"), "this client must use PKCE");
    let plain =
        authorize_path("rp", OP_CALLBACK, "").replace("code_challenge_method=S256", "code_challenge_method=plain");
    let (_, q) = location_query(&navigate(&gw, &mut jar, &plain).await);
    assert_eq!(param(&q, "error"), Some("invalid_request"), "plain PKCE is refused");

    // Token endpoint: wrong secret, wrong verifier, wrong redirect URI.
    let code = || {
        let path = authorize_path("rp", OP_CALLBACK, "");
        let gw = &gw;
        let mut jar = jar.clone();
        async move {
            let (_, q) = location_query(&navigate(gw, &mut jar, &path).await);
            param(&q, "code").unwrap().to_owned()
        }
    };
    let c = code().await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
    ];
    let r = exchange(&gw, &form, Some(("rp", "wrong-secret"))).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    assert!(r.headers.get("www-authenticate").is_some());
    let r = exchange(&gw, &form, None).await;
    assert_eq!(r.status, 401, "no client authentication");
    for (name, value) in [
        ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"),
        ("redirect_uri", "https://rp.example/other"),
    ] {
        let c = code().await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", c.as_str()),
            ("redirect_uri", OP_CALLBACK),
            ("code_verifier", OP_VERIFIER),
        ];
        form.retain(|(k, _)| *k != name);
        form.push((name, value));
        let r = exchange(&gw, &form, Some(("rp", OP_SECRET))).await;
        assert_eq!(r.status, 400, "{name}");
        assert_eq!(r.json()["error"], "invalid_grant", "{name}");
        assert_eq!(r.json()["code"], 400);
    }
    let c = code().await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", OP_CALLBACK),
    ];
    let r = exchange(&gw, &form, Some(("rp", OP_SECRET))).await;
    assert_eq!(r.json()["error"], "invalid_grant", "a missing verifier");
    let r = exchange(&gw, &[("grant_type", "password")], Some(("rp", OP_SECRET))).await;
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    // A code issued to `rp` is refused to `ask`.
    let c = code().await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
    ];
    let r = exchange(&gw, &form, Some(("ask", OP_SECRET))).await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn an_untrusted_client_needs_consent_and_a_denial_goes_back_as_access_denied() {
    let (_up, gw) = provider().await;
    register(&gw, "carol").await;
    let mut jar = signed_in(&gw, "carol").await;
    let path = authorize_path("ask", "https://ask.example/cb", "").replace("%20email%20profile", "%20email");
    let page = navigate(&gw, &mut jar, &path).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains("Allow ask?"), "{html}");
    let csp = page.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("form-action 'self' https://ask.example"), "{csp}");
    let query = path.split_once('?').unwrap().1;
    // A cross-site form without the CSRF token is refused.
    let mut forged = Jar {
        csrf: None,
        ..jar.clone()
    };
    let r = submit(
        &gw,
        &mut forged,
        "/_auth/openid/consent",
        &[("query", query), ("decision", "allow")],
    )
    .await;
    assert_eq!(r.status, 403);
    let r = submit(
        &gw,
        &mut jar,
        "/_auth/openid/consent",
        &[("query", query), ("decision", "deny")],
    )
    .await;
    let (to, q) = location_query(&r);
    assert_eq!(to, "https://ask.example/cb");
    assert_eq!(param(&q, "error"), Some("access_denied"));
    let r = submit(
        &gw,
        &mut jar,
        "/_auth/openid/consent",
        &[("query", query), ("decision", "allow")],
    )
    .await;
    let (to, q) = location_query(&r);
    assert_eq!(to, "https://ask.example/cb");
    assert!(param(&q, "code").is_some());
    // prompt=none cannot consent silently.
    let (_, q) = location_query(&navigate(&gw, &mut jar, &format!("{path}&prompt=none")).await);
    assert_eq!(param(&q, "error"), Some("consent_required"));
}

#[tokio::test]
async fn a_consent_given_after_max_age_has_passed_asks_for_a_fresh_sign_in_and_issues_no_code() {
    let (_up, gw) = provider().await;
    register(&gw, "erin").await;
    let mut jar = signed_in(&gw, "erin").await;
    let path = authorize_path("ask", "https://ask.example/cb", "&max_age=60").replace("%20email%20profile", "%20email");
    let page = navigate(&gw, &mut jar, &path).await;
    assert_eq!(
        page.status,
        200,
        "signed in just now: the consent page, {}",
        page.text()
    );
    // The page stays open for an hour: the session's sign-in moves back by as much.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", gw.dir.path().join("authgate.db").display()))
        .await
        .unwrap();
    let aged = sqlx::query("UPDATE sessions SET created_at = created_at - 3600")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(aged.rows_affected(), 1);
    let query = path.split_once('?').unwrap().1;
    let r = submit(
        &gw,
        &mut jar,
        "/_auth/openid/consent",
        &[("query", query), ("decision", "allow")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let (to, q) = location_query(&r);
    assert_eq!(to, "/_auth/sign-in", "to the password form, not to the client");
    assert_eq!(param(&q, "login"), Some("1"));
    assert!(param(&q, "code").is_none());
    // And from there back to the same authorization request (which asks for consent again).
    let rd = param(&q, "rd").unwrap();
    let pairs = |p: &str| -> Vec<(String, String)> {
        let (base, query) = p.split_once('?').unwrap();
        assert_eq!(base, "/_auth/openid/authorize");
        form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    };
    assert_eq!(pairs(rd), pairs(&path));
    // Without max_age the same consent still issues a code.
    let plain = authorize_path("ask", "https://ask.example/cb", "").replace("%20email%20profile", "%20email");
    let r = submit(
        &gw,
        &mut jar,
        "/_auth/openid/consent",
        &[("query", plain.split_once('?').unwrap().1), ("decision", "allow")],
    )
    .await;
    let (to, q) = location_query(&r);
    assert_eq!(to, "https://ask.example/cb");
    assert!(param(&q, "code").is_some());
}

#[tokio::test]
async fn end_session_with_a_hint_signs_out_and_returns_only_to_registered_uris() {
    let (_up, gw) = provider().await;
    register(&gw, "dave").await;
    let mut jar = signed_in(&gw, "dave").await;
    let tokens = rp_tokens(&gw, &mut jar).await;
    let hint = tokens["id_token"].as_str().unwrap();
    let evil = format!(
        "/_auth/openid/end_session?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F"
    );
    let r = navigate(&gw, &mut jar, &evil).await;
    assert_eq!(r.status, 400);
    assert!(jar.session.is_some(), "still signed in");
    let ok = format!(
        "/_auth/openid/end_session?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye&state=s1"
    );
    let r = navigate(&gw, &mut jar, &ok).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers.get("location").unwrap(), "https://rp.example/bye?state=s1");
    assert!(jar.session.is_none(), "signed out");
}

#[tokio::test]
async fn prompt_login_asks_for_the_password_again_once() {
    let (_up, gw) = provider().await;
    register(&gw, "erin").await;
    let mut jar = signed_in(&gw, "erin").await;
    let before = jar.session.clone();
    let path = authorize_path("rp", OP_CALLBACK, "&prompt=login");
    let r = navigate(&gw, &mut jar, &path).await;
    assert_eq!(r.status, 303);
    let (to, q) = location_query(&r);
    assert_eq!(to, "/_auth/sign-in");
    assert_eq!(param(&q, "login"), Some("1"));
    let rd = param(&q, "rd").unwrap().to_owned();
    assert!(!rd.contains("prompt"), "{rd}");
    // Signed in, yet shown the form.
    let page = navigate(
        &gw,
        &mut jar.clone(),
        r.headers.get("location").unwrap().to_str().unwrap(),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let r = sign_in_page(&gw, &mut jar, "erin", PASSWORD, &rd).await;
    assert_eq!(r.status, 303);
    assert_ne!(jar.session, before, "a new session");
    let r = navigate(&gw, &mut jar, &rd).await;
    let (to, q) = location_query(&r);
    assert_eq!(to, OP_CALLBACK);
    assert!(param(&q, "code").is_some());
    // A max_age that is not a number of seconds.
    let r = navigate(&gw, &mut jar, &authorize_path("rp", OP_CALLBACK, "&max_age=abc")).await;
    let (_, q) = location_query(&r);
    assert_eq!(param(&q, "error"), Some("invalid_request"));
}

#[tokio::test]
async fn rs256_id_tokens_verify_against_the_published_key() {
    let (_up, gw) = provider_signing("RS256").await;
    let d = gw.client().get("/.well-known/openid-configuration", &[]).await.json();
    assert_eq!(d["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
    register(&gw, "frank").await;
    let mut jar = signed_in(&gw, "frank").await;
    let tokens = rp_tokens(&gw, &mut jar).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(id_token).unwrap().alg,
        jsonwebtoken::Algorithm::RS256
    );
    let claims = verified_claims(&gw, id_token, "rp").await;
    assert_eq!(claims["preferred_username"], "frank");
}

#[tokio::test]
async fn a_jwt_key_cannot_also_sign_id_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = authgate::auth::keys::generate(authgate::config::JwtAlgorithm::ES256).unwrap();
    let (key, copy) = (dir.path().join("k.pem"), dir.path().join("copy.pem"));
    std::fs::write(&key, &private).unwrap();
    std::fs::write(&copy, &private).unwrap();
    let toml = |op: &std::path::Path| {
        format!(
            "[server]\nplaintext = true\n[jwt]\nalgorithm = \"ES256\"\n[[jwt.keys]]\nkid = \"k\"\nalgorithm = \"ES256\"\n\
             private_key = \"{key}\"\nsigning = true\n[store]\nurl = \"sqlite://{db}?mode=rwc\"\n[oidc]\n\
             issuer = \"https://gw.example\"\nsigning_key = \"{op}\"\nsigning_algorithm = \"ES256\"\n[[oidc.clients]]\n\
             client_id = \"rp\"\nclient_secret = \"{OP_SECRET}\"\nredirect_uris = [\"https://rp.example/cb\"]\n",
            key = key.display(),
            op = op.display(),
            db = dir.path().join("a.db").display(),
        )
    };
    // The same file: refused by the config check, naming the key.
    let err = authgate::config::Config::from_toml_str(&toml(&key))
        .unwrap_err()
        .to_string();
    assert!(err.contains("oidc.signing_key"), "{err}");
    // The same key in another file: refused at start-up.
    let config = authgate::config::Config::from_toml_str(&toml(&copy)).expect("the files differ");
    let err = authgate::Gateway::build(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("oidc.signing_key"), "{err}");
}

#[tokio::test]
async fn basic_credentials_work_form_encoded_or_as_sent_and_sign_out_everywhere_ends_userinfo() {
    let (_up, gw) = provider().await;
    register(&gw, "gina").await;
    let mut jar = signed_in(&gw, "gina").await;
    let encoded: String = form_urlencoded::byte_serialize(SECRET_PLUS.as_bytes()).collect();
    let mut access = String::new();
    // RFC 6749 §2.3.1 form-encodes the secret; Authlib and others send it as it is.
    for secret in [encoded.as_str(), SECRET_PLUS] {
        let (_, q) = location_query(&navigate(&gw, &mut jar, &authorize_path("plus", OP_CALLBACK, "")).await);
        let code = param(&q, "code").unwrap().to_owned();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", OP_CALLBACK),
            ("code_verifier", OP_VERIFIER),
        ];
        let r = exchange(&gw, &form, Some(("plus", secret))).await;
        assert_eq!(r.status, 200, "{secret}: {}", r.text());
        access = r.json()["access_token"].as_str().unwrap().to_owned();
    }
    let (_, q) = location_query(&navigate(&gw, &mut jar, &authorize_path("plus", OP_CALLBACK, "")).await);
    let code = param(&q, "code").unwrap().to_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", OP_CALLBACK),
        ("code_verifier", OP_VERIFIER),
    ];
    let r = exchange(&gw, &form, Some(("plus", "p q/r+s:t~0123456789abcdefghijklmnop"))).await;
    assert_eq!(
        r.status, 401,
        "a secret that only decodes to something close is refused"
    );

    let bearer = format!("Bearer {access}");
    let info = gw
        .client()
        .get("/_auth/openid/userinfo", &[("authorization", &bearer)])
        .await;
    assert_eq!(info.status, 200);
    let r = submit(&gw, &mut jar, "/_auth/account/sign-out-everywhere", &[]).await;
    assert_eq!(r.status, 200);
    let info = gw
        .client()
        .get("/_auth/openid/userinfo", &[("authorization", &bearer)])
        .await;
    assert_eq!(info.status, 401, "the access token ended with the sessions");
}

#[tokio::test]
async fn a_state_too_long_to_echo_is_refused_without_being_echoed() {
    let (_up, gw) = provider().await;
    register(&gw, "hank").await;
    let mut jar = signed_in(&gw, "hank").await;
    let long = "s".repeat(513);
    let path = authorize_path("rp", OP_CALLBACK, "").replace("state=st%20ate%2F1", &format!("state={long}"));
    let r = navigate(&gw, &mut jar, &path).await;
    let (to, q) = location_query(&r);
    assert_eq!(to, OP_CALLBACK);
    assert_eq!(param(&q, "error"), Some("invalid_request"));
    assert_eq!(param(&q, "state"), None);
    let r = navigate(
        &gw,
        &mut jar,
        &format!("/_auth/openid/end_session?client_id=rp&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye&state={long}"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.headers.get("location").is_none());
    assert!(jar.session.is_some(), "still signed in");
}
