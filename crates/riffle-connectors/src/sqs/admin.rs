//! Managing queues: what tests, set-up scripts and Flows (`riffle flow
//! plan/apply/destroy`) call to make, inspect and remove the queues a flow reads
//! and writes.

use std::time::Duration;

use serde_json::{Value, json};

use super::client::SqsClient;
use super::settings::SqsSettings;
use crate::ConnectorError;

/// Makes the queue `name` unless it exists, and returns its URL. A name ending
/// in `.fifo` makes a FIFO queue (without content-based de-duplication: the sink
/// gives every message its id). `visibility` is the queue's default visibility
/// timeout (`None`: SQS's 30 s). Making a queue that exists with the same
/// attributes is not an error; with other attributes, SQS refuses and the error
/// says so.
///
/// ```no_run
/// use riffle_connectors::sqs::{SqsSettings, admin};
/// let sqs = SqsSettings::new("us-east-1").endpoint("http://127.0.0.1:5000");
/// let url = admin::create_queue(&sqs, "orders.fifo", None)?;
/// admin::delete_queue(&sqs, "orders.fifo")?;
/// # Ok::<(), riffle_connectors::ConnectorError>(())
/// ```
pub fn create_queue(
    settings: &SqsSettings,
    name: &str,
    visibility: Option<Duration>,
) -> Result<String, ConnectorError> {
    let client = SqsClient::new(settings)?;
    let mut attributes = serde_json::Map::new();
    if name.ends_with(".fifo") {
        attributes.insert("FifoQueue".into(), json!("true"));
    }
    if let Some(v) = visibility {
        attributes.insert("VisibilityTimeout".into(), json!(v.as_secs().to_string()));
    }
    let body = json!({ "QueueName": name, "Attributes": attributes });
    let what = || format!("making queue {name:?}");
    let answer = crate::runtime::handle()
        .block_on(client.call(
            "CreateQueue",
            &body,
            Duration::ZERO,
            &what,
            Some(settings.timeout_duration()),
        ))
        .map_err(|e| client.error(name, "making", e))?;
    answer
        .get("QueueUrl")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| settings.error(format!("no QueueUrl in the answer making queue {name:?}")))
}

/// Removes the queue `name` with its messages (nothing when it does not exist).
pub fn delete_queue(settings: &SqsSettings, name: &str) -> Result<(), ConnectorError> {
    let client = SqsClient::new(settings)?;
    crate::runtime::handle().block_on(async {
        let url = match client.queue_url(name).await {
            Ok(url) => url,
            Err(e) if e.action.contains("does not exist") => return Ok(()),
            Err(e) => return Err(e),
        };
        let what = || format!("deleting queue {name:?}");
        client
            .call(
                "DeleteQueue",
                &json!({ "QueueUrl": url }),
                Duration::ZERO,
                &what,
                Some(settings.timeout_duration()),
            )
            .await
            .map_err(|e| client.error(name, "deleting", e))?;
        Ok(())
    })
}

/// How many messages the queue `name` holds, as SQS approximates it: visible ones
/// and those received and not yet deleted (in flight).
pub fn message_count(settings: &SqsSettings, name: &str) -> Result<(u64, u64), ConnectorError> {
    let client = SqsClient::new(settings)?;
    crate::runtime::handle().block_on(async {
        let url = client.queue_url(name).await?;
        let what = || format!("counting the messages of queue {name:?}");
        let answer = client
            .call(
                "GetQueueAttributes",
                &json!({ "QueueUrl": url, "AttributeNames": [
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible"
                ] }),
                Duration::ZERO,
                &what,
                Some(settings.timeout_duration()),
            )
            .await
            .map_err(|e| client.error(name, "counting the messages of", e))?;
        let count = |k: &str| {
            answer
                .get("Attributes")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            count("ApproximateNumberOfMessages"),
            count("ApproximateNumberOfMessagesNotVisible"),
        ))
    })
}

/// Whether queue `name` exists.
pub fn queue_exists(settings: &SqsSettings, name: &str) -> Result<bool, ConnectorError> {
    let client = SqsClient::new(settings)?;
    crate::runtime::handle().block_on(async {
        match client.queue_url(name).await {
            Ok(_) => Ok(true),
            Err(e) if e.action.contains("does not exist") => Ok(false),
            Err(e) => Err(e),
        }
    })
}
