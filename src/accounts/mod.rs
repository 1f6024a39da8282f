//! Accounts: users and their API tokens, for the JSON API and the CLI alike (and the browser
//! pages to come).
//!
//! The rule this module keeps: every rule about an account is checked here ([`rules`]), and every
//! change that ends sessions is written to the store before it takes effect in memory, then
//! broadcast ([`changes`]). A wrong password and an unknown user are indistinguishable (same
//! error, same argon2 work). Nothing here knows HTTP: callers map [`AccountError`] to their answer.

mod access;
pub mod backend_keys;
pub mod changes;
pub mod rules;
mod sessions;
pub mod sso;

pub use sessions::NewSession;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use crate::auth::api_token;
use crate::auth::limiter::LoginLimits;
use crate::auth::password::{PasswordError, Passwords, Verdict};
use crate::auth::principal::{AuthMethod, Principal};
use crate::store::cache::Event;
use crate::store::{ApiTokenRow, NewApiToken, Store, StoreError, User};

pub use changes::Changes;

/// Why an account operation was refused. The messages never contain a password or a token.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A value broke a rule: the field and what it must be.
    #[error("{field} {message}")]
    Invalid { field: &'static str, message: &'static str },
    #[error("username already registered, or it looks like an existing name")]
    NameTaken,
    /// A wrong password and an unknown user alike; the id of a known user is kept for the audit
    /// line only.
    #[error("invalid username or password")]
    BadCredentials(Option<String>),
    #[error("too many failed attempts")]
    TooManyAttempts(Duration),
    #[error("the current password is incorrect")]
    WrongPassword,
    /// The user does not exist (any more), or is disabled.
    #[error("no such user")]
    UnknownUser,
    #[error("no such API token")]
    NoSuchToken,
    #[error("no such session")]
    NoSuchSession,
    /// A credential with no session behind it (an API token) asked to end its session.
    #[error("this credential has no session to end")]
    NoSession,
    #[error("too many password checks in progress")]
    Busy,
    #[error("password hashing failed")]
    Hashing,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PasswordError> for AccountError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => AccountError::Busy,
            PasswordError::Failed => AccountError::Hashing,
        }
    }
}

/// An API token just made: its row, and the secret, shown once and never stored.
pub struct NewToken {
    pub row: ApiTokenRow,
    pub secret: String,
}

/// The account service. Built once: by the gateway with its authenticator, by the CLI without.
/// (The CLI builds it with `Passwords` too, whose dummy hash costs one argon2 run at start.)
pub struct Accounts {
    store: Store,
    /// Shared with the background task that stores an upgraded hash.
    passwords: Arc<Passwords>,
    limits: LoginLimits,
    changes: Changes,
    /// Normalised usernames being registered on this replica right now.
    registering: Mutex<HashSet<String>>,
}

