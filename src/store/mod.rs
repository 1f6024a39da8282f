//! Users, API tokens and revoked JWT ids, kept in SQLite or PostgreSQL behind one `sqlx::AnyPool`.
//!
//! The rule this module keeps: one set of portable queries for both databases (`$n` placeholders,
//! TEXT ids, BIGINT unix seconds, BIGINT 0/1 booleans), and every database error leaves through
//! `db_err` as a short message that never carries a bound value, a password hash or a token hash.
//! The pool gives up on a connection after 3 s, so a store that is down fails fast (the gateway
//! answers 503) instead of queueing requests.

pub mod access;
pub mod backend_keys;
pub mod changes;
pub mod grants;
pub mod identities;
mod revocations;
mod schema;
pub mod sessions;
mod tokens;
mod users;

pub mod cache;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::error::ErrorKind;
use sqlx::{AnyConnection, AnyPool};

/// A boxed, sendable future borrowing a connection (what `after_connect` wants).
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a query waits for a pooled connection before the store counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// SQLite serialises writers; a few connections are plenty (readers run in parallel under WAL).
const SQLITE_MAX_CONNECTIONS: u32 = 8;
const POSTGRES_MAX_CONNECTIONS: u32 = 16;
/// How long SQLite waits for another connection's write lock before reporting `SQLITE_BUSY`.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5000;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("not found")]
    NotFound,
    /// Connection trouble, timeouts and any other database error. The message is safe to log: it
    /// never contains a secret, a bound value or a password hash.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// A user account as stored.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub username_norm: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: i64,
    pub disabled: bool,
    pub token_epoch: i64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("username_norm", &self.username_norm)
            .field("email", &self.email)
            .field("password_hash", &"***")
            .field("created_at", &self.created_at)
            .field("disabled", &self.disabled)
            .field("token_epoch", &self.token_epoch)
            .finish()
    }
}

/// A user to insert; `disabled` starts false and `token_epoch` at 0.
pub struct NewUser<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub username_norm: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub created_at: i64,
}

/// An API token as stored: only its hash, never the token itself.
#[derive(Debug, Clone)]
pub struct ApiTokenRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// Its scopes, as created (`["full"]` for a token made before scopes existed). A stored value
    /// that cannot be read is an empty list: a token that may do nothing.
    pub scopes: Vec<String>,
}

/// An API token to insert; `last_used_at` starts empty.
pub struct NewApiToken<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// Checked already (`accounts::rules::scopes`).
    pub scopes: &'a [String],
}

/// Store calls that failed (not "not found" or "already exists"), exported as
/// `authgate_store_errors_total`. Process-wide: every gateway in a process shares one store kind.
pub static ERRORS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// A connection pool plus the kind of database behind it. Cloning shares the pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    kind: StoreKind,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL (and its password) is deliberately not kept, so it cannot be printed.
        f.debug_struct("Store")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

const USER_COLUMNS: &str = "id, username, username_norm, email, password_hash, created_at, disabled, token_epoch";
const TOKEN_COLUMNS: &str = "id, user_id, name, token_hash, created_at, expires_at, last_used_at, scopes";

impl Store {
    /// Connect to `url` (`sqlite:…` or `postgres://…`) and apply pending migrations.
    ///
    /// For SQLite the database file's directory is created when missing, and every connection
    /// runs with WAL, `busy_timeout` and foreign keys on.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let kind = kind_of(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let options = match kind {
            StoreKind::Sqlite => {
                let options = options.after_connect(|conn, _meta| sqlite_pragmas(conn));
                match sqlite_path(url) {
                    Some(path) => {
                        prepare_sqlite_file(&path)?;
                        options.max_connections(SQLITE_MAX_CONNECTIONS)
                    }
                    // Through the Any driver every new connection to `:memory:` would open a
                    // fresh, empty database: keep exactly one connection, forever.
                    None => options
                        .min_connections(1)
                        .max_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None),
                }
            }
            StoreKind::Postgres => options.max_connections(POSTGRES_MAX_CONNECTIONS),
        };
        let pool = options.connect(url).await.map_err(db_err)?;
        schema::migrate(&pool, kind).await?;
        let store = Store { pool, kind };
        store.backfill_skeletons().await?;
        Ok(store)
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// One round trip to the database (readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }
}

