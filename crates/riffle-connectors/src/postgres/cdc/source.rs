//! The change data capture source: one partition reading a logical replication
//! slot through a task of its own on the shared runtime, which reads a
//! temporary copy of the slot, decodes whole transactions and advances the slot
//! itself when the partition's commit hook says a position is safe. The task
//! wakes whoever polls the partition after each batch it hands over.

use std::time::Duration;

use riffle::sources::{FixedPartitionedSource, Poll, SourceInfo, SourcePartition};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;
use tokio_postgres::types::PgLsn;

use super::pgoutput::Decoder;
use super::{Change, Lsn};
use crate::postgres::outage::{Failure, Outage};
use crate::postgres::settings::{PostgresSettings, quote, says, transient};
use crate::ready::Ready;
use crate::{ConnectorError, runtime};

/// A partition's snapshot state: every transaction whose commit ended at or
/// before `lsn` has been handed out (`None`: nothing yet; the slot's own
/// position then says where to start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CdcPosition {
    /// How far the partition has read.
    pub lsn: Option<Lsn>,
}

/// Reads the changes of a publication from a logical replication slot; see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct PostgresCdc {
    settings: PostgresSettings,
    slot: String,
    publication: String,
    poll_every: Duration,
    batch: usize,
    tail: bool,
}

impl PostgresCdc {
    /// Reads slot `slot` (logical, made for `pgoutput` in the settings'
    /// database) decoding the tables of publication `publication`, following
    /// new changes for ever.
    pub fn new(
        settings: PostgresSettings,
        slot: impl Into<String>,
        publication: impl Into<String>,
    ) -> Self {
        Self {
            settings,
            slot: slot.into(),
            publication: publication.into(),
            poll_every: Duration::from_millis(200),
            batch: 4096,
            tail: true,
        }
    }

    /// How often a source that has caught up looks for new changes (default
    /// 200 ms).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// About how many messages one read of the slot takes (default 4096; each
    /// change is one, and each transaction's begin and commit one more; a
    /// transaction always comes whole, so a batch can be larger).
    pub fn batch_size(mut self, changes: usize) -> Self {
        self.batch = changes.max(1);
        self
    }

    /// Whether to follow new changes for ever (`true`, the default) or read
    /// what was committed when the run started, then finish.
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }

    fn what(&self) -> String {
        format!(
            "replication slot {:?} (publication {:?})",
            self.slot, self.publication
        )
    }
}

impl FixedPartitionedSource for PostgresCdc {
    type Item = Change;
    type State = CdcPosition;
    type Partition = PostgresCdcPartition;

    fn list_parts(&self, _step_id: &str) -> riffle::Result<Vec<String>> {
        Ok(vec![self.slot.clone()])
    }

    /// The changes of the publication waiting in the slot: after its confirmed
    /// point (`confirmed_flush_lsn`, where the last committed position advanced
    /// it) up to the end of the log (`pg_current_wal_lsn()`). The unit is
    /// changes, the items the source hands out (a truncate counts once per
    /// table), not bytes of log: the log also holds what the publication does
    /// not decode. Counting decodes that stretch of the log on the server
    /// through a temporary copy of the slot (one more free slot for a moment),
    /// up to about 100,000 messages: a larger backlog reads as about that
    /// many. Changes read but not yet committed count too.
    fn backlog(&self, step_id: &str) -> riffle::Result<Option<u64>> {
        runtime::handle()
            .block_on(super::backlog::count(
                &self.settings,
                &self.slot,
                &self.publication,
                &self.what(),
            ))
            .map(Some)
            .map_err(|e| e.for_step(step_id))
    }

    /// `postgres`: the `server` (its URL, any password masked), the `slot` and
    /// the `publication`.
    fn describe(&self, _step_id: &str) -> Option<SourceInfo> {
        Some(SourceInfo {
            system: "postgres",
            fields: vec![
                ("server", self.settings.server()),
                ("slot", self.slot.clone()),
                ("publication", self.publication.clone()),
            ],
        })
    }

