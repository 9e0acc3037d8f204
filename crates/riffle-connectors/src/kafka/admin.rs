//! Managed topics: create and delete them, for set-up, tests and the applications
//! that own their topics.

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::settings::KafkaSettings;
use crate::ConnectorError;

fn admin(settings: &KafkaSettings) -> Result<AdminClient<DefaultClientContext>, ConnectorError> {
    settings
        .client_config()?
        .create()
        .map_err(|e| settings.error("cannot create an admin client").caused_by(e))
}

/// Creates `topic` with `partitions` partitions (replication factor 1 unless the
/// settings' cluster needs more: `replication`). Returns `false` when it already
/// existed (nothing changed), so calling it again is harmless.
pub fn create_topic(
    settings: &KafkaSettings,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<bool, ConnectorError> {
    let admin = admin(settings)?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(settings.timeout_duration()));
    let results = crate::runtime::handle()
        .block_on(admin.create_topics([&new], &options))
        .map_err(|e| {
            settings
                .error(format!("cannot create topic {topic:?}"))
                .caused_by(e)
        })?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => {
            Err(settings.error(format!("cannot create topic {topic:?}: {code}")))
        }
        None => Err(settings.error(format!("no answer creating topic {topic:?}"))),
    }
}

/// Deletes `topic`. Returns `false` when there was no such topic.
pub fn delete_topic(settings: &KafkaSettings, topic: &str) -> Result<bool, ConnectorError> {
    let admin = admin(settings)?;
    let options = AdminOptions::new().operation_timeout(Some(settings.timeout_duration()));
    let results = crate::runtime::handle()
        .block_on(admin.delete_topics(&[topic], &options))
        .map_err(|e| {
            settings
                .error(format!("cannot delete topic {topic:?}"))
                .caused_by(e)
        })?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))) => Ok(false),
        Some(Err((_, code))) => {
            Err(settings.error(format!("cannot delete topic {topic:?}: {code}")))
        }
        None => Err(settings.error(format!("no answer deleting topic {topic:?}"))),
    }
}

/// Grows `topic` to `partitions` partitions (Kafka never shrinks a topic).
pub fn add_partitions(
    settings: &KafkaSettings,
    topic: &str,
    partitions: usize,
) -> Result<(), ConnectorError> {
    let admin = admin(settings)?;
    let options = AdminOptions::new().operation_timeout(Some(settings.timeout_duration()));
    let grow = NewPartitions::new(topic, partitions);
    let results = crate::runtime::handle()
        .block_on(admin.create_partitions([&grow], &options))
        .map_err(|e| {
            settings
                .error(format!("cannot add partitions to {topic:?}"))
                .caused_by(e)
        })?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => {
            Err(settings.error(format!("cannot add partitions to {topic:?}: {code}")))
        }
        None => Err(settings.error(format!("no answer adding partitions to {topic:?}"))),
    }
}

/// How many partitions `topic` has, or `None` when it does not exist.
pub fn topic_partitions(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<Option<usize>, ConnectorError> {
    use rdkafka::types::RDKafkaRespErr;
    let admin = admin(settings)?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), settings.timeout_duration())
        .map_err(|e| {
            settings
                .error(format!("cannot read the metadata of topic {topic:?}"))
                .caused_by(e)
        })?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        None => Ok(None),
        Some(t) => match t.error() {
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Ok(None),
            Some(code) => Err(settings.error(format!("cannot read topic {topic:?}: {code:?}"))),
            None => Ok(Some(t.partitions().len())),
        },
    }
}
