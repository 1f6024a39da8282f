//! A real OpenID Provider for the tests, and a browser's side of single sign-on spoken over HTTP.
//!
//! * [`Provider`] runs panva's `oidc-provider` (tests/oidc/provider.mjs, pinned in
//!   tests/oidc/package-lock.json, installed by `scripts/test`) as a Node.js child process on
//!   127.0.0.1, one provider per process, its issuer `http://127.0.0.1:<port>`. Its keys are made at
//!   start and live only in that process; it is stopped (SIGTERM, then SIGKILL) on drop.
//! * [`Agent`] (oidc/agent.rs) is a browser without a browser: cookies per host, redirects,
//!   forms. Here it learns the provider's login form: [`Agent::login_flow`] goes from the gateway's
//!   `/_auth/oidc/<id>/start` to its callback; [`Agent::login_until_callback`] stops just before the
//!   callback, so a test can tamper with `state` or `code`, or replay them.
//! * A relying party by hand ([`Provider::code_flow`]): authorize with PKCE S256, log in, exchange
//!   the code, for tests that need the provider's own tokens.
//!
//! The rule it keeps: every provider is its own process on a port of its own, and every client
//! secret, password, code and token the harness handles is told to `logscan`, so the gateway's logs
//! are searched for each of them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Uri;
use serde::Serialize;
use serde_json::{Value, json};

use super::client::Reply;
use super::logscan;

mod agent;
pub use agent::*;

/// oidc-provider starts in about a second, but a test binary starts several at once, and on a
/// loaded 2-core machine one took longer than 15 s (CI at c523142): a failure costs the wait only.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
const INSTALL_HINT: &str = "run scripts/test, which installs Node.js and runs `npm ci` in tests/oidc \
     (or: apt-get install nodejs npm && (cd tests/oidc && npm ci --no-audit --no-fund))";
/// The scopes a gateway asks for by default, and [`Provider::code_flow`] asks for.
pub const SCOPES: &str = "openid email profile groups";

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// oidc-provider 9 needs Node.js 20.19 or later (`URL.parse`, `crypto.hash`).
const NODE_MIN: (u32, u32) = (20, 19);

/// `node` (recent enough) can be run and tests/oidc/node_modules holds `oidc-provider`.
pub fn available() -> bool {
    node_version().is_some_and(|v| v >= NODE_MIN) && oidc_dir().join("node_modules/oidc-provider/package.json").exists()
}

/// `node --version` as (major, minor).
fn node_version() -> Option<(u32, u32)> {
    let out = Command::new("node").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    out.status.success().then_some((major, minor))
}

// =============================================================================================
// Configuration
// =============================================================================================

/// What a provider starts with; serialised as the JSON argument of provider.mjs.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderConfig {
    /// 0: a free port, chosen by the provider. [`Provider::restart`] reuses the chosen one.
    pub port: u16,
    pub clients: Vec<OidcClient>,
    pub accounts: Vec<OidcAccount>,
    /// Access tokens as RS256 JWTs with `aud` = the client id (the default), or opaque ones that
    /// the userinfo endpoint accepts.
    pub jwt_access_tokens: bool,
    /// The CA the gateway's certificate chains to (`TestGateway::ca`), for back-channel logout
    /// over HTTPS. Read at each logout, so the file may appear after the provider starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_ca: Option<PathBuf>,
    pub ttl: Ttl,
}

/// Lifetimes in seconds; `None` keeps oidc-provider's (id_token and access token 1 h, code 1 min).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ttl {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u64>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            port: 0,
            clients: Vec::new(),
            accounts: Vec::new(),
            jwt_access_tokens: true,
            backchannel_ca: None,
            ttl: Ttl::default(),
        }
    }
}

impl ProviderConfig {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn client(mut self, client: OidcClient) -> Self {
        self.clients.push(client);
        self
    }
    pub fn account(mut self, account: OidcAccount) -> Self {
        self.accounts.push(account);
        self
    }
    pub fn backchannel_ca(mut self, ca: &Path) -> Self {
        self.backchannel_ca = Some(ca.to_owned());
        self
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

/// A registered client (oidc-provider's client metadata names).
#[derive(Clone, Debug, Serialize)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: ClientAuth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// With a back-channel URI: `sid` in id_tokens and logout tokens (the provider's default here: true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_session_required: Option<bool>,
    pub post_logout_redirect_uris: Vec<String>,
    /// `RS256` (oidc-provider's default) or `ES256`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<String>,
}

impl OidcClient {
    pub fn new(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        logscan::secret(client_secret);
        OidcClient {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uris: vec![redirect_uri.to_owned()],
            token_endpoint_auth_method: ClientAuth::ClientSecretBasic,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: None,
            post_logout_redirect_uris: Vec::new(),
            id_token_signed_response_alg: None,
        }
    }

