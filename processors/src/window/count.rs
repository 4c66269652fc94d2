//! Count windows: `size` observations of a key in event-time order, a new window every
//! `slide` observations. Observations wait for the watermark, so that each key takes them
//! in event-time order; at the end of input what no complete window emitted comes out as
//! a partial window (`complete: false`).

use std::collections::{BTreeMap, VecDeque};

use engine::processor::{Output, ProcessorError};
use engine::{Observation, Timestamp};
use rustc_hash::FxHashMap;
use serde_json::{Value as Json, json};

use super::{
    Accumulator, Closing, Key, OpenWindows, Saved, SavedKey, SavedObservation, Shared, Slot, bad,
    key_of, list, observation_of,
};

#[derive(Debug, Default)]
struct Counted {
    window: VecDeque<Observation>,
    seen: u64,
}

/// Count windows: observations waiting for the watermark (to be taken in event-time
/// order), and the last `size` of each key.
#[derive(Debug)]
pub(super) struct Counts {
    /// Observations per window.
    size: usize,
    /// Observations between windows.
    slide: usize,
    pending: BTreeMap<(i64, u64), (Key, Observation)>,
    keys: FxHashMap<Key, Counted>,
}

impl Counts {
    pub(super) fn new(size: usize, slide: usize) -> Self {
        Self {
            size,
            slide,
            pending: BTreeMap::new(),
            keys: FxHashMap::default(),
        }
    }
}

/// Whether a key that has seen `seen` observations has just completed a window of `size`
/// observations, one starting every `slide`.
fn completes(seen: u64, size: usize, slide: usize) -> bool {
    let seen = usize::try_from(seen).unwrap_or(usize::MAX);
    seen >= size && (seen - size).is_multiple_of(slide)
}

fn count_result<A: Accumulator>(
    options: &A::Options,
    key: Key,
    window: &VecDeque<Observation>,
    complete: bool,
) -> Option<Closing<A>> {
    let mut slot = Slot::new(options);
    for o in window {
        // Checked when it arrived.
        let _ = slot.add(o);
    }
    Some(Closing {
        key,
        slot,
        timestamp: window.back()?.timestamp.as_micros(),
        start: window.front()?.timestamp.as_micros(),
        end: window.back()?.timestamp.as_micros(),
        complete,
    })
}

impl<A: Accumulator> OpenWindows<A> for Counts {
    fn add(
        &mut self,
        cx: &Shared<A>,
        key: Key,
        o: &Observation,
        t: i64,
        seq: u64,
        horizon: i64,
        out: &mut Output<'_>,
    ) -> Option<String> {
        if t <= horizon {
            return Some(format!(
                "late: event time has passed {}; its {} window was already counted",
                o.timestamp, cx.kind
            ));
        }
        if let Err(reason) = A::new(&cx.options).add(o) {
            out.reject(o, format!("{}: {reason}", cx.kind));
        } else {
            self.pending.insert((t, seq), (key, o.clone()));
        }
        None
    }

    fn close(&mut self, cx: &Shared<A>, horizon: i64, closing: &mut Vec<Closing<A>>) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > horizon {
                break;
            }
            let (key, o) = entry.remove();
            let k = self.keys.entry(key).or_default();
            k.window.push_back(o);
            if k.window.len() > self.size {
                k.window.pop_front();
            }
            k.seen += 1;
            if completes(k.seen, self.size, self.slide) {
                closing.extend(count_result(&cx.options, key, &k.window, true));
            }
        }
    }

    fn flush(&mut self, cx: &Shared<A>, closing: &mut Vec<Closing<A>>) {
        let (size, slide) = (self.size, self.slide);
        let mut partial: Vec<(Key, Counted)> = self
            .keys
            .drain()
            .filter(|(_, k)| !completes(k.seen, size, slide))
            .collect();
        partial.sort_by_key(|(key, _)| *key);
        for (key, k) in partial {
            closing.extend(count_result(&cx.options, key, &k.window, false));
        }
    }

    fn snapshot(&self, saved: &mut Saved) -> Result<(), ProcessorError> {
        for (_, o) in self.pending.values() {
            saved.observations.push(SavedObservation::from(o));
        }
        for (key, k) in &self.keys {
            saved.keys.push(json!({
                "key": SavedKey::from(key),
                "seen": k.seen,
                "window": k.window.iter().map(SavedObservation::from).collect::<Vec<_>>(),
            }));
        }
        Ok(())
    }

    fn restore(
        &mut self,
        cx: &Shared<A>,
        state: &Json,
        _watermark: Timestamp,
        seq: &mut u64,
    ) -> Result<(), ProcessorError> {
        self.pending.clear();
        self.keys.clear();
        for j in list(state, "observations")? {
            let o = observation_of(j)?;
            *seq += 1;
            self.pending
                .insert((o.timestamp.as_micros(), *seq), (cx.settings.key(&o), o));
        }
        for k in list(state, "keys")? {
            let window = k
                .get("window")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("no window"))?
                .iter()
                .map(observation_of)
                .collect::<Result<_, _>>()?;
            self.keys.insert(
                key_of(k)?,
                Counted {
                    window,
                    seen: k.get("seen").and_then(Json::as_u64).unwrap_or(0),
                },
            );
        }
        Ok(())
    }
}
