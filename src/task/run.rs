//! `run`: a command, made idempotent by its `creates` and `unless` guards. Without guards it
//! runs every time it is planned and reports `changed`.

use crate::task::{Applied, CommandRecord, Failure, TaskContext, exec, failed};
use crate::transport::{CommandLine, Transport};

pub async fn apply<T: Transport>(
    transport: &T,
    ctx: &TaskContext,
    r#become: Option<&str>,
    command: &str,
    creates: Option<&str>,
    unless: Option<&str>,
) -> Result<Applied, Failure> {
    let mut commands: Vec<CommandRecord> = Vec::new();
    if let Some(path) = creates {
        let exists = transport
            .exists(path, r#become)
            .await
            .map_err(|e| Failure::transport(&e))?;
        if exists {
            return Ok(Applied {
                changed: false,
                summary: format!("{path} exists; not run"),
                ..Applied::default()
            });
        }
    }
    if let Some(guard) = unless {
        let out = exec(
            transport,
            ctx,
            r#become,
            CommandLine::Shell(guard.to_owned()),
            &mut commands,
        )
        .await?;
        if out.status.success() {
            return Ok(Applied {
                changed: false,
                summary: "`unless` succeeded; not run".to_owned(),
                diff: None,
                commands,
            });
        }
    }
    let out = exec(
        transport,
        ctx,
        r#become,
        CommandLine::Shell(command.to_owned()),
        &mut commands,
    )
    .await?;
    if !out.status.success() {
        return Err(failed(&out, "the command", &mut commands));
    }
    Ok(Applied {
        changed: true,
        summary: "ran".to_owned(),
        diff: None,
        commands,
    })
}
