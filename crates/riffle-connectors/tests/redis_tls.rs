//! The Redis connector over TLS: a private `redis-server` (`RedisServer`) whose
//! TLS port is turned on at run time (`CONFIG SET tls-port`) with a server
//! certificate made at test time for the name `localhost` (`tls_certs`). With
//! `rediss://` and the CA the conformance kit's read-after-write passes over
//! TLS; another CA, the system's roots, or a host name the certificate does not
//! hold are errors naming the server and why the certificate was not trusted;
//! `rediss://` to the plain port fails too. A server that wants client
//! certificates takes `tls_cert`/`tls_key` and refuses a client without.

#![cfg(feature = "redis")]

mod tls_certs;

use std::time::Duration;

use riffle_connectors::conformance;
use riffle_connectors::redis::RedisSettings;
use riffle_connectors::redis::admin;
use riffle_connectors::redis::testing::{RedisServer, RedisTarget};
use tls_certs::Certs;

/// The error of connecting with `settings` (within a second: a TLS hello to a
/// plain port is never answered).
fn connect_error(settings: &RedisSettings) -> String {
    let settings = settings.clone().timeout(Duration::from_secs(1));
    match admin::stream_exists(&settings, "any") {
        Ok(_) => panic!("connecting with {settings:?} should fail"),
        Err(e) => {
            eprintln!("as expected: {e}");
            e.to_string()
        }
    }
}

#[test]
fn rediss_reads_and_writes_with_the_ca_and_untrusted_servers_are_named() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let Some(server) = RedisServer::start() else {
        return;
    };
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let path = |name: &str| certs.path(name).display().to_string();
    let mut plain = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .unwrap();
    for (name, value) in [
        ("tls-cert-file", path("server.pem")),
        ("tls-key-file", path("server.key")),
        ("tls-ca-cert-file", path("ca.pem")),
        ("tls-auth-clients", "optional".to_string()),
        ("tls-port", tls_port.to_string()),
    ] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(&value)
            .query::<()>(&mut plain)
            .unwrap_or_else(|e| panic!("CONFIG SET {name} {value}: {e}"));
    }

    let url = format!("rediss://localhost:{tls_port}");
    let trusted = RedisSettings::new(&url)
        .tls_ca(certs.path("ca.pem"))
        .timeout(Duration::from_secs(5));
    conformance::read_after_write(&RedisTarget::new(trusted.clone()));
    // Clients must now show a certificate the CA signed.
    redis::cmd("CONFIG")
        .arg(&["SET", "tls-auth-clients", "yes"])
        .query::<()>(&mut plain)
        .unwrap();
    let err = connect_error(&trusted);
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("client certificate"), "{err}");
    let with_identity = trusted
        .clone()
        .tls_identity(certs.path("client.pem"), certs.path("client.key"));
    assert!(!admin::stream_exists(&with_identity, "none").unwrap());

    let err = connect_error(&RedisSettings::new(&url).tls_ca(certs.path("other-ca.pem")));
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("certificate is not trusted"), "{err}");
    let err = connect_error(&RedisSettings::new(&url));
    assert!(err.contains("certificate is not trusted"), "{err}");
    let by_address = format!("rediss://127.0.0.1:{tls_port}");
    let err = connect_error(&RedisSettings::new(&by_address).tls_ca(certs.path("ca.pem")));
    assert!(err.contains("not trusted for this host"), "{err}");

    let to_plain = format!("rediss://localhost:{}", server.port);
    let err = connect_error(&RedisSettings::new(&to_plain).tls_ca(certs.path("ca.pem")));
    assert!(err.contains(&to_plain), "{err}");
    assert!(err.contains("cannot connect over TLS"), "{err}");
    let err = connect_error(&RedisSettings::new(server.url()).tls_ca(certs.path("ca.pem")));
    assert!(err.contains("rediss://"), "{err}");
}
