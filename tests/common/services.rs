//! Throwaway PostgreSQL and Redis servers for integration tests: each on a random free port in its
//! own temporary directory, stopped and deleted on drop. No fixed ports, nothing shared between
//! tests.
//!
//! * [`Postgres`] runs `initdb` + `postgres` from the PostgreSQL installation it finds (`PATH`,
//!   then Debian's `/usr/lib/postgresql/<version>/bin`, newest first). PostgreSQL refuses to run as
//!   root, so when the tests run as root the server processes are spawned with the uid/gid of the
//!   `postgres` system user (or `nobody`) via `std::os::unix::process::CommandExt::{uid, gid}`,
//!   and the temporary directory is chowned to that user. The spawned child *is* the postmaster
//!   (no `su`/`runuser` in between), so stopping it signals exactly the process we started.
//! * [`Redis`] runs `redis-server` directly.
//!
//! `Postgres::start`, `fresh_db` and `restart` are `async` (they must be awaited inside a tokio
//! runtime, e.g. `#[tokio::test]`, either flavour); the blocking work (initdb, waiting for the
//! server) runs on tokio's blocking pool so the test's runtime keeps running. Everything else,
//! including all of `Redis`, is synchronous and returns within milliseconds (start: ~100 ms).
//!
//! Server output goes to log files in the temporary directory; a server that does not come up
//! makes the test panic with the tail of its log. Use [`available`] to give a clear message when
//! the binaries are missing (`scripts/test` installs them).
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How often readiness and shutdown are polled.
const POLL: Duration = Duration::from_millis(50);
const PG_START_TIMEOUT: Duration = Duration::from_secs(30);
const PG_STOP_TIMEOUT: Duration = Duration::from_secs(15);
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);
/// The role `initdb -U` creates; trust authentication, no password.
const PG_USER: &str = "authgate";
const INSTALL_HINT: &str = "run scripts/test, which installs redis-server and postgresql \
     (apt-get install -y --no-install-recommends redis-server postgresql)";

/// A port that was free a moment ago: bind 127.0.0.1:0, read the port, drop the listener.
/// (Start functions retry with another port if a server loses the race for it.)
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Both `redis-server` and a PostgreSQL installation (`initdb` + `postgres`) can be found.
pub fn available() -> bool {
    redis_binary().is_some() && postgres_bin_dir().is_some()
}

// =============================================================================================
// PostgreSQL
// =============================================================================================

/// A private PostgreSQL cluster (`initdb` in a temporary directory) listening on 127.0.0.1 only.
/// Superuser `authgate`, trust authentication. Fast shutdown and directory removal on drop.
pub struct Postgres {
    child: Option<Child>,
    setup: PgSetup,
    port: u16,
    next_db: AtomicU64,
    /// Holds data/, initdb.log, postgres.log and the Unix socket. Declared last: removed after
    /// `Drop::drop` has stopped the server.
    _dir: TempDir,
}

/// Everything needed to (re)launch the server, cloneable onto the blocking pool.
#[derive(Clone, Debug)]
struct PgSetup {
    /// Directory holding `initdb` and `postgres` (same installation).
    bin: PathBuf,
    /// The temporary directory.
    dir: PathBuf,
    /// `Some` when running as root: the unprivileged user the server runs as.
    run_as: Option<RunAs>,
}

impl PgSetup {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }
    /// Unix socket directory; empty (no Unix socket) if the path would exceed sun_path.
    fn socket_dir(&self) -> String {
        let dir = self.dir.to_string_lossy().into_owned();
        if dir.len() + "/.s.PGSQL.65535.lock".len() < 100 {
            dir
        } else {
            String::new()
        }
    }
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(&self.dir)
            .env("LC_ALL", "C") // English messages: bind failures are recognised in the log.
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST")
            .stdin(Stdio::null());
        if let Some(user) = self.run_as {
            // std calls setgroups(0) then setgid/setuid in the child before exec.
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }
}

