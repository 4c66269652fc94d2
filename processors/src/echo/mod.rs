//! `echo`: passes every observation through unchanged (the original FAR-EDGE echo processor).

use engine::Observation;
use engine::processor::{Output, Processor, ProcessorContext, ProcessorError, ProcessorKind};
use manifests::config::NoConfig;
use manifests::model::Category;

/// The processor type.
pub const KIND: &str = "echo";

engine::inventory::submit!(engine::processor::ProcessorRegistration::of::<Echo>());

/// The running processor.
#[derive(Debug)]
pub struct Echo;

impl ProcessorKind for Echo {
    const KIND: &'static str = KIND;
    const CATEGORY: Category = Category::Preprocessor;
    const DESCRIPTION: &'static str = "Passes every observation through unchanged.";
    type Config = NoConfig;

    fn new(_config: NoConfig, _ctx: &ProcessorContext) -> Result<Self, ProcessorError> {
        Ok(Self)
    }
}

impl Processor for Echo {
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
    use engine::{Sym, Timestamp};

    #[test]
    fn echoes_everything_in_order() {
        let input: Vec<Observation> = (0..5)
            .map(|i| {
                Observation::number(
                    Sym::new("s"),
                    Sym::new("x"),
                    Timestamp::from_millis(i),
                    i as f64,
                )
            })
            .collect();
        let (mut emitted, mut rejected) = (Vec::new(), Vec::new());
        let mut out = Output::new(&mut emitted, &mut rejected, Sym::new("sink"));
        Echo.process(&input, &mut out).unwrap();
        assert_eq!(emitted, input);
        assert!(rejected.is_empty());
    }
}