    /// The client a gateway on `gateway_port` is, as provider `provider_id`: the contract's
    /// callback and back-channel logout URLs, and the gateway's root and sign-in page as
    /// post-logout redirects.
    pub fn for_gateway(client_id: &str, client_secret: &str, gateway_port: u16, provider_id: &str) -> Self {
        let base = format!("https://localhost:{gateway_port}");
        let mut client = Self::new(
            client_id,
            client_secret,
            &format!("{base}/_auth/oidc/{provider_id}/callback"),
        );
        client.backchannel_logout_uri = Some(format!("{base}/_auth/oidc/{provider_id}/backchannel-logout"));
        client.post_logout_redirect_uris = vec![format!("{base}/"), format!("{base}/_auth/sign-in")];
        client
    }

    /// Another redirect URI (a second replica, say).
    pub fn redirect_uri(mut self, uri: &str) -> Self {
        self.redirect_uris.push(uri.to_owned());
        self
    }
    pub fn auth(mut self, method: ClientAuth) -> Self {
        self.token_endpoint_auth_method = method;
        self
    }
    pub fn backchannel_logout_uri(mut self, uri: &str) -> Self {
        self.backchannel_logout_uri = Some(uri.to_owned());
        self
    }
    pub fn post_logout_redirect_uri(mut self, uri: &str) -> Self {
        self.post_logout_redirect_uris.push(uri.to_owned());
        self
    }
    pub fn id_token_alg(mut self, alg: &str) -> Self {
        self.id_token_signed_response_alg = Some(alg.to_owned());
        self
    }
}

/// A user of the provider. Claims: `sub`, `preferred_username` (= username), `name`, `email`,
/// `email_verified`, `groups`.
#[derive(Clone, Debug, Serialize)]
pub struct OidcAccount {
    pub sub: String,
    pub username: String,
    pub password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub email_verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub groups: Vec<String>,
}

impl OidcAccount {
    pub fn new(sub: &str, username: &str, password: &str) -> Self {
        logscan::secret(password);
        OidcAccount {
            sub: sub.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            email: None,
            email_verified: false,
            name: None,
            groups: Vec::new(),
        }
    }
    pub fn email(mut self, email: &str, verified: bool) -> Self {
        self.email = Some(email.to_owned());
        self.email_verified = verified;
        self
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
    pub fn groups(mut self, groups: &[&str]) -> Self {
        self.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self
    }
}

/// How the provider signs a token it is told to forge ([`Provider::sign`],
/// [`Provider::next_id_token`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    /// As the provider signed it (same alg and key). Only for [`Provider::next_id_token`].
    Keep,
    Rs256,
    Es256,
    /// `alg: none`, empty signature.
    None,
    /// HS256 keyed with the PEM of the provider's published RSA key (algorithm confusion).
    Hs256PublicKey,
    /// RS256 under the real `kid`, by a key the JWKS does not hold.
    UnknownKey,
}

impl Signing {
    fn as_str(self) -> &'static str {
        match self {
            Signing::Keep => "keep",
            Signing::Rs256 => "RS256",
            Signing::Es256 => "ES256",
            Signing::None => "none",
            Signing::Hs256PublicKey => "hs256-public-key",
            Signing::UnknownKey => "unknown-key",
        }
    }
}

// =============================================================================================
// The provider process
// =============================================================================================

/// A running oidc-provider. See the module doc.
pub struct Provider {
    child: Option<Child>,
    port: u16,
    config: ProviderConfig,
    log: Arc<Mutex<Vec<String>>>,
}

impl Provider {
    /// Start a provider and wait until it listens (within 15 s). Panics with its output if it does
    /// not, and with how to install Node.js and the package when they are missing.
    pub fn start(config: ProviderConfig) -> Provider {
        let mut provider = Provider {
            child: None,
            port: config.port,
            config,
            log: Arc::new(Mutex::new(Vec::new())),
        };
        provider.spawn();
        provider
    }

