//! `map`: computes a new value from each observation with an expression.
//!
//! The expression (parameter `expression`, in [evalexpr] syntax) sees the observation's
//! `value` (a number, text or boolean), `name`, `source`, `dataKind` and `timestamp` (epoch
//! milliseconds), and evalexpr's functions (`math::sqrt`, `math::abs`, `if`, `min`, `max`,
//! `floor`, `round`, `str::...`). Examples: `value * 1000` (kW to W), `value > 38`,
//! `if(value < 0, 0, value)`, `round(value * 10) / 10`. The result replaces the value;
//! `name` renames the observation. An observation the expression fails on (a type error, a
//! missing variable) goes to the dead letters with the evaluator's message.
//!
//! [evalexpr]: https://docs.rs/evalexpr

use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use engine::{Observation, Sym, Value};
use evalexpr::error::EvalexprResultValue;
use evalexpr::{Context, DefaultNumericTypes, EvalexprError, Node};
use manifests::config::{Config, ConfigError};
use manifests::model::Category;
use rustc_hash::FxHashMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

type EvalValue = evalexpr::Value<DefaultNumericTypes>;

/// The processor type.
pub const KIND: &str = "map";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Map>());

/// The parameters of `map`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MapConfig {
    /// The expression computing the new value, e.g. `value * 1000`.
    pub expression: String,
    /// A new name for the observations (default: keep their names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl MapConfig {
    /// The expression, parsed.
    ///
    /// # Errors
    ///
    /// An expression evalexpr cannot parse.
    pub fn compile(&self) -> Result<Node<DefaultNumericTypes>, ConfigError> {
        evalexpr::build_operator_tree::<DefaultNumericTypes>(&self.expression).map_err(|e| {
            ConfigError::at(
                "expression",
                format!("expression {:?}: {e}", self.expression),
            )
        })
    }
}

impl Config for MapConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.compile().map(drop)
    }

    fn example() -> Json {
        json!({"expression": "value * 1000"})
    }
}

/// The running processor.
#[derive(Debug)]
pub struct Map {
    expression: Node<DefaultNumericTypes>,
    name: Option<Sym>,
    /// Text values of names and sources, made once per symbol.
    texts: FxHashMap<Sym, EvalValue>,
}

impl ProcessorKind for Map {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Preprocessor;
    const DESCRIPTION: &'static str = "Computes a new value from each observation with an expression over value, name, source, dataKind and timestamp.";
    type Config = MapConfig;

    fn new(config: MapConfig, _ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        Ok(Self {
            expression: config.compile()?,
            name: config.name.as_deref().map(Sym::new),
            texts: FxHashMap::default(),
        })
    }
}

impl Map {
    fn text(&mut self, s: Sym) {
        self.texts
            .entry(s)
            .or_insert_with(|| EvalValue::String(s.text().to_string()));
    }
}

/// The variables one observation offers the expression.
struct Variables<'a> {
    value: EvalValue,
    name: &'a EvalValue,
    source: &'a EvalValue,
    data_kind: Option<&'a EvalValue>,
    timestamp: EvalValue,
}

impl Context for Variables<'_> {
    type NumericTypes = DefaultNumericTypes;

    fn get_value(&self, identifier: &str) -> Option<&EvalValue> {
        match identifier {
            "value" => Some(&self.value),
            "name" => Some(self.name),
            "source" => Some(self.source),
            "dataKind" => self.data_kind,
            "timestamp" => Some(&self.timestamp),
            _ => None,
        }
    }

    fn call_function(
        &self,
        identifier: &str,
        _argument: &EvalValue,
    ) -> EvalexprResultValue<DefaultNumericTypes> {
        Err(EvalexprError::FunctionIdentifierNotFound(
            identifier.to_owned(),
        ))
    }

    fn are_builtin_functions_disabled(&self) -> bool {
        false
    }

    fn set_builtin_functions_disabled(
        &mut self,
        disabled: bool,
    ) -> evalexpr::EvalexprResult<(), DefaultNumericTypes> {
        if disabled {
            Err(EvalexprError::CustomMessage(
                "built-in functions cannot be disabled".into(),
            ))
        } else {
            Ok(())
        }
    }
}

