//! A minimal Bitcoin Core JSON-RPC client: HTTP/1.1 POST over a tokio `TcpStream`, one
//! connection per call, basic auth from a cookie file (re-read on every call: the node writes a
//! new one each start) or a user and password.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Error;

/// How to authenticate.
#[derive(Clone)]
pub enum Auth {
    /// Bitcoin Core's `.cookie` file (`__cookie__:<random>`).
    Cookie(PathBuf),
    UserPass { user: String, password: String },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Cookie(p) => f.debug_tuple("Cookie").field(p).finish(),
            Auth::UserPass { user, .. } => f.debug_struct("UserPass").field("user", user).field("password", &"***").finish(),
        }
    }
}

/// The node's URL: `http://host:port` (path ignored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeUrl {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for NodeUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &'static str| Error::NodeUrl { url: s.to_owned(), why };
        let rest = match s.split_once("://") {
            None => s,
            Some(("http", r)) => r,
            Some(_) => return Err(bad("only http:// is supported (run the node's RPC on localhost)")),
        };
        let hostport = rest.split('/').next().unwrap_or_default();
        if hostport.contains('@') {
            return Err(bad("put credentials in --rpc-cookie or --rpc-user/--rpc-pass, not the URL"));
        }
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| bad("missing :port"))?;
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("port is not a number from 1 to 65535"))?;
        Ok(NodeUrl { host: host.to_owned(), port })
    }
}

impl fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

/// A JSON-RPC client for one node.
#[derive(Clone, Debug)]
pub struct RpcClient {
    pub url: NodeUrl,
    auth: Auth,
    /// Limit for ordinary calls (long polls pass their own).
    pub timeout: Duration,
}

const MAX_RESPONSE: usize = 64 * 1024 * 1024;

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl RpcClient {
    pub fn new(url: NodeUrl, auth: Auth) -> Self {
        RpcClient { url, auth, timeout: Duration::from_secs(30) }
    }

    fn credentials(&self) -> Result<String, Error> {
        match &self.auth {
            Auth::UserPass { user, password } => Ok(format!("{user}:{password}")),
            Auth::Cookie(p) => {
                let s = std::fs::read_to_string(p).map_err(|source| Error::Cookie { path: p.clone(), source })?;
                Ok(s.trim().to_owned())
            }
        }
    }

    /// Call `method` with `params`; the node's JSON-RPC error comes back as [`Error::Rpc`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.call_with_timeout(method, params, self.timeout).await
    }

    pub async fn call_with_timeout(&self, method: &str, params: Value, limit: Duration) -> Result<Value, Error> {
        match tokio::time::timeout(limit, self.call_inner(method, &params)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout { url: self.url.to_string(), method: method.to_owned(), secs: limit.as_secs() }),
        }
    }

    async fn call_inner(&self, method: &str, params: &Value) -> Result<Value, Error> {
        let url = self.url.to_string();
        let io = |source| Error::Io { url: url.clone(), source };
        let body = json!({"jsonrpc": "1.0", "id": "hashrig", "method": method, "params": params}).to_string();
        let auth = base64(self.credentials()?.as_bytes());
        let req = format!(
            "POST / HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.url.host,
            self.url.port,
            body.len()
        );
        let mut s = TcpStream::connect((self.url.host.as_str(), self.url.port)).await.map_err(io)?;
        s.write_all(req.as_bytes()).await.map_err(io)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        // Read the head, then the body by Content-Length (or to end of stream).
        let (status, head_end, content_length, chunked) = loop {
            let n = s.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(Error::Http { url, why: "connection closed before the response head".into() });
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).to_string();
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or_default();
                let status: u16 = status_line.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| Error::Http {
                    url: url.clone(),
                    why: format!("bad status line {status_line:?}"),
                })?;
                let mut len = None;
                let mut chunked = false;
                for l in lines {
                    if let Some((k, v)) = l.split_once(':') {
                        let k = k.trim().to_ascii_lowercase();
                        if k == "content-length" {
                            len = v.trim().parse::<usize>().ok();
                        } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                            chunked = true;
                        }
                    }
                }
                break (status, pos + 4, len, chunked);
            }
            if buf.len() > 64 * 1024 {
                return Err(Error::Http { url, why: "response head too long".into() });
            }
        };
        loop {
            let have = buf.len() - head_end;
            if content_length.is_some_and(|l| have >= l) {
                break;
            }
            if buf.len() > MAX_RESPONSE {
                return Err(Error::Http { url, why: "response too large".into() });
            }
            let n = s.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let mut body = buf.split_off(head_end);
        if let Some(l) = content_length {
            body.truncate(l);
        } else if chunked {
            body = dechunk(&body).ok_or_else(|| Error::Http { url: url.clone(), why: "bad chunked body".into() })?;
        }
        if status == 401 || status == 403 {
            return Err(Error::Unauthorized { url });
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| Error::Http {
            url: url.clone(),
            why: format!("HTTP {status}, body is not JSON: {e}"),
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(Error::Rpc {
                method: method.to_owned(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err.get("message").and_then(Value::as_str).unwrap_or("(no message)").to_owned(),
            });
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let pos = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..pos]).ok()?.split(';').next()?.trim(), 16).ok()?;
        b = &b[pos + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n").unwrap(), b"Wikipedia");
    }

    #[test]
    fn credentials_are_not_in_debug_output() {
        let c = RpcClient::new("http://127.0.0.1:18443".parse().unwrap(), Auth::UserPass { user: "u".into(), password: "hunter2".into() });
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