    fn spawn(&mut self) {
        let dir = oidc_dir();
        match node_version() {
            None => panic!("the OpenID Provider tests need Node.js (`node` is not on PATH): {INSTALL_HINT}"),
            Some(v) if v < NODE_MIN => panic!(
                "the OpenID Provider tests need Node.js {}.{} or later (oidc-provider 9), found {}.{}",
                NODE_MIN.0, NODE_MIN.1, v.0, v.1
            ),
            Some(_) => {}
        }
        if !dir.join("node_modules/oidc-provider/package.json").exists() {
            panic!(
                "{} has no oidc-provider: {INSTALL_HINT}",
                dir.join("node_modules").display()
            );
        }
        let mut config = self.config.clone();
        config.port = self.port;
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(serde_json::to_string(&config).unwrap())
            .current_dir(&dir)
            .env_remove("NODE_OPTIONS")
            .env("NODE_ENV", "test")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node: {e}; {INSTALL_HINT}"));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        self.log.lock().unwrap().clear();

        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match line.strip_prefix("LISTENING ").map(str::parse::<u16>) {
                    Some(Ok(port)) if tx.is_some() => {
                        let _ = tx.take().unwrap().send(port);
                    }
                    _ => log.lock().unwrap().push(line),
                }
            }
        });
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });

        match rx.recv_timeout(START_TIMEOUT) {
            Ok(port) => {
                self.port = port;
                self.child = Some(child);
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                // Give the readers a moment to drain what the process wrote before dying.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the OpenID Provider did not start within {START_TIMEOUT:?} (exit: {status:?}); its output:\n{}",
                    self.log()
                );
            }
        }
    }

    /// `http://127.0.0.1:<port>`, exactly as the provider's tokens and discovery document say it.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }
    /// Everything the provider printed (oidc-provider's warnings, server errors, failed
    /// back-channel deliveries).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
    pub fn client(&self, client_id: &str) -> &OidcClient {
        self.config
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .unwrap_or_else(|| panic!("no client {client_id} on this provider"))
    }
    pub fn account(&self, username: &str) -> &OidcAccount {
        self.config
            .accounts
            .iter()
            .find(|a| a.username == username)
            .unwrap_or_else(|| panic!("no account {username} on this provider"))
    }

    /// Stop it (SIGTERM): from now on its port refuses connections, as a provider that is down.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::services::stop_child(&mut child, "TERM", STOP_TIMEOUT);
        }
    }

    /// Start again on the same port with the same configuration: new keys (other `kid`s), no
    /// sessions, codes or grants from before.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub async fn discovery(&self) -> Value {
        let r = http("GET", &self.url("/.well-known/openid-configuration"), &[], None).await;
        assert_eq!(r.status, 200, "discovery: {}", r.text());
        r.json()
    }

    /// The provider's published keys.
    pub async fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        let r = http("GET", &self.url("/jwks"), &[], None).await;
        assert_eq!(r.status, 200, "jwks: {}", r.text());
        serde_json::from_slice(&r.body).expect("a JWK set")
    }

    /// Make the provider send a back-channel logout token for `sub` to every client with a
    /// back-channel URI that the user has a provider session with, and end those sessions. What
    /// was sent, one `{"client_id","sid","ok","error"?}` per delivery.
    pub async fn backchannel_logout(&self, sub: &str) -> Vec<Value> {
        self.backchannel(&[("sub", sub)]).await
    }

    /// [`Self::backchannel_logout`] to one client only.
    pub async fn backchannel_logout_to(&self, sub: &str, client_id: &str) -> Vec<Value> {
        self.backchannel(&[("sub", sub), ("client_id", client_id)]).await
    }

    async fn backchannel(&self, query: &[(&str, &str)]) -> Vec<Value> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let r = http(
            "POST",
            &self.url(&format!("/test/backchannel-logout?{query}")),
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 200, "backchannel-logout: {}", r.text());
        r.json()["sent"].as_array().cloned().unwrap_or_default()
    }

    /// Rewrite the id_token of the next successful token response: `claims` merged over the real
    /// ones (`null` deletes a claim), then signed as `signing` says.
    pub async fn next_id_token(&self, claims: Value, signing: Signing) {
        let body = json!({"claims": claims, "sign": signing.as_str()}).to_string();
        let r = http(
            "POST",
            &self.url("/test/next-id-token"),
            &[("content-type", "application/json")],
            Some(body.into_bytes()),
        )
        .await;
        assert_eq!(r.status, 200, "next-id-token: {}", r.text());
    }

    /// A JWT with `claims` (over `iss` = this issuer, `iat` = now, `exp` = now + 5 min), signed with
    /// this provider's keys as `signing` says.
    pub async fn sign(&self, claims: Value, signing: Signing) -> String {
        assert_ne!(signing, Signing::Keep, "Signing::Keep is only for next_id_token");
        let body = json!({"claims": claims, "sign": signing.as_str()}).to_string();
        let r = http(
            "POST",
            &self.url("/test/sign"),
            &[("content-type", "application/json")],
            Some(body.into_bytes()),
        )
        .await;
        assert_eq!(r.status, 200, "sign: {}", r.text());
        let token = r.json()["token"].as_str().unwrap().to_owned();
        logscan::secret(&token);
        token
    }

    /// The authorization request a relying party would send (code flow, PKCE S256).
    pub fn authorize_url(&self, client: &OidcClient, req: &AuthRequest) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", &req.redirect_uri)
            .append_pair("scope", &req.scope)
            .append_pair("state", &req.state)
            .append_pair("nonce", &req.nonce)
            .append_pair("code_challenge", &req.pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        self.url(&format!("/auth?{query}"))
    }

    /// The token request for `code`, authenticated as the client is registered to.
    pub async fn exchange_code(&self, client: &OidcClient, code: &str, verifier: &str, redirect_uri: &str) -> Reply {
        logscan::secret(code);
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", verifier);
        let basic;
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        match client.token_endpoint_auth_method {
            ClientAuth::ClientSecretBasic => {
                // RFC 6749 2.3.1: each part form-urlencoded before base64.
                let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(&client.client_id), enc(&client.client_secret));
                basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
                headers.push(("authorization", basic.as_str()));
            }
            ClientAuth::ClientSecretPost => {
                form.append_pair("client_id", &client.client_id)
                    .append_pair("client_secret", &client.client_secret);
            }
        }
        let r = http("POST", &self.url("/token"), &headers, Some(form.finish().into_bytes())).await;
        if r.status == 200 {
            let body = r.json();
            for name in ["access_token", "id_token", "refresh_token"] {
                if let Some(t) = body[name].as_str() {
                    logscan::secret(t);
                }
            }
        }
        r
    }

    /// A whole code flow as client `client_id`, by hand: authorize (PKCE S256, state, nonce),
    /// the login form as `username`, the code from the redirect, the token request. Panics on any
    /// step that goes otherwise.
    pub async fn code_flow(&self, client_id: &str, username: &str, password: &str) -> Tokens {
        let client = self.client(client_id).clone();
        let req = AuthRequest::new(&client.redirect_uris[0]);
        let mut agent = Agent::new();
        let redirect = agent
            .sign_in_until(&self.authorize_url(&client, &req), username, password, |u| {
                url_starts_with(u, &req.redirect_uri)
            })
            .await;
        assert_eq!(
            query_param(&redirect, "state").as_deref(),
            Some(req.state.as_str()),
            "{redirect}"
        );
        assert_eq!(
            query_param(&redirect, "iss").as_deref(),
            Some(self.issuer().as_str()),
            "{redirect}"
        );
        let code = query_param(&redirect, "code").unwrap_or_else(|| panic!("no code in {redirect}"));
        let r = self
            .exchange_code(&client, &code, &req.pkce.verifier, &req.redirect_uri)
            .await;
        assert_eq!(r.status, 200, "token endpoint: {}", r.text());
        let body = r.json();
        Tokens {
            id_token: body["id_token"].as_str().expect("an id_token").to_owned(),
            access_token: body["access_token"].as_str().expect("an access_token").to_owned(),
            nonce: req.nonce,
            body,
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PKCE pair (RFC 7636): a 43-character verifier and its S256 challenge.
#[derive(Clone, Debug)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        use sha2::Digest;
        let verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        Pkce { verifier, challenge }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// 32 random bytes, base64url: a state, nonce or PKCE verifier.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One authorization request's parameters, as a relying party keeps them.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub nonce: String,
    pub pkce: Pkce,
}

impl AuthRequest {
    pub fn new(redirect_uri: &str) -> Self {
        AuthRequest {
            redirect_uri: redirect_uri.to_owned(),
            scope: SCOPES.to_owned(),
            state: random_token(),
            nonce: random_token(),
            pkce: Pkce::new(),
        }
    }
}

/// A token response from [`Provider::code_flow`].
#[derive(Clone, Debug)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
    /// The nonce the request sent.
    pub nonce: String,
    /// The whole token response.
    pub body: Value,
}

