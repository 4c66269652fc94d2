//! Templates: one analytics manifest deployed, by a cloud, to every gateway its
//! `edgeGatewaySelector` chooses, with its data sources resolved per gateway.
//!
//! A template is written as the manifest of one gateway — it reads that gateway's data
//! source manifests — and each chosen gateway gets a copy that names it
//! (`edgeGatewayReferenceID`) and reads its own. Each data source reference of the
//! template (a processor's sources, its sink, its side outputs) is resolved on gateway `g`:
//!
//! - a data source manifest that names no gateway (an in-process bus, the uplink), or
//!   names `g`, is kept;
//! - one naming another gateway is replaced by the data source manifest naming `g` with the
//!   same data source definition; when `g` has several, by the one of them with the same
//!   name. None, or several of the same name, and the deployment to `g` fails with the
//!   reason (the other gateways are not held back).
//!
//! The copy keeps the template's id: on every gateway the instance is the template's.

use manifests::model::{AnalyticsManifest, DataSourceManifest};
use manifests::parameters::SIDE_OUTPUT_PARAMETERS;
use manifests::validate::Model;

/// The gateways template `am` chooses, in the order they were registered; none when `am`
/// is not a template.
#[must_use]
pub fn targets(am: &AnalyticsManifest, model: &Model) -> Vec<String> {
    let Some(selector) = &am.edge_gateway_selector else {
        return Vec::new();
    };
    model
        .edge_gateways
        .values()
        .filter(|g| selector.matches(g))
        .map(|g| g.id.clone())
        .collect()
}

/// Template `am`'s copy for gateway `gateway`: it names the gateway and reads the
/// gateway's own data sources.
///
/// # Errors
///
/// A data source reference that cannot be resolved on the gateway, in words.
pub fn copy_for(
    am: &AnalyticsManifest,
    gateway: &str,
    model: &Model,
) -> Result<AnalyticsManifest, String> {
    let mut copy = am.clone();
    copy.edge_gateway_selector = None;
    copy.edge_gateway_reference_id = Some(gateway.to_owned());
    for apm in &mut copy.analytics_processors.apm {
        for source in &mut apm.data_sources.data_source {
            resolve(
                &mut source.data_source_manifest_reference_id,
                gateway,
                model,
            )?;
        }
        resolve(
            &mut apm.data_sink.data_source_manifest_reference_id,
            gateway,
            model,
        )?;
        for p in &mut apm.parameters.parameter {
            if SIDE_OUTPUT_PARAMETERS.contains(&p.key.as_str())
                && let Some(id) = p.value.as_str()
            {
                let mut id = id.to_owned();
                resolve(&mut id, gateway, model)?;
                p.value = serde_json::Value::String(id);
            }
        }
    }
    Ok(copy)
}

