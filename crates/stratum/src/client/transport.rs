//! Bytes to lines and back: TCP or TLS to a pool, and a line reader bounded by
//! [`MAX_LINE`] that tells a line too long from a closed connection.

use super::*;

pub(super) type Reader = Box<dyn AsyncRead + Unpin + Send>;

pub(super) type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// Reads `\n`-terminated lines, refusing (and skipping) lines longer than [`MAX_LINE`].
pub(super) struct LineReader {
    inner: Reader,
    buf: Vec<u8>,
    skipping: bool,
}

pub(super) enum Line {
    Ok(String),
    Bad(ProtocolError),
}

impl LineReader {
    pub(super) fn new(inner: Reader) -> Self {
        LineReader { inner, buf: Vec::with_capacity(4096), skipping: false }
    }

    /// The next line; `Ok(None)` at end of stream.
    pub(super) async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(pos + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                return Ok(Some(match String::from_utf8(line) {
                    Ok(s) => Line::Ok(s),
                    Err(_) => Line::Bad(ProtocolError::InvalidJson("line is not UTF-8".into())),
                }));
            }
            if self.buf.len() > MAX_LINE {
                self.buf.clear();
                if !self.skipping {
                    self.skipping = true;
                    return Ok(Some(Line::Bad(ProtocolError::LineTooLong { limit: MAX_LINE })));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.inner.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

pub(super) async fn open(url: &PoolUrl, ca: Option<&crate::PoolCa>) -> Result<(Reader, Writer), Error> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| Error::Connect { url: url.to_string(), source })?;
    let _ = tcp.set_nodelay(true);
    if url.tls {
        let tls = crate::tls::connect(&url.host, tcp, ca).await?;
        let (r, w) = tokio::io::split(tls);
        Ok((Box::new(r), Box::new(w)))
    } else {
        let (r, w) = tcp.into_split();
        Ok((Box::new(r), Box::new(w)))
    }
}

pub(super) async fn write_line(w: &mut Writer, line: &str, url: &str) -> Result<(), Error> {
    tracing::trace!(%url, bytes = line.len(), "send");
    w.write_all(line.as_bytes()).await.map_err(|source| Error::Io { url: url.to_owned(), source })?;
    w.flush().await.map_err(|source| Error::Io { url: url.to_owned(), source })
}
