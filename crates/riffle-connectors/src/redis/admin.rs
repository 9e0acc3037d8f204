//! Managing streams and consumer groups: what tests, set-up scripts and Flows call
//! to make, inspect and remove the streams a flow reads and writes.

use redis::aio::ConnectionManager;

use super::reply;
use super::settings::RedisSettings;
use crate::ConnectorError;

/// Makes `group` on `stream` starting at `start` (`0`, `$` or an id), unless it
/// exists. A missing stream is an error naming it: the source does not make the
/// streams it reads.
pub(crate) async fn create_group(
    settings: &RedisSettings,
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    start: &str,
) -> Result<(), ConnectorError> {
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE").arg(stream).arg(group).arg(start);
    match cmd.query_async::<redis::Value>(conn).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) if e.to_string().contains("requires the key to exist") => Err(settings
            .error(format!("stream {stream:?} does not exist"))
            .caused_by(e)),
        Err(e) => Err(settings
            .error(format!(
                "cannot make consumer group {group:?} on stream {stream:?}"
            ))
            .caused_by(e)),
    }
}

/// The id of the last entry of `stream` (`None` when it is empty).
pub(crate) async fn last_id(
    settings: &RedisSettings,
    conn: &mut ConnectionManager,
    stream: &str,
) -> Result<Option<String>, ConnectorError> {
    let mut cmd = redis::cmd("XREVRANGE");
    cmd.arg(stream).arg("+").arg("-").arg("COUNT").arg(1);
    let v: redis::Value = cmd.query_async(conn).await.map_err(|e| {
        settings
            .error(format!("cannot read the last entry of stream {stream:?}"))
            .caused_by(e)
    })?;
    let entries = reply::entries(&v).map_err(|why| {
        settings.error(format!(
            "an unexpected reply reading stream {stream:?}: {why}"
        ))
    })?;
    Ok(entries.into_iter().next().map(|(id, _)| id))
}

/// Makes `stream` (empty) if it does not exist, with a consumer group `group`
/// reading it from the start when one is given.
///
/// ```no_run
/// use riffle_connectors::redis::{RedisSettings, admin};
/// admin::create_stream(&RedisSettings::new("redis://127.0.0.1:6379"), "orders", Some("billing"))?;
/// # Ok::<(), riffle_connectors::ConnectorError>(())
/// ```
pub fn create_stream(
    settings: &RedisSettings,
    stream: &str,
    group: Option<&str>,
) -> Result<(), ConnectorError> {
    crate::runtime::handle().block_on(async {
        let mut conn = settings.connect().await?;
        // A group made with MKSTREAM makes the stream; without a group, a
        // placeholder group does it and goes again.
        let name = group.unwrap_or("riffle.create");
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(stream)
            .arg(name)
            .arg("0")
            .arg("MKSTREAM");
        match cmd.query_async::<redis::Value>(&mut conn).await {
            Ok(_) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => {
                return Err(settings
                    .error(format!("cannot make stream {stream:?}"))
                    .caused_by(e));
            }
        }
        if group.is_none() {
            let mut cmd = redis::cmd("XGROUP");
            cmd.arg("DESTROY").arg(stream).arg(name);
            cmd.query_async::<redis::Value>(&mut conn)
                .await
                .map_err(|e| {
                    settings
                        .error(format!("cannot make stream {stream:?}"))
                        .caused_by(e)
                })?;
        }
        Ok(())
    })
}

/// Removes `stream` with its entries and groups (nothing when it does not exist).
pub fn delete_stream(settings: &RedisSettings, stream: &str) -> Result<(), ConnectorError> {
    crate::runtime::handle().block_on(async {
        let mut conn = settings.connect().await?;
        redis::cmd("DEL")
            .arg(stream)
            .query_async::<redis::Value>(&mut conn)
            .await
            .map_err(|e| {
                settings
                    .error(format!("cannot delete stream {stream:?}"))
                    .caused_by(e)
            })?;
        Ok(())
    })
}

/// How many entries `stream` holds (`XLEN`; 0 when it does not exist).
pub fn length(settings: &RedisSettings, stream: &str) -> Result<u64, ConnectorError> {
    crate::runtime::handle().block_on(async {
        let mut conn = settings.connect().await?;
        length_async(settings, &mut conn, stream).await
    })
}

/// [`length`] on a connection the caller holds.
pub(crate) async fn length_async(
    settings: &RedisSettings,
    conn: &mut redis::aio::ConnectionManager,
    stream: &str,
) -> Result<u64, ConnectorError> {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async::<u64>(conn)
        .await
        .map_err(|e| {
            settings
                .error(format!("cannot count stream {stream:?}"))
                .caused_by(e)
        })
}

/// Whether `stream` exists.
pub fn stream_exists(settings: &RedisSettings, stream: &str) -> Result<bool, ConnectorError> {
    crate::runtime::handle().block_on(async {
        let mut conn = settings.connect().await?;
        redis::cmd("EXISTS")
            .arg(stream)
            .query_async::<u64>(&mut conn)
            .await
            .map(|n| n > 0)
            .map_err(|e| {
                settings
                    .error(format!("cannot look for stream {stream:?}"))
                    .caused_by(e)
            })
    })
}
