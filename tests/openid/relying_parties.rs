//! authgate as an OpenID Provider (issue 19), met by relying parties: Authlib's Starlette client
//! registered the way RAG Modulo's backend registers it (tests/clients/authlib_rp.py), signing a
//! person in through headless Chromium (single sign-on across two clients, a consent page,
//! RP-initiated logout) and over the HTTP agent, also after a sign-in at panva's oidc-provider;
//! PyJWT with `requests`, the way RAGFlow's login verifies ID tokens (tests/clients/pyjwt_rp.py);
//! and the refusals spoken by hand against the endpoints: redirect URI, PKCE, code reuse and
//! expiry, client authentication, `state` and `nonce`, a disabled user, forged access tokens, a
//! request too long for the sign-in page, and the provider's own tokens at a protected path.
//!
//! The rule these tests keep: an ID token counts as good only once a library other than authgate's
//! has validated it (Authlib, PyJWT, or jsonwebtoken against the published JWKS); every refusal is
//! the error the specifications name, and the recording upstream shows that none of it reached the
//! backend. tests/pages/oidc_provider.rs is the other direction: authgate as a relying party of panva's
//! oidc-provider; tests/openid/provider.rs speaks to the provider by hand too.
//!
//! Needs the test virtualenv (scripts/test builds it), openssl (for an RS256 key), Node.js with
//! tests/oidc/node_modules for one test, and, for the Chromium tests, Chromium and chromedriver
//! (or `AUTHGATE_SKIP_BROWSER=1`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::common::browser::{Browser, WAIT};
use crate::common::logscan;
use crate::common::oidc::{Agent, Pkce, jwt_header, query_param, random_token, verify_jwt};
use crate::common::python::{PythonBackend, pyenv_python};
use crate::common::*;
use authgate::policy::Role;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// RAG Modulo's backend as it registers (client_secret_post, no PKCE): the Authlib relying party's
/// `rag_modulo` registration.
const RAG_MODULO: &str = "rag-modulo";
/// The Authlib relying party's `pkce` registration (PKCE S256, client_secret_basic).
const RAG_MODULO_PKCE: &str = "rag-modulo-pkce";
/// Its `untrusted` registration: the same, for a client that is not `trusted` (a consent page).
const RAG_MODULO_UNTRUSTED: &str = "rag-modulo-untrusted";
/// RAGFlow's login as tests/clients/pyjwt_rp.py plays it: exactly RAGFlow's exchange (no PKCE, no
/// nonce, client_secret_post), and with PKCE, a nonce and client_secret_basic. The redirect URI is
/// never opened: the script reads the code from the authorize answer's `Location`.
const RAGFLOW: &str = "ragflow";
const RAGFLOW_PKCE: &str = "ragflow-pkce";
const RAGFLOW_REDIRECT: &str = "http://127.0.0.1:9/v1/user/oauth/callback/authgate";
/// A relying party spoken by hand, for the refusals.
const BY_HAND: &str = "by-hand";
const BY_HAND_REDIRECT: &str = "https://rp.example/cb";
const AUTHORIZE: &str = "/_auth/openid/authorize";
const TOKEN: &str = "/_auth/openid/token";
const USERINFO: &str = "/_auth/openid/userinfo";
/// A WebSocket opening handshake's headers (RFC 6455 4.1), for `?token=` on it.
const HANDSHAKE: [(&str, &str); 4] = [
    ("connection", "upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

#[derive(Clone, Copy, Debug)]
enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

/// A gateway that is an OpenID Provider for four clients, the Authlib relying party in front of
/// it, and the recording upstream behind it.
struct Op {
    up: TestUpstream,
    gw: TestGateway,
    rp: PythonBackend,
    issuer: String,
    secrets: HashMap<&'static str, String>,
}

impl Op {
    /// Nothing of the flow was forwarded: the provider's and the pages' traffic stays at the
    /// gateway (the browser's own `/favicon.ico` aside).
    fn assert_backend_saw_nothing(&self) {
        let reached: Vec<Seen> = self
            .up
            .seen
            .take()
            .into_iter()
            .filter(|s| s.target != "/favicon.ico")
            .collect();
        assert!(
            reached.is_empty(),
            "the backend saw {:?}",
            reached.iter().map(|s| &s.target).collect::<Vec<_>>()
        );
    }

    async fn start(alg: Alg) -> Op {
        // The issuer names the gateway's port, so the port comes first.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Op::start_with(alg, listener, Arc::new(tempfile::tempdir().unwrap()), "").await
    }

    /// [`Op::start`] on a listener and directory the test made, with `more` TOML appended (say,
    /// `[[oidc.providers]]` for a gateway that is a relying party too).
    async fn start_with(alg: Alg, listener: TcpListener, dir: Arc<tempfile::TempDir>, more: &str) -> Op {
        let issuer = format!("https://localhost:{}", listener.local_addr().unwrap().port());
        let key = op_signing_key(dir.path(), alg.name());
        // pyjwt_rp.py's secrets are ones that form-encoding changes: in a form body, and in HTTP
        // Basic, where RFC 6749 2.3.1 has id and secret form-encoded first and the provider must
        // decode them. (Authlib does not encode for Basic, so its secrets stay within the
        // characters encoding leaves alone.)
        let secrets: HashMap<&'static str, String> = [
            (RAG_MODULO, random_token()),
            (RAG_MODULO_PKCE, random_token()),
            (RAG_MODULO_UNTRUSTED, random_token()),
            (RAGFLOW, format!("{}+/:%~!", random_token())),
            (RAGFLOW_PKCE, format!("{}+/:%~!", random_token())),
            (BY_HAND, random_token()),
        ]
        .into_iter()
        .collect();
        for s in secrets.values() {
            logscan::secret(s);
        }
        // base_toml's certificate, made when the gateway starts; the relying party reads it later.
        let ca = dir.path().join("cert.pem");
        let rp_config = json!({
            "issuer": issuer,
            "ca": ca,
            "clients": {
                "rag_modulo": {"client_id": RAG_MODULO, "client_secret": secrets[RAG_MODULO]},
                "pkce": {"client_id": RAG_MODULO_PKCE, "client_secret": secrets[RAG_MODULO_PKCE]},
                "untrusted": {"client_id": RAG_MODULO_UNTRUSTED, "client_secret": secrets[RAG_MODULO_UNTRUSTED]},
            },
        });
        let rp = PythonBackend::start_client("authlib_rp.py", &[rp_config.to_string()]);
        let rp_url = rp.url();
        let extra = format!(
            r#"
[oidc]
issuer = "{issuer}"
signing_key = "{key}"
signing_algorithm = "{alg}"

[[oidc.clients]]
client_id = "{RAG_MODULO}"
client_secret = "{s_rag}"
redirect_uris = ["{rp_url}/api/auth/callback"]
post_logout_redirect_uris = ["{rp_url}/"]
trusted = true
require_pkce = false

[[oidc.clients]]
client_id = "{RAG_MODULO_PKCE}"
client_secret = "{s_pkce}"
redirect_uris = ["{rp_url}/api/auth/pkce/callback"]
post_logout_redirect_uris = ["{rp_url}/"]
trusted = true

[[oidc.clients]]
client_id = "{RAG_MODULO_UNTRUSTED}"
client_secret = "{s_untrusted}"
redirect_uris = ["{rp_url}/api/auth/untrusted/callback"]

[[oidc.clients]]
client_id = "{RAGFLOW}"
client_secret = "{s_ragflow}"
redirect_uris = ["{RAGFLOW_REDIRECT}"]
trusted = true
require_pkce = false

[[oidc.clients]]
client_id = "{RAGFLOW_PKCE}"
client_secret = "{s_ragflow_pkce}"
redirect_uris = ["{RAGFLOW_REDIRECT}"]
trusted = true

[[oidc.clients]]
client_id = "{BY_HAND}"
client_secret = "{s_hand}"
redirect_uris = ["{BY_HAND_REDIRECT}", "{BY_HAND_REDIRECT}2"]
scopes = ["openid", "email", "profile", "groups"]
trusted = true
{more}
"#,
            key = key.display(),
            alg = alg.name(),
            s_rag = secrets[RAG_MODULO],
            s_pkce = secrets[RAG_MODULO_PKCE],
            s_untrusted = secrets[RAG_MODULO_UNTRUSTED],
            s_ragflow = secrets[RAGFLOW],
            s_ragflow_pkce = secrets[RAGFLOW_PKCE],
            s_hand = secrets[BY_HAND],
        );
        let up = TestUpstream::start().await;
        let gw = TestGateway::builder(&up.url())
            .extra(&extra)
            .dir(dir)
            .listener(listener)
            .start()
            .await;
        Op {
            up,
            gw,
            rp,
            issuer,
            secrets,
        }
    }

    fn rp(&self, path: &str) -> String {
        format!("{}{path}", self.rp.url())
    }

    fn gw_url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    async fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        let r = self.gw.client().get("/.well-known/jwks.json", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    /// `token`'s claims, verified against the provider's published JWKS (jsonwebtoken), with `iss`
    /// the issuer and `aud` this client.
    async fn verified(&self, token: &str, client: &str) -> Value {
        verify_jwt(token, &self.jwks().await, &self.issuer, client)
            .unwrap_or_else(|e| panic!("the ID token does not verify against the JWKS: {e}"))
    }
}

/// A person with an account made through the JSON API (a local registration: email not verified).
struct Person {
    id: String,
    username: &'static str,
    role: &'static str,
    groups: Vec<&'static str>,
}

async fn person(gw: &TestGateway, username: &'static str, admin: bool, groups: &[&'static str]) -> Person {
    let r = register(gw, username).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["user_id"].as_str().unwrap().to_owned();
    let accounts = gw.gateway.accounts();
    let user = accounts.find_user(username).await.unwrap();
    if admin {
        accounts.set_role(&user, Role::Admin).await.unwrap();
    }
    for g in groups {
        assert!(accounts.set_group(&user, g, true).await.unwrap().0);
    }
    let mut groups = groups.to_vec();
    groups.sort_unstable();
    Person {
        id,
        username,
        role: if admin { "admin" } else { "user" },
        groups,
    }
}

/// The identity claims of scopes `openid email profile`, as the contract gives them, in an ID token
/// or a userinfo answer.
fn assert_person(claims: &Value, p: &Person) {
    assert_eq!(claims["sub"], p.id.as_str(), "{claims}");
    assert_eq!(claims["email"], EMAIL, "{claims}");
    assert_eq!(
        claims["email_verified"], false,
        "a local registration's email is not verified: {claims}"
    );
    assert_eq!(claims["preferred_username"], p.username, "{claims}");
    assert!(
        claims["name"].as_str().is_some_and(|n| !n.is_empty()),
        "no name: {claims}"
    );
    assert_eq!(claims["role"], p.role, "{claims}");
    let mut groups: Vec<&str> = claims["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("groups is not a list: {claims}"))
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    groups.sort_unstable();
    assert_eq!(groups, p.groups, "{claims}");
}

/// The claims only an ID token has, for `client`.
fn assert_id_token_claims(claims: &Value, issuer: &str, client: &str) {
    assert_eq!(claims["iss"], issuer, "{claims}");
    assert_eq!(claims["aud"], client, "{claims}");
    let now = crate::common::now();
    let exp = claims["exp"].as_u64().unwrap_or_else(|| panic!("no exp: {claims}"));
    let iat = claims["iat"].as_u64().unwrap_or_else(|| panic!("no iat: {claims}"));
    let auth_time = claims["auth_time"]
        .as_u64()
        .unwrap_or_else(|| panic!("no auth_time: {claims}"));
    assert!(iat <= now + 5 && exp > now && exp <= now + 24 * 3600, "{claims}");
    assert!(auth_time <= iat + 1, "{claims}");
    assert!(claims["at_hash"].is_string(), "no at_hash: {claims}");
}

// =============================================================================================
// Relying parties spoken by hand: authorize with a signed-in jar, the token endpoint, userinfo
// =============================================================================================

/// One authorization request.
#[derive(Clone)]
struct AuthReq {
    client: String,
    redirect: String,
    scope: String,
    state: String,
    nonce: Option<String>,
    pkce: Option<Pkce>,
}

impl AuthReq {
    fn new(client: &str, redirect: &str) -> AuthReq {
        AuthReq {
            client: client.to_owned(),
            redirect: redirect.to_owned(),
            scope: "openid email profile".to_owned(),
            state: random_token(),
            nonce: Some(random_token()),
            pkce: Some(Pkce::new()),
        }
    }

    fn by_hand() -> AuthReq {
        AuthReq::new(BY_HAND, BY_HAND_REDIRECT)
    }

    /// The authorize path with these parameters and `extra` ones (which may repeat or override).
    fn path_with(&self, extra: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        let mut pairs: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", &self.client),
            ("redirect_uri", &self.redirect),
            ("scope", &self.scope),
            ("state", &self.state),
        ];
        if let Some(n) = &self.nonce {
            pairs.push(("nonce", n));
        }
        if let Some(p) = &self.pkce {
            pairs.push(("code_challenge", &p.challenge));
            pairs.push(("code_challenge_method", "S256"));
        }
        for (k, _) in extra {
            pairs.retain(|(name, _)| name != k);
        }
        pairs.extend_from_slice(extra);
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        format!("{AUTHORIZE}?{}", q.finish())
    }

    fn path(&self) -> String {
        self.path_with(&[])
    }

    fn verifier(&self) -> Option<&str> {
        self.pkce.as_ref().map(|p| p.verifier.as_str())
    }
}

fn location(r: &Reply) -> Option<String> {
    r.headers.get("location").map(|l| l.to_str().unwrap().to_owned())
}

/// Authorize as the signed-in `jar`: the redirect back to the client, which must carry a code and
/// this request's state; the code.
async fn code(gw: &TestGateway, jar: &mut Jar, req: &AuthReq) -> String {
    let r = navigate(gw, jar, &req.path()).await;
    let to = location(&r).unwrap_or_default();
    assert_eq!(r.status, 303, "authorize: {to} {}", r.text());
    assert!(
        to.starts_with(&format!("{}?", req.redirect)),
        "authorize sent the browser to {to}"
    );
    assert_eq!(query_param(&to, "error"), None, "{to}");
    assert_eq!(query_param(&to, "state").as_deref(), Some(req.state.as_str()), "{to}");
    let code = query_param(&to, "code").unwrap_or_else(|| panic!("no code in {to}"));
    logscan::secret(&code);
    code
}

/// How a token request authenticates its client.
enum ClientAuth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    Nothing,
}

