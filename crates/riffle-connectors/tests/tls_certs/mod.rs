//! Certificates made at test time with the `openssl` program
//! (`RIFFLE_TEST_OPENSSL`): a CA, a server certificate it signs for the name
//! `localhost` only (so `127.0.0.1` is a host it does not name), a client
//! certificate it signs, and a second CA that signed none of them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of one test's certificates, in a folder of their own.
pub struct Certs {
    /// The folder; servers that must read the keys get it handed over.
    pub dir: tempfile::TempDir,
}

impl Certs {
    /// Makes them; `None` (with a note) without `RIFFLE_TEST_OPENSSL`, a panic
    /// under `CI=true`.
    pub fn make() -> Option<Self> {
        let openssl = match std::env::var("RIFFLE_TEST_OPENSSL") {
            Ok(p) if !p.is_empty() => PathBuf::from(p),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true but RIFFLE_TEST_OPENSSL is not set")
            }
            _ => {
                eprintln!("SKIPPED: RIFFLE_TEST_OPENSSL is not set");
                return None;
            }
        };
        let certs = Self {
            dir: tempfile::tempdir().expect("a temporary folder"),
        };
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(certs.dir.path())
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, subject) in [("ca", "/CN=riffle test CA"), ("other-ca", "/CN=another CA")] {
            let (pem, key_file) = (format!("{name}.pem"), format!("{name}.key"));
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", subject];
            args.extend(key);
            args.extend(["-keyout", &key_file, "-out", &pem]);
            run(&args);
        }
        for (name, extensions) in [
            (
                "server",
                "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let ext = format!("{name}.ext");
            std::fs::write(
                certs.dir.path().join(&ext),
                format!("basicConstraints=CA:FALSE\n{extensions}"),
            )
            .expect("an extensions file");
            let (csr, pem, key_file) = (
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.key"),
            );
            let subject = if name == "server" {
                "/CN=localhost"
            } else {
                "/CN=riffle"
            };
            let mut args = vec!["req", "-subj", subject];
            args.extend(key);
            args.extend(["-keyout", &key_file, "-out", &csr]);
            run(&args);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                if name == "server" { "2" } else { "3" },
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ]);
        }
        Some(certs)
    }

    /// The file `name` (`ca.pem`, `server.key`, ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The folder.
    #[allow(dead_code)]
    pub fn folder(&self) -> &Path {
        self.dir.path()
    }
}