impl Postgres {
    /// initdb + start on a free port; returns once this server answers over TCP.
    /// Panics (with the server log's tail) if that does not happen within 30 s.
    pub async fn start() -> Postgres {
        on_blocking_pool(Postgres::start_blocking).await
    }

    fn start_blocking() -> Postgres {
        let bin = postgres_bin_dir().unwrap_or_else(|| {
            panic!("PostgreSQL (initdb + postgres) not found on PATH or in /usr/lib/postgresql/*/bin: {INSTALL_HINT}")
        });
        let run_as = unprivileged_user();
        let dir = make_tempdir("authgate-pg-", run_as);
        let setup = PgSetup {
            bin,
            dir: dir.path().to_path_buf(),
            run_as,
        };

        let initdb_log = setup.dir.join("initdb.log");
        let log = File::create(&initdb_log).expect("create initdb.log");
        let status = setup
            .command("initdb")
            .arg("-D")
            .arg(setup.data())
            .args([
                "-U",
                PG_USER,
                "--auth=trust",
                "--no-sync",
                "--locale=C",
                "--encoding=UTF8",
            ])
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", setup.bin.join("initdb").display()));
        if !status.success() {
            panic!(
                "initdb failed ({status}), running as {}:\n{}",
                describe_user(run_as),
                tail(&initdb_log, 40)
            );
        }

        let deadline = Instant::now() + PG_START_TIMEOUT;
        loop {
            let port = free_port();
            match launch_postgres(&setup, port, deadline) {
                Ok(child) => {
                    return Postgres {
                        child: Some(child),
                        setup,
                        port,
                        next_db: AtomicU64::new(1),
                        _dir: dir,
                    };
                }
                Err(Launch::PortTaken) if Instant::now() < deadline => continue,
                Err(Launch::PortTaken) => panic!("PostgreSQL: no free port found within {PG_START_TIMEOUT:?}"),
                Err(Launch::Failed(msg)) => panic!("{msg}"),
            }
        }
    }

    /// URL of the server's `postgres` database (superuser `authgate`). Prefer [`Self::fresh_db`]
    /// for test data.
    pub fn url(&self) -> String {
        pg_url(self.port, "postgres")
    }

    /// Creates a new, empty database with a unique name and returns its URL: tests can share one
    /// server without sharing data.
    pub async fn fresh_db(&self) -> String {
        use sqlx::{Connection, Executor};
        let name = format!("test_{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        let result = async {
            let mut conn = sqlx::PgConnection::connect(&self.url()).await?;
            // A plain &str runs through the simple-query protocol (CREATE DATABASE must not be
            // inside a transaction block).
            conn.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await?;
            conn.close().await
        }
        .await;
        if let Err(e) = result {
            panic!(
                "CREATE DATABASE {name} on port {}: {e}\n{}",
                self.port,
                tail(&self.setup.log(), 30)
            );
        }
        pg_url(self.port, &name)
    }

    /// Fast shutdown (SIGINT to the postmaster: open sessions are terminated), waiting until it has
    /// exited; SIGKILL if it takes longer than 15 s. Idempotent. The data directory is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, "INT", PG_STOP_TIMEOUT);
        }
    }

    /// Starts the server again on the same port and data directory (stopping it first if it is
    /// still running); returns once it answers over TCP. Retries for up to 30 s if the port is busy.
    pub async fn restart(&mut self) {
        self.stop();
        let (setup, port) = (self.setup.clone(), self.port);
        let child = on_blocking_pool(move || {
            let deadline = Instant::now() + PG_START_TIMEOUT;
            loop {
                match launch_postgres(&setup, port, deadline) {
                    Ok(child) => return child,
                    Err(Launch::PortTaken) if Instant::now() < deadline => std::thread::sleep(POLL),
                    Err(Launch::PortTaken) => {
                        panic!(
                            "PostgreSQL restart: port {port} still in use after {PG_START_TIMEOUT:?}\n{}",
                            tail(&setup.log(), 30)
                        )
                    }
                    Err(Launch::Failed(msg)) => panic!("PostgreSQL restart: {msg}"),
                }
            }
        })
        .await;
        self.child = Some(child);
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        // `_dir` (the TempDir) is removed after this.
    }
}

