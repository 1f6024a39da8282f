//! The OpenID Provider the single sign-on tests sign in through (tests/common/oidc.rs, panva's
//! oidc-provider under Node.js), tested on its own: it starts, says who it is, runs a code flow with
//! PKCE for a relying party driven by hand from Rust, sends back-channel logout tokens, forges the
//! broken tokens the negative tests need, and two of them run side by side without sharing anything.
//!
//! The rule these tests keep: whatever the gateway's tests will rely on the provider for is checked
//! here against the protocol (signatures against the provider's JWKS, `iss`, `aud`, `nonce`), not
//! taken on trust.

use crate::common::oidc::{
    Agent, AuthRequest, ClientAuth, OidcAccount, OidcClient, Provider, ProviderConfig, Signing, jwt_claims, jwt_header,
    query_param, verify_jwt, with_query_param,
};
use crate::common::{TestGateway, TestUpstream};
use serde_json::json;

const CLIENT: &str = "authgate-test";
const SECRET: &str = "client-secret-for-the-provider-tests";
const REDIRECT: &str = "https://rp.test/_auth/oidc/test/callback";
const PASSWORD: &str = "alice-password-at-the-provider";

fn require() {
    assert!(
        crate::common::oidc::available(),
        "Node.js or tests/oidc/node_modules missing: run scripts/test, which installs Node.js and runs \
         `npm ci` in tests/oidc"
    );
}

fn alice() -> OidcAccount {
    OidcAccount::new("alice-sub-0001", "alice", PASSWORD)
        .email("alice@example.com", true)
        .name("Alice Example")
        .groups(&["staff", "rag-admins"])
}

fn provider() -> Provider {
    require();
    Provider::start(
        ProviderConfig::new()
            .client(OidcClient::new(CLIENT, SECRET, REDIRECT))
            .account(alice()),
    )
}

#[tokio::test]
async fn provider_starts_and_its_discovery_names_its_issuer() {
    let p = provider();
    let issuer = p.issuer();
    assert_eq!(issuer, format!("http://127.0.0.1:{}", p.port()));
    let d = p.discovery().await;
    assert_eq!(d["issuer"], issuer.as_str());
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "end_session_endpoint",
    ] {
        assert!(d[endpoint].as_str().unwrap().starts_with(&issuer), "{endpoint}: {d}");
    }
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["backchannel_logout_session_supported"], true);
    assert_eq!(d["claims_parameter_supported"], true);
    for scope in ["openid", "email", "profile", "groups"] {
        assert!(
            d["scopes_supported"].as_array().unwrap().contains(&json!(scope)),
            "{scope}: {d}"
        );
    }
    let jwks = p.jwks().await;
    let algs: Vec<String> = jwks
        .keys
        .iter()
        .map(|k| format!("{:?}", k.common.key_algorithm.unwrap()))
        .collect();
    assert_eq!(algs, ["RS256", "ES256"]);
    let raw = crate::common::oidc::http("GET", &p.url("/jwks"), &[], None)
        .await
        .json();
    for key in raw["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "the JWKS publishes a private part: {key}");
        }
    }
}

