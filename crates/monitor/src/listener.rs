//! What the cgminer API and the `/metrics` listener share: a server on a thread of its own that
//! stops when dropped, and the log of connections refused over the cap.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Error;

/// A listener serving from its own thread. Stopping runs the server's own stop signal, then
/// joins the thread; dropping stops it.
pub(crate) struct ServerThread {
    addr: SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerThread").field("addr", &self.addr).field("running", &self.thread.is_some()).finish()
    }
}

impl ServerThread {
    /// Run `serve` on a thread named `name`; `stop` asks it to return.
    pub(crate) fn spawn(
        name: &str,
        addr: SocketAddr,
        stop: impl FnOnce() + Send + 'static,
        serve: impl FnOnce() + Send + 'static,
    ) -> Result<Self, Error> {
        let thread = std::thread::Builder::new().name(name.into()).spawn(serve).map_err(|source| Error::Bind { addr, source })?;
        Ok(ServerThread { addr, stop: Some(Box::new(stop)), thread: Some(thread) })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Refused connections, logged without flooding the log: the first at once, then at most one
/// line every 10 s with how many were refused meanwhile.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    what: &'static str,
    cap: usize,
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    /// For the listener named `what`, which serves at most `cap` connections at once.
    pub(crate) fn new(what: &'static str, cap: usize) -> Self {
        RefusalLog { what, cap, last: None, unlogged: 0 }
    }

    pub(crate) fn refused(&mut self, peer: SocketAddr) {
        self.unlogged += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(%peer, refused = self.unlogged, cap = self.cap, "{}: too many connections, closing new ones", self.what);
            self.last = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}
