//! The messages of PostgreSQL's `pgoutput` plugin (logical replication protocol
//! version 1, as PostgreSQL documents it under "Logical Replication Message
//! Formats"), decoded from the bytes a peek returns, and the [`Decoder`] that
//! puts them together into whole transactions of [`Change`]s.
//!
//! Integers are big-endian; strings end with a zero byte. A transaction is
//! `Begin`, its changes, `Commit`; a `Relation` message describes a table (its
//! schema, name and columns) before the first change to it in each decoding
//! session, so the decoder keeps every relation it was told of.

use std::collections::HashMap;

use super::{Change, ChangeOp, Lsn, Row};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// Why bytes were not a pgoutput message the decoder understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DecodeError(pub(super) String);

impl DecodeError {
    fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Datum {
    /// NULL.
    Null,
    /// A TOASTed value that did not change, not sent.
    Unchanged,
    /// The value as text.
    Text(String),
}

/// A column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Column {
    pub(super) name: String,
    /// Part of the table's replica identity (its key).
    pub(super) key: bool,
}

/// A table as a `Relation` message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Relation {
    pub(super) id: u32,
    /// `schema.name`.
    pub(super) table: String,
    pub(super) columns: Vec<Column>,
}

/// The old row of an update or a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Old {
    /// Every column (`'O'`, replica identity full), or only the key (`'K'`).
    pub(super) whole: bool,
    pub(super) tuple: Vec<Datum>,
}

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Message {
    Begin {
        /// Where the transaction's commit record starts.
        final_lsn: Lsn,
        time_us: i64,
        xid: u32,
    },
    Commit {
        /// Just past the commit record.
        end_lsn: Lsn,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Vec<Datum>,
    },
    Update {
        relation: u32,
        old: Option<Old>,
        new: Vec<Datum>,
    },
    Delete {
        relation: u32,
        old: Old,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// A message that carries no change (`Type`, `Origin`, a logical `Message`).
    Other,
}

/// Reads big-endian fields off a message.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(DecodeError::new(format!(
                "the message ends at byte {} inside its {what}",
                self.data.len()
            )));
        };
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut out = [0u8; 8];
        out.copy_from_slice(b);
        Ok(u64::from_be_bytes(out))
    }

    fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        Ok(self.u64(what)? as i64)
    }

    /// A zero-terminated string.
    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let rest = &self.data[self.at..];
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            return Err(DecodeError::new(format!("the {what} has no end")));
        };
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.at += len + 1;
        Ok(text)
    }

    /// A commit timestamp, in microseconds since the Unix epoch.
    fn time(&mut self) -> Result<i64, DecodeError> {
        Ok(self.i64("timestamp")?.saturating_add(POSTGRES_EPOCH_US))
    }

    fn tuple(&mut self) -> Result<Vec<Datum>, DecodeError> {
        let n = self.u16("column count")?;
        let mut out = Vec::with_capacity(usize::from(n));
        for i in 0..n {
            let datum = match self.u8("column kind")? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                b't' => {
                    let len = self.u32("value length")? as usize;
                    let text = self.take(len, "value")?;
                    Datum::Text(String::from_utf8_lossy(text).into_owned())
                }
                b'b' => {
                    return Err(DecodeError::new(format!(
                        "column {i} is in binary form, which the source does not ask for"
                    )));
                }
                other => {
                    return Err(DecodeError::new(format!(
                        "column {i} has the unknown kind {:?}",
                        char::from(other)
                    )));
                }
            };
            out.push(datum);
        }
        Ok(out)
    }

    fn old(&mut self, kind: u8) -> Result<Old, DecodeError> {
        Ok(Old {
            whole: kind == b'O',
            tuple: self.tuple()?,
        })
    }

    fn expect(&mut self, want: u8, what: &str) -> Result<(), DecodeError> {
        let got = self.u8(what)?;
        if got != want {
            return Err(DecodeError::new(format!(
                "expected {:?} before the {what}, found {:?}",
                char::from(want),
                char::from(got)
            )));
        }
        Ok(())
    }
}

