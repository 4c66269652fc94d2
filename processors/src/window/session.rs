//! Session windows: observations of a key less than `gap` apart form one session, which
//! ends `gap` after its last observation. An observation that bridges sessions merges
//! them.

use std::collections::{BTreeMap, BTreeSet};

use engine::processor::{Output, ProcessorError};
use engine::{Observation, Timestamp};
use rustc_hash::FxHashMap;
use serde_json::{Value as Json, json};

use super::packed::{Packer, packed, unpack};
use super::{
    Accumulator, Closing, Key, OpenWindows, Saved, SavedKey, Shared, Slot, int, key_of, list,
    slot_of,
};

#[derive(Clone, Debug)]
struct Session<A> {
    last: i64,
    slot: Slot<A>,
}

/// Session windows: open sessions per key by start, their closing times, and the last
/// observation of the sessions already emitted.
#[derive(Debug)]
pub(super) struct Sessions<A> {
    /// Inactivity gap (µs).
    gap: i64,
    open: FxHashMap<Key, BTreeMap<i64, Session<A>>>,
    due: BTreeSet<(i64, i64, Key)>,
    emitted: FxHashMap<Key, i64>,
}

impl<A: Accumulator> Sessions<A> {
    pub(super) fn new(gap: i64) -> Self {
        Self {
            gap,
            open: FxHashMap::default(),
            due: BTreeSet::new(),
            emitted: FxHashMap::default(),
        }
    }
}

impl<A: Accumulator> OpenWindows<A> for Sessions<A> {
    fn add(
        &mut self,
        cx: &Shared<A>,
        key: Key,
        o: &Observation,
        t: i64,
        _seq: u64,
        horizon: i64,
        out: &mut Output<'_>,
    ) -> Option<String> {
        let gap = self.gap;
        if t.saturating_add(gap - 1) <= horizon
            || self
                .emitted
                .get(&key)
                .is_some_and(|&e| t < e.saturating_add(gap))
        {
            return Some(format!(
                "late: the {} session it belongs to was already emitted",
                cx.kind
            ));
        }
        let mut merged = Session {
            last: t,
            slot: Slot::new(&cx.options),
        };
        if let Err(reason) = merged.slot.add(o) {
            out.reject(o, format!("{}: {reason}", cx.kind));
            return None;
        }
        let mut start = t;
        let open = self.open.entry(key).or_default();
        let joined: Vec<i64> = open
            .range(..=t.saturating_add(gap - 1))
            .rev()
            .take_while(|(_, session)| session.last.saturating_add(gap) > t)
            .map(|(start, _)| *start)
            .collect();
        for old_start in joined {
            if let Some(old) = open.remove(&old_start) {
                self.due
                    .remove(&(old.last.saturating_add(gap), old_start, key));
                merged.slot.merge(&old.slot);
                merged.last = merged.last.max(old.last);
                start = start.min(old_start);
            }
        }
        self.due
            .insert((merged.last.saturating_add(gap), start, key));
        open.insert(start, merged);
        None
    }

    fn close(&mut self, _cx: &Shared<A>, horizon: i64, closing: &mut Vec<Closing<A>>) {
        while let Some(&(close, start, key)) = self.due.first() {
            if close - 1 > horizon {
                break;
            }
            self.due.pop_first();
            let Some(open) = self.open.get_mut(&key) else {
                continue;
            };
            let Some(session) = open.remove(&start) else {
                continue;
            };
            if open.is_empty() {
                self.open.remove(&key);
            }
            let emitted = self.emitted.entry(key).or_insert(session.last);
            *emitted = (*emitted).max(session.last);
            closing.push(Closing {
                key,
                slot: session.slot,
                timestamp: close,
                start,
                end: close,
                complete: true,
            });
        }
    }

    fn snapshot(&self, saved: &mut Saved) -> Result<(), ProcessorError> {
        let mut packer = Packer::default();
        for (key, open) in &self.open {
            for (start, session) in open {
                packer.add(key, [*start, session.last], &session.slot)?;
            }
        }
        packer.finish(saved)?;
        for (key, last) in &self.emitted {
            saved
                .keys
                .push(json!({"key": SavedKey::from(key), "last": last}));
        }
        Ok(())
    }

    fn restore(
        &mut self,
        _cx: &Shared<A>,
        state: &Json,
        _watermark: Timestamp,
        _seq: &mut u64,
    ) -> Result<(), ProcessorError> {
        self.open.clear();
        self.due.clear();
        self.emitted.clear();
        let mut due = Vec::new();
        let mut session = |key, start, last: i64, slot| {
            due.push((last.saturating_add(self.gap), start, key));
            self.open
                .entry(key)
                .or_default()
                .insert(start, Session { last, slot });
        };
        if let Some(text) = packed(state)? {
            for w in unpack::<A, 2>(text)? {
                let (key, [start, last], slot) = w?;
                session(key, start, last, slot);
            }
        } else {
            // An earlier form: one JSON object per window.
            for w in list(state, "windows")? {
                session(key_of(w)?, int(w, "start")?, int(w, "last")?, slot_of(w)?);
            }
        }
        self.due = due.into_iter().collect();
        for k in list(state, "keys")? {
            self.emitted.insert(key_of(k)?, int(k, "last")?);
        }
        Ok(())
    }
}