/// POST the token endpoint: `form` plus the client authentication.
async fn token_request(gw: &TestGateway, form: &[(&str, &str)], auth: ClientAuth<'_>) -> Reply {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        body.append_pair(k, v);
    }
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    let basic;
    match auth {
        ClientAuth::Basic(id, secret) => {
            // RFC 6749 2.3.1: each form-encoded, then joined with ':'.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            basic = format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))));
            headers.push(("authorization", basic.as_str()));
        }
        ClientAuth::Post(id, secret) => {
            body.append_pair("client_id", id);
            body.append_pair("client_secret", secret);
        }
        ClientAuth::Nothing => {}
    }
    let r = gw
        .client()
        .call("POST", TOKEN, &headers, Some(body.finish().into_bytes()))
        .await;
    if r.status == 200 {
        let v = r.json();
        for t in ["id_token", "access_token"] {
            if let Some(t) = v[t].as_str() {
                logscan::secret(t);
            }
        }
    }
    r
}

/// The code exchange of `req` by its own client, with its secret over HTTP Basic.
async fn exchange(op: &Op, req: &AuthReq, code: &str) -> Reply {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", req.redirect.as_str()),
    ];
    if let Some(v) = req.verifier() {
        form.push(("code_verifier", v));
    }
    let secret = op.secrets[req.client.as_str()].as_str();
    token_request(&op.gw, &form, ClientAuth::Basic(&req.client, secret)).await
}

