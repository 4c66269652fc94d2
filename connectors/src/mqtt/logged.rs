//! The MQTT source's durable input log, used when the engine checkpoints.
//!
//! MQTT cannot hold acknowledgements until a checkpoint covers them: the broker sends only
//! so many unacknowledged messages (its in-flight window) and then waits. So what the
//! source accepts goes first to a log on disk ([`SourceContext::open_input_log`]), synced,
//! and is acknowledged only then; the source publishes it from the log and names its
//! position by the log's sequence numbers. A durable checkpoint drops what it covers from
//! the log; after a crash, the source publishes again what the log holds after the
//! checkpoint it was restored from.
//!
//! A crash after a message was logged but before its acknowledgement reached the broker
//! makes the broker send it again (with its duplicate flag, under its packet id, MQTT
//! 3.1.1 §4.4). The log also keeps the packet id and a hash of the topic and payload of
//! the last [`RECENT`] messages logged; a message that comes again flagged as a duplicate
//! and matching one of them is acknowledged and dropped.

use std::collections::{HashMap, VecDeque};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use engine::connector::{ConnectorError, SourceContext};
use engine::observation::Observation;
use engine::spool::{Dropped, Queue};

use super::Message;

/// Messages remembered to recognise a redelivery.
const RECENT: usize = 4096;

/// The bytes of one remembered message: its packet id, then the hash.
const ENTRY: usize = 10;

/// The log, and where the source is in it.
pub(super) struct InputLog {
    queue: Arc<Queue>,
    received: Received,
    /// Batches with lower sequence numbers are published, or covered by the checkpoint
    /// the source was restored from.
    next: u64,
    /// Batches with lower sequence numbers are covered by the checkpoint the source was
    /// restored from.
    restored: u64,
}

impl InputLog {
    /// The source's log, when the engine checkpoints.
    pub(super) fn open(ctx: &SourceContext) -> Result<Option<Self>, ConnectorError> {
        let io =
            |e: &dyn std::fmt::Display| ConnectorError::io(&ctx.dsm, format!("the input log: {e}"));
        let Some(queue) = ctx.open_input_log().map_err(|e| io(&e))? else {
            return Ok(None);
        };
        let Some((dir, _)) = &ctx.input_log else {
            return Ok(None);
        };
        let received = Received::open(&dir.join("received")).map_err(|e| io(&e))?;
        let next = ctx
            .resume
            .as_ref()
            .and_then(|p| p.get("logged"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Ok(Some(Self {
            queue,
            received,
            next,
            restored: next,
        }))
    }

    /// The position for a checkpoint.
    pub(super) fn position(&self) -> serde_json::Value {
        serde_json::json!({ "logged": self.next })
    }

    /// A durable checkpoint at `position` covers what the log holds before it.
    pub(super) fn covered(&self, position: &serde_json::Value) {
        if let Some(upto) = position.get("logged").and_then(serde_json::Value::as_u64) {
            self.queue.delivered_before(upto);
        }
    }

    /// Whether `m` is a message logged already that the broker sent again.
    pub(super) fn is_redelivery(&mut self, m: &Message) -> bool {
        m.dup() && self.received.forget(&Received::key(m))
    }

    /// Appends `batch`, decoded from `messages`, and makes it durable: afterwards the
    /// messages may be acknowledged. Waits while the log is full; false when cancelled
    /// meanwhile.
    pub(super) async fn append(
        &mut self,
        ctx: &SourceContext,
        messages: &[Box<Message>],
        batch: Vec<Observation>,
    ) -> Result<bool, ConnectorError> {
        let io =
            |e: &dyn std::fmt::Display| ConnectorError::io(&ctx.dsm, format!("the input log: {e}"));
        let mut pending = Some(batch.into());
        let mut dropped = Dropped::default();
        while let Some(b) = pending.take() {
            pending = self.queue.push(b, &mut dropped).map_err(|e| io(&e))?;
            if pending.is_some() {
                if ctx.cancel.is_cancelled() {
                    return Ok(false);
                }
                self.queue.wait_writable(Duration::from_millis(200)).await;
            }
        }
        // Noted once logged: a message noted and not logged would be taken, when sent
        // again, for one logged already.
        for m in messages {
            self.received.note(Received::key(m));
        }
        let queue = self.queue.clone();
        let mut received = self.received.take_unsynced();
        tokio::task::spawn_blocking(move || {
            if let Some(f) = &mut received {
                f.sync_data()?;
            }
            queue.persist().map_err(std::io::Error::other)
        })
        .await
        .map_err(|e| io(&e))?
        .map_err(|e| io(&e))?;
        Ok(true)
    }

    /// Publishes what the log holds and was not published, in order: at start, what an
    /// earlier run accepted after the checkpoint restored from; then each batch appended.
    pub(super) async fn publish(
        &mut self,
        ctx: &SourceContext,
        clock: &mut impl engine::connector::Timekeeper,
    ) -> Result<(), ConnectorError> {
        let mut dropped = Dropped::default();
        while let Some((seq, batch)) = self
            .queue
            .take_numbered(&mut dropped)
            .map_err(|e| ConnectorError::io(&ctx.dsm, format!("the input log: {e}")))?
        {
            if seq < self.next {
                // Covered by the checkpoint restored from.
                continue;
            }
            ctx.publish_timed(batch.to_vec(), clock).await;
            self.next = seq + 1;
        }
        // What the checkpoint restored from covers leaves the log; so does everything
        // published when no checkpoint will cover it.
        let covered = if ctx.acknowledges_at_checkpoints() {
            self.restored
        } else {
            self.next
        };
        self.queue.delivered_before(covered);
        Ok(())
    }
}

/// The packet ids and hashes of the messages logged last, in a file of their own.
struct Received {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// Entries in the file.
    written: usize,
    recent: VecDeque<(u16, u64)>,
    counts: HashMap<(u16, u64), u32>,
    /// Entries were appended since the last sync.
    unsynced: bool,
}

impl Received {
    fn open(path: &Path) -> std::io::Result<Self> {
        let mut bytes = Vec::new();
        if let Ok(mut f) = std::fs::File::open(path) {
            f.read_to_end(&mut bytes)?;
        }
        let mut r = Self {
            path: path.to_owned(),
            file: None,
            written: 0,
            recent: VecDeque::new(),
            counts: HashMap::new(),
            unsynced: false,
        };
        for e in bytes.chunks_exact(ENTRY) {
            let pkid = u16::from_le_bytes([e[0], e[1]]);
            let mut h = [0u8; 8];
            h.copy_from_slice(&e[2..]);
            r.remember((pkid, u64::from_le_bytes(h)));
        }
        r.rewrite()?;
        Ok(r)
    }

    /// A message's packet id, and a hash (FNV-1a) of its topic and payload.
    fn key(m: &Message) -> (u16, u64) {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in m
            .topic()
            .iter()
            .chain([0u8].iter())
            .chain(m.payload().iter())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (m.pkid(), h)
    }

    fn remember(&mut self, key: (u16, u64)) {
        self.recent.push_back(key);
        *self.counts.entry(key).or_default() += 1;
        while self.recent.len() > RECENT {
            if let Some(old) = self.recent.pop_front() {
                self.uncount(old);
            }
        }
    }

    fn uncount(&mut self, key: (u16, u64)) -> bool {
        match self.counts.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.counts.remove(&key);
                true
            }
            None => false,
        }
    }