    fn build_part(
        &self,
        step_id: &str,
        _for_part: &str,
        resume_state: Option<CdcPosition>,
    ) -> riffle::Result<PostgresCdcPartition> {
        let position = resume_state.unwrap_or_default().lsn;
        let (ack_tx, acks) = watch::channel(Ack::default());
        let (tx, batches) = mpsc::channel(4);
        let ready = Ready::default();
        let mut task = Task {
            settings: self.settings.clone(),
            slot: self.slot.clone(),
            publication: self.publication.clone(),
            what: self.what(),
            client: None,
            decoder: Decoder::default(),
            position,
            advanced: None,
            end: None,
            tail: self.tail,
            batch: self.batch,
            poll_every: self.poll_every,
            copy: String::new(),
            reached: None,
            acks,
            tx,
            ready: ready.clone(),
        };
        let task = runtime::handle()
            .block_on(async {
                task.open().await?;
                Ok::<_, ConnectorError>(task)
            })
            .map_err(|e| e.for_step(step_id))?;
        let task = runtime::handle().spawn(task.run());
        Ok(PostgresCdcPartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            what: self.what(),
            batches: Some(batches),
            acks: ack_tx,
            ready,
            task: Some(task),
            position,
            done: false,
        })
    }
}

/// What the partition tells its task.
#[derive(Debug, Clone, Copy, Default)]
struct Ack {
    /// The newest committed position: the slot may be advanced to it.
    lsn: Option<Lsn>,
    /// The partition is closing: advance the slot one last time and end.
    stop: bool,
}

/// What the task hands the partition.
enum Read {
    /// Whole transactions' changes (maybe none), and the position past them.
    Changes { changes: Vec<Change>, position: Lsn },
    /// A bounded source read everything committed when the run started.
    Done,
    /// Reading failed for good.
    Failed(ConnectorError),
}

/// How a round ended.
enum Round {
    /// The read was cut short by its size: read again at once.
    More,
    /// Everything committed up to the round's end of the log was read.
    CaughtUp,
    /// The partition is gone.
    Gone,
}

/// Statements the task runs.
const COPY: &str = "SELECT (pg_copy_logical_replication_slot($1, 'riffle_cdc_' || pg_backend_pid(), \
                    true)).slot_name::text";
const GET: &str = "SELECT lsn, data FROM pg_logical_slot_get_binary_changes(\
                   $1, $2, $3, 'proto_version', '1', 'publication_names', $4)";
const FLUSHED: &str = "SELECT pg_current_wal_flush_lsn()";
const ADVANCE: &str = "SELECT pg_replication_slot_advance(slot_name, $2) \
                       FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn < $2";

/// The task that reads one slot on the shared runtime.
///
/// Its connection copies the slot into a temporary slot of its own (dropped
/// by the server when the connection ends) and reads the copy with
/// `pg_logical_slot_get_binary_changes`, which moves the copy only: each
/// change is decoded once, and the slot stays where it is until the commit
/// hook advances it. Each round it notes how far the log is flushed (`L`, or,
/// for a bounded source, the log's end when the run started) and, unless the
/// last read reached `L` already, reads up to `L`, about `batch` messages. The
/// copy starts at the slot's confirmed point (again after a reconnect): the
/// task skips the transactions whose commit starts before its position, and
/// hands out the others. When a read was not cut short by its size, it reached
/// `L`: every commit starting before `L` has been seen, so the position moves
/// to `L` even when nothing came (so the slot moves on through a quiet
/// publication).
struct Task {
    settings: PostgresSettings,
    slot: String,
    publication: String,
    what: String,
    client: Option<Client>,
    decoder: Decoder,
    /// Everything committed before it has been handed out.
    position: Option<Lsn>,
    /// The slot's confirmed position, as far as the task knows.
    advanced: Option<Lsn>,
    /// A bounded source's end: the log flushed when the run started.
    end: Option<Lsn>,
    tail: bool,
    batch: usize,
    poll_every: Duration,
    /// The temporary copy of the slot this connection reads.
    copy: String,
    /// The end of the log the last read reached, when it was not cut short: a
    /// log that has not grown since has nothing new.
    reached: Option<Lsn>,
    acks: watch::Receiver<Ack>,
    tx: mpsc::Sender<Read>,
    /// Woken after each hand-over.
    ready: Ready,
}

