//! Event time of a source fed by several senders — the edges of a fleet, each forwarding
//! its results to the cloud over an uplink (the HTTP ingest, an MQTT topic per gateway) —
//! and what each sender sent lately, so that what it sends again after a crash is taken
//! once. A source keeps time through a [`Timekeeper`]: one [`EventClock`], or [`Senders`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::connector::context::{EventClock, WATERMARK_MARK};
use crate::observation::Observation;
use crate::symbol::Sym;
use crate::time::Timestamp;

/// The attribute naming the gateway an observation came from (stamped by the source).
pub const GATEWAY_ATTRIBUTE: &str = "gateway";

/// How a source keeps event time over what it publishes.
pub trait Timekeeper: Send {
    /// Takes note of `batch` before it is published; drops from it what is not to be
    /// published (watermark marks, what a sender sent again).
    fn take(&mut self, batch: &mut Vec<Observation>);

    /// The watermark, when it advanced since it was last taken.
    fn advance(&mut self) -> Option<Timestamp>;
}

impl Timekeeper for EventClock {
    fn take(&mut self, batch: &mut Vec<Observation>) {
        self.observe(batch);
    }

    fn advance(&mut self) -> Option<Timestamp> {
        Self::advance(self)
    }
}

/// The event time of a source fed by several senders (the edges of a fleet, each
/// forwarding its results): each sender has its own [`EventClock`], and the watermark is
/// the earliest of the senders heard from within `idle_timeout` (wall-clock time), so
/// that a slower sender's observations are never late; a sender silent for longer no
/// longer holds event time back (what it sends later for windows that closed meanwhile is
/// late). The watermark never goes back.
#[derive(Clone, Debug)]
pub struct SenderClocks {
    out_of_orderness: Duration,
    idle_timeout: Duration,
    senders: HashMap<String, (EventClock, std::time::Instant)>,
    sent: Timestamp,
}

impl SenderClocks {
    /// Clocks allowing `out_of_orderness` per sender, a sender counting for
    /// `idle_timeout` after it was last heard from.
    #[must_use]
    pub fn new(out_of_orderness: Duration, idle_timeout: Duration) -> Self {
        Self {
            out_of_orderness,
            idle_timeout,
            senders: HashMap::new(),
            sent: Timestamp::MIN,
        }
    }

    /// Waits for `sender` from now on: until it is first heard from, or is silent for the
    /// idle timeout, event time does not pass the start of its results.
    pub fn expect(&mut self, sender: &str) {
        let ooo = self.out_of_orderness;
        self.senders
            .entry(sender.to_owned())
            .or_insert_with(|| (EventClock::new(ooo), std::time::Instant::now()));
    }

    /// Takes note of a batch from `sender`.
    pub fn observe(&mut self, sender: &str, batch: &[Observation]) {
        let now = std::time::Instant::now();
        let ooo = self.out_of_orderness;
        let entry = self
            .senders
            .entry(sender.to_owned())
            .or_insert_with(|| (EventClock::new(ooo), now));
        entry.0.observe(batch);
        entry.1 = now;
    }

    /// Takes note of a watermark `sender` reported (it passes its event time on).
    pub fn report(&mut self, sender: &str, w: Timestamp) {
        let ooo = self.out_of_orderness;
        let entry = self
            .senders
            .entry(sender.to_owned())
            .or_insert_with(|| (EventClock::new(ooo), std::time::Instant::now()));
        entry.0.report(w);
        entry.1 = std::time::Instant::now();
    }

    /// The watermark now: the earliest of the live senders'.
    #[must_use]
    pub fn watermark(&self) -> Timestamp {
        let now = std::time::Instant::now();
        self.senders
            .values()
            .filter(|(_, heard)| now.duration_since(*heard) <= self.idle_timeout)
            .map(|(c, _)| c.watermark())
            .min()
            .unwrap_or(Timestamp::MIN)
    }

    /// The watermark, when it has advanced since it was last taken.
    pub fn advance(&mut self) -> Option<Timestamp> {
        let w = self.watermark();
        (w > self.sent).then(|| {
            self.sent = w;
            w
        })
    }
}

/// What each sender sent, by (time, data source, quantity), within the horizon of event
/// time behind the newest it sent: what it sends again is taken once.
#[derive(Debug)]
struct Seen {
    horizon: Duration,
    by: HashMap<String, BTreeMap<Timestamp, HashSet<(Sym, Sym)>>>,
}

