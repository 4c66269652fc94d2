//! `File`: JSON-lines files.
//!
//! Sink: appends every observation written to the DSM to `path` (default
//! `dda-output/<dsm id>.jsonl`) as one LiveDataSet per line (the paper's Table 7 shape),
//! flushed after each batch. Source: reads a JSON-lines or CSV file (`path`, `format`) once,
//! as fast as its readers take it.

use std::io::Write;

use serde::Deserialize;

use crate::codec::encode_live_data_set;
use crate::connector::{
    BoxFuture, ConnectorError, ConnectorRegistration, SinkContext, SourceContext,
};
use crate::registry::DataSource;

/// The protocol name.
pub const KIND: &str = "File";

inventory::submit! {
    ConnectorRegistration {
        protocol: KIND,
        description: "JSON-lines files: LiveDataSets appended one per line; JSON-lines or CSV read once",
        source: Some(source),
        sink: Some(sink),
        check,
        place,
    }
}

/// The DSM parameters this connector reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileConfig {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

impl FileConfig {
    fn read(dsm: &DataSource) -> Result<Self, ConnectorError> {
        let cfg: Self = super::config(dsm)?;
        if let Some(f) = &cfg.format
            && !["jsonl", "json", "csv"].contains(&f.to_ascii_lowercase().as_str())
        {
            return Err(ConnectorError::config(
                dsm,
                format!("format {f:?}: use jsonl or csv"),
            ));
        }
        Ok(cfg)
    }

    fn path(&self, dsm: &DataSource) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("dda-output/{}.jsonl", dsm.id))
    }
}

fn check(dsm: &DataSource) -> Result<(), ConnectorError> {
    FileConfig::read(dsm).map(|_| ())
}

fn place(dsm: &DataSource) -> String {
    FileConfig::read(dsm).map_or_else(
        |_| KIND.to_owned(),
        |c| format!("{} (JSON lines)", c.path(dsm)),
    )
}

fn sink(mut ctx: SinkContext) -> BoxFuture<Result<(), ConnectorError>> {
    Box::pin(async move {
        let cfg = FileConfig::read(&ctx.dsm)?;
        let path = cfg.path(&ctx.dsm);
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
            .open(&path)
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
    })
}

fn source(ctx: SourceContext) -> BoxFuture<Result<(), ConnectorError>> {
    Box::pin(async move {
        let cfg = FileConfig::read(&ctx.dsm)?;
        let path = cfg.path.clone().ok_or_else(|| {
            ConnectorError::config(&ctx.dsm, "reading a file needs the parameter `path`")
        })?;
        ctx.metrics.connected();
        super::simulator::replay_file(&ctx, &path, cfg.format.as_deref()).await
    })
}