impl Task {
    /// Connects and checks the server, the slot and the publication.
    async fn open(&mut self) -> Result<(), ConnectorError> {
        let client = self.settings.connect().await?;
        let fail = |doing: &str, e: tokio_postgres::Error| {
            self.settings
                .error(format!("{doing} {}: {}", self.what, says(&e)))
                .caused_by(e)
        };
        let row = client
            .query_one(
                "SELECT current_setting('wal_level'), current_database()::text",
                &[],
            )
            .await
            .map_err(|e| fail("cannot read", e))?;
        let wal_level: String = row.get(0);
        let database: String = row.get(1);
        if wal_level != "logical" {
            return Err(self.settings.error(format!(
                "cannot read {}: the server's wal_level is {wal_level:?}, and change data \
                 capture needs \"logical\": set wal_level = logical in postgresql.conf (or \
                 ALTER SYSTEM SET wal_level = logical) and restart the server",
                self.what
            )));
        }
        let slot = client
            .query_opt(
                "SELECT plugin::text, slot_type, database::text, confirmed_flush_lsn \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await
            .map_err(|e| fail("cannot read", e))?;
        let Some(slot) = slot else {
            return Err(self.settings.error(format!(
                "replication slot {:?} does not exist: make it with \
                 postgres::admin::create_slot (SELECT pg_create_logical_replication_slot({}, \
                 'pgoutput')) after making publication {:?}",
                self.slot,
                literal(&self.slot),
                self.publication
            )));
        };
        let plugin: Option<String> = slot.get(0);
        let kind: String = slot.get(1);
        let slot_database: Option<String> = slot.get(2);
        if kind != "logical" || plugin.as_deref() != Some("pgoutput") {
            return Err(self.settings.error(format!(
                "replication slot {:?} is a {kind} slot for {}, not a logical slot for pgoutput",
                self.slot,
                plugin.as_deref().unwrap_or("no plugin")
            )));
        }
        if slot_database.as_deref() != Some(database.as_str()) {
            return Err(self.settings.error(format!(
                "replication slot {:?} was made in database {:?}, not in {database:?} \
                 that the settings name",
                self.slot,
                slot_database.unwrap_or_default()
            )));
        }
        let confirmed: Option<PgLsn> = slot.get(3);
        self.advanced = confirmed.map(|l| Lsn(l.into()));
        let found: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
                &[&self.publication],
            )
            .await
            .map_err(|e| fail("cannot read", e))?
            .get(0);
        if !found {
            return Err(self.settings.error(format!(
                "publication {:?} does not exist in database {database:?}: make it with \
                 postgres::admin::create_publication (CREATE PUBLICATION ... FOR TABLE ...) \
                 before the slot",
                self.publication
            )));
        }
        if !self.tail && self.end.is_none() {
            let row = client
                .query_one(FLUSHED, &[])
                .await
                .map_err(|e| fail("cannot read", e))?;
            let end: PgLsn = row.get(0);
            self.end = Some(Lsn(end.into()));
        }
        let copy = client.query_one(COPY, &[&self.slot]).await.map_err(|e| {
            let why = if e.code().is_some_and(|c| c.code() == "53400") {
                format!(
                    "{}; the source reads a temporary copy of the slot, which needs one \
                     more free slot: raise max_replication_slots",
                    says(&e)
                )
            } else {
                says(&e)
            };
            self.settings
                .error(format!("cannot copy {} to read it: {why}", self.what))
                .caused_by(e)
        })?;
        self.copy = copy.get(0);
        self.reached = None;
        self.client = Some(client);
        Ok(())
    }

