//! The wire form of Stratum v1: one JSON object per line, parsed into typed messages.
//!
//! Every server message has its own struct built with `TryFrom` from the JSON params; the wire
//! quirks live in small newtypes ([`HexU32`] for big-endian hex integers, [`PrevHash`] for the
//! word-swapped previous block hash; hex byte strings are checked as they are read). Anything that does not fit is a
//! [`ProtocolError`] naming the field, never a panic.

use std::fmt;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, TxMerkleNode};
use serde_json::Value;

/// Longest line we accept. A notify with a 16-level branch and a big coinbase is a few KiB;
/// anything past this is garbage or an attack and is discarded up to the next newline.
pub const MAX_LINE: usize = 64 * 1024;

/// Why a line from the pool was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("line of more than {limit} bytes discarded")]
    LineTooLong { limit: usize },
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("message is not a JSON object")]
    NotAnObject,
    #[error("`{method}`: field `{field}` is missing")]
    Missing { method: String, field: &'static str },
    #[error("`{method}`: field `{field}` should be {expected}, got {got}")]
    WrongType { method: String, field: &'static str, expected: &'static str, got: String },
    #[error("`{method}`: field `{field}` should be {want} hex characters, got {got}")]
    BadLength { method: String, field: &'static str, want: usize, got: usize },
    #[error("`{method}`: field `{field}` is not hex: {value:?}")]
    BadHex { method: String, field: &'static str, value: String },
    #[error("`{method}`: field `{field}` has an invalid value: {value}")]
    BadValue { method: String, field: &'static str, value: String },
    #[error("reply to request {id} that we did not send (or already answered)")]
    UnexpectedReply { id: String },
}

impl ProtocolError {
    /// A short stable name for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            ProtocolError::LineTooLong { .. } => "line_too_long",
            ProtocolError::InvalidJson(_) => "invalid_json",
            ProtocolError::NotAnObject => "not_an_object",
            ProtocolError::Missing { .. } => "missing_field",
            ProtocolError::WrongType { .. } => "wrong_type",
            ProtocolError::BadLength { .. } => "bad_length",
            ProtocolError::BadHex { .. } => "bad_hex",
            ProtocolError::BadValue { .. } => "bad_value",
            ProtocolError::UnexpectedReply { .. } => "unexpected_reply",
        }
    }
}

fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a bool".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Helper to read positional params with errors naming the method and field.
struct Params<'a> {
    method: &'a str,
    params: &'a [Value],
}