fn pg_url(port: u16, db: &str) -> String {
    format!("postgres://{PG_USER}@127.0.0.1:{port}/{db}")
}

/// Spawns the postmaster on `port` and waits until it answers over TCP with its own data directory.
fn launch_postgres(setup: &PgSetup, port: u16, deadline: Instant) -> Result<Child, Launch> {
    let log_path = setup.log();
    let (log, offset) = open_log(&log_path);
    let mut child = setup
        .command("postgres")
        .arg("-D")
        .arg(setup.data())
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(setup.socket_dir())
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .stdout(log.try_clone().expect("dup log fd"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", setup.bin.join("postgres").display()));

    let url = pg_url(port, "postgres");
    let mut last_error = String::from("no TCP connection yet");
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            let log = read_from(&log_path, offset);
            if is_port_taken(&log) {
                return Err(Launch::PortTaken);
            }
            return Err(Launch::Failed(format!(
                "postgres exited during startup ({status}), port {port}, running as {}:\n{}",
                describe_user(setup.run_as),
                last_lines(&log, 30)
            )));
        }
        if Instant::now() >= deadline {
            stop_child(&mut child, "KILL", Duration::from_secs(5));
            return Err(Launch::Failed(format!(
                "PostgreSQL did not answer on 127.0.0.1:{port} within {PG_START_TIMEOUT:?} \
                 (last error: {last_error}); server log:\n{}",
                last_lines(&read_from(&log_path, offset), 30)
            )));
        }
        if tcp_accepts(port) {
            match data_directory(&url) {
                // Ours, not another test's server that took the port first (ours then exits with
                // "address in use", seen above on the next turn).
                Ok(dir) if same_path(Path::new(&dir), &setup.data()) => return Ok(child),
                Ok(dir) => last_error = format!("port {port} is served from another data directory, {dir}"),
                Err(e) => last_error = e,
            }
        }
        std::thread::sleep(POLL);
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    fs::canonicalize(a)
        .ok()
        .zip(fs::canonicalize(b).ok())
        .is_some_and(|(a, b)| a == b)
}

/// Connects with sqlx and asks the server for its data directory, on a helper thread with its own
/// current-thread runtime (so this works from any context, including a tokio blocking-pool thread).
fn data_directory(url: &str) -> Result<String, String> {
    let url = url.to_owned();
    std::thread::spawn(move || -> Result<String, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        rt.block_on(async {
            use sqlx::Connection;
            let check = async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                let dir: String = sqlx::query_scalar("SHOW data_directory").fetch_one(&mut conn).await?;
                conn.close().await?;
                Ok::<String, sqlx::Error>(dir)
            };
            match tokio::time::timeout(Duration::from_secs(5), check).await {
                Ok(Ok(dir)) => Ok(dir),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connect + SHOW data_directory timed out after 5 s".into()),
            }
        })
    })
    .join()
    .unwrap_or_else(|_| Err("readiness check panicked".into()))
}

/// The directory holding both `initdb` and `postgres` of one installation: `PATH` first
/// (symlinks resolved, so /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin works), then
/// Debian's /usr/lib/postgresql/<version>/bin (newest first), RHEL's /usr/pgsql-<version>/bin and
/// /usr/local/pgsql/bin.
fn postgres_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"));
    if let Some(initdb) = find_in_path("initdb") {
        let real = fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|d| has_both(d)) {
            return Some(dir.to_path_buf());
        }
    }
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    for (parent, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let Ok(entries) = fs::read_dir(parent) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix(prefix) else {
                continue;
            };
            let key: Vec<u32> = version.split('.').map_while(|p| p.parse().ok()).collect();
            let bin = entry.path().join("bin");
            if !key.is_empty() && has_both(&bin) {
                versioned.push((key, bin));
            }
        }
    }
    versioned.sort();
    if let Some((_, bin)) = versioned.pop() {
        return Some(bin);
    }
    let local = PathBuf::from("/usr/local/pgsql/bin");
    has_both(&local).then_some(local)
}

