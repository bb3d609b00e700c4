//! A TCP listener for the daemon's HTTP endpoints whose connections cannot be held open:
//! each lives at most `CONNECTION_DEADLINE` from accept (every endpoint answers in far less),
//! and at most `MAX_CONNECTIONS` are open at once (more wait in the kernel's backlog). A
//! client that trickles a request, or never closes, costs a slot for a minute, not forever.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Longest a connection may stay open.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);
/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 64;

/// `listener`, with the bounds above.
#[derive(Debug)]
pub struct Bounded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl Bounded {
    pub fn new(listener: TcpListener) -> Bounded {
        Bounded {
            listener,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Deadlined;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Deadlined, SocketAddr) {
        loop {
            // Wait for a free slot before taking the next connection from the backlog.
            let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let deadline = Box::pin(tokio::time::sleep(CONNECTION_DEADLINE));
                    return (
                        Deadlined {
                            stream,
                            deadline,
                            _slot: slot,
                        },
                        addr,
                    );
                }
                // Out of file descriptors, say: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection that fails its reads and writes once its deadline has passed.
#[derive(Debug)]
pub struct Deadlined {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl Deadlined {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the connection outlived its deadline",
    )
}

impl AsyncRead for Deadlined {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use axum::serve::Listener as _;

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_cut_at_its_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut bounded = Bounded::new(listener);
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = bounded.accept().await;
        client.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).await.unwrap(), 3);
        // The client goes quiet; the paused clock jumps past the deadline.
        let read = tokio::spawn(async move { server.read(&mut buf).await });
        tokio::time::advance(CONNECTION_DEADLINE + Duration::from_secs(1)).await;
        let error = read.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
