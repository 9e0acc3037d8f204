//! The Redis Streams sink: records added (`XADD`) to one or more streams, each a
//! partition of the sink, delivered before the flow's epoch moves on.

use redis::aio::ConnectionManager;
use riffle::sinks::{FixedPartitionedSink, SinkPartition};

use super::entry::RedisRecord;
use super::retry;
use super::settings::RedisSettings;
use crate::writer::{BatchWriter, InFlight};
use crate::{ConnectorError, runtime};

/// The most pipelines of `XADD`s a partition keeps in flight before it waits.
const IN_FLIGHT: usize = 8;

/// Adds records to Redis streams; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct RedisSink {
    settings: RedisSettings,
    streams: Vec<String>,
    max_len: Option<u64>,
}

impl RedisSink {
    /// Adds records to the streams with these keys (made when missing); a record
    /// with a key goes to the stream its key hashes to, one without to the stream
    /// its fields hash to.
    pub fn new<T: Into<String>>(
        settings: RedisSettings,
        streams: impl IntoIterator<Item = T>,
    ) -> Self {
        Self {
            settings,
            streams: streams.into_iter().map(Into::into).collect(),
            max_len: None,
        }
    }

    /// Trims each stream to about `len` entries as it adds (`MAXLEN ~ len`):
    /// the oldest go, in whole nodes, so a stream may keep a few more.
    pub fn max_len(mut self, len: u64) -> Self {
        self.max_len = Some(len);
        self
    }
}

impl FixedPartitionedSink for RedisSink {
    type Item = RedisRecord;
    type State = ();
    type Partition = RedisSinkPartition;

    fn list_parts(&self, step_id: &str) -> riffle::Result<Vec<String>> {
        if self.streams.is_empty() {
            return Err(self
                .settings
                .error("the sink names no stream")
                .for_step(step_id));
        }
        Ok(self.streams.clone())
    }

    fn part_fn(&self, item: &RedisRecord, parts: usize) -> usize {
        let hash = match &item.key {
            Some(key) => riffle::exchange::stable_hash(key),
            None => riffle::exchange::stable_hash(&item.fields),
        };
        (hash % parts.max(1) as u64) as usize
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        _resume_state: Option<()>,
    ) -> riffle::Result<RedisSinkPartition> {
        let conn = runtime::handle()
            .block_on(self.settings.connect())
            .map_err(|e| e.for_step(step_id))?;
        let writer = Writer {
            settings: self.settings.clone(),
            conn,
            stream: for_part.to_string(),
        };
        let batches = InFlight::start(
            writer,
            IN_FLIGHT,
            "redis",
            self.settings.server(),
            format!("stream {for_part:?}"),
        );
        Ok(RedisSinkPartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            stream: for_part.to_string(),
            max_len: self.max_len,
            batches,
        })
    }
}

/// One stream being written; made by [`RedisSink`].
pub struct RedisSinkPartition {
    step_id: String,
    settings: RedisSettings,
    stream: String,
    max_len: Option<u64>,
    /// Pipelines of `XADD`s (and how many entries each adds) handed to the writer.
    batches: InFlight<(redis::Pipeline, usize)>,
}

/// Writes one stream's pipelines, one after the other, so that entries keep the
/// order they were written in.
struct Writer {
    settings: RedisSettings,
    conn: ConnectionManager,
    stream: String,
}

impl BatchWriter for Writer {
    type Batch = (redis::Pipeline, usize);

    async fn write(
        &mut self,
        (pipe, count): (redis::Pipeline, usize),
    ) -> Result<(), ConnectorError> {
        // Sent again through a restart, for as long as the settings' timeout: a
        // pipeline the server applied before the connection dropped is then added
        // twice (at-least-once), never lost.
        let stream = &self.stream;
        let what = || format!("stream {stream:?} ({count} entries to add)");
        retry::send(
            &self.settings,
            &mut self.conn,
            &pipe,
            &what,
            Some(self.settings.timeout_duration()),
        )
        .await
        .map(drop)
        .map_err(|e| {
            let mut err = self
                .settings
                .error(format!("cannot add {count} entries to stream {stream:?}"));
            err.cause = Some(retry::short(e));
            err
        })
    }
}

impl SinkPartition for RedisSinkPartition {
    type Item = RedisRecord;
    type State = ();

    fn write_batch(&mut self, items: Vec<RedisRecord>) -> riffle::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for record in &items {
            if record.fields.is_empty() {
                return Err(self
                    .settings
                    .error(format!(
                        "a record for stream {:?} has no fields",
                        self.stream
                    ))
                    .for_step(&self.step_id));
            }
            let cmd = pipe.cmd("XADD").arg(&self.stream);
            if let Some(len) = self.max_len {
                cmd.arg("MAXLEN").arg("~").arg(len);
            }
            cmd.arg("*");
            for (name, value) in &record.fields {
                cmd.arg(name).arg(value.as_slice());
            }
            cmd.ignore();
        }
        self.batches
            .send((pipe, items.len()))
            .map_err(|e| e.for_step(&self.step_id))
    }

    fn flush(&mut self) -> riffle::Result<()> {
        self.batches.flush().map_err(|e| e.for_step(&self.step_id))
    }

    fn snapshot(&mut self) -> riffle::Result<Option<()>> {
        self.flush()?;
        Ok(Some(()))
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.flush()
    }
}
