//! `file`: content, mode and owner of a file, written only when one of them differs.

use std::sync::Arc;

use crate::report::diff;
use crate::report::style::Style;
use crate::task::{Applied, Failure};
use crate::transport::{self, PutFile, Transport};

/// The file as the manifests want it.
#[derive(Debug)]
pub struct Desired<'a> {
    pub path: &'a str,
    pub content: &'a Arc<[u8]>,
    pub content_hash: &'a str,
    pub mode: Option<u32>,
    pub owner: Option<&'a str>,
    pub group: Option<&'a str>,
}

pub async fn apply<T: Transport>(
    transport: &T,
    r#become: Option<&str>,
    want: &Desired<'_>,
) -> Result<Applied, Failure> {
    let file = PutFile {
        path: want.path.to_owned(),
        content: want.content.clone(),
        mode: want.mode,
        owner: want.owner.map(str::to_owned),
        group: want.group.map(str::to_owned),
        r#become: r#become.map(str::to_owned),
    };
    // One call: the transport compares and writes only if something differs.
    let synced = transport
        .sync_file(&file)
        .await
        .map_err(|e| Failure::transport(&e))?;
    let differences = transport::differences(synced.before.as_ref(), &file);
    if !synced.written {
        return Ok(Applied {
            changed: false,
            summary: format!("{} is up to date", want.path),
            ..Applied::default()
        });
    }
    let old = synced
        .before
        .as_ref()
        .and_then(|h| h.content.as_deref())
        .map(String::from_utf8_lossy);
    let new = String::from_utf8_lossy(want.content);
    let text_diff = differences
        .iter()
        .any(|d| d == "content" || d == "created")
        .then(|| {
            diff::unified(
                old.as_deref().unwrap_or_default(),
                &new,
                diff::Options {
                    labels: Some(("host", "desired")),
                    max_lines: 200,
                },
                Style::plain(),
            )
        })
        .filter(|d| !d.is_empty());
    Ok(Applied {
        changed: true,
        summary: format!("wrote {} ({})", want.path, differences.join(", ")),
        diff: text_diff,
        commands: Vec::new(),
    })
}