/// A refusal of the token endpoint: `status` and the OAuth `error`, JSON, never cached.
fn assert_token_error(r: &Reply, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"], error, "{}", r.text());
    assert!(r.json().get("access_token").is_none() && r.json().get("id_token").is_none());
}

async fn userinfo(gw: &TestGateway, access_token: &str) -> Reply {
    gw.client()
        .get(USERINFO, &[("authorization", &bearer(access_token))])
        .await
}

/// The whole code flow by hand for `jar`'s person and the by-hand client; the token response.
async fn tokens(op: &Op, jar: &mut Jar) -> Value {
    let req = AuthReq::by_hand();
    let code = code(&op.gw, jar, &req).await;
    let r = exchange(op, &req, &code).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

// =============================================================================================
// Discovery and the relying-party libraries
// =============================================================================================

#[tokio::test]
async fn discovery_and_jwks_name_the_issuer_endpoints_and_signing_key() {
    for alg in [Alg::Es256, Alg::Rs256] {
        let op = Op::start(alg).await;
        let r = op.gw.client().get("/.well-known/openid-configuration", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let d = r.json();
        assert_eq!(d["issuer"], op.issuer.as_str(), "{d}");
        for (field, path) in [
            ("authorization_endpoint", AUTHORIZE),
            ("token_endpoint", TOKEN),
            ("userinfo_endpoint", USERINFO),
            ("end_session_endpoint", "/_auth/openid/end_session"),
            ("jwks_uri", "/.well-known/jwks.json"),
        ] {
            assert_eq!(d[field], op.gw_url(path), "{field}: {d}");
        }
        assert_eq!(d["response_types_supported"], json!(["code"]), "{d}");
        assert_eq!(d["subject_types_supported"], json!(["public"]), "{d}");
        assert_eq!(d["id_token_signing_alg_values_supported"], json!([alg.name()]), "{d}");
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]), "{d}");
        let methods = d["token_endpoint_auth_methods_supported"].as_array().unwrap();
        for m in ["client_secret_basic", "client_secret_post"] {
            assert!(methods.contains(&json!(m)), "{m}: {d}");
        }
        assert!(!methods.contains(&json!("none")), "{d}");
        for scope in ["openid", "email", "profile"] {
            assert!(d["scopes_supported"].as_array().unwrap().contains(&json!(scope)), "{d}");
        }

        let raw = op.gw.client().get("/.well-known/jwks.json", &[]).await.json();
        let signing: Vec<&Value> = raw["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["alg"] == alg.name())
            .collect();
        assert!(!signing.is_empty(), "no {} key in the JWKS: {raw}", alg.name());
        for key in raw["keys"].as_array().unwrap() {
            assert!(key["kid"].is_string(), "a key without kid: {key}");
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(key.get(private).is_none(), "the JWKS publishes a private part: {key}");
            }
        }
        assert_eq!(op.up.seen.count(), 0);
    }
}

