//! The PostgreSQL connector over TLS: a private server (`PostgresServer`, from
//! `RIFFLE_TEST_POSTGRES_BIN`) that starts without TLS, so `sslmode=require` must
//! fail, then turns `ssl` on with a server certificate made at test time for the
//! name `localhost` (`tls_certs`). With `sslmode=verify-full` and the CA the
//! conformance kit's read-after-write passes over TLS; another CA, the system's
//! roots, or a host name the certificate does not hold are errors naming the
//! server and why the certificate was not trusted. Last, the server wants a
//! client certificate (`clientcert=verify-ca`), and `sslcert`/`sslkey` give it.

#![cfg(feature = "postgres")]

mod tls_certs;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use riffle_connectors::conformance;
use riffle_connectors::postgres::PostgresSettings;
use riffle_connectors::postgres::testing::{PostgresServer, PostgresTarget};
use tls_certs::Certs;

fn target(url: String) -> PostgresTarget {
    PostgresTarget {
        settings: PostgresSettings::new(url).timeout(Duration::from_secs(5)),
    }
}

/// The error of connecting to `url`.
fn connect_error(url: &str) -> String {
    match PostgresSettings::new(url).client() {
        Ok(_) => panic!("connecting to {url} should fail"),
        Err(e) => {
            eprintln!("as expected: {e}");
            e.to_string()
        }
    }
}

/// Whether the session of `t` runs over TLS, as the server sees it.
fn over_tls(t: &PostgresTarget) -> bool {
    t.strings("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == ["true"]
}

/// Hands the certificates to the server's user, with a key only it may read.
fn give_to_server(certs: &Certs) {
    for key in ["server.key", "ca.key", "client.key"] {
        std::fs::set_permissions(certs.path(key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        // The server runs as `postgres` (initdb refuses root).
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(certs.folder())
            .status()
            .unwrap();
        assert!(status.success(), "chown of the certificates failed");
    }
}

/// Sets each `(name, value)` with `ALTER SYSTEM` and reloads the configuration.
fn reconfigure(admin: &PostgresTarget, settings: &[(&str, String)]) {
    for (name, value) in settings {
        admin.execute(&format!("ALTER SYSTEM SET {name} = '{value}'"));
    }
    admin.execute("SELECT pg_reload_conf()");
}

#[test]
fn verify_full_reads_and_writes_over_tls_and_untrusted_servers_are_named() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let Some(server) = PostgresServer::start() else {
        return;
    };
    unsafe { std::env::set_var("RIFFLE_POSTGRES_PASSWORD", PostgresServer::PASSWORD) };
    let port = server.port;
    let plain = format!("{}?sslmode=require", server.url());
    let err = connect_error(&plain);
    assert!(err.contains(&server.url()), "{err}");
    assert!(err.contains("server does not offer it"), "{err}");
    // The default (`prefer`) still connects, without TLS.
    let admin = target(server.url());
    assert!(!over_tls(&admin));

    give_to_server(&certs);
    let path = |name: &str| certs.path(name).display().to_string();
    reconfigure(
        &admin,
        &[
            ("ssl_cert_file", path("server.pem")),
            ("ssl_key_file", path("server.key")),
            ("ssl", "on".to_string()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while PostgresSettings::new(&plain).client().is_err() {
        assert!(Instant::now() < deadline, "the server did not turn TLS on");
        std::thread::sleep(Duration::from_millis(50));
    }

    let ca = path("ca.pem");
    let by_name = format!("postgres://postgres@localhost:{port}/postgres?hostaddr=127.0.0.1");
    let trusted = target(format!("{by_name}&sslmode=verify-full&sslrootcert={ca}"));
    assert!(over_tls(&trusted));
    conformance::read_after_write(&trusted);
    // `prefer` now takes TLS too.
    assert!(over_tls(&admin));

    let other = format!(
        "{by_name}&sslmode=verify-full&sslrootcert={}",
        path("other-ca.pem")
    );
    let err = connect_error(&other);
    assert!(err.contains(&format!("localhost:{port}")), "{err}");
    assert!(err.contains("certificate is not trusted"), "{err}");
    let err = connect_error(&format!("{by_name}&sslrootcert=system"));
    assert!(err.contains("certificate is not trusted"), "{err}");
    // Dialled as 127.0.0.1, which the certificate does not name: verify-full
    // refuses, verify-ca (the chain only) accepts.
    let by_address = format!("{}?sslrootcert={ca}", server.url());
    let err = connect_error(&format!("{by_address}&sslmode=verify-full"));
    assert!(err.contains("not trusted for this host"), "{err}");
    assert!(err.contains("names localhost, not 127.0.0.1"), "{err}");
    assert!(over_tls(&target(format!("{by_address}&sslmode=verify-ca"))));

    // Clients must show a certificate the CA signed.
    let hba: String = admin.strings("SHOW hba_file").remove(0);
    std::fs::write(
        &hba,
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca\n",
    )
    .unwrap();
    reconfigure(&admin, &[("ssl_ca_file", ca.clone())]);
    let trusted_url = trusted.settings.url.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while PostgresSettings::new(&trusted_url).client().is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server did not ask for client certificates"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = connect_error(&trusted_url);
    assert!(err.contains(&format!("localhost:{port}")), "{err}");
    let identity = format!(
        "{trusted_url}&sslcert={}&sslkey={}",
        path("client.pem"),
        path("client.key")
    );
    assert!(over_tls(&target(identity)));
}
