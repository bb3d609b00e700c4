//! `drover schema`: print a JSON Schema, or write them all for editors and CI.

use std::path::Path;

use crate::cli::args::SchemaKind;
use crate::cli::config::Config;
use crate::cli::{Error, Outcome};
use crate::load::schema;

pub fn run(write: Option<&Path>, kind: SchemaKind, config: &Config) -> Result<Outcome, Error> {
    let schemas = schema::all();
    if let Some(dir) = write {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })?;
        for named in &schemas {
            let path = dir.join(named.file_name);
            std::fs::write(&path, render(&named.schema)).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            config.output.stderr(&format!("wrote {}\n", path.display()));
        }
        return Ok(Outcome::Success);
    }
    let wanted = match kind {
        SchemaKind::Host => "host.schema.json",
        SchemaKind::Workflow => "workflow.schema.json",
        SchemaKind::Document => "document.schema.json",
    };
    if let Some(named) = schemas.iter().find(|s| s.file_name == wanted) {
        config.output.stdout(&render(&named.schema));
    }
    Ok(Outcome::Success)
}

/// The exact bytes of a schema file (pretty JSON and a final newline); the staleness test
/// compares `schemas/` against this.
pub fn render(schema: &serde_json::Value) -> String {
    serde_json::to_string_pretty(schema).unwrap_or_default() + "\n"
}
