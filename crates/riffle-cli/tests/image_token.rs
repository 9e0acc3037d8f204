//! `riffle build-image --push` to a registry that only lets in bearer tokens: Debian's
//! docker-registry (the CNCF distribution registry) with `auth: token`, started here
//! on a loopback port, trusting a certificate made here with openssl, and a small
//! token server in this test that checks a user and password and issues the JWTs the
//! registry verifies (RS256, the certificate in the `x5c` header, `iss`, `aud`,
//! `exp`, `nbf` and the `access` claim). The pushed image is read back with skopeo,
//! which goes through the same token server. Tools from `scripts/test.d/60-image.sh`;
//! without them the test skips with a note, or fails under `CI=true`.

mod common;
use common::text;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SERVICE: &str = "riffle-test-registry";
const ISSUER: &str = "riffle-test-issuer";
const USER: &str = "riffle";
const PASSWORD: &str = "s3cret-pass";

struct Tools {
    skopeo: PathBuf,
    registry: PathBuf,
    openssl: PathBuf,
}

fn tools_or_skip() -> Option<Tools> {
    let var = |name| std::env::var(name).ok().map(PathBuf::from);
    match (
        var("RIFFLE_TEST_SKOPEO"),
        var("RIFFLE_TEST_REGISTRY"),
        var("RIFFLE_TEST_OPENSSL"),
    ) {
        (Some(skopeo), Some(registry), Some(openssl)) => Some(Tools {
            skopeo,
            registry,
            openssl,
        }),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but RIFFLE_TEST_SKOPEO/REGISTRY/OPENSSL are not set: scripts/test.d/60-image.sh installs them"
        ),
        _ => {
            eprintln!(
                "skipping the token registry test: RIFFLE_TEST_SKOPEO, RIFFLE_TEST_REGISTRY or RIFFLE_TEST_OPENSSL is not set (source scripts/test.d/60-image.sh)"
            );
            None
        }
    }
}