fn found(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

fn user_from_row(r: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: r.try_get("id").map_err(db_err)?,
        username: r.try_get("username").map_err(db_err)?,
        username_norm: r.try_get("username_norm").map_err(db_err)?,
        email: r.try_get("email").map_err(db_err)?,
        password_hash: r.try_get("password_hash").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        disabled: r.try_get::<i64, _>("disabled").map_err(db_err)? != 0,
        token_epoch: r.try_get("token_epoch").map_err(db_err)?,
    })
}

fn token_from_row(r: &AnyRow) -> Result<ApiTokenRow, StoreError> {
    Ok(ApiTokenRow {
        id: r.try_get("id").map_err(db_err)?,
        user_id: r.try_get("user_id").map_err(db_err)?,
        name: r.try_get("name").map_err(db_err)?,
        token_hash: r.try_get("token_hash").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        expires_at: r.try_get("expires_at").map_err(db_err)?,
        last_used_at: r.try_get("last_used_at").map_err(db_err)?,
        scopes: serde_json::from_str(&r.try_get::<String, _>("scopes").map_err(db_err)?).unwrap_or_default(),
    })
}

/// The one place a `sqlx::Error` becomes a [`StoreError`].
///
/// Unique violations are [`StoreError::Conflict`], foreign-key violations (a row naming a user
/// that does not exist) [`StoreError::NotFound`]; everything else is [`StoreError::Unavailable`]
/// with a short description. Database messages are kept (they name constraints and tables, which
/// helps the operator) except for SQLSTATE class 22, whose messages can quote a bound value.
fn db_err(e: sqlx::Error) -> StoreError {
    let text = match e {
        sqlx::Error::Database(d) => match d.kind() {
            ErrorKind::UniqueViolation => return StoreError::Conflict,
            ErrorKind::ForeignKeyViolation => return StoreError::NotFound,
            _ => {
                let code = d.code().map(|c| c.into_owned()).unwrap_or_else(|| "?".to_owned());
                if code.starts_with("22") {
                    format!("database error {code}")
                } else {
                    format!("database error {code}: {}", d.message())
                }
            }
        },
        sqlx::Error::RowNotFound => return StoreError::NotFound,
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".to_owned(),
        sqlx::Error::PoolClosed => "connection pool is closed".to_owned(),
        sqlx::Error::Io(io) => format!("i/o error: {}", io.kind()),
        sqlx::Error::Tls(_) => "TLS error talking to the database".to_owned(),
        sqlx::Error::Protocol(_) => "database protocol error".to_owned(),
        sqlx::Error::Configuration(c) => format!("bad database url or options: {c}"),
        sqlx::Error::ColumnNotFound(c) => format!("column {c} not found"),
        sqlx::Error::ColumnDecode { index, .. } => format!("cannot decode column {index}"),
        sqlx::Error::WorkerCrashed => "database worker crashed".to_owned(),
        sqlx::Error::BeginFailed => "could not begin a transaction".to_owned(),
        // `sqlx::Error` is non-exhaustive; the rest are encoding and driver faults.
        _ => "database driver error".to_owned(),
    };
    ERRORS.inc();
    StoreError::Unavailable(text)
}

