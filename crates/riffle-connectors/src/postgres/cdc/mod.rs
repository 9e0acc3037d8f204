//! Change data capture: every insert, update, delete and truncate committed to
//! the tables of a publication, in commit order, through PostgreSQL's logical
//! replication.
//!
//! ## How it reads
//!
//! The server decodes its write-ahead log with the built-in `pgoutput` plugin
//! into a **logical replication slot**, which remembers how far its reader has
//! confirmed (`confirmed_flush_lsn`) and keeps the log from there on. A
//! **publication** says which tables are decoded: a list of tables or all of
//! them. The source talks plain SQL (no replication connection): its
//! connection copies the slot into a temporary slot of its own
//! (`pg_copy_logical_replication_slot`, dropped by the server when the
//! connection ends, so the server needs one more free slot), reads the copy
//! with `pg_logical_slot_get_binary_changes`, which moves only the copy, and
//! decodes pgoutput's messages itself. Each change is decoded once, and the
//! slot stays where it is until the source advances it.
//!
//! Each change becomes a [`Change`]: its table (`schema.name`), its
//! [`ChangeOp`], the new row and, for updates and deletes, the old one (the
//! key columns, or every column under `REPLICA IDENTITY FULL`), each a [`Row`]
//! of column names to values as PostgreSQL writes them as text (`None` for
//! NULL). Map a change to your own types in the next step; [`Change::get`] reads
//! a column.
//!
//! ## Delivery: at-least-once, whole transactions
//!
//! Only committed transactions are decoded, each whole and in commit order; a
//! rolled-back transaction never appears. The partition's snapshot state
//! ([`CdcPosition`]) is the [`Lsn`] just past the commit of the last transaction
//! it handed out (or a point of the log it has read through with nothing to
//! hand out). A resumed partition (or one that reconnected) reads from the
//! slot's confirmed point and skips every transaction that committed before
//! its position.
//!
//! The slot is advanced (`pg_replication_slot_advance`) **only by the commit
//! hook**: once the recovery store has committed the snapshot holding a
//! position (without a store, once every sink has flushed the epochs before it).
//! A run killed at any point therefore loses nothing: the slot still holds what
//! was not committed, and the next run reads it again (so the transactions
//! after the last commit may arrive twice). Advancing also lets the server drop
//! the log before the position. The source moves its position on even through
//! a quiet publication, so a busy database does not keep its log for an idle
//! slot.
//!
//! A slot is one ordered stream, so the source is **one partition** (one reader,
//! named after the slot); other workers of the flow read nothing of it. Give
//! each flow a slot of its own: two runs reading the same slot would both read
//! every change, and the slot would stand where the furthest had acknowledged.
//!
//! ## Setting up
//!
//! The server needs `wal_level = logical` (in `postgresql.conf`, or `ALTER SYSTEM
//! SET wal_level = logical`, then a restart) and room in `max_replication_slots`
//! for the slot and, while a source reads it, its temporary copy (the default,
//! 10, does for a few). No replication connection is used, so
//! `max_wal_senders` and `pg_hba.conf`'s replication lines do not matter. Make the publication first, then the
//! slot ([`admin::create_publication`](super::admin::create_publication),
//! [`admin::create_slot`](super::admin::create_slot), both doing nothing when it
//! exists): the slot sees only what is committed after it was made, and the
//! publication must exist at the point of the log being decoded. Tables without
//! a primary key need a `REPLICA IDENTITY` before they may be updated or
//! deleted from under a publication (the server refuses otherwise). A slot
//! nobody reads keeps the server's log for ever: drop it
//! ([`admin::drop_slot`](super::admin::drop_slot)) when the flow is retired.
//!
//! The source checks at the start that the server is reachable, that
//! `wal_level` is `logical`, and that the slot (made for `pgoutput` in this
//! database) and the publication exist, and names what is wrong. A server that
//! goes away while running is reconnected to for the settings' retry time.
//! Text is decoded as UTF-8 (a database in another encoding has its bytes
//! replaced where they are not UTF-8).
//!
//! ## Backlog, description, wakes
//!
//! [`backlog`](riffle::sources::FixedPartitionedSource::backlog) is the number
//! of **changes** of the publication waiting in the slot (from its confirmed
//! point to the end of the log), the unit of the items the source hands out,
//! not bytes of log (the log holds much the publication does not decode); it
//! is counted by decoding that stretch of the log on the server, through a
//! temporary copy of the slot, up to about 100,000 messages.
//! [`describe`](riffle::sources::FixedPartitionedSource::describe) says
//! `postgres` with the `server` (password masked), the `slot` and the
//! `publication`. The reader task wakes the partition's poller
//! ([`wake_on_ready`](riffle::sources::SourcePartition::wake_on_ready)) after
//! each batch it hands over, so a flow reads a change as soon as it is decoded
//! rather than at its next tick.
//!
//! [`PostgresCdc::poll_every`] sets how often a source that has caught up looks
//! for new changes (200 ms), [`PostgresCdc::batch_size`] about how many
//! messages one read takes (4096), and [`PostgresCdc::tail`]`(false)` makes it
//! read what was committed when the run started, then finish. The same source
//! is a Flow consumer's source: the consumer's commit after each written round
//! is the commit hook that advances the slot.
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle::sinks::StdOutSink;
//! use riffle_connectors::postgres::{ChangeOp, PostgresCdc, PostgresSettings, admin};
//!
//! let pg = PostgresSettings::new("postgres://riffle@127.0.0.1:5432/shop");
//! admin::create_publication(&pg, "orders_pub", &["orders"])?;
//! admin::create_slot(&pg, "orders_slot")?;
//!
//! let flow = Dataflow::new("order-changes");
//! flow.input("changes", PostgresCdc::new(pg, "orders_slot", "orders_pub"))?
//!     .filter_map("cancelled", |change| match change.op {
//!         ChangeOp::Delete => change.get("id").map(|id| format!("order {id} cancelled")),
//!         _ => None,
//!     })?
//!     .output("out", StdOutSink::new())?;
//! riffle::run_main(&flow)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backlog;
mod pgoutput;
mod source;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use source::{CdcPosition, PostgresCdc, PostgresCdcPartition};