fn ok(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

/// Base64, standard (padded) or URL-safe (unpadded, as JWTs want it).
fn base64(bytes: &[u8], url: bool) -> String {
    let alphabet: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The token signer: an RSA key and its self-signed certificate (the registry's
/// `rootcertbundle`), made with openssl; tokens are signed with `openssl dgst`.
struct Issuer {
    openssl: PathBuf,
    key: PathBuf,
    cert: PathBuf,
    /// The certificate, DER in standard base64, for the `x5c` header.
    x5c: String,
}

impl Issuer {
    fn new(openssl: &Path, dir: &Path) -> Self {
        let key = dir.join("issuer.key");
        let cert = dir.join("issuer.pem");
        let der = dir.join("issuer.der");
        ok(
            openssl,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=riffle-test-token-issuer",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        ok(
            openssl,
            &[
                "x509",
                "-in",
                cert.to_str().unwrap(),
                "-outform",
                "DER",
                "-out",
                der.to_str().unwrap(),
            ],
        );
        Self {
            openssl: openssl.to_path_buf(),
            key,
            cert,
            x5c: base64(&std::fs::read(der).unwrap(), false),
        }
    }

    /// A JWT granting `access` (`(repository, actions)`) on the test registry.
    fn mint(&self, subject: &str, access: &[(String, Vec<String>)]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", std::process::id()),
            "access": access.iter().map(|(name, actions)| serde_json::json!({
                "type": "repository", "name": name, "actions": actions,
            })).collect::<Vec<_>>(),
        });
        let signed = format!(
            "{}.{}",
            base64(header.to_string().as_bytes(), true),
            base64(claims.to_string().as_bytes(), true)
        );
        let mut openssl = Command::new(&self.openssl)
            .args(["dgst", "-sha256", "-sign", self.key.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        openssl
            .stdin
            .take()
            .unwrap()
            .write_all(signed.as_bytes())
            .unwrap();
        let out = openssl.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl dgst -sign failed");
        format!("{signed}.{}", base64(&out.stdout, true))
    }
}

/// One request the token server answered: its query parameters and whether the
/// right user and password came with it.
#[derive(Debug, Clone)]
struct TokenRequest {
    params: Vec<(String, String)>,
    authorized: bool,
}

impl TokenRequest {
    fn all(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The token server on a loopback port: `GET /token?service=..&scope=..` with basic
/// authentication `USER:PASSWORD` gets a token for the scopes asked; anything else
/// gets 401. Runs until the test ends.
fn start_token_server(issuer: Issuer) -> (u16, Arc<Mutex<Vec<TokenRequest>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let expected = format!(
        "Basic {}",
        base64(format!("{USER}:{PASSWORD}").as_bytes(), false)
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorized = value.trim() == expected;
                }
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or("");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let params: Vec<(String, String)> = query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(n, v)| (percent_decode(n), percent_decode(v)))
                .collect();
            let request = TokenRequest { params, authorized };
            log.lock().unwrap().push(request.clone());
            let (status, body) = if path != "/token" {
                ("404 Not Found", r#"{"details":"no such path"}"#.to_string())
            } else if !authorized {
                (
                    "401 Unauthorized",
                    r#"{"details":"incorrect username or password"}"#.to_string(),
                )
            } else {
                let access: Vec<(String, Vec<String>)> = request
                    .all("scope")
                    .iter()
                    .filter_map(|scope| {
                        let (kind, rest) = scope.split_once(':')?;
                        let (name, actions) = rest.rsplit_once(':')?;
                        (kind == "repository").then(|| {
                            (
                                name.to_string(),
                                actions.split(',').map(str::to_string).collect(),
                            )
                        })
                    })
                    .collect();
                let token = issuer.mint(USER, &access);
                (
                    "200 OK",
                    serde_json::json!({"token": token, "expires_in": 300}).to_string(),
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// The registry with `auth: token`, stopped when dropped; its log in `log`.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    fn start(program: &Path, dir: &Path, realm: &str, cert: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                dir.join("data").display(),
                cert.display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let child = Command::new(program)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("docker-registry starts");
        let registry = Self { child, port, log };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the registry did not listen on 127.0.0.1:{port}: {}",
                registry.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `riffle build-image --push TARGET` in `project` with only the registry
/// variables given in `env`.
fn push(project: &Path, binary: &Path, target: &str, out: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_riffle"));
    command.current_dir(project).args([
        "build-image",
        "--binary",
        binary.to_str().unwrap(),
        "--name",
        "hello",
        "--out",
        out,
        "--push",
        target,
    ]);
    for var in [
        "RIFFLE_REGISTRY_USER",
        "RIFFLE_REGISTRY_PASSWORD",
        "RIFFLE_REGISTRY_TOKEN",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.output().expect("the riffle binary runs")
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn pushes_to_a_token_registry_through_its_token_server() {
    let Some(tools) = tools_or_skip() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    std::fs::create_dir(&project).unwrap();
    git(&project, &["init", "-q"]);
    std::fs::write(project.join("README"), "demo").unwrap();
    git(&project, &["add", "README"]);
    git(&project, &["commit", "-q", "-m", "first"]);
    git(&project, &["tag", "v2.0"]);
    // Any dynamically linked program will do as the image's binary.
    let binary = root.path().join("hello");
    std::fs::write(root.path().join("hello.rs"), "fn main() {}\n").unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    ok(
        Path::new(&rustc),
        &[
            root.path().join("hello.rs").to_str().unwrap(),
            "-o",
            binary.to_str().unwrap(),
        ],
    );

    let issuer = Issuer::new(&tools.openssl, root.path());
    let cert = issuer.cert.clone();
    let direct_token = issuer.mint(
        "direct",
        &[("team/direct".into(), vec!["pull".into(), "push".into()])],
    );
    let (token_port, token_requests) = start_token_server(issuer);
    let realm = format!("http://127.0.0.1:{token_port}/token");
    let registry = Registry::start(&tools.registry, root.path(), &realm, &cert);
    let host = format!("127.0.0.1:{}", registry.port);

    // The registry really asks for a bearer token, with a scope that holds a comma.
    let answer = reqwest::blocking::Client::new()
        .post(format!("http://{host}/v2/team/hello/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 401);
    let challenge = answer.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{realm}\"")),
        "{challenge}"
    );
    // (the registry writes the actions in either order)
    assert!(
        challenge.contains(r#"scope="repository:team/hello:pull,push""#)
            || challenge.contains(r#"scope="repository:team/hello:push,pull""#),
        "{challenge}"
    );

    // Anonymous: the token server refuses, and the error says who and why.
    let target = format!("{host}/team/hello");
    let o = push(&project, &binary, &target, "build/a.tar", &[]);
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "registry http://{target}: get a token from {realm}: HTTP 401 Unauthorized (no RIFFLE_REGISTRY_USER / RIFFLE_REGISTRY_PASSWORD set)"
        )),
        "{stderr}"
    );

    // A wrong password: the same, and the password is not repeated.
    let o = push(
        &project,
        &binary,
        &target,
        "build/a.tar",
        &[
            ("RIFFLE_REGISTRY_USER", USER),
            ("RIFFLE_REGISTRY_PASSWORD", "wrong-horse"),
        ],
    );
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "registry http://{target}: get a token from {realm}: HTTP 401 Unauthorized: "
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-horse"), "{stderr}");
    let refused = token_requests.lock().unwrap().len();
    assert_eq!(refused, 2);

    // The right user and password: one token for the whole push.
    let o = push(
        &project,
        &binary,
        &target,
        "build/a.tar",
        &[
            ("RIFFLE_REGISTRY_USER", USER),
            ("RIFFLE_REGISTRY_PASSWORD", PASSWORD),
        ],
    );
    let stdout = text(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}\nregistry log:\n{}",
        text(&o.stderr),
        registry.log_text()
    );
    let digest = stdout
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    assert!(
        stdout.contains(&format!("pushed http://{target}:2.0@{digest}")),
        "{stdout}"
    );
    let requests = token_requests.lock().unwrap()[refused..].to_vec();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].authorized);
    assert_eq!(requests[0].all("service"), [SERVICE]);
    assert_eq!(
        requests[0].all("scope"),
        ["repository:team/hello:pull,push"],
        "{requests:?}"
    );
    assert_eq!(requests[0].all("account"), [USER]);

    // skopeo pulls it back through the same token server: the same digest and layers.
    let remote = format!("docker://{target}:2.0");
    let creds = format!("{USER}:{PASSWORD}");
    let pulled = json(&ok(
        &tools.skopeo,
        &["inspect", "--tls-verify=false", "--creds", &creds, &remote],
    ));
    assert_eq!(pulled["Digest"], digest.as_str());
    let local = json(&ok(
        &tools.skopeo,
        &[
            "inspect",
            &format!("oci-archive:{}", project.join("build/a.tar").display()),
        ],
    ));
    assert_eq!(pulled["Layers"], local["Layers"]);
    let copy = root.path().join("pulled");
    ok(
        &tools.skopeo,
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &remote,
            &format!("dir:{}", copy.display()),
        ],
    );
    for layer in local["Layers"].as_array().unwrap() {
        let hex = layer.as_str().unwrap().trim_start_matches("sha256:");
        assert!(copy.join(hex).is_file(), "layer {hex} pulled");
    }

    // A token given directly is sent as it is; the token server is not asked.
    let before = token_requests.lock().unwrap().len();
    let direct = format!("{host}/team/direct");
    let o = push(
        &project,
        &binary,
        &direct,
        "build/b.tar",
        &[("RIFFLE_REGISTRY_TOKEN", &direct_token)],
    );
    assert!(
        o.status.success(),
        "{}\nregistry log:\n{}",
        text(&o.stderr),
        registry.log_text()
    );
    assert!(
        text(&o.stdout).contains(&format!("pushed http://{direct}:2.0@{digest}")),
        "{}",
        text(&o.stdout)
    );
    // That token is for team/direct only: team/hello refuses it.
    let o = push(
        &project,
        &binary,
        &target,
        "build/b.tar",
        &[("RIFFLE_REGISTRY_TOKEN", &direct_token)],
    );
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains(&format!("registry http://{target}: "))
            && stderr.contains("HTTP 401: the registry refused the token in RIFFLE_REGISTRY_TOKEN"),
        "{stderr}"
    );
    assert_eq!(token_requests.lock().unwrap().len(), before);
}