/// Decodes one message.
pub(super) fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    let mut b = Bytes { data, at: 0 };
    let message = match b.u8("message type")? {
        b'B' => Message::Begin {
            final_lsn: Lsn(b.u64("final LSN")?),
            time_us: b.time()?,
            xid: b.u32("transaction id")?,
        },
        b'C' => {
            b.u8("commit flags")?;
            b.u64("commit LSN")?;
            let end_lsn = Lsn(b.u64("end LSN")?);
            // The commit's time, which `Begin` said already.
            b.time()?;
            Message::Commit { end_lsn }
        }
        b'R' => {
            let id = b.u32("relation id")?;
            let schema = b.string("schema name")?;
            let name = b.string("table name")?;
            b.u8("replica identity")?;
            let n = b.u16("column count")?;
            let mut columns = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let flags = b.u8("column flags")?;
                let name = b.string("column name")?;
                b.u32("column type")?;
                b.u32("column type modifier")?;
                columns.push(Column {
                    name,
                    key: flags & 1 == 1,
                });
            }
            // pgoutput writes the system schema as an empty name.
            let schema = if schema.is_empty() {
                "pg_catalog".to_string()
            } else {
                schema
            };
            Message::Relation(Relation {
                id,
                table: format!("{schema}.{name}"),
                columns,
            })
        }
        b'I' => {
            let relation = b.u32("relation id")?;
            b.expect(b'N', "new row")?;
            Message::Insert {
                relation,
                new: b.tuple()?,
            }
        }
        b'U' => {
            let relation = b.u32("relation id")?;
            let old = match b.u8("row kind")? {
                kind @ (b'K' | b'O') => {
                    let old = b.old(kind)?;
                    b.expect(b'N', "new row")?;
                    Some(old)
                }
                b'N' => None,
                other => {
                    return Err(DecodeError::new(format!(
                        "an update's row has the unknown kind {:?}",
                        char::from(other)
                    )));
                }
            };
            Message::Update {
                relation,
                old,
                new: b.tuple()?,
            }
        }
        b'D' => {
            let relation = b.u32("relation id")?;
            let old = match b.u8("row kind")? {
                kind @ (b'K' | b'O') => b.old(kind)?,
                other => {
                    return Err(DecodeError::new(format!(
                        "a delete's row has the unknown kind {:?}",
                        char::from(other)
                    )));
                }
            };
            Message::Delete { relation, old }
        }
        b'T' => {
            let n = b.u32("relation count")?;
            b.u8("truncate options")?;
            let relations = (0..n)
                .map(|_| b.u32("relation id"))
                .collect::<Result<Vec<_>, _>>()?;
            Message::Truncate { relations }
        }
        b'Y' | b'O' | b'M' => Message::Other,
        other => {
            return Err(DecodeError::new(format!(
                "unknown message type {:?} (the source asks for protocol version 1, \
                 without streamed transactions)",
                char::from(other)
            )));
        }
    };
    Ok(message)
}

/// A transaction read to its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transaction {
    /// Just past its commit record.
    pub(super) end: Lsn,
    /// Its changes, in order; empty when it was skipped.
    pub(super) changes: Vec<Change>,
    /// Whether it committed before the position and was skipped.
    pub(super) skipped: bool,
}

/// The transaction being read.
struct Open {
    xid: u32,
    time_us: i64,
    skip: bool,
    /// Changes without their commit's LSN and time, set at the commit.
    changes: Vec<Change>,
}

/// Puts messages together into transactions, keeping the relations it was told of.
#[derive(Default)]
pub(super) struct Decoder {
    relations: HashMap<u32, Relation>,
    open: Option<Open>,
}

impl Decoder {
    /// Drops a transaction left unfinished (a peek always returns whole ones, so
    /// this is only for a peek that failed midway).
    pub(super) fn reset(&mut self) {
        self.open = None;
    }