/// A JWT's claims, not verified.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON claims")
}

/// A JWT's header, not verified.
pub fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("JSON header")
}

/// Verify `token` against `jwks` (the key its `kid` names, the algorithm that key is for) with
/// `iss` and `aud` checked; its claims.
pub fn verify_jwt(
    token: &str,
    jwks: &jsonwebtoken::jwk::JwkSet,
    issuer: &str,
    audience: &str,
) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.as_deref().ok_or("no kid")?;
    let jwk = jwks.find(kid).ok_or_else(|| format!("no key {kid} in the JWKS"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

// =============================================================================================
// Signing in through the provider's form
// =============================================================================================

impl Agent {
    /// Open `start` (a gateway's `/_auth/oidc/<id>/start?rd=…`, or a provider's authorization
    /// URL), sign in on the provider's form as `username`, and follow redirects up to the first
    /// URL `stop` accepts; that URL. Panics (with the page) if the form is not shown, the login is
    /// refused, or the navigation ends anywhere else.
    pub async fn sign_in_until(
        &mut self,
        start: &str,
        username: &str,
        password: &str,
        stop: impl Fn(&str) -> bool,
    ) -> String {
        logscan::secret(password);
        let form = self.open_until(start, &stop).await;
        if form.stopped {
            // Already signed in at the provider: straight back.
            return form.url;
        }
        assert!(
            form.reply.status == 200 && form.text().contains(r#"id="provider-sign-in""#),
            "expected the provider's login form at the end of {:?}, got {} {}",
            form.chain,
            form.reply.status,
            form.text()
        );
        let done = self
            .submit_until(&form, &[("login", username), ("password", password)], &stop)
            .await;
        assert!(
            done.stopped,
            "the sign-in at the provider did not come back (chain {:?}): {} {}",
            done.chain,
            done.reply.status,
            done.text()
        );
        done.url
    }

    /// Sign in from the gateway's `start` URL and stop before the gateway's callback
    /// (`/_auth/oidc/<id>/callback`): that URL, with `code`, `state` and `iss` in its query. Give
    /// it (changed or not) to [`Agent::follow`] to go on, as the browser would.
    pub async fn login_until_callback(&mut self, start: &str, username: &str, password: &str) -> String {
        let url = self.sign_in_until(start, username, password, is_gateway_callback).await;
        if let Some(code) = query_param(&url, "code") {
            logscan::secret(&code);
        }
        url
    }

    /// The whole sign-in from the gateway's `start` URL: the provider's form, then the gateway's
    /// callback. The callback's own answer (a redirect to `rd` with the session cookie, or the
    /// sign-in page with an error), not followed further.
    pub async fn login_flow(&mut self, start: &str, username: &str, password: &str) -> Reply {
        let callback = self.login_until_callback(start, username, password).await;
        self.callback(&callback).await
    }

    /// GET `callback_url` on the gateway as the end of the provider's redirect (a cross-site
    /// navigation), without following the answer.
    pub async fn callback(&mut self, callback_url: &str) -> Reply {
        self.resume(callback_url).await
    }
}

/// The gateway's OpenID Connect callback, `/_auth/oidc/<id>/callback`, on any gateway.
pub fn is_gateway_callback(url: &str) -> bool {
    let Ok(uri) = url.parse::<Uri>() else { return false };
    uri.scheme_str() == Some("https") && uri.path().starts_with("/_auth/oidc/") && uri.path().ends_with("/callback")
}

/// `url`'s path is `prefix`'s, or under it (query ignored); same scheme, host and port.
fn url_starts_with(url: &str, prefix: &str) -> bool {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    url == prefix || url.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
}
