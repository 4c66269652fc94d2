//! `enrich`: adds fields of the records the CIR links to an observation's source as
//! attributes (a machine's serial number, its last maintenance date).
//!
//! The way from an observation to its records: its source DSM names a CIR object (the
//! DSM's `objectReferenceID`, else its definition's); the links of the object and of its
//! ancestors name records in repositories (PostgreSQL, MongoDB, SQLite, HTTP, the DDA's
//! own); parameter `fields` picks what to add, from the nearest record that has it (a
//! sensor's DSM names its measurement location; the serial number is its asset's). The records are loaded by the host in the background when the
//! instance starts — its sources are wired only once they are — and reloaded every `ttl`:
//! no observation waits for a database, and a change in a linked database is seen within
//! one `ttl`.
//!
//! `fields` is a comma-separated list of `attribute=repository:field` (`repository:` and
//! `attribute=` may be left out: any repository, and the field's own name), e.g.
//! `serialNumber=erp:serial_no, lastMaintenance=cmms:last_maintenance, model`. A field
//! starting with `/` is a JSON pointer into the record (`erp:/specs/model`). An attribute
//! the observation already has is replaced.
//!
//! Policies, per processor:
//! - `onMissing` — the source names no object, the object has no record in the
//!   repository, or the record lacks the field: `pass` (default: the observation goes on
//!   without that attribute, counted as event `missing`) or `dead-letter` (it goes to the
//!   dead letters, with the reason).
//! - `onUnreachable` — the repository could not be reached or timed out at the last
//!   load: `stale` (default: the values of the last load that reached it are used,
//!   counted as `stale`; with none yet, as `pass`), `pass` (the attribute is left out,
//!   counted as `unreachable`) or `dead-letter`.
//!
//! Events are reported in the instance's status (`processors[].events`) and as
//! `dda_processor_events_total` in `/metrics`. The processor follows the DSMs it reads
//! and those upstream of them in its analytics manifest (results keep their inputs'
//! source); an observation naming another source counts as `missing`.

use std::fmt;
use std::sync::Arc;

use engine::linked::{LinkedTable, LinkedView, SourceRecords};
use engine::observation::Attributes;
use engine::processor::{
    Output, Processor, ProcessorContext, ProcessorError, ProcessorKind, Ready,
};
use engine::{Observation, Sym};
use manifests::config::{Config, ConfigError, Duration};
use manifests::model::Category;
use rustc_hash::FxHashMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json, json};

/// The processor type.
pub const KIND: &str = "enrich";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Enrich>());

/// One attribute to add: from which field of which repository's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// The attribute's name.
    pub attribute: String,
    /// The repository id (None: the first linked record that has the field).
    pub repository: Option<String>,
    /// The field: a name, or a JSON pointer (`/a/b`).
    pub field: String,
}

impl FieldSpec {
    /// Reads `attribute=repository:field`.
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (attribute, rest) = match text.split_once('=') {
            Some((a, r)) => (a.trim(), r.trim()),
            None => ("", text),
        };
        let (repository, field) = match rest.split_once(':') {
            Some((r, f)) => (Some(r.trim()), f.trim()),
            None => (None, rest),
        };
        let attribute = if attribute.is_empty() {
            field.rsplit('/').next().unwrap_or(field)
        } else {
            attribute
        };
        if field.is_empty() || attribute.is_empty() || repository.is_some_and(str::is_empty) {
            return Err(format!(
                "`{text}` is not `attribute=repository:field`; write e.g. `serialNumber=erp:serial_no` or `serial_no`"
            ));
        }
        Ok(Self {
            attribute: attribute.to_owned(),
            repository: repository.map(str::to_owned),
            field: field.to_owned(),
        })
    }

    /// The field's value in `record`.
    fn value_in<'a>(&self, record: &'a Json) -> Option<&'a Json> {
        if self.field.starts_with('/') {
            record.pointer(&self.field)
        } else {
            record.get(&self.field)
        }
        .filter(|v| !v.is_null())
    }
}

impl fmt::Display for FieldSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.attribute)?;
        if let Some(r) = &self.repository {
            write!(f, "{r}:")?;
        }
        f.write_str(&self.field)
    }
}

/// `fields`: the attributes to add, as comma-separated `attribute=repository:field` or a
/// list of them. Written back as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields(pub Vec<FieldSpec>);

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let all: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        s.serialize_str(&all.join(","))
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items: Vec<String> = match Json::deserialize(d)? {
            Json::String(s) => s.split(',').map(str::to_owned).collect(),
            Json::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    serde::de::Error::custom(
                        "write the fields as text, e.g. \"serialNumber=erp:serial_no,model\", or a list of such texts",
                    )
                })?,
            _ => {
                return Err(serde::de::Error::custom(
                    "write the fields as text, e.g. \"serialNumber=erp:serial_no,model\"",
                ));
            }
        };
        items
            .iter()
            .filter(|i| !i.trim().is_empty())
            .map(|i| FieldSpec::parse(i))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Fields {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Fields".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string"})
    }

    fn inline_schema() -> bool {
        true
    }
}

