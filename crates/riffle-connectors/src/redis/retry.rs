//! Sending commands through a server restart: what failed because the connection
//! dropped, was refused or the server was still loading is sent again (the
//! connection manager reconnects meanwhile), with a pause that grows to a second.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::settings::RedisSettings;

/// Whether a command may succeed when sent again: the connection dropped or was
/// refused (the server restarting), timed out, or the server asked to wait (it is
/// loading its data after a restart).
pub(crate) fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.retry_method(), redis::RetryMethod::WaitAndRetry)
}

/// Sends `pipe` until it is answered, for at most `patience` (`None`: for ever),
/// saying once on stderr that `what` waits for the server. Only commands that are
/// safe to apply twice, or whose caller accepts it, belong here.
pub(crate) async fn send(
    settings: &RedisSettings,
    conn: &mut ConnectionManager,
    pipe: &redis::Pipeline,
    what: &(dyn Fn() -> String + Sync),
    patience: Option<Duration>,
) -> Result<Vec<redis::Value>, redis::RedisError> {
    let give_up = patience.map(|p| tokio::time::Instant::now() + p);
    let mut pause = Duration::from_millis(100);
    let mut waited = false;
    loop {
        match pipe.query_async::<Vec<redis::Value>>(conn).await {
            Ok(v) => {
                if waited {
                    eprintln!("redis at {}: {} goes on", settings.server(), what());
                }
                return Ok(v);
            }
            Err(e) if transient(&e) && give_up.is_none_or(|t| tokio::time::Instant::now() < t) => {
                if !waited {
                    waited = true;
                    eprintln!(
                        "redis at {}: {} waits for the server: {e}",
                        settings.server(),
                        what()
                    );
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A client error kept as a cause, shortened: a failed pipeline lists every
/// command's error, and one is enough.
pub(crate) fn short(e: redis::RedisError) -> Box<dyn std::error::Error + Send + Sync> {
    let text = e.to_string();
    if text.len() <= 300 {
        return Box::new(e);
    }
    let cut = (0..=300)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}...", &text[..cut]).into()
}
