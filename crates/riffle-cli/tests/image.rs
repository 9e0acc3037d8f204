//! `riffle build-image` checked from the outside with real tools (from
//! `scripts/test.d/60-image.sh`): skopeo reads the tar as `oci-archive:` and
//! `docker-archive:`, umoci unpacks it into a root filesystem whose binary runs, a
//! rebuild gives the same bytes, and a push to a real registry (Debian's
//! docker-registry, started here on a loopback port) reads back with the same digest.
//! Without the tools the test skips with a note, or fails under `CI=true`.

mod common;
use common::text;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn riffle(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_riffle"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the riffle binary runs")
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()))
}

fn ok(program: &Path, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

struct Tools {
    skopeo: PathBuf,
    umoci: PathBuf,
    registry: PathBuf,
}

fn tools_or_skip() -> Option<Tools> {
    let var = |name| std::env::var(name).ok().map(PathBuf::from);
    match (
        var("RIFFLE_TEST_SKOPEO"),
        var("RIFFLE_TEST_UMOCI"),
        var("RIFFLE_TEST_REGISTRY"),
    ) {
        (Some(skopeo), Some(umoci), Some(registry)) => Some(Tools {
            skopeo,
            umoci,
            registry,
        }),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but RIFFLE_TEST_SKOPEO/UMOCI/REGISTRY are not set: scripts/test.d/60-image.sh installs them"
            )
        }
        _ => {
            eprintln!(
                "skipping the image test: RIFFLE_TEST_SKOPEO is not set (source scripts/test.d/60-image.sh)"
            );
            None
        }
    }
}

/// A small dynamically linked program that says what it finds in its image.
fn hello_binary(dir: &Path) -> PathBuf {
    let source = dir.join("hello.rs");
    std::fs::write(
        &source,
        r#"fn main() {
    println!("hello from the image");
    for path in ["/etc/ssl/certs/ca-certificates.crt", "/usr/share/zoneinfo/Europe/Warsaw"] {
        println!("{path} {}", std::path::Path::new(path).exists());
    }
}
"#,
    )
    .unwrap();
    let binary = dir.join("hello");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .expect("rustc runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    binary
}

