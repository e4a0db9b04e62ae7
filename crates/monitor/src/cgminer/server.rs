//! The API's TCP server: one request per connection under one deadline, a cap on
//! connections served at once, and the reply written within a grace period.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Actions, DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_DEADLINE, LINGER, MAX_REQUEST, MSG_INVCMD, Reply, WRITE_GRACE, now_unix, respond};
use crate::Error;
use crate::listener::{RefusalLog, ServerThread};
use crate::access::{Access, Level};
use crate::view::SharedView;

/// How the API server listens.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub access: Access,
    /// Deadline for the whole request, counted from accept: a client that has not sent a
    /// complete request by then gets an error status and is closed, however it trickles.
    pub read_timeout: Duration,
    /// Connections served at once; a connection past this is closed at once, not queued.
    pub max_connections: usize,
}

impl ApiConfig {
    /// `listen` with loopback-only read access, a 2 s request deadline and 64 connections.
    pub fn new(listen: SocketAddr) -> Self {
        ApiConfig {
            listen,
            access: Access::loopback_only(),
            read_timeout: DEFAULT_REQUEST_DEADLINE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Refuse to listen beyond loopback without an explicit allow-list.
    pub fn validate(&self) -> Result<(), Error> {
        if !crate::access::is_loopback(self.listen.ip()) && !self.access.allows_remote() {
            return Err(Error::OpenBind { addr: self.listen });
        }
        Ok(())
    }
}

/// A running API server. Stops when dropped (or on [`ApiServer::stop`]).
#[derive(Debug)]
pub struct ApiServer(ServerThread);

impl ApiServer {
    /// Bind and serve `view` in a background thread.
    pub fn start(config: ApiConfig, view: SharedView, actions: Arc<dyn Actions>) -> Result<Self, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).map_err(|source| Error::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: config.listen, source })?;
        listener.set_nonblocking(true).map_err(|source| Error::Bind { addr, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let server = ServerThread::spawn(
            "cgminer-api",
            addr,
            move || stop.store(true, Ordering::Release),
            move || accept_loop(listener, config, view, actions, stop2),
        )?;
        tracing::info!(%addr, "cgminer API listening");
        Ok(ApiServer(server))
    }

    /// The address actually bound (port 0 resolves here).
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    pub fn stop(mut self) {
        self.0.shutdown();
    }
}

fn accept_loop(listener: TcpListener, config: ApiConfig, view: SharedView, actions: Arc<dyn Actions>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut refusals = RefusalLog::new("cgminer API", config.max_connections);
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, peer)) => {
                // The request's deadline runs from here, whatever the client does.
                let deadline = Instant::now() + config.read_timeout;
                let level = config.access.level(peer.ip());
                if level == Level::None {
                    tracing::debug!(%peer, "cgminer API: connection refused by the allow-list");
                    continue;
                }
                if active.load(Ordering::Acquire) >= config.max_connections {
                    refusals.refused(peer);
                    drop(stream);
                    continue;
                }
                active.fetch_add(1, Ordering::AcqRel);
                let (view, actions, active2) = (view.clone(), actions.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("cgminer-api-conn".into())
                    .stack_size(512 * 1024)
                    .spawn(move || {
                        if let Err(e) = serve(stream, peer.ip(), level, deadline, &view, &*actions) {
                            tracing::debug!(%peer, error = %e, "cgminer API: connection ended with an error");
                        }
                        active2.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    tracing::warn!(%peer, error = %e, "cgminer API: cannot start a connection thread");
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::warn!(error = %e, "cgminer API: accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Read one request: until the peer stops sending (EOF), a complete JSON object, a NUL or
/// newline, a pause after a plain request, the size limit, or `deadline`.
fn read_request(stream: &mut TcpStream, deadline: Instant) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((buf, false));
        }
        // A plain request arrives in one segment (cgminer reads it with one recv); give a
        // trickle 100 ms to finish once something has arrived.
        let wait = if !buf.is_empty() && buf[0] != b'{' { left.min(Duration::from_millis(100)) } else { left };
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok((buf, false)),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_REQUEST {
                    return Ok((buf, true));
                }
                if matches!(buf.last(), Some(0 | b'\n')) {
                    return Ok((buf, false));
                }
                if buf[0] == b'{' && serde_json::from_slice::<Value>(&buf).is_ok() {
                    return Ok((buf, false));
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if !buf.is_empty() && buf[0] != b'{' {
                    return Ok((buf, false));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Write all of `bytes` by `until`; a client that reads slower than that is given up on.
fn write_by(stream: &mut TcpStream, mut bytes: &[u8], until: Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client too slow to take the reply"));
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Half-close, then drop what the peer still sends until `until` (and at most 1 MiB), so that
/// closing with unread input does not reset the connection before the peer reads our reply.
/// `until` is a hard end: a peer that keeps trickling does not extend it.
pub(crate) fn close_gracefully(mut stream: TcpStream, until: Instant) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 1 << 20 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn serve(
    mut stream: TcpStream,
    peer: IpAddr,
    level: Level,
    deadline: Instant,
    view: &SharedView,
    actions: &dyn Actions,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let (request, oversized) = read_request(&mut stream, deadline)?;
    let reply = if oversized {
        tracing::debug!(%peer, "cgminer API: request over {MAX_REQUEST} bytes");
        let json = request.first() == Some(&b'{');
        let r = Reply::error(MSG_INVCMD, format!("Request too large (limit {MAX_REQUEST} bytes)"));
        let mut out = if json { r.to_json(now_unix()) } else { r.to_plain(now_unix()) }.into_bytes();
        out.push(0);
        out
    } else if request.is_empty() {
        let mut out = Reply::error(MSG_INVCMD, "Invalid command").to_plain(now_unix()).into_bytes();
        out.push(0);
        out
    } else {
        respond(&request, &view.snapshot(), level, actions)
    };
    // However the request went, the connection ends by deadline + WRITE_GRACE + LINGER.
    let write_until = deadline.max(Instant::now()) + WRITE_GRACE;
    let written = write_by(&mut stream, &reply, write_until);
    let linger_until = (Instant::now() + LINGER).min(write_until + LINGER);
    close_gracefully(stream, linger_until);
    written
}