/// The main path of the issue: RAG Modulo's own login code, unchanged, in a real browser.
#[tokio::test]
async fn authlib_in_chromium_signs_in_on_authgate_and_validates_the_id_token() {
    let Some(browser) = Browser::start().await else { return };
    let op = Op::start(Alg::Es256).await;
    let alice = person(&op.gw, "alice", false, &["research", "staff"]).await;
    let page = browser.page().await;

    // RAG Modulo's /login: Authlib reads the discovery document and sends the browser to authorize,
    // which sends it on to the sign-in page.
    page.goto(&op.rp("/login?source=web")).await;
    page.wait_for_path("/_auth/sign-in").await;
    page.type_into("username", "alice").await;
    page.type_into("password", PASSWORD).await;
    page.click_and_wait("button[type=submit]").await;
    page.wait_for_path("/api/auth/callback").await;
    let text = page.text().await;
    let shown: Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("the callback did not answer JSON ({e}):\n{text}"));
    assert!(shown.get("error").is_none(), "Authlib refused: {shown}");
    let id_token = shown["id_token"].as_str().unwrap();
    let access_token = shown["access_token"].as_str().unwrap();
    logscan::secret(id_token);
    logscan::secret(access_token);

    // What Authlib validated (signature, iss, aud, exp, nonce, at_hash), and the userinfo endpoint.
    let claims = &shown["claims"];
    assert_person(claims, &alice);
    assert_id_token_claims(claims, &op.issuer, RAG_MODULO);
    assert!(claims["nonce"].as_str().is_some_and(|n| n.len() >= 20), "{claims}");
    assert_person(&shown["userinfo"], &alice);
    assert_eq!(shown["userinfo"]["sub"], claims["sub"]);
    // RAG Modulo's state, echoed exactly; the issuer in the response (RFC 9207).
    assert_eq!(shown["state"], "source=web", "{shown}");
    assert_eq!(shown["iss"], op.issuer.as_str(), "{shown}");
    assert_eq!(
        shown["token_type"].as_str().map(str::to_ascii_lowercase).as_deref(),
        Some("bearer")
    );
    // The same token checked apart from Authlib, against the published JWKS.
    assert_eq!(op.verified(id_token, RAG_MODULO).await, *claims);
    let header = jwt_header(id_token);
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].is_string(), "{header}");

    // Single sign-on: the PKCE registration gets its own ID token without a second sign-in.
    page.goto(&op.rp("/pkce/login")).await;
    page.wait_for_path("/api/auth/pkce/callback").await;
    let pkce: Value = serde_json::from_str(page.text().await.trim()).unwrap();
    assert!(pkce.get("error").is_none(), "Authlib refused: {pkce}");
    assert_person(&pkce["claims"], &alice);
    assert_id_token_claims(&pkce["claims"], &op.issuer, RAG_MODULO_PKCE);
    assert_ne!(pkce["claims"]["nonce"], claims["nonce"]);
    let pkce_id_token = pkce["id_token"].as_str().unwrap();
    logscan::secret(pkce_id_token);
    logscan::secret(pkce["access_token"].as_str().unwrap());

    // Neither token opens a protected path; the backend sees nothing of the whole flow.
    for t in [id_token, access_token, pkce_id_token] {
        assert_eq!(status_with_jwt(&op.gw, t).await, 401);
    }

    // RP-initiated logout: Authlib sends the ID token as hint; authgate ends the session and comes
    // back to the registered address with the state, which Authlib checks.
    page.goto(&op.rp("/logout")).await;
    page.wait_for_origin(&op.rp.url()).await;
    let deadline = std::time::Instant::now() + WAIT;
    while page.query("state").await.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (url, text) = (page.url().await, page.text().await);
    let out: Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("logout did not come back ({e}): {url} {text}"));
    assert_eq!(out["logged_out"], true, "{out}");
    // The gateway's session is gone: a protected page asks for a sign-in again.
    page.goto(&op.gw_url("/app")).await;
    page.wait_for_path("/_auth/sign-in").await;
    op.assert_backend_saw_nothing();
}

/// A client that is not `trusted` gets a consent page, in Chromium: Deny comes back to Authlib as
/// `access_denied` with the state; Allow (asked again: nothing is remembered) signs the person in.
#[tokio::test]
async fn authlib_in_chromium_gets_consent_for_an_untrusted_client() {
    let Some(browser) = Browser::start().await else { return };
    let op = Op::start(Alg::Es256).await;
    let alice = person(&op.gw, "alice", false, &["staff"]).await;
    let page = browser.page().await;
    let callback = "/api/auth/untrusted/callback";

    page.goto(&op.rp("/untrusted/login")).await;
    page.wait_for_path("/_auth/sign-in").await;
    page.type_into("username", "alice").await;
    page.type_into("password", PASSWORD).await;
    page.click_and_wait("button[type=submit]").await;
    page.wait_for_path("/_auth/openid/authorize").await;
    let consent = page.text().await;
    assert!(consent.contains(RAG_MODULO_UNTRUSTED), "{consent}");
    // The consent page's address is the authorization request, with Authlib's state.
    let sent_state = page.query("state").await.expect("a state");
    page.click_button("Deny").await;
    page.wait_for_path(callback).await;
    let text = page.text().await;
    let denied: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(denied["error"], "access_denied", "{denied}");
    assert_eq!(denied["state"], sent_state.as_str(), "{denied}");

    page.goto(&op.rp("/untrusted/login")).await;
    page.wait_for_path("/_auth/openid/authorize").await;
    page.click_button("Allow").await;
    page.wait_for_path(callback).await;
    let text = page.text().await;
    let shown: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(shown.get("error").is_none(), "Authlib refused: {shown}");
    logscan::secret(shown["id_token"].as_str().unwrap());
    logscan::secret(shown["access_token"].as_str().unwrap());
    assert_person(&shown["claims"], &alice);
    assert_id_token_claims(&shown["claims"], &op.issuer, RAG_MODULO_UNTRUSTED);
    op.assert_backend_saw_nothing();
}

/// The same Authlib relying party over the HTTP agent, with an RS256 provider (OpenID Connect's
/// default algorithm) and an admin: what Chromium does above, without Chromium.
#[tokio::test]
async fn authlib_validates_an_rs256_id_token_for_an_admin() {
    let op = Op::start(Alg::Rs256).await;
    let root = person(&op.gw, "root", true, &[]).await;
    let mut agent = Agent::for_gateway(&op.gw);
    let form = agent.open(&op.rp("/login?source=cli")).await;
    assert_eq!(form.reply.status, 200, "{:?} {}", form.chain, form.text());
    assert!(form.url.starts_with(&op.gw_url("/_auth/sign-in")), "{:?}", form.chain);
    let back = agent
        .submit(&form, &[("username", "root"), ("password", PASSWORD)])
        .await;
    assert_eq!(back.reply.status, 200, "{:?} {}", back.chain, back.text());
    assert!(back.url.starts_with(&op.rp("/api/auth/callback?")), "{:?}", back.chain);
    let shown = back.reply.json();
    assert!(shown.get("error").is_none(), "Authlib refused: {shown}");
    assert_person(&shown["claims"], &root);
    assert_eq!(shown["claims"]["role"], "admin");
    assert_eq!(shown["claims"]["groups"], json!([]));
    assert_id_token_claims(&shown["claims"], &op.issuer, RAG_MODULO);
    assert_eq!(shown["state"], "source=cli");
    let id_token = shown["id_token"].as_str().unwrap();
    logscan::secret(id_token);
    logscan::secret(shown["access_token"].as_str().unwrap());
    assert_eq!(jwt_header(id_token)["alg"], "RS256");
    assert_eq!(op.verified(id_token, RAG_MODULO).await, shown["claims"]);
    assert_eq!(op.up.seen.count(), 0);
}

