//! Operator commands that work on the configured store or on key files, without serving:
//! `user add|list|disable|enable|role|groups`, `token create|list|revoke`, `policy explain`,
//! `backend-key set|remove|list|rotate` and `keys generate`. The account rules
//! and changes are the account service's (`crate::accounts`), the same as the JSON API's.
//!
//! The rule this module keeps: a password is read from stdin or generated and shown once, never
//! taken from the command line (where `ps` and shell history would keep it), and so is a backend
//! API key (stdin only, never printed back, listed only as who has one), key files are
//! written with mode 0600, and every error names the flag or setting to fix.

use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::Arc;

use crate::accounts::backend_keys::{BackendKeyError, BackendKeys};
use crate::accounts::{AccountError, Accounts, Changes};
use crate::auth::jwt::JwtAlgorithm;
use crate::auth::limiter::LoginLimits;
use crate::auth::password::Passwords;
use crate::config::{Config, ProfileConfig};
use crate::store::backend_keys::SubjectKind;
use crate::store::{Store, StoreError, User};

/// Why an operator command failed; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("store.url: cannot open the store: {0}")]
    OpenStore(StoreError),
    #[error(transparent)]
    Redis(#[from] crate::store::cache::RedisUrlError),
    #[error(transparent)]
    Passwords(#[from] crate::auth::password::PoolError),
    #[error("cannot read the password from stdin: {0}")]
    Stdin(std::io::Error),
    /// A value broke an account rule; `flag` is the option or input it came from.
    #[error("{flag}: {message}")]
    Invalid { flag: &'static str, message: &'static str },
    #[error("{0}")]
    Account(AccountError),
    #[error("user `{0}` already exists, or looks like an existing name")]
    UserExists(String),
    #[error("--user: no user `{0}` (see `authgate user list`)")]
    NoSuchUser(String),
    #[error("--user: `{0}` is disabled (`authgate user enable` first)")]
    UserDisabled(String),
    #[error("no API token with id `{0}`")]
    NoSuchToken(String),
    #[error("store: {0}")]
    Store(StoreError),
    #[error("--algorithm: `{0}` is not one of HS256, HS384, HS512, RS256, ES256, EdDSA")]
    Algorithm(String),
    #[error("--kid: use 1 to 64 of A-Z a-z 0-9 . _ - only (without `..`)")]
    Kid,
    #[error(transparent)]
    Generate(#[from] crate::auth::keys::KeyError),
    #[error("--out: cannot create {}: {source}", path.display())]
    OutDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{} exists; choose another --kid", .0.display())]
    KeyExists(std::path::PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "upstream.profile: backend keys belong to the ragflow profile; set upstream.profile = \"ragflow\" and upstream.ragflow.key_encryption_key"
    )]
    NotRagflow,
    #[error("stdin: {0}")]
    KeyInput(BackendKeyError),
    #[error("the backend key of {who}: {error}")]
    BackendKey { who: String, error: BackendKeyError },
}

impl From<AccountError> for CliError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Store(e) => CliError::Store(e),
            AccountError::Invalid { field, message } => CliError::Invalid {
                flag: match field {
                    "email" => "--email",
                    "name" => "--name",
                    "expires_in" => "--expires-in",
                    "scopes" => "--scope",
                    "role" => "ROLE",
                    "group" => "GROUP",
                    other => other,
                },
                message,
            },
            error => CliError::Account(error),
        }
    }
}

pub async fn open_store(config: &Config) -> Result<Store, CliError> {
    Store::connect(config.store.url.expose())
        .await
        .map_err(CliError::OpenStore)
}

/// The account service on the configured store. With `bus`, and `redis.url` set, it tells
/// running gateways through Redis (else they pick changes up at their next store sync); only the
/// commands that change who may sign in ask for it, so the others never wait on Redis.
async fn accounts(config: &Config, bus: bool) -> Result<Accounts, CliError> {
    let store = open_store(config).await?;
    let redis = match &config.redis {
        Some(r) if bus => {
            let redis = crate::store::cache::Redis::new(r.url.expose(), r.timeout, r.token_ttl)?;
            redis.connect().await;
            Some(Arc::new(redis))
        }
        _ => None,
    };
    let passwords = Passwords::with_concurrency(config.password.params, 1)?;
    let limits = LoginLimits::new(config.login, None);
    Ok(Accounts::new(store, passwords, limits, Changes::new(None, redis)))
}

fn warn_unless_told(told: bool) {
    if !told {
        eprintln!("warning: redis unavailable; running gateways apply this at their next store sync");
    }
}

fn random_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

