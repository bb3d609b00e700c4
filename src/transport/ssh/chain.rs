//! A host's chain of tasks sent through one remote shell without waiting for each result.
//!
//! When task A is done in one operation whose exit status says whether it succeeded (a file
//! written in place, a command without guards), the next task B of the chain can have its
//! first operation sent right behind A's: the shell runs it only if A's operation exited 0
//! (each operation's status is kept in `_ds<number>`), and skips it otherwise (B ends
//! `Withdrawn`, as if it had never been sent; whatever is behind B is skipped in turn).
//! The host then runs the chain back to back while drover records outcomes as they arrive,
//! instead of paying a full round trip and a commit between every two tasks.
//!
//! Each task of the chain holds a `ChainLink`. A link sends its first operation only once the
//! link before it has sent its own (so the shell sees them in chain order); an operation that
//! cannot go through the shell (an upload, another user through sudo) waits until the task
//! before it has ended, and does not run at all if that task failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;

use super::SshTransport;
use super::session::{Gate, ShellSession};
use crate::transport::{
    Counters, ExecOutput, ExecRequest, FileState, PutFile, Result, Synced, Transport,
};

/// One remote shell shared by the links of a chain, given back to the idle shells when the
/// last link is gone.
pub struct Chain {
    ssh: Arc<SshTransport>,
    shell: tokio::sync::Mutex<Option<Held>>,
}

struct Held {
    session: Arc<ShellSession>,
    /// The chain's channel counts against the host's channel limit for as long as it lives.
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("host", &self.ssh.target().host)
            .finish_non_exhaustive()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let held = self.shell.get_mut().take();
        if let Some(held) = held
            && let Ok(session) = Arc::try_unwrap(held.session)
        {
            self.ssh.give_back(None, session);
        }
    }
}

impl Chain {
    pub fn new(ssh: Arc<SshTransport>) -> Arc<Chain> {
        Arc::new(Chain {
            ssh,
            shell: tokio::sync::Mutex::new(None),
        })
    }

    /// The chain's shell, started (or taken from the idle ones) on first use. An operation
    /// gated on the one before it never goes to a new shell: the old shell's verdict is lost
    /// with it.
    pub(super) async fn session(&self, gate: Gate) -> Result<Arc<ShellSession>> {
        let mut shell = self.shell.lock().await;
        // A gated operation has nowhere to go once its shell is gone: say so before anything
        // would reconnect.
        if matches!(gate, Gate::IfSucceeded { .. })
            && !shell.as_ref().is_some_and(|held| held.session.usable())
        {
            return Err(self.ssh.withdrawn());
        }
        let (handle, generation) = self.ssh.handle_with_generation().await?;
        let live = shell
            .as_ref()
            .filter(|held| held.session.generation == generation && held.session.usable());
        if let Gate::IfSucceeded { shell: wanted, .. } = gate {
            // Its verdict lives only in the shell that ran the operation it names; any
            // other shell (a new one after a retry replaced a broken one) knows nothing of it.
            return match live {
                Some(held) if held.session.id == wanted => Ok(held.session.clone()),
                _ => Err(self.ssh.withdrawn()),
            };
        }
        if let Some(held) = live {
            return Ok(held.session.clone());
        }
        // The old shell's channel permit goes back before a new one is asked for.
        shell.take();
        let permit = self
            .ssh
            .channels
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.ssh.lost("shutting down"))?;
        let session = Arc::new(
            self.ssh
                .idle_or_new_session(&handle, None, generation)
                .await?,
        );
        *shell = Some(Held {
            session: session.clone(),
            _permit: permit,
        });
        Ok(session)
    }
}

/// Where a link's task stands, as the link behind it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nothing sent yet.
    Waiting,
    /// Its first operation (number `seq` in shell `shell`) is on its way.
    Sent { shell: u64, seq: u64 },
    /// Its task ended (after all retries).
    Ended { ok: bool },
}

/// One task's place in a chain; the transport its attempt uses.
#[derive(Debug)]
pub struct ChainLink {
    chain: Arc<Chain>,
    /// The link before it, if any.
    after: Option<watch::Receiver<Stage>>,
    stage: watch::Sender<Stage>,
    first_sent: AtomicBool,
}

impl ChainLink {
    /// The first link of a new chain on `ssh`'s host.
    pub fn start(ssh: Arc<SshTransport>) -> Arc<ChainLink> {
        ChainLink::new(Chain::new(ssh), None)
    }

    /// A link right behind this one.
    pub fn behind(&self) -> Arc<ChainLink> {
        ChainLink::new(self.chain.clone(), Some(self.stage.subscribe()))
    }

