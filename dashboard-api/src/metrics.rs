//! `GET /metrics`: the engine's state in the Prometheus text exposition format.
//!
//! - `dda_instance_state{instance, state}`: 1 for each instance's current state;
//! - `dda_processor_received_total`, `dda_processor_emitted_total`,
//!   `dda_processor_dead_letters_total`, `dda_processor_batches_total{instance, processor, type}`;
//! - `dda_processor_events_total{instance, processor, type, event}`: named events a
//!   processor counted (`enrich`'s observations passed unenriched, say);
//! - `dda_processor_batch_seconds{instance, processor, type}`: a histogram of the time a
//!   processor spends on a batch;
//! - `dda_bus_queued_messages{topic}`: messages waiting in subscribers' channels;
//! - `dda_connector_observations_total{dsm, direction}`: read by sources, written by sinks;
//! - `dda_connector_undelivered_total{dsm}`: observations a sink accepted and could not
//!   deliver (given up at a stop deadline; in the dead letters);
//! - `dda_connector_connected{dsm, role}`: 1 while a running instance's connector reaches its
//!   system, 0 while it cannot (its status says why);
//! - `dda_checkpoints_total{instance}`, `dda_checkpoint_failures_total{instance}`,
//!   `dda_checkpoint_bytes{instance}`, `dda_checkpoint_seconds{instance}` (the last one's
//!   size and duration), when the server takes checkpoints;
//! - `dda_dead_letters_total`, `dda_uptime_seconds`.

use std::fmt::Write as _;

use engine::instance::BATCH_BUCKETS_US;