// =============================================================================================
// Redis
// =============================================================================================

/// A private `redis-server` on 127.0.0.1, no persistence, working directory in a tempdir.
/// Killed on drop.
pub struct Redis {
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    /// Holds redis.log (and would hold dump files, which are disabled). Removed after drop.
    dir: TempDir,
}

impl Redis {
    /// Starts on a free port; returns once it answers `INFO` with its own process id. Panics (with the log's tail)
    /// if that does not happen within 10 s.
    pub fn start() -> Redis {
        let bin = redis_binary().unwrap_or_else(|| panic!("redis-server not found on PATH: {INSTALL_HINT}"));
        let dir = make_tempdir("authgate-redis-", None);
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            let port = free_port();
            match launch_redis(&bin, dir.path(), port, deadline) {
                Ok(child) => {
                    return Redis {
                        child: Some(child),
                        bin,
                        port,
                        dir,
                    };
                }
                Err(Launch::PortTaken) if Instant::now() < deadline => continue,
                Err(Launch::PortTaken) => panic!("redis-server: no free port found within {REDIS_START_TIMEOUT:?}"),
                Err(Launch::Failed(msg)) => panic!("{msg}"),
            }
        }
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL and reap, so the port refuses connections when this returns. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port (killing the running server first, if any), retrying for up
    /// to 10 s while the port is still in use; returns once it answers `INFO` with its own process id.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            match launch_redis(&self.bin, self.dir.path(), self.port, deadline) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(Launch::PortTaken) if Instant::now() < deadline => std::thread::sleep(POLL),
                Err(Launch::PortTaken) => panic!(
                    "redis-server restart: port {} still in use after {REDIS_START_TIMEOUT:?}\n{}",
                    self.port,
                    tail(&self.dir.path().join("redis.log"), 30)
                ),
                Err(Launch::Failed(msg)) => panic!("redis-server restart: {msg}"),
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn launch_redis(bin: &Path, dir: &Path, port: u16, deadline: Instant) -> Result<Child, Launch> {
    let log_path = dir.join("redis.log");
    let (log, offset) = open_log(&log_path);
    let mut child = Command::new(bin)
        .arg("--port")
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log fd"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            let log = read_from(&log_path, offset);
            if is_port_taken(&log) {
                return Err(Launch::PortTaken);
            }
            return Err(Launch::Failed(format!(
                "redis-server exited during startup ({status}), port {port}:\n{}",
                last_lines(&log, 30)
            )));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Launch::Failed(format!(
                "redis-server did not answer INFO on 127.0.0.1:{port} within {REDIS_START_TIMEOUT:?}; log:\n{}",
                last_lines(&read_from(&log_path, offset), 30)
            )));
        }
        // Ours, not another test's server that took the port first (ours then exits with "address
        // in use", seen above on the next turn).
        if redis_pid(port) == Some(child.id()) {
            return Ok(child);
        }
        std::thread::sleep(POLL);
    }
}

/// The process id of the Redis server answering on `port`, from `INFO server` (raw RESP).
fn redis_pid(port: u16) -> Option<u32> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&reply);
        if let Some(rest) = text.split("process_id:").nth(1)
            && let Some((pid, _)) = rest.split_once("\r\n")
        {
            return pid.parse().ok();
        }
        if text.starts_with('-') || reply.len() > 64 * 1024 {
            return None; // an error (still loading, say), or not Redis
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
}

fn redis_binary() -> Option<PathBuf> {
    find_in_path("redis-server").or_else(|| {
        [
            "/usr/bin/redis-server",
            "/usr/local/bin/redis-server",
            "/usr/sbin/redis-server",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| is_executable(p))
    })
}

