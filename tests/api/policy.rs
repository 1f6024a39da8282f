//! Policies end to end: role, group and user rules over HTTP/1.1 and HTTP/2, first match, default
//! deny, public rules, path confusion against a deny, and a role change taking effect within a
//! second. Each test asserts what the backend received, or that it received nothing.

use std::time::{Duration, Instant};

use crate::common::*;
use authgate::policy::Role;

const RULES: &str = r#"
[policy]
default = "deny"
[[policy.rules]]
paths = ["/api/admin/*"]
allow = ["role:admin"]
description = "admins"
[[policy.rules]]
paths = ["/api/research/*"]
allow = ["group:research"]
deny = ["group:contractors"]
description = "research"
[[policy.rules]]
methods = ["GET", "HEAD"]
paths = ["/api/collections/*"]
allow = ["authenticated"]
description = "read collections"
[[policy.rules]]
paths = ["/api/collections/*"]
allow = ["role:admin"]
description = "write collections"
[[policy.rules]]
paths = ["/status", "/open/*"]
allow = ["public"]
description = "status page"
"#;

/// The user rule names a user id, known only once the user exists: a second gateway on the same
/// store takes it.
fn user_rule(id: &str) -> String {
    format!("[[policy.rules]]\npaths = [\"/api/mine/*\"]\nallow = [\"user:{id}\"]\ndescription = \"owner\"\n")
}

async fn set_role(gw: &TestGateway, name: &str, role: Role) {
    let accounts = gw.gateway.accounts();
    let user = accounts.find_user(name).await.unwrap();
    accounts.set_role(&user, role).await.unwrap();
}

async fn add_group(gw: &TestGateway, name: &str, group: &str) {
    let accounts = gw.gateway.accounts();
    let user = accounts.find_user(name).await.unwrap();
    assert!(accounts.set_group(&user, group, true).await.unwrap().0);
}

/// GET `path` with the JWT over h1 and h2: the statuses, and what the backend saw of each.
async fn both(gw: &TestGateway, up: &TestUpstream, path: &str, jwt: &str) -> Vec<(u16, Option<Seen>)> {
    let mut out = Vec::new();
    for client in [gw.client(), gw.h2_client()] {
        let before = up.seen.count();
        let r = client.get(path, &[("authorization", &bearer(jwt))]).await;
        let seen = (up.seen.count() > before).then(|| up.seen.last());
        if r.status == 403 {
            assert_eq!(r.json()["error"], "forbidden", "{path}: {}", r.text());
        }
        out.push((r.status, seen));
    }
    out
}

/// Every attempt was forwarded with this user's id.
fn forwarded_as(results: &[(u16, Option<Seen>)], id: &str, path: &str) {
    for (status, seen) in results {
        assert_eq!(*status, 200, "{path}");
        let seen = seen
            .as_ref()
            .unwrap_or_else(|| panic!("{path}: the backend saw nothing"));
        assert_eq!(seen.target, path);
        assert_eq!(seen.one("x-user-id").as_deref(), Some(id), "{path}");
    }
}

/// Every attempt was refused with 403 and the backend saw nothing.
fn refused(results: &[(u16, Option<Seen>)], path: &str) {
    for (status, seen) in results {
        assert_eq!(*status, 403, "{path}");
        assert!(seen.is_none(), "{path} reached the backend");
    }
}

