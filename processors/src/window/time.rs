//! Tumbling and hopping windows (and sliding windows with a slide): windows of `size`
//! starting every `slide`, kept as panes of `gcd(size, slide)` per key. An observation
//! updates one pane; a window, when it closes, merges its panes.

use std::collections::BTreeSet;

use engine::processor::{Output, ProcessorError};
use engine::{Observation, Timestamp};
use rustc_hash::FxHashMap;
use serde_json::Value as Json;

use super::packed::{Packer, packed, unpack};
use super::{
    Accumulator, Closing, Key, OpenWindows, Saved, Shared, Slot, int, key_of, list, slot_of,
};

/// Time windows: panes per key, and the window ends still to emit.
#[derive(Debug)]
pub(super) struct Panes<A> {
    /// Window length (µs).
    size: i64,
    /// Window advance (µs).
    slide: i64,
    /// Pane length (µs).
    pane: i64,
    /// Each key's panes, by start (most keys have one or two: a sorted vector).
    panes: FxHashMap<Key, Vec<(i64, Slot<A>)>>,
    due: BTreeSet<(i64, Key)>,
}

/// The index of the first of `panes` starting at or after `t`.
fn from(panes: &[(i64, impl Sized)], t: i64) -> usize {
    panes.partition_point(|(start, _)| *start < t)
}

impl<A: Accumulator> Panes<A> {
    pub(super) fn new(size: i64, slide: i64, pane: i64) -> Self {
        Self {
            size,
            slide,
            pane,
            panes: FxHashMap::default(),
            due: BTreeSet::new(),
        }
    }
}

/// Files the ends of the time windows a new pane starting at `start` (slot time) belongs to,
/// except those already complete at `horizon`.
fn due_windows(
    due: &mut impl Extend<(i64, Key)>,
    (size, slide, pane): (i64, i64, i64),
    key: Key,
    start: i64,
    horizon: i64,
) {
    let last_end = (start + size).div_euclid(slide) * slide;
    let mut end = (start + pane + slide - 1).div_euclid(slide) * slide;
    while end <= last_end {
        if end - 1 > horizon {
            due.extend([(end, key)]);
        }
        end += slide;
    }
}

impl<A: Accumulator> OpenWindows<A> for Panes<A> {
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
        let closed_right = i64::from(cx.settings.closed_right);
        let slot_t = t - closed_right;
        let horizon = horizon.saturating_sub(closed_right);
        let start = slot_t.div_euclid(self.pane) * self.pane;
        let last_end = (start + self.size).div_euclid(self.slide) * self.slide;
        if last_end - 1 <= horizon {
            return Some(format!(
                "late: its last {} window, ending {}, was already emitted",
                cx.kind,
                Timestamp(last_end)
            ));
        }
        let shape = (self.size, self.slide, self.pane);
        let panes = self.panes.entry(key).or_insert_with(|| {
            // Tumbling windows: the pane open, and the next one before it closes.
            Vec::with_capacity(usize::try_from(shape.0 / shape.2).map_or(2, |n| n.clamp(1, 8) + 1))
        });
        let i = from(panes, start);
        if panes.get(i).is_none_or(|(s, _)| *s != start) {
            due_windows(&mut self.due, shape, key, start, horizon);
            panes.insert(i, (start, Slot::new(&cx.options)));
        }
        let slot = &mut panes[i].1;
        if let Err(reason) = slot.add(o) {
            out.reject(o, format!("{}: {reason}", cx.kind));
        }
        None
    }

    fn close(&mut self, cx: &Shared<A>, horizon: i64, closing: &mut Vec<Closing<A>>) {
        // Closed on the right, the windows are kept as [start, end) of the times less 1 µs:
        // that is (start, end] of the times, stamped `end` like a left-closed window.
        let shift = i64::from(cx.settings.closed_right);
        let horizon = if horizon == i64::MAX {
            i64::MAX
        } else {
            horizon.saturating_sub(shift)
        };
        let (size, slide) = (self.size, self.slide);
        while let Some(&(end, key)) = self.due.first() {
            if end - 1 > horizon {
                break;
            }
            self.due.pop_first();
            let Some(panes) = self.panes.get_mut(&key) else {
                continue;
            };
            let mut merged: Option<Slot<A>> = None;
            for (_, slot) in &panes[from(panes, end - size)..from(panes, end)] {
                match &mut merged {
                    Some(m) => m.merge(slot),
                    None => merged = Some(slot.clone()),
                }
            }
            // Panes no later window of this key needs.
            panes.drain(..from(panes, end + slide - size));
            if panes.is_empty() {
                self.panes.remove(&key);
            }
            if let Some(slot) = merged {
                closing.push(Closing {
                    key,
                    slot,
                    timestamp: end,
                    start: end - size,
                    end,
                    complete: true,
                });
            }
        }
    }

    fn snapshot(&self, saved: &mut Saved) -> Result<(), ProcessorError> {
        let mut packer = Packer::default();
        for (key, panes) in &self.panes {
            for (start, s) in panes {
                packer.add(key, [*start], s)?;
            }
        }
        packer.finish(saved)
    }

    fn restore(
        &mut self,
        cx: &Shared<A>,
        state: &Json,
        watermark: Timestamp,
        _seq: &mut u64,
    ) -> Result<(), ProcessorError> {
        self.panes.clear();
        self.due.clear();
        let horizon = watermark
            .as_micros()
            .saturating_sub(cx.settings.lateness)
            .saturating_sub(i64::from(cx.settings.closed_right));
        let shape = (self.size, self.slide, self.pane);
        let windows = packed(state)?.map(unpack::<A, 1>).transpose()?;
        if let Some(w) = &windows {
            self.panes.reserve(w.remaining());
        }
        let mut due = Vec::new();
        let mut pane = |key, start, slot| {
            due_windows(&mut due, shape, key, start, horizon);
            let panes = self.panes.entry(key).or_default();
            panes.insert(from(panes, start), (start, slot));
        };
        if let Some(windows) = windows {
            for w in windows {
                let (key, [start], slot) = w?;
                pane(key, start, slot);
            }
        } else {
            // An earlier form: one JSON object per window.
            for w in list(state, "windows")? {
                pane(key_of(w)?, int(w, "start")?, slot_of(w)?);
            }
        }
        // Built at once from the sorted ends, rather than filed one by one.
        self.due = due.into_iter().collect();
        Ok(())
    }
}
