//! `filter`: keeps the observations whose value compares to a threshold.
//!
//! The original FAR-EDGE filter's parameters, so an original filter manifest runs
//! unchanged: `operator` (`EQ`, `NE`, `GT`, `GE`, `LT`, `LE`) and `threshold`. An
//! observation whose value is not a number cannot be compared: it goes to the dead letters.

use engine::Observation;
use engine::processor::{
    Output, ParameterDefinitionExt, Processor, ProcessorContext, ProcessorError,
    ProcessorRegistration, param,
};
use manifests::model::{Category, DataType, ParameterDefinition};

/// The processor type.
pub const KIND: &str = "filter";

/// The comparison operators.
pub const OPERATORS: &[&str] = &["EQ", "NE", "GT", "GE", "LT", "LE"];

engine::inventory::submit! {
    ProcessorRegistration {
        kind: KIND,
        category: Category::Preprocessor,
        description: "Keeps the observations whose value compares to a threshold (value OPERATOR threshold).",
        parameters,
        min_sources: 1,
        factory: |ctx: &ProcessorContext| Ok(Box::new(Filter::new(ctx)?)),
    }
}

fn parameters() -> Vec<ParameterDefinition> {
    vec![
        param(
            "operator",
            DataType::String,
            "The operator in the condition: EQ, NE, GT, GE, LT or LE.",
        )
        .required()
        .one_of(OPERATORS),
        param(
            "threshold",
            DataType::Number,
            "The threshold in the condition.",
        )
        .required(),
    ]
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl Operator {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "EQ" => Self::Eq,
            "NE" => Self::Ne,
            "GT" => Self::Gt,
            "GE" => Self::Ge,
            "LT" => Self::Lt,
            "LE" => Self::Le,
            _ => return None,
        })
    }

    /// Whether `value OPERATOR threshold` holds.
    #[must_use]
    #[allow(
        clippy::float_cmp,
        reason = "EQ and NE are exact comparisons, as in the original"
    )]
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Eq => value == threshold,
            Self::Ne => value != threshold,
            Self::Gt => value > threshold,
            Self::Ge => value >= threshold,
            Self::Lt => value < threshold,
            Self::Le => value <= threshold,
        }
    }
}

/// The running processor.
#[derive(Debug)]
pub struct Filter {
    operator: Operator,
    threshold: f64,
}

impl Filter {
    /// A filter from its parameters.
    ///
    /// # Errors
    ///
    /// A missing or unknown operator, or a missing threshold.
    pub fn new(ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        let op = ctx.required_str("operator")?;
        let operator = Operator::parse(&op).ok_or_else(|| {
            ProcessorError::Config(format!(
                "operator {op:?}: use one of {}",
                OPERATORS.join(", ")
            ))
        })?;
        let threshold = ctx.parameters.get_f64("threshold").ok_or_else(|| {
            ProcessorError::Config("parameter `threshold` (a number) is required".into())
        })?;
        Ok(Self {
            operator,
            threshold,
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
        Filter::new(&ProcessorContext::for_test(
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
        let f = Filter::new(&ProcessorContext::for_test(
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
                    Filter::new(&ProcessorContext::for_test(&params, "out")),
                    Err(ProcessorError::Config(_))
                ),
                "{params}"
            );
        }
    }
}