    /// Whether a transaction was begun and not yet committed.
    pub(super) fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// Takes the message `data` found at `lsn`; returns the transaction it
    /// completes, if it is a commit. A transaction whose commit record starts
    /// before `skip_before` has been handed out already: its changes are not
    /// made, only its relations kept.
    pub(super) fn feed(
        &mut self,
        lsn: Lsn,
        data: &[u8],
        skip_before: Option<Lsn>,
    ) -> Result<Option<Transaction>, DecodeError> {
        match decode(data)? {
            Message::Begin {
                final_lsn,
                time_us,
                xid,
            } => {
                if let Some(open) = &self.open {
                    return Err(DecodeError::new(format!(
                        "transaction {xid} begins before transaction {} committed",
                        open.xid
                    )));
                }
                self.open = Some(Open {
                    xid,
                    time_us,
                    skip: skip_before.is_some_and(|p| final_lsn < p),
                    changes: Vec::new(),
                });
                Ok(None)
            }
            Message::Commit { end_lsn } => {
                let Some(open) = self.open.take() else {
                    return Err(DecodeError::new("a commit without a transaction"));
                };
                let mut changes = open.changes;
                for change in &mut changes {
                    change.commit_lsn = end_lsn;
                }
                Ok(Some(Transaction {
                    end: end_lsn,
                    changes,
                    skipped: open.skip,
                }))
            }
            Message::Relation(relation) => {
                self.relations.insert(relation.id, relation);
                Ok(None)
            }
            Message::Insert { relation, new } => {
                self.change(lsn, relation, ChangeOp::Insert, None, Some(new))
            }
            Message::Update { relation, old, new } => {
                self.change(lsn, relation, ChangeOp::Update, old, Some(new))
            }
            Message::Delete { relation, old } => {
                self.change(lsn, relation, ChangeOp::Delete, Some(old), None)
            }
            Message::Truncate { relations } => {
                for relation in relations {
                    self.change(lsn, relation, ChangeOp::Truncate, None, None)?;
                }
                Ok(None)
            }
            Message::Other => Ok(None),
        }
    }

    fn change(
        &mut self,
        lsn: Lsn,
        relation: u32,
        op: ChangeOp,
        old: Option<Old>,
        new: Option<Vec<Datum>>,
    ) -> Result<Option<Transaction>, DecodeError> {
        let Some(open) = self.open.as_mut() else {
            return Err(DecodeError::new(format!(
                "a change to relation {relation} outside a transaction"
            )));
        };
        if open.skip {
            return Ok(None);
        }
        let Some(rel) = self.relations.get(&relation) else {
            return Err(DecodeError::new(format!(
                "a change to relation {relation}, which no Relation message described"
            )));
        };
        let old = old
            .map(|old| row(rel, &old.tuple, !old.whole))
            .transpose()?;
        let new = new.map(|new| row(rel, &new, false)).transpose()?;
        open.changes.push(Change {
            table: rel.table.clone(),
            op,
            old,
            new,
            xid: open.xid,
            lsn,
            commit_lsn: Lsn::default(),
            commit_time_us: open.time_us,
        });
        Ok(None)
    }
}

