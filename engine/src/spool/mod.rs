//! Store-and-forward: a bounded, segmented queue on disk in front of each network sink.
//!
//! Everything the bus brings a spooled sink goes through its queue, in order. While the
//! sink keeps up, batches pass through memory and are written to disk only when a
//! checkpoint's barrier comes (so that the checkpoint does not depend on the remote
//! system). While the sink does not take them — its remote is unreachable, or slower than
//! the input — they are appended to segment files in `<queues>/<dsm>/`, and the sink takes
//! them from there, in order, once it can. A batch leaves the queue when the sink has
//! delivered it: when it asks for the next one, or, for a sink whose writes are
//! acknowledged later (MQTT), when it reports the acknowledgements. A cursor file records
//! how far delivery got, so that a restarted engine sends on from there.
//!
//! The queue is bounded in bytes (`max_bytes`) and in age (`max_age`). When it is full,
//! [`OnFull::Backpressure`] stops taking input, which holds the instance's processors and
//! sources back; [`OnFull::DropOldest`] drops the oldest segment, whose observations go to
//! the dead letters, counted. Observations older than `max_age` go to the dead letters,
//! counted as expired.
//!
//! A barrier is confirmed once everything before it is on disk or delivered; a
//! checkpoint then completes without waiting for the remote system.

mod record;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::observation::{Batch, Observation};

/// What a full queue does with more input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFull {
    /// Take no more input until the sink delivers some: processors and sources wait.
    #[default]
    Backpressure,
    /// Drop the oldest segment to make room: its observations go to the dead letters.
    DropOldest,
}

impl OnFull {
    /// The name, as configured.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Backpressure => "backpressure",
            Self::DropOldest => "drop-oldest",
        }
    }
}

/// The limits of one sink's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most bytes on disk.
    pub max_bytes: u64,
    /// Observations queued longer than this go to the dead letters (none: no limit).
    pub max_age: Option<Duration>,
    /// What a full queue does.
    pub on_full: OnFull,
}

impl QueueLimits {
    /// The default limit in bytes: 1 GiB per sink.
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_age: None,
            on_full: OnFull::Backpressure,
        }
    }
}

/// A queue's state, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Observations queued and not yet delivered.
    pub observations: u64,
    /// Batches (messages) queued and not yet delivered.
    pub messages: u64,
    /// Bytes of the queue's files on disk.
    pub bytes: u64,
    /// How long the oldest queued observation has waited, in milliseconds (at most).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
    /// Observations dropped by [`OnFull::DropOldest`] (to the dead letters).
    pub dropped: u64,
    /// Observations older than `max_age` (to the dead letters).
    pub expired: u64,
    /// The limit in bytes.
    pub max_bytes: u64,
    /// What a full queue does.
    pub on_full: &'static str,
}

/// Why the queue cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the store-and-forward queue in {dir}: {source}")]
pub struct QueueError {
    dir: String,
    source: std::io::Error,
}

/// Batches the sink may take from memory before further input goes to disk.
const MEMORY_BATCHES: usize = 4;

/// One batch in the queue.
#[derive(Clone, Debug)]
struct Item {
    seq: u64,
    batch: Batch,
    queued: i64,
    /// Its record is on disk.
    saved: bool,
    /// Delivered or expired: no longer in the queue.
    done: bool,
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    /// The sequence number of its first record: its file name.
    id: u64,
    last: u64,
    bytes: u64,
    oldest: i64,
    newest: i64,
}

/// The queue's files.
#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    /// The last segment, open for appending (none: the next append starts a segment).
    active: Option<File>,
    segment_bytes: u64,
    bytes: u64,
    /// Where the reader is: segment id and offset.
    read: Option<(u64, u64)>,
    cursor: File,
    last_seq: Option<u64>,
}

