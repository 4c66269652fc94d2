//! `store`: persists what it reads, through its sink DSM.
//!
//! A storage processor's sink is a DSM whose data interface is a database or a file
//! (SQLite, File; MongoDB, PostgreSQL and the brokers with their connectors): the sink
//! connector writes every observation the processor passes on (see the connector's
//! documentation for the layout). The processor checks at start that its sink is such a
//! DSM, not an in-process bus topic.

use engine::Observation;
use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use manifests::config::NoConfig;
use manifests::model::Category;

/// The processor type.
pub const KIND: &str = "store";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Store>());

/// The running processor.
#[derive(Debug)]
pub struct Store;

impl ProcessorKind for Store {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Storage;
    const DESCRIPTION: &'static str =
        "Persists every observation it reads into its sink DSM's database or file.";
    type Config = NoConfig;

    /// Checks the sink.
    ///
    /// # Errors
    ///
    /// The sink is an in-process bus topic, or not registered.
    fn new(_config: NoConfig, ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        match &ctx.sink_protocol {
            Some(p) if p.is_internal() => Err(ProcessorError::config(format!(
                "store writes to a database or file, but its sink `{}` is an in-process bus topic; give the sink DSM a storage interface (SQLite, File, MongoDB, PostgreSQL)",
                ctx.sink
            ))),
            None => Err(ProcessorError::config(format!(
                "its sink `{}` is not a registered data source",
                ctx.sink
            ))),
            Some(_) => Ok(Self),
        }
    }
}

impl Processor for Store {
    fn process(
        &mut self,
        input: &[Observation],
        out: &mut Output<'_>,
    ) -> Result<(), ProcessorError> {
        for o in input {
            out.emit(o.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Protocol;
    use serde_json::json;

    #[test]
    fn a_bus_sink_is_refused_and_a_database_sink_accepted() {
        let mut ctx = ProcessorContext::for_test(&json!({}), "results");
        ctx.sink_protocol = Some(Protocol::parse("Bus"));
        assert!(
            matches!(Store::from_context(&ctx), Err(ProcessorError::Config(m)) if m.message.contains("in-process bus"))
        );
        ctx.sink_protocol = Some(Protocol::parse("SQLite"));
        assert!(Store::from_context(&ctx).is_ok());
        ctx.sink_protocol = None;
        assert!(Store::from_context(&ctx).is_err());
    }
}