/// Replaces data source manifest `id` by its counterpart on `gateway`.
fn resolve(id: &mut String, gateway: &str, model: &Model) -> Result<(), String> {
    let Some(dsm) = model.data_source_manifests.get(id.as_str()) else {
        return Ok(()); // Validated when the template was stored: not a manifest of the model.
    };
    match dsm.edge_gateway_reference_id.as_deref() {
        None => return Ok(()),
        Some(g) if g == gateway => return Ok(()),
        Some(_) => {}
    }
    let alike: Vec<&DataSourceManifest> = model
        .data_source_manifests
        .values()
        .filter(|d| {
            d.edge_gateway_reference_id.as_deref() == Some(gateway)
                && d.data_source_definition_reference_id == dsm.data_source_definition_reference_id
        })
        .collect();
    let chosen: Vec<&DataSourceManifest> = match alike.as_slice() {
        [one] => vec![one],
        _ => alike
            .iter()
            .copied()
            .filter(|d| d.name.is_some() && d.name == dsm.name)
            .collect(),
    };
    match chosen.as_slice() {
        [one] => {
            id.clone_from(&one.id);
            Ok(())
        }
        [] if alike.is_empty() => Err(format!(
            "data source `{id}`: the gateway has no data source manifest of definition `{}` (one naming it in edgeGatewayReferenceID)",
            dsm.data_source_definition_reference_id
        )),
        _ => Err(format!(
            "data source `{id}`: the gateway has {} data source manifests of definition `{}` ({}) and {} named {}: name the one to read like `{id}`",
            alike.len(),
            dsm.data_source_definition_reference_id,
            alike
                .iter()
                .map(|d| format!("`{}`", d.id))
                .collect::<Vec<_>>()
                .join(", "),
            if chosen.is_empty() { "none" } else { "several" },
            dsm.name.as_deref().map_or_else(
                || "like it (it has no name)".to_owned(),
                |n| format!("`{n}`")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manifests::model::{EdgeGateway, EdgeGatewaySelector};
    use serde_json::json;

    fn dsm(id: &str, name: &str, dsd: &str, gateway: Option<&str>) -> DataSourceManifest {
        DataSourceManifest {
            id: id.into(),
            name: Some(name.into()),
            data_source_definition_reference_id: dsd.into(),
            edge_gateway_reference_id: gateway.map(str::to_owned),
            ..DataSourceManifest::default()
        }
    }

    fn gateway(id: &str, namespace: &str, labels: &[&str]) -> EdgeGateway {
        EdgeGateway {
            id: id.into(),
            namespace: Some(namespace.into()),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            ..EdgeGateway::default()
        }
    }

    fn model() -> Model {
        let mut m = Model::default();
        for g in [
            gateway("gw-1", "plant-a", &["line=1", "kind=press"]),
            gateway("gw-2", "plant-a", &["line=2", "kind=press"]),
            gateway("gw-3", "plant-b", &["line=1"]),
        ] {
            m.edge_gateways.insert(g.id.clone(), g);
        }
        for d in [
            dsm("t-1", "temperature", "dsd-temp", Some("gw-1")),
            dsm("t-2", "temperature", "dsd-temp", Some("gw-2")),
            dsm("front-3", "front", "dsd-temp", Some("gw-3")),
            dsm("rear-3", "rear", "dsd-temp", Some("gw-3")),
            dsm("late-1", "late", "dsd-bus", Some("gw-1")),
            dsm("late-2", "late", "dsd-bus", Some("gw-2")),
            dsm("bus", "averages", "dsd-bus", None),
        ] {
            m.data_source_manifests.insert(d.id.clone(), d);
        }
        m
    }

    fn template(selector: EdgeGatewaySelector) -> AnalyticsManifest {
        serde_json::from_value(json!({
            "id": "avg", "name": "averages",
            "analyticsProcessors": {"apm": [{
                "id": "p", "analyticsProcessorDefinitionReferenceID": "apd-average",
                "parameters": {"parameter": [{"key": "lateOutput", "value": "late-1"}]},
                "dataSources": {"dataSource": [{"dataSourceManifestReferenceID": "t-1"}]},
                "dataSink": {"dataSourceManifestReferenceID": "bus"}}]},
            "edgeGatewaySelector": serde_json::to_value(selector).unwrap()
        }))
        .unwrap()
    }

    fn selector(namespace: Option<&str>, labels: &[&str]) -> EdgeGatewaySelector {
        EdgeGatewaySelector {
            namespace: namespace.map(str::to_owned),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    #[test]
    fn a_selector_chooses_by_namespace_and_every_label() {
        let m = model();
        let chosen = |s| targets(&template(s), &m);
        assert_eq!(chosen(selector(Some("plant-a"), &[])), ["gw-1", "gw-2"]);
        assert_eq!(chosen(selector(None, &["line=1"])), ["gw-1", "gw-3"]);
        assert_eq!(chosen(selector(Some("plant-a"), &["line=1"])), ["gw-1"]);
        assert_eq!(chosen(selector(None, &["kind"])), ["gw-1", "gw-2"]);
        assert_eq!(
            chosen(selector(None, &["kind=lathe"])),
            Vec::<String>::new()
        );
        assert_eq!(chosen(selector(None, &[])), ["gw-1", "gw-2", "gw-3"]);
    }

    #[test]
    fn each_copy_names_its_gateway_and_reads_its_own_sources() {
        let m = model();
        let t = template(selector(Some("plant-a"), &[]));
        let c = copy_for(&t, "gw-2", &m).unwrap();
        assert_eq!(c.id, "avg");
        assert_eq!(c.edge_gateway_reference_id.as_deref(), Some("gw-2"));
        assert!(c.edge_gateway_selector.is_none());
        let apm = &c.apms()[0];
        assert_eq!(apm.source_ids().collect::<Vec<_>>(), ["t-2"]);
        assert_eq!(apm.sink_id(), "bus", "a source naming no gateway is kept");
        assert_eq!(apm.parameters.parameter[0].value, json!("late-2"));
        // The template's own gateway: unchanged but for the gateway named.
        let same = copy_for(&t, "gw-1", &m).unwrap();
        assert_eq!(same.apms(), t.apms());
    }

    #[test]
    fn several_alike_are_told_apart_by_name_and_none_is_a_reason() {
        let mut m = model();
        let t = template(selector(None, &[]));
        let e = copy_for(&t, "gw-3", &m).unwrap_err();
        assert!(
            e.contains("`front-3`, `rear-3`") && e.contains("`temperature`"),
            "{e}"
        );
        m.data_source_manifests.get_mut("rear-3").unwrap().name = Some("temperature".into());
        let mut t = template(selector(None, &[]));
        t.analytics_processors.apm[0].parameters.parameter.clear();
        let c = copy_for(&t, "gw-3", &m).unwrap();
        assert_eq!(c.apms()[0].source_ids().collect::<Vec<_>>(), ["rear-3"]);
        m.data_source_manifests.shift_remove("t-2");
        let e = copy_for(&t, "gw-2", &m).unwrap_err();
        assert!(
            e.contains("no data source manifest of definition `dsd-temp`"),
            "{e}"
        );
    }
}