/// The database kind named by the url's scheme.
fn kind_of(url: &str) -> Result<StoreKind, StoreError> {
    let Some((scheme, _)) = url.split_once(':') else {
        return Err(StoreError::Unavailable(
            "database url has no scheme; expected sqlite:… or postgres://…".to_owned(),
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => Ok(StoreKind::Sqlite),
        "postgres" | "postgresql" => Ok(StoreKind::Postgres),
        _ => Err(StoreError::Unavailable(format!(
            "unsupported database url scheme {:?}; expected sqlite:… or postgres://…",
            // The scheme only: the rest of a url may carry a password.
            scheme.chars().take(32).collect::<String>()
        ))),
    }
}

/// Key of the PostgreSQL advisory lock that serialises adding users ("newuser" in ASCII).
const PG_NEW_USER_LOCK: i64 = 0x006e_6577_7573_6572;

/// The file a SQLite url opens, or `None` for in-memory databases (and for other urls). The name
/// is read by sqlx's own parser, which percent-decodes it, so the file made ready here is the file
/// SQLite opens (`my%20data/a.db` is `my data/a.db`).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty() || path == ":memory:" || params.split('&').any(|p| p == "mode=memory");
    if in_memory {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_owned())
}

/// Make ready the SQLite file and its directory, readable by the gateway's user only: the file
/// holds password and token hashes. A directory the gateway creates is 0700; the database file is
/// created 0600 before SQLite opens it, and SQLite gives its `-wal` and `-shm` files the same mode.
/// An existing file that others can read is tightened, with a warning.
fn prepare_sqlite_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let unavailable = |what: &str, p: &Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot {what} {}: {e}", p.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| unavailable("create database directory", dir, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| unavailable("create database file", path, e))?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for file in [path, Path::new(&wal), Path::new(&shm)] {
        let Ok(meta) = std::fs::metadata(file) else { continue };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|e| unavailable("restrict the mode of", file, e))?;
            tracing::warn!(file = %file.display(), was = %format_args!("{:o}", mode & 0o777), "database file was readable by others; now 0600");
        }
    }
    Ok(())
}