impl<'a> Params<'a> {
    fn get(&self, i: usize, field: &'static str) -> Result<&'a Value, ProtocolError> {
        self.params.get(i).ok_or_else(|| ProtocolError::Missing { method: self.method.into(), field })
    }
    fn wrong(&self, field: &'static str, expected: &'static str, got: &Value) -> ProtocolError {
        ProtocolError::WrongType { method: self.method.into(), field, expected, got: type_name(got) }
    }
    fn str(&self, i: usize, field: &'static str) -> Result<&'a str, ProtocolError> {
        let v = self.get(i, field)?;
        v.as_str().ok_or_else(|| self.wrong(field, "a string", v))
    }
    fn hex(&self, i: usize, field: &'static str) -> Result<Vec<u8>, ProtocolError> {
        let s = self.str(i, field)?;
        hex_decode(self.method, field, s)
    }
}

fn hex_decode(method: &str, field: &'static str, s: &str) -> Result<Vec<u8>, ProtocolError> {
    hex::decode(s).map_err(|_| ProtocolError::BadHex { method: method.into(), field, value: truncate(s) })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A 32-bit integer written as exactly 8 big-endian hex characters (`"20000004"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HexU32(pub u32);

impl HexU32 {
    fn parse(method: &str, field: &'static str, s: &str) -> Result<Self, ProtocolError> {
        if s.len() != 8 {
            return Err(ProtocolError::BadLength { method: method.into(), field, want: 8, got: s.len() });
        }
        // from_str_radix takes a leading '+': the field is hex digits only.
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProtocolError::BadHex { method: method.into(), field, value: truncate(s) });
        }
        u32::from_str_radix(s, 16)
            .map(HexU32)
            .map_err(|_| ProtocolError::BadHex { method: method.into(), field, value: truncate(s) })
    }
}

impl TryFrom<&str> for HexU32 {
    type Error = ProtocolError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse("hex u32", "value", s)
    }
}

impl fmt::Display for HexU32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// The previous block hash as `mining.notify` sends it: the 32 header bytes cut into eight
/// 4-byte words, each word's bytes reversed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrevHash(pub BlockHash);

impl PrevHash {
    /// From the 64 hex characters of the wire form.
    pub fn from_stratum_hex(s: &str) -> Result<Self, ProtocolError> {
        Self::parse("mining.notify", "prevhash", s)
    }

    fn parse(method: &str, field: &'static str, s: &str) -> Result<Self, ProtocolError> {
        if s.len() != 64 {
            return Err(ProtocolError::BadLength { method: method.into(), field, want: 64, got: s.len() });
        }
        let wire = hex_decode(method, field, s)?;
        let mut internal = [0u8; 32];
        for (dst, src) in internal.chunks_exact_mut(4).zip(wire.chunks_exact(4)) {
            dst.copy_from_slice(&[src[3], src[2], src[1], src[0]]);
        }
        Ok(PrevHash(BlockHash::from_byte_array(internal)))
    }

    /// The wire form (for scripted pools and tests).
    pub fn to_stratum_hex(&self) -> String {
        let internal = self.0.to_byte_array();
        let mut wire = [0u8; 32];
        for (dst, src) in wire.chunks_exact_mut(4).zip(internal.chunks_exact(4)) {
            dst.copy_from_slice(&[src[3], src[2], src[1], src[0]]);
        }
        hex::encode(wire)
    }
}

/// `mining.notify`: a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub job_id: String,
    pub prev_hash: PrevHash,
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    /// Internal byte order, used as sent.
    pub merkle_branch: Vec<TxMerkleNode>,
    pub version: HexU32,
    pub nbits: HexU32,
    pub ntime: HexU32,
    /// Read from the last param: some pools send extra params before it.
    pub clean_jobs: bool,
}

impl TryFrom<&[Value]> for Notify {
    type Error = ProtocolError;
    fn try_from(params: &[Value]) -> Result<Self, Self::Error> {
        let method = "mining.notify";
        let p = Params { method, params };
        if params.len() < 9 {
            return Err(ProtocolError::Missing { method: method.into(), field: "clean_jobs (9 params needed)" });
        }
        let job_id = match p.get(0, "job_id")? {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(p.wrong("job_id", "a non-empty string", other)),
        };
        let prev_hash = PrevHash::parse(method, "prevhash", p.str(1, "prevhash")?)?;
        let coinb1 = p.hex(2, "coinb1")?;
        let coinb2 = p.hex(3, "coinb2")?;
        let branch_v = p.get(4, "merkle_branch")?;
        let branch_a = branch_v.as_array().ok_or_else(|| p.wrong("merkle_branch", "an array", branch_v))?;
        let mut merkle_branch = Vec::with_capacity(branch_a.len());
        for b in branch_a {
            let s = b.as_str().ok_or_else(|| p.wrong("merkle_branch", "an array of strings", b))?;
            if s.len() != 64 {
                return Err(ProtocolError::BadLength { method: method.into(), field: "merkle_branch", want: 64, got: s.len() });
            }
            let bytes: [u8; 32] = hex_decode(method, "merkle_branch", s)?
                .try_into()
                .expect("64 hex characters decode to 32 bytes");
            merkle_branch.push(TxMerkleNode::from_byte_array(bytes));
        }
        let version = HexU32::parse(method, "version", p.str(5, "version")?)?;
        let nbits = HexU32::parse(method, "nbits", p.str(6, "nbits")?)?;
        let ntime = HexU32::parse(method, "ntime", p.str(7, "ntime")?)?;
        let last = params.last().expect("at least 9 params");
        let clean_jobs = last.as_bool().ok_or_else(|| p.wrong("clean_jobs", "a bool", last))?;
        Ok(Notify { job_id, prev_hash, coinb1, coinb2, merkle_branch, version, nbits, ntime, clean_jobs })
    }
}

/// `mining.set_difficulty`: share difficulty for the next job. May be fractional.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SetDifficulty(pub f64);

impl TryFrom<&[Value]> for SetDifficulty {
    type Error = ProtocolError;
    fn try_from(params: &[Value]) -> Result<Self, Self::Error> {
        let p = Params { method: "mining.set_difficulty", params };
        let v = p.get(0, "difficulty")?;
        let d = v.as_f64().ok_or_else(|| p.wrong("difficulty", "a number", v))?;
        if !(d > 0.0 && d.is_finite()) {
            return Err(ProtocolError::BadValue { method: p.method.into(), field: "difficulty", value: d.to_string() });
        }
        Ok(SetDifficulty(d))
    }
}

/// `mining.set_extranonce`: new extranonce1 and extranonce2 size, from the next job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetExtranonce {
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
}

fn extranonce2_size(p: &Params<'_>, i: usize) -> Result<usize, ProtocolError> {
    let v = p.get(i, "extranonce2_size")?;
    let n = v.as_u64().ok_or_else(|| p.wrong("extranonce2_size", "an integer", v))?;
    // 0 leaves nothing to roll; more than 32 bytes is not something any pool sends.
    if !(1..=32).contains(&n) {
        return Err(ProtocolError::BadValue { method: p.method.into(), field: "extranonce2_size", value: n.to_string() });
    }
    Ok(n as usize)
}

impl TryFrom<&[Value]> for SetExtranonce {
    type Error = ProtocolError;
    fn try_from(params: &[Value]) -> Result<Self, Self::Error> {
        let p = Params { method: "mining.set_extranonce", params };
        Ok(SetExtranonce { extranonce1: p.hex(0, "extranonce1")?, extranonce2_size: extranonce2_size(&p, 1)? })
    }
}

/// `mining.set_version_mask`: the pool changes the version-rolling mask, effective now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetVersionMask(pub u32);

impl TryFrom<&[Value]> for SetVersionMask {
    type Error = ProtocolError;
    fn try_from(params: &[Value]) -> Result<Self, Self::Error> {
        let p = Params { method: "mining.set_version_mask", params };
        Ok(SetVersionMask(HexU32::parse(p.method, "mask", p.str(0, "mask")?)?.0))
    }
}

/// `client.reconnect`: `[host, port, wait_seconds]`, all optional (wait capped at an hour).
/// The client reconnects to the pool it has configured and does not follow `host`/`port`
/// elsewhere (see `client.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconnect {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub wait_seconds: u64,
}

impl TryFrom<&[Value]> for Reconnect {
    type Error = ProtocolError;
    fn try_from(params: &[Value]) -> Result<Self, Self::Error> {
        let p = Params { method: "client.reconnect", params };
        let host = match params.first() {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(p.wrong("host", "a string", other)),
        };
        let port = match params.get(1) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => s.parse().ok(),
            Some(other) => return Err(p.wrong("port", "a number or string", other)),
        };
        let wait_seconds = match params.get(2) {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0).min(3600),
            Some(Value::String(s)) => s.parse().unwrap_or(0).min(3600),
            _ => 0,
        };
        Ok(Reconnect { host, port, wait_seconds })
    }
}

/// The reply to `mining.subscribe`: `[subscriptions, extranonce1, extranonce2_size]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeResult {
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
}

impl TryFrom<&Value> for SubscribeResult {
    type Error = ProtocolError;
    fn try_from(result: &Value) -> Result<Self, Self::Error> {
        let method = "mining.subscribe result";
        let arr = result.as_array().ok_or_else(|| ProtocolError::WrongType {
            method: method.into(),
            field: "result",
            expected: "an array",
            got: type_name(result),
        })?;
        let p = Params { method, params: arr };
        Ok(SubscribeResult { extranonce1: p.hex(1, "extranonce1")?, extranonce2_size: extranonce2_size(&p, 2)? })
    }
}

/// The reply to `mining.configure` for version rolling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigureResult {
    /// The mask the pool grants, `None` when it refused version rolling.
    pub version_rolling_mask: Option<u32>,
}

