//! Several replicas sharing PostgreSQL (the record) and Redis (cache and revocation bus), each
//! started by the test on random ports. The periodic store sync is set to 5 s here, so anything
//! that propagates within 1 s went over the Redis bus.

mod common;

use std::time::{Duration, Instant};

use common::services::{Postgres, Redis};
use common::*;
use serde_json::json;

fn replica_toml(pg: &str, redis: Option<&str>, extra: &str) -> String {
    // A Redis call slower than `redis.timeout` opens the breaker for a second, and the replica then
    // skips Redis. The default, 100 ms, is for production; on a loaded 2-core test machine a
    // neighbour's initdb can stall a call that long, so these tests allow 1 s. A dead Redis still
    // fails fast: its connections are refused.
    let redis = redis
        .map(|r| format!("[redis]\nurl = \"{r}\"\ntimeout = \"1s\"\n"))
        .unwrap_or_default();
    format!("[store]\nurl = \"{pg}\"\nsync_interval = \"5s\"\n{redis}{extra}")
}

/// Start a replica; with Redis configured, wait until its command connection is up and it listens
/// on the revocation bus, so that no check depends on how fast the background connect was.
async fn replica(up: &TestUpstream, toml: &str) -> TestGateway {
    let gw = TestGateway::builder(&up.url()).extra(toml).start().await;
    if toml.contains("[redis]") {
        let started = Instant::now();
        loop {
            let (_, body) = gw.admin_get("/readyz").await;
            if body.contains("\"redis\":true") && body.contains("\"revocation_bus\":true") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "redis never up: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    gw
}

async fn api_token(gw: &TestGateway, jwt: &str) -> (String, String) {
    let r = gw.post_json("/api/auth/tokens", json!({"name": "t"}), Some(jwt)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

async fn status_with_key(gw: &TestGateway, key: &str) -> u16 {
    gw.client().get("/x", &[("x-api-key", key)]).await.status
}

/// Poll until `gw` refuses the credential; returns how long it took.
async fn until_refused(gw: &TestGateway, header: (&str, &str)) -> Duration {
    let started = Instant::now();
    loop {
        if gw.client().get("/x", &[header]).await.status == 401 {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(4), "still accepted after 4 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn replicas_share_users_tokens_and_revocations_within_a_second() {
    let pg = Postgres::start().await;
    let redis = Redis::start();
    let db = pg.fresh_db().await;
    let up = TestUpstream::start().await;
    let toml = replica_toml(&db, Some(&redis.url()), "");
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;

    // A user registered on A logs in on B; B's token works on A.
    assert_eq!(register(&a, "shared").await.status, 201);
    let session_b = login_token(&b, "shared").await;
    assert_eq!(status_with_jwt(&a, &session_b).await, 200);
    assert_eq!(register(&b, "SHARED").await.status, 409);

    // A token created on A works on B (and is now in B's memory).
    let session_a = login_token(&a, "shared").await;
    let (id, key) = api_token(&a, &session_a).await;
    assert_eq!(status_with_key(&b, &key).await, 200);
    assert_eq!(status_with_key(&b, &key).await, 200);

    // Revoked on A: refused on B within 1 s.
    let r = a
        .client()
        .call(
            "DELETE",
            &format!("/api/auth/tokens/{id}"),
            &[("authorization", &bearer(&session_a))],
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let token_took = until_refused(&b, ("x-api-key", &key)).await;

    // Logged out on A: refused on B within 1 s.
    assert_eq!(status_with_jwt(&b, &session_a).await, 200);
    let r = a
        .client()
        .call(
            "POST",
            "/api/auth/logout",
            &[("authorization", &bearer(&session_a))],
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let logout_took = until_refused(&b, ("authorization", &bearer(&session_a))).await;

    // Every session ended on B: refused on A within 1 s.
    let session_c = login_token(&a, "shared").await;
    let r = b
        .post_json("/api/auth/logout", json!({"all": true}), Some(&session_b))
        .await;
    assert_eq!(r.status, 204);
    let all_took = until_refused(&a, ("authorization", &bearer(&session_c))).await;

    println!(
        "propagation to the other replica: token revoke {token_took:?}, logout {logout_took:?}, logout-all {all_took:?}"
    );
    for took in [token_took, logout_took, all_took] {
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
}

#[tokio::test]
async fn brute_force_counters_are_shared() {
    let pg = Postgres::start().await;
    let redis = Redis::start();
    let up = TestUpstream::start().await;
    let toml = replica_toml(
        &pg.fresh_db().await,
        Some(&redis.url()),
        "[login]\nmax_failures_per_account = 3\n",
    );
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;
    register(&a, "target").await;
    assert_eq!(login(&a, "target", "wrong password!!").await.status, 401);
    assert_eq!(login(&b, "target", "wrong password!!").await.status, 401);
    assert_eq!(login(&a, "target", "wrong password!!").await.status, 401);
    let r = login(&b, "target", PASSWORD).await;
    assert_eq!(r.status, 429, "failures on A and B add up");
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn redis_dying_and_coming_back() {
    let pg = Postgres::start().await;
    let mut redis = Redis::start();
    let up = TestUpstream::start().await;
    let toml = replica_toml(&pg.fresh_db().await, Some(&redis.url()), "");
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;
    register(&a, "survivor").await;
    let session = login_token(&a, "survivor").await;
    let (_, cached_key) = api_token(&a, &session).await;
    assert_eq!(status_with_key(&b, &cached_key).await, 200);

    redis.kill();
    // /readyz says the revocation bus is gone (informational: still ready).
    let started = Instant::now();
    loop {
        let (status, body) = b.admin_get("/readyz").await;
        if body.contains("\"revocation_bus\":false") {
            assert_eq!(status, 200, "{body}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bus still reported up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // JWTs keep working, with no Redis in the path.
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(status_with_jwt(&b, &session).await, 200);
    }
    // API tokens fall back to the store (a new one is in no cache), and answer fast.
    let (fresh_id, fresh_key) = api_token(&a, &session).await;
    for _ in 0..10 {
        assert_eq!(status_with_key(&b, &fresh_key).await, 200);
    }
    assert_eq!(status_with_key(&b, &cached_key).await, 200);
    let took = started.elapsed();
    println!("31 requests with redis dead: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "requests piled up on a dead redis: {took:?}"
    );
    // Logins work without Redis (counters fall back to memory).
    assert_eq!(login(&b, "survivor", PASSWORD).await.status, 200);

    redis.restart();
    // The bus reconnects by itself; a revocation on A then reaches B within 1 s again.
    let started = Instant::now();
    loop {
        let probe = a
            .post_json("/api/auth/tokens", json!({"name": "probe"}), Some(&session))
            .await
            .json();
        let (pid, pkey) = (
            probe["id"].as_str().unwrap().to_owned(),
            probe["token"].as_str().unwrap().to_owned(),
        );
        assert_eq!(status_with_key(&b, &pkey).await, 200);
        a.client()
            .call(
                "DELETE",
                &format!("/api/auth/tokens/{pid}"),
                &[("authorization", &bearer(&session))],
                None,
            )
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if status_with_key(&b, &pkey).await == 401 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the bus never came back");
    }
    println!("bus back {:?} after redis restarted", started.elapsed());
    let (_, body) = b.admin_get("/readyz").await;
    assert!(body.contains("\"revocation_bus\":true"), "{body}");
    let r = a
        .client()
        .call(
            "DELETE",
            &format!("/api/auth/tokens/{fresh_id}"),
            &[("authorization", &bearer(&session))],
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let took = until_refused(&b, ("x-api-key", &fresh_key)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn postgres_down_means_503_for_accounts_cached_tokens_still_work_and_not_ready() {
    let mut pg = Postgres::start().await;
    let redis = Redis::start();
    let up = TestUpstream::start().await;
    let toml = replica_toml(&pg.fresh_db().await, Some(&redis.url()), "");
    let gw = replica(&up, &toml).await;
    register(&gw, "pgdown").await;
    let session = login_token(&gw, "pgdown").await;
    let (_, key) = api_token(&gw, &session).await;
    assert_eq!(status_with_key(&gw, &key).await, 200);
    assert_eq!(gw.admin_get("/readyz").await.0, 200);

    pg.stop();
    assert_eq!(login(&gw, "pgdown", PASSWORD).await.status, 503);
    let r = register(&gw, "newcomer").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (503, Some("unavailable")));
    // Cached API tokens keep working; JWTs too.
    assert_eq!(status_with_key(&gw, &key).await, 200);
    assert_eq!(status_with_jwt(&gw, &session).await, 200);
    // An unknown token cannot be checked: fail closed with 503, never forwarded.
    let before = up.seen.count();
    assert_eq!(status_with_key(&gw, &format!("agt_{}", "B".repeat(43))).await, 503);
    assert_eq!(up.seen.count(), before);
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"store\":false"), "{body}");

    pg.restart().await;
    let started = Instant::now();
    while login(&gw, "pgdown", PASSWORD).await.status != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "store never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn api_token_lookup_fails_closed_when_store_and_redis_are_both_down() {
    let mut pg = Postgres::start().await;
    let mut redis = Redis::start();
    let up = TestUpstream::start().await;
    let toml = replica_toml(&pg.fresh_db().await, Some(&redis.url()), "");
    let gw = replica(&up, &toml).await;
    register(&gw, "closed").await;
    let session = login_token(&gw, "closed").await;
    let (_, key) = api_token(&gw, &session).await;
    redis.kill();
    pg.stop();
    let before = up.seen.count();
    // Not in this replica's memory yet (created here, but never used): must go to Redis, then the store.
    let r = gw.client().get("/x", &[("x-api-key", &key)]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(up.seen.count(), before);
}

#[tokio::test]
async fn accounts_and_tokens_on_postgres_without_redis() {
    let pg = Postgres::start().await;
    let up = TestUpstream::start().await;
    let gw = replica(&up, &replica_toml(&pg.fresh_db().await, None, "")).await;
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    for key in ["redis", "revocation_bus"] {
        assert_eq!(v.get(key), Some(&serde_json::Value::Null), "{body}");
    }
    let id = register(&gw, "Pat").await.json()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(register(&gw, "ＰＡＴ").await.status, 409);
    let session = login_token(&gw, "pat").await;
    let me = gw
        .client()
        .get("/api/auth/me", &[("authorization", &bearer(&session))])
        .await
        .json();
    assert_eq!(me["uuid"], id.as_str());
    let (token_id, key) = api_token(&gw, &session).await;
    assert_eq!(status_with_key(&gw, &key).await, 200);
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some(id.as_str()));
    let r = gw
        .client()
        .call(
            "DELETE",
            &format!("/api/auth/tokens/{token_id}"),
            &[("authorization", &bearer(&session))],
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(status_with_key(&gw, &key).await, 401);
    let r = gw
        .client()
        .call(
            "POST",
            "/api/auth/logout",
            &[("authorization", &bearer(&session))],
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(status_with_jwt(&gw, &session).await, 401);
}

/// Run the operator CLI on the replicas' store and Redis; returns (stdout, stderr).
async fn cli(toml: &str, args: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[server]\nplaintext = true\n[jwt]\nsecret = \"{SECRET}\"\n{toml}"),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "authgate {args:?}: {stderr}");
    (stdout, stderr)
}

#[tokio::test]
async fn operator_cli_tokens_and_disable_reach_every_replica_within_a_second() {
    let pg = Postgres::start().await;
    let redis = Redis::start();
    let up = TestUpstream::start().await;
    let toml = replica_toml(&pg.fresh_db().await, Some(&redis.url()), "");
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;
    let user_id = register(&a, "ops").await.json()["user_id"].as_str().unwrap().to_owned();
    let session = login_token(&a, "ops").await;

    // `token create`: the token is printed once on stdout and works on both replicas.
    let (stdout, stderr) = cli(&toml, &["token", "create", "--user", "ops", "--name", "nightly"]).await;
    let key = stdout.trim().to_owned();
    assert!(key.starts_with("agt_"), "{stdout}");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("created API token "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the token id on stderr")
        .to_owned();
    assert_eq!(status_with_key(&a, &key).await, 200);
    assert_eq!(status_with_key(&b, &key).await, 200);
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some(user_id.as_str()));

    // `token revoke ID`: refused on both within 1 s (both had it cached).
    cli(&toml, &["token", "revoke", &id]).await;
    let revoke_took = until_refused(&b, ("x-api-key", &key)).await;
    assert_eq!(status_with_key(&a, &key).await, 401);

    // `user disable`: the session is refused on both within 1 s.
    assert_eq!(status_with_jwt(&b, &session).await, 200);
    cli(&toml, &["user", "disable", "ops"]).await;
    let disable_took = until_refused(&b, ("authorization", &bearer(&session))).await;
    let disable_a = until_refused(&a, ("authorization", &bearer(&session))).await;
    println!("CLI propagation: token revoke {revoke_took:?}, user disable {disable_took:?} / {disable_a:?}");
    assert!(revoke_took < Duration::from_secs(1), "{revoke_took:?}");
    assert!(disable_took < Duration::from_secs(1), "{disable_took:?}");
}

/// `/metrics` of `gw` as series → value.
async fn scrape(gw: &TestGateway) -> std::collections::HashMap<String, f64> {
    let (_, text) = gw.admin_get("/metrics").await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Poll until `check` holds; returns how long it took.
async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// With Redis gone, B learns what A changed from the store's change log alone, within one sync
/// interval, by reading only the changes (no full reload): a logout, a log-out-everywhere, a
/// password change (whose own session stays valid on B too) and a deleted API token. An idle B
/// then reads almost nothing per sync.
#[tokio::test]
async fn changes_made_while_the_bus_is_down_arrive_through_the_change_log() {
    let pg = Postgres::start().await;
    let mut redis = Redis::start();
    let up = TestUpstream::start().await;
    let toml = format!(
        "[store]\nurl = \"{}\"\nsync_interval = \"1s\"\n[redis]\nurl = \"{}\"\ntimeout = \"1s\"\n",
        pg.fresh_db().await,
        redis.url()
    );
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;
    for name in ["leaver", "everywhere", "changer"] {
        assert_eq!(register(&a, name).await.status, 201);
    }
    let leaver = login_token(&a, "leaver").await;
    let everywhere = login_token(&a, "everywhere").await;
    let changer_keeps = login_token(&a, "changer").await;
    let changer_other = login_token(&a, "changer").await;
    let (key_id, key) = api_token(&a, &changer_keeps).await;
    for jwt in [&leaver, &everywhere, &changer_keeps, &changer_other] {
        assert_eq!(status_with_jwt(&b, jwt).await, 200);
    }
    assert_eq!(status_with_key(&b, &key).await, 200);

    redis.kill();
    within(Duration::from_secs(5), "B sees the bus gone", async || {
        b.admin_get("/readyz").await.1.contains("\"revocation_bus\":false")
    })
    .await;
    let before = scrape(&b).await;
    let auth = |jwt: &str| [("authorization", bearer(jwt))];
    let call = async |path: &str, jwt: &str, body: Option<serde_json::Value>| {
        let [(name, value)] = auth(jwt);
        let mut headers = vec![(name, value.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        a.client()
            .call(
                if path.starts_with("/api/auth/tokens/") {
                    "DELETE"
                } else {
                    "POST"
                },
                path,
                &headers,
                body.map(|b| b.to_string().into_bytes()),
            )
            .await
            .status
    };
    assert_eq!(call("/api/auth/logout", &leaver, None).await, 204);
    assert_eq!(
        call("/api/auth/logout", &everywhere, Some(json!({"all": true}))).await,
        204
    );
    let new_password = "a brand new horse battery";
    let change = json!({"current_password": PASSWORD, "new_password": new_password});
    assert_eq!(call("/api/auth/password", &changer_keeps, Some(change)).await, 204);
    assert_eq!(
        call(&format!("/api/auth/tokens/{key_id}"), &changer_keeps, None).await,
        204
    );

    // One sync interval is 1 s; allow for a sync that had just begun.
    let limit = Duration::from_millis(2500);
    for (what, jwt) in [
        ("logout", &leaver),
        ("logout-all", &everywhere),
        ("password change", &changer_other),
    ] {
        let took = within(limit, what, async || status_with_jwt(&b, jwt).await == 401).await;
        println!("{what} reached B without redis in {took:?}");
    }
    within(limit, "token deletion", async || status_with_key(&b, &key).await == 401).await;
    assert_eq!(
        status_with_jwt(&b, &changer_keeps).await,
        200,
        "the session that changed the password stays valid on B"
    );
    let after = scrape(&b).await;
    let full = r#"authgate_revocation_syncs_total{kind="full"}"#;
    let incremental = r#"authgate_revocation_syncs_total{kind="incremental"}"#;
    assert_eq!(after[full], before[full], "no full reload was needed");
    assert!(after[incremental] > before[incremental]);

    // Idle now: each sync reads only what changed since its watermark.
    let idle_from = scrape(&b).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_to = scrape(&b).await;
    let syncs = idle_to[incremental] - idle_from[incremental];
    let rows = idle_to["authgate_revocation_sync_rows_total"] - idle_from["authgate_revocation_sync_rows_total"];
    assert!(syncs >= 2.0, "{syncs} syncs in 3 s");
    assert!(rows / syncs < 100.0, "{rows} rows over {syncs} idle syncs");
    println!("idle: {rows} rows over {syncs} syncs");
}

#[tokio::test]
async fn a_browser_session_works_on_every_replica_and_ends_on_all_within_a_second() {
    let pg = Postgres::start().await;
    let redis = Redis::start();
    let db = pg.fresh_db().await;
    let up = TestUpstream::start().await;
    let toml = replica_toml(&db, Some(&redis.url()), "");
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;
    let (user_id, _) = session(&a, "browser").await;

    // Begun on a, used on b (found through Redis or the store), then on a again.
    let mut jar = signed_in(&a, "browser").await;
    let cookie = format!("__Host-authgate={}", jar.session.clone().unwrap());
    for gw in [&b, &a, &b] {
        let r = gw.client().get("/x", &[("cookie", cookie.as_str())]).await;
        assert_eq!(r.status, 200);
        assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some(user_id.as_str()));
    }
    // Signed out on a: refused on b within a second.
    let r = submit(&a, &mut jar, "/_auth/sign-out", &[]).await;
    assert_eq!(r.status, 200);
    let took = until_refused(&b, ("cookie", cookie.as_str())).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Sign out everywhere on b ends a's session too, within a second.
    let jar_a = signed_in(&a, "browser").await;
    let cookie_a = format!("__Host-authgate={}", jar_a.session.clone().unwrap());
    assert_eq!(a.client().get("/x", &[("cookie", cookie_a.as_str())]).await.status, 200);
    let mut jar_b = signed_in(&b, "browser").await;
    let r = submit(&b, &mut jar_b, "/_auth/account/sign-out-everywhere", &[]).await;
    assert_eq!(r.status, 200);
    let took = until_refused(&a, ("cookie", cookie_a.as_str())).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn an_ended_session_reaches_a_replica_without_redis_through_the_change_log() {
    let pg = Postgres::start().await;
    let db = pg.fresh_db().await;
    let up = TestUpstream::start().await;
    let toml = replica_toml(&db, None, "").replace("sync_interval = \"5s\"", "sync_interval = \"1s\"");
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;
    session(&a, "nobus").await;
    let mut jar = signed_in(&a, "nobus").await;
    let cookie = format!("__Host-authgate={}", jar.session.clone().unwrap());
    assert_eq!(
        b.client().get("/x", &[("cookie", cookie.as_str())]).await.status,
        200,
        "cached on b now"
    );
    assert_eq!(submit(&a, &mut jar, "/_auth/sign-out", &[]).await.status, 200);
    let took = within(
        Duration::from_secs(4),
        "the ended session is refused on b",
        async || b.client().get("/x", &[("cookie", cookie.as_str())]).await.status == 401,
    )
    .await;
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}: one sync interval plus slack"
    );
}

#[tokio::test]
async fn a_single_sign_on_session_works_on_both_replicas_and_back_channel_logout_reaches_both() {
    use common::oidc::{Agent, OidcAccount, OidcClient, Provider, ProviderConfig};
    assert!(
        common::oidc::available(),
        "Node.js or tests/oidc/node_modules missing: run scripts/test"
    );
    let pg = Postgres::start().await;
    let redis = Redis::start();
    let db = pg.fresh_db().await;
    let up = TestUpstream::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let pw = "password-at-the-provider";
    let p = Provider::start(
        ProviderConfig::new()
            .client(OidcClient::for_gateway(
                "gw",
                "replica-client-secret-0123",
                port,
                "corp",
            ))
            .account(OidcAccount::new("sub-r", "rita", pw).email("rita@corp.example", true))
            .backchannel_ca(&dir.path().join("cert.pem")),
    );
    let toml = format!(
        "{}[[oidc.providers]]\nid = \"corp\"\nissuer = \"{}\"\nclient_id = \"gw\"\nclient_secret = \"replica-client-secret-0123\"\n",
        replica_toml(&db, Some(&redis.url()), ""),
        p.issuer()
    );
    let a = TestGateway::builder(&up.url())
        .listener(listener)
        .dir(dir)
        .extra(&toml)
        .start()
        .await;
    let b = replica(&up, &toml).await;
    for gw in [&a, &b] {
        within(Duration::from_secs(10), "provider loaded", async || {
            gw.admin_get("/readyz").await.1.contains(r#""corp":true"#)
        })
        .await;
    }
    let mut agent = Agent::for_gateway(&a);
    let start = Agent::gateway_url(&a, "/_auth/oidc/corp/start?rd=%2F");
    let r = agent.login_flow(&start, "rita", pw).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = set_cookie(&r, "__Host-authgate").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    logscan::cookies(&cookie);
    let mut users = Vec::new();
    for gw in [&a, &b] {
        assert_eq!(gw.client().get("/x", &[("cookie", cookie.as_str())]).await.status, 200);
        users.push(up.seen.last().one("x-user-id").unwrap());
    }
    assert_eq!(users[0], users[1]);
    // The provider tells replica a; b refuses the session within a second, over the bus.
    let sent = p.backchannel_logout("sub-r").await;
    assert!(sent.iter().any(|s| s["ok"] == true), "{sent:?}");
    let took = until_refused(&b, ("cookie", cookie.as_str())).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(a.client().get("/x", &[("cookie", cookie.as_str())]).await.status, 401);
}

/// A role given on one replica, and a group taken away on the other, reach both within a second
/// (the store sync is 5 s here: it went over the bus). What the backend saw says who passed.
#[tokio::test]
async fn role_and_group_changes_reach_every_replica_within_a_second() {
    let pg = Postgres::start().await;
    let redis = Redis::start();
    let db = pg.fresh_db().await;
    let up = TestUpstream::start().await;
    let rules = "[policy]\ndefault = \"deny\"\n[[policy.rules]]\npaths = [\"/api/admin/*\"]\nallow = [\"role:admin\"]\n\
                 [[policy.rules]]\npaths = [\"/api/research/*\"]\nallow = [\"group:research\"]\n";
    let toml = replica_toml(&db, Some(&redis.url()), rules);
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;
    let (user_id, jwt) = session(&a, "policyuser").await;
    let auth = bearer(&jwt);
    let status =
        async |gw: &TestGateway, path: &str| gw.client().get(path, &[("authorization", auth.as_str())]).await.status;
    // Both replicas hold "role user, no groups" now.
    for gw in [&a, &b] {
        assert_eq!(status(gw, "/api/admin/x").await, 403);
        assert_eq!(status(gw, "/api/research/x").await, 403);
    }
    assert_eq!(up.seen.count(), 0);

    let accounts = a.gateway.accounts();
    let user = accounts.find_user("policyuser").await.unwrap();
    assert!(accounts.set_role(&user, authgate::policy::Role::Admin).await.unwrap());
    assert!(accounts.set_group(&user, "research", true).await.unwrap().1);
    let took = within(Duration::from_secs(1), "role on b", async || {
        status(&b, "/api/admin/x").await == 200 && status(&b, "/api/research/x").await == 200
    })
    .await;
    eprintln!("role and group reached b in {took:?}");
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some(user_id.as_str()));

    // Taken away on b: a refuses within a second.
    assert_eq!(status(&a, "/api/research/x").await, 200);
    let (changed, told) = b.gateway.accounts().set_group(&user, "research", false).await.unwrap();
    assert!(changed && told);
    within(Duration::from_secs(1), "group removal on a", async || {
        status(&a, "/api/research/x").await == 403
    })
    .await;
    let before = up.seen.count();
    assert_eq!(status(&a, "/api/research/x").await, 403);
    assert_eq!(up.seen.count(), before, "a refused request reached the backend");
}

/// A read-scoped API token on two replicas (PostgreSQL, Redis): it reads where its owner's group
/// lets them on both, and only reads; when the owner loses the group on one replica, the token
/// loses the route on both within a second (the store sync is 5 s: it went over the bus). The
/// second replica first reads the token from Redis, scopes and all.
#[tokio::test]
async fn a_scoped_tokens_access_follows_its_owners_groups_on_every_replica() {
    let pg = Postgres::start().await;
    let redis = Redis::start();
    let db = pg.fresh_db().await;
    let up = TestUpstream::start().await;
    let rules = "[policy]\ndefault = \"deny\"\n[[policy.rules]]\npaths = [\"/api/research/*\"]\n\
                 allow = [\"group:research\"]\ndescription = \"research\"\n";
    let toml = replica_toml(&db, Some(&redis.url()), rules);
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;
    let (user_id, jwt) = session(&a, "scopeduser").await;
    let accounts = a.gateway.accounts();
    let user = accounts.find_user("scopeduser").await.unwrap();
    assert!(accounts.set_group(&user, "research", true).await.unwrap().1);
    let r = a
        .post_json(
            "/api/auth/tokens",
            json!({"name": "ro", "scopes": ["read"]}),
            Some(&jwt),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["scopes"], json!(["read"]));
    let read = bearer(r.json()["token"].as_str().unwrap());
    let call = async |gw: &TestGateway, method: &str| {
        gw.client()
            .call(method, "/api/research/x", &[("authorization", read.as_str())], None)
            .await
            .status
    };
    for gw in [&a, &b] {
        within(Duration::from_secs(1), "the group on both", async || {
            call(gw, "GET").await == 200
        })
        .await;
        let seen = up.seen.last();
        assert_eq!(
            (seen.method.as_str(), seen.one("x-user-id")),
            ("GET", Some(user_id.clone()))
        );
        let before = up.seen.count();
        for method in ["POST", "PUT", "DELETE"] {
            assert_eq!(call(gw, method).await, 403, "{method}");
        }
        assert_eq!(up.seen.count(), before, "a refused write reached the backend");
    }
    let lookups = scrape(&b).await;
    assert_eq!(
        lookups.get(r#"authgate_api_token_lookups_total{result="redis_hit"}"#),
        Some(&1.0),
        "{lookups:?}"
    );

    // Taken away on b: both replicas refuse the token within a second.
    let (changed, told) = b.gateway.accounts().set_group(&user, "research", false).await.unwrap();
    assert!(changed && told);
    for (name, gw) in [("b", &b), ("a", &a)] {
        let took = within(Duration::from_secs(1), name, async || call(gw, "GET").await == 403).await;
        eprintln!("the group's removal reached {name} in {took:?}");
    }
    let before = up.seen.count();
    for gw in [&a, &b] {
        assert_eq!(call(gw, "GET").await, 403);
    }
    assert_eq!(up.seen.count(), before, "a refused request reached the backend");
}

#[tokio::test]
async fn an_openid_code_issued_by_one_replica_is_redeemed_once_on_any() {
    let pg = Postgres::start().await;
    let db = pg.fresh_db().await;
    let up = TestUpstream::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key = op_signing_key(keys.path(), "ES256");
    let secret = "replica-client-secret-0123456789abcdef";
    let extra = format!(
        "[oidc]\nissuer = \"https://gw.example\"\nsigning_key = \"{}\"\nsigning_algorithm = \"ES256\"\n\
         [[oidc.clients]]\nclient_id = \"rp\"\nclient_secret = \"{secret}\"\nredirect_uris = [\"https://rp.example/cb\"]\n\
         trusted = true\nrequire_pkce = false\n",
        key.display()
    );
    let toml = replica_toml(&db, None, &extra);
    let a = replica(&up, &toml).await;
    let b = replica(&up, &toml).await;
    session(&a, "oidc-user").await;
    let mut jar = signed_in(&a, "oidc-user").await;
    let r = navigate(
        &a,
        &mut jar,
        "/_auth/openid/authorize?response_type=code&client_id=rp&redirect_uri=https%3A%2F%2Frp.example%2Fcb&scope=openid&nonce=n1",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.headers.get("location").unwrap().to_str().unwrap().to_owned();
    let code = form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&client_id=rp&client_secret={secret}"
    );
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let on_b = b
        .client()
        .call("POST", "/_auth/openid/token", &headers, Some(form.clone().into_bytes()))
        .await;
    assert_eq!(on_b.status, 200, "{}", on_b.text());
    assert!(on_b.json()["id_token"].is_string());
    let again_on_a = a
        .client()
        .call("POST", "/_auth/openid/token", &headers, Some(form.into_bytes()))
        .await;
    assert_eq!(again_on_a.status, 400);
    assert_eq!(again_on_a.json()["error"], "invalid_grant");
}
