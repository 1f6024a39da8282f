//! Accounts that sign in through an OpenID Connect provider: find the local user linked to the
//! provider's `(issuer, sub)`, or link or create one.
//!
//! The rule this module keeps: a first sign-in is linked to an existing account by email only when
//! the provider says `email_verified: true` and the operator turned `link_verified_email` on;
//! otherwise it gets a new account of its own. A disabled user's sign-ins are refused. Accounts
//! made here have no password (their hash is [`NO_PASSWORD`]): a password sign-in to one costs a
//! dummy hash and fails like any other.

use super::{AccountError, Accounts, rules};
use crate::store::identities::Identity;
use crate::store::{StoreError, User};

/// The password hash of an account that signs in through a provider only: no PHC string, so no
/// password ever matches it.
pub const NO_PASSWORD: &str = "!sso";

/// What a provider says about who signed in, after the checks on its id_token.
#[derive(Debug, Clone)]
pub struct SsoUser {
    pub issuer: String,
    pub subject: String,
    pub provider: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// Wanted username for a new account (the mapped claim), when there is one.
    pub username: Option<String>,
    pub groups: Vec<String>,
    /// `link_verified_email` of the provider.
    pub may_link_by_email: bool,
}

impl Accounts {
    /// The local user for a provider sign-in: linked already, linked now by verified email when
    /// allowed, or new. Groups and email are refreshed at every sign-in.
    pub async fn sign_in_sso(&self, who: &SsoUser) -> Result<User, AccountError> {
        let user = match self.store.identity(&who.issuer, &who.subject).await? {
            Some(linked) => self.store.user_by_id(&linked.user_id).await?,
            None => None,
        };
        let user = match user {
            Some(u) => u,
            None => match self.linkable(who).await? {
                Some(u) => u,
                None => self.create_sso_user(who).await?,
            },
        };
        if user.disabled || self.changes.locally_disabled(&user.id) {
            return Err(AccountError::BadCredentials(Some(user.id)));
        }
        let groups_changed = self
            .store
            .put_identity(&Identity {
                issuer: who.issuer.clone(),
                subject: who.subject.clone(),
                user_id: user.id.clone(),
                provider: who.provider.clone(),
                email: who.email.clone().unwrap_or_default(),
                email_verified: who.email_verified,
                groups: who.groups.clone(),
            })
            .await?;
        // The store logged the change; this replica and, over Redis, the others drop their copy now.
        if groups_changed {
            self.changes.access_changed(&user.id).await;
        }
        Ok(user)
    }

    /// An existing account the sign-in may join: only by a verified email, only when allowed,
    /// and only when exactly one account has it.
    async fn linkable(&self, who: &SsoUser) -> Result<Option<User>, AccountError> {
        let (true, true, Some(email)) = (who.may_link_by_email, who.email_verified, who.email.as_deref()) else {
            return Ok(None);
        };
        let mut found = self.store.users_by_email(email).await?;
        Ok(if found.len() == 1 { found.pop() } else { None })
    }

    /// A new account for a first sign-in: the wanted name, else the email's local part, else a
    /// name from the provider; a taken one gets a numbered suffix.
    async fn create_sso_user(&self, who: &SsoUser) -> Result<User, AccountError> {
        let base = who
            .username
            .clone()
            .or_else(|| {
                who.email
                    .as_deref()
                    .and_then(|e| e.split('@').next())
                    .map(str::to_owned)
            })
            .filter(|n| rules::username(n).is_ok())
            .unwrap_or_else(|| format!("{}-user", who.provider));
        let email = who.email.clone().unwrap_or_default();
        for n in 0..20u32 {
            let candidate = if n == 0 { base.clone() } else { format!("{base}-{n}") };
            let Ok((given, norm)) = rules::username(&candidate) else {
                continue;
            };
            if self.store.name_taken(&given, &norm).await? {
                continue;
            }
            match self.store.add_user(&given, &norm, &email, NO_PASSWORD).await {
                Ok(u) => return Ok(u),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AccountError::NameTaken)
    }
}
