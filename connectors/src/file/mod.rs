//! `File`: JSON-lines files.
//!
//! Sink: appends every observation written to the DSM to `path` (default
//! `dda-output/<dsm id>.jsonl`) as one LiveDataSet per line (the paper's Table 7 shape),
//! flushed after each batch. Source: reads a JSON-lines or CSV file (`path`, `format`) once,
//! as fast as its readers take it.

use std::io::Write;
use std::sync::Arc;

use engine::codec::encode_live_data_set;
use engine::connector::{
    Connector, ConnectorError, ConnectorRegistration, Sink, SinkContext, Source, SourceContext,
};
use engine::registry::DataSource;
use manifests::Config;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

engine::inventory::submit!(ConnectorRegistration::source_and_sink::<File>());

/// How a file's lines are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// JSON lines: LiveDataSets or flat observations, one per line.
    #[serde(alias = "json", alias = "JSONL", alias = "JSON")]
    Jsonl,
    /// CSV with a header row.
    #[serde(alias = "CSV")]
    Csv,
}

/// The data source parameters of a file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// The file: written (appended) by a sink, default `dda-output/<dsm id>.jsonl`; read
    /// once by a source (required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "path"))]
    pub path: Option<String>,
    /// How a source reads the file: `jsonl` or `csv` (default: by its extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
}

impl Config for FileConfig {}

/// A data source kept in a file.
#[derive(Debug)]
pub struct File {
    config: FileConfig,
    path: String,
}

impl Connector for File {
    const PROTOCOL: &'static str = "File";
    const ALIASES: &'static [&'static str] = &["jsonl", "csv"];
    const DESCRIPTION: &'static str =
        "JSON-lines files: LiveDataSets appended one per line; JSON-lines or CSV read once";
    type Config = FileConfig;

    fn new(config: FileConfig, dsm: &DataSource) -> Result<Self, ConnectorError> {
        let path = dsm.path(
            &config
                .path
                .clone()
                .unwrap_or_else(|| format!("dda-output/{}.jsonl", dsm.id)),
        );
        Ok(Self { config, path })
    }

    fn place(&self) -> String {
        format!("{} (JSON lines)", self.path)
    }
}

impl Sink for File {
    async fn write(self: Arc<Self>, mut ctx: SinkContext) -> Result<(), ConnectorError> {
        let path = &self.path;
        if let Some(dir) = std::path::Path::new(&path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                ConnectorError::io(&ctx.dsm, format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ConnectorError::io(&ctx.dsm, format!("cannot open {path}: {e}")))?;
        let mut out = std::io::BufWriter::new(file);
        ctx.metrics.connected();
        while let Some(batch) = ctx.next().await {
            let mut text = String::new();
            for o in batch.iter() {
                text.push_str(&encode_live_data_set(o).to_string());
                text.push('\n');
            }
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| ConnectorError::io(&ctx.dsm, format!("cannot write {path}: {e}")))?;
            ctx.metrics.add(batch.len());
        }
        Ok(())
    }
}

impl Source for File {
    const RESUMABLE: bool = true;

    async fn read(self: Arc<Self>, ctx: SourceContext) -> Result<(), ConnectorError> {
        let path = self.config.path.as_deref().ok_or_else(|| {
            ConnectorError::config(&ctx.dsm, "reading a file needs the parameter `path`")
        })?;
        ctx.metrics.connected();
        crate::simulator::replay_file(&ctx, path, self.config.format).await
    }
}
