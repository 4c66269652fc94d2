use std::collections::HashMap;

use engine::linked::{LinkedRecord, LinkedRecords, LinkedUpdates, linked_view};
use engine::processor::Rejected;
use engine::{Output, Timestamp};

use super::*;

fn record(
    repository: &str,
    local_id: &str,
    record: Option<Json>,
    error: Option<&str>,
) -> LinkedRecord {
    LinkedRecord {
        repository: repository.into(),
        local_id: local_id.into(),
        record: record.map(Arc::new),
        error: error.map(str::to_owned),
    }
}

/// Spindle `s` is object `o-1`, with an ERP row and a maintenance record; `bare` names no
/// object; `down` is object `o-2`, whose ERP could not be reached at the last load (its
/// row is from an earlier one) and whose CMMS never answered.
fn table() -> LinkedTable {
    let mut sources = HashMap::new();
    sources.insert(
        Sym::new("s"),
        SourceRecords {
            object: Some("o-1".into()),
            records: vec![
                record(
                    "erp",
                    "A-100",
                    Some(json!({"serial_no": "SN-4711", "model": "HX-5", "specs": {"rpm": 24000}})),
                    None,
                ),
                record(
                    "cmms",
                    "17",
                    Some(json!({"last_maintenance": "2026-10-01", "interval_days": 90})),
                    None,
                ),
            ],
        },
    );
    sources.insert(Sym::new("bare"), SourceRecords::default());
    sources.insert(
        Sym::new("down"),
        SourceRecords {
            object: Some("o-2".into()),
            records: vec![
                record(
                    "erp",
                    "A-200",
                    Some(json!({"serial_no": "SN-0815", "model": "HX-3"})),
                    Some("UNREACHABLE: connection refused"),
                ),
                record("cmms", "18", None, Some("TIMEOUT: no answer within 2s")),
            ],
        },
    );
    LinkedTable {
        loaded: true,
        sources,
    }
}

/// Follows a table the test changes.
#[derive(Debug)]
struct Live(LinkedUpdates);

impl LinkedRecords for Live {
    fn follow(&self, _sources: &[Sym], _ttl: std::time::Duration) -> Result<LinkedView, String> {
        Ok(self.0.subscribe())
    }
}

fn enrich_with(params: &Json, linked: Arc<dyn LinkedRecords>) -> Enrich {
    let mut ctx = ProcessorContext::for_test(params, "enriched");
    ctx.linked = Some(linked);
    Enrich::from_context(&ctx).expect("creates")
}

fn enrich(params: &Json) -> Enrich {
    enrich_with(params, Arc::new(engine::linked::Fixed(Arc::new(table()))))
}

fn obs(source: &str, value: f64) -> Observation {
    Observation::number(
        Sym::new(source),
        Sym::new("temperature"),
        Timestamp::from_millis(1000),
        value,
    )
}

type Counts = Vec<(&'static str, u64)>;

fn run(p: &mut Enrich, input: &[Observation]) -> (Vec<Observation>, Vec<Rejected>, Counts) {
    let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
    let mut out = Output::new(&mut emitted, &mut rejected, Sym::new("enriched"));
    p.process(input, &mut out).expect("processes");
    let mut counts = out.take_counts();
    counts.sort_unstable();
    (emitted, rejected, counts)
}

fn attributes(o: &Observation) -> Json {
    o.attributes
        .as_ref()
        .map_or(Json::Null, |a| Json::Object((**a).clone()))
}

const FIELDS: &str =
    "serialNumber=erp:serial_no, model, lastMaintenance=cmms:last_maintenance, rpm=erp:/specs/rpm";

#[test]
fn observations_get_exactly_the_chosen_fields_of_their_records() {
    let mut p = enrich(&json!({"fields": FIELDS}));
    let mut with_own = obs("s", 2.0);
    with_own.attributes = Some(Arc::new(
        json!({"unit": "°C", "model": "overwritten"})
            .as_object()
            .unwrap()
            .clone(),
    ));
    let (out, rejected, counts) = run(&mut p, &[obs("s", 1.0), with_own]);
    assert!(
        rejected.is_empty() && counts.is_empty(),
        "{rejected:?} {counts:?}"
    );
    assert_eq!(
        attributes(&out[0]),
        json!({"serialNumber": "SN-4711", "model": "HX-5", "lastMaintenance": "2026-10-01", "rpm": 24000})
    );
    assert_eq!(
        attributes(&out[1]),
        json!({"unit": "°C", "serialNumber": "SN-4711", "model": "HX-5", "lastMaintenance": "2026-10-01", "rpm": 24000})
    );
    // Nothing else about them changes.
    assert_eq!(
        (
            out[0].value.clone(),
            out[0].name,
            out[0].source,
            out[0].timestamp
        ),
        (
            obs("s", 1.0).value,
            Sym::new("temperature"),
            Sym::new("s"),
            Timestamp::from_millis(1000)
        )
    );
}

#[test]
fn a_missing_object_record_or_field_passes_unenriched_and_is_counted_or_is_dead_lettered() {
    let mut p = enrich(&json!({"fields": "serialNumber=erp:serial_no,colour=erp:colour"}));
    let (out, rejected, counts) = run(
        &mut p,
        &[obs("s", 1.0), obs("bare", 2.0), obs("elsewhere", 3.0)],
    );
    assert!(rejected.is_empty());
    assert_eq!(attributes(&out[0]), json!({"serialNumber": "SN-4711"}));
    assert_eq!(attributes(&out[1]), Json::Null);
    assert_eq!(attributes(&out[2]), Json::Null);
    assert_eq!(counts, vec![(MISSING, 3)]);

    let mut p = enrich(&json!({"fields": "colour=erp:colour", "onMissing": "dead-letter"}));
    let (out, rejected, _) = run(
        &mut p,
        &[obs("s", 1.0), obs("bare", 2.0), obs("elsewhere", 3.0)],
    );
    assert!(out.is_empty());
    let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "no record of CIR object `o-1` in repository `erp` has field `colour`",
            "data source `bare` names no CIR object (give its DSM an objectReferenceID)",
            "enrich follows the records of [test-source] only: this observation's source is none of them",
        ]
    );
    let mut p = enrich(&json!({"fields": "x=qms:defects", "onMissing": "dead-letter"}));
    let (_, rejected, _) = run(&mut p, &[obs("s", 1.0)]);
    assert_eq!(
        rejected[0].reason,
        "CIR object `o-1` (of data source `s`) has no record in repository `qms`"
    );
}

