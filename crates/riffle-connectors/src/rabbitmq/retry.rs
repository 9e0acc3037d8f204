//! Connecting through a broker restart: a connection refused or dropped is tried
//! again, with a pause that grows to a second, saying once on stderr what waits.

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

/// Whether connecting again may succeed: the broker did not answer or the
/// connection broke, as opposed to the broker saying no.
pub(crate) fn transient(e: &ConnectorError) -> bool {
    match e
        .cause
        .as_deref()
        .and_then(|c| c.downcast_ref::<lapin::Error>())
    {
        Some(cause) => cause.is_io_error() || !cause.is_amqp_error(),
        // No answer within the timeout.
        None => e.action.contains("within"),
    }
}