/// RAGFlow's way: requests for discovery, authorize and the code exchange, PyJWT's PyJWKClient and
/// `jwt.decode` with the discovered algorithms, audience and issuer, then userinfo. RAGFlow's exact
/// exchange (client_secret_post, no PKCE, no nonce), and one with PKCE, a nonce and
/// client_secret_basic; each with an RS256 and an ES256 provider.
#[tokio::test]
async fn pyjwt_and_requests_verify_the_id_token_as_ragflow_does() {
    for alg in [Alg::Rs256, Alg::Es256] {
        let op = Op::start(alg).await;
        let bob = person(&op.gw, "bob", false, &["ops"]).await;
        let jar = signed_in(&op.gw, "bob").await;
        for (mode, client) in [("ragflow", RAGFLOW), ("pkce", RAGFLOW_PKCE)] {
            let config = json!({
                "mode": mode,
                "issuer": op.issuer,
                "ca": op.gw.ca,
                "client_id": client,
                "client_secret": op.secrets[client],
                "redirect_uri": RAGFLOW_REDIRECT,
                "session": jar.session.clone().unwrap(),
            });
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/pyjwt_rp.py");
            let python = pyenv_python();
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(python)
                    .arg(script)
                    .arg(config.to_string())
                    .output()
            })
            .await
            .unwrap()
            .expect("the virtualenv's python runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let shown: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
                panic!(
                    "pyjwt_rp.py said no JSON ({e}): {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            assert_eq!(shown["ok"], true, "{alg:?} {mode}: {shown}");
            logscan::secret(shown["id_token"].as_str().unwrap());
            logscan::secret(shown["access_token"].as_str().unwrap());
            assert_eq!(shown["header"]["alg"], alg.name());
            assert_person(&shown["claims"], &bob);
            assert_id_token_claims(&shown["claims"], &op.issuer, client);
            // pyjwt_rp.py checks the nonce it sent; RAGFlow sends none, so none comes back.
            assert_eq!(shown["claims"].get("nonce").is_some(), mode == "pkce", "{shown}");
            assert_person(&shown["userinfo"], &bob);
            assert_eq!(shown["state"], shown["state_sent"]);
            assert_eq!(shown["iss"], op.issuer.as_str());
            assert_eq!(shown["token_type"], "Bearer");
            assert!(shown["expires_in"].as_u64().is_some_and(|s| s > 0), "{shown}");
            assert!(
                shown["token_cache_control"]
                    .as_str()
                    .is_some_and(|c| c.contains("no-store")),
                "{shown}"
            );
        }
        assert_eq!(op.up.seen.count(), 0);
    }
}

// =============================================================================================
// Refusals, by hand
// =============================================================================================

#[tokio::test]
async fn a_redirect_uri_not_registered_exactly_is_an_error_page_and_never_a_redirect() {
    let op = Op::start(Alg::Es256).await;
    person(&op.gw, "alice", false, &[]).await;
    let mut jar = signed_in(&op.gw, "alice").await;
    let unregistered = [
        "https://rp.example/cb/",
        "https://rp.example/cb?x=1",
        "https://rp.example/cb#frag",
        "https://RP.example/cb",
        "http://rp.example/cb",
        "https://rp.example:443/cb",
        "https://rp.example/c",
        "https://rp.example/cb/../cb",
        "https://rp.example/cb%2F",
        "https://evil.example/cb",
        "",
    ];
    for redirect in unregistered {
        let mut req = AuthReq::by_hand();
        req.redirect = redirect.to_owned();
        for jar in [&mut jar, &mut Jar::default()] {
            let signed_in = jar.session.is_some();
            let r = navigate(&op.gw, jar, &req.path()).await;
            let to = location(&r);
            if signed_in {
                assert_eq!(r.status, 400, "{redirect:?}: {to:?} {}", r.text());
                assert_eq!(to, None, "{redirect:?}");
            } else if let Some(to) = to {
                // Anonymous: at most the sign-in page, never the unregistered address.
                assert!(to.contains("/_auth/sign-in?"), "{redirect:?} -> {to}");
            }
        }
    }
    // An unknown client, and a known client with another client's address.
    for (client, redirect) in [("nobody", BY_HAND_REDIRECT), (RAGFLOW, BY_HAND_REDIRECT)] {
        let req = AuthReq::new(client, redirect);
        let r = navigate(&op.gw, &mut jar, &req.path()).await;
        assert_eq!(r.status, 400, "{client}: {}", r.text());
        assert_eq!(location(&r), None, "{client}");
    }
    // The second registered address is accepted as it is.
    let mut req = AuthReq::by_hand();
    req.redirect = format!("{BY_HAND_REDIRECT}2");
    code(&op.gw, &mut jar, &req).await;
    assert_eq!(op.up.seen.count(), 0);
}

#[tokio::test]
async fn pkce_is_required_and_a_missing_or_wrong_verifier_is_invalid_grant() {
    let op = Op::start(Alg::Es256).await;
    person(&op.gw, "alice", false, &[]).await;
    let mut jar = signed_in(&op.gw, "alice").await;

    // Errors once the redirect URI is known go back to it, with the state.
    let no_challenge = AuthReq {
        pkce: None,
        ..AuthReq::by_hand()
    };
    let plain = AuthReq::by_hand();
    let token_flow = AuthReq::by_hand();
    let cases = [
        (no_challenge.path(), &no_challenge, "invalid_request"),
        (
            plain.path_with(&[("code_challenge_method", "plain")]),
            &plain,
            "invalid_request",
        ),
        (
            token_flow.path_with(&[("response_type", "token")]),
            &token_flow,
            "unsupported_response_type",
        ),
    ];
    for (path, req, error) in cases {
        let r = navigate(&op.gw, &mut jar, &path).await;
        let to = location(&r).unwrap_or_else(|| panic!("{path}: no redirect, {} {}", r.status, r.text()));
        assert!(to.starts_with(&format!("{BY_HAND_REDIRECT}?")), "{to}");
        assert_eq!(query_param(&to, "error").as_deref(), Some(error), "{path} -> {to}");
        assert_eq!(query_param(&to, "state").as_deref(), Some(req.state.as_str()), "{to}");
        assert_eq!(query_param(&to, "code"), None, "{to}");
    }

    // A code issued with a challenge: no verifier, then a wrong one, are refused.
    let req = AuthReq::by_hand();
    let code1 = code(&op.gw, &mut jar, &req).await;
    let missing = AuthReq {
        pkce: None,
        ..req.clone()
    };
    let r = exchange(&op, &missing, &code1).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(error == "invalid_grant" || error == "invalid_request", "{}", r.text());

    let code2 = code(&op.gw, &mut jar, &req).await;
    let wrong = AuthReq {
        pkce: Some(Pkce::new()),
        ..req.clone()
    };
    assert_token_error(&exchange(&op, &wrong, &code2).await, 400, "invalid_grant");
    // And the right verifier on a fresh code works.
    let code3 = code(&op.gw, &mut jar, &req).await;
    assert_eq!(exchange(&op, &req, &code3).await.status, 200);
    assert_eq!(op.up.seen.count(), 0);
}