#[tokio::test]
async fn role_group_and_user_rules_decide_over_h1_and_h2() {
    let (up, gw) = pair(RULES).await;
    let (alice, alice_jwt) = session(&gw, "alice").await;
    let (bob, bob_jwt) = session(&gw, "bob").await;
    let (carol, carol_jwt) = session(&gw, "carol").await;
    set_role(&gw, "alice", Role::Admin).await;
    add_group(&gw, "bob", "research").await;
    add_group(&gw, "carol", "research").await;
    add_group(&gw, "carol", "contractors").await;

    forwarded_as(
        &both(&gw, &up, "/api/admin/users", &alice_jwt).await,
        &alice,
        "/api/admin/users",
    );
    refused(&both(&gw, &up, "/api/admin/users", &bob_jwt).await, "/api/admin/users");
    forwarded_as(
        &both(&gw, &up, "/api/research/x", &bob_jwt).await,
        &bob,
        "/api/research/x",
    );
    refused(&both(&gw, &up, "/api/research/x", &alice_jwt).await, "/api/research/x");
    // Deny overrides allow: carol is in research, and a contractor.
    refused(&both(&gw, &up, "/api/research/x", &carol_jwt).await, "/api/research/x");
    forwarded_as(
        &both(&gw, &up, "/api/collections/1", &carol_jwt).await,
        &carol,
        "/api/collections/1",
    );

    // The user rule, on a second gateway over the same store.
    let extra = format!("{RULES}{}", user_rule(&bob));
    let gw2 = TestGateway::builder(&up.url())
        .extra(&extra)
        .dir(gw.dir.clone())
        .start()
        .await;
    forwarded_as(&both(&gw2, &up, "/api/mine/a", &bob_jwt).await, &bob, "/api/mine/a");
    refused(&both(&gw2, &up, "/api/mine/a", &alice_jwt).await, "/api/mine/a");

    // `/api/auth/me` says the role and groups (RAG Modulo reads `role`).
    let me = gw
        .client()
        .get("/api/auth/me", &[("authorization", &bearer(&carol_jwt))])
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["role"], "user");
    assert_eq!(me.json()["groups"], serde_json::json!(["contractors", "research"]));
    let me = gw
        .client()
        .get("/api/auth/me", &[("authorization", &bearer(&alice_jwt))])
        .await;
    assert_eq!(me.json()["role"], "admin");
}