impl Seen {
    /// Keeps the observations of `batch` that `sender` has not sent before.
    fn first_times(&mut self, sender: &str, batch: &mut Vec<Observation>) {
        let seen = self.by.entry(sender.to_owned()).or_default();
        batch.retain(|o| {
            seen.entry(o.timestamp)
                .or_default()
                .insert((o.source, o.name))
        });
        if let Some((&newest, _)) = seen.last_key_value() {
            *seen = seen.split_off(&newest.minus(self.horizon));
        }
    }
}

/// The sender of an observation: its [`GATEWAY_ATTRIBUTE`] (empty when it names none).
fn sender_of(o: &Observation) -> &str {
    o.attributes
        .as_ref()
        .and_then(|a| a.get(GATEWAY_ATTRIBUTE))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

/// Stamps `batch` (what `sender` sent) with its sender ([`GATEWAY_ATTRIBUTE`]).
pub fn stamp(batch: &mut [Observation], sender: &str) {
    for o in batch {
        let mut attributes = o.attributes.as_deref().cloned().unwrap_or_default();
        attributes.insert(
            GATEWAY_ATTRIBUTE.into(),
            serde_json::Value::String(sender.to_owned()),
        );
        o.attributes = Some(Arc::new(attributes));
    }
}

/// A mark, among the observations a source publishes, that `sender` passed its event time
/// on: nothing older is to come from it (the uplink carries it in its own way: the HTTP
/// header `x-dda-watermark`, an MQTT message `{"dda:watermark": µs}`).
#[must_use]
pub fn watermark_mark(source: Sym, sender: &str, w: Timestamp) -> Observation {
    let mut o = Observation::number(source, Sym::new(WATERMARK_MARK), w, 0.0);
    stamp(std::slice::from_mut(&mut o), sender);
    o
}

/// A message passing a sender's event time on over a broker (an MQTT topic of the
/// uplink): `{"dda:watermark": <epoch microseconds>}`.
#[must_use]
pub fn watermark_message(w: Timestamp) -> Vec<u8> {
    format!("{{\"{WATERMARK_MARK}\":{}}}", w.as_micros()).into_bytes()
}

/// The watermark a message carries, when it is one ([`watermark_message`]).
#[must_use]
pub fn watermark_of(payload: &[u8]) -> Option<Timestamp> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    if !text.starts_with("{\"dda:watermark\"") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let o = v.as_object().filter(|o| o.len() == 1)?;
    o.get(WATERMARK_MARK)?.as_i64().map(Timestamp)
}

/// A source's event time: one clock for everything it reads, or one per sender.
#[derive(Debug)]
pub enum Clock {
    /// One clock.
    One(EventClock),
    /// One per sender.
    PerSender(Senders),
}

impl Timekeeper for Clock {
    fn take(&mut self, batch: &mut Vec<Observation>) {
        match self {
            Self::One(c) => c.take(batch),
            Self::PerSender(s) => s.take(batch),
        }
    }

    fn advance(&mut self) -> Option<Timestamp> {
        match self {
            Self::One(c) => Timekeeper::advance(c),
            Self::PerSender(s) => s.advance(),
        }
    }
}

/// Event time per sender, and what each sent lately: for a source fed by the edges of a
/// fleet. Each observation names its sender in [`GATEWAY_ATTRIBUTE`] (the source stamps
/// it: [`stamp`]); an observation naming none is of an unnamed sender, whose resends are
/// not looked for.
#[derive(Debug)]
pub struct Senders {
    clocks: SenderClocks,
    seen: Seen,
}

impl Senders {
    /// Event time allowing `out_of_orderness` per sender, a sender counting for
    /// `idle_timeout` after it was last heard from; what a sender sends again within
    /// `duplicates_within` of event time is dropped; `expected` are waited for from the
    /// start.
    #[must_use]
    pub fn new(
        out_of_orderness: Duration,
        idle_timeout: Duration,
        duplicates_within: Duration,
        expected: &[String],
    ) -> Self {
        let mut clocks = SenderClocks::new(out_of_orderness, idle_timeout);
        for g in expected {
            clocks.expect(g);
        }
        Self {
            clocks,
            seen: Seen {
                horizon: duplicates_within,
                by: HashMap::new(),
            },
        }
    }
}