impl TryFrom<&Value> for ConfigureResult {
    type Error = ProtocolError;
    fn try_from(result: &Value) -> Result<Self, Self::Error> {
        let method = "mining.configure result";
        let obj = result.as_object().ok_or_else(|| ProtocolError::WrongType {
            method: method.into(),
            field: "result",
            expected: "an object",
            got: type_name(result),
        })?;
        let on = obj.get("version-rolling").and_then(Value::as_bool).unwrap_or(false);
        if !on {
            return Ok(ConfigureResult { version_rolling_mask: None });
        }
        let mask = match obj.get("version-rolling.mask") {
            Some(Value::String(s)) => HexU32::parse(method, "version-rolling.mask", s)?.0,
            Some(other) => {
                return Err(ProtocolError::WrongType {
                    method: method.into(),
                    field: "version-rolling.mask",
                    expected: "a hex string",
                    got: type_name(other),
                });
            }
            None => return Err(ProtocolError::Missing { method: method.into(), field: "version-rolling.mask" }),
        };
        Ok(ConfigureResult { version_rolling_mask: Some(mask) })
    }
}

/// An error as pools send it: `[code, "message", traceback]`, a bare string, or an object
/// with `code`/`message`; `reject-reason` next to `result:false` is folded in too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StratumError {
    pub code: Option<i64>,
    pub message: String,
}

