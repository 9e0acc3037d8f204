//! The bundled broker examples over TLS, through the real `riffle` binary:
//! `nats-wordcount` against a private `nats-server -js --tls --tlsverify`, and
//! `redis-wordcount` against a private `redis-server` whose TLS port wants
//! client certificates. The certificates are made at test time by `openssl`
//! (`RIFFLE_TEST_OPENSSL`; the helper is the connector tests' own). A run with
//! `-P tls_ca= tls_cert= tls_key=` counts the words; a run without the client
//! certificate is refused naming the server and the certificate; a certificate
//! without its key is refused before any connection, naming the missing option.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Output};

use riffle_connectors::conformance::Target;
use riffle_connectors::nats::NatsSettings;
use riffle_connectors::nats::testing::{NatsServer, NatsTarget};
use riffle_connectors::redis::RedisSettings;
use riffle_connectors::redis::testing::{RedisServer, RedisTarget};

#[path = "../../riffle-connectors/tests/tls_certs/mod.rs"]
mod tls_certs;
use tls_certs::Certs;

/// Runs `riffle run EXAMPLE` with `params` (each `NAME=VALUE`, passed as `-P`).
fn riffle_run(example: &str, params: &[String]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riffle"));
    cmd.args(["run", example]);
    for p in params {
        cmd.args(["-P", p]);
    }
    cmd.output().expect("the riffle binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `NAME=PATH` for `certs`' file `file`.
fn param(name: &str, certs: &Certs, file: &str) -> String {
    format!("{name}={}", certs.path(file).display())
}

/// The three TLS options naming the test CA and client certificate.
fn client_tls(certs: &Certs) -> Vec<String> {
    vec![
        param("tls_ca", certs, "ca.pem"),
        param("tls_cert", certs, "client.pem"),
        param("tls_key", certs, "client.key"),
    ]
}

#[test]
fn nats_wordcount_takes_a_ca_and_a_client_certificate() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let path = |f: &str| certs.path(f).display().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let args = [
        "--tls",
        "--tlscert",
        &cert,
        "--tlskey",
        &key,
        "--tlsverify",
        "--tlscacert",
        &ca,
    ];
    let Some(server) = NatsServer::start(&args) else {
        return;
    };
    let port = server.url().rsplit(':').next().unwrap().to_string();
    let url = format!("tls://localhost:{port}");
    let nats = NatsTarget::new(
        NatsSettings::new(&url)
            .tls_ca(certs.path("ca.pem"))
            .tls_identity(certs.path("client.pem"), certs.path("client.key")),
    );
    let stream = nats.create("tls", 1);
    nats.write(&stream, &["b a b".to_string()]);
    let base = vec![
        format!("servers={url}"),
        format!("stream={stream}"),
        "tail=false".to_string(),
    ];

    // The CA alone: the server wants a client certificate.
    let mut only_ca = base.clone();
    only_ca.push(param("tls_ca", &certs, "ca.pem"));
    let out = riffle_run("nats-wordcount", &only_ca);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&url) && err.contains("client certificate"),
        "{err}"
    );

    // A certificate without its key is named before connecting.
    let mut half = only_ca.clone();
    half.push(param("tls_cert", &certs, "client.pem"));
    let out = riffle_run("nats-wordcount", &half);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("-P tls_key="), "{}", stderr(&out));

    let mut full = base;
    full.extend(client_tls(&certs));
    let out = riffle_run("nats-wordcount", &full);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got = nats.read(&stream);
    got.sort();
    assert_eq!(got, ["a,1", "b a b", "b,1", "b,2"]);
}

/// Sends one command to the Redis server at `port` in the plain protocol and
/// returns its first reply line.
fn redis_command(port: u16, args: &[&str]) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("the plain port answers");
    let mut request = format!("*{}\r\n", args.len());
    for a in args {
        request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// Turns on a TLS port of `server` that wants client certificates signed by
/// `certs`' CA, and returns it.
fn redis_tls_port(server: &RedisServer, certs: &Certs) -> u16 {
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let file = |name: &str| certs.path(name).display().to_string();
    for (name, value) in [
        ("tls-cert-file", file("server.pem")),
        ("tls-key-file", file("server.key")),
        ("tls-ca-cert-file", file("ca.pem")),
        ("tls-auth-clients", "yes".to_string()),
        ("tls-port", tls_port.to_string()),
    ] {
        let reply = redis_command(server.port, &["CONFIG", "SET", name, &value]);
        assert_eq!(reply, "+OK", "CONFIG SET {name} {value}");
    }
    tls_port
}

#[test]
fn redis_wordcount_takes_a_ca_and_a_client_certificate() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let Some(server) = RedisServer::start() else {
        return;
    };
    let tls_port = redis_tls_port(&server, &certs);
    let url = format!("rediss://localhost:{tls_port}");
    // Lines in and counts out through the plain port of the same server.
    let plain = RedisTarget::new(RedisSettings::new(server.url()));
    plain.add("lines", &["b a b".to_string()]);
    let base = vec![
        format!("url={url}"),
        "streams=lines".to_string(),
        "tail=false".to_string(),
    ];

    let mut only_ca = base.clone();
    only_ca.push(param("tls_ca", &certs, "ca.pem"));
    let out = riffle_run("redis-wordcount", &only_ca);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&url) && err.contains("client certificate"),
        "{err}"
    );

    let mut half = base.clone();
    half.push(param("tls_key", &certs, "client.key"));
    let out = riffle_run("redis-wordcount", &half);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("-P tls_cert="), "{}", stderr(&out));

    let mut full = base;
    full.extend(client_tls(&certs));
    let out = riffle_run("redis-wordcount", &full);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got: Vec<String> = plain
        .entries("lines-counts")
        .iter()
        .map(|e| {
            let field =
                |name| String::from_utf8_lossy(e.field(name).unwrap_or_default()).into_owned();
            format!("{},{}", field("word"), field("value"))
        })
        .collect();
    got.sort();
    assert_eq!(got, ["a,1", "b,1", "b,2"]);
}
