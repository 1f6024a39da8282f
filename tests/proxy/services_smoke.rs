//! Smoke tests for tests/common/services.rs: throwaway PostgreSQL and Redis servers.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::common::services::{self, Postgres, Redis};
use sqlx::Connection;

fn require() {
    assert!(
        services::available(),
        "PostgreSQL or redis-server missing: run scripts/test, which installs redis-server and postgresql"
    );
}

async fn select_1(url: &str) -> Result<i32, sqlx::Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
    pool.close().await;
    Ok(one)
}

fn ping(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn postgres_fresh_dbs_stop_and_restart() {
    require();
    let t = Instant::now();
    let mut pg = Postgres::start().await;
    eprintln!("postgres start: {:?} (port {})", t.elapsed(), pg.port());

    let t = Instant::now();
    let a = pg.fresh_db().await;
    let b = pg.fresh_db().await;
    eprintln!("two fresh_db: {:?} ({a}, {b})", t.elapsed());
    assert_ne!(a, b);
    assert!(a.starts_with(&format!("postgres://authgate@127.0.0.1:{}/", pg.port())));
    assert_eq!(select_1(&a).await.unwrap(), 1);
    assert_eq!(select_1(&b).await.unwrap(), 1);

    // Separate data: a table in `a` is not visible in `b`.
    let mut conn_a = sqlx::PgConnection::connect(&a).await.unwrap();
    sqlx::query("CREATE TABLE t (v int)")
        .execute(&mut conn_a)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (42)")
        .execute(&mut conn_a)
        .await
        .unwrap();
    let mut conn_b = sqlx::PgConnection::connect(&b).await.unwrap();
    assert!(sqlx::query("SELECT v FROM t").fetch_one(&mut conn_b).await.is_err());
    drop(conn_b);

    // Down: an open connection is terminated (fast shutdown), new ones are refused.
    let t = Instant::now();
    pg.stop();
    pg.stop(); // idempotent
    eprintln!("postgres stop: {:?}", t.elapsed());
    assert!(sqlx::query("SELECT 1").execute(&mut conn_a).await.is_err());
    let err = TcpStream::connect(("127.0.0.1", pg.port())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // (A single connection, not a pool: PgPoolOptions::connect retries for its 30 s acquire timeout.)
    assert!(sqlx::PgConnection::connect(&a).await.is_err());

    // Back: same port, same data.
    let t = Instant::now();
    pg.restart().await;
    eprintln!("postgres restart: {:?}", t.elapsed());
    assert_eq!(select_1(&a).await.unwrap(), 1);
    assert_eq!(select_1(&b).await.unwrap(), 1);
    let mut conn_a = sqlx::PgConnection::connect(&a).await.unwrap();
    let v: i32 = sqlx::query_scalar("SELECT v FROM t")
        .fetch_one(&mut conn_a)
        .await
        .unwrap();
    assert_eq!(v, 42);
    conn_a.close().await.unwrap();

    // restart() while running stops first.
    pg.restart().await;
    assert_eq!(select_1(&pg.url()).await.unwrap(), 1);

    let port = pg.port();
    let t = Instant::now();
    drop(pg);
    eprintln!("postgres drop: {:?}", t.elapsed());
    assert_eq!(
        TcpStream::connect(("127.0.0.1", port)).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
}

/// Works on a multi-threaded runtime, and with tokio's paused clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_on_multi_thread_runtime() {
    require();
    let pg = Postgres::start().await;
    let url = pg.fresh_db().await;
    assert_eq!(select_1(&url).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn postgres_with_paused_clock() {
    require();
    let pg = Postgres::start().await;
    let url = pg.fresh_db().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn redis_two_servers_kill_and_restart() {
    require();
    let t = Instant::now();
    let mut r1 = Redis::start();
    let r2 = Redis::start();
    eprintln!(
        "two redis start: {:?} (ports {}, {})",
        t.elapsed(),
        r1.port(),
        r2.port()
    );
    assert_ne!(r1.port(), r2.port());
    assert_eq!(r1.url(), format!("redis://127.0.0.1:{}/", r1.port()));
    assert_eq!(ping(r1.port()).unwrap(), "+PONG\r\n");
    assert_eq!(ping(r2.port()).unwrap(), "+PONG\r\n");

    // Open client connection, then kill: the client sees EOF/reset, new connections are refused.
    let mut client = TcpStream::connect(("127.0.0.1", r1.port())).unwrap();
    r1.kill();
    r1.kill(); // idempotent
    let mut buf = [0u8; 8];
    let _ = client.write_all(b"PING\r\n");
    assert!(matches!(client.read(&mut buf), Ok(0) | Err(_)));
    assert_eq!(ping(r1.port()).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    assert_eq!(ping(r2.port()).unwrap(), "+PONG\r\n", "the other server is unaffected");

    let port = r1.port();
    let t = Instant::now();
    r1.restart();
    eprintln!("redis restart: {:?}", t.elapsed());
    assert_eq!(r1.port(), port);
    assert_eq!(ping(r1.port()).unwrap(), "+PONG\r\n");

    drop(r1);
    assert_eq!(ping(port).unwrap_err().kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn free_ports_are_bindable() {
    let p = services::free_port();
    assert_ne!(p, 0);
    std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
}

/// restart() waits for a port that is briefly held by someone else (the "TIME_WAIT"/race path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_waits_for_a_busy_port() {
    require();
    let mut redis = Redis::start();
    let mut pg = Postgres::start().await;
    redis.kill();
    pg.stop();
    let hold = |port: u16| {
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(500));
            drop(l);
        })
    };
    let hr = hold(redis.port());
    let t = Instant::now();
    redis.restart();
    eprintln!("redis restart over a busy port: {:?}", t.elapsed());
    assert!(t.elapsed() >= std::time::Duration::from_millis(400));
    assert_eq!(ping(redis.port()).unwrap(), "+PONG\r\n");
    let hp = hold(pg.port());
    let t = Instant::now();
    pg.restart().await;
    assert!(t.elapsed() >= std::time::Duration::from_millis(400));
    eprintln!("postgres restart over a busy port: {:?}", t.elapsed());
    assert_eq!(select_1(&pg.url()).await.unwrap(), 1);
    hr.join().unwrap();
    hp.join().unwrap();
}