impl Accounts {
    pub fn new(store: Store, passwords: Passwords, limits: LoginLimits, changes: Changes) -> Accounts {
        Accounts {
            store,
            passwords: Arc::new(passwords),
            limits,
            changes,
            registering: Mutex::new(HashSet::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// The login limits, shared by every way of signing in.
    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    /// Create a user. One registration per name at a time on this replica: concurrent duplicates
    /// are refused at once instead of each paying for an argon2 hash; across replicas the store's
    /// unique index settles it. A look-alike of a taken name (Cyrillic `а` for Latin `a`) is taken.
    pub async fn register(&self, username: &str, email: &str, password: &str) -> Result<User, AccountError> {
        let (given, norm) = rules::username(username)?;
        rules::password("password", password)?;
        let email = rules::email(email)?;
        let _claim = NameClaim::take(&self.registering, &norm).ok_or(AccountError::NameTaken)?;
        if self.store.name_taken(&given, &norm).await? {
            return Err(AccountError::NameTaken);
        }
        let hash = self.passwords.hash(password.to_owned()).await?;
        self.store
            .add_user(&given, &norm, email, &hash)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => AccountError::NameTaken,
                other => AccountError::Store(other),
            })
    }

    /// Check a username and password from `client`, under the login limits. Unknown and malformed
    /// names are limited under their own key and cost the same argon2 work as real ones.
    pub async fn sign_in(&self, username: &str, password: &str, client: IpAddr) -> Result<User, AccountError> {
        let norm = rules::username(username).ok().map(|(_, n)| n);
        let limit_key = norm.clone().unwrap_or_else(|| username.trim().to_lowercase());
        self.limits
            .allowed(&limit_key, client)
            .await
            .map_err(AccountError::TooManyAttempts)?;
        let user = match &norm {
            Some(n) => self.store.user_by_norm(n).await?,
            None => None,
        };
        let verdict = match &user {
            // An account that signs in through a provider has no password: the same work and
            // answer as an unknown user.
            Some(u) if u.password_hash == sso::NO_PASSWORD => {
                self.passwords.verify_dummy(password.to_owned()).await?;
                Verdict {
                    ok: false,
                    needs_rehash: false,
                }
            }
            Some(u) => {
                self.passwords
                    .verify(password.to_owned(), u.password_hash.clone())
                    .await?
            }
            None => {
                self.passwords.verify_dummy(password.to_owned()).await?;
                Verdict {
                    ok: false,
                    needs_rehash: false,
                }
            }
        };
        let user = match user {
            Some(u) if verdict.ok && !u.disabled && !self.changes.locally_disabled(&u.id) => u,
            other => {
                self.limits.failed(&limit_key, client).await;
                return Err(AccountError::BadCredentials(other.map(|u| u.id)));
            }
        };
        self.limits.succeeded(&limit_key).await;
        if verdict.needs_rehash {
            self.rehash_later(&user.id, password);
        }
        Ok(user)
    }

    /// Store a hash at the current parameters, off the request.
    fn rehash_later(&self, user_id: &str, password: &str) {
        let (store, passwords) = (self.store.clone(), self.passwords.clone());
        let (id, password) = (user_id.to_owned(), password.to_owned());
        tokio::spawn(async move {
            match passwords.hash(password).await {
                Ok(hash) => match store.set_password_hash(&id, &hash).await {
                    Ok(()) => tracing::info!(user_id = %id, "password hash upgraded to current parameters"),
                    Err(e) => tracing::warn!(user_id = %id, error = %e, "password hash upgrade not stored"),
                },
                Err(e) => tracing::warn!(user_id = %id, error = %e, "password hash upgrade failed"),
            }
        });
    }

    /// The caller's user row; a token for a user that no longer exists, or is disabled, is refused.
    pub async fn current_user(&self, user_id: &str) -> Result<User, AccountError> {
        self.store
            .user_by_id(user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(AccountError::UnknownUser)
    }

    /// A user by username, else by id (operator commands name users either way).
    pub async fn find_user(&self, who: &str) -> Result<User, AccountError> {
        if let Ok((_, norm)) = rules::username(who)
            && let Some(u) = self.store.user_by_norm(&norm).await?
        {
            return Ok(u);
        }
        self.store.user_by_id(who).await?.ok_or(AccountError::UnknownUser)
    }

    pub async fn list_users(&self) -> Result<Vec<User>, AccountError> {
        Ok(self.store.list_users().await?)
    }

    /// End the session `p` came with.
    pub async fn logout(&self, p: &Principal) -> Result<(), AccountError> {
        if let (AuthMethod::Session, Some(id)) = (p.method, &p.jti) {
            return self.end_session(p.user_id.as_str(), id).await;
        }
        let (Some(jti), Some(exp), AuthMethod::Jwt) = (&p.jti, p.exp, p.method) else {
            return Err(AccountError::NoSession);
        };
        let uid = p.user_id.as_str();
        self.store
            .revoke_jti(jti, uid, i64::try_from(exp).unwrap_or(i64::MAX))
            .await?;
        self.changes.publish(Event::Jti { jti: jti.clone(), exp }).await;
        Ok(())
    }

    /// End every session of this user.
    pub async fn logout_all(&self, user_id: &str) -> Result<(), AccountError> {
        let epoch = self.store.bump_token_epoch(user_id, None).await?;
        self.changes
            .publish(Event::User {
                id: user_id.to_owned(),
                disabled: self.changes.disabled_now(user_id),
                min_epoch: epoch,
                exempt_jti: None,
            })
            .await;
        self.drop_ended_sessions(user_id, None).await;
        Ok(())
    }

    /// Change the password of `p`'s user (the current one is checked under the login limits);
    /// every other session of theirs ends, the one that asked stays.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: &str,
        new: &str,
        client: IpAddr,
    ) -> Result<User, AccountError> {
        rules::password("new_password", new)?;
        let user = self.current_user(p.user_id.as_str()).await?;
        self.limits
            .allowed(&user.username_norm, client)
            .await
            .map_err(AccountError::TooManyAttempts)?;
        let verdict = self
            .passwords
            .verify(current.to_owned(), user.password_hash.clone())
            .await?;
        if !verdict.ok {
            self.limits.failed(&user.username_norm, client).await;
            return Err(AccountError::WrongPassword);
        }
        let hash = self.passwords.hash(new.to_owned()).await?;
        self.store.set_password_hash(&user.id, &hash).await?;
        let epoch = self.store.bump_token_epoch(&user.id, p.jti.as_deref()).await?;
        self.changes
            .publish(Event::User {
                id: user.id.clone(),
                disabled: false,
                min_epoch: epoch,
                exempt_jti: p.jti.clone(),
            })
            .await;
        let keep = (p.method == AuthMethod::Session).then_some(p.jti.as_deref()).flatten();
        self.drop_ended_sessions(&user.id, keep).await;
        Ok(user)
    }

    /// Disable or enable a user: their logins and every token they hold are refused, or allowed
    /// again. Returns whether the running replicas were told at once (else at their next sync).
    pub async fn set_disabled(&self, user: &User, disabled: bool) -> Result<bool, AccountError> {
        self.store.set_disabled(&user.id, disabled).await?;
        let told = self
            .changes
            .publish(Event::User {
                id: user.id.clone(),
                disabled,
                min_epoch: user.token_epoch,
                exempt_jti: None,
            })
            .await;
        if disabled {
            // Their browser sessions do not come back when they are enabled again.
            self.drop_ended_sessions(&user.id, None).await;
        }
        Ok(told)
    }

    /// Make an API token for `user_id` with these scopes (`None`: `full`); the secret is returned
    /// once, only its hash is stored.
    pub async fn create_token(
        &self,
        user_id: &str,
        name: &str,
        expires_in: Option<u64>,
        scopes: Option<&[&str]>,
    ) -> Result<NewToken, AccountError> {
        let name = rules::token_name(name)?;
        let expires_in = rules::token_lifetime(expires_in)?;
        let scopes = rules::token_scopes(scopes)?;
        let secret = api_token::generate();
        let now = crate::clock::now_secs() as i64;
        let row = self
            .store
            .create_api_token(&NewApiToken {
                id: &Uuid::new_v4().to_string(),
                user_id,
                name,
                token_hash: &api_token::hash(&secret),
                created_at: now,
                expires_at: expires_in.map(|n| now + n as i64),
                scopes: &scopes,
            })
            .await?;
        Ok(NewToken { row, secret })
    }

    /// The user's API tokens, without secrets.
    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<ApiTokenRow>, AccountError> {
        Ok(self.store.list_api_tokens(user_id).await?)
    }

    /// Delete one of the user's own API tokens; another user's is [`AccountError::NoSuchToken`].
    pub async fn revoke_token(&self, user_id: &str, id: &str) -> Result<(), AccountError> {
        if id.is_empty() || id.len() > 64 {
            return Err(AccountError::NoSuchToken);
        }
        let hash = self
            .store
            .delete_api_token(user_id, id)
            .await?
            .ok_or(AccountError::NoSuchToken)?;
        self.changes.token_deleted(hash).await;
        Ok(())
    }

    /// Delete an API token whoever owns it (an operator's command). Returns the owner's id and
    /// whether the running replicas were told at once.
    pub async fn revoke_any_token(&self, id: &str) -> Result<(String, bool), AccountError> {
        let (user_id, hash) = self
            .store
            .delete_api_token_any_user(id)
            .await?
            .ok_or(AccountError::NoSuchToken)?;
        let told = self.changes.token_deleted(hash).await;
        Ok((user_id, told))
    }
}

/// A username being registered; released when dropped.
struct NameClaim<'a> {
    names: &'a Mutex<HashSet<String>>,
    name: String,
}

impl<'a> NameClaim<'a> {
    fn take(names: &'a Mutex<HashSet<String>>, name: &str) -> Option<NameClaim<'a>> {
        names.lock().ok()?.insert(name.to_owned()).then(|| NameClaim {
            names,
            name: name.to_owned(),
        })
    }
}

impl Drop for NameClaim<'_> {
    fn drop(&mut self) {
        if let Ok(mut names) = self.names.lock() {
            names.remove(&self.name);
        }
    }
}
