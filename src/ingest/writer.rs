//! The writer task: the single path of telemetry rows into the database.
//!
//! Producers [`Writer::submit`] jobs; the queue is bounded in rows (a semaphore), so a
//! slow database makes producers wait instead of growing memory. The task gathers jobs
//! until [`WriterConfig::flush_rows`] rows wait or [`WriterConfig::flush_interval`] has
//! passed since the first, then writes them all in one transaction (up to
//! [`WriterConfig::flushes`] of them at once), and only then resolves each job's
//! [`Receipt`]. Transient database errors are retried with backoff
//! (the jobs, and so their producers, wait); a job the database refuses fails alone.
//! The task ends when every [`Writer`] handle is dropped and the queue is drained.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
    task::{JoinHandle, JoinSet},
    time::{Instant, sleep, timeout_at},
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::WriterConfig,
    store::{Backend, NewCrash, Store, TelemetryRow},
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the writer has stopped")]
    Stopped,
    #[error("the database is unavailable")]
    Unavailable,
    #[error("a batch of {0} rows is larger than the writer queue")]
    TooLarge(usize),
    #[error("the database refused the rows: {0}")]
    Refused(String),
}

/// Whether the producer needs to know how many of its rows were new. Counted jobs get
/// statements of their own; the others share statements with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact,
    Unneeded,
}

struct Job {
    rows: Vec<TelemetryRow>,
    crashes: Vec<NewCrash>,
    count: Count,
    done: oneshot::Sender<Result<u64, WriteError>>,
    // Returned to the queue's capacity once the job is answered.
    _room: OwnedSemaphorePermit,
}

enum Message {
    Write(Job),
    Flush(oneshot::Sender<()>),
}

/// Resolves once the rows of one submitted job are committed (or failed for good).
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<Result<u64, WriteError>>);

impl Receipt {
    /// New rows written (0 for [`Count::Unneeded`] jobs).
    pub async fn committed(self) -> Result<u64, WriteError> {
        self.0.await.unwrap_or(Err(WriteError::Stopped))
    }
}

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Message>,
    room: Arc<Semaphore>,
    capacity: usize,
}

impl Writer {
    /// Starts the writer task. `stop` cuts retries short during shutdown; the task itself
    /// ends when the last handle is dropped.
    pub fn spawn(
        store: Store,
        config: WriterConfig,
        stop: CancellationToken,
    ) -> (Writer, JoinHandle<()>) {
        let (queue, inbox) = mpsc::channel(1024);
        let capacity = config.queue_rows.max(1);
        let writer = Writer {
            queue,
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
        };
        let task = tokio::spawn(
            Task {
                store,
                config,
                stop,
            }
            .run(inbox),
        );
        (writer, task)
    }

