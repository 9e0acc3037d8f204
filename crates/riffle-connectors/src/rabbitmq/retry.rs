//! Connecting through a broker restart: a connection refused or dropped is tried
//! again, with a pause that grows to a second, saying once on stderr what waits.
//! Every other wait on the broker is bounded too ([`within`]): a request that gets
//! no answer within the settings' timeout is an error naming the server and what
//! was asked, never a wait for ever.

use std::future::Future;

use std::time::Duration;

use lapin::{Channel, Connection};

use super::settings::RabbitSettings;
use crate::ConnectorError;

/// Connects until the broker answers, for at most `patience` (`None`: for ever).
/// Refused credentials and other answers of the broker are not waited out.
pub(crate) async fn connect(
    settings: &RabbitSettings,
    name: &str,
    what: &str,
    patience: Option<Duration>,
) -> Result<(Connection, Channel), ConnectorError> {
    let give_up = patience.map(|p| tokio::time::Instant::now() + p);
    let mut pause = Duration::from_millis(100);
    let mut waited = false;
    loop {
        match settings.connect(name).await {
            Ok(connected) => {
                if waited {
                    eprintln!("rabbitmq at {}: {what} goes on", settings.server());
                }
                return Ok(connected);
            }
            Err(e) if transient(&e) && give_up.is_none_or(|t| tokio::time::Instant::now() < t) => {
                if !waited {
                    waited = true;
                    eprintln!(
                        "rabbitmq at {}: {what} waits for the broker: {e}",
                        settings.server()
                    );
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `request` within the settings' timeout; no answer is an error naming the
/// server and `what` (one that [`transient`] takes for a broken connection).
pub(crate) async fn within<T>(
    settings: &RabbitSettings,
    what: impl FnOnce() -> String,
    request: impl Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    let timeout = settings.timeout_duration();
    match tokio::time::timeout(timeout, request).await {
        Ok(answered) => answered,
        Err(_) => Err(settings.error(format!("{}: no answer within {timeout:?}", what()))),
    }
}

/// Closes `connection`, waiting for the broker's answer no longer than the
/// settings' timeout (a broken connection has none to give).
pub(crate) async fn close(settings: &RabbitSettings, connection: &Connection, why: &str) {
    let _ = tokio::time::timeout(
        settings.timeout_duration(),
        connection.close(200, why.into()),
    )
    .await;
}

/// Whether the broker said a queue or exchange does not exist. Right after a
/// restart that may only mean it has not recovered its durable ones yet: a
/// reconnection waits it out for the settings' timeout.
pub(crate) fn missing(e: &ConnectorError) -> bool {
    e.action.contains("does not exist")
}

/// Whether connecting again may succeed: the broker did not answer or the
/// connection broke, as opposed to the broker saying no. A refused TLS handshake
/// (a certificate not trusted, a client certificate wanted) is a no too, though
/// it reaches the client as an I/O error.
pub(crate) fn transient(e: &ConnectorError) -> bool {
    match e
        .cause
        .as_deref()
        .and_then(|c| c.downcast_ref::<lapin::Error>())
    {
        Some(cause) if crate::tls::refusal(cause).is_some() => false,
        Some(cause) => cause.is_io_error() || !cause.is_amqp_error(),
        // No answer within the timeout.
        None => e.action.contains("within"),
    }
}
