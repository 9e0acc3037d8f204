//! The Redis Streams sink: records added (`XADD`) to one or more streams, each a
//! partition of the sink, delivered before the flow's epoch moves on.

use std::collections::VecDeque;

use redis::aio::ConnectionManager;
use riffle::sinks::{FixedPartitionedSink, SinkPartition};
use tokio::sync::{mpsc, oneshot};

use super::entry::RedisRecord;
use super::retry;
use super::settings::RedisSettings;
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
        let (jobs, queue) = mpsc::channel(IN_FLIGHT);
        runtime::handle().spawn(write(
            self.settings.clone(),
            conn,
            for_part.to_string(),
            queue,
        ));
        Ok(RedisSinkPartition {
            step_id: step_id.to_string(),
            settings: self.settings.clone(),
            stream: for_part.to_string(),
            max_len: self.max_len,
            jobs,
            in_flight: VecDeque::new(),
        })
    }
}

/// One stream being written; made by [`RedisSink`].
pub struct RedisSinkPartition {
    step_id: String,
    settings: RedisSettings,
    stream: String,
    max_len: Option<u64>,
    jobs: mpsc::Sender<Job>,
    /// The answers of the pipelines sent and not yet waited for, oldest first.
    in_flight: VecDeque<oneshot::Receiver<Result<(), ConnectorError>>>,
}

/// One pipeline of `XADD`s for the writing task, and where to answer.
struct Job {
    pipe: redis::Pipeline,
    count: usize,
    done: oneshot::Sender<Result<(), ConnectorError>>,
}

/// The task that writes one stream's pipelines, one after the other, so that
/// entries keep the order they were written in.
async fn write(
    settings: RedisSettings,
    mut conn: ConnectionManager,
    stream: String,
    mut queue: mpsc::Receiver<Job>,
) {
    while let Some(job) = queue.recv().await {
        // Sent again through a restart, for as long as the settings' timeout: a
        // pipeline the server applied before the connection dropped is then added
        // twice (at-least-once), never lost.
        let what = || format!("stream {stream:?} ({} entries to add)", job.count);
        let sent = retry::send(
            &settings,
            &mut conn,
            &job.pipe,
            &what,
            Some(settings.timeout_duration()),
        )
        .await
        .map(drop)
        .map_err(|e| {
            let mut err = settings.error(format!(
                "cannot add {} entries to stream {stream:?}",
                job.count
            ));
            err.cause = Some(retry::short(e));
            err
        });
        let failed = sent.is_err();
        let _ = job.done.send(sent);
        if failed {
            return;
        }
    }
}

impl RedisSinkPartition {
    /// Waits for the oldest pipeline in flight.
    fn wait_one(&mut self) -> riffle::Result<()> {
        let Some(answer) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match answer.blocking_recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.for_step(&self.step_id)),
            Err(_) => Err(self
                .settings
                .error(format!("the writer of stream {:?} stopped", self.stream))
                .for_step(&self.step_id)),
        }
    }
}

impl SinkPartition for RedisSinkPartition {
    type Item = RedisRecord;
    type State = ();

    fn write_batch(&mut self, items: Vec<RedisRecord>) -> riffle::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= IN_FLIGHT {
            self.wait_one()?;
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
        let (done, answer) = oneshot::channel();
        let job = Job {
            pipe,
            count: items.len(),
            done,
        };
        if self.jobs.blocking_send(job).is_err() {
            // The writer stopped on an error: its answer says which.
            while !self.in_flight.is_empty() {
                self.wait_one()?;
            }
            return Err(self
                .settings
                .error(format!("the writer of stream {:?} stopped", self.stream))
                .for_step(&self.step_id));
        }
        self.in_flight.push_back(answer);
        Ok(())
    }

    fn flush(&mut self) -> riffle::Result<()> {
        while !self.in_flight.is_empty() {
            self.wait_one()?;
        }
        Ok(())
    }

    fn snapshot(&mut self) -> riffle::Result<Option<()>> {
        self.flush()?;
        Ok(Some(()))
    }

    fn close(&mut self) -> riffle::Result<()> {
        self.flush()
    }
}