impl StratumError {
    /// From the `error` member, or `None` when it is null/absent.
    pub fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => None,
            Value::Array(a) => Some(StratumError {
                code: a.first().and_then(Value::as_i64),
                message: a.get(1).and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| v.to_string()),
            }),
            Value::String(s) => Some(StratumError { code: None, message: s.clone() }),
            Value::Object(o) => Some(StratumError {
                code: o.get("code").and_then(Value::as_i64),
                message: o.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| v.to_string()),
            }),
            other => Some(StratumError { code: None, message: other.to_string() }),
        }
    }

    /// A short reason for counting rejects ("job not found", "duplicate", ...).
    pub fn reason(&self) -> String {
        let m = self.message.trim();
        if m.is_empty() {
            match self.code {
                Some(21) => "job not found".into(),
                Some(22) => "duplicate share".into(),
                Some(23) => "low difficulty share".into(),
                Some(24) => "unauthorized worker".into(),
                Some(25) => "not subscribed".into(),
                Some(c) => format!("error {c}"),
                None => "unknown".into(),
            }
        } else {
            sanitize_reason(m)
        }
    }
}

/// The longest reason [`sanitize_reason`] gives, in characters.
pub const MAX_REASON_CHARS: usize = 120;

/// Make text a pool sent safe to print on a terminal and to use as a metric label: control
/// characters (ESC, BEL, CR, LF, ...) and the invisible bidi/format characters that can
/// reorder or hide text are written as `\u{..}` escapes, surrounding whitespace is trimmed,
/// and the result is cut to [`MAX_REASON_CHARS`] characters (ending in `…` when cut). Idempotent.
pub fn sanitize_reason(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.trim().chars() {
        let hidden = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
        if c.is_control() || hidden {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    if out.chars().count() > MAX_REASON_CHARS {
        out = out.chars().take(MAX_REASON_CHARS - 1).collect();
        out.push('…');
    }
    out
}

/// A reply to one of our requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub id: u64,
    pub result: Value,
    pub error: Option<StratumError>,
}

impl Reply {
    /// Did the pool say yes? (`result` true or a non-false value, and no error.)
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && !matches!(self.result, Value::Bool(false) | Value::Null)
    }
}

