//! The Redis Streams source: each stream key a partition, read through a consumer
//! group, entries acknowledged (`XACK`) only by the commit hook.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use riffle::sources::{FixedPartitionedSource, Poll, SourcePartition};
use serde::{Deserialize, Serialize};

use super::entry::RedisEntry;
use super::reply::{self, RawEntry};
use super::retry;
use super::settings::RedisSettings;
use crate::format::{Decoder, Format, NoValue};
use crate::reader::{Batches, Reader};
use crate::{ConnectorError, runtime};

/// The most entries one poll returns.
const BATCH: usize = 4096;

/// How long one read waits on the server for new entries.
const BLOCK_MS: u64 = 100;

/// The most ids one `XACK` names.
const ACK_CHUNK: usize = 1000;

/// Where a consumer group starts when the source makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamStart {
    /// From the stream's first entry (`XGROUP CREATE ... 0`).
    #[default]
    Earliest,
    /// From the entries added after the group was made (`$`).
    Latest,
}

/// A partition's position, its snapshot state: how many entries it has emitted
/// (what the commit hook acknowledges up to) and the id of the last one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RedisPosition {
    /// Entries emitted so far by this partition, over every run.
    pub emitted: u64,
    /// The id of the last one.
    pub last_id: Option<String>,
}

/// Reads Redis streams through a consumer group; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct RedisSource<F = NoValue> {
    settings: RedisSettings,
    streams: Vec<String>,
    group: Option<String>,
    consumer: String,
    start: StreamStart,
    tail: bool,
    claim_idle: Option<Duration>,
    /// The field the format decodes; `None` while there is no format.
    field: Option<String>,
    decoder: Decoder<F>,
}

impl RedisSource<NoValue> {
    /// Reads the streams with these keys on the server of `settings`, from their
    /// first entry, following new entries for ever; entries as their fields.
    pub fn new<T: Into<String>>(
        settings: RedisSettings,
        streams: impl IntoIterator<Item = T>,
    ) -> Self {
        Self {
            settings,
            streams: streams.into_iter().map(Into::into).collect(),
            group: None,
            consumer: "riffle".to_string(),
            start: StreamStart::Earliest,
            tail: true,
            claim_idle: Some(Duration::from_secs(60)),
            field: None,
            decoder: Decoder::new(NoValue),
        }
    }
}

impl<F: Format> RedisSource<F> {
    /// Decodes each entry's `value` field (the one [`super::RedisRecord::new`]
    /// writes; [`RedisSource::value_field`] picks another) with `format`
    /// ([`crate::format::Utf8`], [`crate::format::Json`], ...) into
    /// [`RedisEntry::decoded`]. An entry whose field is missing or that the
    /// format refuses stops the run with an error naming the stream and the
    /// entry id, unless [`RedisSource::dead_letters`] takes it.
    ///
    /// ```no_run
    /// use riffle_connectors::format::Json;
    /// use riffle_connectors::redis::{RedisSettings, RedisSource};
    /// let source = RedisSource::new(RedisSettings::new("redis://127.0.0.1:6379"), ["orders"])
    ///     .format(Json::<serde_json::Value>::new())
    ///     .dead_letters(riffle::dead_letters::DeadLetters::stream());
    /// ```
    pub fn format<G: Format>(self, format: G) -> RedisSource<G> {
        RedisSource {
            settings: self.settings,
            streams: self.streams,
            group: self.group,
            consumer: self.consumer,
            start: self.start,
            tail: self.tail,
            claim_idle: self.claim_idle,
            field: Some(self.field.unwrap_or_else(|| super::VALUE_FIELD.to_string())),
            decoder: self.decoder.format(format),
        }
    }

    /// The field the format decodes (default `value`).
    pub fn value_field(mut self, name: impl Into<String>) -> Self {
        self.field = Some(name.into());
        self
    }

