//! Debian's nginx as a child process on 127.0.0.1, for the forward-auth tests: the test writes its
//! whole configuration into a temporary directory (pid file, logs, every temp path), nginx runs in
//! the foreground as one process (`daemon off`, `master_process off`, so killing the child leaves no
//! worker behind), and it is killed on drop. A missing nginx fails the test, saying how to install it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::client::Reply;
use super::logscan;

pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx binary: `nginx` on `PATH`, else Debian's `/usr/sbin/nginx`. Panics when there is none.
pub fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|p| p.is_file())
    });
    let found = on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "nginx is not installed (not on PATH, not /usr/sbin/nginx): the forward-auth tests run \
             the real nginx with its auth_request module. Install Debian's package \
             (`apt-get install nginx`) or run scripts/test, which installs it"
        )
    })
}

impl Nginx {
    /// Start nginx with one `server` on a free 127.0.0.1 port; `server` is the body of that block
    /// (its `location`s), the `listen` line is added here.
    pub async fn start(server: &str) -> Nginx {
        let nginx = binary();
        let mut last = String::new();
        // The port is found by binding :0 and letting go; another process may take it meanwhile,
        // so a start that finds it in use is tried again on another.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = config(dir.path(), port, server);
            std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
            let error_log = dir.path().join("error.log");
            let child = Command::new(&nginx)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(&error_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", nginx.display()));
            let mut started = Nginx {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child,
                dir,
            };
            match started.ready().await {
                Ok(()) => return started,
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("nginx did not start:\n{log}"),
            }
        }
        panic!("nginx found no free port in five tries:\n{last}");
    }

    /// Wait until nginx accepts connections; its error log if it exits or takes over 5 s.
    async fn ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", self.error_log()));
            }
            if TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(5) {
                return Err(format!("not listening after 5 s:\n{}", self.error_log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What nginx has logged (start-up errors, refused auth subrequests).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// A request over plain HTTP/1.1, with `target` sent exactly as given.
    pub async fn call(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        logscan::request(headers, None);
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut b = Request::builder()
            .method(method)
            .uri(target)
            .header("host", format!("app.example:{}", self.addr.port()));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = send.send_request(b.body(Empty::<Bytes>::new()).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        self.call("GET", target, headers).await
    }
}

/// The whole configuration: everything nginx writes goes under `dir`.
fn config(dir: &Path, port: u16, server: &str) -> String {
    let d = dir.display();
    format!(
        r#"
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
{server}
    }}
}}
"#
    )
}