/// What happens to an observation whose object, record or field is missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnMissing {
    /// It goes on without the attribute (counted as `missing`).
    #[default]
    Pass,
    /// It goes to the dead letters, with the reason.
    DeadLetter,
}

/// What happens to an observation whose record's repository could not be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnreachable {
    /// The values of the last load that reached it are used (counted as `stale`); with
    /// none, the attribute is left out (counted as `unreachable`).
    #[default]
    Stale,
    /// The attribute is left out (counted as `unreachable`).
    Pass,
    /// It goes to the dead letters, with the reason.
    DeadLetter,
}

const fn default_ttl() -> Duration {
    Duration::from_secs(60)
}

/// The shortest `ttl`: reloading more often would be a database round trip every
/// few observations.
const MIN_TTL: std::time::Duration = std::time::Duration::from_millis(100);

/// The parameters of `enrich`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichConfig {
    /// The attributes to add: comma-separated `attribute=repository:field`, e.g.
    /// `serialNumber=erp:serial_no,lastMaintenance=cmms:last_maintenance` (`attribute=`
    /// and `repository:` may be left out; a field starting with `/` is a JSON pointer).
    pub fields: Fields,
    /// How long loaded records are used before they are fetched again (at least 100 ms).
    #[serde(default = "default_ttl")]
    pub ttl: Duration,
    /// An observation whose object, record or field is missing: `pass` (without the
    /// attribute, counted) or `dead-letter`.
    #[serde(default)]
    pub on_missing: OnMissing,
    /// An observation whose record's repository could not be reached at the last load:
    /// `stale` (the last values that could be fetched), `pass` (without the attribute,
    /// counted) or `dead-letter`.
    #[serde(default)]
    pub on_unreachable: OnUnreachable,
}

impl Config for EnrichConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.fields.0.is_empty() {
            return Err(ConfigError::at(
                "fields",
                "fields: name at least one field to add, e.g. `serialNumber=erp:serial_no`",
            ));
        }
        if let Some(twice) = self.fields.0.iter().enumerate().find(|(n, f)| {
            self.fields.0[..*n]
                .iter()
                .any(|g| g.attribute == f.attribute)
        }) {
            return Err(ConfigError::at(
                "fields",
                format!(
                    "fields: attribute `{}` is given twice; name each attribute once",
                    twice.1.attribute
                ),
            ));
        }
        if self.ttl.get() < MIN_TTL {
            return Err(ConfigError::at(
                "ttl",
                format!(
                    "ttl: {:?} is too short; give at least 100ms (records are reloaded once per ttl)",
                    self.ttl.get()
                ),
            ));
        }
        Ok(())
    }

    fn example() -> Json {
        json!({"fields": "serialNumber=erp:serial_no,model"})
    }
}

/// The events counted.
const MISSING: &str = "missing";
const UNREACHABLE: &str = "unreachable";
const STALE: &str = "stale";

/// What becomes of one source's observations, worked out once per load.
#[derive(Clone, Debug)]
enum Plan {
    /// Add these attributes (none: pass unenriched), counting these events.
    Add {
        attributes: Option<Attributes>,
        missing: bool,
        unreachable: bool,
        stale: bool,
    },
    /// To the dead letters, with this reason.
    Reject(Arc<str>),
}

/// The running processor.
#[derive(Debug)]
pub struct Enrich {
    config: EnrichConfig,
    view: LinkedView,
    /// What to do per source, for the load last seen.
    plans: FxHashMap<Sym, Plan>,
    /// For sources not followed.
    unknown: Plan,
    /// The sources followed, for messages.
    followed: Vec<Sym>,
}

impl ProcessorKind for Enrich {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Preprocessor;
    const DESCRIPTION: &'static str = "Adds fields of the records the CIR links to each observation's source (serial number, maintenance dates) as attributes; records are cached and reloaded every ttl.";
    type Config = EnrichConfig;

    /// Starts following the records of its sources.
    ///
    /// # Errors
    ///
    /// The engine runs without a host that provides linked records.
    fn new(config: EnrichConfig, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        let Some(linked) = &ctx.linked else {
            return Err(ProcessorError::config(
                "enrich needs the CIR's linked records, which this engine was started without (run it with `dda run` or `dda serve`)",
            ));
        };
        let mut view = linked
            .follow(&ctx.upstream, config.ttl.get())
            .map_err(|e| ProcessorError::external(format!("cannot follow linked records: {e}")))?;
        let table = view.borrow_and_update().clone();
        let mut enrich = Self {
            unknown: Plan::Reject("".into()),
            config,
            view,
            plans: FxHashMap::default(),
            followed: ctx.upstream.clone(),
        };
        enrich.unknown = enrich.unknown_plan();
        enrich.replan(&table);
        Ok(enrich)
    }
}