#[test]
fn an_unreachable_repository_follows_the_policy() {
    let fields = "serialNumber=erp:serial_no,lastMaintenance=cmms:last_maintenance";
    // stale (default): the last row fetched is used; what never came is left out.
    let mut p = enrich(&json!({"fields": fields}));
    let (out, rejected, counts) = run(&mut p, &[obs("down", 1.0)]);
    assert!(rejected.is_empty());
    assert_eq!(attributes(&out[0]), json!({"serialNumber": "SN-0815"}));
    assert_eq!(counts, vec![(STALE, 1), (UNREACHABLE, 1)]);
    // pass: nothing from a repository that did not answer.
    let mut p = enrich(&json!({"fields": fields, "onUnreachable": "pass"}));
    let (out, _, counts) = run(&mut p, &[obs("down", 1.0), obs("s", 2.0)]);
    assert_eq!(attributes(&out[0]), Json::Null);
    assert_eq!(
        attributes(&out[1]),
        json!({"serialNumber": "SN-4711", "lastMaintenance": "2026-10-01"})
    );
    assert_eq!(counts, vec![(UNREACHABLE, 1)]);
    // dead-letter.
    let mut p = enrich(&json!({"fields": fields, "onUnreachable": "dead-letter"}));
    let (out, rejected, _) = run(&mut p, &[obs("down", 1.0), obs("s", 2.0)]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        rejected[0].reason,
        "repository `erp` could not be reached for record `A-200`: UNREACHABLE: connection refused"
    );
}

#[test]
fn a_new_load_is_used_from_the_next_batch_on() {
    let (tx, _) = linked_view();
    tx.send_replace(Arc::new(table()));
    let linked = Arc::new(Live(tx));
    let mut p = enrich_with(
        &json!({"fields": "lastMaintenance=cmms:last_maintenance"}),
        linked.clone(),
    );
    let (out, _, _) = run(&mut p, &[obs("s", 1.0)]);
    assert_eq!(
        attributes(&out[0]),
        json!({"lastMaintenance": "2026-10-01"})
    );
    let mut next = table();
    next.sources.get_mut(&Sym::new("s")).unwrap().records[1].record =
        Some(Arc::new(json!({"last_maintenance": "2026-12-02"})));
    linked.0.send_replace(Arc::new(next));
    let (out, _, _) = run(&mut p, &[obs("s", 1.0)]);
    assert_eq!(
        attributes(&out[0]),
        json!({"lastMaintenance": "2026-12-02"})
    );
}

#[test]
fn it_is_ready_once_the_first_load_is_done() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, _) = linked_view();
    let linked = Arc::new(Live(tx));
    let p = enrich_with(&json!({"fields": "model"}), linked.clone());
    let ready = p.ready().expect("waits for the load");
    rt.block_on(async {
        let mut ready = ready;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut ready)
                .await
                .is_err(),
            "not ready before the load"
        );
        linked.0.send_replace(Arc::new(table()));
        tokio::time::timeout(std::time::Duration::from_secs(5), ready)
            .await
            .expect("ready after it");
    });
}

#[test]
fn unusable_parameters_are_refused_with_what_to_write() {
    let err = |params: Json| {
        let mut ctx = ProcessorContext::for_test(&params, "enriched");
        ctx.linked = Some(Arc::new(engine::linked::Fixed::default()));
        Enrich::from_context(&ctx).unwrap_err().to_string()
    };
    assert!(err(json!({"fields": ""})).contains("name at least one field"));
    assert!(err(json!({"fields": "a=erp:x,a=cmms:y"})).contains("attribute `a` is given twice"));
    assert!(err(json!({"fields": "a=:x"})).contains("is not `attribute=repository:field`"));
    assert!(err(json!({"fields": "x", "ttl": "10ms"})).contains("at least 100ms"));
    assert!(err(json!({"fields": "x", "onMissing": "drop"})).contains("onMissing"));
    let ctx = ProcessorContext::for_test(&json!({"fields": "x"}), "enriched");
    assert!(
        Enrich::from_context(&ctx)
            .unwrap_err()
            .to_string()
            .contains("run it with `dda run` or `dda serve`")
    );
}