#[tokio::test]
async fn a_code_is_used_once_and_only_by_its_client_with_its_redirect_uri() {
    let op = Op::start(Alg::Es256).await;
    person(&op.gw, "alice", false, &[]).await;
    let mut jar = signed_in(&op.gw, "alice").await;

    let req = AuthReq::by_hand();
    let c = code(&op.gw, &mut jar, &req).await;
    let first = exchange(&op, &req, &c).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_token_error(&exchange(&op, &req, &c).await, 400, "invalid_grant");

    // Another client, with its own right secret, cannot redeem this client's code.
    let c = code(&op.gw, &mut jar, &req).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", BY_HAND_REDIRECT),
        ("code_verifier", req.verifier().unwrap()),
    ];
    let r = token_request(&op.gw, &form, ClientAuth::Basic(RAGFLOW, &op.secrets[RAGFLOW])).await;
    assert_token_error(&r, 400, "invalid_grant");

    // The redirect_uri must be the one the code was issued for, even another registered one.
    let c = code(&op.gw, &mut jar, &req).await;
    let other = AuthReq {
        redirect: format!("{BY_HAND_REDIRECT}2"),
        ..req.clone()
    };
    assert_token_error(&exchange(&op, &other, &c).await, 400, "invalid_grant");

    // A made-up code, and another grant type.
    assert_token_error(&exchange(&op, &req, "not-a-code").await, 400, "invalid_grant");
    let r = token_request(
        &op.gw,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
        ClientAuth::Basic(BY_HAND, &op.secrets[BY_HAND]),
    )
    .await;
    assert_token_error(&r, 400, "unsupported_grant_type");
    assert_eq!(op.up.seen.count(), 0);
}

#[tokio::test]
async fn a_wrong_client_secret_is_401_invalid_client() {
    let op = Op::start(Alg::Es256).await;
    person(&op.gw, "alice", false, &[]).await;
    let mut jar = signed_in(&op.gw, "alice").await;
    let req = AuthReq::by_hand();
    let c = code(&op.gw, &mut jar, &req).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", BY_HAND_REDIRECT),
        ("code_verifier", req.verifier().unwrap()),
    ];
    let right = op.secrets[BY_HAND].as_str();
    let wrong = format!("{}x", &right[..right.len() - 1]);
    logscan::secret(&wrong);
    let attempts = [
        ClientAuth::Basic(BY_HAND, &wrong),
        ClientAuth::Post(BY_HAND, &wrong),
        ClientAuth::Basic(BY_HAND, ""),
        ClientAuth::Basic("nobody", right),
        ClientAuth::Post("nobody", right),
        // Another client's secret.
        ClientAuth::Basic(BY_HAND, &op.secrets[RAGFLOW]),
        ClientAuth::Nothing,
    ];
    for auth in attempts {
        let r = token_request(&op.gw, &form, auth).await;
        assert_token_error(&r, 401, "invalid_client");
    }
    // A secret that differs only in length, sent the second way.
    let r = token_request(&op.gw, &form, ClientAuth::Post(BY_HAND, &format!("{right}{right}"))).await;
    assert_token_error(&r, 401, "invalid_client");
    // The right secret redeems a code (client_secret_post here; Basic everywhere else).
    let c = code(&op.gw, &mut jar, &req).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", BY_HAND_REDIRECT),
        ("code_verifier", req.verifier().unwrap()),
    ];
    let r = token_request(&op.gw, &form, ClientAuth::Post(BY_HAND, right)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(op.up.seen.count(), 0);
}

#[tokio::test]
async fn state_is_echoed_exactly_and_the_nonce_comes_back_in_the_id_token() {
    let op = Op::start(Alg::Es256).await;
    let alice = person(&op.gw, "alice", false, &["research"]).await;
    let mut jar = signed_in(&op.gw, "alice").await;

    let odd_state = "a b+c/d?e=f&g%h~i.j_k-l:m;n'o\"p<q>é✓";
    let mut req = AuthReq::by_hand();
    req.state = odd_state.to_owned();
    let nonce = "n-0S6_WzA2Mj+/= é";
    req.nonce = Some(nonce.to_owned());
    let c = code(&op.gw, &mut jar, &req).await;
    let r = exchange(&op, &req, &c).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0), "{body}");
    assert!(
        r.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-store")),
        "{:?}",
        r.headers
    );
    let id_token = body["id_token"].as_str().unwrap();
    let claims = op.verified(id_token, BY_HAND).await;
    assert_eq!(claims["nonce"], nonce, "{claims}");
    assert_person(&claims, &alice);
    assert_id_token_claims(&claims, &op.issuer, BY_HAND);

    // at_hash (OpenID Connect Core 3.1.3.6): the left half of SHA-256 of the access token.
    let access = body["access_token"].as_str().unwrap();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(access.as_bytes());
    let at_hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
    assert_eq!(claims["at_hash"], at_hash.as_str(), "{claims}");

    // Without a nonce in the request there is none in the token.
    let req = AuthReq {
        nonce: None,
        ..AuthReq::by_hand()
    };
    let c = code(&op.gw, &mut jar, &req).await;
    let r = exchange(&op, &req, &c).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let claims = op.verified(r.json()["id_token"].as_str().unwrap(), BY_HAND).await;
    assert!(claims.get("nonce").is_none(), "{claims}");

    // The error redirect echoes the state exactly too.
    let mut req = AuthReq::by_hand();
    req.state = odd_state.to_owned();
    let r = navigate(&op.gw, &mut jar, &req.path_with(&[("response_type", "token")])).await;
    let to = location(&r).unwrap();
    assert_eq!(query_param(&to, "state").as_deref(), Some(odd_state), "{to}");
    assert_eq!(op.up.seen.count(), 0);
}

#[tokio::test]
async fn a_user_disabled_after_authorize_gets_no_tokens_and_userinfo_refuses_theirs() {
    let op = Op::start(Alg::Es256).await;
    let alice = person(&op.gw, "alice", false, &[]).await;
    let mut jar = signed_in(&op.gw, "alice").await;

    // Tokens from before, and a code from before, the account is disabled.
    let before = tokens(&op, &mut jar).await;
    let access = before["access_token"].as_str().unwrap();
    let r = userinfo(&op.gw, access).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_person(&r.json(), &alice);
    let req = AuthReq::by_hand();
    let c = code(&op.gw, &mut jar, &req).await;

    let accounts = op.gw.gateway.accounts();
    let user = accounts.find_user("alice").await.unwrap();
    accounts.set_disabled(&user, true).await.unwrap();

    assert_token_error(&exchange(&op, &req, &c).await, 400, "invalid_grant");
    let r = userinfo(&op.gw, access).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let challenge = r
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#),
        "{challenge:?}"
    );
    // Authorize no longer issues a code to the disabled session.
    let r = navigate(&op.gw, &mut jar, &AuthReq::by_hand().path()).await;
    let to = location(&r).unwrap_or_default();
    assert!(query_param(&to, "code").is_none(), "a code for a disabled user: {to}");
    assert_eq!(op.up.seen.count(), 0);
}

