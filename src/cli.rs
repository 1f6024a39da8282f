//! Operator commands that work on the configured store or on key files, without serving:
//! `user add|list|disable|enable` and `keys generate`.
//!
//! The rule this module keeps: a password is read from stdin or generated and shown once, never
//! taken from the command line (where `ps` and shell history would keep it), and key files are
//! written with mode 0600.

use std::io::BufRead;
use std::path::Path;

use uuid::Uuid;

use crate::auth::jwt::{JwtAlgorithm, now_secs};
use crate::auth::password::Passwords;
use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::username::normalize as normalize_username;

pub async fn open_store(config: &Config) -> Result<Store, String> {
    Store::connect(config.store.url.expose())
        .await
        .map_err(|e| format!("store.url: cannot open the store: {e}"))
}

fn store_err(e: StoreError) -> String {
    format!("store: {e}")
}

fn random_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

/// `authgate user add NAME --email E [--password-stdin]`.
pub async fn user_add(config: &Config, username: &str, email: &str, password_stdin: bool) -> Result<(), String> {
    let (given, norm) = normalize_username(username)
        .map_err(|_| "username: must be 1 to 64 letters, digits or symbols, without spaces".to_owned())?;
    if !email_address::EmailAddress::is_valid(email) {
        return Err("--email: not a valid email address".into());
    }
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (random_password(), true)
    };
    let chars = password.chars().count();
    if !(12..=128).contains(&chars) {
        return Err("password: must be 12 to 128 characters".into());
    }
    let store = open_store(config).await?;
    let passwords = Passwords::with_concurrency(config.password.params, 1).map_err(|e| e.to_string())?;
    let hash = passwords.hash(password.clone()).await.map_err(|e| e.to_string())?;
    let user = store.add_user(&given, &norm, email, &hash).await.map_err(|e| match e {
        StoreError::Conflict => format!("user `{given}` already exists, or looks like an existing name"),
        other => store_err(other),
    })?;
    println!("created user {} ({})", user.username, user.id);
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}

/// `authgate user list`.
pub async fn user_list(config: &Config) -> Result<(), String> {
    let store = open_store(config).await?;
    let users = store.list_users().await.map_err(store_err)?;
    println!("{:<36}  {:<24}  {:<32}  status", "id", "username", "email");
    for u in users {
        let status = if u.disabled { "disabled" } else { "active" };
        println!("{:<36}  {:<24}  {:<32}  {status}", u.id, u.username, u.email);
    }
    Ok(())
}

/// `authgate user disable|enable NAME` (by username or id). Running gateways pick it up at their
/// next store sync (`store.sync_interval`).
pub async fn user_set_disabled(config: &Config, who: &str, disabled: bool) -> Result<(), String> {
    let store = open_store(config).await?;
    let user = find_user(&store, who).await?;
    store.set_disabled(&user.id, disabled).await.map_err(store_err)?;
    // Running replicas: at once through the Redis bus when there is one, else at their next store sync.
    publish(
        config,
        crate::store::cache::Event::User {
            id: user.id.clone(),
            disabled,
            min_epoch: user.token_epoch,
            exempt_jti: None,
        },
    )
    .await?;
    tracing::info!(target: "authgate::audit", event = if disabled { "user_disabled" } else { "user_enabled" }, user_id = %user.id);
    println!(
        "{} user {} ({})",
        if disabled { "disabled" } else { "enabled" },
        user.username,
        user.id
    );
    Ok(())
}

/// A user by username, else by id.
async fn find_user(store: &Store, who: &str) -> Result<crate::store::User, String> {
    let by_name = match normalize_username(who) {
        Ok((_, norm)) => store.user_by_norm(&norm).await.map_err(store_err)?,
        Err(_) => None,
    };
    match by_name {
        Some(u) => Ok(u),
        None => store
            .user_by_id(who)
            .await
            .map_err(store_err)?
            .ok_or_else(|| format!("--user: no user `{who}` (see `authgate user list`)")),
    }
}

