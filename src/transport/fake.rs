//! `FakeTransport`: a transport with scripted outcomes and latency, for unit tests of the
//! apply driver without processes or hosts. Every call is logged in order, and a hook runs at
//! the start of each call (to check, say, what the store holds at that moment).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::transport::{
    Captured, Counters, Error, ErrorKind, ExecOutput, ExecRequest, ExitStatus, FileState, PutFile,
    Result, Synced, Transport, describe,
};

/// What a scripted call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripted {
    Exit(i32),
    /// A file is already as wanted (nothing written); a path exists.
    Same,
    /// The connection drops during the call (a transient failure).
    Lost,
    /// The host key is refused (a permanent failure).
    HostKeyRefused,
}

type Hook = Box<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
pub struct FakeTransport {
    counters: Counters,
    /// Outcomes by command text or file path, used in order; the last one repeats.
    script: Mutex<BTreeMap<String, Vec<Scripted>>>,
    latency: Duration,
    /// Every call, in order: the command text or `sync PATH`.
    pub calls: Mutex<Vec<String>>,
    hook: Option<Hook>,
}

impl std::fmt::Debug for FakeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTransport").finish_non_exhaustive()
    }
}

impl FakeTransport {
    pub fn new(latency: Duration) -> FakeTransport {
        FakeTransport {
            latency,
            ..FakeTransport::default()
        }
    }

    #[must_use]
    pub fn script(self, key: &str, outcomes: &[Scripted]) -> FakeTransport {
        if let Ok(mut script) = self.script.lock() {
            script.insert(key.to_owned(), outcomes.to_vec());
        }
        self
    }

    #[must_use]
    pub fn on_call(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> FakeTransport {
        self.hook = Some(Box::new(hook));
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    async fn call(&self, key: String) -> Result<Scripted> {
        if let Some(hook) = &self.hook {
            hook(&key);
        }
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(key.clone());
        }
        tokio::time::sleep(self.latency).await;
        let outcome = self
            .script
            .lock()
            .ok()
            .and_then(|mut script| {
                let list = script.get_mut(&key)?;
                if list.len() > 1 {
                    Some(list.remove(0))
                } else {
                    list.first().copied()
                }
            })
            .unwrap_or(Scripted::Exit(0));
        match outcome {
            Scripted::Lost => Err(Error::Lost {
                host: "fake".to_owned(),
                what: "the connection was reset".to_owned(),
            }),
            Scripted::HostKeyRefused => Err(Error::Connect {
                host: "fake".to_owned(),
                kind: ErrorKind::HostKey,
                message: "host key refused".to_owned(),
            }),
            done @ (Scripted::Exit(_) | Scripted::Same) => Ok(done),
        }
    }
}

impl Transport for FakeTransport {
    async fn exec(&self, request: ExecRequest, _force: &CancellationToken) -> Result<ExecOutput> {
        Counters::add(&self.counters.commands);
        let code = match self.call(describe(&request.command)).await? {
            Scripted::Exit(code) => code,
            Scripted::Same => 0,
            Scripted::Lost | Scripted::HostKeyRefused => -1,
        };
        Ok(ExecOutput {
            status: ExitStatus::Code { code },
            stdout: Captured::default(),
            stderr: Captured::default(),
        })
    }

    async fn put_file(&self, file: &PutFile) -> Result<()> {
        self.call(format!("put {}", file.path)).await.map(|_| ())
    }

    async fn read_file(
        &self,
        path: &str,
        _become: Option<&str>,
        _want_content: bool,
    ) -> Result<Option<FileState>> {
        self.call(format!("read {path}")).await.map(|_| None)
    }

    async fn sync_file(&self, file: &PutFile) -> Result<Synced> {
        Counters::add(&self.counters.files_written);
        let same = self.call(format!("sync {}", file.path)).await? == Scripted::Same;
        Ok(Synced {
            before: same.then(|| FileState {
                size: file.content.len() as u64,
                mode: file.mode.unwrap_or(0o644),
                owner: String::new(),
                group: String::new(),
                content_hash: blake3::hash(&file.content).to_hex().to_string(),
                content: Some(file.content.to_vec()),
            }),
            written: !same,
        })
    }

    async fn exists(&self, path: &str, _become: Option<&str>) -> Result<bool> {
        Ok(self.call(format!("exists {path}")).await? == Scripted::Same)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
