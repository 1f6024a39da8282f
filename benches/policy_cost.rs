//! Benchmark: what a 50-rule policy costs the proxy, side by side with no policy.
//!
//! `cargo bench --bench policy_cost`. Two gateways run in this process, each on its own
//! single-worker runtime, with the same upstream, user and JWT. One has no `[[policy.rules]]`;
//! the other has 50, and the request matches only the last: 49 rules are tried first (each with
//! its lenient path), and the deciding rule names a group, so the caller's role and groups are
//! read (from memory, after the first request). The load alternates between them in rounds, so
//! the machine's noise falls on both alike; the figure is the median of the per-round ratios.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

const CONNECTIONS: usize = 16;
const PHASE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 5;
const RULES: usize = 50;

/// 49 rules the request does not match, then one it does (a group rule).
fn fifty_rules() -> String {
    let mut toml = String::from("[policy]\ndefault = \"deny\"\n");
    for i in 1..RULES {
        let methods = if i % 2 == 0 {
            "methods = [\"POST\", \"PUT\"]\n"
        } else {
            ""
        };
        toml.push_str(&format!(
            "[[policy.rules]]\ndescription = \"rule {i}\"\n{methods}paths = [\"/api/area{i}/*\", \"/api/exact{i}\"]\n\
             allow = [\"role:admin\", \"group:g{i}\"]\n"
        ));
    }
    toml.push_str(
        "[[policy.rules]]\ndescription = \"the data\"\npaths = [\"/api/data/*\"]\n\
         allow = [\"group:research\"]\ndeny = [\"group:contractors\"]\n",
    );
    toml
}

/// One phase of `/api/data/items` GETs with `auth`: req/s.
async fn run(ca: &std::path::Path, addr: std::net::SocketAddr, auth: Arc<str>) -> f64 {
    let header: common::load::Credential = Arc::new(move |_| Some(("authorization", auth.to_string())));
    common::load::closed_loop(ca, addr, "/api/data/items", CONNECTIONS, PHASE, header)
        .await
        .0
}

fn gateway_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (open_rt, policy_rt, load_rt) = (gateway_runtime(), gateway_runtime(), gateway_runtime());
    let up = load_rt.block_on(TestUpstream::start());
    // One directory (store, certificate) and the tests' one secret: one user and JWT serve both.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let open = open_rt.block_on(TestGateway::builder(&up.url()).dir(dir.clone()).start());
    let policy = policy_rt.block_on(TestGateway::builder(&up.url()).dir(dir).extra(&fifty_rules()).start());

    load_rt.block_on(async {
        let client = Client::new(&open.ca, open.addr, false);
        let body = json!({"username": "bench", "password": "benchmark password", "email": "b@example.com"}).to_string();
        let r = client
            .call(
                "POST",
                "/api/auth/register",
                &[("content-type", "application/json")],
                Some(body.into_bytes()),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let accounts = policy.gateway.accounts();
        let user = accounts.find_user("bench").await.unwrap();
        assert!(accounts.set_group(&user, "research", true).await.unwrap().0);
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
        let auth: Arc<str> = bearer(&jwt).into();
        // Both forward the request, and the policy gateway says which rule let it through.
        for gw in [&open, &policy] {
            let r = gw.client().get("/api/data/items", &[("authorization", &auth)]).await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let metrics = policy.admin_get("/metrics").await.1;
        assert!(
            metrics.contains(r#"authgate_policy_decisions_total{rule="the data",decision="allow"} 1"#),
            "the 50th rule did not decide: {metrics}"
        );

        // Warm-up, then alternating rounds.
        run(&open.ca, open.addr, auth.clone()).await;
        run(&policy.ca, policy.addr, auth.clone()).await;
        let (mut open_rates, mut policy_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Alternate which goes first, so neither always follows the other.
            let (o, p) = if round % 2 == 0 {
                let o = run(&open.ca, open.addr, auth.clone()).await;
                (o, run(&policy.ca, policy.addr, auth.clone()).await)
            } else {
                let p = run(&policy.ca, policy.addr, auth.clone()).await;
                (run(&open.ca, open.addr, auth.clone()).await, p)
            };
            open_rates.push(o);
            policy_rates.push(p);
            ratios.push(p / o);
        }
        println!(
            "authgate policy_cost benchmark (each gateway: 1 worker; {CONNECTIONS} TLS keep-alive connections; \
             {ROUNDS} alternating rounds of {}s)",
            PHASE.as_secs()
        );
        println!(
            "no policy:          {:>8.0} req/s  (rounds {open_rates:.0?})",
            median(open_rates.clone())
        );
        println!(
            "{RULES} rules, last one: {:>8.0} req/s  (rounds {policy_rates:.0?})",
            median(policy_rates.clone())
        );
        println!(
            "policy / none:      {:>8.3}  (median of per-round ratios {ratios:.3?}; the issue asks >= 0.95)",
            median(ratios.clone())
        );
    });
}
