//! Benchmark: proxied req/s through each credential path.
//!
//! `cargo bench --bench token_paths` (needs redis-server; `scripts/test` installs it). The gateway
//! runs on its own single-worker runtime; the load generator, upstream and Redis on the rest.
//! Paths: a JWT; an API token found in the in-process cache; a browser's cookie session (signed
//! in through the page, found in the in-process cache); API tokens that miss the in-process
//! cache and are found in Redis (each request uses a token this gateway has never seen, put in
//! Redis beforehand); and an access token from a single sign-on provider with `accept_bearer`
//! (panva's oidc-provider under Node.js, as in tests/pages/sso.rs), its keys cached.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const CONNECTIONS: usize = 16;
const PHASE: Duration = Duration::from_secs(4);
const MISS_TOKENS: usize = 60_000;
const PROVIDER_SECRET: &str = "bench-provider-client-secret";
const PROVIDER_PASSWORD: &str = "bench-password-at-the-provider";

/// One phase of `/api/data` GETs, request i carrying `header(i)`: (req/s, requests).
async fn run(ca: &std::path::Path, addr: std::net::SocketAddr, header: common::load::Credential) -> (f64, usize) {
    common::load::closed_loop(ca, addr, "/api/data", CONNECTIONS, PHASE, header).await
}

