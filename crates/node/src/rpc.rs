//! A Bitcoin Core JSON-RPC client over `reqwest` (plain HTTP: the node's RPC port is on
//! localhost or the LAN, never the open internet). Basic auth comes from the cookie file, re-read
//! on every call because the node writes a new one each time it starts, or from a user and
//! password. Every call has a time limit.
//!
//! What can go wrong, as [`Error`] variants: [`Error::Unauthorized`] (HTTP 401/403: check the
//! cookie or credentials), [`Error::Rpc`] (the node's JSON-RPC `{code, message}`, whatever the
//! HTTP status it came with: Core sends its errors with a 500), [`Error::HttpStatus`] (any other
//! non-2xx answer, such as 503 when the node's work queue is full), [`Error::Transport`] (no
//! connection, or it closed before a whole answer), [`Error::Timeout`], and [`Error::Http`] (an
//! answer that is not a JSON-RPC reply).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

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
        if port == 0 {
            return Err(bad("port is not a number from 1 to 65535"));
        }
        Ok(NodeUrl { host: host.to_owned(), port })
    }
}

impl fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

/// A JSON-RPC client for one node. Cloning is cheap and clones share the connection pool.
#[derive(Clone, Debug)]
pub struct RpcClient {
    pub url: NodeUrl,
    auth: Auth,
    /// Limit for ordinary calls (long polls pass their own).
    pub timeout: Duration,
    http: reqwest::Client,
}

/// How much of a non-JSON answer body an error quotes.
const QUOTE: usize = 200;

/// Core closes idle RPC connections after `-rpcservertimeout` (30 s by default); drop ours first.
const POOL_IDLE: Duration = Duration::from_secs(15);

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(QUOTE) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

impl RpcClient {
    pub fn new(url: NodeUrl, auth: Auth) -> Self {
        // No proxy: a node on localhost or the LAN is reached directly whatever HTTP_PROXY says.
        let http = match reqwest::Client::builder().no_proxy().pool_idle_timeout(POOL_IDLE).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot configure the HTTP client; using the defaults");
                reqwest::Client::new()
            }
        };
        RpcClient { url, auth, timeout: Duration::from_secs(30), http }
    }

    /// User and password for basic auth (the cookie file holds `user:password`).
    fn credentials(&self) -> Result<(String, String), Error> {
        match &self.auth {
            Auth::UserPass { user, password } => Ok((user.clone(), password.clone())),
            Auth::Cookie(p) => {
                let s = std::fs::read_to_string(p).map_err(|source| Error::Cookie { path: p.clone(), source })?;
                let s = s.trim();
                let (user, password) = s.split_once(':').unwrap_or((s, ""));
                Ok((user.to_owned(), password.to_owned()))
            }
        }
    }

    /// Call `method` with `params` under [`RpcClient::timeout`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.call_with_timeout(method, params, self.timeout).await
    }

    /// Call `method` with `params`; the whole exchange (connect, send, read the answer) must
    /// end within `limit`. The node's JSON-RPC error comes back as [`Error::Rpc`].
    pub async fn call_with_timeout(&self, method: &str, params: Value, limit: Duration) -> Result<Value, Error> {
        let url = self.url.to_string();
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                Error::Timeout { url: url.clone(), method: method.to_owned(), limit }
            } else {
                Error::Transport { url: url.clone(), method: method.to_owned(), source: e.without_url() }
            }
        };
        let (user, password) = self.credentials()?;
        let body = json!({"jsonrpc": "1.0", "id": "hashrig", "method": method, "params": params}).to_string();
        let resp = self
            .http
            .post(&url)
            .basic_auth(user, Some(password))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(limit)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized { url });
        }
        let body = resp.bytes().await.map_err(transport)?;
        let v: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) if !status.is_success() => {
                return Err(Error::HttpStatus { url, method: method.to_owned(), status: status.as_u16(), body: quote(&body) });
            }
            Err(e) => return Err(Error::Http { url, why: format!("HTTP {status}, body is not JSON ({e}): {}", quote(&body)) }),
        };
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(Error::Rpc {
                method: method.to_owned(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err.get("message").and_then(Value::as_str).unwrap_or("(no message)").to_owned(),
            });
        }
        if !status.is_success() {
            return Err(Error::HttpStatus { url, method: method.to_owned(), status: status.as_u16(), body: quote(&body) });
        }
        // A reply without a `result` member is not an answer (for submitblock, `null` means
        // accepted, so a missing one must not pass for it).
        match v.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(Error::Http { url, why: format!("JSON without a `result` member: {}", quote(&body)) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_not_in_debug_output() {
        let c = RpcClient::new("http://127.0.0.1:18443".parse().unwrap(), Auth::UserPass { user: "u".into(), password: "hunter2".into() });
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn cookie_files_split_at_the_first_colon_and_are_read_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".cookie");
        std::fs::write(&p, "__cookie__:ab:cd\n").unwrap();
        let c = RpcClient::new("http://127.0.0.1:18443".parse().unwrap(), Auth::Cookie(p.clone()));
        assert_eq!(c.credentials().unwrap(), ("__cookie__".to_owned(), "ab:cd".to_owned()));
        std::fs::write(&p, "__cookie__:ef").unwrap();
        assert_eq!(c.credentials().unwrap().1, "ef");
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(c.credentials(), Err(Error::Cookie { .. })));
    }

    /// Found by the `node_url` fuzz target (crates/node/fuzz): `http:0/27.0.0.1:8332` was taken as
    /// host `http`, port 0, though the error message promises a port from 1 to 65535.
    #[test]
    fn port_zero_is_refused() {
        for url in ["http:0/27.0.0.1:8332", "http://127.0.0.1:0", "localhost:0/"] {
            let e = url.parse::<NodeUrl>().unwrap_err();
            assert!(e.to_string().contains("port is not a number from 1 to 65535"), "{url}: {e}");
        }
        assert_eq!("http://127.0.0.1:1".parse::<NodeUrl>().unwrap().port, 1);
    }

    #[test]
    fn long_bodies_are_quoted_short() {
        assert_eq!(quote(b"  Work queue depth exceeded\r\n"), "Work queue depth exceeded");
        let q = quote("é".repeat(500).as_bytes());
        assert_eq!(q.chars().count(), QUOTE + 1);
    }
}
