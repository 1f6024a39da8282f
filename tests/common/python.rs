//! Python from the test virtualenv (`scripts/test` builds `target/pyenv` from
//! tests/differential/requirements.txt): the interpreter, and small servers that print their port on
//! the first line of stdout: backends in `tests/backends/`, relying parties in `tests/clients/`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The virtualenv's Python: `DIFF_TEST_PYTHON`, else `target/pyenv/bin/python`.
pub fn pyenv_python() -> PathBuf {
    let path = std::env::var_os("DIFF_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"));
    assert!(
        path.is_file(),
        "no Python virtualenv at {}: run scripts/test, which creates it from tests/differential/requirements.txt",
        path.display()
    );
    path
}

/// A script of `tests/backends/` or `tests/clients/` run with `args`, listening on the port it
/// printed. Killed on drop.
pub struct PythonBackend {
    child: Child,
    pub port: u16,
}

impl PythonBackend {
    /// `tests/backends/<script>`.
    pub fn start(script: &str, args: &[String]) -> PythonBackend {
        Self::start_in("tests/backends", script, args)
    }

    /// `tests/clients/<script>` (a relying party, say, that serves its own pages).
    pub fn start_client(script: &str, args: &[String]) -> PythonBackend {
        Self::start_in("tests/clients", script, args)
    }

    fn start_in(dir: &str, script: &str, args: &[String]) -> PythonBackend {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(script);
        let mut child = Command::new(pyenv_python())
            .arg(&script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the virtualenv's python runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{} said {line:?}", script.display()));
        PythonBackend { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PythonBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