/// A message from the pool.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    Reply(Reply),
    Notify(Notify),
    SetDifficulty(SetDifficulty),
    SetExtranonce(SetExtranonce),
    SetVersionMask(SetVersionMask),
    Reconnect(Reconnect),
    /// `mining.ping`: answer with "pong".
    Ping { id: Value },
    /// `client.get_version`: answer with our agent string.
    GetVersion { id: Value },
    ShowMessage(String),
    /// A method we do not handle; logged and ignored (answered with an error if it has an id).
    Unknown { id: Value, method: String },
}

/// Parse one line (without its newline) from the pool.
pub fn parse_line(line: &str) -> Result<ServerMessage, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::LineTooLong { limit: MAX_LINE });
    }
    let v: Value = serde_json::from_str(line).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    let obj = v.as_object().ok_or(ProtocolError::NotAnObject)?;
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    match obj.get("method") {
        Some(Value::String(method)) => {
            let empty = Vec::new();
            let params = match obj.get("params") {
                Some(Value::Array(a)) => a,
                None | Some(Value::Null) => &empty,
                Some(other) => {
                    return Err(ProtocolError::WrongType {
                        method: method.clone(),
                        field: "params",
                        expected: "an array",
                        got: type_name(other),
                    });
                }
            };
            let params = params.as_slice();
            Ok(match method.as_str() {
                "mining.notify" => ServerMessage::Notify(Notify::try_from(params)?),
                "mining.set_difficulty" => ServerMessage::SetDifficulty(SetDifficulty::try_from(params)?),
                "mining.set_extranonce" => ServerMessage::SetExtranonce(SetExtranonce::try_from(params)?),
                "mining.set_version_mask" => ServerMessage::SetVersionMask(SetVersionMask::try_from(params)?),
                "client.reconnect" => ServerMessage::Reconnect(Reconnect::try_from(params)?),
                "mining.ping" => ServerMessage::Ping { id },
                "client.get_version" => ServerMessage::GetVersion { id },
                "client.show_message" => ServerMessage::ShowMessage(
                    params.first().and_then(Value::as_str).unwrap_or_default().chars().take(500).collect(),
                ),
                _ => ServerMessage::Unknown { id, method: method.chars().take(100).collect() },
            })
        }
        Some(other) => Err(ProtocolError::WrongType {
            method: "(message)".into(),
            field: "method",
            expected: "a string",
            got: type_name(other),
        }),
        None => {
            let id_num = match &id {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            let Some(id_num) = id_num else {
                return Err(ProtocolError::UnexpectedReply { id: id.to_string() });
            };
            let result = obj.get("result").cloned().unwrap_or(Value::Null);
            let mut error = obj.get("error").and_then(StratumError::from_value);
            if error.is_none()
                && matches!(result, Value::Bool(false) | Value::Null)
                && let Some(reason) = obj.get("reject-reason").and_then(Value::as_str)
            {
                error = Some(StratumError { code: None, message: reason.to_owned() });
            }
            Ok(ServerMessage::Reply(Reply { id: id_num, result, error }))
        }
    }
}

/// Build a request line (with its trailing newline).
pub fn request(id: u64, method: &str, params: Value) -> String {
    let mut s = serde_json::json!({"id": id, "method": method, "params": params}).to_string();
    s.push('\n');
    s
}

/// Build a reply line to a server request (with its trailing newline).
pub fn reply(id: &Value, result: Value, error: Value) -> String {
    let mut s = serde_json::json!({"id": id, "result": result, "error": error}).to_string();
    s.push('\n');
    s
}