    /// Entries the format cannot decode go to `letters` (with `stream`, `id`,
    /// `reason` and the field's value), the step's dead-letter stream or a file,
    /// and are skipped instead of stopping the run; they are acknowledged
    /// (`XACK`) with the commit that passes them, once their letter is safe.
    /// See [`riffle::dead_letters`].
    pub fn dead_letters(mut self, letters: riffle::dead_letters::DeadLetters) -> Self {
        self.decoder = self.decoder.dead_letters(Some(letters));
        self
    }

    /// The consumer group (default `riffle.{step id}`), made when missing.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// This reader's consumer name in the group (default `riffle`). Entries read
    /// and not yet acknowledged stay pending on it, and a run with the same name
    /// reads them again first; give each replica reading the same streams its own.
    pub fn consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = consumer.into();
        self
    }

    /// Where a group the source makes starts (default [`StreamStart::Earliest`]).
    pub fn start(mut self, start: StreamStart) -> Self {
        self.start = start;
        self
    }

    /// Whether to follow new entries for ever (`true`, the default) or stop each
    /// stream at the last entry it had when the run started.
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }

    /// Entries another consumer of the group has held unacknowledged this long are
    /// claimed (`XAUTOCLAIM`) and read here (default 60 s; `None` never): what a
    /// replica that went away had read is not stranded.
    pub fn claim_idle(mut self, idle: Option<Duration>) -> Self {
        self.claim_idle = idle;
        self
    }

    fn group_name(&self, step_id: &str) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("riffle.{step_id}"))
    }
}

impl<F: Format> FixedPartitionedSource for RedisSource<F> {
    type Item = RedisEntry<F::Value>;
    type State = RedisPosition;
    type Partition = RedisSourcePartition<F>;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        if self.streams.is_empty() {
            return Err(self
                .settings
                .error("the source names no stream")
                .for_step(step_id));
        }
        Ok(self.streams.clone())
    }

    /// For each stream, the group's lag (entries not yet delivered to it) and its
    /// pending entries (delivered, not acknowledged); `None` when the server
    /// cannot tell the lag (Redis before 7).
    fn backlog(&self, step_id: &str) -> riffle::Result<Option<u64>> {
        let group = self.group_name(step_id);
        crate::runtime::handle()
            .block_on(async {
                let mut conn = self.settings.connect().await?;
                let mut total = 0u64;
                for stream in &self.streams {
                    let reply: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
                        .arg("GROUPS")
                        .arg(stream)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| {
                            self.settings
                                .error(format!("cannot read the groups of stream {stream:?}"))
                                .caused_by(e)
                        })?;
                    let Some(info) = reply.groups.iter().find(|g| g.name == group) else {
                        // No group yet: everything in the stream waits.
                        total +=
                            super::admin::length_async(&self.settings, &mut conn, stream).await?;
                        continue;
                    };
                    let Some(lag) = info.lag else {
                        return Ok(None);
                    };
                    total += (lag + info.pending) as u64;
                }
                Ok::<_, ConnectorError>(Some(total))
            })
            .map_err(|e| e.for_step(step_id))
    }

    fn describe(&self, step_id: &str) -> Option<riffle::sources::SourceInfo> {
        Some(riffle::sources::SourceInfo {
            system: "redis",
            fields: vec![
                ("server", self.settings.server()),
                ("stream", self.streams.join(",")),
                ("group", self.group_name(step_id)),
            ],
        })
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<RedisPosition>,
    ) -> riffle::Result<RedisSourcePartition<F>> {
        let settings = self.settings.clone();
        let stream = for_part.to_string();
        let group = self.group_name(step_id);
        let start = match self.start {
            StreamStart::Earliest => "0",
            StreamStart::Latest => "$",
        };
        let tail = self.tail;
        let (reader, acker, end) = runtime::handle()
            .block_on(async {
                let mut reader = settings.connect().await?;
                super::admin::create_group(&settings, &mut reader, &stream, &group, start).await?;
                let end = if tail {
                    None
                } else {
                    super::admin::last_id(&settings, &mut reader, &stream).await?
                };
                let acker = settings.connect().await?;
                Ok::<_, ConnectorError>((reader, acker, end))
            })
            .map_err(|e| e.for_step(step_id))?;
        let read = StreamReader {
            settings: self.settings.clone(),
            conn: reader,
            stream: stream.clone(),
            group: group.clone(),
            consumer: self.consumer.clone(),
            end: match (tail, end) {
                (true, _) => None,
                (false, Some(id)) => Some(reply::parse_id(&id).unwrap_or((u64::MAX, u64::MAX))),
                // An empty stream: nothing to read.
                (false, None) => Some((0, 0)),
            },
            claim_idle: self.claim_idle,
        };
        let stopped = self
            .settings
            .error(format!("the reader of stream {stream:?} stopped"));
        let batches = Reader::start(4, stopped, |batches| read.run(batches));
        let position = resume_state.unwrap_or_default();
        Ok(RedisSourcePartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            stream: Arc::from(stream),
            group,
            field: self.field.clone(),
            decoder: self.decoder.clone(),
            batches,
            acker,
            emitted: position.emitted,
            last_id: position.last_id,
            unacked: VecDeque::new(),
            in_flight: HashSet::new(),
            acks: Vec::new(),
            ack_error: Arc::new(Mutex::new(None)),
        })
    }
}