/// `authgate user add NAME --email E [--password-stdin]`.
pub async fn user_add(config: &Config, username: &str, email: &str, password_stdin: bool) -> Result<(), CliError> {
    // The rules first, so a bad name or address is refused before a password is asked for.
    let (given, _) = crate::accounts::rules::username(username)?;
    crate::accounts::rules::email(email)?;
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(CliError::Stdin)?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (random_password(), true)
    };
    crate::accounts::rules::password("password", &password)?;
    let accounts = accounts(config, false).await?;
    let user = accounts
        .register(username, email, &password)
        .await
        .map_err(|e| match e {
            AccountError::NameTaken => CliError::UserExists(given),
            other => other.into(),
        })?;
    println!("created user {} ({})", user.username, user.id);
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}

/// `authgate user list`.
pub async fn user_list(config: &Config) -> Result<(), CliError> {
    let accounts = accounts(config, false).await?;
    let users = accounts.list_users().await?;
    println!(
        "{:<36}  {:<24}  {:<32}  {:<8}  providers",
        "id", "username", "email", "status"
    );
    for u in users {
        let status = if u.disabled { "disabled" } else { "active" };
        // The single sign-on providers the user is linked to ("-": none, a local account only).
        let providers = accounts
            .store()
            .identities_of(&u.id)
            .await
            .map_err(AccountError::from)?;
        let providers = if providers.is_empty() {
            "-".to_owned()
        } else {
            providers.join(",")
        };
        println!(
            "{:<36}  {:<24}  {:<32}  {status:<8}  {providers}",
            u.id, u.username, u.email
        );
    }
    Ok(())
}

/// A user by username, else by id.
async fn find_user(accounts: &Accounts, who: &str) -> Result<User, CliError> {
    accounts.find_user(who).await.map_err(|e| match e {
        AccountError::UnknownUser => CliError::NoSuchUser(who.to_owned()),
        other => other.into(),
    })
}

/// `authgate user disable|enable NAME` (by username or id). Running gateways are told at once
/// through the Redis bus when there is one, else at their next store sync.
pub async fn user_set_disabled(config: &Config, who: &str, disabled: bool) -> Result<(), CliError> {
    let accounts = accounts(config, true).await?;
    let user = find_user(&accounts, who).await?;
    warn_unless_told(accounts.set_disabled(&user, disabled).await?);
    tracing::info!(target: "authgate::audit", event = if disabled { "user_disabled" } else { "user_enabled" }, user_id = %user.id);
    println!(
        "{} user {} ({})",
        if disabled { "disabled" } else { "enabled" },
        user.username,
        user.id
    );
    Ok(())
}

/// `authgate user role NAME user|admin`. Running gateways drop what they hold of the user's role
/// at once through the Redis bus when there is one, else at their next store sync.
pub async fn user_role(config: &Config, who: &str, role: &str) -> Result<(), CliError> {
    let role = crate::accounts::rules::role(role)?;
    let accounts = accounts(config, true).await?;
    let user = find_user(&accounts, who).await?;
    let told = accounts.set_role(&user, role).await.map_err(|e| no_such_user(e, who))?;
    warn_unless_told(told);
    tracing::info!(target: "authgate::audit", event = "role_set", user_id = %user.id, role = role.as_str(), via = "cli");
    println!("user {} ({}) now has role {}", user.username, user.id, role.as_str());
    Ok(())
}

/// `authgate user groups NAME [add|remove GROUP]`: change a local group, then list the user's role
/// and groups, each group with where it comes from (`local`, or `provider` for a single sign-on
/// provider's claim).
pub async fn user_groups(config: &Config, who: &str, change: Option<(bool, &str)>) -> Result<(), CliError> {
    if let Some((_, group)) = change {
        crate::accounts::rules::group_name(group)?;
    }
    let accounts = accounts(config, change.is_some()).await?;
    let user = find_user(&accounts, who).await?;
    if let Some((member, group)) = change {
        let (changed, told) = accounts
            .set_group(&user, group, member)
            .await
            .map_err(|e| no_such_user(e, who))?;
        if changed {
            warn_unless_told(told);
            tracing::info!(target: "authgate::audit", event = if member { "group_added" } else { "group_removed" }, user_id = %user.id, group = group.trim(), via = "cli");
        }
        let verb = match (member, changed) {
            (true, true) => "added to",
            (true, false) => "was already in",
            (false, true) => "removed from",
            (false, false) => "was not in",
        };
        println!("user {} {verb} group {}", user.username, group.trim());
    }
    let access = accounts.access(&user.id).await.map_err(|e| no_such_user(e, who))?;
    let local = accounts.local_groups(&user.id).await?;
    println!("role: {}", access.role);
    if access.groups.is_empty() {
        println!("groups: (none)");
    }
    for g in &access.groups {
        let from = if local.contains(g) { "local" } else { "provider" };
        println!("group: {g} ({from})");
    }
    Ok(())
}

