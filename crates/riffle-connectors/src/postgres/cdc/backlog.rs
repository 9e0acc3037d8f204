//! Counting the changes that wait in a slot: the source's backlog.
//!
//! The items a change source has not had committed are the changes of the
//! publication between the slot's confirmed point (`confirmed_flush_lsn`) and
//! the end of the log (`pg_current_wal_lsn()`). The log's size in bytes says
//! little about them: other tables, other databases and the server's own
//! bookkeeping write to the same log. So the count decodes that stretch of the
//! log, as a reader would, and counts the changes the reader would hand out.
//!
//! A slot is read by one session at a time, and the source's reader may be
//! reading or advancing it at this moment, so the count reads a temporary copy
//! of the slot (`pg_copy_logical_replication_slot`, which leaves the slot
//! alone; the copy goes with the counting connection): the server needs one
//! more free slot while it counts. The decoded messages stay on the server;
//! only the count comes back. Each insert, update and delete is one change, a
//! truncate one per table it names (as the source hands them out). Counting
//! costs the server a decoding of the backlog, so it stops after about
//! [`CAP`] messages: a larger backlog reads as about that many.

use crate::ConnectorError;
use crate::postgres::settings::{PostgresSettings, quote, says};

/// About how many messages a count decodes at most (each change is one, and
/// each transaction's begin and commit one more; a transaction is counted
/// whole).
pub(super) const CAP: i32 = 100_000;

/// Copies the slot into a temporary one of the counting session.
const COPY: &str = "SELECT (pg_copy_logical_replication_slot($1, 'riffle_backlog_' || \
                    pg_backend_pid(), true)).slot_name::text";

/// The changes in the copy up to the end of the log: `I`, `U`, `D` are one
/// each, `T` as many as the tables it names (its first field).
const COUNT: &str = "SELECT coalesce(sum(CASE get_byte(data, 0) \
                       WHEN 73 THEN 1 WHEN 85 THEN 1 WHEN 68 THEN 1 \
                       WHEN 84 THEN (get_byte(data, 1)::int8 << 24) | (get_byte(data, 2) << 16) \
                         | (get_byte(data, 3) << 8) | get_byte(data, 4) \
                       ELSE 0 END), 0)::int8 \
                     FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, \
                       'proto_version', '1', 'publication_names', $3)";

/// Counts the changes of `publication` waiting in `slot`; `what` names them
/// both in errors.
pub(super) async fn count(
    settings: &PostgresSettings,
    slot: &str,
    publication: &str,
    what: &str,
) -> Result<u64, ConnectorError> {
    let client = settings.connect().await?;
    let fail = |e: tokio_postgres::Error| {
        settings
            .error(format!(
                "cannot count the changes waiting in {what}: {}",
                says(&e)
            ))
            .caused_by(e)
    };
    let found: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(fail)?
        .get(0);
    if !found {
        return Err(settings.error(format!(
            "cannot count the changes waiting in {what}: the slot does not exist"
        )));
    }
    let copy: String = client.query_one(COPY, &[&slot]).await.map_err(fail)?.get(0);
    let changes: i64 = client
        .query_one(COUNT, &[&copy, &CAP, &quote(publication)])
        .await
        .map_err(fail)?
        .get(0);
    // The temporary copy goes with the session; dropping it now frees the
    // slot at once even if the connection lingers.
    let _ = client
        .execute("SELECT pg_drop_replication_slot($1)", &[&copy])
        .await;
    Ok(u64::try_from(changes).unwrap_or(0))
}
