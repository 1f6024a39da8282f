//! Benchmark: authgate as an OpenID Provider on a warm gateway, authorize + token in a loop.
//!
//! `cargo bench --bench idp_latency`. Two providers run in this process, each on its own
//! single-worker runtime: one signing ID tokens ES256 (a key authgate generates), one RS256 (a
//! 2048-bit key from openssl). A signed-in browser session (the sign-in page, its cookie) asks
//! `authorize` for a code (a trusted client, PKCE S256, a nonce), and the client redeems it at
//! `token` with `client_secret_basic`, one after the other on one keep-alive TLS connection, after
//! a warm-up. It prints p50, p99 and the largest of the token call and of authorize + token; the
//! issue asks under 5 ms p99 for "issuing an ID token and the token endpoint together". Before
//! measuring, one ID token is checked against the published JWKS.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};

const WARMUP: usize = 100;
const COUNTED: usize = 1000;

/// A gateway that is an OpenID Provider for the trusted client `rp`, signing with `alg` (and the
/// upstream it would forward to, which nothing here reaches).
async fn provider(alg: &str) -> (TestUpstream, TestGateway) {
    let clients = format!(
        r#"
[[oidc.clients]]
client_id = "rp"
client_secret = "{OP_SECRET}"
redirect_uris = ["{OP_CALLBACK}"]
scopes = ["openid", "email", "profile", "groups"]
trusted = true
"#
    );
    op_gateway(alg, &clients).await
}

/// One keep-alive HTTP/1.1 connection over TLS.
struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(gw: &TestGateway) -> Conn {
        let tls = tls_connect(&gw.ca, gw.addr, false).await;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn {
            send,
            host: format!("localhost:{}", gw.addr.port()),
        }
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (u16, http::HeaderMap, Bytes) {
        let mut b = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Err(e) = self.send.ready().await {
            panic!("the gateway closed the keep-alive connection: {e}");
        }
        let resp = self.send.send_request(b.body(Full::new(body)).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        (
            parts.status.as_u16(),
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }
}

/// The code in a 303 to the client's callback.
fn code_of(status: u16, headers: &http::HeaderMap) -> String {
    assert_eq!(status, 303, "authorize did not redirect");
    let loc = headers.get("location").unwrap().to_str().unwrap();
    let (base, query) = loc.split_once('?').unwrap();
    assert_eq!(base, OP_CALLBACK);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .expect("a code")
        .1
        .into_owned()
}

/// One authorize + token round: (token call, both), and the ID token.
async fn round(conn: &mut Conn, cookie: &str, basic: &str) -> (Duration, Duration, String) {
    let authorize = format!(
        "/_auth/openid/authorize?response_type=code&client_id=rp&redirect_uri={}&scope=openid%20email%20profile\
         &state=s1&nonce=n-0S6_WzA2Mj&code_challenge={OP_CHALLENGE}&code_challenge_method=S256",
        form_urlencoded::byte_serialize(OP_CALLBACK.as_bytes()).collect::<String>()
    );
    let browser = [
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "cross-site"),
        ("cookie", cookie),
    ];
    let start = Instant::now();
    let (status, headers, page) = conn.call("GET", &authorize, &browser, Bytes::new()).await;
    if status != 303 {
        panic!("authorize: {status} {headers:?} {}", String::from_utf8_lossy(&page));
    }
    let code = code_of(status, &headers);
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", OP_CALLBACK)
        .append_pair("code_verifier", OP_VERIFIER)
        .finish();
    let token_start = Instant::now();
    let (status, _, body) = conn
        .call(
            "POST",
            "/_auth/openid/token",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", basic),
            ],
            Bytes::from(form),
        )
        .await;
    let done = Instant::now();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let tokens: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id_token = tokens["id_token"].as_str().expect("an id_token").to_owned();
    (done - token_start, done - start, id_token)
}

/// The ID token verifies against the provider's JWKS, for `rp`, with the nonce.
async fn check_id_token(gw: &TestGateway, token: &str) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&gw.client().get("/.well-known/jwks.json", &[]).await.text()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&["rp"]);
    v.set_issuer(&[format!("https://localhost:{}", gw.addr.port())]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["preferred_username"], "alice");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn gateway_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let load_rt = gateway_runtime();
    println!(
        "authgate idp_latency benchmark (each gateway: 1 worker; one keep-alive TLS connection; {WARMUP} warm-up \
         rounds, then {COUNTED} counted, one at a time)"
    );
    for alg in ["ES256", "RS256"] {
        let gw_rt = gateway_runtime();
        let (up, gw) = gw_rt.block_on(provider(alg));
        load_rt.block_on(async {
            assert_eq!(register(&gw, "alice").await.status, 201);
            let jar = signed_in(&gw, "alice").await;
            let cookie = jar.header();
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("rp:{OP_SECRET}"))
            );
            let mut conn = Conn::open(&gw).await;
            let (_, _, id_token) = round(&mut conn, &cookie, &basic).await;
            check_id_token(&gw, &id_token).await;
            for _ in 0..WARMUP {
                round(&mut conn, &cookie, &basic).await;
            }
            let (mut token, mut both) = (Vec::with_capacity(COUNTED), Vec::with_capacity(COUNTED));
            for _ in 0..COUNTED {
                let (t, b, _) = round(&mut conn, &cookie, &basic).await;
                token.push(t);
                both.push(b);
            }
            token.sort_unstable();
            both.sort_unstable();
            for (what, v) in [("token", &token), ("authorize + token", &both)] {
                println!(
                    "{alg} {what:<18} p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (n={}; the issue asks p99 < 5 ms)",
                    common::load::percentile_ms(v, 50.0),
                    common::load::percentile_ms(v, 99.0),
                    ms(*v.last().unwrap()),
                    v.len()
                );
            }
            assert_eq!(up.seen.count(), 0, "the provider's endpoints forward nothing");
        });
        drop(gw);
        drop(gw_rt);
    }
}