fn no_such_user(e: AccountError, who: &str) -> CliError {
    match e {
        AccountError::UnknownUser => CliError::NoSuchUser(who.to_owned()),
        other => other.into(),
    }
}

/// Whose backend key a `backend-key` command is about: `--user NAME` (by username or id) or
/// `--group NAME`.
#[derive(Debug, Clone, Copy)]
pub enum KeyOwner<'a> {
    User(&'a str),
    Group(&'a str),
}

/// The sealing service on the configured store; only with `upstream.profile = "ragflow"`.
async fn backend_keys(config: &Config) -> Result<(BackendKeys, Accounts), CliError> {
    let ProfileConfig::Ragflow(cfg) = &config.upstream.profile else {
        return Err(CliError::NotRagflow);
    };
    let accounts = accounts(config, false).await?;
    Ok((BackendKeys::new(cfg, accounts.store().clone()), accounts))
}

/// The owner as stored (a user's id, a group's name) and as shown.
async fn key_subject(accounts: &Accounts, owner: KeyOwner<'_>) -> Result<(SubjectKind, String, String), CliError> {
    match owner {
        KeyOwner::User(who) => {
            let user = find_user(accounts, who).await?;
            let shown = format!("user {} ({})", user.username, user.id);
            Ok((SubjectKind::User, user.id, shown))
        }
        KeyOwner::Group(name) => {
            let name = crate::accounts::rules::group_name(name).map_err(|_| CliError::Invalid {
                flag: "--group",
                message: "must be 1 to 64 visible ASCII characters, without spaces",
            })?;
            Ok((SubjectKind::Group, name.to_owned(), format!("group {name}")))
        }
    }
}

/// The key on stdin, less one trailing newline (`\n` or `\r\n`); empty, several lines or a space
/// inside are refused.
fn read_backend_key(input: impl Read) -> Result<String, CliError> {
    let mut text = String::new();
    input
        .take(crate::accounts::backend_keys::MAX_KEY_LEN as u64 + 3)
        .read_to_string(&mut text)
        .map_err(CliError::Stdin)?;
    let key = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    crate::accounts::backend_keys::check_key(key).map_err(CliError::KeyInput)?;
    Ok(key.to_owned())
}

/// `authgate backend-key set --user NAME | --group NAME`, the key on stdin: seal and store it,
/// replacing any. Running gateways use it within `upstream.ragflow.cache_ttl`.
pub async fn backend_key_set(config: &Config, owner: KeyOwner<'_>) -> Result<(), CliError> {
    let (keys, accounts) = backend_keys(config).await?;
    let (kind, subject, shown) = key_subject(&accounts, owner).await?;
    let key = read_backend_key(std::io::stdin().lock())?;
    keys.set(kind, &subject, &key)
        .await
        .map_err(|error| CliError::BackendKey {
            who: shown.clone(),
            error,
        })?;
    tracing::info!(target: "authgate::audit", event = "backend_key_set", subject_kind = kind.as_str(), subject = %subject, key_id = keys.current_key_id(), via = "cli");
    println!(
        "stored the backend key of {shown} (sealed with encryption key {})",
        keys.current_key_id()
    );
    Ok(())
}

/// `authgate backend-key remove --user NAME | --group NAME`.
pub async fn backend_key_remove(config: &Config, owner: KeyOwner<'_>) -> Result<(), CliError> {
    let (keys, accounts) = backend_keys(config).await?;
    let (kind, subject, shown) = key_subject(&accounts, owner).await?;
    let removed = keys
        .store()
        .remove_backend_key(kind, &subject)
        .await
        .map_err(CliError::Store)?;
    if removed {
        tracing::info!(target: "authgate::audit", event = "backend_key_removed", subject_kind = kind.as_str(), subject = %subject, via = "cli");
        println!("removed the backend key of {shown}");
    } else {
        println!("{shown} had no backend key");
    }
    Ok(())
}

/// `authgate backend-key list`: who has a key and which encryption key sealed it; never a key.
pub async fn backend_key_list(config: &Config) -> Result<(), CliError> {
    let (keys, _) = backend_keys(config).await?;
    let rows = keys.store().backend_keys().await.map_err(CliError::Store)?;
    println!(
        "{:<6}  {:<36}  {:<24}  {:<16}  updated_at",
        "kind", "subject", "name", "key_id"
    );
    for r in rows {
        let name = match r.kind {
            SubjectKind::User => match keys.store().user_by_id(&r.subject).await.map_err(CliError::Store)? {
                Some(u) => u.username,
                None => "(no such user)".to_owned(),
            },
            SubjectKind::Group => r.subject.clone(),
        };
        println!(
            "{:<6}  {:<36}  {name:<24}  {:<16}  {}",
            r.kind.as_str(),
            r.subject,
            r.key_id,
            r.updated_at
        );
    }
    Ok(())
}

/// `authgate backend-key rotate`: re-seal every key under `upstream.ragflow.key_encryption_key`
/// (rows under a `previous_keys` entry are opened with it). Afterwards the old key can go.
pub async fn backend_key_rotate(config: &Config) -> Result<(), CliError> {
    let (keys, _) = backend_keys(config).await?;
    let (moved, current) = keys.rotate().await.map_err(|error| CliError::BackendKey {
        who: "a stored row".to_owned(),
        error,
    })?;
    tracing::info!(target: "authgate::audit", event = "backend_keys_rotated", resealed = moved, key_id = keys.current_key_id(), via = "cli");
    println!(
        "re-sealed {moved} backend key(s) under encryption key {}; {current} already were",
        keys.current_key_id()
    );
    Ok(())
}

/// `authgate policy explain [--user NAME [--scope S]...] METHOD PATH`: what the configured policy
/// decides for this request, and which rule decides it. Without `--user`, for a caller with no
/// credential; without `--scope`, for a credential holding `full` (a login).
pub async fn policy_explain(
    config: &Config,
    who: Option<&str>,
    scopes: &[String],
    method: &str,
    target: &str,
) -> Result<(), CliError> {
    use crate::policy::{Caller, Decided, Effect, Scopes};
    use crate::routes::RouteClass;
    let method =
        http::Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes()).map_err(|_| CliError::Invalid {
            flag: "METHOD",
            message: "is not an HTTP method",
        })?;
    let scopes = match scopes {
        [] => Scopes::FULL,
        given => {
            let given: Vec<&str> = given.iter().map(String::as_str).collect();
            Scopes::from_names(&crate::accounts::rules::token_scopes(Some(&given))?)
        }
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if let Err(e) = crate::routes::check_path(path) {
        println!("decision: refused (400): {e}");
        return Ok(());
    }
    let policy = &config.policy;
    let decided = match crate::routes::classify(path, &config.api_paths, &config.public_paths, &config.web.prefix) {
        RouteClass::Public => Decided::PublicPaths,
        RouteClass::Protected => policy.matching(&method, path),
        other => {
            println!(
                "decision: answered by the gateway itself ({} route); policies do not apply",
                other.as_str()
            );
            return Ok(());
        }
    };
    let rule = match decided {
        Decided::Rule(i) => format!("{} (policy.rules, number {})", policy.label(decided), i + 1),
        Decided::PublicPaths | Decided::Default => policy.label(decided).to_owned(),
    };
    let decision = if policy.is_public(decided) {
        "public (forwarded without a credential or X-User-Id)".to_owned()
    } else if let Some(who) = who {
        let accounts = accounts(config, false).await?;
        let user = find_user(&accounts, who).await?;
        let access =
            crate::auth::access::from_store(accounts.store().user_access(&user.id).await.map_err(CliError::Store)?);
        let caller = Caller {
            user_id: &user.id,
            access: Some(&access),
            scopes: &scopes,
        };
        let verdict = if policy.allows(decided, &caller, Effect::of(&method, false)) {
            "allow (forwarded with X-User-Id)"
        } else if !policy.within_scopes(decided, &scopes, Effect::of(&method, false)) {
            "deny (403, not forwarded): outside the credential's scopes"
        } else {
            "deny (403, not forwarded)"
        };
        let disabled = if user.disabled {
            "; the user is disabled, so every credential of theirs gets 401 first"
        } else {
            ""
        };
        format!(
            "{verdict} for {} ({}, role {}, scopes {}){disabled}",
            user.username,
            user.id,
            access.role.as_str(),
            scopes.names().collect::<Vec<_>>().join(",")
        )
    } else {
        "401 without a credential (pass --user NAME to see a caller's decision)".to_owned()
    };
    println!("decision: {decision}");
    println!("rule: {rule}");
    Ok(())
}

/// What `token create` makes.
pub struct NewTokenArgs<'a> {
    /// The owner, by username or id.
    pub user: &'a str,
    pub name: &'a str,
    pub expires_in: Option<u64>,
    /// Each `--scope`, commas already split; empty: `full`.
    pub scopes: &'a [String],
}

