//! `file`: content, mode and owner of a file, written only when one of them differs.

use std::sync::Arc;

use crate::report::diff;
use crate::report::style::Style;
use crate::task::{Applied, Failure};
use crate::transport::{PutFile, Transport};

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
    let have = transport
        .read_file(want.path, r#become, true)
        .await
        .map_err(|e| Failure::transport(&e))?;
    let mut differences = Vec::new();
    match &have {
        None => differences.push("created".to_owned()),
        Some(have) => {
            if have.content_hash != want.content_hash {
                differences.push("content".to_owned());
            }
            if let Some(mode) = want.mode.filter(|m| *m != have.mode) {
                differences.push(format!("mode {:04o} → {mode:04o}", have.mode));
            }
            if let Some(owner) = want.owner.filter(|o| *o != have.owner) {
                differences.push(format!("owner {} → {owner}", have.owner));
            }
            if let Some(group) = want.group.filter(|g| *g != have.group) {
                differences.push(format!("group {} → {group}", have.group));
            }
        }
    }
    if differences.is_empty() {
        return Ok(Applied {
            changed: false,
            summary: format!("{} is up to date", want.path),
            ..Applied::default()
        });
    }
    let old = have
        .as_ref()
        .and_then(|h| h.content.as_deref())
        .map(String::from_utf8_lossy);
    let new = String::from_utf8_lossy(want.content);
    let text_diff = (differences.iter().any(|d| d == "content" || d == "created"))
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
    let file = PutFile {
        path: want.path.to_owned(),
        content: want.content.clone(),
        mode: want.mode,
        owner: want.owner.map(str::to_owned),
        group: want.group.map(str::to_owned),
        r#become: r#become.map(str::to_owned),
    };
    transport
        .put_file(&file)
        .await
        .map_err(|e| Failure::transport(&e))?;
    Ok(Applied {
        changed: true,
        summary: format!("wrote {} ({})", want.path, differences.join(", ")),
        diff: text_diff,
        commands: Vec::new(),
    })
}
