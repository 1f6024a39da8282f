//! Single sign-on against a real OpenID Provider (panva's oidc-provider, tests/common/oidc.rs):
//! sign-in through the code flow with PKCE, linking, two providers side by side, provider bearer
//! tokens, back-channel logout, a provider that is down, and the attacks on the callback (wrong
//! state, replayed code, nonce mismatch, another issuer, `alg: none`, an HMAC keyed with the
//! public key, an expired token, an unverified email). Every refusal is checked on what the
//! backend received: nothing.

use crate::common::oidc::{
    Agent, OidcAccount, OidcClient, Provider, ProviderConfig, Signing, query_param, with_query_param,
};
use crate::common::*;
use serde_json::json;
use tokio::net::TcpListener;

const SECRET_A: &str = "provider-a-client-secret-0123456789";
const SECRET_B: &str = "provider-b-client-secret-0123456789";
const PW: &str = "password-at-the-provider";

fn require() {
    assert!(
        crate::common::oidc::available(),
        "Node.js or tests/oidc/node_modules missing: run scripts/test (it installs Node.js and runs npm ci in tests/oidc)"
    );
}

fn alice() -> OidcAccount {
    OidcAccount::new("alice-sub", "alice", PW)
        .email("alice@corp.example", true)
        .name("Alice")
        .groups(&["research"])
}

fn bob() -> OidcAccount {
    OidcAccount::new("bob-sub", "bob", PW).email("bob@corp.example", false)
}

fn provider_toml(id: &str, p: &Provider, secret: &str, extra: &str) -> String {
    format!(
        "[[oidc.providers]]\nid = \"{id}\"\nname = \"Provider {id}\"\nissuer = \"{}\"\nclient_id = \"gw-{id}\"\n\
         client_secret = \"{secret}\"\nscopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n{extra}\n",
        p.issuer()
    )
}

/// A gateway with providers `a` (alice, bob) and `b` (alice under another sub), both up.
struct World {
    up: TestUpstream,
    gw: TestGateway,
    a: Provider,
    b: Provider,
}

