//! Accounts as a client makes them through the JSON API: register, log in, both at once, and
//! what a protected path answers to the token. Every account has the password [`PASSWORD`].

use serde_json::json;

use super::client::Reply;
use super::gateway::TestGateway;
use super::tokens::bearer;

pub const PASSWORD: &str = "correct horse battery";

/// The email [`register`] and [`session`] give an account.
pub const EMAIL: &str = "user@example.com";

/// Register `username` with [`PASSWORD`] and [`EMAIL`]; the answer, whatever it is.
pub async fn register(gw: &TestGateway, username: &str) -> Reply {
    register_with_email(gw, username, EMAIL).await
}

/// Register `username` with [`PASSWORD`] and `email`; the answer, whatever it is.
pub async fn register_with_email(gw: &TestGateway, username: &str, email: &str) -> Reply {
    gw.post_json(
        "/api/auth/register",
        json!({"username": username, "password": PASSWORD, "email": email}),
        None,
    )
    .await
}

/// Log in; the answer, whatever it is.
pub async fn login(gw: &TestGateway, username: &str, password: &str) -> Reply {
    gw.post_json(
        "/api/auth/login",
        json!({"username": username, "password": password}),
        None,
    )
    .await
}

/// Log in with [`PASSWORD`], which must succeed; the access token (a JWT).
pub async fn login_token(gw: &TestGateway, username: &str) -> String {
    let r = login(gw, username, PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"].as_str().unwrap().to_owned()
}

/// Register `username` (with [`EMAIL`]) and log in, both of which must succeed; (user id, access
/// token).
pub async fn session(gw: &TestGateway, username: &str) -> (String, String) {
    session_with_email(gw, username, EMAIL).await
}

/// [`session`] for an account with this `email`.
pub async fn session_with_email(gw: &TestGateway, username: &str, email: &str) -> (String, String) {
    let r = register_with_email(gw, username, email).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["user_id"].as_str().unwrap().to_owned();
    (id, login_token(gw, username).await)
}

/// The status a protected path (`/x`) answers to `Authorization: Bearer <jwt>`.
pub async fn status_with_jwt(gw: &TestGateway, jwt: &str) -> u16 {
    gw.client().get("/x", &[("authorization", &bearer(jwt))]).await.status
}