    async fn run(mut self) {
        let outcome = self.read().await;
        // What the partition acknowledged last reaches the slot before the end.
        if self.client.is_some() {
            let why = match self.advance().await {
                Ok(()) => None,
                Err(Failure::Gone(why)) => Some(why),
                Err(Failure::Fatal(e)) => Some(e.to_string()),
            };
            if let Some(why) = why {
                eprintln!(
                    "postgres at {}: cannot advance {} at the end (it is read again from \
                     where it stands): {why}",
                    self.settings.server(),
                    self.what
                );
            }
        }
        if let Err(e) = outcome {
            self.hand_over(Read::Failed(e)).await;
        }
    }

    /// Reads until the partition closes (or a bounded source is done and its
    /// partition closes), reconnecting through a server that went away for at
    /// most the settings' patience, saying so once on stderr.
    async fn read(&mut self) -> Result<(), ConnectorError> {
        let mut outage = Outage::default();
        let mut done = false;
        loop {
            if self.acks.borrow().stop {
                return Ok(());
            }
            let round = if done {
                // Read to the end: only the acknowledgements are left to pass on.
                self.advance().await.map(|()| Round::CaughtUp)
            } else {
                self.round().await
            };
            match round {
                Ok(Round::More) => {}
                Ok(Round::CaughtUp) => {
                    if !self.tail && !done {
                        done = true;
                        if !self.hand_over(Read::Done).await {
                            return Ok(());
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(self.poll_every) => {}
                        changed = self.acks.changed() => {
                            if changed.is_err() {
                                return Ok(());
                            }
                        }
                    }
                }
                Ok(Round::Gone) => return Ok(()),
                Err(Failure::Gone(why)) => {
                    self.client = None;
                    outage.gone(&self.settings, &self.what, &why).await?;
                    continue;
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
            outage.over(&self.settings, &self.what);
        }
    }

    /// Hands `read` to the partition and wakes whoever polls it; `false` when
    /// the partition is gone.
    async fn hand_over(&self, read: Read) -> bool {
        let sent = self.tx.send(read).await.is_ok();
        if sent {
            self.ready.wake();
        }
        sent
    }

    fn failure(&self, action: &str, e: tokio_postgres::Error) -> Failure {
        // A slot another session advances or copies at this moment frees up soon.
        let in_use = e.code().is_some_and(|c| c.code() == "55006");
        if transient(&e) || in_use {
            Failure::Gone(says(&e))
        } else {
            Failure::Fatal(
                self.settings
                    .error(format!("{action} {}: {}", self.what, says(&e)))
                    .caused_by(e),
            )
        }
    }

    fn client(&self) -> Result<&Client, Failure> {
        self.client
            .as_ref()
            .ok_or_else(|| Failure::Fatal(self.settings.error("no connection")))
    }

    /// Moves the slot to the newest committed position, if it is behind it.
    async fn advance(&mut self) -> Result<(), Failure> {
        let Some(to) = self.acks.borrow().lsn else {
            return Ok(());
        };
        if self.advanced.is_some_and(|at| at >= to) {
            return Ok(());
        }
        self.connected().await?;
        let client = self.client()?;
        client
            .query(ADVANCE, &[&self.slot, &PgLsn::from(to.0)])
            .await
            .map_err(|e| self.failure("cannot advance", e))?;
        self.advanced = Some(to);
        Ok(())
    }

    /// Connects again after the server went away.
    async fn connected(&mut self) -> Result<(), Failure> {
        if self.client.is_some() {
            return Ok(());
        }
        self.open().await.map_err(Failure::of_connect)
    }

    /// One read of the copy, handing out the transactions after the position.
    async fn round(&mut self) -> Result<Round, Failure> {
        self.advance().await?;
        self.connected().await?;
        let client = self.client()?;
        let upto = match self.end {
            Some(end) => end,
            None => {
                let row = client
                    .query_one(FLUSHED, &[])
                    .await
                    .map_err(|e| self.failure("cannot read", e))?;
                Lsn(row.get::<_, PgLsn>(0).into())
            }
        };
        if self.reached == Some(upto) {
            return Ok(Round::CaughtUp);
        }
        let limit = i32::try_from(self.batch).unwrap_or(i32::MAX);
        let publication = quote(&self.publication);
        let rows = client
            .query(
                GET,
                &[&self.copy, &PgLsn::from(upto.0), &limit, &publication],
            )
            .await
            .map_err(|e| self.failure("cannot read", e))?;
        self.decoder.reset();
        let mut changes = Vec::new();
        let mut position = self.position;
        for row in &rows {
            let lsn = Lsn(row.get::<_, PgLsn>(0).into());
            let data: &[u8] = row.get(1);
            let done = self.decoder.feed(lsn, data, position).map_err(|e| {
                Failure::Fatal(self.settings.error(format!(
                    "cannot decode the message at LSN {lsn} of {}: {}",
                    self.what, e.0
                )))
            })?;
            if let Some(transaction) = done {
                if !transaction.skipped {
                    changes.extend(transaction.changes);
                }
                position = position.max(Some(transaction.end));
            }
        }
        if self.decoder.in_transaction() {
            return Err(Failure::Fatal(self.settings.error(format!(
                "a read of {} ended inside a transaction",
                self.what
            ))));
        }
        let caught_up = rows.len() < limit as usize;
        if caught_up {
            position = position.max(Some(upto));
            self.reached = Some(upto);
        }
        if let Some(to) = position
            && (position > self.position || !changes.is_empty())
        {
            if !self
                .hand_over(Read::Changes {
                    changes,
                    position: to,
                })
                .await
            {
                return Ok(Round::Gone);
            }
            self.position = position;
        }
        Ok(if caught_up {
            Round::CaughtUp
        } else {
            Round::More
        })
    }
}

/// `text` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The changes of one slot being read; made by [`PostgresCdc`].
pub struct PostgresCdcPartition {
    step_id: String,
    settings: PostgresSettings,
    what: String,
    batches: Option<mpsc::Receiver<Read>>,
    acks: watch::Sender<Ack>,
    ready: Ready,
    task: Option<tokio::task::JoinHandle<()>>,
    position: Option<Lsn>,
    done: bool,
}

impl SourcePartition for PostgresCdcPartition {
    type Item = Change;
    type State = CdcPosition;

    /// The reader task wakes `ready` after each batch of changes it hands over
    /// (a quiet publication's moved position too), at the end of a bounded
    /// read, and when it fails.
    fn wake_on_ready(&mut self, ready: &std::task::Waker) {
        self.ready.set(ready);
    }

    fn next_batch(&mut self) -> riffle::Result<Poll<Change>> {
        let mut out = Vec::new();
        while !self.done {
            let Some(batches) = self.batches.as_mut() else {
                break;
            };
            match batches.try_recv() {
                Ok(Read::Changes { changes, position }) => {
                    out.extend(changes);
                    self.position = Some(position);
                }
                Ok(Read::Done) => self.done = true,
                Ok(Read::Failed(e)) => return Err(e.for_step(&self.step_id)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(self
                        .settings
                        .error(format!("the reader of {} stopped", self.what))
                        .for_step(&self.step_id));
                }
            }
        }
        Ok(if !out.is_empty() {
            Poll::Ready(out)
        } else if self.done {
            Poll::Exhausted
        } else {
            Poll::Pending
        })
    }

    fn snapshot(&self) -> Option<CdcPosition> {
        Some(CdcPosition { lsn: self.position })
    }

    fn commit(&mut self, position: &CdcPosition) -> riffle::Result<()> {
        if let Some(lsn) = position.lsn {
            self.acks.send_if_modified(|ack| {
                let newer = ack.lsn < Some(lsn);
                if newer {
                    ack.lsn = Some(lsn);
                }
                newer
            });
        }
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.acks.send_modify(|ack| ack.stop = true);
        // A task waiting to hand over a batch sees the partition gone.
        self.batches = None;
        if let Some(task) = self.task.take() {
            let patience = Duration::from_millis(self.settings.timeout_ms.max(1));
            let abort = task.abort_handle();
            let ended = runtime::handle()
                .block_on(async move { tokio::time::timeout(patience, task).await });
            if ended.is_err() {
                abort.abort();
            }
        }
        Ok(())
    }
}

impl Drop for PostgresCdcPartition {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