/// `authgate token create --user U --name N [--expires-in SECS] [--scope S]...`: the token goes to
/// stdout once.
pub async fn token_create(config: &Config, args: &NewTokenArgs<'_>) -> Result<(), CliError> {
    // The rules first, so a bad flag is refused before the store is opened.
    let name = crate::accounts::rules::token_name(args.name)?;
    crate::accounts::rules::token_lifetime(args.expires_in)?;
    let scopes: Vec<&str> = args.scopes.iter().map(String::as_str).collect();
    let scopes = (!scopes.is_empty()).then_some(&scopes[..]);
    crate::accounts::rules::token_scopes(scopes)?;
    let accounts = accounts(config, false).await?;
    let user = find_user(&accounts, args.user).await?;
    if user.disabled {
        return Err(CliError::UserDisabled(user.username));
    }
    let made = accounts.create_token(&user.id, name, args.expires_in, scopes).await?;
    let row = made.row;
    let scopes = row.scopes.join(",");
    tracing::info!(target: "authgate::audit", event = "token_created", user_id = %user.id, token_id = %row.id, scopes = %scopes, via = "cli");
    eprintln!(
        "created API token {} ({name}, scopes {scopes}) for {}; it is shown once:",
        row.id, user.username
    );
    println!("{}", made.secret);
    Ok(())
}