impl Enrich {
    fn unknown_plan(&self) -> Plan {
        match self.config.on_missing {
            OnMissing::Pass => Plan::Add {
                attributes: None,
                missing: true,
                unreachable: false,
                stale: false,
            },
            OnMissing::DeadLetter => {
                let followed: Vec<String> = self.followed.iter().map(ToString::to_string).collect();
                Plan::Reject(
                    format!(
                        "enrich follows the records of [{}] only: this observation's source is none of them",
                        followed.join(", ")
                    )
                    .into(),
                )
            }
        }
    }

    /// Works out every source's plan from a new load.
    fn replan(&mut self, table: &LinkedTable) {
        self.plans.clear();
        for (source, records) in &table.sources {
            let plan = self.plan(*source, records);
            self.plans.insert(*source, plan);
        }
    }

    fn plan(&self, source: Sym, records: &SourceRecords) -> Plan {
        let mut attributes = Map::new();
        let (mut missing, mut unreachable, mut stale) = (None, None, false);
        for spec in &self.config.fields.0 {
            let Some(object) = &records.object else {
                missing.get_or_insert_with(|| {
                    format!("data source `{source}` names no CIR object (give its DSM an objectReferenceID)")
                });
                continue;
            };
            let candidates = records.records.iter().filter(|r| {
                spec.repository
                    .as_ref()
                    .is_none_or(|repo| *repo == r.repository)
            });
            let mut found = None;
            let mut down = None;
            let mut seen = false;
            for r in candidates {
                seen = true;
                if let Some(e) = &r.error {
                    down.get_or_insert_with(|| {
                        format!(
                            "repository `{}` could not be reached for record `{}`: {e}",
                            r.repository, r.local_id
                        )
                    });
                    if self.config.on_unreachable != OnUnreachable::Stale {
                        continue;
                    }
                }
                if let Some(v) = r.record.as_deref().and_then(|rec| spec.value_in(rec)) {
                    found = Some((v, r.error.is_some()));
                    break;
                }
            }
            match found {
                Some((v, was_stale)) => {
                    stale |= was_stale;
                    attributes.insert(spec.attribute.clone(), v.clone());
                }
                None => match down {
                    Some(reason) => {
                        unreachable.get_or_insert(reason);
                    }
                    None => {
                        missing.get_or_insert_with(|| {
                            let place = spec
                                .repository
                                .as_ref()
                                .map_or_else(|| "any repository".to_owned(), |r| format!("repository `{r}`"));
                            if seen {
                                format!("no record of CIR object `{object}` in {place} has field `{}`", spec.field)
                            } else {
                                format!("CIR object `{object}` (of data source `{source}`) has no record in {place}")
                            }
                        });
                    }
                },
            }
        }
        if let Some(reason) = unreachable
            .as_ref()
            .filter(|_| self.config.on_unreachable == OnUnreachable::DeadLetter)
        {
            return Plan::Reject(reason.as_str().into());
        }
        if let Some(reason) = missing
            .as_ref()
            .filter(|_| self.config.on_missing == OnMissing::DeadLetter)
        {
            return Plan::Reject(reason.as_str().into());
        }
        Plan::Add {
            attributes: (!attributes.is_empty()).then(|| Arc::new(attributes)),
            missing: missing.is_some(),
            unreachable: unreachable.is_some(),
            stale,
        }
    }
}

/// Adds `attributes` to `o`'s (replacing those of the same name).
fn with_attributes(mut o: Observation, attributes: &Attributes) -> Observation {
    o.attributes = Some(match o.attributes.take() {
        None => attributes.clone(),
        Some(own) => {
            let mut merged = Arc::unwrap_or_clone(own);
            for (k, v) in attributes.iter() {
                merged.insert(k.clone(), v.clone());
            }
            Arc::new(merged)
        }
    });
    o
}

impl Processor for Enrich {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        if self.view.has_changed().unwrap_or(false) {
            let table = self.view.borrow_and_update().clone();
            self.replan(&table);
        }
        let (mut missing, mut unreachable, mut stale) = (0, 0, 0);
        for o in input {
            match self.plans.get(&o.source).unwrap_or(&self.unknown) {
                Plan::Add {
                    attributes,
                    missing: m,
                    unreachable: u,
                    stale: s,
                } => {
                    missing += u64::from(*m);
                    unreachable += u64::from(*u);
                    stale += u64::from(*s);
                    out.emit(match attributes {
                        Some(a) => with_attributes(o.clone(), a),
                        None => o.clone(),
                    });
                }
                Plan::Reject(reason) => out.reject(o, reason.as_ref()),
            }
        }
        for (event, n) in [
            (MISSING, missing),
            (UNREACHABLE, unreachable),
            (STALE, stale),
        ] {
            if n > 0 {
                out.count(event, n);
            }
        }
        Ok(())
    }

    fn ready(&self) -> Option<Ready> {
        Some(Box::pin(engine::linked::loaded(self.view.clone())))
    }
}

#[cfg(test)]
mod tests;