/// A position in PostgreSQL's write-ahead log (a `pg_lsn`), written as the
/// server writes it: two hexadecimal halves, `16/B374D848`.
///
/// ```
/// use riffle_connectors::postgres::Lsn;
/// let lsn: Lsn = "16/B374D848".parse().unwrap();
/// assert_eq!(lsn, Lsn(0x16_B374_D848));
/// assert_eq!(lsn.to_string(), "16/B374D848");
/// assert!("16-B3".parse::<Lsn>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Text that is not an [`Lsn`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a PostgreSQL LSN (two hexadecimal halves: 16/B374D848)")]
pub struct LsnError(String);

impl FromStr for Lsn {
    type Err = LsnError;

    fn from_str(s: &str) -> Result<Self, LsnError> {
        let bad = || LsnError(s.to_string());
        let (high, low) = s.split_once('/').ok_or_else(bad)?;
        let high = u32::from_str_radix(high, 16).map_err(|_| bad())?;
        let low = u32::from_str_radix(low, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A row of a change: each column's value as PostgreSQL writes it as text, or
/// `None` for NULL. An update's new row leaves out the columns whose large
/// (TOASTed) value did not change, as the server does not send them.
pub type Row = BTreeMap<String, Option<String>>;

/// What a [`Change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// A row was inserted: `new` holds it.
    Insert,
    /// A row was updated: `new` holds it; `old` holds its key before (or the
    /// whole old row under `REPLICA IDENTITY FULL`) when the key changed or the
    /// table's identity is full, and is `None` otherwise.
    Update,
    /// A row was deleted: `old` holds its key (or the whole row under
    /// `REPLICA IDENTITY FULL`).
    Delete,
    /// The table was truncated: neither row is set.
    Truncate,
}

/// One change of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The table changed, `schema.name`.
    pub table: String,
    /// What the change did.
    pub op: ChangeOp,
    /// The row before, where the server sends it (see [`ChangeOp`]).
    pub old: Option<Row>,
    /// The row after (inserts and updates).
    pub new: Option<Row>,
    /// The transaction's id.
    pub xid: u32,
    /// Where the change is in the log.
    pub lsn: Lsn,
    /// Just past the commit of its transaction: the same for every change of a
    /// transaction, growing from one transaction to the next; with the change's
    /// place in it, a key for consumers that drop what they saw twice.
    pub commit_lsn: Lsn,
    /// When its transaction committed, in microseconds since the Unix epoch.
    pub commit_time_us: i64,
}

impl Change {
    /// The value of `column`: from the new row, or from the old one when the
    /// change has no new row (a delete); `None` when the column is NULL or not
    /// in the row.
    ///
    /// ```
    /// use riffle_connectors::postgres::{Change, ChangeOp, Lsn};
    /// let change = Change {
    ///     table: "public.orders".into(),
    ///     op: ChangeOp::Delete,
    ///     old: Some([("id".to_string(), Some("7".to_string()))].into()),
    ///     new: None,
    ///     xid: 750,
    ///     lsn: Lsn(0x1_0000),
    ///     commit_lsn: Lsn(0x1_0100),
    ///     commit_time_us: 1_767_225_600_000_000,
    /// };
    /// assert_eq!(change.get("id"), Some("7"));
    /// assert_eq!(change.get("item"), None);
    /// ```
    pub fn get(&self, column: &str) -> Option<&str> {
        let row = self.new.as_ref().or(self.old.as_ref())?;
        row.get(column)?.as_deref()
    }

    /// When its transaction committed.
    pub fn commit_time(&self) -> std::time::SystemTime {
        let since = std::time::Duration::from_micros(self.commit_time_us.unsigned_abs());
        if self.commit_time_us >= 0 {
            std::time::UNIX_EPOCH + since
        } else {
            std::time::UNIX_EPOCH - since
        }
    }
}
