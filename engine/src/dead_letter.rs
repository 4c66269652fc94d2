//! Dead letters: what could not be read or processed, with the reason, on a DSM of its own.
//!
//! Nothing is dropped silently. A payload a connector cannot decode, an observation a
//! processor cannot handle, an observation too late for its window: each becomes an
//! observation named `dead-letter` on the dead-letter DSM (`dda-dead-letters` by default),
//! whose value holds the reason, where it happened, and the original payload. The
//! dead-letter DSM is an ordinary bus topic: by default a file sink writes it as JSON lines,
//! and analytics manifests may read it like any other source.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value as Json, json};

use crate::bus::Publisher;
use crate::codec::encode_live_data_set;
use crate::observation::{Observation, Value, ingest_clock};
use crate::processor::Rejected;
use crate::symbol::Sym;
use crate::time::Timestamp;

/// The name of dead-letter observations.
pub const DEAD_LETTER_NAME: &str = "dead-letter";

/// Sends dead letters and counts them.
#[derive(Clone, Debug)]
pub struct DeadLetters {
    publisher: Publisher,
    count: Arc<AtomicU64>,
}

impl DeadLetters {
    /// Dead letters published with `publisher`.
    #[must_use]
    pub fn new(publisher: Publisher) -> Self {
        Self {
            publisher,
            count: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The dead-letter DSM.
    #[must_use]
    pub fn topic(&self) -> Sym {
        self.publisher.topic()
    }

    /// How many dead letters have been sent.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn letter(source: Sym, place: &Json, reason: &str, payload: Json) -> Observation {
        Observation {
            source,
            name: Sym::new(DEAD_LETTER_NAME),
            timestamp: Timestamp::now(),
            value: Value::Json(Arc::new(
                json!({"reason": reason, "at": place, "payload": payload}),
            )),
            data_kind: None,
            ingested: ingest_clock(),
            attributes: None,
            id: None,
        }
    }

    /// Sends observations a processor rejected. `place` says where (instance, processor).
    pub async fn rejected(&self, place: &Json, rejected: Vec<Rejected>) {
        if rejected.is_empty() {
            return;
        }
        self.count
            .fetch_add(rejected.len() as u64, Ordering::Relaxed);
        let letters: Vec<Observation> = rejected
            .into_iter()
            .map(|r| {
                Self::letter(
                    r.observation.source,
                    place,
                    &r.reason,
                    encode_live_data_set(&r.observation),
                )
            })
            .collect();
        self.publisher.send(letters.into()).await;
    }

    /// Sends a payload a connector of `source` could not read.
    pub async fn unreadable(&self, source: Sym, place: &Json, reason: &str, payload: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let letter = Self::letter(source, place, reason, Json::String(payload.to_owned()));
        self.publisher.send(vec![letter].into()).await;
    }

    /// Sends payloads (as they were encoded for a remote system) that could not be
    /// delivered.
    pub async fn payloads(&self, source: Sym, place: &Json, reason: &str, payloads: Vec<String>) {
        if payloads.is_empty() {
            return;
        }
        self.count
            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
        let letters: Vec<Observation> = payloads
            .into_iter()
            .map(|p| Self::letter(source, place, reason, Json::String(p)))
            .collect();
        self.publisher.send(letters.into()).await;
    }

    /// Stops publishing dead letters.
    pub async fn leave(&self) {
        self.publisher.leave().await;
    }
}
