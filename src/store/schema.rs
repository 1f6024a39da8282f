//! The store's schema: embedded, numbered migrations and the tiny runner that applies them.
//!
//! The rule this module keeps: every migration runs at most once per database, in its own
//! transaction, even when several gateways start at once against the same database. On PostgreSQL
//! the runners serialise on a transaction-scoped advisory lock; on SQLite on `BEGIN IMMEDIATE`
//! (the write lock, waited for through `busy_timeout`). Should the version row still collide, the
//! runner rolls back and re-checks that the other process recorded that version. The SQL is
//! portable: TEXT ids, BIGINT unix seconds, BIGINT 0/1 booleans, `CREATE ... IF NOT EXISTS`.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Any, AnyConnection, AnyPool, Executor, Row, Transaction};

use super::{StoreError, StoreKind, db_err};

/// Migrations in the order they apply; a version, once released, never changes.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        username_norm TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        disabled BIGINT NOT NULL DEFAULT 0,
        token_epoch BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS api_tokens (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NULL,
        last_used_at BIGINT NULL
    );
    CREATE INDEX IF NOT EXISTS api_tokens_user_id_idx ON api_tokens (user_id);
    CREATE TABLE IF NOT EXISTS revoked_tokens (
        jti TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);",
    ),
    (
        2,
        // The two UTS #39 look-alike keys of each name (`username::skeletons`), so a look-alike
        // of a taken name is refused. Filled in by `Store::backfill_skeletons` for older rows.
        "ALTER TABLE users ADD COLUMN skeleton_norm TEXT NULL;
    ALTER TABLE users ADD COLUMN skeleton_given TEXT NULL;
    CREATE INDEX IF NOT EXISTS users_skeleton_norm_idx ON users (skeleton_norm);
    CREATE INDEX IF NOT EXISTS users_skeleton_given_idx ON users (skeleton_given);",
    ),
    (
        3,
        // The revocation change log (store::changes) and when each user's epoch last moved, so a
        // replica loads only users whose move can still matter. Users whose epoch moved before this
        // migration count as moved now: they stay gated for one more token lifetime.
        "ALTER TABLE users ADD COLUMN epoch_moved_at BIGINT NOT NULL DEFAULT 0;
    UPDATE users SET epoch_moved_at = {NOW} WHERE token_epoch > 0;
    CREATE INDEX IF NOT EXISTS users_epoch_moved_at_idx ON users (epoch_moved_at);
    CREATE INDEX IF NOT EXISTS users_disabled_idx ON users (disabled) WHERE disabled <> 0;
    CREATE TABLE IF NOT EXISTS revocation_log (
        seq {SEQ_PK},
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        disabled BIGINT NOT NULL DEFAULT 0,
        epoch BIGINT NOT NULL DEFAULT 0,
        exempt TEXT NULL,
        expires_at BIGINT NOT NULL DEFAULT 0,
        at BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS revocation_log_at_idx ON revocation_log (at);
    CREATE TABLE IF NOT EXISTS revocation_log_horizon (
        id BIGINT PRIMARY KEY,
        purged_through BIGINT NOT NULL
    );",
    ),
    (
        4,
        // Browser sessions (store::sessions): the cookie's SHA-256, never the cookie itself.
        "CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        epoch BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        last_seen_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        client TEXT NOT NULL,
        agent TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON sessions (user_id);
    CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at);",
    ),
    (
        5,
        // Single sign-on (store::identities): who a provider's (issuer, sub) is here, the groups it
        // last said, and the sign-ins in flight (state, nonce and PKCE verifier, used once). A
        // session remembers the provider it came from, for logout.
        "CREATE TABLE IF NOT EXISTS identities (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        email TEXT NOT NULL,
        groups TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        last_sign_in BIGINT NOT NULL,
        PRIMARY KEY (issuer, subject)
    );
    CREATE INDEX IF NOT EXISTS identities_user_id_idx ON identities (user_id);
    CREATE TABLE IF NOT EXISTS oidc_flows (
        state_hash TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        nonce TEXT NOT NULL,
        verifier TEXT NOT NULL,
        return_to TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    ALTER TABLE sessions ADD COLUMN provider TEXT NULL;",
    ),
    (
        6,
        // Roles and local groups (store::access), read by policies. A provider's groups stay in
        // `identities.groups`; a user's groups are the union of both.
        "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user';
    CREATE TABLE IF NOT EXISTS user_groups (
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        PRIMARY KEY (user_id, name)
    );",
    ),
    (
        7,
        // Scoped API tokens: what each may do within its owner's rights, a JSON array of names as
        // `identities.groups` is. Tokens made before scopes existed keep doing everything.
        "ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '[\"full\"]';",
    ),
    (
        8,
        // The ragflow profile's backend API keys (store::backend_keys), one per user (by id) or
        // group (by name), sealed with AES-256-GCM: the encryption key's id, the nonce and the
        // ciphertext, base64. Never the key itself.
        "CREATE TABLE IF NOT EXISTS backend_keys (
        subject_kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        key_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        ciphertext TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (subject_kind, subject)
    );",
    ),
    (
        9,
        // authgate as an OpenID Provider (store::grants): authorization codes in flight, by the
        // code's SHA-256 (never the code), taken once; and whether a provider verified the email
        // an identity carries, so an ID token says `email_verified` only when one did.
        "CREATE TABLE IF NOT EXISTS oidc_codes (
        code_hash TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        redirect_uri TEXT NOT NULL,
        scope TEXT NOT NULL,
        nonce TEXT NULL,
        code_challenge TEXT NULL,
        auth_time BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    ALTER TABLE identities ADD COLUMN email_verified BIGINT NOT NULL DEFAULT 0;",
    ),
];