#[tokio::test]
async fn code_flow_by_hand_yields_an_id_token_with_the_users_claims_and_nonce() {
    let p = provider();
    let client = p.client(CLIENT).clone();
    let req = AuthRequest::new(REDIRECT);
    let mut agent = Agent::new();

    // The provider's own login page, with the field names the browser tests fill in.
    let form = agent.open(&p.authorize_url(&client, &req)).await;
    assert_eq!(form.reply.status, 200, "{}", form.text());
    for field in [r#"name="login""#, r#"name="password""#, r#"id="provider-sign-in""#] {
        assert!(form.text().contains(field), "{field} missing:\n{}", form.text());
    }
    let back = agent
        .submit_until(&form, &[("login", "alice"), ("password", PASSWORD)], |u| {
            u.starts_with(REDIRECT)
        })
        .await;
    assert!(
        back.stopped,
        "not sent back to the client: {:?} {}",
        back.chain,
        back.text()
    );
    assert_eq!(query_param(&back.url, "state").unwrap(), req.state);
    assert_eq!(query_param(&back.url, "iss").unwrap(), p.issuer());
    let code = query_param(&back.url, "code").unwrap();

    // client_secret_basic at the token endpoint, with the PKCE verifier.
    let r = p.exchange_code(&client, &code, &req.pkce.verifier, REDIRECT).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let id_token = body["id_token"].as_str().unwrap();
    let jwks = p.jwks().await;
    let claims = verify_jwt(id_token, &jwks, &p.issuer(), CLIENT).expect("the id_token verifies");
    assert_eq!(jwt_header(id_token)["alg"], "RS256");
    assert_eq!(claims["sub"], "alice-sub-0001");
    assert_eq!(claims["nonce"], req.nonce.as_str());
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["groups"], json!(["staff", "rag-admins"]));
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());

    // The access token is a JWT for the client itself, naming the same user.
    let access = body["access_token"].as_str().unwrap();
    let at = verify_jwt(access, &jwks, &p.issuer(), CLIENT).expect("the access token verifies");
    assert_eq!(at["sub"], "alice-sub-0001");
    assert_eq!(at["client_id"], CLIENT);
    assert_eq!(at["groups"], json!(["staff", "rag-admins"]));
    assert_eq!(jwt_header(access)["typ"], "at+jwt");

    // A code is good once.
    let again = p.exchange_code(&client, &code, &req.pkce.verifier, REDIRECT).await;
    assert_eq!(again.status, 400, "{}", again.text());
    assert_eq!(again.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn pkce_is_required_and_checked() {
    let p = provider();
    let client = p.client(CLIENT).clone();

    // No code_challenge: refused back to the client.
    let req = AuthRequest::new(REDIRECT);
    let url = with_query_param(&p.authorize_url(&client, &req), "code_challenge", None);
    let url = with_query_param(&url, "code_challenge_method", None);
    let refused = Agent::new().open_until(&url, |u| u.starts_with(REDIRECT)).await;
    assert!(refused.stopped, "{}", refused.text());
    assert_eq!(query_param(&refused.url, "error").unwrap(), "invalid_request");

    // A verifier that is not the challenge's: the code is refused.
    let mut agent = Agent::new();
    let back = agent
        .sign_in_until(&p.authorize_url(&client, &req), "alice", PASSWORD, |u| {
            u.starts_with(REDIRECT)
        })
        .await;
    let code = query_param(&back, "code").unwrap();
    let other = crate::common::oidc::Pkce::new();
    let r = p.exchange_code(&client, &code, &other.verifier, REDIRECT).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_again_and_a_signed_in_user_is_not_asked_twice() {
    let p = provider();
    let client = p.client(CLIENT).clone();
    let mut agent = Agent::new();
    let form = agent.open(&p.authorize_url(&client, &AuthRequest::new(REDIRECT))).await;
    let refused = agent
        .submit(&form, &[("login", "alice"), ("password", "not-her-password-at-all")])
        .await;
    assert_eq!(refused.reply.status, 200);
    assert!(refused.text().contains(r#"id="provider-error""#), "{}", refused.text());
    assert!(refused.text().contains(r#"id="provider-sign-in""#));
    let back = agent
        .submit_until(&refused, &[("login", "alice"), ("password", PASSWORD)], |u| {
            u.starts_with(REDIRECT)
        })
        .await;
    assert!(back.stopped, "{}", back.text());

    // The provider's session: the next authorization comes straight back, no form.
    let again = agent
        .open_until(&p.authorize_url(&client, &AuthRequest::new(REDIRECT)), |u| {
            u.starts_with(REDIRECT)
        })
        .await;
    assert!(again.stopped, "asked again: {}", again.text());
    assert!(query_param(&again.url, "code").is_some());
}

#[tokio::test]
async fn client_secret_post_and_es256_id_tokens() {
    require();
    let p = Provider::start(
        ProviderConfig::new()
            .client(
                OidcClient::new(CLIENT, SECRET, REDIRECT)
                    .auth(ClientAuth::ClientSecretPost)
                    .id_token_alg("ES256"),
            )
            .account(alice()),
    );
    let tokens = p.code_flow(CLIENT, "alice", PASSWORD).await;
    assert_eq!(jwt_header(&tokens.id_token)["alg"], "ES256");
    let claims = verify_jwt(&tokens.id_token, &p.jwks().await, &p.issuer(), CLIENT).unwrap();
    assert_eq!(claims["nonce"], tokens.nonce.as_str());
    assert_eq!(claims["sub"], "alice-sub-0001");
}

#[tokio::test]
async fn two_providers_run_at_once_with_different_issuers_and_keys() {
    require();
    let start = || {
        Provider::start(
            ProviderConfig::new()
                .client(OidcClient::new(CLIENT, SECRET, REDIRECT))
                .account(alice()),
        )
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(start);
        let b = s.spawn(start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.issuer(), b.issuer());
    assert_eq!(a.discovery().await["issuer"], a.issuer().as_str());
    assert_eq!(b.discovery().await["issuer"], b.issuer().as_str());

    let (ka, kb) = (a.jwks().await, b.jwks().await);
    for key in &ka.keys {
        let kid = key.common.key_id.as_deref().unwrap();
        assert!(kb.find(kid).is_none(), "shared kid {kid}");
    }

    let (ta, tb) = (
        a.code_flow(CLIENT, "alice", PASSWORD).await,
        b.code_flow(CLIENT, "alice", PASSWORD).await,
    );
    assert_eq!(
        verify_jwt(&ta.id_token, &ka, &a.issuer(), CLIENT).unwrap()["iss"],
        a.issuer().as_str()
    );
    assert_eq!(
        verify_jwt(&tb.id_token, &kb, &b.issuer(), CLIENT).unwrap()["iss"],
        b.issuer().as_str()
    );
    // Same user name, same client id: still not interchangeable.
    assert!(verify_jwt(&ta.id_token, &kb, &b.issuer(), CLIENT).is_err());
    assert!(verify_jwt(&tb.id_token, &ka, &a.issuer(), CLIENT).is_err());
}

#[tokio::test]
async fn backchannel_logout_posts_a_verifiable_logout_token_over_https() {
    require();
    let dir = tempfile::tempdir().unwrap();
    let (receiver, ca) = TestUpstream::start_tls(dir.path()).await;
    let uri = format!("https://localhost:{}/backchannel-logout", receiver.addr.port());
    let p = Provider::start(
        ProviderConfig::new()
            .client(OidcClient::new(CLIENT, SECRET, REDIRECT).backchannel_logout_uri(&uri))
            .account(alice())
            .backchannel_ca(&ca),
    );
    let tokens = p.code_flow(CLIENT, "alice", PASSWORD).await;
    let sid = jwt_claims(&tokens.id_token)["sid"]
        .as_str()
        .expect("a sid in the id_token")
        .to_owned();

    let sent = p.backchannel_logout("alice-sub-0001").await;
    assert_eq!(sent.len(), 1, "{sent:?}\n{}", p.log());
    assert_eq!(sent[0]["ok"], true, "{sent:?}\n{}", p.log());
    assert_eq!(sent[0]["sid"], sid.as_str());

    let seen = receiver.seen.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/backchannel-logout");
    let form: Vec<(String, String)> = form_urlencoded::parse(&seen.body).into_owned().collect();
    let token = &form.iter().find(|(k, _)| k == "logout_token").unwrap().1;
    let claims = verify_jwt(token, &p.jwks().await, &p.issuer(), CLIENT).expect("the logout token verifies");
    assert_eq!(claims["sub"], "alice-sub-0001");
    assert_eq!(claims["sid"], sid.as_str());
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());

    // The provider's session ended with it: nothing more to log out.
    assert!(p.backchannel_logout("alice-sub-0001").await.is_empty());
}

#[tokio::test]
async fn forged_tokens_for_the_negative_tests() {
    let p = provider();
    let jwks = p.jwks().await;
    let claims = json!({"sub": "alice-sub-0001", "aud": CLIENT});
    let good = p.sign(claims.clone(), Signing::Rs256).await;
    assert!(verify_jwt(&good, &jwks, &p.issuer(), CLIENT).is_ok());
    let es = p.sign(claims.clone(), Signing::Es256).await;
    assert!(verify_jwt(&es, &jwks, &p.issuer(), CLIENT).is_ok());
    for (signing, alg) in [
        (Signing::None, "none"),
        (Signing::Hs256PublicKey, "HS256"),
        (Signing::UnknownKey, "RS256"),
    ] {
        let bad = p.sign(claims.clone(), signing).await;
        assert_eq!(jwt_header(&bad)["alg"], alg);
        assert!(
            verify_jwt(&bad, &jwks, &p.issuer(), CLIENT).is_err(),
            "{signing:?} verified"
        );
    }
    let expired = p
        .sign(
            json!({"sub": "alice-sub-0001", "aud": CLIENT, "exp": 1_000_000_000, "iat": 999_999_000}),
            Signing::Rs256,
        )
        .await;
    assert!(
        verify_jwt(&expired, &jwks, &p.issuer(), CLIENT)
            .unwrap_err()
            .contains("Expired")
    );

    // The next token response carries a rewritten id_token; the one after is genuine again.
    p.next_id_token(json!({"nonce": "not-the-nonce-sent", "email": null}), Signing::Keep)
        .await;
    let t = p.code_flow(CLIENT, "alice", PASSWORD).await;
    let c = verify_jwt(&t.id_token, &jwks, &p.issuer(), CLIENT).expect("still signed by the provider");
    assert_eq!(c["nonce"], "not-the-nonce-sent");
    assert!(c.get("email").is_none());
    p.next_id_token(json!({}), Signing::None).await;
    let t = p.code_flow(CLIENT, "alice", PASSWORD).await;
    assert_eq!(jwt_header(&t.id_token)["alg"], "none");
    let t = p.code_flow(CLIENT, "alice", PASSWORD).await;
    assert_eq!(
        verify_jwt(&t.id_token, &jwks, &p.issuer(), CLIENT).unwrap()["nonce"],
        t.nonce.as_str()
    );
}

#[tokio::test]
async fn the_agent_stops_at_the_gateway_callback_and_keeps_cookies_per_host() {
    require();
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&up.url()).await;
    let p = Provider::start(
        ProviderConfig::new()
            .client(OidcClient::for_gateway(CLIENT, SECRET, gw.addr.port(), "test"))
            .account(alice()),
    );
    let mut agent = Agent::for_gateway(&gw);
    let page = agent.open(&Agent::gateway_url(&gw, "/_auth/sign-in")).await;
    assert_eq!(page.reply.status, 200, "{}", page.text());
    assert!(agent.jar.get("localhost", "__Host-authgate-csrf").is_some());

    // Started at the provider here (the gateway's /start comes with issue 17): the same stop.
    let client = p.client(CLIENT).clone();
    let req = AuthRequest::new(&client.redirect_uris[0]);
    let callback = agent
        .login_until_callback(&p.authorize_url(&client, &req), "alice", PASSWORD)
        .await;
    let expected = format!("https://localhost:{}/_auth/oidc/test/callback?", gw.addr.port());
    assert!(callback.starts_with(&expected), "{callback}");
    assert_eq!(query_param(&callback, "state").unwrap(), req.state);
    assert!(agent.jar.get("127.0.0.1", "_session").is_some());
    assert!(agent.jar.get("localhost", "_session").is_none());
    assert!(agent.jar.get("127.0.0.1", "__Host-authgate-csrf").is_none());

    // And on to the gateway, over its TLS listener, whatever it answers today.
    let answer = agent.callback(&callback).await;
    assert!((200..500).contains(&answer.status), "{}", answer.status);
}

#[tokio::test]
async fn a_stopped_provider_refuses_connections_and_restarts_on_its_port_with_new_keys() {
    let mut p = provider();
    let (issuer, before) = (p.issuer(), p.jwks().await);
    p.stop();
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", p.port())).await.is_err());
    p.restart();
    assert_eq!(p.issuer(), issuer);
    let after = p.jwks().await;
    let kid = before.keys[0].common.key_id.as_deref().unwrap();
    assert!(after.find(kid).is_none(), "the same key after a restart");
    p.code_flow(CLIENT, "alice", PASSWORD).await;
}