/// `authgate token list --user U`: one line per token, oldest first, never a secret.
pub async fn token_list(config: &Config, who: &str) -> Result<(), CliError> {
    let accounts = accounts(config, false).await?;
    let user = find_user(&accounts, who).await?;
    let tokens = accounts.list_tokens(&user.id).await?;
    if tokens.is_empty() {
        println!("user {} has no API tokens", user.username);
    }
    let when = |secs: Option<i64>| match secs.and_then(|s| u64::try_from(s).ok()) {
        Some(s) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
            humantime::format_rfc3339_seconds(t).to_string()
        }
        None => "-".to_owned(),
    };
    for t in &tokens {
        println!(
            "{}\t{}\tscopes={}\tcreated={}\texpires={}\tlast_used={}",
            t.id,
            t.name,
            t.scopes.join(","),
            when(Some(t.created_at)),
            when(t.expires_at),
            when(t.last_used_at)
        );
    }
    Ok(())
}

/// `authgate token revoke ID`.
pub async fn token_revoke(config: &Config, id: &str) -> Result<(), CliError> {
    let accounts = accounts(config, true).await?;
    let (user_id, told) = accounts.revoke_any_token(id).await.map_err(|e| match e {
        AccountError::NoSuchToken => CliError::NoSuchToken(id.to_owned()),
        other => other.into(),
    })?;
    warn_unless_told(told);
    tracing::info!(target: "authgate::audit", event = "token_revoked", user_id = %user_id, token_id = id, via = "cli");
    println!("revoked API token {id} (user {user_id})");
    Ok(())
}

/// `authgate keys generate --algorithm ALG [--kid KID] [--out DIR]`.
pub fn keys_generate(algorithm: &str, kid: Option<&str>, out: &Path) -> Result<(), CliError> {
    let alg: JwtAlgorithm = algorithm
        .parse()
        .map_err(|_| CliError::Algorithm(algorithm.to_owned()))?;
    let kid = kid.map(str::to_owned).unwrap_or_else(|| {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        format!("{}-{}", alg.as_str().to_ascii_lowercase(), now[..10].replace('-', ""))
    });
    if !crate::config::kid_is_plain(&kid) {
        return Err(CliError::Kid);
    }
    let (private, public) = crate::auth::keys::generate(alg)?;
    match public {
        None => {
            println!("# add to gateway.toml (keep this secret out of git; or set it through the environment)");
            println!("[[jwt.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\nsecret = \"{private}\"\nsigning = true");
        }
        Some(public) => {
            std::fs::create_dir_all(out).map_err(|source| CliError::OutDir {
                path: out.to_owned(),
                source,
            })?;
            let key_path = out.join(format!("{kid}.pem"));
            let pub_path = out.join(format!("{kid}.pub.pem"));
            if key_path.exists() {
                return Err(CliError::KeyExists(key_path));
            }
            crate::tls::write_private(&key_path, private.as_bytes()).map_err(|source| CliError::Write {
                path: key_path.clone(),
                source,
            })?;
            std::fs::write(&pub_path, public).map_err(|source| CliError::Write {
                path: pub_path.clone(),
                source,
            })?;
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