fn io(dir: &Path, source: std::io::Error) -> QueueError {
    QueueError {
        dir: dir.display().to_string(),
        source,
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Every record of a segment file's bytes, up to the first that is torn or damaged;
/// returns them and where the good part ends.
fn records(bytes: &[u8]) -> (Vec<(record::Meta, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while at + record::HEADER <= bytes.len() {
        let mut h = [0u8; record::HEADER];
        h.copy_from_slice(&bytes[at..at + record::HEADER]);
        let (len, crc) = record::header(&h);
        let Some(body) = bytes.get(at + record::HEADER..at + record::HEADER + len) else {
            break;
        };
        let Ok(meta) = record::meta(body, crc) else {
            break;
        };
        at += record::HEADER + len;
        out.push((meta, body));
    }
    (out, at)
}

impl Disk {
    /// Opens (creating) the queue in `dir`: scans its segments, cuts a record torn by a
    /// power cut off, and deletes what the cursor says was delivered. Returns the disk, the
    /// cursor, and the records still to deliver.
    fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, u64, Vec<record::Meta>), QueueError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let cursor = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("cursor"))
            .map_err(|e| io(dir, e))?;
        let mut c = [0u8; 8];
        let delivered = match cursor.read_exact_at(&mut c, 0) {
            Ok(()) => u64::from_le_bytes(c),
            Err(_) => 0,
        };
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut disk = Self {
            dir: dir.to_owned(),
            segments: VecDeque::new(),
            active: None,
            segment_bytes,
            bytes: 0,
            read: None,
            cursor,
            last_seq: None,
        };
        let mut pending = Vec::new();
        for id in ids {
            let path = segment_path(dir, id);
            let bytes = std::fs::read(&path).map_err(|e| io(dir, e))?;
            let (found, good) = records(&bytes);
            if good < bytes.len() {
                tracing::warn!(segment = %path.display(), kept = good, cut = bytes.len() - good, "the queue's last record was torn (a power cut?); cutting it off");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io(dir, e))?;
                f.set_len(good as u64).map_err(|e| io(dir, e))?;
            }
            let mut segment = Segment {
                id,
                last: id,
                bytes: good as u64,
                oldest: i64::MAX,
                newest: i64::MIN,
            };
            for (meta, _) in &found {
                segment.last = segment.last.max(meta.seq);
                segment.oldest = segment.oldest.min(meta.queued);
                segment.newest = segment.newest.max(meta.queued);
                disk.last_seq = Some(meta.seq);
                if meta.seq >= delivered {
                    pending.push(*meta);
                }
            }
            if found.is_empty() || segment.last < delivered {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            disk.bytes += segment.bytes;
            disk.segments.push_back(segment);
        }
        disk.read = disk.segments.front().map(|s| (s.id, 0));
        Ok((disk, delivered, pending))
    }

    /// Appends a record (already encoded) of batch `seq`.
    fn append(&mut self, seq: u64, queued: i64, bytes: &[u8]) -> Result<(), QueueError> {
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.bytes > 0 && s.bytes + bytes.len() as u64 > self.segment_bytes);
        if self.active.is_none() || full {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(segment_path(&self.dir, seq))
                .map_err(|e| io(&self.dir, e))?;
            self.active = Some(file);
            self.segments.push_back(Segment {
                id: seq,
                last: seq,
                bytes: 0,
                oldest: queued,
                newest: queued,
            });
            if self.read.is_none() {
                self.read = Some((seq, 0));
            }
        }
        let Some(file) = self.active.as_mut() else {
            unreachable!("a segment was opened above")
        };
        file.write_all(bytes).map_err(|e| io(&self.dir, e))?;
        if let Some(s) = self.segments.back_mut() {
            s.last = s.last.max(seq);
            s.bytes += bytes.len() as u64;
            s.oldest = s.oldest.min(queued);
            s.newest = s.newest.max(queued);
        }
        self.bytes += bytes.len() as u64;
        self.last_seq = Some(seq);
        Ok(())
    }

    /// Makes what was appended durable (at a checkpoint).
    fn sync(&self) -> Result<(), QueueError> {
        if let Some(f) = &self.active {
            f.sync_data().map_err(|e| io(&self.dir, e))?;
        }
        Ok(())
    }

    /// The next record at the reader, decoded; `None` when the reader is at the end.
    fn next(&mut self, restamp: Option<u64>) -> Result<Option<(record::Meta, Batch)>, QueueError> {
        loop {
            let Some((id, offset)) = self.read else {
                return Ok(None);
            };
            let Some(pos) = self.segments.iter().position(|s| s.id == id) else {
                // Its segment was deleted: go on from the next one.
                self.read = self.segments.iter().find(|s| s.id > id).map(|s| (s.id, 0));
                continue;
            };
            let segment = &self.segments[pos];
            if offset >= segment.bytes {
                match self.segments.get(pos + 1) {
                    Some(next) => {
                        self.read = Some((next.id, 0));
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            let file = File::open(segment_path(&self.dir, id)).map_err(|e| io(&self.dir, e))?;
            let mut h = [0u8; record::HEADER];
            file.read_exact_at(&mut h, offset)
                .map_err(|e| io(&self.dir, e))?;
            let (len, crc) = record::header(&h);
            let mut body = vec![0u8; len];
            file.read_exact_at(&mut body, offset + record::HEADER as u64)
                .map_err(|e| io(&self.dir, e))?;
            self.read = Some((id, offset + (record::HEADER + len) as u64));
            match record::meta(&body, crc).and_then(|_| record::decode(&body, restamp)) {
                Ok(r) => return Ok(Some(r)),
                Err(e) => {
                    tracing::error!(
                        segment = id,
                        offset,
                        problem = e.0,
                        "a queued record cannot be read; skipping it"
                    );
                }
            }
        }
    }

    /// Records the cursor: every batch before `seq` is delivered. Deletes the segments
    /// wholly before it.
    fn delivered(&mut self, seq: u64) {
        if let Err(e) = self.cursor.write_all_at(&seq.to_le_bytes(), 0) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot record how far the queue was delivered");
        }
        while let Some(s) = self.segments.front() {
            if s.last >= seq {
                break;
            }
            if self.segments.len() == 1 {
                // Everything appended is delivered: the next append starts a new segment.
                self.active = None;
            }
            let _ = std::fs::remove_file(segment_path(&self.dir, s.id));
            self.bytes -= s.bytes;
            self.segments.pop_front();
        }
    }

    /// Removes the oldest segment and returns its records' batches.
    fn drop_oldest(&mut self) -> Result<Vec<(record::Meta, Batch)>, QueueError> {
        let Some(s) = self.segments.pop_front() else {
            return Ok(Vec::new());
        };
        if self.segments.is_empty() {
            self.active = None;
        }
        let path = segment_path(&self.dir, s.id);
        let bytes = std::fs::read(&path).map_err(|e| io(&self.dir, e))?;
        let _ = std::fs::remove_file(&path);
        self.bytes -= s.bytes;
        Ok(records(&bytes)
            .0
            .into_iter()
            .filter_map(|(_, body)| record::decode(body, None).ok())
            .collect())
    }
}

/// Observations that left the queue without being delivered, for the dead letters.
#[derive(Debug, Default)]
pub struct Dropped {
    /// Dropped by a full queue.
    pub full: Vec<Observation>,
    /// Older than `max_age`.
    pub expired: Vec<Observation>,
}

impl Dropped {
    /// Whether nothing was dropped.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.full.is_empty() && self.expired.is_empty()
    }
}