/// Entries read (`claimed`: taken over from another consumer): what the reading
/// task hands the partition.
struct Entries {
    entries: Vec<RawEntry>,
    claimed: bool,
}

/// The task that reads one stream on the shared runtime: first what is pending on
/// this consumer from an earlier run, then new entries, claiming abandoned ones now
/// and then.
struct StreamReader {
    settings: RedisSettings,
    conn: ConnectionManager,
    stream: String,
    group: String,
    consumer: String,
    end: Option<(u64, u64)>,
    claim_idle: Option<Duration>,
}

impl StreamReader {
    /// Reads until a bounded read reached its end (or the partition is gone),
    /// or reading fails for good.
    async fn run(mut self, batches: Batches<Entries>) -> Result<(), ConnectorError> {
        self.read(&batches).await
    }

    async fn query(&mut self, cmd: redis::Cmd, what: &str) -> Result<redis::Value, ConnectorError> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        let stream = self.stream.clone();
        let says = || format!("stream {stream:?}");
        match retry::send(&self.settings, &mut self.conn, &pipe, &says, None).await {
            Ok(mut answers) => Ok(answers.pop().unwrap_or(redis::Value::Nil)),
            Err(e) => {
                let why = if e.code() == Some("NOGROUP") {
                    format!(
                        "{what} of stream {:?}: the stream or its group {:?} is gone",
                        self.stream, self.group
                    )
                } else {
                    format!(
                        "{what} of stream {:?} (group {:?})",
                        self.stream, self.group
                    )
                };
                let mut err = self.settings.error(why);
                err.cause = Some(retry::short(e));
                Err(err)
            }
        }
    }

    fn read_cmd(&self, from: &str, block: bool) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(BATCH);
        if block {
            cmd.arg("BLOCK").arg(BLOCK_MS);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(from);
        cmd
    }

    fn parse<T>(&self, parsed: Result<T, String>) -> Result<T, ConnectorError> {
        parsed.map_err(|why| {
            self.settings.error(format!(
                "an unexpected reply reading stream {:?}: {why}",
                self.stream
            ))
        })
    }

    /// Sends what may be emitted; false when the bounded read is over (or the
    /// partition gone).
    async fn send(
        &mut self,
        batches: &Batches<Entries>,
        mut entries: Vec<RawEntry>,
        claimed: bool,
    ) -> Result<bool, ConnectorError> {
        // Deleted while pending: nothing to emit, acknowledge them now.
        let deleted: Vec<String> = entries
            .iter()
            .filter(|(_, f)| f.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        if !deleted.is_empty() {
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&self.stream).arg(&self.group).arg(&deleted);
            self.query(cmd, "acknowledging deleted entries").await?;
            entries.retain(|(_, f)| f.is_some());
        }
        let mut over = false;
        if let Some(end) = self.end {
            let before = entries.len();
            entries.retain(|(id, _)| reply::parse_id(id).is_some_and(|id| id <= end));
            over = entries.len() < before;
        }
        if !entries.is_empty() && !batches.send(Entries { entries, claimed }).await {
            return Ok(false);
        }
        Ok(!over)
    }

    async fn read(&mut self, batches: &Batches<Entries>) -> Result<(), ConnectorError> {
        // What this consumer read before and never acknowledged: again, first.
        let mut cursor = "0".to_string();
        loop {
            let cmd = self.read_cmd(&cursor, false);
            let v = self.query(cmd, "reading the pending entries").await?;
            let entries = self.parse(reply::read_group(&v))?;
            let Some((last, _)) = entries.last() else {
                break;
            };
            cursor = last.clone();
            if !self.send(batches, entries, false).await? {
                return Ok(());
            }
        }
        let mut next_claim = tokio::time::Instant::now();
        loop {
            if let Some(idle) = self.claim_idle
                && tokio::time::Instant::now() >= next_claim
            {
                next_claim = tokio::time::Instant::now() + idle / 2;
                if !self.claim(batches, idle).await? {
                    return Ok(());
                }
            }
            let cmd = self.read_cmd(">", true);
            let v = self.query(cmd, "reading").await?;
            let entries = self.parse(reply::read_group(&v))?;
            if entries.is_empty() {
                if self.end.is_some() || batches.is_closed() {
                    return Ok(());
                }
                continue;
            }
            if !self.send(batches, entries, false).await? {
                return Ok(());
            }
        }
    }

    /// Claims what other consumers left pending longer than `idle`.
    async fn claim(
        &mut self,
        batches: &Batches<Entries>,
        idle: Duration,
    ) -> Result<bool, ConnectorError> {
        let mut cursor = "0-0".to_string();
        loop {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(BATCH);
            let v = self.query(cmd, "claiming abandoned entries").await?;
            let (next, entries) = self.parse(reply::auto_claim(&v))?;
            if !self.send(batches, entries, true).await? {
                return Ok(false);
            }
            if next == "0-0" {
                return Ok(true);
            }
            cursor = next;
        }
    }
}