#[tokio::test]
async fn the_providers_tokens_open_no_protected_path_and_userinfo_takes_only_its_access_token() {
    let op = Op::start(Alg::Es256).await;
    let alice = person(&op.gw, "alice", true, &[]).await;
    let mut jar = signed_in(&op.gw, "alice").await;
    let t = tokens(&op, &mut jar).await;
    let (id_token, access) = (t["id_token"].as_str().unwrap(), t["access_token"].as_str().unwrap());

    for token in [id_token, access] {
        for path in ["/x", "/api/collections", "/api/auth/me"] {
            let r = op.gw.client().get(path, &[("authorization", &bearer(token))]).await;
            assert_eq!(r.status, 401, "{path}: {}", r.text());
            let r = op.gw.client().get(path, &[("x-api-key", token)]).await;
            assert_eq!(r.status, 401, "{path} by X-API-Key: {}", r.text());
        }
        // A WebSocket handshake's `?token=` (the one credential a browser can put in a URL).
        let r = op.gw.client().get(&format!("/ws?token={token}"), &HANDSHAKE).await;
        assert_eq!(r.status, 401, "?token= on a WebSocket handshake: {}", r.text());
    }
    assert_eq!(op.up.seen.count(), 0, "a provider token reached the backend");

    // userinfo takes the access token, by GET or POST, and not the ID token.
    let r = userinfo(&op.gw, access).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_person(&r.json(), &alice);
    let r = op
        .gw
        .client()
        .call("POST", USERINFO, &[("authorization", &bearer(access))], None)
        .await;
    assert_eq!(r.status, 200, "POST userinfo: {}", r.text());
    assert_person(&r.json(), &alice);
    for bad in [id_token, "not-a-token", ""] {
        let r = userinfo(&op.gw, bad).await;
        assert_eq!(r.status, 401, "{bad}: {}", r.text());
    }
    // The gateway's own session JWT is not an OP access token either.
    let gateway_jwt = login_token(&op.gw, "alice").await;
    assert_eq!(userinfo(&op.gw, &gateway_jwt).await.status, 401);
    assert_eq!(op.up.seen.count(), 0);

    // The control: the gateway's own token passes where the provider's did not.
    let r = op
        .gw
        .client()
        .get("/x", &[("authorization", &bearer(&gateway_jwt))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(op.up.seen.last().one("x-user-id").as_deref(), Some(alice.id.as_str()));
    let r = op
        .gw
        .client()
        .get(&format!("/ws?token={gateway_jwt}"), &HANDSHAKE)
        .await;
    assert_ne!(r.status, 401, "{}", r.text());
    assert_eq!(op.up.seen.last().target, "/ws");
}

#[tokio::test]
async fn concurrent_exchanges_of_one_code_yield_one_set_of_tokens() {
    let op = Op::start(Alg::Es256).await;
    person(&op.gw, "alice", false, &[]).await;
    let mut jar = signed_in(&op.gw, "alice").await;
    let req = AuthReq::by_hand();
    let c = code(&op.gw, &mut jar, &req).await;
    let attempts = (0..8).map(|_| exchange(&op, &req, &c));
    let replies = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_token_error(r, 400, "invalid_grant");
    }
}

/// An authorization request from a person not signed in yet is never lost on the way through the
/// sign-in page: whatever `state` and `nonce` the provider accepts (up to 512 characters each, a
/// client's JSON say, which percent-encoding triples), the browser ends at the client with a code
/// and the state, or, before the sign-in page, with an error and the state. Never on the gateway's
/// `/` with the client left waiting.
#[tokio::test]
async fn a_long_authorization_request_comes_back_to_the_client_through_the_sign_in_page() {
    let op = Op::start(Alg::Es256).await;
    person(&op.gw, "alice", false, &[]).await;
    let json = "{\"to\":\"/x\"}".repeat(46);
    let cases = [
        ("s".repeat(512), "n".repeat(512), true),
        (json.clone(), "n".repeat(512), true),
        (json.clone(), json.clone(), false),
    ];
    for (state, nonce, must_sign_in) in cases {
        assert!(state.len() <= 512 && nonce.len() <= 512);
        let mut req = AuthReq::by_hand();
        req.state = state.clone();
        req.nonce = Some(nonce);
        let mut agent = Agent::for_gateway(&op.gw);
        let at_client = |u: &str| u.starts_with(BY_HAND_REDIRECT);
        let form = agent.open_until(&op.gw_url(&req.path()), at_client).await;
        let back = if form.stopped {
            // Refused before the sign-in page: an error, with the state.
            assert!(
                !must_sign_in,
                "a request the sign-in page can carry was refused: {}",
                form.url
            );
            assert_eq!(
                query_param(&form.url, "error").as_deref(),
                Some("invalid_request"),
                "{}",
                form.url
            );
            form
        } else {
            assert!(form.url.contains("/_auth/sign-in"), "{:?} {}", form.chain, form.text());
            let back = agent
                .submit_until(&form, &[("username", "alice"), ("password", PASSWORD)], at_client)
                .await;
            assert!(
                back.stopped,
                "a request of {} characters was lost at the sign-in page: {:?}",
                req.path().len(),
                back.chain
            );
            assert!(query_param(&back.url, "code").is_some(), "{}", back.url);
            back
        };
        assert_eq!(query_param(&back.url, "state").as_deref(), Some(state.as_str()));
    }

    // Signed in, with `prompt=login` (sign in again): the same holds.
    let mut jar = signed_in(&op.gw, "alice").await;
    for (state, nonce, must_sign_in) in [("s".repeat(64), "n".repeat(64), true), (json.clone(), json, false)] {
        let mut req = AuthReq::by_hand();
        req.state = state.clone();
        req.nonce = Some(nonce);
        let r = navigate(&op.gw, &mut jar, &req.path_with(&[("prompt", "login")])).await;
        assert_eq!(r.status, 303, "{}", r.text());
        let to = location(&r).unwrap();
        if must_sign_in {
            let rd = query_param(&to, "rd").unwrap_or_default();
            assert!(rd.starts_with(AUTHORIZE), "{to}");
        } else {
            assert!(
                to.starts_with(&format!("{BY_HAND_REDIRECT}?")),
                "lost: sent to {}… ({} characters)",
                &to[..to.len().min(60)],
                to.len()
            );
            assert_eq!(query_param(&to, "error").as_deref(), Some("invalid_request"), "{to}");
            assert_eq!(query_param(&to, "state").as_deref(), Some(state.as_str()), "{to}");
        }
    }
}

/// A person who signs in to authgate through another OpenID Provider (panva's oidc-provider, which
/// verified their address) and is then signed in to RAG Modulo by authgate: the ID token Authlib
/// gets says `email_verified: true`, for that address only.
#[tokio::test]
async fn an_address_verified_upstream_is_email_verified_for_the_relying_party() {
    use crate::common::oidc::{OidcAccount, OidcClient, Provider, ProviderConfig};
    assert!(
        crate::common::oidc::available(),
        "Node.js or tests/oidc/node_modules missing: run scripts/test (it installs Node.js and runs npm ci in tests/oidc)"
    );
    const UPSTREAM_SECRET: &str = "upstream-provider-client-secret-0123456789";
    const UPSTREAM_PW: &str = "carol-password-at-the-provider";
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = Provider::start(
        ProviderConfig::new()
            .client(OidcClient::for_gateway("gw-corp", UPSTREAM_SECRET, port, "corp"))
            .account(
                OidcAccount::new("carol-sub", "carol", UPSTREAM_PW)
                    .email("carol@corp.example", true)
                    .name("Carol Example"),
            ),
    );
    let providers = format!(
        "[[oidc.providers]]\nid = \"corp\"\nname = \"Corp\"\nissuer = \"{}\"\nclient_id = \"gw-corp\"\n\
         client_secret = \"{UPSTREAM_SECRET}\"\nscopes = [\"openid\", \"email\", \"profile\"]\n",
        upstream.issuer()
    );
    let op = Op::start_with(Alg::Es256, listener, Arc::new(tempfile::tempdir().unwrap()), &providers).await;

    // RAG Modulo's /login, up to authgate's sign-in page; then "sign in with Corp" from there.
    let mut agent = Agent::for_gateway(&op.gw);
    let to_sign_in = agent
        .open_until(&op.rp("/login?source=web"), |u| u.contains("/_auth/sign-in"))
        .await;
    assert!(to_sign_in.stopped, "{:?} {}", to_sign_in.chain, to_sign_in.text());
    let rd = query_param(&to_sign_in.url, "rd").expect("the sign-in page is given the authorize request");
    assert!(rd.starts_with(AUTHORIZE), "{rd}");
    let rd: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    let start = Agent::gateway_url(&op.gw, &format!("/_auth/oidc/corp/start?rd={rd}"));
    let callback = agent.login_flow(&start, "carol", UPSTREAM_PW).await;
    assert_eq!(callback.status, 303, "{}", callback.text());
    let next = location(&callback).unwrap();
    let next = if next.starts_with('/') { op.gw_url(&next) } else { next };
    let back = agent.follow(&next).await;
    assert_eq!(back.reply.status, 200, "{:?} {}", back.chain, back.text());
    assert!(back.url.starts_with(&op.rp("/api/auth/callback?")), "{:?}", back.chain);
    let shown = back.reply.json();
    assert!(shown.get("error").is_none(), "Authlib refused: {shown}");
    logscan::secret(shown["id_token"].as_str().unwrap());
    logscan::secret(shown["access_token"].as_str().unwrap());

    let users = op.gw.gateway.accounts().list_users().await.unwrap();
    assert_eq!(users.len(), 1, "one account, made by the single sign-on");
    let claims = &shown["claims"];
    assert_eq!(claims["sub"], users[0].id.as_str(), "{claims}");
    assert_eq!(claims["email"], "carol@corp.example", "{claims}");
    assert_eq!(
        claims["email_verified"], true,
        "verified by the upstream provider: {claims}"
    );
    assert_eq!(shown["userinfo"]["email_verified"], true, "{shown}");
    assert_id_token_claims(claims, &op.issuer, RAG_MODULO);
    assert_eq!(op.up.seen.count(), 0);
}

/// A code lives 60 s. The test reads the stored grant of a real code, then stores it again under
/// new codes, expired a second ago and with time left (the store is the gateway's own).
#[tokio::test]
async fn a_code_lives_sixty_seconds() {
    use authgate::store::grants::Grant;
    let op = Op::start(Alg::Es256).await;
    let alice = person(&op.gw, "alice", false, &[]).await;
    let mut jar = signed_in(&op.gw, "alice").await;
    let req = AuthReq::by_hand();
    let c = code(&op.gw, &mut jar, &req).await;
    let store = op.gw.gateway.accounts().store();
    let grant = store
        .take_grant(&authgate::idp::code_hash(&c))
        .await
        .unwrap()
        .expect("the code's grant is stored under its hash");
    let now = i64::try_from(crate::common::now()).unwrap();
    assert!(
        (now + 58..=now + 60).contains(&grant.expires_at),
        "expires {} s from now",
        grant.expires_at - now
    );
    assert_eq!(grant.user_id, alice.id);
    assert_eq!(grant.redirect_uri, BY_HAND_REDIRECT);
    // Taken once (here), it is gone for the client.
    assert_token_error(&exchange(&op, &req, &c).await, 400, "invalid_grant");

    let (expired, hash) = authgate::idp::new_code();
    logscan::secret(&expired);
    let old = Grant {
        expires_at: now - 1,
        ..grant.clone()
    };
    store.put_grant(&hash, &old).await.unwrap();
    assert_token_error(&exchange(&op, &req, &expired).await, 400, "invalid_grant");

    let (fresh, hash) = authgate::idp::new_code();
    logscan::secret(&fresh);
    let young = Grant {
        expires_at: now + 30,
        ..grant
    };
    store.put_grant(&hash, &young).await.unwrap();
    let r = exchange(&op, &req, &fresh).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// userinfo checks the access token it is given: re-signed with the provider's own key it passes
/// (the control), and expired, from another issuer or client, signed by another key under the
/// provider's `kid`, or unsigned, it is 401 `invalid_token`.
#[tokio::test]
async fn userinfo_refuses_expired_forged_and_unsigned_access_tokens() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let op = Op::start(Alg::Es256).await;
    person(&op.gw, "alice", false, &[]).await;
    let mut jar = signed_in(&op.gw, "alice").await;
    let t = tokens(&op, &mut jar).await;
    let access = t["access_token"].as_str().unwrap();
    let claims = crate::common::oidc::jwt_claims(access);
    let kid = jwt_header(access)["kid"].as_str().unwrap().to_owned();
    let header = || {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.clone());
        h.typ = Some("at+jwt".into());
        h
    };
    let sign = |claims: &Value, pem: &[u8]| {
        let token = jsonwebtoken::encode(&header(), claims, &EncodingKey::from_ec_pem(pem).unwrap()).unwrap();
        logscan::secret(&token);
        token
    };
    let own = std::fs::read(op.gw.dir.path().join("op.pem")).unwrap();
    let (other, _) = authgate::auth::keys::generate(authgate::config::JwtAlgorithm::ES256).unwrap();

    let r = userinfo(&op.gw, &sign(&claims, &own)).await;
    assert_eq!(r.status, 200, "the control: {}", r.text());

    let now = crate::common::now();
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 3700);
    expired["exp"] = json!(now - 100);
    let mut foreign_issuer = claims.clone();
    foreign_issuer["iss"] = json!("https://elsewhere.example");
    let mut ghost_client = claims.clone();
    ghost_client["aud"] = json!("ghost");
    ghost_client["client_id"] = json!("ghost");
    let forged = [
        ("expired", sign(&expired, &own)),
        ("another issuer", sign(&foreign_issuer, &own)),
        ("an unknown client", sign(&ghost_client, &own)),
        ("another key", sign(&claims, other.as_bytes())),
        (
            "alg none",
            format!(
                "{}.{}.",
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
                access.split('.').nth(1).unwrap()
            ),
        ),
    ];
    for (what, token) in forged {
        let r = userinfo(&op.gw, &token).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let challenge = r.headers.get("www-authenticate").and_then(|v| v.to_str().ok());
        assert!(
            challenge.is_some_and(|c| c.contains(r#"error="invalid_token""#)),
            "{what}: {challenge:?}"
        );
    }
    assert_eq!(op.up.seen.count(), 0);
}