// =============================================================================================
// Shared helpers
// =============================================================================================

enum Launch {
    /// The server exited because the port was taken (lost the `free_port` race, or TIME_WAIT).
    PortTaken,
    /// Anything else: a complete panic message.
    Failed(String),
}

fn is_port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

/// The unprivileged account a root process runs PostgreSQL as.
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// `None` when not root (servers run as ourselves); otherwise the `postgres` system user (created
/// by Debian's postgresql-common), falling back to `nobody`.
fn unprivileged_user() -> Option<RunAs> {
    if effective_uid() != 0 {
        return None;
    }
    let user = ["postgres", "nobody"]
        .into_iter()
        .find_map(lookup_user)
        .unwrap_or_else(|| {
            panic!("running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL as")
        });
    Some(user)
}

fn describe_user(run_as: Option<RunAs>) -> String {
    match run_as {
        Some(u) => format!("uid {} gid {}", u.uid, u.gid),
        None => format!("uid {} (ourselves)", effective_uid()),
    }
}

fn effective_uid() -> u32 {
    // /proc/self/status: "Uid:\t<real>\t<effective>\t<saved>\t<fs>"
    let from_proc = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
    });
    from_proc
        .or_else(|| {
            let out = Command::new("id").arg("-u").output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        })
        .expect("cannot determine the effective uid")
}

/// uid and gid of `name` from `getent passwd` (NSS-aware), else /etc/passwd.
fn lookup_user(name: &str) -> Option<RunAs> {
    let parse = |line: &str| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && fields[0] == name)
            .then(|| {
                Some(RunAs {
                    uid: fields[2].parse().ok()?,
                    gid: fields[3].parse().ok()?,
                })
            })
            .flatten()
    };
    let getent = Command::new("getent")
        .args(["passwd", name])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().find_map(parse));
    getent.or_else(|| fs::read_to_string("/etc/passwd").ok()?.lines().find_map(parse))
}

/// A tempdir owned by `owner` when given. When dropping privileges, it goes under a directory the
/// unprivileged user can traverse (the system temp dir, else /tmp).
fn make_tempdir(prefix: &str, owner: Option<RunAs>) -> TempDir {
    let mut base = std::env::temp_dir();
    if owner.is_some() && !world_traversable(&base) {
        base = PathBuf::from("/tmp");
    }
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("create a temporary directory in {}: {e}", base.display()));
    if let Some(user) = owner {
        std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {} to uid {}: {e}", dir.path().display(), user.uid));
    }
    dir
}

fn world_traversable(dir: &Path) -> bool {
    let Ok(dir) = fs::canonicalize(dir) else { return false };
    dir.ancestors().all(|d| {
        fs::metadata(d)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn tcp_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(1)).is_ok()
}

/// Opens (appending) a server log; returns it with its length before this launch, so that only
/// this launch's output is inspected.
fn open_log(path: &Path) -> (File, u64) {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let offset = file.metadata().map(|m| m.len()).unwrap_or(0);
    (file, offset)
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(offset)).is_ok() && f.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

fn tail(path: &Path, lines: usize) -> String {
    last_lines(&read_from(path, 0), lines)
}

fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let shown = all[all.len().saturating_sub(lines)..].join("\n");
    if shown.is_empty() {
        "(log is empty)".into()
    } else {
        shown
    }
}

/// Sends `signal` (by pid, via kill(1); SIGKILL through std if that fails), then waits up to
/// `timeout` for exit, escalating to SIGKILL. Never panics (used from Drop).
pub fn stop_child(child: &mut Child, signal: &str, timeout: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let signalled = signal != "KILL"
        && Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if signalled {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(POLL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs blocking work on tokio's blocking pool; a panic there is re-raised here unchanged.
async fn on_blocking_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task failed: {e}"),
    }
}