/// A migration's SQL for one kind of database: `{SEQ_PK}` is an auto-incrementing 64-bit primary
/// key, `{NOW}` the current unix time.
fn for_kind(sql: &str, kind: StoreKind) -> String {
    let seq = match kind {
        StoreKind::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        StoreKind::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    sql.replace("{SEQ_PK}", seq).replace("{NOW}", &unix_now().to_string())
}

const CREATE_SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS authgate_schema (
    version BIGINT PRIMARY KEY,
    applied_at BIGINT NOT NULL
)";

/// Key of the PostgreSQL advisory lock the migration runners share ("authgate" in ASCII).
const PG_MIGRATION_LOCK: i64 = 0x6175_7468_6761_7465;

/// Apply every migration the database has not recorded yet.
pub(crate) async fn migrate(pool: &AnyPool, kind: StoreKind) -> Result<(), StoreError> {
    for &(version, sql) in MIGRATIONS {
        let mut tx = begin_locked(pool, kind).await?;
        (&mut *tx).execute(CREATE_SCHEMA_TABLE).await.map_err(db_err)?;
        if is_applied(&mut tx, version).await? {
            tx.commit().await.map_err(db_err)?;
            continue;
        }
        (&mut *tx).execute(for_kind(sql, kind).as_str()).await.map_err(db_err)?;
        let recorded = sqlx::query("INSERT INTO authgate_schema (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(unix_now())
            .execute(&mut *tx)
            .await;
        match recorded {
            Ok(_) => {
                tx.commit().await.map_err(db_err)?;
                tracing::info!(version, "applied store migration");
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                // Another process recorded this version first: ours is void, theirs must be there.
                tx.rollback().await.map_err(db_err)?;
                let mut conn = pool.acquire().await.map_err(db_err)?;
                if !is_applied(&mut conn, version).await? {
                    return Err(StoreError::Unavailable(format!(
                        "migration {version}: version row collided but is not recorded"
                    )));
                }
            }
            Err(e) => return Err(db_err(e)),
        }
    }
    Ok(())
}

/// A transaction that holds the migration lock until it ends.
async fn begin_locked(pool: &AnyPool, kind: StoreKind) -> Result<Transaction<'static, Any>, StoreError> {
    match kind {
        StoreKind::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err),
        StoreKind::Postgres => {
            let mut tx = pool.begin().await.map_err(db_err)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            Ok(tx)
        }
    }
}

async fn is_applied(conn: &mut AnyConnection, version: i64) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT version FROM authgate_schema WHERE version = $1")
        .bind(version)
        .fetch_optional(conn)
        .await
        .map_err(db_err)?;
    match row {
        Some(row) => Ok(row.try_get::<i64, _>(0).map_err(db_err)? == version),
        None => Ok(false),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strictly_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(MIGRATIONS.iter().all(|(v, _)| *v > 0));
    }
}
