//! From an analytics manifest to an executable plan: a petgraph graph of processors joined
//! through the DSMs they write and read, with the order to start and stop them.

use manifests::model::AnalyticsManifest;
use manifests::{Model, ResolvedParameters};
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::processor::{ProcessorRegistration, SIDE_OUTPUT_PARAMETERS, registration};
use crate::symbol::Sym;

/// One processor of a plan.
#[derive(Clone, Debug)]
pub struct ProcessorPlan {
    /// The APM id.
    pub id: String,
    /// The APM name.
    pub name: Option<String>,
    /// Its processor kind.
    pub registration: &'static ProcessorRegistration,
    /// Its parameters, defaults applied.
    pub parameters: ResolvedParameters,
    /// The DSMs it reads.
    pub sources: Vec<Sym>,
    /// The DSM it writes.
    pub sink: Sym,
    /// The DSMs it writes besides its sink (see [`SIDE_OUTPUT_PARAMETERS`]).
    pub side_outputs: Vec<Sym>,
}

impl ProcessorPlan {
    /// Every DSM it writes: its sink, then its side outputs.
    pub fn writes(&self) -> impl Iterator<Item = Sym> + '_ {
        std::iter::once(self.sink).chain(self.side_outputs.iter().copied())
    }
}

/// An analytics manifest made executable.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The instance id (the AM's id).
    pub id: String,
    /// The AM's name.
    pub name: Option<String>,
    /// The gateway it belongs to (edge scope), if any.
    pub edge_gateway: Option<String>,
    /// The processors, in manifest order.
    pub processors: Vec<ProcessorPlan>,
    /// Processor indices in waves: every processor's upstream (in this plan) is in an
    /// earlier wave. Stop drains wave by wave; start goes the other way (sinks first).
    pub waves: Vec<Vec<usize>>,
    /// The manifest it was made from.
    pub manifest: AnalyticsManifest,
}

/// Why an analytics manifest cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// An APM names a definition the model does not have.
    #[error("processor {apm}: no analytics processor definition `{apd}`")]
    UnknownDefinition {
        /// The APM.
        apm: String,
        /// The definition id.
        apd: String,
    },
    /// A definition names a processor type the engine does not have.
    #[error(
        "processor {apm}: this engine has no processor type `{processor_type}` (see `dda processors`)"
    )]
    UnknownType {
        /// The APM.
        apm: String,
        /// The type.
        processor_type: String,
    },
    /// The processors form a cycle.
    #[error("the processors of {0} form a cycle")]
    Cycle(String),
}

impl Plan {
    /// Plans analytics manifest `am` of a validated model.
    ///
    /// # Errors
    ///
    /// An unknown definition or processor type, or a cycle (validation reports these
    /// first; planning checks again because the API may be given an unvalidated model).
    pub fn new(am: &AnalyticsManifest, model: &Model) -> Result<Self, PlanError> {
        let mut processors = Vec::new();
        for apm in am.apms() {
            let apd = model
                .definition_of(apm)
                .ok_or_else(|| PlanError::UnknownDefinition {
                    apm: apm.id.clone(),
                    apd: apm.analytics_processor_definition_reference_id.clone(),
                })?;
            let registration =
                registration(&apd.processor_type).ok_or_else(|| PlanError::UnknownType {
                    apm: apm.id.clone(),
                    processor_type: apd.processor_type.clone(),
                })?;
            let parameters = model
                .parameters_of(Some(&am.id), &apm.id)
                .cloned()
                .unwrap_or_default();
            let side_outputs = SIDE_OUTPUT_PARAMETERS
                .iter()
                .filter_map(|name| parameters.get_str(name))
                .map(|dsm| Sym::new(&dsm))
                .collect();
            processors.push(ProcessorPlan {
                id: apm.id.clone(),
                name: apm.name.clone(),
                registration,
                parameters,
                sources: apm.source_ids().map(Sym::new).collect(),
                sink: Sym::new(apm.sink_id()),
                side_outputs,
            });
        }
        let waves = waves(&processors).ok_or_else(|| PlanError::Cycle(am.id.clone()))?;
        Ok(Self {
            id: am.id.clone(),
            name: am.name.clone(),
            edge_gateway: am.edge_gateway_reference_id.clone(),
            processors,
            waves,
            manifest: am.clone(),
        })
    }

    /// Every DSM the plan reads that none of its own processors writes: its inputs.
    #[must_use]
    pub fn inputs(&self) -> Vec<Sym> {
        let mut out = Vec::new();
        for p in &self.processors {
            for s in &p.sources {
                if !self.processors.iter().any(|q| q.writes().any(|w| w == *s)) && !out.contains(s)
                {
                    out.push(*s);
                }
            }
        }
        out
    }

    /// The DSMs processor `n` reads, and every DSM upstream of them in this plan: the
    /// sources its observations may name (results keep their inputs' source). Its own
    /// sources first.
    #[must_use]
    pub fn upstream(&self, n: usize) -> Vec<Sym> {
        let mut out: Vec<Sym> = Vec::new();
        let mut next: Vec<Sym> = self
            .processors
            .get(n)
            .map(|p| p.sources.clone())
            .unwrap_or_default();
        while let Some(s) = next.pop() {
            if out.contains(&s) {
                continue;
            }
            out.push(s);
            for q in &self.processors {
                if q.writes().any(|w| w == s) {
                    next.extend(q.sources.iter().rev().copied());
                }
            }
        }
        out
    }

    /// Every DSM the plan writes.
    #[must_use]
    pub fn outputs(&self) -> Vec<Sym> {
        let mut out: Vec<Sym> = Vec::new();
        for w in self.processors.iter().flat_map(ProcessorPlan::writes) {
            if !out.contains(&w) {
                out.push(w);
            }
        }
        out
    }
}

/// Groups processors into waves of the processor graph (None on a cycle).
fn waves(processors: &[ProcessorPlan]) -> Option<Vec<Vec<usize>>> {
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..processors.len()).map(|i| graph.add_node(i)).collect();
    for (a, producer) in processors.iter().enumerate() {
        for (b, consumer) in processors.iter().enumerate() {
            if a != b && producer.writes().any(|w| consumer.sources.contains(&w)) {
                graph.add_edge(nodes[a], nodes[b], ());
            }
        }
    }
    if processors
        .iter()
        .any(|p| p.writes().any(|w| p.sources.contains(&w)))
    {
        return None;
    }
    let order = toposort(&graph, None).ok()?;
    let mut level = vec![0usize; processors.len()];
    for n in order {
        let here = level[graph[n]];
        for next in graph.neighbors(n) {
            level[graph[next]] = level[graph[next]].max(here + 1);
        }
    }
    let depth = level.iter().copied().max().map_or(0, |m| m + 1);
    let mut waves = vec![Vec::new(); depth];
    for (i, l) in level.into_iter().enumerate() {
        waves[l].push(i);
    }
    Some(waves)
}
