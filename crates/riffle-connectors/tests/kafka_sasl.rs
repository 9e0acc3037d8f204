//! Credentials: a private Apache Kafka broker whose listener wants SASL/PLAIN. The
//! password comes only from the environment (`RIFFLE_KAFKA_SASL_PASSWORD`); a wrong
//! one is an error naming the step and the brokers with the client's cause, the
//! right one reads and writes.

use std::time::Duration;

use riffle::Dataflow;
use riffle::sinks::TestingSink;
use riffle_connectors::conformance::Target;
use riffle_connectors::kafka::testing::{KafkaServer, KafkaTarget, SASL_USER};
use riffle_connectors::kafka::{KafkaSettings, KafkaSource, Utf8};

fn read(settings: &KafkaSettings, topic: &str) -> riffle::Result<Vec<String>> {
    let out = TestingSink::new();
    let flow = Dataflow::new("sasl");
    flow.input(
        "in",
        KafkaSource::new(settings.clone(), [topic])
            .format(Utf8)
            .tail(false),
    )?
    .filter_map("value", |m| m.value)?
    .output("out", out.clone())?;
    riffle::run_main(&flow)?;
    Ok(out.take_sorted())
}

#[test]
fn a_wrong_password_is_named_and_the_right_one_from_the_environment_works() {
    let Some(server) = KafkaServer::with_sasl() else {
        return;
    };
    let settings = KafkaSettings::new(server.brokers())
        .timeout(Duration::from_secs(5))
        .property("security.protocol", "SASL_PLAINTEXT")
        .property("sasl.mechanisms", "PLAIN")
        .property("sasl.username", SASL_USER.0);
    // A password in the settings is refused: secrets come from the environment.
    let in_settings = settings.clone().property("sasl.password", "x");
    let err = read(&in_settings, "t").unwrap_err().to_string();
    assert!(err.contains("RIFFLE_KAFKA_SASL_PASSWORD"), "{err}");

    // SAFETY: this test binary runs this one test; nothing else reads the
    // environment while it is changed.
    unsafe { std::env::set_var("RIFFLE_KAFKA_SASL_PASSWORD", "wrong") };
    let err = read(&settings, "t").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"in\"") && text.contains(&server.brokers()),
        "{text}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "no cause: {text}"
    );

    unsafe { std::env::set_var("RIFFLE_KAFKA_SASL_PASSWORD", SASL_USER.1) };
    let kafka = KafkaTarget {
        settings: settings.clone(),
    };
    let topic = kafka.create("sasl", 1);
    kafka.write(&topic, &["a".to_string(), "b".to_string()]);
    assert_eq!(read(&settings, &topic).unwrap(), ["a", "b"]);
}
