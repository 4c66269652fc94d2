//! `filter`: keeps the observations whose value compares to a threshold.
//!
//! The original FAR-EDGE filter's parameters, so an original filter manifest runs
//! unchanged: `operator` (`EQ`, `NE`, `GT`, `GE`, `LT`, `LE`) and `threshold`. An
//! observation whose value is not a number cannot be compared: it goes to the dead letters.

use engine::Observation;
use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use manifests::config::Config;
use manifests::model::Category;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

pub use crate::operator::Operator;

/// The processor type.
pub const KIND: &str = "filter";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Filter>());

/// The parameters of `filter`, as the original FAR-EDGE filter's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterConfig {
    /// The operator in the condition: EQ, NE, GT, GE, LT or LE.
    pub operator: Operator,
    /// The threshold in the condition.
    pub threshold: f64,
}

impl Config for FilterConfig {
    fn example() -> Json {
        json!({"operator": "GE", "threshold": 38})
    }
}

/// The running processor.
#[derive(Debug)]
pub struct Filter {
    operator: Operator,
    threshold: f64,
}

impl ProcessorKind for Filter {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Preprocessor;
    const DESCRIPTION: &'static str =
        "Keeps the observations whose value compares to a threshold (value OPERATOR threshold).";
    type Config = FilterConfig;

    fn new(config: FilterConfig, _ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        Ok(Self {
            operator: config.operator,
            threshold: config.threshold,
        })
    }
}

impl Processor for Filter {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        for o in input {
            match o.value.as_f64() {
                Some(v) if self.operator.holds(v, self.threshold) => out.emit(o.clone()),
                Some(_) => {}
                None => out.reject(o, "filter compares numbers, and this value is not a number"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{numbers, run};
    use serde_json::json;

    fn filter(op: &str, threshold: f64) -> Filter {
        Filter::from_context(&ProcessorContext::for_test(
            &json!({"operator": op, "threshold": threshold}),
            "out",
        ))
        .unwrap()
    }

    #[test]
    fn every_operator_keeps_what_it_should() {
        let input = numbers(&[37.0, 38.0, 39.0]);
        let kept = |op: &str| -> Vec<f64> {
            run(&mut filter(op, 38.0), &input)
                .0
                .iter()
                .map(|o| o.value.as_f64().unwrap())
                .collect()
        };
        assert_eq!(kept("EQ"), [38.0]);
        assert_eq!(kept("NE"), [37.0, 39.0]);
        assert_eq!(kept("GT"), [39.0]);
        assert_eq!(kept("GE"), [38.0, 39.0]);
        assert_eq!(kept("LT"), [37.0]);
        assert_eq!(kept("LE"), [37.0, 38.0]);
    }

    #[test]
    fn the_original_manifests_string_threshold_works() {
        // The original engine stored "38" for a float parameter.
        let f = Filter::from_context(&ProcessorContext::for_test(
            &json!({"operator": "GE", "threshold": "38"}),
            "out",
        ));
        assert!(f.is_ok());
    }

    #[test]
    fn text_values_go_to_the_dead_letters() {
        let mut input = numbers(&[40.0]);
        input[0].value = engine::Value::Text(std::sync::Arc::new("high".into()));
        let (emitted, rejected) = run(&mut filter("GE", 38.0), &input);
        assert!(emitted.is_empty());
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].reason.contains("not a number"));
    }

    #[test]
    fn bad_parameters_are_configuration_errors() {
        for params in [
            json!({"operator": "ge", "threshold": 1}),
            json!({"operator": "GE"}),
            json!({"threshold": 1}),
        ] {
            assert!(
                matches!(
                    Filter::from_context(&ProcessorContext::for_test(&params, "out")),
                    Err(ProcessorError::Config(_))
                ),
                "{params}"
            );
        }
    }
}