/// One stream being read; made by [`RedisSource`].
pub struct RedisSourcePartition<F = NoValue> {
    step_id: String,
    settings: RedisSettings,
    stream: Arc<str>,
    group: String,
    /// The field the format decodes (`None`: no format).
    field: Option<String>,
    decoder: Decoder<F>,
    batches: Reader<Entries>,
    acker: ConnectionManager,
    /// Entries emitted so far (the position's count).
    emitted: u64,
    last_id: Option<String>,
    /// Emitted and not yet acknowledged: (count when emitted, id), oldest first.
    unacked: VecDeque<(u64, String)>,
    /// The ids of `unacked`, to drop a claimed entry this partition already emitted.
    in_flight: HashSet<String>,
    acks: Vec<tokio::task::JoinHandle<()>>,
    ack_error: Arc<Mutex<Option<ConnectorError>>>,
}

impl<F: Format> RedisSourcePartition<F> {
    /// The entry with its field decoded; `None` when it went to the dead letters.
    fn decode(
        &self,
        id: String,
        fields: Vec<(String, Vec<u8>)>,
    ) -> riffle::Result<Option<RedisEntry<F::Value>>> {
        let position = || {
            [
                ("stream", (*self.stream).into()),
                ("id", id.as_str().into()),
            ]
        };
        let fail = |what: String| self.settings.error(what).for_step(&self.step_id);
        let value = match &self.field {
            None => Some(&[][..]),
            Some(name) => fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_slice()),
        };
        let decoded = match value {
            Some(bytes) => self.decoder.decode(&self.step_id, position, bytes, fail)?,
            None => {
                let name = self.field.as_deref().unwrap_or_default();
                let input: serde_json::Map<String, serde_json::Value> = fields
                    .iter()
                    .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into()))
                    .collect();
                let input = serde_json::Value::Object(input).to_string();
                let why = format!("the entry has no field {name:?}");
                self.decoder
                    .refuse(&self.step_id, &position(), &why, input.as_bytes(), fail)?;
                None
            }
        };
        Ok(decoded.map(|decoded| RedisEntry {
            stream: self.stream.clone(),
            id,
            fields,
            decoded,
        }))
    }

    fn check_acks(&mut self) -> riffle::Result<()> {
        self.acks.retain(|t| !t.is_finished());
        let failed = self
            .ack_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failed {
            Some(e) => Err(e.for_step(&self.step_id)),
            None => Ok(()),
        }
    }
}