/// A tuple of `rel` as a row: only its key columns with `key_only` (the server
/// sends the others as NULL), without the unchanged TOASTed ones.
fn row(rel: &Relation, tuple: &[Datum], key_only: bool) -> Result<Row, DecodeError> {
    if tuple.len() != rel.columns.len() {
        return Err(DecodeError::new(format!(
            "a row of {} has {} columns, its relation {}",
            rel.table,
            tuple.len(),
            rel.columns.len()
        )));
    }
    let mut out = Row::new();
    for (column, datum) in rel.columns.iter().zip(tuple) {
        if key_only && !column.key {
            continue;
        }
        match datum {
            Datum::Null => {
                out.insert(column.name.clone(), None);
            }
            Datum::Text(text) => {
                out.insert(column.name.clone(), Some(text.clone()));
            }
            Datum::Unchanged => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds messages as pgoutput writes them.
    #[derive(Default)]
    struct Out(Vec<u8>);

    impl Out {
        fn byte(mut self, b: u8) -> Self {
            self.0.push(b);
            self
        }
        fn u16(mut self, v: u16) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn string(mut self, s: &str) -> Self {
            self.0.extend(s.as_bytes());
            self.0.push(0);
            self
        }
        fn text(self, s: &str) -> Self {
            let mut out = self.byte(b't').u32(s.len() as u32);
            out.0.extend(s.as_bytes());
            out
        }
    }

    fn begin(final_lsn: u64, xid: u32) -> Vec<u8> {
        Out::default()
            .byte(b'B')
            .u64(final_lsn)
            .u64(1_000_000)
            .u32(xid)
            .0
    }

    fn commit(end: u64) -> Vec<u8> {
        Out::default()
            .byte(b'C')
            .byte(0)
            .u64(end - 0x30)
            .u64(end)
            .u64(1_000_000)
            .0
    }

    /// `public.orders (id key, item, note)`.
    fn relation() -> Vec<u8> {
        let mut out = Out::default()
            .byte(b'R')
            .u32(16_400)
            .string("public")
            .string("orders")
            .byte(b'd')
            .u16(3);
        for (flags, name, oid) in [(1, "id", 20), (0, "item", 25), (0, "note", 25)] {
            out = out.byte(flags).string(name).u32(oid).u32(u32::MAX);
        }
        out.0
    }

    fn row(pairs: &[(&str, Option<&str>)]) -> Row {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn a_transaction_of_every_kind_of_change_comes_whole_at_its_commit() {
        let mut d = Decoder::default();
        let feed = |d: &mut Decoder, at: u64, m: Vec<u8>| d.feed(Lsn(at), &m, None).unwrap();
        assert_eq!(feed(&mut d, 0x100, begin(0x400, 750)), None);
        assert_eq!(feed(&mut d, 0x100, relation()), None);
        let insert = Out::default()
            .byte(b'I')
            .u32(16_400)
            .byte(b'N')
            .u16(3)
            .text("7")
            .text("tea")
            .byte(b'n')
            .0;
        assert_eq!(feed(&mut d, 0x100, insert), None);
        // The key changed: the old key comes first; `note` is an unchanged TOAST.
        let update = Out::default()
            .byte(b'U')
            .u32(16_400)
            .byte(b'K')
            .u16(3)
            .text("7")
            .byte(b'n')
            .byte(b'n')
            .byte(b'N')
            .u16(3)
            .text("8")
            .text("green tea")
            .byte(b'u')
            .0;
        assert_eq!(feed(&mut d, 0x200, update), None);
        let delete = Out::default()
            .byte(b'D')
            .u32(16_400)
            .byte(b'O')
            .u16(3)
            .text("8")
            .text("green tea")
            .byte(b'n')
            .0;
        assert_eq!(feed(&mut d, 0x300, delete), None);
        let truncate = Out::default().byte(b'T').u32(1).byte(0).u32(16_400).0;
        assert_eq!(feed(&mut d, 0x380, truncate), None);
        let origin = Out::default().byte(b'O').u64(5).string("elsewhere").0;
        assert_eq!(feed(&mut d, 0x390, origin), None);
        assert!(d.in_transaction());
        let done = feed(&mut d, 0x430, commit(0x430)).expect("the commit ends it");
        assert!(!d.in_transaction());
        assert_eq!(done.end, Lsn(0x430));
        assert!(!done.skipped);
        let ops: Vec<_> = done.changes.iter().map(|c| c.op).collect();
        use ChangeOp::*;
        assert_eq!(ops, [Insert, Update, Delete, Truncate]);
        let [insert, update, delete, truncate] = &done.changes[..] else {
            unreachable!()
        };
        assert_eq!(insert.table, "public.orders");
        assert_eq!(
            insert.new,
            Some(row(&[
                ("id", Some("7")),
                ("item", Some("tea")),
                ("note", None)
            ]))
        );
        assert_eq!(insert.old, None);
        assert_eq!(update.old, Some(row(&[("id", Some("7"))])), "only the key");
        assert_eq!(
            update.new,
            Some(row(&[("id", Some("8")), ("item", Some("green tea"))])),
            "the unchanged TOAST column is left out"
        );
        assert_eq!(
            delete.old,
            Some(row(&[
                ("id", Some("8")),
                ("item", Some("green tea")),
                ("note", None)
            ])),
            "the whole old row under REPLICA IDENTITY FULL"
        );
        assert_eq!((truncate.old.as_ref(), truncate.new.as_ref()), (None, None));
        for c in &done.changes {
            assert_eq!((c.xid, c.commit_lsn), (750, Lsn(0x430)));
            assert_eq!(c.commit_time_us, 946_684_800_000_000 + 1_000_000);
        }
        assert_eq!(insert.lsn, Lsn(0x100));
        assert_eq!(delete.lsn, Lsn(0x300));
    }

    #[test]
    fn a_transaction_committed_before_the_position_is_skipped_but_its_relation_kept() {
        let mut d = Decoder::default();
        let insert = |id: &str| {
            Out::default()
                .byte(b'I')
                .u32(16_400)
                .byte(b'N')
                .u16(3)
                .text(id)
                .byte(b'n')
                .byte(b'n')
                .0
        };
        let skip = Some(Lsn(0x500));
        d.feed(Lsn(0x100), &begin(0x400, 750), skip).unwrap();
        d.feed(Lsn(0x100), &relation(), skip).unwrap();
        d.feed(Lsn(0x100), &insert("1"), skip).unwrap();
        let first = d.feed(Lsn(0x430), &commit(0x430), skip).unwrap().unwrap();
        assert!(first.skipped && first.changes.is_empty());
        // The next transaction names the relation without describing it again.
        d.feed(Lsn(0x600), &begin(0x700, 751), skip).unwrap();
        d.feed(Lsn(0x600), &insert("2"), skip).unwrap();
        let second = d.feed(Lsn(0x730), &commit(0x730), skip).unwrap().unwrap();
        assert!(!second.skipped);
        assert_eq!(second.changes[0].get("id"), Some("2"));
    }

    #[test]
    fn bad_messages_are_errors_that_say_what_is_wrong() {
        let mut d = Decoder::default();
        let err = |d: &mut Decoder, m: &[u8]| d.feed(Lsn(1), m, None).unwrap_err().0;
        assert!(err(&mut d, b"").contains("message type"));
        assert!(err(&mut d, b"Zxx").contains("unknown message type 'Z'"));
        assert!(err(&mut d, &begin(0x400, 1)[..5]).contains("final LSN"));
        assert!(err(&mut d, &commit(0x430)).contains("without a transaction"));
        d.feed(Lsn(1), &begin(0x400, 9), None).unwrap();
        let unknown = Out::default().byte(b'I').u32(99).byte(b'N').u16(0).0;
        assert!(err(&mut d, &unknown).contains("relation 99"));
        d.feed(Lsn(1), &relation(), None).unwrap();
        let short = Out::default()
            .byte(b'I')
            .u32(16_400)
            .byte(b'N')
            .u16(1)
            .text("7")
            .0;
        assert!(err(&mut d, &short).contains("has 1 columns, its relation 3"));
        let binary = Out::default()
            .byte(b'I')
            .u32(16_400)
            .byte(b'N')
            .u16(1)
            .byte(b'b')
            .0;
        assert!(err(&mut d, &binary).contains("binary"));
        let cut = Out::default()
            .byte(b'I')
            .u32(16_400)
            .byte(b'N')
            .u16(1)
            .byte(b't')
            .u32(50)
            .0;
        assert!(err(&mut d, &cut).contains("inside its value"));
        assert!(err(&mut d, &begin(0x800, 10)).contains("before transaction 9 committed"));
        d.reset();
        assert!(!d.in_transaction());
    }
}