async fn world(extra_a: &str) -> World {
    require();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let a = Provider::start(
        ProviderConfig::new()
            .client(OidcClient::for_gateway("gw-a", SECRET_A, port, "a"))
            .account(alice())
            .account(bob())
            // The gateway's certificate, made when it starts: read when a logout is sent.
            .backchannel_ca(&dir.path().join("cert.pem")),
    );
    let b = Provider::start(
        ProviderConfig::new()
            .client(OidcClient::for_gateway("gw-b", SECRET_B, port, "b"))
            .account(OidcAccount::new("alice-at-b", "alice", PW).email("alice@other.example", true)),
    );
    let up = TestUpstream::start().await;
    let toml = format!(
        "{}{}",
        provider_toml("a", &a, SECRET_A, extra_a),
        provider_toml("b", &b, SECRET_B, "")
    );
    let gw = TestGateway::builder(&up.url())
        .listener(listener)
        .dir(dir)
        .extra(&toml)
        .start()
        .await;
    // Wait for both providers to load (they load in the background).
    let started = std::time::Instant::now();
    loop {
        let (_, body) = gw.admin_get("/readyz").await;
        if body.contains(r#""a":true"#) && body.contains(r#""b":true"#) {
            break;
        }
        assert!(started.elapsed().as_secs() < 10, "providers never loaded: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    World { up, gw, a, b }
}

fn start_url(gw: &TestGateway, id: &str, rd: &str) -> String {
    Agent::gateway_url(gw, &format!("/_auth/oidc/{id}/start?rd={rd}"))
}

fn session_cookie(r: &Reply) -> Option<String> {
    set_cookie(r, "__Host-authgate")
        .map(|c| c.split(';').next().unwrap().to_owned())
        .filter(|c| c != "__Host-authgate=")
}

async fn user_behind(w: &World, cookie: &str) -> String {
    let r = w.gw.client().get("/app/page", &[("cookie", cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    w.up.seen.last().one("x-user-id").unwrap()
}

#[tokio::test]
async fn signing_in_with_a_provider_starts_a_session_for_a_linked_user() {
    let w = world("").await;
    let mut agent = Agent::for_gateway(&w.gw);
    let r = agent
        .login_flow(&start_url(&w.gw, "a", "%2Fapp%2Fpage"), "alice", PW)
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.headers["location"], "/app/page");
    let cookie = session_cookie(&r).expect("a session cookie");
    logscan::cookies(&cookie);
    let user = user_behind(&w, &cookie).await;
    let linked = w.gw.gateway.accounts().find_user(&user).await.unwrap();
    assert_eq!(linked.username, "alice");
    assert_eq!(linked.email, "alice@corp.example");
    // What `authgate user list` shows in its providers column.
    let providers = w.gw.gateway.accounts().store().identities_of(&user).await.unwrap();
    assert_eq!(providers, ["a"]);
    let seen = w.up.seen.last();
    assert!(!seen.all("cookie").join(";").contains("__Host-authgate"));

    // The same person again: the same user. The same name at provider b: another user.
    let mut again = Agent::for_gateway(&w.gw);
    let r = again.login_flow(&start_url(&w.gw, "a", "%2F"), "alice", PW).await;
    assert_eq!(user_behind(&w, &session_cookie(&r).unwrap()).await, user);
    let mut other = Agent::for_gateway(&w.gw);
    let r = other.login_flow(&start_url(&w.gw, "b", "%2F"), "alice", PW).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let user_b = user_behind(&w, &session_cookie(&r).unwrap()).await;
    assert_ne!(user_b, user, "another issuer's alice is another user");
    let b_user = w.gw.gateway.accounts().find_user(&user_b).await.unwrap();
    assert_ne!(
        b_user.username, "alice",
        "the taken name got a suffix: {}",
        b_user.username
    );

    // The sign-in page shows both providers.
    let page = w.gw.client().get("/_auth/sign-in", &[]).await.text();
    assert!(
        page.contains("Sign in with Provider a") && page.contains("Sign in with Provider b"),
        "{page}"
    );
    // A provider account has no password here.
    assert_eq!(login(&w.gw, "alice", PW).await.status, 401);
}

/// A callback that must be refused: the sign-in page, no session, nothing forwarded.
async fn refused(w: &World, agent: &mut Agent, callback: &str) {
    let before = w.up.seen.count();
    let r = agent.callback(callback).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("did not work"), "{}", r.text());
    assert!(session_cookie(&r).is_none(), "no session for a refused callback");
    assert_eq!(w.up.seen.count(), before, "nothing forwarded");
}

#[tokio::test]
async fn a_wrong_state_or_a_replayed_code_is_refused() {
    let w = world("").await;
    let mut agent = Agent::for_gateway(&w.gw);
    let cb = agent
        .login_until_callback(&start_url(&w.gw, "a", "%2F"), "alice", PW)
        .await;
    refused(&w, &mut agent, &with_query_param(&cb, "state", Some("not-the-state"))).await;
    // A refused callback clears the browser's state cookie: that flow is over for it.
    refused(&w, &mut agent, &cb).await;
    // A good callback works once; the same one again (a replayed code) is refused.
    let mut agent = Agent::for_gateway(&w.gw);
    let cb = agent
        .login_until_callback(&start_url(&w.gw, "a", "%2F"), "alice", PW)
        .await;
    let ok = agent.callback(&cb).await;
    assert_eq!(ok.status, 303, "{}", ok.text());
    let mut replay = Agent::for_gateway(&w.gw);
    replay.jar = agent.jar.clone();
    let state = query_param(&cb, "state").unwrap();
    replay.jar.set("localhost", "__Host-authgate-oidc", &state);
    refused(&w, &mut replay, &cb).await;

    // Another browser replaying this browser's callback: no state cookie there.
    let mut agent = Agent::for_gateway(&w.gw);
    let cb = agent
        .login_until_callback(&start_url(&w.gw, "a", "%2F"), "alice", PW)
        .await;
    let mut thief = Agent::for_gateway(&w.gw);
    refused(&w, &mut thief, &cb).await;
    assert!(query_param(&cb, "code").is_some());
}

#[tokio::test]
async fn id_tokens_that_fail_a_check_are_refused() {
    let w = world("").await;
    let b_issuer = w.b.issuer();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (what, claims, signing) in [
        ("nonce mismatch", json!({"nonce": "another-nonce"}), Signing::Keep),
        ("another issuer", json!({"iss": b_issuer}), Signing::Keep),
        ("another audience", json!({"aud": "someone-else"}), Signing::Keep),
        ("expired", json!({"exp": now - 600, "iat": now - 1200}), Signing::Keep),
        (
            "issued in the future",
            json!({"iat": now + 3600, "exp": now + 7200}),
            Signing::Keep,
        ),
        ("alg none", json!({}), Signing::None),
        ("HMAC keyed with the public key", json!({}), Signing::Hs256PublicKey),
        ("a key the provider does not publish", json!({}), Signing::UnknownKey),
    ] {
        let mut agent = Agent::for_gateway(&w.gw);
        let cb = agent
            .login_until_callback(&start_url(&w.gw, "a", "%2F"), "alice", PW)
            .await;
        w.a.next_id_token(claims, signing).await;
        let before = w.up.seen.count();
        let r = agent.callback(&cb).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(session_cookie(&r).is_none(), "{what}");
        assert_eq!(w.up.seen.count(), before, "{what}");
    }
}

#[tokio::test]
async fn an_unverified_email_never_links_to_an_existing_account() {
    let w = world("link_verified_email = true").await;
    // Local accounts that own bob's and alice's emails.
    register_with_email(&w.gw, "localbob", "bob@corp.example").await;
    let local_alice = register_with_email(&w.gw, "localalice", "alice@corp.example").await;
    let local_alice = local_alice.json()["user_id"].as_str().unwrap().to_owned();
    let mut agent = Agent::for_gateway(&w.gw);
    let r = agent.login_flow(&start_url(&w.gw, "a", "%2F"), "bob", PW).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let bob = user_behind(&w, &session_cookie(&r).unwrap()).await;
    let local_bob = w.gw.gateway.accounts().find_user("localbob").await.unwrap();
    assert_ne!(
        bob, local_bob.id,
        "bob's email is unverified: a new account, not localbob's"
    );
    // alice's is verified and linking is on: she joins the local account.
    let mut agent = Agent::for_gateway(&w.gw);
    let r = agent.login_flow(&start_url(&w.gw, "a", "%2F"), "alice", PW).await;
    assert_eq!(user_behind(&w, &session_cookie(&r).unwrap()).await, local_alice);
}

#[tokio::test]
async fn allowed_domains_and_groups_are_enforced_and_a_disabled_user_is_refused() {
    let w = world("allowed_groups = [\"research\"]").await;
    let mut agent = Agent::for_gateway(&w.gw);
    let r = agent.login_flow(&start_url(&w.gw, "a", "%2F"), "bob", PW).await;
    assert_eq!(r.status, 401, "bob is in no allowed group");
    let mut agent = Agent::for_gateway(&w.gw);
    let r = agent.login_flow(&start_url(&w.gw, "a", "%2F"), "alice", PW).await;
    assert_eq!(r.status, 303);
    let cookie = session_cookie(&r).unwrap();
    let user = user_behind(&w, &cookie).await;
    let u = w.gw.gateway.accounts().find_user(&user).await.unwrap();
    w.gw.gateway.accounts().set_disabled(&u, true).await.unwrap();
    assert_eq!(
        w.gw.client().get("/x", &[("cookie", cookie.as_str())]).await.status,
        401
    );
    let mut agent = Agent::for_gateway(&w.gw);
    let r = agent.login_flow(&start_url(&w.gw, "a", "%2F"), "alice", PW).await;
    assert_eq!(r.status, 401, "a disabled user's single sign-on is refused");
}

#[tokio::test]
async fn the_providers_tokens_work_as_bearer_only_when_accepted_and_valid() {
    let w = world("accept_bearer = true").await;
    // Link alice first (a bearer maps to a linked user).
    let mut agent = Agent::for_gateway(&w.gw);
    let r = agent.login_flow(&start_url(&w.gw, "a", "%2F"), "alice", PW).await;
    let cookie = session_cookie(&r).unwrap();
    let user = user_behind(&w, &cookie).await;
    let tokens = w.a.code_flow("gw-a", "alice", PW).await;
    logscan::secret(&tokens.id_token);
    for token in [&tokens.id_token, &tokens.access_token] {
        let r =
            w.gw.client()
                .get("/api/data", &[("authorization", &bearer(token))])
                .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = w.up.seen.last();
        assert_eq!(seen.one("x-user-id").as_deref(), Some(user.as_str()));
        assert!(seen.all("authorization").is_empty());
    }
    // It reads the account, but it is not a gateway login: it cannot mint a gateway JWT or an API
    // token that would outlive it, nor act on the login.
    let access = tokens.access_token.as_str();
    let me =
        w.gw.client()
            .get("/api/auth/me", &[("authorization", &bearer(access))])
            .await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["user_id"].as_str(), Some(user.as_str()));
    for (path, body) in [
        ("/api/auth/refresh", json!({})),
        ("/api/auth/tokens", json!({"name": "from-a-provider-token"})),
        (
            "/api/auth/password",
            json!({"current_password": PW, "new_password": "another long password 2"}),
        ),
        ("/api/auth/logout", json!({"all": true})),
    ] {
        let r = w.gw.client().post_json(path, body, Some(access)).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "forbidden", "{path}");
        assert!(r.headers.get("authorization").is_none(), "{path}");
        assert!(
            r.json().get("access_token").is_none() && r.json().get("token").is_none(),
            "{path}"
        );
    }
    let listed =
        w.gw.client()
            .get("/api/auth/tokens", &[("authorization", &bearer(access))])
            .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(listed.json(), json!([]), "no API token was made");
    // The refused logout-all ended nothing: the browser session still works.
    assert_eq!(user_behind(&w, &cookie).await, user);
    let before = w.up.seen.count();
    for signing in [Signing::None, Signing::Hs256PublicKey, Signing::UnknownKey] {
        let forged = w.a.sign(json!({"sub": "alice-sub", "aud": "gw-a"}), signing).await;
        let r =
            w.gw.client()
                .get("/api/data", &[("authorization", &bearer(&forged))])
                .await;
        assert_eq!(r.status, 401, "{signing:?}");
    }
    // Provider b does not accept bearer tokens: its valid token is refused.
    let tb = w.b.code_flow("gw-b", "alice", PW).await;
    logscan::secret(&tb.id_token);
    let r =
        w.gw.client()
            .get("/api/data", &[("authorization", &bearer(&tb.id_token))])
            .await;
    assert_eq!(r.status, 401);
    // Another audience at provider a is refused too.
    let other =
        w.a.sign(json!({"sub": "alice-sub", "aud": "not-us"}), Signing::Rs256)
            .await;
    let r =
        w.gw.client()
            .get("/api/data", &[("authorization", &bearer(&other))])
            .await;
    assert_eq!(r.status, 401);
    assert_eq!(w.up.seen.count(), before);
}

#[tokio::test]
async fn back_channel_logout_ends_the_session() {
    let w = world("").await;
    let mut agent = Agent::for_gateway(&w.gw);
    let r = agent.login_flow(&start_url(&w.gw, "a", "%2F"), "alice", PW).await;
    let cookie = session_cookie(&r).unwrap();
    user_behind(&w, &cookie).await;
    let sent = w.a.backchannel_logout("alice-sub").await;
    assert!(sent.iter().any(|s| s["ok"] == true), "{sent:?}");
    let r = w.gw.client().get("/x", &[("cookie", cookie.as_str())]).await;
    assert_eq!(r.status, 401, "ended by the provider");
    // A forged logout token is refused.
    let forged = w
        .a
        .sign(json!({"sub": "alice-sub", "aud": "gw-a", "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}), Signing::None)
        .await;
    let r =
        w.gw.client()
            .call(
                "POST",
                "/_auth/oidc/a/backchannel-logout",
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(format!("logout_token={forged}").into_bytes()),
            )
            .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn a_provider_that_is_down_leaves_the_rest_working() {
    let mut w = world("").await;
    w.a.stop();
    session(&w.gw, "local-user").await;
    let (status, body) = w.gw.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let mut agent = Agent::for_gateway(&w.gw);
    let r = agent.login_flow(&start_url(&w.gw, "b", "%2F"), "alice", PW).await;
    assert_eq!(r.status, 303, "provider b still works: {}", r.text());
    let jar = signed_in(&w.gw, "local-user").await;
    assert!(jar.session.is_some(), "local sign-in still works");
    let (_, metrics) = w.gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("authgate_oidc_provider_up{provider=\"b\"} 1"),
        "{metrics}"
    );
}