/// Per-connection SQLite settings: wait for locks, write-ahead log, enforce foreign keys.
///
/// Switching a database into WAL needs an exclusive lock that `busy_timeout` does not wait for,
/// so when another process is doing the same at the same moment the switch is retried briefly.
fn sqlite_pragmas(conn: &mut AnyConnection) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let busy = format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}");
        sqlx::query(&busy).execute(&mut *conn).await?;
        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
        let mut attempts = 0;
        loop {
            let mode: String = sqlx::query("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
            if mode.eq_ignore_ascii_case("wal") || mode.eq_ignore_ascii_case("memory") {
                return Ok(());
            }
            match sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&mut *conn)
                .await
            {
                Ok(_) => return Ok(()),
                Err(sqlx::Error::Database(_)) if attempts < 40 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gated users as the full load streams them (every epoch move counts), sorted.
    async fn gates(store: &Store) -> Vec<(String, bool, i64)> {
        let mut out = Vec::new();
        store
            .each_gated_user(0, |(id, disabled, epoch, _)| out.push((id, disabled, epoch)))
            .await
            .unwrap();
        out.sort();
        out
    }

    /// The live revocations as the full load streams them, sorted.
    async fn jtis(store: &Store, cutoff: i64) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        store
            .each_live_jti(cutoff, |jti, exp| out.push((jti.to_owned(), exp)))
            .await
            .unwrap();
        out.sort();
        out
    }

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/dir/authgate.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        (dir, store)
    }

    fn new_user<'a>(id: &'a str, norm: &'a str, created_at: i64) -> NewUser<'a> {
        NewUser {
            id,
            username: norm,
            username_norm: norm,
            email: "someone@example.com",
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            created_at,
        }
    }

    fn new_token<'a>(id: &'a str, user_id: &'a str, hash: &'a str, expires_at: Option<i64>) -> NewApiToken<'a> {
        NewApiToken {
            id,
            user_id,
            name: "ci",
            token_hash: hash,
            created_at: 100,
            expires_at,
            scopes: &[],
        }
    }

    #[tokio::test]
    async fn migrations_are_idempotent_across_connects() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/authgate.db?mode=rwc", dir.path().display());
        let first = Store::connect(&url).await.unwrap();
        first.create_user(&new_user("u1", "alice", 1)).await.unwrap();
        let second = Store::connect(&url).await.unwrap();
        assert_eq!(second.kind(), StoreKind::Sqlite);
        second.ping().await.unwrap();
        assert!(second.user_by_norm("alice").await.unwrap().is_some());
        let versions: Vec<i64> = sqlx::query("SELECT version FROM authgate_schema ORDER BY version")
            .fetch_all(&second.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get(0).unwrap())
            .collect();
        let expected: Vec<i64> = schema::MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, expected);
    }

    #[tokio::test]
    async fn concurrent_connects_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/authgate.db?mode=rwc", dir.path().display());
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::connect(&url).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn unsupported_scheme_is_named() {
        let err = Store::connect("mysql://root:hunter2@localhost/db").await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unsupported database url scheme \"mysql\""), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(Store::connect("no-scheme-here").await.is_err());
    }

    #[tokio::test]
    async fn the_sqlite_files_and_a_created_directory_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, store) = temp_store().await;
        // A write makes sure the WAL and shared-memory files exist.
        store.add_user("m", "m", "m@example.com", "h").await.unwrap();
        let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let db = dir.path().join("nested/dir/authgate.db");
        assert_eq!(mode(db.clone()), 0o600);
        assert_eq!(mode(db.with_file_name("authgate.db-wal")), 0o600);
        assert_eq!(mode(db.with_file_name("authgate.db-shm")), 0o600);
        assert_eq!(mode(dir.path().join("nested")), 0o700);
        assert_eq!(mode(dir.path().join("nested/dir")), 0o700);
        drop(store);

        // An existing database that others can read is tightened.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let _store = Store::connect(&url).await.unwrap();
        assert_eq!(mode(db), 0o600);
    }

    #[test]
    fn sqlite_paths_are_found_in_urls() {
        assert_eq!(
            sqlite_path("sqlite://data/authgate.db?mode=rwc").as_deref(),
            Some(Path::new("data/authgate.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/a.db").as_deref(),
            Some(Path::new("/var/lib/a.db"))
        );
        assert_eq!(sqlite_path("sqlite:a.db").as_deref(), Some(Path::new("a.db")));
        assert_eq!(
            sqlite_path("sqlite://my%20data/a%3Fb.db?mode=rwc").as_deref(),
            Some(Path::new("my data/a?b.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://x.db?mode=memory"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    #[tokio::test]
    async fn in_memory_sqlite_works() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.create_user(&new_user("u1", "alice", 1)).await.unwrap();
        assert!(store.user_by_id("u1").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn created_user_can_be_looked_up() {
        let (_dir, store) = temp_store().await;
        let created = store.create_user(&new_user("u1", "alice", 10)).await.unwrap();
        let by_norm = store.user_by_norm("alice").await.unwrap().unwrap();
        let by_id = store.user_by_id("u1").await.unwrap().unwrap();
        for u in [&created, &by_norm, &by_id] {
            assert_eq!(u.id, "u1");
            assert_eq!(u.username_norm, "alice");
            assert_eq!(u.email, "someone@example.com");
            assert_eq!(u.password_hash, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
            assert_eq!(u.created_at, 10);
            assert!(!u.disabled);
            assert_eq!(u.token_epoch, 0);
        }
        assert!(store.user_by_norm("bob").await.unwrap().is_none());
        assert!(store.user_by_id("u2").await.unwrap().is_none());

        store.create_user(&new_user("u3", "carol", 5)).await.unwrap();
        store.create_user(&new_user("u2", "bob", 10)).await.unwrap();
        let order: Vec<String> = store
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username_norm)
            .collect();
        assert_eq!(order, ["carol", "alice", "bob"]);

        store.set_password_hash("u1", "$argon2id$new").await.unwrap();
        assert_eq!(
            store.user_by_id("u1").await.unwrap().unwrap().password_hash,
            "$argon2id$new"
        );
        assert!(matches!(
            store.set_password_hash("nobody", "x").await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn user_debug_masks_the_password_hash() {
        let (_dir, store) = temp_store().await;
        let user = store.create_user(&new_user("u1", "alice", 10)).await.unwrap();
        let text = format!("{user:?}");
        assert!(
            text.contains("password_hash: \"***\"") && !text.contains("argon2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn duplicate_username_norm_is_conflict() {
        let (_dir, store) = temp_store().await;
        store.create_user(&new_user("u1", "alice", 1)).await.unwrap();
        let again = store.create_user(&new_user("u2", "alice", 2)).await;
        assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
        let same_id = store.create_user(&new_user("u1", "bob", 2)).await;
        assert!(matches!(same_id, Err(StoreError::Conflict)), "{same_id:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_signups_with_one_name_give_one_user() {
        let (_dir, store) = temp_store().await;
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = format!("u{i}");
                    store.create_user(&new_user(&id, "alice", i)).await
                })
            })
            .collect();
        let (mut ok, mut conflict) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::Conflict) => conflict += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!((ok, conflict), (1, 49));
        assert_eq!(store.list_users().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn epoch_bumps_and_disabling_show_in_gates() {
        let (_dir, store) = temp_store().await;
        store.create_user(&new_user("u1", "alice", 1)).await.unwrap();
        store.create_user(&new_user("u2", "bob", 2)).await.unwrap();
        store.create_user(&new_user("u3", "carol", 3)).await.unwrap();
        assert!(gates(&store).await.is_empty());

        assert_eq!(store.bump_token_epoch("u1", None).await.unwrap(), 1);
        assert_eq!(store.bump_token_epoch("u1", None).await.unwrap(), 2);
        assert!(matches!(
            store.bump_token_epoch("nobody", None).await,
            Err(StoreError::NotFound)
        ));
        store.set_disabled("u2", true).await.unwrap();
        assert!(matches!(
            store.set_disabled("nobody", true).await,
            Err(StoreError::NotFound)
        ));

        assert!(store.user_by_id("u2").await.unwrap().unwrap().disabled);
        assert_eq!(store.user_by_id("u1").await.unwrap().unwrap().token_epoch, 2);
        assert_eq!(
            gates(&store).await,
            [("u1".to_owned(), false, 2), ("u2".to_owned(), true, 0)]
        );

        store.set_disabled("u2", false).await.unwrap();
        assert!(!store.user_by_id("u2").await.unwrap().unwrap().disabled);
        assert_eq!(gates(&store).await, [("u1".to_owned(), false, 2)]);
    }

    #[tokio::test]
    async fn a_token_keeps_its_scopes_and_one_made_before_scopes_is_full() {
        let (_dir, store) = temp_store().await;
        store.create_user(&new_user("u1", "alice", 1)).await.unwrap();
        let scopes = ["read".to_owned(), "ingest".to_owned()];
        let made = store
            .create_api_token(&NewApiToken {
                scopes: &scopes,
                ..new_token("t1", "u1", "h1", None)
            })
            .await
            .unwrap();
        assert_eq!(made.scopes, scopes);
        assert_eq!(store.api_token_by_hash("h1").await.unwrap().unwrap().scopes, scopes);
        // A row written without the column (as before migration 7) reads as `full`.
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at) VALUES ('t0', 'u1', 'old', 'h0', 1)",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        assert_eq!(store.api_token_by_hash("h0").await.unwrap().unwrap().scopes, ["full"]);
        // A value that cannot be read is no scope at all, never `full`.
        sqlx::query("UPDATE api_tokens SET scopes = 'not json' WHERE id = 't0'")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(store.api_token_by_hash("h0").await.unwrap().unwrap().scopes.is_empty());
        let listed: Vec<Vec<String>> = store
            .list_api_tokens("u1")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.scopes)
            .collect();
        assert_eq!(listed, [vec![], scopes.to_vec()]);
    }

    #[tokio::test]
    async fn api_tokens_are_created_listed_touched_and_deleted() {
        let (_dir, store) = temp_store().await;
        store.create_user(&new_user("u1", "alice", 1)).await.unwrap();
        store.create_user(&new_user("u2", "bob", 2)).await.unwrap();

        let created = store
            .create_api_token(&new_token("t1", "u1", "h1", Some(500)))
            .await
            .unwrap();
        assert_eq!(created.last_used_at, None);
        store
            .create_api_token(&new_token("t2", "u1", "h2", None))
            .await
            .unwrap();
        store
            .create_api_token(&new_token("t3", "u2", "h3", None))
            .await
            .unwrap();
        let dup = store.create_api_token(&new_token("t4", "u2", "h1", None)).await;
        assert!(matches!(dup, Err(StoreError::Conflict)), "{dup:?}");
        let orphan = store.create_api_token(&new_token("t5", "nobody", "h5", None)).await;
        assert!(matches!(orphan, Err(StoreError::NotFound)), "{orphan:?}");

        let found = store.api_token_by_hash("h1").await.unwrap().unwrap();
        assert_eq!(
            (found.id.as_str(), found.user_id.as_str(), found.name.as_str()),
            ("t1", "u1", "ci")
        );
        assert_eq!(
            (found.created_at, found.expires_at, found.last_used_at),
            (100, Some(500), None)
        );
        assert!(store.api_token_by_hash("nope").await.unwrap().is_none());

        store.touch_api_token("t1", 123).await.unwrap();
        assert_eq!(
            store.api_token_by_hash("h1").await.unwrap().unwrap().last_used_at,
            Some(123)
        );
        store.touch_api_token("gone", 123).await.unwrap();

        let ids: Vec<String> = store
            .list_api_tokens("u1")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert!(store.list_api_tokens("nobody").await.unwrap().is_empty());

        assert_eq!(
            store.delete_api_token("u2", "t1").await.unwrap(),
            None,
            "another user's token"
        );
        assert!(store.api_token_by_hash("h1").await.unwrap().is_some());
        assert_eq!(store.delete_api_token("u1", "t1").await.unwrap().as_deref(), Some("h1"));
        assert_eq!(store.delete_api_token("u1", "t1").await.unwrap(), None);
        assert!(store.api_token_by_hash("h1").await.unwrap().is_none());

        assert_eq!(
            store.delete_api_token_any_user("t3").await.unwrap(),
            Some(("u2".to_owned(), "h3".to_owned()))
        );
        assert_eq!(store.delete_api_token_any_user("t3").await.unwrap(), None);
        let ids: Vec<String> = store
            .list_api_tokens("u1")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["t2"]);
    }

    #[tokio::test]
    async fn revocations_are_idempotent_and_purged_after_expiry() {
        let (_dir, store) = temp_store().await;
        store.create_user(&new_user("u1", "alice", 1)).await.unwrap();
        store.revoke_jti("j1", "u1", 100).await.unwrap();
        store.revoke_jti("j1", "u1", 100).await.unwrap();
        store.revoke_jti("j2", "u1", 200).await.unwrap();
        store
            .create_api_token(&new_token("t1", "u1", "h1", Some(150)))
            .await
            .unwrap();
        store
            .create_api_token(&new_token("t2", "u1", "h2", None))
            .await
            .unwrap();

        assert_eq!(jtis(&store, 50).await, [("j1".to_owned(), 100), ("j2".to_owned(), 200)]);
        assert_eq!(jtis(&store, 100).await, [("j2".to_owned(), 200)]);

        assert_eq!(store.purge_expired(160).await.unwrap(), 2, "j1 and t1");
        assert_eq!(jtis(&store, 0).await, [("j2".to_owned(), 200)]);
        assert!(store.api_token_by_hash("h1").await.unwrap().is_none());
        assert!(
            store.api_token_by_hash("h2").await.unwrap().is_some(),
            "no expiry, kept"
        );
        assert_eq!(store.purge_expired(160).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn unreachable_database_is_unavailable_quickly() {
        let started = std::time::Instant::now();
        let err = Store::connect("postgres://authgate:s3cret@127.0.0.1:1/authgate")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