    /// Queues rows (and the crashes found in them), waiting while the queue is full.
    pub async fn submit(
        &self,
        rows: Vec<TelemetryRow>,
        crashes: Vec<NewCrash>,
        count: Count,
    ) -> Result<Receipt, WriteError> {
        if rows.len() > self.capacity {
            return Err(WriteError::TooLarge(rows.len()));
        }
        let permits =
            u32::try_from(rows.len().max(1)).map_err(|_| WriteError::TooLarge(rows.len()))?;
        let room = self
            .room
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| WriteError::Stopped)?;
        let (done, receipt) = oneshot::channel();
        let job = Job {
            rows,
            crashes,
            count,
            done,
            _room: room,
        };
        self.queue
            .send(Message::Write(job))
            .await
            .map_err(|_| WriteError::Stopped)?;
        Ok(Receipt(receipt))
    }

    /// Rows waiting for the writer (or being written) right now.
    pub fn queued_rows(&self) -> usize {
        self.capacity - self.room.available_permits()
    }

    /// A check of whether the queue is nearly full (less than a quarter free), for the
    /// MQTT edge's backpressure. It holds no sender, so it does not keep the task alive.
    pub fn saturation(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let (room, capacity) = (Arc::downgrade(&self.room), self.capacity);
        move || {
            room.upgrade()
                .is_some_and(|room| room.available_permits() < capacity / 4)
        }
    }

    /// Resolves once everything submitted before this call has been written.
    pub async fn flush_now(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

#[derive(Clone)]
struct Task {
    store: Store,
    config: WriterConfig,
    stop: CancellationToken,
}

impl Task {
    async fn run(self, mut inbox: mpsc::Receiver<Message>) {
        let mut jobs: Vec<Job> = Vec::new();
        let mut flushed: Vec<oneshot::Sender<()>> = Vec::new();
        // Flushes run concurrently, each in its own transaction; receipts are per job,
        // so commit order between flushes does not matter (rows are keyed, acks are
        // contiguous per device).
        let parallel = match self.store.backend() {
            Backend::Sqlite => 1,
            Backend::MySql => self.config.flushes.max(1),
        };
        let slots = Arc::new(Semaphore::new(parallel));
        let mut running = JoinSet::new();
        while let Some(first) = inbox.recv().await {
            let deadline = Instant::now() + self.config.flush_interval;
            let mut rows = 0;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Write(job) => {
                        rows += job.rows.len();
                        jobs.push(job);
                    }
                    Message::Flush(done) => {
                        flushed.push(done);
                        break;
                    }
                }
                if rows >= self.config.flush_rows {
                    break;
                }
                next = timeout_at(deadline, inbox.recv()).await.ok().flatten();
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let (task, batch) = (self.clone(), std::mem::take(&mut jobs));
            running.spawn(async move {
                task.write(batch).await;
                drop(slot);
            });
            while running.try_join_next().is_some() {}
            if !flushed.is_empty() {
                // Everything submitted before the flush request is in a running flush.
                while running.join_next().await.is_some() {}
                for done in flushed.drain(..) {
                    let _ = done.send(());
                }
            }
        }
        while running.join_next().await.is_some() {}
        tracing::debug!("writer drained and stopped");
    }

    /// Writes `jobs` in one transaction, retrying transient failures; if the database
    /// refuses the batch, each job is retried alone so that one bad job fails by itself.
    async fn write(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        match self.write_with_retry(&jobs).await {
            Ok(counts) => {
                for (job, count) in jobs.into_iter().zip(counts) {
                    let _ = job.done.send(Ok(count));
                }
            }
            Err(err) if jobs.len() > 1 && !matches!(err, WriteError::Unavailable) => {
                for job in jobs {
                    Box::pin(self.write(vec![job])).await;
                }
            }
            Err(err) => {
                for job in jobs {
                    let _ = job.done.send(Err(err.clone()));
                }
            }
        }
    }

    /// Per job, how many rows were new.
    async fn write_with_retry(&self, jobs: &[Job]) -> Result<Vec<u64>, WriteError> {
        // Counted jobs get their own group; all others share one.
        let shared: Vec<TelemetryRow> = jobs
            .iter()
            .filter(|job| job.count == Count::Unneeded)
            .flat_map(|job| job.rows.iter().copied())
            .collect();
        let mut groups: Vec<&[TelemetryRow]> = jobs
            .iter()
            .filter(|job| job.count == Count::Exact)
            .map(|job| job.rows.as_slice())
            .collect();
        groups.push(&shared);
        let crashes: Vec<NewCrash> = jobs
            .iter()
            .flat_map(|job| job.crashes.iter().cloned())
            .collect();

        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        let mut stopping_since: Option<Instant> = None;
        loop {
            match self.store.write_telemetry(&groups, &crashes).await {
                Ok(counts) => {
                    tracing::debug!(rows = groups.iter().map(|g| g.len()).sum::<usize>(), jobs = jobs.len(), elapsed = ?started.elapsed(), "flushed");
                    let mut counted = counts.into_iter();
                    return Ok(jobs
                        .iter()
                        .map(|job| {
                            if job.count == Count::Exact {
                                counted.next().unwrap_or(0)
                            } else {
                                0
                            }
                        })
                        .collect());
                }
                Err(err) if err.is_transient() => {
                    // While shutting down, keep trying a little, then give up.
                    if self.stop.is_cancelled() {
                        let since = *stopping_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(5) {
                            return Err(WriteError::Unavailable);
                        }
                    }
                    tracing::warn!(error = %err, retry_in = ?backoff, "telemetry write failed, retrying");
                    tokio::select! {
                        _ = sleep(backoff) => {}
                        _ = self.stop.cancelled(), if stopping_since.is_none() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(err) => {
                    tracing::error!(error = %err, jobs = jobs.len(), "database refused telemetry");
                    return Err(WriteError::Refused(err.to_string()));
                }
            }
        }
    }
}
