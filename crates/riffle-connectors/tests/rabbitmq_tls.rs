//! The RabbitMQ connector over TLS: one private `rabbitmq-server` (`RabbitServer`)
//! with an `ssl_options` listener on a free loopback port, its certificate made
//! at test time for the name `localhost` (`tls_certs`), and client certificates
//! required (`verify_peer`, `fail_if_no_peer_cert`). With `amqps://`, the CA and
//! a client certificate, the conformance kit's read-after-write passes over TLS;
//! no client certificate (for a flow's source too, at once), another CA, the system's roots, a host name the
//! certificate does not hold, and TLS to the plain port are errors naming the
//! broker and why; the TLS options with an `amqp://` URL are refused. The broker
//! starts once for the whole file (it takes seconds) and stops at the end.

#![cfg(feature = "rabbitmq")]

mod tls_certs;

use std::time::{Duration, Instant};

use riffle::Dataflow;
use riffle::sinks::TestingSink;
use riffle_connectors::conformance;
use riffle_connectors::rabbitmq::testing::{RabbitServer, RabbitTarget};
use riffle_connectors::rabbitmq::{RabbitSettings, RabbitSource, admin};
use tls_certs::Certs;

/// The error of connecting with `settings` (within two seconds).
fn connect_error(settings: &RabbitSettings) -> String {
    let settings = settings.clone().timeout(Duration::from_secs(2));
    match admin::message_count(&settings, "any") {
        Ok(n) => panic!("connecting with {settings:?} should fail, got {n}"),
        Err(e) => {
            eprintln!("as expected: {e}");
            e.to_string()
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn amqps_reads_and_writes_with_the_ca_and_a_client_certificate_and_refusals_are_named() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let path = |name: &str| certs.path(name).display().to_string();
    let tls_port = free_port();
    let listener = format!(
        "listeners.ssl.1 = 127.0.0.1:{tls_port}\n\
         ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true\n",
        path("ca.pem"),
        path("server.pem"),
        path("server.key"),
    );
    let Some(server) = RabbitServer::start_with(&listener) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(Instant::now() < deadline, "no TLS listener on {tls_port}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let url = format!("amqps://localhost:{tls_port}/%2f");
    let trusted = RabbitSettings::new(&url).tls_ca(certs.path("ca.pem"));
    let with_identity = trusted
        .clone()
        .tls_identity(certs.path("client.pem"), certs.path("client.key"))
        .timeout(Duration::from_secs(5));
    conformance::read_after_write(&RabbitTarget::new(with_identity.clone()));

    // The broker wants a client certificate; a flow's source says so at once,
    // without waiting out its timeout as it would a broker that does not answer.
    let err = connect_error(&trusted);
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("client certificate"), "{err}");
    let flow = Dataflow::new("no-identity");
    flow.input(
        "in",
        RabbitSource::new(trusted.clone().timeout(Duration::from_secs(30)), ["q"]).tail(false),
    )
    .unwrap()
    .output("out", TestingSink::new())
    .unwrap();
    let started = Instant::now();
    let err = riffle::run_main(&flow).unwrap_err().to_string();
    assert!(err.contains("\"in\"") && err.contains(&url), "{err}");
    assert!(err.contains("client certificate"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");

    // The broker's certificate is checked: its CA, then the host it names.
    let identity =
        |s: RabbitSettings| s.tls_identity(certs.path("client.pem"), certs.path("client.key"));
    let err = connect_error(&identity(
        RabbitSettings::new(&url).tls_ca(certs.path("other-ca.pem")),
    ));
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("certificate is not trusted"), "{err}");
    let err = connect_error(&identity(RabbitSettings::new(&url)));
    assert!(err.contains("certificate is not trusted"), "{err}");
    let by_address = format!("amqps://127.0.0.1:{tls_port}/%2f");
    let err = connect_error(&identity(
        RabbitSettings::new(&by_address).tls_ca(certs.path("ca.pem")),
    ));
    assert!(err.contains(&by_address), "{err}");
    assert!(err.contains("names localhost, not 127.0.0.1"), "{err}");

    // TLS to the plain port, and the TLS options without TLS.
    let to_plain = format!("amqps://localhost:{}/%2f", server.port);
    let err = connect_error(&identity(
        RabbitSettings::new(&to_plain).tls_ca(certs.path("ca.pem")),
    ));
    assert!(err.contains(&to_plain), "{err}");
    assert!(err.contains("cannot connect over TLS"), "{err}");
    let err = connect_error(&RabbitSettings::new(server.url()).tls_ca(certs.path("ca.pem")));
    assert!(err.contains("use amqps://"), "{err}");
    let err = connect_error(
        &RabbitSettings::new(&url)
            .tls_ca(certs.path("ca.pem"))
            .tls_identity(certs.path("client.pem"), certs.path("no-such.key")),
    );
    assert!(err.contains("no-such.key"), "{err}");
    drop(server);
}