fn to_eval(v: &Value) -> EvalValue {
    match v {
        Value::Number(n) => EvalValue::Float(*n),
        Value::Bool(b) => EvalValue::Boolean(*b),
        Value::Text(t) => EvalValue::String(t.to_string()),
        Value::Json(j) => EvalValue::String(j.to_string()),
    }
}

fn from_eval(v: EvalValue) -> Result<Value, String> {
    Ok(match v {
        EvalValue::Float(f) if f.is_finite() => Value::Number(f),
        EvalValue::Float(f) => {
            return Err(format!(
                "the expression gave {f}, which is not a finite number"
            ));
        }
        EvalValue::Int(i) => Value::Number(i as f64),
        EvalValue::Boolean(b) => Value::Bool(b),
        EvalValue::String(s) => Value::Text(std::sync::Arc::new(s)),
        EvalValue::Tuple(_) | EvalValue::Empty => {
            return Err("the expression gave no single value".into());
        }
    })
}

impl Processor for Map {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        for o in input {
            self.text(o.name);
            self.text(o.source);
            if let Some(k) = o.data_kind {
                self.text(k);
            }
            let vars = Variables {
                value: to_eval(&o.value),
                name: &self.texts[&o.name],
                source: &self.texts[&o.source],
                data_kind: o.data_kind.map(|k| &self.texts[&k]),
                timestamp: EvalValue::Int(o.timestamp.as_millis()),
            };
            match self
                .expression
                .eval_with_context(&vars)
                .map_err(|e| e.to_string())
                .and_then(from_eval)
            {
                Ok(value) => {
                    let mut mapped = o.clone();
                    mapped.value = value;
                    if let Some(n) = self.name {
                        mapped.name = n;
                    }
                    out.emit(mapped);
                }
                Err(reason) => out.reject(o, format!("map: {reason}")),
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

    fn map(params: serde_json::Value) -> Map {
        Map::from_context(&ProcessorContext::for_test(&params, "out")).unwrap()
    }

    #[test]
    fn computes_values_from_the_observation() {
        let input = numbers(&[1.5, -2.0]);
        let (out, _) = run(
            &mut map(json!({"expression": "value * 1000", "name": "milli"})),
            &input,
        );
        assert_eq!(out[0].value, Value::Number(1500.0));
        assert_eq!(out[1].value, Value::Number(-2000.0));
        assert_eq!(out[0].name, Sym::new("milli"));
        assert_eq!(out[0].timestamp, input[0].timestamp);

        let (out, _) = run(
            &mut map(json!({"expression": "if(value < 0, 0, value)"})),
            &input,
        );
        assert_eq!(out[1].value, Value::Number(0.0));
        let (out, _) = run(&mut map(json!({"expression": "value > 1"})), &input);
        assert_eq!(out[0].value, Value::Bool(true));
        let (out, _) = run(
            &mut map(json!({"expression": "name + \"@\" + source"})),
            &input,
        );
        assert_eq!(out[0].value, Value::Text(std::sync::Arc::new("x@s".into())));
        let (out, _) = run(&mut map(json!({"expression": "timestamp"})), &input);
        assert_eq!(out[1].value, Value::Number(1000.0));
    }

    #[test]
    fn evaluation_errors_go_to_the_dead_letters() {
        let mut input = numbers(&[1.0]);
        input[0].value = Value::Text(std::sync::Arc::new("on".into()));
        let (out, rejected) = run(&mut map(json!({"expression": "value * 2"})), &input);
        assert!(out.is_empty());
        assert!(
            rejected[0].reason.starts_with("map: "),
            "{}",
            rejected[0].reason
        );
        let (out, rejected) = run(
            &mut map(json!({"expression": "missing + 1"})),
            &numbers(&[1.0]),
        );
        assert!(out.is_empty() && rejected.len() == 1);
    }

    #[test]
    fn an_unparsable_expression_is_a_configuration_error() {
        let r = Map::from_context(&ProcessorContext::for_test(
            &json!({"expression": "value * (2"}),
            "out",
        ));
        assert!(matches!(r, Err(ProcessorError::Config(_))));
    }
}