    fn new(chain: Arc<Chain>, after: Option<watch::Receiver<Stage>>) -> Arc<ChainLink> {
        Arc::new(ChainLink {
            chain,
            after,
            stage: watch::channel(Stage::Waiting).0,
            first_sent: AtomicBool::new(false),
        })
    }

    /// The link's task ended: the link behind it learns whether to go on.
    pub fn end(&self, ok: bool) {
        self.stage.send_replace(Stage::Ended { ok });
    }

    /// Ends the link as failed unless its task already said how it ended.
    pub fn end_if_open(&self) {
        self.stage.send_if_modified(|s| {
            let open = !matches!(s, Stage::Ended { .. });
            if open {
                *s = Stage::Ended { ok: false };
            }
            open
        });
    }

    /// The link's first operation got its verdict from the shell: its later operations (a
    /// retry) need no gate. One that got none (a lost connection) keeps its gate.
    pub(super) fn mark_answered(&self) {
        self.first_sent.store(true, Ordering::Release);
    }

    /// How this link's next shell operation must be sent: gated on the operation before it
    /// while the task before has sent but not ended; refused when that task failed.
    async fn turn(&self) -> Result<Gate> {
        let Some(after) = self
            .after
            .as_ref()
            .filter(|_| !self.first_sent.load(Ordering::Acquire))
        else {
            return Ok(Gate::Always);
        };
        let mut after = after.clone();
        let stage = after.wait_for(|s| *s != Stage::Waiting).await.map(|s| *s);
        match stage {
            Ok(Stage::Sent { shell, seq }) => Ok(Gate::IfSucceeded { shell, seq }),
            Ok(Stage::Ended { ok: true }) => Ok(Gate::Always),
            Ok(Stage::Waiting | Stage::Ended { ok: false }) | Err(_) => {
                Err(self.chain.ssh.withdrawn())
            }
        }
    }

    /// Before an operation outside the shell: the task before must have ended, successfully.
    async fn settled(&self) -> Result<()> {
        let Some(after) = self.after.as_ref() else {
            return Ok(());
        };
        let mut after = after.clone();
        let stage = after
            .wait_for(|s| matches!(s, Stage::Ended { .. }))
            .await
            .map(|s| *s);
        match stage {
            Ok(Stage::Ended { ok: true }) => Ok(()),
            _ => Err(self.chain.ssh.withdrawn()),
        }
    }

    /// The shell for this link's next operation, and how to gate it.
    pub(super) async fn prepare(&self) -> Result<(Gate, Arc<ShellSession>)> {
        let gate = self.turn().await?;
        let session = self.chain.session(gate).await?;
        Ok((gate, session))
    }

    /// This link's operation is on its way: the link behind it may send its own.
    pub(super) fn mark_sent(&self, shell: u64, seq: u64) {
        self.stage.send_if_modified(|s| {
            let first = *s == Stage::Waiting;
            if first {
                *s = Stage::Sent { shell, seq };
            }
            first
        });
    }

    fn ssh(&self) -> &SshTransport {
        &self.chain.ssh
    }

    /// Whether operations as `become` can go through the chain's shell (it runs as the
    /// login user).
    fn in_shell(&self, r#become: Option<&str>) -> bool {
        r#become.is_none_or(|u| u == self.ssh().target().user)
    }
}

impl Transport for ChainLink {
    async fn exec(&self, request: ExecRequest, force: &CancellationToken) -> Result<ExecOutput> {
        if request.stdin.is_none() && self.in_shell(request.r#become.as_deref()) {
            Counters::add(&self.ssh().counters.commands);
            return self.ssh().session_exec(&request, force, Some(self)).await;
        }
        self.settled().await?;
        self.ssh().exec(request, force).await
    }

    async fn put_file(&self, file: &PutFile) -> Result<()> {
        self.settled().await?;
        self.ssh().put_file(file).await
    }

    async fn read_file(
        &self,
        path: &str,
        r#become: Option<&str>,
        want_content: bool,
    ) -> Result<Option<FileState>> {
        self.settled().await?;
        self.ssh().read_file(path, r#become, want_content).await
    }

    async fn sync_file(&self, file: &PutFile) -> Result<Synced> {
        if super::session::inline(&file.content) && self.in_shell(file.r#become.as_deref()) {
            Counters::add(&self.ssh().counters.files_written);
            return self.ssh().session_sync(file, Some(self)).await;
        }
        self.settled().await?;
        self.ssh().sync_file(file).await
    }

    async fn exists(&self, path: &str, r#become: Option<&str>) -> Result<bool> {
        if self.in_shell(r#become) {
            Counters::add(&self.ssh().counters.files_read);
            return self.ssh().session_exists(path, r#become, Some(self)).await;
        }
        self.settled().await?;
        self.ssh().exists(path, r#become).await
    }

    fn counters(&self) -> &Counters {
        self.ssh().counters()
    }
}