impl<F: Format> SourcePartition for RedisSourcePartition<F> {
    type Item = RedisEntry<F::Value>;
    type State = RedisPosition;

    fn wake_on_ready(&mut self, ready: &std::task::Waker) {
        self.batches.wake_on_ready(ready);
    }

    fn next_batch(&mut self) -> riffle::Result<Poll<RedisEntry<F::Value>>> {
        self.check_acks()?;
        let mut out = Vec::new();
        while out.len() < BATCH {
            let Some(Entries { entries, claimed }) = self.batches.try_next(&self.step_id)? else {
                break;
            };
            for (id, fields) in entries {
                // A claim may hand back what this partition emitted and has not
                // acknowledged yet (it looked idle): once is enough.
                if claimed && self.in_flight.contains(&id) {
                    continue;
                }
                self.emitted += 1;
                self.unacked.push_back((self.emitted, id.clone()));
                self.in_flight.insert(id.clone());
                self.last_id = Some(id.clone());
                // An entry deleted while pending has no fields: nothing to emit.
                // One set aside as a dead letter is still read: the commit that
                // passes it acknowledges it.
                if let Some(fields) = fields
                    && let Some(entry) = self.decode(id, fields)?
                {
                    out.push(entry);
                }
            }
        }
        Ok(self.batches.poll(out))
    }

    fn snapshot(&self) -> Option<RedisPosition> {
        Some(RedisPosition {
            emitted: self.emitted,
            last_id: self.last_id.clone(),
        })
    }

    fn commit(&mut self, position: &RedisPosition) -> riffle::Result<()> {
        self.check_acks()?;
        // The letters of the entries this position passed are safe before those
        // entries are acknowledged.
        self.decoder.sync(&self.step_id)?;
        let mut ids = Vec::new();
        while self
            .unacked
            .front()
            .is_some_and(|(n, _)| *n <= position.emitted)
        {
            if let Some((_, id)) = self.unacked.pop_front() {
                self.in_flight.remove(&id);
                ids.push(id);
            }
        }
        for chunk in ids.chunks(ACK_CHUNK) {
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&*self.stream).arg(&self.group).arg(chunk);
            let mut conn = self.acker.clone();
            let failed = self.ack_error.clone();
            let settings = self.settings.clone();
            let stream = self.stream.clone();
            let count = chunk.len();
            self.acks.push(runtime::handle().spawn(async move {
                // Acknowledging twice is harmless: sent again through a restart.
                let mut pipe = redis::pipe();
                pipe.add_command(cmd).ignore();
                let what = || format!("stream {stream:?} ({count} entries to acknowledge)");
                let patience = Some(settings.timeout_duration());
                if let Err(e) = retry::send(&settings, &mut conn, &pipe, &what, patience).await {
                    let mut err = settings.error(format!(
                        "cannot acknowledge {count} entries of stream {stream:?}"
                    ));
                    err.cause = Some(retry::short(e));
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                }
            }));
        }
        Ok(())
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.batches.stop();
        // Let the last acknowledgements land before the connection goes.
        let acks = std::mem::take(&mut self.acks);
        let timeout = self.settings.timeout_duration();
        runtime::handle().block_on(async {
            let all = async {
                for ack in acks {
                    let _ = ack.await;
                }
            };
            let _ = tokio::time::timeout(timeout, all).await;
        });
        self.check_acks()
    }
}