/// The registry, stopped when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(program: &Path, dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(program)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let registry = Self { child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the registry did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP request to the test S3 server (it asks for no signature); the
/// whole answer as text.
fn s3_request(endpoint: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn images_are_reproducible_loadable_runnable_and_pushable() {
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
    git(&project, &["tag", "v1.5"]);
    let commit = git(&project, &["rev-parse", "HEAD"]);
    let binary = hello_binary(root.path());
    let binary_arg = binary.to_str().unwrap();

    // Built twice: the same bytes. The version and commit come from git.
    let build = |out: &str| {
        let o = riffle(
            &project,
            &[
                "build-image",
                "--binary",
                binary_arg,
                "--name",
                "hello",
                "--out",
                out,
            ],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    let first = build("build/a.tar");
    build("build/b.tar");
    let a = project.join("build/a.tar");
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(project.join("build/b.tar")).unwrap());
    assert!(first.starts_with("hello:1.5  sha256:"), "{first}");
    let digest = first.split_whitespace().nth(1).unwrap().to_string();

    // skopeo reads it both as an OCI archive and as a docker archive.
    let oci = json(&ok(
        &tools.skopeo,
        &["inspect", &format!("oci-archive:{}", a.display())],
    ));
    assert_eq!(oci["Digest"], digest.as_str());
    assert_eq!(oci["Labels"]["org.opencontainers.image.version"], "1.5");
    assert_eq!(
        oci["Labels"]["org.opencontainers.image.revision"],
        commit.as_str()
    );
    assert_eq!(oci["Os"], "linux");
    let docker = json(&ok(
        &tools.skopeo,
        &["inspect", &format!("docker-archive:{}", a.display())],
    ));
    assert_eq!(docker["Layers"], oci["Layers"]);
    assert_eq!(docker["Labels"], oci["Labels"]);

    // The tar itself is an OCI layout: unpacked with tar, umoci makes a root
    // filesystem from it, and the binary runs there as the image's user.
    let layout = root.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    ok(
        Path::new("tar"),
        &["xf", a.to_str().unwrap(), "-C", layout.to_str().unwrap()],
    );
    let bundle = root.path().join("bundle");
    ok(
        &tools.umoci,
        &[
            "unpack",
            "--image",
            &format!("{}:1.5", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    let runtime = json(&std::fs::read_to_string(bundle.join("config.json")).unwrap());
    assert_eq!(runtime["process"]["user"]["uid"], 65532);
    assert_eq!(
        runtime["process"]["args"],
        serde_json::json!(["/usr/local/bin/hello"])
    );
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("etc/passwd").is_file());
    let is_root = text(&run(Path::new("id"), &["-u"]).stdout).trim() == "0";
    if is_root {
        // chroot runs it with the image's own loader and libraries, nothing of the host.
        let out = ok(
            Path::new("chroot"),
            &[
                "--userspec=65532:65532",
                rootfs.to_str().unwrap(),
                "/usr/local/bin/hello",
            ],
        );
        assert_eq!(
            out,
            "hello from the image\n/etc/ssl/certs/ca-certificates.crt true\n/usr/share/zoneinfo/Europe/Warsaw true\n"
        );
    } else {
        eprintln!("not root: the unpacked binary is not run under chroot");
    }

    // Pushed to a real registry and read back: the same digest.
    let registry = Registry::start(&tools.registry, root.path());
    let target = format!("127.0.0.1:{}/team/hello", registry.port);
    let o = riffle(
        &project,
        &[
            "build-image",
            "--binary",
            binary_arg,
            "--name",
            "hello",
            "--out",
            "build/c.tar",
            "--push",
            &target,
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(&format!("pushed http://{target}:1.5@{digest}")),
        "{}",
        text(&o.stdout)
    );
    let remote = format!("docker://{target}:1.5");
    let pulled = json(&ok(
        &tools.skopeo,
        &["inspect", "--tls-verify=false", &remote],
    ));
    assert_eq!(pulled["Digest"], digest.as_str());
    assert_eq!(pulled["Layers"], oci["Layers"]);
    let copy = root.path().join("pulled");
    ok(
        &tools.skopeo,
        &[
            "copy",
            "--src-tls-verify=false",
            &remote,
            &format!("dir:{}", copy.display()),
        ],
    );
    for layer in oci["Layers"].as_array().unwrap() {
        let hex = layer.as_str().unwrap().trim_start_matches("sha256:");
        assert!(copy.join(hex).is_file(), "layer {hex} pulled");
    }

    // `deploy` pushes build/image.tar and copies build/dags/ as riffle.toml says.
    std::fs::write(
        project.join("riffle.toml"),
        format!(
            "[env.dev]\nconfig = \"dev\"\ndags_folder = \"deployed/dags\"\nimage_repository = \"127.0.0.1:{}/team/deployed\"\n",
            registry.port
        ),
    )
    .unwrap();
    let o = riffle(&project, &["deploy", "--env", "staging"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no environment \"staging\" (known: dev)"),
        "{}",
        text(&o.stderr)
    );
    let o = riffle(&project, &["deploy", "--env", "dev"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("run build-image first"),
        "{}",
        text(&o.stderr)
    );
    for args in [
        vec!["build-image", "--binary", binary_arg, "--name", "hello"],
        vec!["build-dags"],
    ] {
        let o = riffle(&project, &args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    }
    let o = riffle(&project, &["deploy", "--env", "dev"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(&format!("/team/deployed:1.5@{digest}")),
        "{}",
        text(&o.stdout)
    );
    assert!(project.join("deployed/dags/sales__1_5.py").is_file());
    let deployed = json(&ok(
        &tools.skopeo,
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://127.0.0.1:{}/team/deployed:1.5", registry.port),
        ],
    ));
    assert_eq!(deployed["Digest"], digest.as_str());

    // To an object-store DAG folder too, when the suite's S3-compatible server runs
    // (scripts/test.d/40-s3.sh).
    if let Ok(endpoint) = std::env::var("RIFFLE_TEST_S3_ENDPOINT") {
        let bucket = format!("riffle-dags-{}", std::process::id());
        assert!(s3_request(&endpoint, "PUT", &format!("/{bucket}")).starts_with("HTTP/1.1 200"));
        let mut settings = std::fs::read_to_string(project.join("riffle.toml")).unwrap();
        settings.push_str(&format!(
            "[env.s3]\ndags_folder = \"s3://{bucket}/dags\"\nimage_repository = \"127.0.0.1:{}/team/deployed\"\n",
            registry.port
        ));
        std::fs::write(project.join("riffle.toml"), settings).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_riffle"))
            .current_dir(&project)
            .args(["deploy", "--env", "s3"])
            .env("AWS_ENDPOINT", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "riffle-test")
            .env("AWS_SECRET_ACCESS_KEY", "riffle-test-secret")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        // Read back with boto3 (installed with moto in the test venv), signed.
        let python = std::env::var("RIFFLE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let read = Command::new(python)
            .args([
                "-c",
                "import sys, boto3; s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='riffle-test', aws_secret_access_key='riffle-test-secret'); print(s3.get_object(Bucket=sys.argv[2], Key='dags/sales__1_5.py')['Body'].read().decode())",
                &endpoint,
                &bucket,
            ])
            .output()
            .unwrap();
        assert!(read.status.success(), "{}", text(&read.stderr));
        assert!(
            text(&read.stdout).contains(r#"dag_id="sales__1.5""#),
            "{}",
            text(&read.stdout)
        );
    } else {
        eprintln!("RIFFLE_TEST_S3_ENDPOINT is not set: deploy to an object store not checked");
    }

    // A registry that is not there, and a target that is not one: clear errors.
    drop(registry);
    let o = riffle(
        &project,
        &["build-image", "--binary", binary_arg, "--push", &target],
    );
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains(&format!("registry http://{target}")),
        "{stderr}"
    );
    let o = riffle(
        &project,
        &["build-image", "--binary", binary_arg, "--push", "Team/App"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is not REGISTRY/REPOSITORY")
            || text(&o.stderr).contains("must be lower-case"),
        "{}",
        text(&o.stderr)
    );
}