impl Timekeeper for Senders {
    fn take(&mut self, batch: &mut Vec<Observation>) {
        let mark = Sym::new(WATERMARK_MARK);
        let mut kept = Vec::with_capacity(batch.len());
        let mut all = std::mem::take(batch).into_iter().peekable();
        // Runs of one sender at a time (a batch is mostly one sender's).
        while let Some(first) = all.next() {
            let sender = sender_of(&first).to_owned();
            let mut run = vec![first];
            while let Some(next) = all.next_if(|o| sender_of(o) == sender) {
                run.push(next);
            }
            let (marks, mut data): (Vec<Observation>, Vec<Observation>) =
                run.into_iter().partition(|o| o.name == mark);
            if !sender.is_empty() {
                let sent = data.len();
                self.seen.first_times(&sender, &mut data);
                if data.len() < sent {
                    tracing::debug!(gateway = %sender, again = sent - data.len(), "dropped what a gateway sent again");
                }
            }
            if !data.is_empty() {
                self.clocks.observe(&sender, &data);
            }
            for m in marks {
                self.clocks.report(&sender, m.timestamp);
            }
            kept.extend(data);
        }
        *batch = kept;
    }

    fn advance(&mut self) -> Option<Timestamp> {
        self.clocks.advance()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Vec<Observation> {
        vec![Observation::number(
            Sym::new("uplink"),
            Sym::new("p"),
            Timestamp::from_millis(ms),
            1.0,
        )]
    }

    #[test]
    fn the_slowest_live_sender_holds_event_time_back_until_it_goes_silent() {
        let mut clocks = SenderClocks::new(Duration::ZERO, Duration::from_millis(200));
        clocks.observe("edge-1", &at(5_000));
        let first = clocks.advance().unwrap();
        assert_eq!(
            first,
            Timestamp(Timestamp::from_millis(5_000).as_micros() - 1)
        );
        // A slower sender: event time goes no further than it.
        clocks.observe("edge-2", &at(2_000));
        assert_eq!(clocks.advance(), None, "never back");
        clocks.observe("edge-1", &at(9_000));
        assert_eq!(clocks.advance(), None, "held back by edge-2");
        clocks.observe("edge-2", &at(7_000));
        assert_eq!(
            clocks.advance(),
            Some(Timestamp(Timestamp::from_millis(7_000).as_micros() - 1))
        );
        // An expected sender not heard from yet holds event time back too.
        let mut waiting = SenderClocks::new(Duration::ZERO, Duration::from_millis(200));
        waiting.expect("edge-3");
        waiting.observe("edge-1", &at(5_000));
        assert_eq!(waiting.advance(), None, "edge-3 is waited for");
        // edge-2 goes silent: past the idle timeout, edge-1 alone moves event time on.
        std::thread::sleep(Duration::from_millis(250));
        clocks.observe("edge-1", &at(12_000));
        assert_eq!(
            clocks.advance(),
            Some(Timestamp(Timestamp::from_millis(12_000).as_micros() - 1))
        );
        // A sender passing its watermark on: its event time is that, even with no result.
        clocks.report("edge-2", Timestamp::from_millis(20_000));
        clocks.report("edge-1", Timestamp::MAX);
        assert_eq!(clocks.advance(), Some(Timestamp::from_millis(20_000)));
    }

    fn from(sender: &str, ms: i64) -> Observation {
        let mut o = at(ms).remove(0);
        stamp(std::slice::from_mut(&mut o), sender);
        o
    }

    #[test]
    fn watermark_messages_read_back_and_nothing_else_is_one() {
        let w = Timestamp::from_millis(1_527_120_000_000);
        assert_eq!(watermark_of(&watermark_message(w)), Some(w));
        assert_eq!(watermark_of(br#"{"dda:watermark": 5, "value": 1}"#), None);
        assert_eq!(watermark_of(br#"{"name": "p", "value": 1}"#), None);
        assert_eq!(watermark_of(b"not json"), None);
    }

    #[test]
    fn senders_drop_resends_take_marks_and_keep_time_per_sender() {
        let mut s = Senders::new(
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(3600),
            &["edge-2".to_owned()],
        );
        let mut batch = vec![from("edge-1", 5_000), from("edge-1", 6_000)];
        s.take(&mut batch);
        assert_eq!(batch.len(), 2);
        assert_eq!(s.advance(), None, "edge-2 is expected");
        // edge-2 passes its event time on with a mark alone; edge-1 sends 6 s again.
        let mut batch = vec![
            watermark_mark(Sym::new("uplink"), "edge-2", Timestamp::from_millis(9_000)),
            from("edge-1", 6_000),
            from("edge-1", 7_000),
        ];
        s.take(&mut batch);
        assert_eq!(
            batch.iter().map(|o| o.timestamp).collect::<Vec<_>>(),
            [Timestamp::from_millis(7_000)],
            "the mark and the resend are not published"
        );
        assert_eq!(sender_of(&batch[0]), "edge-1");
        assert_eq!(
            s.advance(),
            Some(Timestamp(Timestamp::from_millis(7_000).as_micros() - 1)),
            "the earliest of the two"
        );
    }
}