fn main() {
    let gateway_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let redis = common::services::Redis::start();
    let up = load_rt.block_on(TestUpstream::start());
    let listener = gateway_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let provider = common::oidc::Provider::start(
        common::oidc::ProviderConfig::new()
            .client(common::oidc::OidcClient::for_gateway(
                "gw",
                PROVIDER_SECRET,
                port,
                "corp",
            ))
            .account(common::oidc::OidcAccount::new(
                "sub-bench",
                "sso-bench",
                PROVIDER_PASSWORD,
            )),
    );
    let extra = format!(
        "[redis]\nurl = \"{}\"\ntoken_ttl = \"1h\"\n[[oidc.providers]]\nid = \"corp\"\nissuer = \"{}\"\n\
         client_id = \"gw\"\nclient_secret = \"{PROVIDER_SECRET}\"\naccept_bearer = true\n",
        redis.url(),
        provider.issuer()
    );
    let gw = gateway_rt.block_on(TestGateway::builder(&up.url()).listener(listener).extra(&extra).start());
    let (ca, addr) = (gw.ca.clone(), gw.addr);

    load_rt.block_on(async {
        let client = Client::new(&ca, addr, false);
        let body = json!({"username": "bench", "password": "benchmark password", "email": "b@example.com"}).to_string();
        let user_id = client
            .call(
                "POST",
                "/api/auth/register",
                &[("content-type", "application/json")],
                Some(body.into_bytes()),
            )
            .await
            .json()["user_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = json!({"username": "bench", "password": "benchmark password"}).to_string();
        let jwt = client
            .call(
                "POST",
                "/api/auth/login",
                &[("content-type", "application/json")],
                Some(body.into_bytes()),
            )
            .await
            .json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = json!({"name": "bench"}).to_string();
        let key = client
            .call(
                "POST",
                "/api/auth/tokens",
                &[("content-type", "application/json"), ("authorization", &bearer(&jwt))],
                Some(body.into_bytes()),
            )
            .await
            .json()["token"]
            .as_str()
            .unwrap()
            .to_owned();

        // Tokens this gateway has never seen, known to Redis (and the store).
        print!("preparing {MISS_TOKENS} tokens in the store and Redis... ");
        let prep = Instant::now();
        let store = authgate::store::Store::connect(&format!(
            "sqlite://{}?mode=rwc",
            gw.dir.path().join("authgate.db").display()
        ))
        .await
        .unwrap();
        let cache = authgate::store::cache::Redis::new(&redis.url(), Duration::from_secs(1), Duration::from_secs(3600))
            .unwrap();
        assert!(cache.connect().await);
        let mut miss_tokens = Vec::with_capacity(MISS_TOKENS);
        let full = ["full".to_owned()];
        for i in 0..MISS_TOKENS {
            let token = authgate::auth::api_token::generate();
            let hash = authgate::auth::api_token::hash(&token);
            let id = format!("00000000-0000-4000-8000-{i:012}");
            store
                .create_api_token(&authgate::store::NewApiToken {
                    id: &id,
                    user_id: &user_id,
                    name: "m",
                    token_hash: &hash,
                    created_at: 0,
                    expires_at: None,
                    scopes: &full,
                })
                .await
                .unwrap();
            cache
                .put_token(
                    &hash,
                    &authgate::store::cache::CachedToken {
                        id,
                        user_id: user_id.clone(),
                        expires_at: None,
                        scopes: full.to_vec(),
                    },
                )
                .await;
            miss_tokens.push(token);
        }
        println!("{:.1}s", prep.elapsed().as_secs_f64());
        let miss_tokens = Arc::new(miss_tokens);

        let jwt_h: Arc<dyn Fn(usize) -> Option<(&'static str, String)> + Send + Sync> = {
            let v = bearer(&jwt);
            Arc::new(move |_| Some(("authorization", v.clone())))
        };
        let hit_h: Arc<dyn Fn(usize) -> Option<(&'static str, String)> + Send + Sync> = {
            let k = key.clone();
            Arc::new(move |_| Some(("x-api-key", k.clone())))
        };
        let mut jar = Jar::default();
        let signed = sign_in_page(&gw, &mut jar, "bench", "benchmark password", "/").await;
        assert_eq!(signed.status, 303, "{}", signed.text());
        let cookie_h: Arc<dyn Fn(usize) -> Option<(&'static str, String)> + Send + Sync> = {
            let c = jar.header();
            Arc::new(move |_| Some(("cookie", c.clone())))
        };
        // Link the provider's user (a browser sign-in), then take an access token for a program.
        let started = Instant::now();
        while !gw.admin_get("/readyz").await.1.contains(r#""corp":true"#) {
            assert!(started.elapsed() < Duration::from_secs(10), "the provider never loaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut agent = common::oidc::Agent::for_gateway(&gw);
        let start = common::oidc::Agent::gateway_url(&gw, "/_auth/oidc/corp/start?rd=%2F");
        let linked = agent.login_flow(&start, "sso-bench", PROVIDER_PASSWORD).await;
        assert_eq!(linked.status, 303, "{}", linked.text());
        let access = provider
            .code_flow("gw", "sso-bench", PROVIDER_PASSWORD)
            .await
            .access_token;
        let sso_h: Arc<dyn Fn(usize) -> Option<(&'static str, String)> + Send + Sync> = {
            let v = bearer(&access);
            Arc::new(move |_| Some(("authorization", v.clone())))
        };
        // Warm up every path.
        run(&ca, addr, jwt_h.clone()).await;
        run(&ca, addr, hit_h.clone()).await;
        run(&ca, addr, cookie_h.clone()).await;
        run(&ca, addr, sso_h.clone()).await;

        let mut sso_rates = Vec::new();
        let mut jwt_rates = Vec::new();
        let mut hit_rates = Vec::new();
        let mut cookie_rates = Vec::new();
        for _ in 0..3 {
            jwt_rates.push(run(&ca, addr, jwt_h.clone()).await.0);
            hit_rates.push(run(&ca, addr, hit_h.clone()).await.0);
            cookie_rates.push(run(&ca, addr, cookie_h.clone()).await.0);
            sso_rates.push(run(&ca, addr, sso_h.clone()).await.0);
        }
        let miss_h: Arc<dyn Fn(usize) -> Option<(&'static str, String)> + Send + Sync> = {
            let t = miss_tokens.clone();
            Arc::new(move |i| t.get(i).map(|k| ("x-api-key", k.clone())))
        };
        let (miss_rate, miss_n) = run(&ca, addr, miss_h).await;

        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (j, h) = (median(jwt_rates.clone()), median(hit_rates.clone()));
        let c = median(cookie_rates.clone());
        let o = median(sso_rates.clone());
        println!(
            "authgate token_paths benchmark (gateway: 1 worker; {CONNECTIONS} TLS keep-alive connections; {}s phases)",
            PHASE.as_secs()
        );
        println!("JWT:                        {j:>8.0} req/s  (rounds {jwt_rates:.0?})");
        println!(
            "API token, in-process hit:  {h:>8.0} req/s  (rounds {hit_rates:.0?})  = {:.1}% of JWT",
            100.0 * h / j
        );
        println!(
            "cookie session, in-process: {c:>8.0} req/s  (rounds {cookie_rates:.0?})  = {:.1}% of JWT",
            100.0 * c / j
        );
        println!(
            "provider access token:      {o:>8.0} req/s  (rounds {sso_rates:.0?})  = {:.1}% of JWT",
            100.0 * o / j
        );
        println!("API token, miss -> Redis:   {miss_rate:>8.0} req/s  ({miss_n} distinct tokens)");
        let gap = (j - h) / j;
        println!(
            "cache-hit gap to JWT: {:.1}% (target <= 5%: {})",
            100.0 * gap,
            if gap <= 0.05 { "met" } else { "NOT met" }
        );
        let gap = (j - c) / j;
        println!(
            "cookie-session gap to JWT: {:.1}% (target <= 5%: {})",
            100.0 * gap,
            if gap <= 0.05 { "met" } else { "NOT met" }
        );
        let gap = (j - o) / j;
        println!(
            "provider-bearer gap to JWT: {:.1}% (target <= 10%: {})",
            100.0 * gap,
            if gap <= 0.10 { "met" } else { "NOT met" }
        );
    });
    drop(gw);
}
