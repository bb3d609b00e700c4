//! `drover init [DIR]`: scaffold a working local-transport example.
//!
//! The files are the repository's own `manifests/demo`, embedded at build time, so the
//! scaffold is exactly the demo the README walks through (and the tests validate). Their
//! editor schema links point at the published schemas instead of the repository copy.

use std::path::Path;

use crate::cli::config::Config;
use crate::cli::{Error, Outcome};
use crate::load::schema::SCHEMA_BASE;

const FILES: [(&str, &str); 2] = [
    (
        "hosts.yaml",
        include_str!("../../../manifests/demo/hosts.yaml"),
    ),
    (
        "hello.yaml",
        include_str!("../../../manifests/demo/hello.yaml"),
    ),
];

pub fn run(dir: &Path, force: bool, config: &Config) -> Result<Outcome, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })?;
    for (name, _) in FILES {
        let path = dir.join(name);
        if path.exists() && !force {
            return Err(Error::Exists { path });
        }
    }
    for (name, text) in FILES {
        let path = dir.join(name);
        let text = text.replace("../../schemas", SCHEMA_BASE);
        std::fs::write(&path, text).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    }
    let shown = dir.display();
    config.output.stdout(&format!(
        "created {shown}/hosts.yaml and {shown}/hello.yaml\n\nnext:\n  drover validate {shown}\n  drover graph {shown}\n"
    ));
    Ok(Outcome::Success)
}
