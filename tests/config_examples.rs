//! The examples under `config/` stay deployable: every TOML file loads as authgate loads it, the
//! Kubernetes manifests agree with the gateway.toml they mount, and the systemd unit agrees with the
//! config it runs.
//!
//! The rule this file keeps: an example is judged by what authgate itself accepts
//! (`Config::from_figment`), with the test secret merged explicitly rather than through the
//! process environment, which parallel tests share.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use authgate::config::{Config, ConfigError, SecretSource};
use authgate::policy::scopes::{Effect, Scopes};
use authgate::policy::{Access, Caller, Role};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Deserialize;
use serde_norway::Value as Yaml;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

/// Stands in for JWT_SECRET_KEY; long enough for HS256.
const TEST_SECRET: &str = "config-examples-test-secret-0123456789abcdef";

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The files in `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A TOML document as authgate loads a file, with `secret` standing in for JWT_SECRET_KEY.
fn load(toml: &str, secret: Option<&str>) -> Result<Config, ConfigError> {
    let mut figment = Figment::new().merge(Toml::string(toml));
    if let Some(secret) = secret {
        figment = figment.merge(Serialized::default("jwt.secret", secret));
    }
    Config::from_figment(figment)
}

fn load_example(name: &str) -> Config {
    load(&read(&config_dir().join(name)), Some(TEST_SECRET)).unwrap_or_else(|e| panic!("config/{name}: {e}"))
}

/// The file path of a `sqlite:` store url; `None` for other stores.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split_once('?').map_or(rest, |(path, _)| path))
}

// ---------------------------------------------------------------------------------------------
// config/*.toml
// ---------------------------------------------------------------------------------------------

#[test]
fn every_example_toml_loads_with_the_secret_given_from_outside_and_only_then() {
    let examples = files(&config_dir(), ".toml");
    assert!(
        examples.len() >= 2,
        "expected production.toml and sidecar.toml, found {examples:?}"
    );
    for path in &examples {
        let toml = read(path);
        let config = load(&toml, Some(TEST_SECRET)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for key in &config.jwt.keys {
            assert!(
                matches!(key.source, SecretSource::Given(_)),
                "{}: a key is not the secret from the environment: {:?}",
                path.display(),
                key.source
            );
        }
        // Without JWT_SECRET_KEY the file alone must not start: it carries no secret and generates none.
        let err = load(&toml, None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("jwt.secret"),
            "{} starts without a secret: {err:?}",
            path.display()
        );
    }
}

#[test]
fn check_config_accepts_every_example_with_jwt_secret_key_in_the_environment() {
    for path in files(&config_dir(), ".toml") {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("AUTHGATE_") || k.starts_with("JWT_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .env("JWT_SECRET_KEY", TEST_SECRET)
            .arg("check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", path.display());
        assert!(stdout.contains("valid"), "{}: {stdout}", path.display());
        assert!(
            !stdout.contains(TEST_SECRET),
            "{}: the secret was printed",
            path.display()
        );
    }
}

#[test]
fn production_is_https_on_443_with_provisioned_certificates() {
    let c = load_example("production.toml");
    let tls = c
        .tls
        .as_ref()
        .expect("production.toml has no [tls], so it would not serve HTTPS");
    assert!(
        !tls.self_signed_if_missing,
        "production must not generate a certificate"
    );
    assert!(tls.cert.is_absolute() && tls.key.is_absolute(), "{tls:?}");
    assert_eq!(c.server.listen.port(), 443);
    assert!(c.server.hsts.is_some(), "HTTPS answers should carry HSTS");
    assert_eq!(
        c.registration,
        authgate::config::Registration::Closed,
        "production accounts come from the operator"
    );
    assert!(
        c.admin_listen.ip().is_loopback(),
        "admin {} is reachable off the host",
        c.admin_listen
    );
    assert_eq!(c.log.format, authgate::config::LogFormat::Json);
}

#[test]
fn sidecar_is_plaintext_on_loopback_behind_the_mesh() {
    let c = load_example("sidecar.toml");
    assert!(c.tls.is_none(), "the sidecar serves plaintext; the mesh does TLS");
    assert!(
        c.server.listen.ip().is_loopback(),
        "listen {} is off loopback",
        c.server.listen
    );
    assert!(c.upstream.authority.host() == "127.0.0.1" || c.upstream.authority.host() == "localhost");
    assert_eq!(c.upstream.scheme, http::uri::Scheme::HTTP);
    // Kubelet probes come from the node to the pod IP.
    assert!(
        !c.admin_listen.ip().is_loopback(),
        "kubelet cannot probe admin {}",
        c.admin_listen
    );
    // The mesh proxy connects from loopback: 127.0.0.1, or 127.0.0.6 with Istio.
    for peer in [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 6)] {
        assert!(
            c.server
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&IpAddr::V4(peer))),
            "{peer} is not a trusted proxy: {:?}",
            c.server.trusted_proxies
        );
    }
    let store = sqlite_file(c.store.url.expose()).expect("the sidecar example keeps a SQLite store");
    assert!(
        Path::new(store).is_absolute(),
        "store {store} depends on the working directory"
    );
    assert_eq!(c.log.format, authgate::config::LogFormat::Json);
}

#[test]
fn sidecar_with_a_tls_section_added_is_refused() {
    let toml = read(&config_dir().join("sidecar.toml")) + "\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
    let err = load(&toml, Some(TEST_SECRET))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("server.plaintext"),
        "plaintext with [tls] was not refused: {err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// config/kubernetes/*.yaml
// ---------------------------------------------------------------------------------------------

/// Every non-empty YAML document of every manifest, with the file it came from.
fn manifests() -> Vec<(PathBuf, Yaml)> {
    let dir = config_dir().join("kubernetes");
    let paths = files(&dir, ".yaml");
    assert!(!paths.is_empty(), "no manifests in {}", dir.display());
    let mut docs = Vec::new();
    for path in paths {
        let text = read(&path);
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Yaml::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if !value.is_null() {
                docs.push((path.clone(), value));
            }
        }
    }
    docs
}

fn str_at<'a>(v: &'a Yaml, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

fn seq(v: &Yaml) -> &[Yaml] {
    v.as_sequence().map_or(&[], |s| s.as_slice())
}

fn find<'a>(docs: &'a [(PathBuf, Yaml)], kind: &str, name: &str) -> Option<&'a Yaml> {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

/// A container port given as a number or by name.
fn resolve_port(container: &Yaml, port: &Yaml) -> u16 {
    let number = match port {
        Yaml::Number(n) => n.as_u64(),
        Yaml::String(name) => seq(&container["ports"])
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64()),
        _ => None,
    };
    number
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or_else(|| panic!("port {port:?} is not a port of container {:?}", container["name"]))
}

/// The data of a Secret key, from `stringData` or base64 `data`.
fn secret_value(secret: &Yaml, key: &str) -> Option<String> {
    if let Some(s) = secret["stringData"][key].as_str() {
        return Some(s.to_owned());
    }
    use base64::Engine;
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok()
}

#[test]
fn every_kubernetes_document_parses_and_names_its_kind() {
    let docs = manifests();
    for (path, doc) in &docs {
        for field in ["apiVersion", "kind"] {
            assert!(doc[field].is_string(), "{}: a document has no {field}", path.display());
        }
        assert!(
            doc["metadata"]["name"].is_string(),
            "{}: a document has no name",
            path.display()
        );
    }
    for kind in ["Deployment", "ConfigMap", "Secret", "Service"] {
        assert!(docs.iter().any(|(_, d)| d["kind"].as_str() == Some(kind)), "no {kind}");
    }
}

/// A Deployment whose pod runs authgate, with the parts of its manifest the checks read.
struct GatewayPod<'a> {
    /// "FILE: Deployment NAME", for messages.
    at: String,
    docs: &'a [(PathBuf, Yaml)],
    deployment: &'a Yaml,
    pod: &'a Yaml,
    /// The authgate container.
    gateway: &'a Yaml,
    /// Its command and args.
    argv: Vec<&'a str>,
}

/// Every Deployment with a container that runs `authgate`.
fn gateway_pods(docs: &[(PathBuf, Yaml)]) -> Vec<GatewayPod<'_>> {
    let deployments = docs.iter().filter(|(_, d)| d["kind"].as_str() == Some("Deployment"));
    deployments
        .filter_map(|(file, deployment)| {
            let pod = &deployment["spec"]["template"]["spec"];
            seq(&pod["containers"]).iter().find_map(|c| {
                let argv: Vec<&str> = seq(&c["command"])
                    .iter()
                    .chain(seq(&c["args"]))
                    .filter_map(Yaml::as_str)
                    .collect();
                let runs_authgate = argv
                    .first()
                    .is_some_and(|p| Path::new(p).file_name() == Some(OsStr::new("authgate")));
                runs_authgate.then(|| GatewayPod {
                    at: format!(
                        "{}: Deployment {}",
                        file.display(),
                        str_at(&deployment["metadata"]["name"], "metadata.name")
                    ),
                    docs,
                    deployment,
                    pod,
                    gateway: c,
                    argv,
                })
            })
        })
        .collect()
}

impl<'a> GatewayPod<'a> {
    fn volume(&self, name: &str) -> &'a Yaml {
        seq(&self.pod["volumes"])
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{}: no volume {name}", self.at))
    }

    fn mounts(&self) -> &'a [Yaml] {
        seq(&self.gateway["volumeMounts"])
    }

    /// The path after `--config`.
    fn config_path(&self) -> &'a Path {
        let argv = &self.argv;
        let path = argv
            .iter()
            .position(|a| *a == "--config")
            .and_then(|i| argv.get(i + 1).copied())
            .or_else(|| argv.iter().find_map(|a| a.strip_prefix("--config=")))
            .unwrap_or_else(|| panic!("{}: `{}` has no --config", self.at, argv.join(" ")));
        Path::new(path)
    }

    /// The ConfigMap key mounted at the `--config` path (as a subPath file, or in a mounted
    /// directory): the ConfigMap's name and the TOML it holds.
    fn mounted_config(&self) -> (&'a str, &'a str) {
        let config_path = self.config_path();
        let (configmap, key) = self
            .mounts()
            .iter()
            .find_map(|m| {
                let mount_path = Path::new(str_at(&m["mountPath"], "mountPath"));
                let file = match m["subPath"].as_str() {
                    Some(sub) if mount_path == config_path => sub,
                    None if config_path.parent() == Some(mount_path) => config_path.file_name()?.to_str()?,
                    _ => return None,
                };
                let source = &self.volume(str_at(&m["name"], "volumeMounts.name"))["configMap"];
                let key = seq(&source["items"])
                    .iter()
                    .find(|item| item["path"].as_str() == Some(file))
                    .map_or(Some(file), |item| item["key"].as_str())?;
                Some((source["name"].as_str()?, key))
            })
            .unwrap_or_else(|| {
                panic!(
                    "{}: --config {} is not a mounted ConfigMap key",
                    self.at,
                    config_path.display()
                )
            });
        let toml = find(self.docs, "ConfigMap", configmap)
            .and_then(|cm| cm["data"][key].as_str())
            .unwrap_or_else(|| panic!("{}: ConfigMap {configmap} has no key {key}", self.at));
        (configmap, toml)
    }

    /// Kubernetes waits for the preStop hook, then for the whole drain, before it kills.
    fn check_termination_grace(&self, config: &Config) {
        let period = self.pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        let pre_stop = self.gateway["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0);
        let grace = config.server.shutdown_grace;
        assert!(
            Duration::from_secs(period) >= Duration::from_secs(pre_stop) + grace,
            "{}: terminationGracePeriodSeconds {period} < preStop {pre_stop}s + server.shutdown_grace {grace:?}",
            self.at
        );
    }

    /// Readiness and liveness probe the admin listener, which kubelet must be able to reach.
    fn check_probes(&self, config: &Config) {
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &self.gateway[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{}: {probe}", self.at);
            let port = resolve_port(self.gateway, &get["port"]);
            assert_eq!(
                port,
                config.admin_listen.port(),
                "{}: {probe} misses admin.listen",
                self.at
            );
        }
        assert!(
            !config.admin_listen.ip().is_loopback(),
            "{}: kubelet cannot probe loopback",
            self.at
        );
    }

    /// JWT_SECRET_KEY comes from a Secret, never a literal; the example Secret's placeholder
    /// cannot go live.
    fn check_secret(&self, toml: &str) {
        for env in seq(&self.pod["containers"]).iter().flat_map(|c| seq(&c["env"])) {
            let var = env["name"].as_str().unwrap_or_default();
            if var == "JWT_SECRET_KEY" || var.starts_with("AUTHGATE_JWT__") || var.starts_with("AUTHGATE_STORE__") {
                assert!(
                    env.get("value").is_none(),
                    "{}: {var} is a literal in the manifest",
                    self.at
                );
            }
        }
        let reference = seq(&self.gateway["env"])
            .iter()
            .find(|e| e["name"].as_str() == Some("JWT_SECRET_KEY"))
            .map(|e| &e["valueFrom"]["secretKeyRef"])
            .unwrap_or_else(|| panic!("{}: authgate gets no JWT_SECRET_KEY", self.at));
        let name = str_at(&reference["name"], "secretKeyRef.name");
        let key = str_at(&reference["key"], "secretKeyRef.key");
        assert_ne!(
            reference["optional"].as_bool(),
            Some(true),
            "{}: the secret is optional",
            self.at
        );
        let secret = find(self.docs, "Secret", name).unwrap_or_else(|| panic!("{}: no example Secret {name}", self.at));
        let placeholder = secret_value(secret, key).unwrap_or_else(|| panic!("Secret {name} has no {key}"));
        let err = load(toml, Some(&placeholder))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("jwt.secret"),
            "{}: Secret {name}'s placeholder is accepted",
            self.at
        );
    }

    /// A SQLite store lives on a writable volume: the root filesystem is read-only.
    fn check_store_volume(&self, config: &Config) {
        let Some(db) = sqlite_file(config.store.url.expose()) else {
            return;
        };
        let dir = Path::new(db).parent().unwrap_or(Path::new(""));
        assert!(
            dir.is_absolute(),
            "{}: store {db} depends on the working directory",
            self.at
        );
        let writable = self.mounts().iter().any(|m| {
            m["readOnly"].as_bool() != Some(true)
                && m["subPath"].is_null()
                && dir.starts_with(str_at(&m["mountPath"], "mountPath"))
        });
        assert!(writable, "{}: no writable volume holds {db}", self.at);
    }

    /// TLS files are the `tls.crt` and `tls.key` of a mounted `kubernetes.io/tls` Secret, mounted
    /// as a directory so that a renewed certificate arrives in place.
    fn check_tls_mount(&self, config: &Config) {
        let Some(tls) = &config.tls else { return };
        for (path, wanted) in [(&tls.cert, "tls.crt"), (&tls.key, "tls.key")] {
            let key = self.mounts().iter().find_map(|m| {
                let rel = path.strip_prefix(str_at(&m["mountPath"], "mountPath")).ok()?.to_str()?;
                let source = &self.volume(str_at(&m["name"], "volumeMounts.name"))["secret"];
                source["secretName"].as_str()?;
                assert!(
                    m["subPath"].is_null(),
                    "{}: {} is a subPath mount",
                    self.at,
                    path.display()
                );
                seq(&source["items"])
                    .iter()
                    .find(|item| item["path"].as_str() == Some(rel))
                    .map_or(Some(rel), |item| item["key"].as_str())
            });
            assert_eq!(
                key,
                Some(wanted),
                "{}: {} is not a mounted Secret's {wanted}",
                self.at,
                path.display()
            );
        }
    }

    /// A Service selects the pod and reaches the gateway's listener, or its redirect listener,
    /// only: neither the backend nor the admin listener. The redirects name a port a Service
    /// publishes the gateway's listener on.
    fn check_services(&self, config: &Config) {
        let labels = &self.deployment["spec"]["template"]["metadata"]["labels"];
        let selects = |service: &&Yaml| {
            service["spec"]["selector"]
                .as_mapping()
                .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
        };
        let services: Vec<&Yaml> = self
            .docs
            .iter()
            .map(|(_, d)| d)
            .filter(|d| d["kind"].as_str() == Some("Service"))
            .filter(selects)
            .collect();
        assert!(!services.is_empty(), "{}: no Service selects its pods", self.at);
        let listen = config.server.listen.port();
        let redirect = config.server.redirect_http.map(|a| a.port());
        let (mut published, mut redirects) = (Vec::new(), false);
        for port in services.iter().flat_map(|s| seq(&s["spec"]["ports"])) {
            let target = port.get("targetPort").unwrap_or(&port["port"]);
            let target = resolve_port(self.gateway, target);
            assert!(
                target == listen || Some(target) == redirect,
                "{}: a Service bypasses the gateway (port {target})",
                self.at
            );
            if target == listen {
                published.extend(port["port"].as_u64());
            } else {
                redirects = true;
            }
        }
        if redirects {
            let named = config.server.redirect_https_port.unwrap_or(listen);
            assert!(
                published.contains(&u64::from(named)),
                "{}: redirects name port {named}, but the Services publish HTTPS on {published:?}",
                self.at
            );
        }
    }
}

#[test]
fn kubernetes_deployments_agree_with_the_gateway_toml_they_mount() {
    let docs = manifests();
    let pods = gateway_pods(&docs);
    let mut tls_modes = Vec::new();
    for pod in &pods {
        let (configmap, toml) = pod.mounted_config();
        let config = load(toml, Some(TEST_SECRET)).unwrap_or_else(|e| panic!("{}: {configmap}: {e}", pod.at));
        let err = load(toml, None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("jwt.secret"),
            "{}: {configmap} starts without a secret",
            pod.at
        );
        pod.check_termination_grace(&config);
        pod.check_probes(&config);
        pod.check_secret(toml);
        pod.check_store_volume(&config);
        pod.check_tls_mount(&config);
        pod.check_services(&config);
        if config.upstream.authority.host() == "127.0.0.1" {
            let containers = seq(&pod.pod["containers"]).len();
            assert!(
                containers >= 2,
                "{}: upstream is loopback but no backend shares the pod",
                pod.at
            );
        }
        tls_modes.push(config.tls.is_some());
    }
    assert!(tls_modes.contains(&false), "no plaintext sidecar Deployment");
    assert!(tls_modes.contains(&true), "no HTTPS ingress Deployment");
}

#[test]
fn sidecar_configmap_says_what_config_sidecar_toml_says() {
    let docs = manifests();
    let cm = find(&docs, "ConfigMap", "authgate-sidecar").expect("ConfigMap authgate-sidecar");
    let embedded: toml::Value = toml::from_str(str_at(&cm["data"]["gateway.toml"], "gateway.toml")).unwrap();
    let file: toml::Value = toml::from_str(&read(&config_dir().join("sidecar.toml"))).unwrap();
    assert_eq!(
        embedded, file,
        "config/kubernetes/sidecar.yaml and config/sidecar.toml differ"
    );
}

// ---------------------------------------------------------------------------------------------
// config/systemd/authgate.service
// ---------------------------------------------------------------------------------------------

/// A unit file as `(section, key, value)` lines; comments are skipped.
fn unit_lines(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "continuation lines are not expected: {line}");
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        lines.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
    }
    lines
}

/// systemd's time span: bare seconds, or units such as "40s", "1min 30s"; "infinity".
fn timespan(value: &str) -> Duration {
    if value == "infinity" {
        return Duration::MAX;
    }
    match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(value).unwrap_or_else(|e| panic!("time span {value}: {e}")),
    }
}

#[test]
fn systemd_unit_runs_the_production_example_with_room_to_drain() {
    let path = config_dir().join("systemd/authgate.service");
    let text = read(&path);
    let lines = unit_lines(&text);
    let all = |key: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        match all(key).as_slice() {
            [v] => v,
            other => panic!("[Service] {key} is set {} times", other.len()),
        }
    };

    let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert!(exec[0].starts_with('/') && exec[0].ends_with("/authgate"), "{exec:?}");
    let config_path = match exec.as_slice() {
        [_, flag, path] if *flag == "--config" => *path,
        _ => panic!("ExecStart is not `authgate --config PATH`: {exec:?}"),
    };

    // The header names the example that is installed at that path.
    let example = text
        .lines()
        .filter(|l| l.trim_start().starts_with('#') && l.contains(config_path))
        .flat_map(str::split_whitespace)
        .find(|w| w.starts_with("config/") && w.ends_with(".toml"))
        .unwrap_or_else(|| panic!("no comment says which config/*.toml becomes {config_path}"));
    let config = load_example(example.trim_start_matches("config/"));

    assert!(
        timespan(one("TimeoutStopSec")) >= config.server.shutdown_grace,
        "TimeoutStopSec {} < server.shutdown_grace {:?} of {example}",
        one("TimeoutStopSec"),
        config.server.shutdown_grace
    );
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert!(
        all("EnvironmentFile")
            .iter()
            .any(|f| f.trim_start_matches('-').starts_with("/etc/"))
    );
    assert!(
        all("Environment")
            .iter()
            .all(|e| !e.contains("JWT_SECRET_KEY") && !e.contains("AUTHGATE_JWT__")),
        "the unit carries the secret itself"
    );

    // Not root, yet allowed to bind a privileged port when the example listens on one.
    let user = all("User");
    assert!(
        all("DynamicUser") == ["yes"] || user.iter().any(|u| *u != "root" && *u != "0"),
        "runs as root"
    );
    if config.server.listen.port() < 1024 {
        for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
            assert!(
                all(key)
                    .iter()
                    .any(|v| v.split_whitespace().any(|c| c == "CAP_NET_BIND_SERVICE")),
                "{example} listens on {} but {key} lacks CAP_NET_BIND_SERVICE",
                config.server.listen
            );
        }
    }

    // ProtectSystem=strict leaves only the state directory writable: a relative SQLite store must land there.
    let state = format!("/var/lib/{}", one("StateDirectory"));
    if let Some(db) = sqlite_file(config.store.url.expose()) {
        let db = Path::new(db);
        let resolved = if db.is_absolute() {
            db.to_path_buf()
        } else {
            Path::new(one("WorkingDirectory")).join(db)
        };
        assert!(
            resolved.starts_with(&state),
            "store {} is outside {state}",
            resolved.display()
        );
    }

    // The config and TLS files are under the ConfigurationDirectory.
    let etc = PathBuf::from(format!("/etc/{}", one("ConfigurationDirectory")));
    assert!(
        Path::new(config_path).starts_with(&etc),
        "{config_path} is outside {}",
        etc.display()
    );
    if let Some(tls) = &config.tls {
        assert!(
            tls.cert.starts_with(&etc) && tls.key.starts_with(&etc),
            "{tls:?} is outside {}",
            etc.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// config/policy-*.toml: the README's worked examples for RAG Modulo and RAGFlow
// ---------------------------------------------------------------------------------------------

/// What `config` decides for a caller with `role` and `groups` holding `scopes`: the deciding
/// rule's name, and whether the request is forwarded.
fn decide(config: &Config, who: &Who, method: &str, path: &str) -> (String, bool) {
    let policy = &config.policy;
    let access = Access {
        role: who.0,
        groups: who.1.iter().map(|g| Box::from(*g)).collect(),
    };
    let scopes = Scopes::from_names(who.2);
    let caller = Caller {
        user_id: "u-1",
        access: Some(&access),
        scopes: &scopes,
    };
    let method: http::Method = method.parse().unwrap();
    let d = policy.matching(&method, path);
    let allowed = policy.allows(d, &caller, Effect::of(&method, false));
    (policy.label(d).to_owned(), allowed)
}

/// A caller: role, groups, and the credential's scopes (`["full"]` for a login).
type Who = (Role, &'static [&'static str], &'static [&'static str]);
/// Each case: who, method, path, the rule that decides, forwarded or not.
type Case = (Who, &'static str, &'static str, &'static str, bool);

const USER: Who = (Role::User, &[], &["full"]);
const ADMIN: Who = (Role::Admin, &[], &["full"]);

fn check_cases(file: &str, cases: &[Case]) {
    let config = load_example(file);
    for (who, method, path, rule, forwarded) in cases {
        let got = decide(&config, who, method, path);
        assert_eq!(
            got,
            (rule.to_string(), *forwarded),
            "config/{file}: {who:?} {method} {path}"
        );
    }
}

#[test]
fn the_rag_modulo_example_keeps_its_rbac_mapping() {
    let read_token: Who = (Role::Admin, &[], &["read"]);
    check_cases(
        "policy-rag-modulo.toml",
        &[
            (
                USER,
                "GET",
                "/api/collections/7",
                "collections: everyone signed in reads",
                true,
            ),
            (
                USER,
                "GET",
                "/api/collections",
                "collections: everyone signed in reads",
                true,
            ),
            (USER, "DELETE", "/api/collections/7", "collections: admins write", false),
            (USER, "PUT", "/api/%63ollections/7", "collections: admins write", false),
            (ADMIN, "DELETE", "/api/collections/7", "collections: admins write", true),
            (
                read_token,
                "DELETE",
                "/api/collections/7",
                "collections: admins write",
                false,
            ),
            (read_token, "GET", "/api/dashboard/stats", "operators only", true),
            (USER, "POST", "/api/users/u-1/pipelines", "a user's own resources", true),
            (
                USER,
                "DELETE",
                "/api/user-collections/u-1/c-2",
                "a user's own resources",
                true,
            ),
            (USER, "POST", "/api/search", "search, chat and conversations", true),
            (USER, "GET", "/api/dashboard/stats", "operators only", false),
            (ADMIN, "GET", "/api/dashboard/stats", "operators only", true),
            (USER, "GET", "/api/unlisted", "default", false),
            (ADMIN, "GET", "/api/unlisted", "default", false),
        ],
    );
}

#[test]
fn the_ragflow_example_splits_by_group_role_and_scope() {
    let curator: Who = (Role::User, &["knowledge"], &["full"]);
    let curator_read: Who = (Role::User, &["knowledge"], &["read"]);
    let loader: Who = (Role::User, &["knowledge"], &["ingest"]);
    let outsider_loader: Who = (Role::User, &[], &["ingest"]);
    check_cases(
        "policy-ragflow.toml",
        &[
            (
                USER,
                "GET",
                "/api/v1/datasets",
                "datasets: everyone signed in reads",
                true,
            ),
            (
                USER,
                "POST",
                "/api/v1/datasets",
                "datasets: the knowledge group curates",
                false,
            ),
            (
                curator,
                "POST",
                "/api/v1/datasets",
                "datasets: the knowledge group curates",
                true,
            ),
            (
                curator,
                "DELETE",
                "/api/v1//datasets",
                "datasets: the knowledge group curates",
                true,
            ),
            (
                curator_read,
                "GET",
                "/api/v1/datasets/d-1",
                "datasets: everyone signed in reads",
                true,
            ),
            (
                curator_read,
                "POST",
                "/api/v1/datasets",
                "datasets: the knowledge group curates",
                false,
            ),
            (
                ADMIN,
                "PUT",
                "/api/v1/datasets/d-1",
                "datasets: the knowledge group curates",
                true,
            ),
            (
                loader,
                "POST",
                "/api/v1/datasets/d-1/documents",
                "datasets: the knowledge group curates",
                true,
            ),
            (
                outsider_loader,
                "POST",
                "/api/v1/datasets/d-1/documents",
                "datasets: the knowledge group curates",
                false,
            ),
            (
                loader,
                "POST",
                "/api/v1/chats/c-1/completions",
                "chats, agents and retrieval",
                false,
            ),
            (
                USER,
                "POST",
                "/api/v1/chats/c-1/completions",
                "chats, agents and retrieval",
                true,
            ),
            (curator, "POST", "/api/v1/system/tokens", "administration", false),
            (ADMIN, "POST", "/api/v1/system/tokens", "administration", true),
            (USER, "POST", "/api/v1/system/ping", "administration", false),
            (USER, "GET", "/api/v1/files", "default", false),
        ],
    );
}
