//! authgate as an OpenID Provider, set up for a test or a benchmark: the provider's signing key,
//! and a gateway on 127.0.0.1:0 whose `[oidc]` issuer names its own port, with the clients the
//! caller registers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{TestGateway, TestUpstream};

/// The client secret the provider tests register (32+ characters, as `oidc.clients` asks).
pub const OP_SECRET: &str = "rp-secret-0123456789-0123456789-abcdef";
/// RFC 7636 appendix B's PKCE pair: the verifier and its S256 challenge.
pub const OP_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const OP_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The redirect URI of the usual relying party, `rp`.
pub const OP_CALLBACK: &str = "https://rp.example/callback";

/// A provider signing key in `dir` for `alg`: ES256, one authgate generates (the file mode 0600,
/// as `authgate keys` writes it); RS256, a 2048-bit key from openssl.
pub fn op_signing_key(dir: &Path, alg: &str) -> PathBuf {
    let path = dir.join("op.pem");
    match alg {
        "ES256" => {
            let (pem, _) = authgate::auth::keys::generate(authgate::config::JwtAlgorithm::ES256).unwrap();
            authgate::tls::write_private(&path, pem.as_bytes()).unwrap();
        }
        "RS256" => {
            let out = std::process::Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                ])
                .arg(&path)
                .output()
                .expect("openssl makes the RS256 key (apt-get install openssl)");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        other => panic!("no test key for {other}"),
    }
    path
}

/// A gateway that is an OpenID Provider signing with `alg` (issuer `https://localhost:PORT`), with
/// `clients` (`[[oidc.clients]]` TOML) registered, and the recording upstream behind it.
pub async fn op_gateway(alg: &str, clients: &str) -> (TestUpstream, TestGateway) {
    let up = TestUpstream::start().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let key = op_signing_key(dir.path(), alg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let extra = format!(
        "[oidc]\nissuer = \"https://localhost:{port}\"\nsigning_key = \"{}\"\nsigning_algorithm = \"{alg}\"\n{clients}",
        key.display()
    );
    let gw = TestGateway::builder(&up.url())
        .dir(dir)
        .listener(listener)
        .extra(&extra)
        .start()
        .await;
    (up, gw)
}