use crate::service::Service;

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric.
pub async fn render(s: &Service) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP dda_uptime_seconds Seconds since the server started.\n# TYPE dda_uptime_seconds gauge"
    );
    let _ = writeln!(out, "dda_uptime_seconds {}", s.started.elapsed().as_secs());
    let statuses = s.statuses().await;
    let _ = writeln!(
        out,
        "# HELP dda_instance_state Analytics instance state: 1 for the current state.\n# TYPE dda_instance_state gauge"
    );
    for st in &statuses {
        for state in ["STOPPED", "RUNNING", "PAUSED", "FAILED"] {
            let _ = writeln!(
                out,
                "dda_instance_state{{instance=\"{}\",state=\"{state}\"}} {}",
                label(&st.id),
                u8::from(st.state.as_str() == state)
            );
        }
    }
    let counters = [
        ("received", "Observations received by a processor."),
        ("emitted", "Observations emitted by a processor."),
        (
            "dead_letters",
            "Observations a processor sent to the dead letters.",
        ),
        ("batches", "Batches a processor processed."),
    ];
    for (name, help) in counters {
        let _ = writeln!(
            out,
            "# HELP dda_processor_{name}_total {help}\n# TYPE dda_processor_{name}_total counter"
        );
        for st in &statuses {
            for p in &st.processors {
                let v = match name {
                    "received" => p.received,
                    "emitted" => p.emitted,
                    "dead_letters" => p.rejected,
                    _ => p.batches,
                };
                let _ = writeln!(
                    out,
                    "dda_processor_{name}_total{{instance=\"{}\",processor=\"{}\",type=\"{}\"}} {v}",
                    label(&st.id),
                    label(&p.id),
                    label(&p.processor_type)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP dda_processor_events_total Named events a processor counted (enrich: unenriched-missing, unenriched-unreachable, stale).\n# TYPE dda_processor_events_total counter"
    );
    for st in &statuses {
        for p in &st.processors {
            for (event, n) in &p.events {
                let _ = writeln!(
                    out,
                    "dda_processor_events_total{{instance=\"{}\",processor=\"{}\",type=\"{}\",event=\"{}\"}} {n}",
                    label(&st.id),
                    label(&p.id),
                    label(&p.processor_type),
                    label(event)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP dda_processor_batch_seconds Time a processor spends on a batch.\n# TYPE dda_processor_batch_seconds histogram"
    );
    for st in &statuses {
        for p in &st.processors {
            let labels = format!(
                "instance=\"{}\",processor=\"{}\",type=\"{}\"",
                label(&st.id),
                label(&p.id),
                label(&p.processor_type)
            );
            let mut cumulative = 0;
            for (i, count) in p.batch_time_histogram.iter().enumerate() {
                cumulative += count;
                let le = BATCH_BUCKETS_US
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(
                    out,
                    "dda_processor_batch_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "dda_processor_batch_seconds_sum{{{labels}}} {}",
                p.busy_ms / 1e3
            );
            let _ = writeln!(
                out,
                "dda_processor_batch_seconds_count{{{labels}}} {cumulative}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP dda_bus_queued_messages Messages waiting in subscribers' channels of a topic.\n# TYPE dda_bus_queued_messages gauge"
    );
    let mut topics: Vec<(String, usize)> = s
        .engine
        .bus()
        .topics()
        .iter()
        .map(|t| (t.id().to_string(), t.queued()))
        .collect();
    topics.sort();
    for (topic, queued) in topics {
        let _ = writeln!(
            out,
            "dda_bus_queued_messages{{topic=\"{}\"}} {queued}",
            label(&topic)
        );
    }
    let _ = writeln!(
        out,
        "# HELP dda_connector_observations_total Observations read by source connectors and written by sink connectors.\n# TYPE dda_connector_observations_total counter"
    );
    for (direction, list) in [("read", s.engine.read()), ("written", s.engine.written())] {
        for (dsm, n) in list {
            let _ = writeln!(
                out,
                "dda_connector_observations_total{{dsm=\"{}\",direction=\"{direction}\"}} {n}",
                label(&dsm.to_string())
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP dda_connector_undelivered_total Observations a sink connector accepted and could not deliver (they are in the dead letters).\n# TYPE dda_connector_undelivered_total counter"
    );
    for (dsm, n) in s.engine.undelivered() {
        let _ = writeln!(
            out,
            "dda_connector_undelivered_total{{dsm=\"{}\"}} {n}",
            label(&dsm.to_string())
        );
    }
    let queues = s.engine.queues();
    for (name, help, kind, value) in [
        (
            "dda_sink_queue_observations",
            "Observations in a network sink's store-and-forward queue, not yet delivered.",
            "gauge",
            (|q: &engine::spool::QueueStatus| q.observations as f64) as fn(&_) -> f64,
        ),
        (
            "dda_sink_queue_messages",
            "Messages (batches) in a network sink's store-and-forward queue, not yet delivered.",
            "gauge",
            |q| q.messages as f64,
        ),
        (
            "dda_sink_queue_bytes",
            "Bytes of a network sink's store-and-forward queue on disk.",
            "gauge",
            |q| q.bytes as f64,
        ),
        (
            "dda_sink_queue_oldest_age_seconds",
            "How long the oldest observation in a network sink's queue has waited (at most; 0 when empty).",
            "gauge",
            |q| q.oldest_age_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
        ),
        (
            "dda_sink_queue_dropped_total",
            "Observations dropped from a full queue (on_full = drop-oldest); they are in the dead letters.",
            "counter",
            |q| q.dropped as f64,
        ),
        (
            "dda_sink_queue_expired_total",
            "Observations older than a queue's max_age; they are in the dead letters.",
            "counter",
            |q| q.expired as f64,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (dsm, q) in &queues {
            let _ = writeln!(
                out,
                "{name}{{dsm=\"{}\"}} {}",
                label(&dsm.to_string()),
                value(q)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP dda_connector_connected Whether a connector of a running instance reaches its system.\n# TYPE dda_connector_connected gauge"
    );
    let links: std::collections::BTreeMap<_, _> = statuses
        .iter()
        .flat_map(|st| &st.connectors)
        .map(|c| ((c.dsm.clone(), c.role), c.link.connected))
        .collect();
    for ((dsm, role), connected) in links {
        let _ = writeln!(
            out,
            "dda_connector_connected{{dsm=\"{}\",role=\"{role}\"}} {}",
            label(&dsm),
            u8::from(connected)
        );
    }
    let checkpointed: Vec<_> = statuses
        .iter()
        .filter_map(|st| st.checkpoint.as_ref().map(|c| (label(&st.id), c)))
        .collect();
    if !checkpointed.is_empty() {
        type Read = fn(&engine::checkpoint::CheckpointStatus) -> f64;
        let metrics: [(&str, &str, &str, Read); 4] = [
            (
                "dda_checkpoints_total",
                "counter",
                "Checkpoints completed since the instance started.",
                |c| c.completed as f64,
            ),
            (
                "dda_checkpoint_failures_total",
                "counter",
                "Checkpoints that did not complete in time or could not be written.",
                |c| c.failures as f64,
            ),
            (
                "dda_checkpoint_bytes",
                "gauge",
                "Size of the instance's last checkpoint.",
                |c| c.last_bytes as f64,
            ),
            (
                "dda_checkpoint_seconds",
                "gauge",
                "How long the instance's last checkpoint took.",
                |c| c.last_millis as f64 / 1000.0,
            ),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (instance, c) in &checkpointed {
                let _ = writeln!(out, "{name}{{instance=\"{instance}\"}} {}", value(c));
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP dda_dead_letters_total Observations and payloads sent to the dead letters.\n# TYPE dda_dead_letters_total counter"
    );
    let _ = writeln!(
        out,
        "dda_dead_letters_total {}",
        s.engine.dead_letters().count()
    );
    out
}