/// The queue's state, behind one lock.
#[derive(Debug)]
struct State {
    disk: Disk,
    limits: QueueLimits,
    /// Batches queued in memory and not yet taken by the sink; only while every record on
    /// disk is a copy of one of them, or was taken already.
    memory: VecDeque<Item>,
    /// Batches taken by the sink and not yet delivered (or expired).
    taken: VecDeque<Item>,
    /// The sequence number of the next batch queued.
    next_seq: u64,
    /// Batches before this one were taken (or are done).
    handed: u64,
    /// Records below this sequence number come from an earlier run.
    first_of_this_run: u64,
    observations: u64,
    messages: u64,
    dropped: u64,
    expired: u64,
    /// The input ended: once everything is taken, the sink is told.
    input_done: bool,
    /// Observations delivered, counted in the order the sink took them.
    acknowledged: u64,
    /// The size on disk of an observation, as last encoded.
    bytes_per_observation: f64,
}

/// One sink's queue, shared by the task that fills it from the bus and the sink that
/// empties it.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<State>,
    readable: Notify,
    writable: Notify,
}

fn now_micros() -> i64 {
    crate::time::Timestamp::now().0
}

impl Queue {
    /// Opens the queue in `dir`, with what an earlier run left there still to deliver.
    ///
    /// # Errors
    ///
    /// The folder or its files cannot be read or written.
    pub fn open(dir: &Path, limits: QueueLimits) -> Result<Arc<Self>, QueueError> {
        let segment_bytes = (limits.max_bytes / 8).clamp(4096, 8 << 20);
        let (disk, delivered, pending) = Disk::open(dir, segment_bytes)?;
        let next_seq = disk.last_seq.map_or(delivered, |l| (l + 1).max(delivered));
        let observations = pending.iter().map(|m| u64::from(m.count)).sum();
        if !pending.is_empty() {
            tracing::info!(dir = %dir.display(), messages = pending.len(), observations, "the sink's queue holds what an earlier run did not deliver; sending it first");
        }
        Ok(Arc::new(Self {
            state: Mutex::new(State {
                disk,
                limits,
                memory: VecDeque::new(),
                taken: VecDeque::new(),
                next_seq,
                handed: delivered,
                first_of_this_run: next_seq,
                observations,
                messages: pending.len() as u64,
                dropped: 0,
                expired: 0,
                input_done: false,
                acknowledged: 0,
                bytes_per_observation: 64.0,
            }),
            readable: Notify::new(),
            writable: Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a batch. `Ok(None)` when it is queued; `Ok(Some(batch))` when the queue is
    /// full and holds it back ([`OnFull::Backpressure`]): try again once
    /// [`Queue::wait_writable`] returns. What a full queue dropped to make room is added
    /// to `dropped`.
    ///
    /// # Errors
    ///
    /// The queue's files cannot be written.
    pub fn push(&self, batch: Batch, dropped: &mut Dropped) -> Result<Option<Batch>, QueueError> {
        if batch.is_empty() {
            return Ok(None);
        }
        let mut s = self.lock();
        let queued = now_micros();
        let seq = s.next_seq;
        if s.memory.len() < MEMORY_BATCHES && !s.disk_only() {
            s.memory.push_back(Item {
                seq,
                batch: batch.clone(),
                queued,
                saved: false,
                done: false,
            });
        } else {
            let mut bytes = Vec::with_capacity(64 * batch.len());
            record::encode(seq, queued, &batch, &mut bytes);
            s.bytes_per_observation = bytes.len() as f64 / batch.len() as f64;
            // What memory holds goes to disk first (records stay in order): it counts.
            let unsaved = s.unsaved_bytes();
            while (s.disk.bytes > 0 || unsaved > 0)
                && s.disk.bytes + unsaved + bytes.len() as u64 > s.limits.max_bytes
            {
                match s.limits.on_full {
                    OnFull::Backpressure => return Ok(Some(batch)),
                    OnFull::DropOldest if s.disk.segments.is_empty() => break,
                    OnFull::DropOldest => s.drop_oldest(dropped)?,
                }
            }
            s.save_unsaved()?;
            s.disk.append(seq, queued, &bytes)?;
        }
        s.next_seq += 1;
        s.observations += batch.len() as u64;
        s.messages += 1;
        drop(s);
        self.readable.notify_one();
        Ok(None)
    }

    /// Waits until the queue may have room (or `timeout` passed).
    pub async fn wait_writable(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.writable.notified()).await;
    }

    /// Writes every batch held only in memory to disk and makes the files durable: after
    /// this, a barrier behind them can be confirmed.
    ///
    /// # Errors
    ///
    /// The queue's files cannot be written.
    pub fn persist(&self) -> Result<(), QueueError> {
        let mut s = self.lock();
        s.save_unsaved()?;
        s.disk.sync()
    }

    /// The input ended: once the sink has taken everything, [`Queue::take`] returns `None`.
    pub fn end_input(&self) {
        self.lock().input_done = true;
        self.readable.notify_one();
    }

    /// The next batch for the sink, in order; `None` once the input ended and everything
    /// was taken. Observations found expired on the way are added to `dropped`, and an
    /// empty batch is returned so that the caller can send them to the dead letters.
    ///
    /// # Errors
    ///
    /// The queue's files cannot be read.
    pub async fn take(&self, dropped: &mut Dropped) -> Result<Option<Batch>, QueueError> {
        loop {
            let notified = self.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = self.try_take(dropped)? {
                return Ok(found.map(|(_, batch)| batch));
            }
            if !dropped.is_empty() {
                return Ok(Some(Batch::default()));
            }
            notified.await;
        }
    }

    /// The next batch queued and not taken, with its sequence number, if there is one
    /// now (observations found expired on the way are added to `dropped`). Sequence
    /// numbers grow by one per batch queued and go on across restarts: a queue used as an
    /// input log names its position by them.
    ///
    /// # Errors
    ///
    /// The queue's files cannot be read.
    pub fn take_numbered(&self, dropped: &mut Dropped) -> Result<Option<(u64, Batch)>, QueueError> {
        Ok(self.try_take(dropped)?.flatten())
    }

    /// `Some(Some(batch))`: the next batch; `Some(None)`: the end; `None`: nothing yet.
    fn try_take(&self, dropped: &mut Dropped) -> Result<Option<Option<(u64, Batch)>>, QueueError> {
        let mut s = self.lock();
        let cutoff = s
            .limits
            .max_age
            .map(|a| now_micros() - crate::time::micros(a));
        loop {
            let item = if let Some(item) = s.memory.pop_front() {
                Some(item)
            } else {
                let restamp =
                    (s.handed < s.first_of_this_run).then(crate::observation::ingest_clock);
                let handed = s.handed;
                let mut found = None;
                while let Some((meta, batch)) = s.disk.next(restamp)? {
                    if meta.seq >= handed {
                        found = Some(Item {
                            seq: meta.seq,
                            batch,
                            queued: meta.queued,
                            saved: true,
                            done: false,
                        });
                        break;
                    }
                }
                found
            };
            let Some(mut item) = item else {
                return Ok(s.input_done.then_some(None));
            };
            s.handed = s.handed.max(item.seq + 1);
            if cutoff.is_some_and(|c| item.queued < c) {
                // `settle` counts the message out.
                s.expired += item.batch.len() as u64;
                s.observations -= item.batch.len() as u64;
                dropped.expired.extend(item.batch.iter().cloned());
                item.done = true;
                s.taken.push_back(item);
                s.settle();
                continue;
            }
            let found = (item.seq, item.batch.clone());
            s.taken.push_back(item);
            return Ok(Some(Some(found)));
        }
    }

    /// The sink delivered the oldest batch it took and has not delivered.
    pub fn delivered_one(&self) {
        let mut s = self.lock();
        if let Some(item) = s.taken.iter_mut().find(|i| !i.done) {
            item.done = true;
            let n = item.batch.len() as u64;
            s.acknowledged += n;
            s.observations = s.observations.saturating_sub(n);
        }
        s.settle();
        drop(s);
        self.writable.notify_one();
    }

    /// Every batch taken with a sequence number below `seq` is delivered (an input log:
    /// a durable checkpoint covers them).
    pub fn delivered_before(&self, seq: u64) {
        let mut s = self.lock();
        let mut newly = 0;
        for item in s.taken.iter_mut().filter(|i| !i.done && i.seq < seq) {
            item.done = true;
            newly += item.batch.len() as u64;
        }
        s.acknowledged += newly;
        s.observations = s.observations.saturating_sub(newly);
        s.settle();
        drop(s);
        self.writable.notify_one();
    }

    /// A sink acknowledging later: `total` observations of those it took (counted from
    /// when it started) are delivered, in the order it took them.
    ///
    /// A watermark mark ([`crate::connector::context::WATERMARK_MARK`]), which the sink's
    /// context queues as a batch of its own, is not data the sink writes and
    /// acknowledges: it is not counted, and is delivered once what came before it is.
    pub fn acknowledged(&self, total: u64) {
        static MARK: std::sync::LazyLock<crate::Sym> =
            std::sync::LazyLock::new(|| crate::Sym::new(crate::connector::context::WATERMARK_MARK));
        let mut s = self.lock();
        let mut at = s.acknowledged;
        let mut removed = 0;
        for item in s.taken.iter_mut().filter(|i| !i.done) {
            let mark = item.batch.len() == 1 && item.batch[0].name == *MARK;
            let n = if mark { 0 } else { item.batch.len() as u64 };
            if at + n > total {
                break;
            }
            at += n;
            removed += item.batch.len() as u64;
            item.done = true;
        }
        s.acknowledged = at;
        s.observations = s.observations.saturating_sub(removed);
        s.settle();
        drop(s);
        self.writable.notify_one();
    }

    /// A sink acknowledging later took a batch of watermark marks alone: it is delivered
    /// once what came before it is (at once, when that is).
    pub fn marks_taken(&self) {
        let total = self.lock().acknowledged;
        self.acknowledged(total);
    }

    /// The sink ends (it was given up, or stopped) with batches taken and not delivered:
    /// they stay queued, on disk, for the next sink; so does everything in memory. Returns
    /// how many observations the sink had taken and not delivered.
    ///
    /// # Errors
    ///
    /// The queue's files cannot be written.
    pub fn keep_for_later(&self) -> Result<u64, QueueError> {
        self.persist()?;
        let mut s = self.lock();
        let kept: u64 = s
            .taken
            .iter()
            .filter(|i| !i.done)
            .map(|i| i.batch.len() as u64)
            .sum();
        let next = s.cursor_seq();
        s.handed = next;
        s.taken.clear();
        s.memory.clear();
        s.acknowledged = 0;
        s.disk.read = s.disk.segments.front().map(|seg| (seg.id, 0));
        Ok(kept)
    }

    /// The queue's state.
    #[must_use]
    pub fn status(&self) -> QueueStatus {
        let s = self.lock();
        let oldest = s
            .taken
            .iter()
            .filter(|i| !i.done)
            .chain(s.memory.iter())
            .map(|i| i.queued)
            .min()
            .or_else(|| {
                (s.messages > 0)
                    .then(|| s.disk.segments.front().map(|seg| seg.oldest))
                    .flatten()
            });
        QueueStatus {
            observations: s.observations,
            messages: s.messages,
            bytes: s.disk.bytes,
            oldest_age_ms: oldest.map(|q| u64::try_from((now_micros() - q) / 1000).unwrap_or(0)),
            dropped: s.dropped,
            expired: s.expired,
            max_bytes: s.limits.max_bytes,
            on_full: s.limits.on_full.as_str(),
        }
    }

    /// Drops the segments wholly older than `max_age` (their observations that no sink
    /// took go to `dropped.expired`), so that an unreachable remote does not keep expired
    /// data on disk.
    ///
    /// # Errors
    ///
    /// The queue's files cannot be read.
    pub fn expire(&self, dropped: &mut Dropped) -> Result<(), QueueError> {
        let mut s = self.lock();
        let Some(age) = s.limits.max_age else {
            return Ok(());
        };
        let cutoff = now_micros() - crate::time::micros(age);
        while s.disk.segments.len() > 1
            && s.disk
                .segments
                .front()
                .is_some_and(|seg| seg.newest < cutoff)
        {
            for (meta, batch) in s.disk.drop_oldest()? {
                if s.only_on_disk(meta.seq) {
                    s.expired += batch.len() as u64;
                    s.forget(meta.seq, batch.len());
                    dropped.expired.extend(batch.iter().cloned());
                }
            }
        }
        drop(s);
        self.writable.notify_one();
        Ok(())
    }
}

impl State {
    /// Whether batch `seq`, on disk, is queued there only: not taken, not in memory, not
    /// done.
    fn only_on_disk(&self, seq: u64) -> bool {
        seq >= self.handed
            && !self.memory.iter().any(|i| i.seq == seq)
            && !self.taken.iter().any(|i| i.seq == seq)
    }

    /// Whether the disk holds a batch that is nowhere else (then input goes to disk too,
    /// after it).
    fn disk_only(&self) -> bool {
        self.disk
            .last_seq
            .is_some_and(|l| l >= self.handed && !self.memory.iter().any(|i| i.seq == l))
    }

    /// Writes the batches held only in memory (taken or not) to disk. They come before
    /// any batch only on disk (input goes to memory only while there is none), so the
    /// records stay in order.
    fn save_unsaved(&mut self) -> Result<(), QueueError> {
        let Self {
            disk,
            memory,
            taken,
            ..
        } = self;
        for item in taken.iter_mut().chain(memory.iter_mut()) {
            if item.saved || item.done {
                continue;
            }
            let mut bytes = Vec::with_capacity(64 * item.batch.len());
            record::encode(item.seq, item.queued, &item.batch, &mut bytes);
            disk.append(item.seq, item.queued, &bytes)?;
            item.saved = true;
        }
        Ok(())
    }

    /// About how many bytes the batches held only in memory take once written.
    fn unsaved_bytes(&self) -> u64 {
        let n: usize = self
            .taken
            .iter()
            .chain(self.memory.iter())
            .filter(|i| !i.saved && !i.done)
            .map(|i| i.batch.len())
            .sum();
        (n as f64 * self.bytes_per_observation) as u64
    }

    /// A batch only on disk left the queue undelivered.
    fn forget(&mut self, seq: u64, len: usize) {
        self.observations -= len as u64;
        self.messages -= 1;
        self.handed = self.handed.max(seq + 1);
    }

    /// Removes the done batches at the front of `taken`, and records the cursor.
    fn settle(&mut self) {
        let mut moved = false;
        while self.taken.front().is_some_and(|i| i.done) {
            self.taken.pop_front();
            self.messages = self.messages.saturating_sub(1);
            moved = true;
        }
        if moved {
            let seq = self.cursor_seq();
            self.disk.delivered(seq);
        }
    }

    /// The oldest batch not delivered (nor expired).
    fn cursor_seq(&self) -> u64 {
        self.taken
            .front()
            .map(|i| i.seq)
            .or_else(|| self.memory.front().map(|i| i.seq))
            .unwrap_or(self.handed)
    }

    /// Drops the oldest segment: its observations that no sink took, and that are not
    /// also in memory, go to `dropped.full`.
    fn drop_oldest(&mut self, dropped: &mut Dropped) -> Result<(), QueueError> {
        for (meta, batch) in self.disk.drop_oldest()? {
            if self.only_on_disk(meta.seq) {
                self.dropped += batch.len() as u64;
                self.forget(meta.seq, batch.len());
                dropped.full.extend(batch.iter().cloned());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
