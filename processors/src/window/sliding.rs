//! Sliding windows without a slide: one window per observation, the `size` ending at it,
//! `(t − size, t]`. The observations a key's windows still need are kept; each one's
//! window is emitted once the watermark has passed it.

use std::collections::{BTreeMap, BTreeSet};

use engine::Observation;
use engine::Timestamp;
use engine::processor::{Output, ProcessorError};
use rustc_hash::FxHashMap;
use serde_json::Value as Json;

use super::{
    Accumulator, Closing, Key, OpenWindows, Saved, SavedObservation, Shared, Slot, list,
    observation_of,
};

/// One window per observation: the observations still needed, and the ones to emit.
#[derive(Debug)]
pub(super) struct Points {
    /// Window length (µs).
    size: i64,
    points: FxHashMap<Key, BTreeMap<(i64, u64), Observation>>,
    due: BTreeSet<(i64, u64, Key)>,
}

impl Points {
    pub(super) fn new(size: i64) -> Self {
        Self {
            size,
            points: FxHashMap::default(),
            due: BTreeSet::new(),
        }
    }
}

impl<A: Accumulator> OpenWindows<A> for Points {
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
                "late: event time has passed {}, where its {} window ends",
                o.timestamp, cx.kind
            ));
        }
        if let Err(reason) = A::new(&cx.options).add(o) {
            out.reject(o, format!("{}: {reason}", cx.kind));
        } else {
            self.points
                .entry(key)
                .or_default()
                .insert((t, seq), o.clone());
            self.due.insert((t, seq, key));
        }
        None
    }

    fn close(&mut self, cx: &Shared<A>, horizon: i64, closing: &mut Vec<Closing<A>>) {
        let size = self.size;
        while let Some(&(t, _, key)) = self.due.first() {
            if t > horizon {
                break;
            }
            self.due.pop_first();
            let Some(points) = self.points.get_mut(&key) else {
                continue;
            };
            let mut slot = Slot::new(&cx.options);
            for o in points
                .range((t - size + 1, 0)..=(t, u64::MAX))
                .map(|(_, o)| o)
            {
                // Checked when it arrived.
                let _ = slot.add(o);
            }
            let kept = points.split_off(&(t - size + 1, 0));
            *points = kept;
            if points.is_empty() {
                self.points.remove(&key);
            }
            closing.push(Closing {
                key,
                slot,
                timestamp: t,
                start: t - size,
                end: t,
                complete: true,
            });
        }
    }

    fn snapshot(&self, saved: &mut Saved) -> Result<(), ProcessorError> {
        for o in self.points.values().flat_map(BTreeMap::values) {
            saved.observations.push(SavedObservation::from(o));
        }
        saved.first_due = self.due.first().map(|(t, _, _)| *t);
        Ok(())
    }

    /// A snapshot without `firstDue` (written before it was kept) counts every observation
    /// as emitted.
    fn restore(
        &mut self,
        cx: &Shared<A>,
        state: &Json,
        _watermark: Timestamp,
        seq: &mut u64,
    ) -> Result<(), ProcessorError> {
        self.points.clear();
        self.due.clear();
        let first_due = state
            .get("firstDue")
            .and_then(Json::as_i64)
            .unwrap_or(i64::MAX);
        for j in list(state, "observations")? {
            let o = observation_of(j)?;
            let key = cx.settings.key(&o);
            *seq += 1;
            let t = o.timestamp.as_micros();
            if t >= first_due {
                self.due.insert((t, *seq, key));
            }
            self.points.entry(key).or_default().insert((t, *seq), o);
        }
        Ok(())
    }
}
