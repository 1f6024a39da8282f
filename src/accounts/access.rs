//! Roles and groups: set a user's role, add or remove a local group, and read what policies see.
//!
//! The rule this module keeps: a change is written to the store with its change-log row first,
//! then dropped from this replica's memory and broadcast ([`super::Changes::access_changed`]), so
//! every replica reads the new role or groups within the bus's delay, or at its next sync.

use super::{AccountError, Accounts, rules};
use crate::policy::Role;
use crate::store::access::UserAccess;
use crate::store::{StoreError, User};

impl Accounts {
    /// Give a user a role. Returns whether the running replicas were told at once.
    pub async fn set_role(&self, user: &User, role: Role) -> Result<bool, AccountError> {
        self.store.set_role(&user.id, role.as_str()).await.map_err(unknown)?;
        Ok(self.changes.access_changed(&user.id).await)
    }

    /// Add a user to a local group (`member`), or take them out. Returns whether anything changed
    /// and, if so, whether the running replicas were told at once.
    pub async fn set_group(&self, user: &User, group: &str, member: bool) -> Result<(bool, bool), AccountError> {
        let group = rules::group_name(group)?;
        if !self.store.set_group(&user.id, group, member).await.map_err(unknown)? {
            return Ok((false, true));
        }
        Ok((true, self.changes.access_changed(&user.id).await))
    }

    /// A user's role and every group (local and from providers), as policies see them.
    pub async fn access(&self, user_id: &str) -> Result<UserAccess, AccountError> {
        self.store.user_access(user_id).await?.ok_or(AccountError::UnknownUser)
    }

    /// A user's local groups only (those `set_group` can remove).
    pub async fn local_groups(&self, user_id: &str) -> Result<Vec<String>, AccountError> {
        Ok(self.store.local_groups(user_id).await?)
    }
}

fn unknown(e: StoreError) -> AccountError {
    match e {
        StoreError::NotFound => AccountError::UnknownUser,
        other => AccountError::Store(other),
    }
}