    /// Whether `key` was logged (it is then forgotten once).
    fn forget(&mut self, key: &(u16, u64)) -> bool {
        self.uncount(*key)
    }

    /// Notes a message logged: appended to the file.
    fn note(&mut self, key: (u16, u64)) {
        self.remember(key);
        if self.written >= 16 * RECENT && self.rewrite().is_err() {
            return;
        }
        let mut entry = [0u8; ENTRY];
        entry[..2].copy_from_slice(&key.0.to_le_bytes());
        entry[2..].copy_from_slice(&key.1.to_le_bytes());
        if let Some(f) = &mut self.file
            && f.write_all(&entry).is_ok()
        {
            self.written += 1;
            self.unsynced = true;
        }
    }

    /// The file to sync, when entries were appended since the last sync.
    fn take_unsynced(&mut self) -> Option<std::fs::File> {
        if !std::mem::take(&mut self.unsynced) {
            return None;
        }
        self.file.as_ref().and_then(|f| f.try_clone().ok())
    }

    /// Writes the remembered entries to a new file, replacing the old one.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut bytes = Vec::with_capacity(self.recent.len() * ENTRY);
        for (pkid, h) in &self.recent {
            bytes.extend_from_slice(&pkid.to_le_bytes());
            bytes.extend_from_slice(&h.to_le_bytes());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = Some(std::fs::OpenOptions::new().append(true).open(&self.path)?);
        self.written = self.recent.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(pkid: u16, payload: &str, dup: bool) -> Message {
        let mut p = rumqttc::Publish::new("boxes/ib1", rumqttc::QoS::AtLeastOnce, payload);
        p.pkid = pkid;
        p.dup = dup;
        Message::V4(p)
    }

    #[test]
    fn a_logged_message_sent_again_is_recognised_once_and_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("received");
        let mut r = Received::open(&path).unwrap();
        for (pkid, payload) in [(1, "a"), (2, "b"), (3, "c")] {
            r.note(Received::key(&message(pkid, payload, false)));
        }
        drop(r);
        // After a restart: what was noted before is known.
        let mut r = Received::open(&path).unwrap();
        let again = message(2, "b", true);
        assert!(r.forget(&Received::key(&again)));
        // Once only: a second copy is news.
        assert!(!r.forget(&Received::key(&again)));
        // The same packet id with another payload is another message.
        assert!(!r.forget(&Received::key(&message(3, "z", true))));
        assert!(r.forget(&Received::key(&message(3, "c", true))));
    }

    #[test]
    fn only_the_last_messages_are_remembered_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("received");
        let mut r = Received::open(&path).unwrap();
        let n = 20 * RECENT;
        for i in 0..n {
            r.note(Received::key(&message(
                (i % 65_535) as u16,
                &i.to_string(),
                false,
            )));
        }
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(size <= 17 * RECENT * ENTRY, "{size} bytes");
        drop(r);
        let mut r = Received::open(&path).unwrap();
        let last = n - 1;
        let oldest = n - RECENT - 1;
        assert!(r.forget(&Received::key(&message(
            (last % 65_535) as u16,
            &last.to_string(),
            true
        ))));
        assert!(!r.forget(&Received::key(&message(
            (oldest % 65_535) as u16,
            &oldest.to_string(),
            true
        ))));
    }
}
