//! Live views of the data: taps on a data source's topic, and the most recent observations
//! of each registered data source (kept by a lossy subscriber, so the pipeline never waits
//! for a view).

use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::mpsc;

use super::{Engine, Recorder, lock};
use crate::bus::{Envelope, Subscriber};
use crate::symbol::Sym;

impl Engine {
    /// Subscribes to a DSM's topic, as a test does: losslessly, so a slow reader holds
    /// the publishers back.
    #[must_use]
    pub fn tap(&self, dsm: &str) -> (Subscriber, mpsc::Receiver<Envelope>) {
        let (mut s, rx) = self.inner.bus.subscriber();
        s.subscribe(&self.inner.bus, Sym::new(dsm));
        (s, rx)
    }

    /// Subscribes to a DSM's topic as a dashboard does: a slow reader loses messages, the
    /// pipeline never waits for it.
    #[must_use]
    pub fn tap_lossy(&self, dsm: &str) -> (Subscriber, mpsc::Receiver<Envelope>) {
        let (mut s, rx) = self.inner.bus.lossy_subscriber();
        s.subscribe(&self.inner.bus, Sym::new(dsm));
        (s, rx)
    }

    /// The last `n` observations published to a registered DSM, oldest first (`None` when
    /// the DSM is not registered or the engine keeps none).
    #[must_use]
    pub fn recent(&self, dsm: &str, n: usize) -> Option<Vec<crate::observation::Observation>> {
        let recorders = lock(&self.inner.recorders);
        let buffer = lock(&recorders.get(&Sym::new(dsm))?.buffer);
        Some(
            buffer
                .iter()
                .skip(buffer.len().saturating_sub(n))
                .cloned()
                .collect(),
        )
    }

    pub(super) fn record(&self, dsm: Sym) {
        let keep = self.inner.config.recent;
        let mut recorders = lock(&self.inner.recorders);
        if keep == 0 || recorders.contains_key(&dsm) {
            return;
        }
        let (mut subscriber, mut rx) = self.inner.bus.lossy_subscriber();
        subscriber.subscribe(&self.inner.bus, dsm);
        let buffer = Arc::new(StdMutex::new(std::collections::VecDeque::with_capacity(
            keep,
        )));
        let kept = buffer.clone();
        let task = self.inner.tracker.spawn(async move {
            let _subscription = subscriber;
            while let Some(e) = rx.recv().await {
                if let crate::bus::Message::Data(batch) = e.message {
                    let mut b = lock(&kept);
                    for o in batch.iter().skip(batch.len().saturating_sub(keep)) {
                        if b.len() == keep {
                            b.pop_front();
                        }
                        b.push_back(o.clone());
                    }
                }
            }
        });
        recorders.insert(dsm, Recorder { buffer, task });
    }
}
