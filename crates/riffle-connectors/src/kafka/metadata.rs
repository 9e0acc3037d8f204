//! What the cluster says about a topic: its partitions, or why it has none.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaRespErr;

use super::settings::KafkaSettings;

/// The partition ids of `topic`, sorted; an error naming the step, the brokers and
/// the topic when it does not exist, cannot be read, or the brokers do not answer.
pub(crate) fn partitions(
    settings: &KafkaSettings,
    step_id: &str,
    topic: &str,
) -> riffle::Result<Vec<i32>> {
    let config = settings.client_config().map_err(|e| e.for_step(step_id))?;
    let client: BaseConsumer = config.create().map_err(|e| {
        settings
            .error("cannot create a client")
            .caused_by(e)
            .for_step(step_id)
    })?;
    partitions_with(&client, settings, step_id, topic)
}

/// [`partitions`] through a client the caller keeps (one made for reading the
/// backlog every second, say).
pub(crate) fn partitions_with(
    client: &BaseConsumer,
    settings: &KafkaSettings,
    step_id: &str,
    topic: &str,
) -> riffle::Result<Vec<i32>> {
    let metadata = client
        .fetch_metadata(Some(topic), settings.timeout_duration())
        .map_err(|e| {
            settings
                .error(format!("cannot read the metadata of topic {topic:?}"))
                .caused_by(e)
                .for_step(step_id)
        })?;
    let missing = || {
        settings
            .error(format!("topic {topic:?} does not exist"))
            .for_step(step_id)
    };
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(missing());
    };
    match t.error() {
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return Err(missing()),
        Some(code) => {
            return Err(settings
                .error(format!("topic {topic:?} cannot be read: {code:?}"))
                .for_step(step_id));
        }
        None => {}
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        return Err(settings
            .error(format!("topic {topic:?} has no partitions"))
            .for_step(step_id));
    }
    ids.sort_unstable();
    Ok(ids)
}