/// Tell running gateways through the Redis bus, when there is one.
async fn publish(config: &Config, event: crate::store::cache::Event) -> Result<(), String> {
    if let Some(r) = &config.redis {
        let redis =
            crate::store::cache::Redis::new(r.url.expose(), r.timeout, r.token_ttl).map_err(|e| e.to_string())?;
        let connected = redis.connect().await;
        if let crate::store::cache::Event::Token { hash } = &event
            && connected
        {
            redis.del_token(hash).await;
        }
        if !(connected && redis.publish(&event).await) {
            eprintln!("warning: redis unavailable; running gateways apply this at their next store sync");
        }
    }
    Ok(())
}

/// `authgate token create --user U --name N [--expires-in SECS]`: the token goes to stdout once.
pub async fn token_create(config: &Config, who: &str, name: &str, expires_in: Option<u64>) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err("--name: must be 1 to 100 characters".into());
    }
    if let Some(n) = expires_in
        && !(1..=315_360_000).contains(&n)
    {
        return Err("--expires-in: must be 1 to 315360000 seconds".into());
    }
    let store = open_store(config).await?;
    let user = find_user(&store, who).await?;
    if user.disabled {
        return Err(format!(
            "--user: `{}` is disabled (`authgate user enable` first)",
            user.username
        ));
    }
    let token = crate::auth::api_token::generate();
    let now = now_secs() as i64;
    let row = store
        .create_api_token(&crate::store::NewApiToken {
            id: &Uuid::new_v4().to_string(),
            user_id: &user.id,
            name,
            token_hash: &crate::auth::api_token::hash(&token),
            created_at: now,
            expires_at: expires_in.map(|n| now + n as i64),
        })
        .await
        .map_err(store_err)?;
    tracing::info!(target: "authgate::audit", event = "token_created", user_id = %user.id, token_id = %row.id, via = "cli");
    eprintln!(
        "created API token {} ({name}) for {}; it is shown once:",
        row.id, user.username
    );
    println!("{token}");
    Ok(())
}

/// `authgate token revoke ID`.
pub async fn token_revoke(config: &Config, id: &str) -> Result<(), String> {
    let store = open_store(config).await?;
    let (user_id, hash) = store
        .delete_api_token_any_user(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| format!("no API token with id `{id}`"))?;
    publish(config, crate::store::cache::Event::Token { hash }).await?;
    tracing::info!(target: "authgate::audit", event = "token_revoked", user_id = %user_id, token_id = id, via = "cli");
    println!("revoked API token {id} (user {user_id})");
    Ok(())
}

/// `authgate keys generate --algorithm ALG [--kid KID] [--out DIR]`.
pub fn keys_generate(algorithm: &str, kid: Option<&str>, out: &Path) -> Result<(), String> {
    let alg: JwtAlgorithm = algorithm
        .parse()
        .map_err(|_| format!("--algorithm: `{algorithm}` is not one of HS256, HS384, HS512, RS256, ES256, EdDSA"))?;
    let kid = kid.map(str::to_owned).unwrap_or_else(|| {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        format!("{}-{}", alg.as_str().to_ascii_lowercase(), now[..10].replace('-', ""))
    });
    if kid.is_empty()
        || !kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("--kid: use A-Z a-z 0-9 . _ - only".into());
    }
    let (private, public) = crate::auth::keys::generate(alg).map_err(|e| e.to_string())?;
    match public {
        None => {
            println!("# add to gateway.toml (keep this secret out of git; or set it through the environment)");
            println!("[[jwt.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\nsecret = \"{private}\"\nsigning = true");
        }
        Some(public) => {
            std::fs::create_dir_all(out).map_err(|e| format!("--out: cannot create {}: {e}", out.display()))?;
            let key_path = out.join(format!("{kid}.pem"));
            let pub_path = out.join(format!("{kid}.pub.pem"));
            if key_path.exists() {
                return Err(format!("{} exists; choose another --kid", key_path.display()));
            }
            crate::tls::write_private(&key_path, private.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
            std::fs::write(&pub_path, public).map_err(|e| format!("cannot write {}: {e}", pub_path.display()))?;
            println!(
                "wrote {} (private, mode 0600) and {}",
                key_path.display(),
                pub_path.display()
            );
            println!("# add to gateway.toml; move `signing = true` to this key to start signing with it");
            println!(
                "[[jwt.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\nprivate_key = \"{}\"\nsigning = true",
                key_path.display()
            );
        }
    }
    Ok(())
}
