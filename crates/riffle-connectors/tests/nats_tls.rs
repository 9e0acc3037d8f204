//! The NATS connector over TLS: a private `nats-server -js --tls` on loopback with
//! a CA and a server certificate made at test time (`tls_certs`). With the CA the
//! conformance kit's read-after-write passes over TLS; without it, with another
//! CA, or dialled by a name the certificate does not hold, connecting is an error
//! naming the server and why the certificate was not trusted. A server that
//! verifies clients takes the client certificate and refuses a client without.

#![cfg(feature = "nats")]

mod tls_certs;

use riffle_connectors::conformance;
use riffle_connectors::nats::NatsSettings;
use riffle_connectors::nats::admin;
use riffle_connectors::nats::testing::{NatsServer, NatsTarget};
use tls_certs::Certs;

/// The port of a private server's URL.
fn port(server: &NatsServer) -> String {
    let url = server.url();
    url.rsplit(':').next().unwrap().to_string()
}

/// A private server whose listener wants TLS with `certs`' server certificate,
/// plus `extra` arguments.
fn tls_server(certs: &Certs, extra: &[&str]) -> Option<NatsServer> {
    let cert = certs.path("server.pem").display().to_string();
    let key = certs.path("server.key").display().to_string();
    let mut args = vec!["--tls", "--tlscert", &cert, "--tlskey", &key];
    args.extend(extra);
    NatsServer::start(&args)
}

/// The error of connecting with `settings` (a stream lookup connects first).
fn connect_error(settings: &NatsSettings) -> String {
    match admin::stream_exists(settings, "ANY") {
        Ok(_) => panic!("connecting with {settings:?} should fail"),
        Err(e) => {
            eprintln!("as expected: {e}");
            e.to_string()
        }
    }
}

#[test]
fn read_after_write_over_tls_with_the_ca_and_untrusted_certificates_named() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let Some(server) = tls_server(&certs, &[]) else {
        return;
    };
    let url = format!("tls://localhost:{}", port(&server));
    let trusted = NatsSettings::new(&url).tls_ca(certs.path("ca.pem"));
    conformance::read_after_write(&NatsTarget::new(trusted));

    // The system's roots do not hold the test CA.
    let err = connect_error(&NatsSettings::new(&url));
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("certificate is not trusted"), "{err}");
    // Nor does another CA.
    let err = connect_error(&NatsSettings::new(&url).tls_ca(certs.path("other-ca.pem")));
    assert!(err.contains("certificate is not trusted"), "{err}");
    // A plain `nats://` URL is upgraded (the server demands TLS) and checked too.
    let plain = format!("nats://localhost:{}", port(&server));
    let err = connect_error(&NatsSettings::new(&plain).tls_ca(certs.path("other-ca.pem")));
    assert!(err.contains("certificate is not trusted"), "{err}");
    // The certificate names localhost, not 127.0.0.1.
    let by_address = format!("tls://127.0.0.1:{}", port(&server));
    let err = connect_error(&NatsSettings::new(&by_address).tls_ca(certs.path("ca.pem")));
    assert!(err.contains(&by_address), "{err}");
    assert!(err.contains("not trusted for this host"), "{err}");
    assert!(err.contains("names localhost, not 127.0.0.1"), "{err}");
}

#[test]
fn a_server_that_verifies_clients_takes_the_client_certificate() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let ca = certs.path("ca.pem").display().to_string();
    let Some(server) = tls_server(&certs, &["--tlsverify", "--tlscacert", &ca]) else {
        return;
    };
    let url = format!("tls://localhost:{}", port(&server));
    let with_identity = NatsSettings::new(&url)
        .tls_ca(certs.path("ca.pem"))
        .tls_identity(certs.path("client.pem"), certs.path("client.key"));
    assert!(!admin::stream_exists(&with_identity, "ANY").unwrap());

    let without = NatsSettings::new(&url).tls_ca(certs.path("ca.pem"));
    let err = connect_error(&without);
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("client certificate"), "{err}");

    let mut half = NatsSettings::new(&url).tls_ca(certs.path("ca.pem"));
    half.tls_cert = Some(certs.path("client.pem"));
    let err = connect_error(&half);
    assert!(err.contains("tls_key"), "{err}");
}