#[tokio::test]
async fn the_first_matching_rule_decides_and_methods_narrow_it() {
    let (up, gw) = pair(RULES).await;
    let (_, jwt) = session(&gw, "dana").await;
    let (admin, admin_jwt) = session(&gw, "root").await;
    set_role(&gw, "root", Role::Admin).await;
    let auth = bearer(&jwt);
    // GET matches "read collections" first; DELETE falls to "write collections", admins only.
    let r = gw.client().get("/api/collections/7", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.last().method, "GET");
    let before = up.seen.count();
    for client in [gw.client(), gw.h2_client()] {
        let r = client
            .call("DELETE", "/api/collections/7", &[("authorization", &auth)], None)
            .await;
        assert_eq!(r.status, 403);
        assert_eq!(r.json()["error"], "forbidden");
    }
    assert_eq!(up.seen.count(), before, "a refused DELETE reached the backend");
    let r = gw
        .client()
        .call(
            "DELETE",
            "/api/collections/7",
            &[("authorization", &bearer(&admin_jwt))],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = up.seen.last();
    assert_eq!((seen.method.as_str(), seen.one("x-user-id")), ("DELETE", Some(admin)));
    // Each decision is counted under its rule.
    let (_, metrics) = gw.admin_get("/metrics").await;
    for line in [
        r#"authgate_policy_decisions_total{rule="read collections",decision="allow"} 1"#,
        r#"authgate_policy_decisions_total{rule="write collections",decision="deny"} 2"#,
        r#"authgate_policy_decisions_total{rule="write collections",decision="allow"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn the_default_deny_refuses_what_no_rule_names() {
    let (up, gw) = pair(RULES).await;
    let (_, jwt) = session(&gw, "erin").await;
    set_role(&gw, "erin", Role::Admin).await;
    refused(&both(&gw, &up, "/api/unlisted", &jwt).await, "/api/unlisted");
    // Without a credential it is still 401 (who first, then may they).
    let r = gw.client().get("/api/unlisted", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.seen.count(), 0);
    // The default default (`authenticated`) is today's behaviour.
    let (up2, gw2) = pair("").await;
    let (id, jwt2) = session(&gw2, "erin").await;
    forwarded_as(&both(&gw2, &up2, "/api/unlisted", &jwt2).await, &id, "/api/unlisted");
}

#[tokio::test]
async fn public_rules_and_public_paths_forward_without_a_credential_or_an_identity() {
    let (up, gw) = pair(RULES).await;
    let (_, jwt) = session(&gw, "frank").await;
    for path in ["/status", "/open/a/b", "/api/health", "/docs/x"] {
        for client in [gw.client(), gw.h2_client()] {
            let r = client.get(path, &[("x-user-id", "forged")]).await;
            assert_eq!(r.status, 200, "{path}");
            let seen = up.seen.last();
            assert_eq!(seen.target, path);
            assert_eq!(seen.one("x-user-id"), None, "{path}");
        }
    }
    // A credential on a public route is not turned into an identity either.
    let r = gw.client().get("/status", &[("authorization", &bearer(&jwt))]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.last().one("x-user-id"), None);
    assert_eq!(up.seen.last().one("authorization"), None);
    // `public` opens the exact path only: a variant of it is not public.
    let r = gw.client().get("//status", &[]).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn path_confusion_against_a_deny_never_reaches_the_backend() {
    let (up, gw) = pair(
        r#"
[[policy.rules]]
paths = ["/api/admin/*"]
allow = ["authenticated"]
deny = ["authenticated"]
description = "nobody"
"#,
    )
    .await;
    let (_, jwt) = session(&gw, "gina").await;
    let auth = bearer(&jwt);
    for path in [
        "/api/admin/x",
        "/api/admin",
        "/api/admin/../admin/x",
        "/api/x/../admin/x",
        "/api/%2e%2e/api/admin/x",
        "/api/admin/%2e%2e/x",
        "/api/%61dmin/x",
        "/api/admin;jsessionid=1/x",
        "/api/admin%3b/x",
        "//api/admin/x",
        "/api//admin/x",
        "/api/admin%2fx",
    ] {
        for client in [gw.client(), gw.h2_client()] {
            let r = client.get(path, &[("authorization", &auth)]).await;
            assert!(r.status == 400 || r.status == 403, "{path}: {}", r.status);
        }
    }
    assert_eq!(
        up.seen.count(),
        0,
        "{:?}",
        up.seen.take().iter().map(|s| s.target.clone()).collect::<Vec<_>>()
    );
    // Beside the rule, the same caller is forwarded.
    let r = gw.client().get("/api/other", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen.count(), 1);
}

#[tokio::test]
async fn a_role_change_takes_effect_within_a_second() {
    let (up, gw) = pair(RULES).await;
    let (id, jwt) = session(&gw, "hank").await;
    let auth = bearer(&jwt);
    // Refused first (and the refusal is what is held in memory now).
    assert_eq!(
        gw.client()
            .get("/api/admin/x", &[("authorization", &auth)])
            .await
            .status,
        403
    );
    set_role(&gw, "hank", Role::Admin).await;
    let started = Instant::now();
    loop {
        let r = gw.client().get("/api/admin/x", &[("authorization", &auth)]).await;
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still {} after a second",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some(id.as_str()));
    // And back: the same token loses the route.
    set_role(&gw, "hank", Role::User).await;
    let started = Instant::now();
    let before = up.seen.count();
    loop {
        let r = gw.client().get("/api/admin/x", &[("authorization", &auth)]).await;
        if r.status == 403 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still {} after a second",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only requests before the change was seen may have passed.
    assert!(up.seen.count() - before <= 1);
}

#[tokio::test]
async fn a_group_change_reaches_another_replica_through_the_change_log_within_a_second() {
    // Two gateways on one store, no Redis: the change-log row (kind `access`) carries it.
    let (up, gw) = pair(RULES).await;
    let other = TestGateway::builder(&up.url())
        .extra(RULES)
        .dir(gw.dir.clone())
        .start()
        .await;
    let (id, jwt) = session(&gw, "ivy").await;
    let auth = bearer(&jwt);
    assert_eq!(
        other
            .client()
            .get("/api/research/x", &[("authorization", &auth)])
            .await
            .status,
        403
    );
    add_group(&gw, "ivy", "research").await;
    let started = Instant::now();
    loop {
        let r = other.client().get("/api/research/x", &[("authorization", &auth)]).await;
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still {} after a second",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.seen.last().one("x-user-id").as_deref(), Some(id.as_str()));
    assert_eq!(up.seen.count(), 1, "nothing passed before the change");
}
