//! PostgreSQL as a [`Target`] of the conformance kit, helpers tests use to add
//! and read rows, and a private server a test can stop and start again.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::admin::{self, Column};
use super::{PostgresRow, PostgresSettings, PostgresSink, PostgresSource, quote_table};
use crate::conformance::Target;
pub use crate::conformance::unique;
use crate::runtime;

/// A running PostgreSQL database for tests. A "stream" of the kit is a table
/// `(id bigserial, value text PRIMARY KEY)`: the source reads it by `id`, the sink
/// upserts by `value`; the kit's partition counts do not apply (a table is one
/// partition of the source, and the sink writes on its lanes).
#[derive(Debug)]
pub struct PostgresTarget {
    /// Its settings.
    pub settings: PostgresSettings,
}

impl PostgresTarget {
    /// The server `scripts/test.d/20-postgres.sh` started
    /// (`RIFFLE_TEST_POSTGRES_URL`); `None` (with a note) when there is none, a
    /// panic under `CI=true`.
    pub fn from_env() -> Option<Self> {
        match std::env::var("RIFFLE_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Self {
                settings: PostgresSettings::new(url),
            }),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
                "CI=true but RIFFLE_TEST_POSTGRES_URL is not set: scripts/test.d/20-postgres.sh \
                 should have started PostgreSQL"
            ),
            _ => {
                eprintln!(
                    "SKIPPED: RIFFLE_TEST_POSTGRES_URL is not set (scripts/test.d/20-postgres.sh \
                     starts a server)"
                );
                None
            }
        }
    }

    /// Runs `sql` (statements separated by `;`).
    pub fn execute(&self, sql: &str) {
        runtime::handle().block_on(async {
            let client = self.settings.connect().await.expect("a connection");
            client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        })
    }

    /// The text of the first column of every row of `sql`.
    pub fn strings(&self, sql: &str) -> Vec<String> {
        runtime::handle().block_on(async {
            let client = self.settings.connect().await.expect("a connection");
            let rows = client
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            rows.iter().map(|r| r.get::<_, String>(0)).collect()
        })
    }
}

impl Target for PostgresTarget {
    type Source = PostgresSource;
    type Sink = PostgresSink<Value>;

    fn server(&self) -> String {
        self.settings.server()
    }

    fn create(&self, hint: &str, _partitions: usize) -> String {
        let name = unique(hint);
        admin::create_table(
            &self.settings,
            &name,
            &[
                Column::new("id", "bigserial"),
                Column::new("value", "text NOT NULL"),
            ],
            &["value"],
        )
        .expect("a new table");
        name
    }

    fn write(&self, stream: &str, values: &[String]) {
        runtime::handle().block_on(async {
            let client = self.settings.connect().await.expect("a connection");
            for chunk in values.chunks(2000) {
                client
                    .execute(
                        &format!(
                            "INSERT INTO {} (value) SELECT unnest($1::text[])",
                            quote_table(stream)
                        ),
                        &[&chunk],
                    )
                    .await
                    .expect("rows added");
            }
        })
    }

    fn read(&self, stream: &str) -> Vec<String> {
        self.strings(&format!("SELECT value FROM {}", quote_table(stream)))
    }

    fn source(&self, stream: &str) -> PostgresSource {
        PostgresSource::table(self.settings.clone(), stream, "id")
            .tail(false)
            .batch_size(500)
    }

    fn unreachable_source(&self) -> PostgresSource {
        let nowhere = PostgresSettings::new("postgres://postgres@127.0.0.1:1/none")
            .timeout(Duration::from_millis(1500));
        PostgresSource::table(nowhere, "t", "id").tail(false)
    }

    fn sink(&self, stream: &str, _id: &str) -> PostgresSink<Value> {
        PostgresSink::upsert(self.settings.clone(), stream, ["value"])
    }

    fn value(item: PostgresRow<Value>) -> Option<String> {
        item.value.get("value")?.as_str().map(str::to_string)
    }

    fn record(value: String) -> Value {
        serde_json::json!({ "value": value })
    }

    fn exactly_once(&self) -> bool {
        true
    }
}

/// A private PostgreSQL server a test starts, stops and starts again itself (from
/// the programs in `RIFFLE_TEST_POSTGRES_BIN`), for what the shared server must
/// not go through: a restart mid-run, a password. User `postgres` with password
/// [`PostgresServer::PASSWORD`] (SCRAM), database `postgres`.
pub struct PostgresServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    as_root: bool,
    running: bool,
}

impl PostgresServer {
    /// The password of user `postgres`.
    pub const PASSWORD: &'static str = "riffle-test-secret";

    /// Makes and starts a server; `None` when there are no PostgreSQL programs
    /// (the note says why), a panic under `CI=true`.
    pub fn start() -> Option<Self> {
        let bin = match std::env::var("RIFFLE_TEST_POSTGRES_BIN") {
            Ok(p) if !p.is_empty() => PathBuf::from(p),
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!(
                    "CI=true but RIFFLE_TEST_POSTGRES_BIN is not set (scripts/test.d/20-postgres.sh)"
                )
            }
            _ => {
                eprintln!("SKIPPED: RIFFLE_TEST_POSTGRES_BIN is not set");
                return None;
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = tempfile::tempdir().expect("a temporary folder");
        // SAFETY-free check of the user: initdb refuses to run as root.
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let server = Self {
            bin,
            dir,
            port,
            as_root,
            running: false,
        };
        let pwfile = server.dir.path().join("pw");
        std::fs::write(&pwfile, Self::PASSWORD).expect("the password file");
        if as_root {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(server.dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the server's folder failed");
        }
        let db = server.dir.path().join("db");
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&db)
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = server;
        server.run();
        Some(server)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn run(&mut self) {
        let db = self.dir.path().join("db");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&db)
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-o", &options, "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "the private PostgreSQL did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private PostgreSQL did not start in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: connections drop,
    /// nothing is flushed on the way out).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let db = self.dir.path().join("db");
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&db)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        self.running = false;
    }

    /// Its URL (the password comes from `RIFFLE_POSTGRES_PASSWORD`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
