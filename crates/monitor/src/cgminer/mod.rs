//! cgminer's RPC API (the one pyasic, Home Assistant integrations and rig monitors speak), over
//! a [`RunView`].
//!
//! Wire facts we follow (cgminer `api.c` and its API-README): one request per TCP connection,
//! read in one go (at most 8 KiB); a request starting with `{` is JSON
//! (`{"command":"summary","parameter":"0"}`), anything else is the plain form
//! (`summary`, `pools|0`: command, then `|` and the parameter). The reply is the whole answer
//! followed by one NUL byte, then the connection closes. JSON replies are
//! `{"STATUS":[{"STATUS":"S","When":..,"Code":11,"Msg":"Summary","Description":".."}],"SUMMARY":[{..}],"id":1}`;
//! plain replies are `|`-ended sections of `,`-separated `Name=Value` pairs
//! (`STATUS=S,When=..,Code=11,Msg=Summary,Description=..|SUMMARY,Elapsed=10,MHS av=1.00|`).
//! JSON commands joined with `+` (`summary+devs`) answer `{"summary":[{..}],"devs":[{..}]}`.
//!
//! Limits (so that slow or idle clients cannot hold the API): each connection has one deadline
//! for its whole request, counted from accept ([`ApiConfig::read_timeout`], 2 s by default; a
//! client trickling a byte at a time does not extend it), then at most [`WRITE_GRACE`] to take
//! the reply and [`LINGER`] to close; at most [`ApiConfig::max_connections`] (64 by default) are
//! served at once, and a connection past that is closed at once (logged, at most once every
//! 10 s with the count), never queued.
//!
//! Write commands (`switchpool`, `enablepool`, `disablepool`, `ascenable`, `ascdisable`,
//! `quit`) run only for peers with write access and only through the [`Actions`] the caller
//! provides; everyone else gets cgminer's code 45 "Access denied".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::access::Level;
use crate::view::RunView;

mod records;
mod server;

use records::*;
pub use server::{ApiConfig, ApiServer};

/// The API version we report (cgminer 4.x reports 3.7).
pub const API_VERSION: &str = "3.7";
/// Largest request we read; cgminer reads at most 8 KiB too.
pub const MAX_REQUEST: usize = 8192;
/// Default deadline for a whole request, from accept to its last byte.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Default number of connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Time a client gets to take the reply, after the request deadline at the latest.
pub const WRITE_GRACE: Duration = Duration::from_secs(1);
/// Time we keep reading (and dropping) what a client still sends after the reply, so that
/// closing does not reset the connection before it has read the reply.
pub const LINGER: Duration = Duration::from_millis(200);

// cgminer's status codes (api.c), the ones we answer with.
const MSG_POOL: u32 = 7;
const MSG_NOPOOL: u32 = 8;
const MSG_DEVS: u32 = 9;
const MSG_NODEVS: u32 = 10;
const MSG_SUMM: u32 = 11;
pub(super) const MSG_INVCMD: u32 = 14;
const MSG_VERSION: u32 = 22;
const MSG_INVJSON: u32 = 23;
const MSG_MISCMD: u32 = 24;
const MSG_MISPID: u32 = 25;
const MSG_INVPID: u32 = 26;
const MSG_SWITCHP: u32 = 27;
const MSG_MINECONFIG: u32 = 33;
const MSG_ACCDENY: u32 = 45;
const MSG_ACCOK: u32 = 46;
const MSG_ENAPOOL: u32 = 47;
const MSG_DISPOOL: u32 = 48;
const MSG_DEVDETAILS: u32 = 69;
const MSG_MINESTATS: u32 = 70;
const MSG_MISID: u32 = 15;
const MSG_INVASC: u32 = 107;
const MSG_ASCENA: u32 = 110;
const MSG_ASCDIS: u32 = 111;
const MSG_BYE: u32 = 0;

/// What write commands can do to the running miner. Each returns false when the miner cannot
/// do it (the default), which the client sees as an error status.
pub trait Actions: Send + Sync {
    fn switch_pool(&self, _pool: u32) -> bool {
        false
    }
    fn set_pool_enabled(&self, _pool: u32, _enabled: bool) -> bool {
        false
    }
    fn set_device_enabled(&self, _device: u32, _enabled: bool) -> bool {
        false
    }
    /// Stop the run.
    fn quit(&self) -> bool {
        false
    }
}

/// A miner that supports no write command.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoActions;
impl Actions for NoActions {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    Success,
    Info,
    Error,
}

impl Severity {
    fn letter(self) -> &'static str {
        match self {
            Severity::Success => "S",
            Severity::Info => "I",
            Severity::Error => "E",
        }
    }
}

/// An ordered list of named values (cgminer keeps field order; so do we).
pub(super) type Fields = Vec<(String, Value)>;

/// One command's answer before encoding.
#[derive(Debug)]
pub(super) struct Reply {
    severity: Severity,
    code: u32,
    msg: String,
    /// The data section: its name (`SUMMARY`, `DEVS`, ...), whether plain entries start with
    /// the name (single-object sections) and the entries.
    section: Option<(&'static str, bool, Vec<Fields>)>,
}

impl Reply {
    fn ok(code: u32, msg: impl Into<String>, name: &'static str, named: bool, items: Vec<Fields>) -> Self {
        Reply { severity: Severity::Success, code, msg: msg.into(), section: Some((name, named, items)) }
    }

    fn status(severity: Severity, code: u32, msg: impl Into<String>) -> Self {
        Reply { severity, code, msg: msg.into(), section: None }
    }

    pub(super) fn error(code: u32, msg: impl Into<String>) -> Self {
        Self::status(Severity::Error, code, msg)
    }

    fn status_fields(&self, when: u64) -> Fields {
        vec![
            ("STATUS".into(), json!(self.severity.letter())),
            ("When".into(), json!(when)),
            ("Code".into(), json!(self.code)),
            ("Msg".into(), json!(self.msg)),
            ("Description".into(), json!(description())),
        ]
    }

    pub(super) fn to_json(&self, when: u64) -> String {
        let mut out = String::from("{\"STATUS\":[");
        out.push_str(&json_object(&self.status_fields(when)));
        out.push(']');
        if let Some((name, _, items)) = &self.section {
            out.push_str(&format!(",\"{name}\":["));
            let objs: Vec<String> = items.iter().map(json_object).collect();
            out.push_str(&objs.join(","));
            out.push(']');
        }
        out.push_str(",\"id\":1}");
        out
    }

    pub(super) fn to_plain(&self, when: u64) -> String {
        let mut out = plain_fields(&self.status_fields(when));
        out.push('|');
        if let Some((name, named, items)) = &self.section {
            for item in items {
                if *named {
                    out.push_str(name);
                    if !item.is_empty() {
                        out.push(',');
                    }
                }
                out.push_str(&plain_fields(item));
                out.push('|');
            }
        }
        out
    }
}

pub(super) fn description() -> String {
    format!("hashrig {}", env!("CARGO_PKG_VERSION"))
}

fn json_object(fields: &Fields) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn plain_fields(fields: &Fields) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                // 4520000.0 prints as 4520000, 0.25 as 0.25.
                Value::Number(n) if n.is_f64() => n.as_f64().map(|x| x.to_string()).unwrap_or_default(),
                other => other.to_string(),
            };
            format!("{}={}", plain_escape(k), plain_escape(&v))
        })
        .collect();
    parts.join(",")
}

/// cgminer escapes `,`, `|`, `=` and `\` with a backslash in plain replies.
fn plain_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | '|' | '=' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Answer one request (the bytes one connection sent) for a peer with `level` access.
/// The returned bytes are what goes on the wire, NUL included.
pub fn respond(request: &[u8], view: &RunView, level: Level, actions: &dyn Actions) -> Vec<u8> {
    let mut out = handle(request, view, level, actions).into_bytes();
    out.push(0);
    out
}

fn handle(request: &[u8], view: &RunView, level: Level, actions: &dyn Actions) -> String {
    let when = now_unix();
    // Tolerate the trailing NUL or newline some clients send.
    let mut req = request;
    while let [rest @ .., last] = req {
        if matches!(last, 0 | b'\n' | b'\r' | b' ') { req = rest } else { break }
    }
    if req.first() == Some(&b'{') {
        let parsed: Result<Value, _> = serde_json::from_slice(req);
        let obj = match parsed {
            Ok(Value::Object(o)) => o,
            _ => return Reply::error(MSG_INVJSON, "Invalid JSON").to_json(when),
        };
        let command = match obj.get("command") {
            None => {
                return Reply::error(MSG_MISCMD, "Missing JSON 'command'").to_json(when);
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Reply::error(MSG_INVCMD, "Invalid command").to_json(when),
        };
        let param = match obj.get("parameter") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        if command.contains('+') {
            return joined(&command, view, level, when);
        }
        let reply = run(&command, param.as_deref(), view, level, actions);
        reply.to_json(when)
    } else {
        let text = match std::str::from_utf8(req) {
            Ok(t) => t,
            Err(_) => return Reply::error(MSG_INVCMD, "Invalid command").to_plain(when),
        };
        let (command, param) = match text.split_once('|') {
            Some((c, p)) => (c, Some(p)),
            None => (text, None),
        };
        let reply = if command.contains('+') {
            // cgminer joins JSON requests only.
            Reply::error(MSG_INVCMD, "Invalid command")
        } else {
            run(command, param, view, level, actions)
        };
        reply.to_plain(when)
    }
}

/// `summary+devs`: each read command's full reply under its name.
fn joined(commands: &str, view: &RunView, level: Level, when: u64) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let mut parts = Vec::new();
    for cmd in commands.split('+').filter(|c| !c.is_empty()) {
        if seen.contains(&cmd) {
            continue;
        }
        seen.push(cmd);
        let reply = if is_read_command(cmd) {
            run(cmd, None, view, level, &NoActions)
        } else if is_write_command(cmd) {
            // Write commands are not joinable (cgminer's rule too).
            Reply::error(MSG_ACCDENY, format!("Access denied to '{cmd}' command"))
        } else {
            Reply::error(MSG_INVCMD, "Invalid command")
        };
        parts.push(format!("{}:[{}]", Value::String(cmd.to_string()), reply.to_json(when)));
    }
    format!("{{{}}}", parts.join(","))
}

fn is_read_command(cmd: &str) -> bool {
    matches!(cmd, "summary" | "devs" | "pools" | "stats" | "version" | "config" | "devdetails")
}

fn is_write_command(cmd: &str) -> bool {
    matches!(
        cmd,
        "switchpool" | "enablepool" | "disablepool" | "ascenable" | "ascdisable" | "quit" | "privileged"
    )
}

fn run(command: &str, param: Option<&str>, view: &RunView, level: Level, actions: &dyn Actions) -> Reply {
    if is_write_command(command) && level < Level::Write {
        return Reply::error(MSG_ACCDENY, format!("Access denied to '{command}' command"));
    }
    match command {
        "summary" => Reply::ok(MSG_SUMM, "Summary", "SUMMARY", true, vec![summary(view)]),
        "devs" => {
            if view.devices.is_empty() {
                Reply::error(MSG_NODEVS, "No ASCs/GPUs/CPUs")
            } else {
                let msg = format!("{} ASC(s)", view.devices.len());
                Reply::ok(MSG_DEVS, msg, "DEVS", false, view.devices.iter().map(|d| dev(d, view)).collect())
            }
        }
        "pools" => {
            if view.pools.is_empty() {
                Reply::error(MSG_NOPOOL, "No pools")
            } else {
                let msg = format!("{} Pool(s)", view.pools.len());
                Reply::ok(MSG_POOL, msg, "POOLS", false, view.pools.iter().map(pool).collect())
            }
        }
        "stats" => Reply::ok(MSG_MINESTATS, "CGMiner stats", "STATS", false, stats(view)),
        "version" => {
            let mut fields = vec![f("hashrig", json!(env!("CARGO_PKG_VERSION"))), f("API", json!(API_VERSION))];
            fields.extend(version_record(view));
            Reply::ok(MSG_VERSION, "hashrig versions", "VERSION", true, vec![fields])
        }
        "config" => Reply::ok(MSG_MINECONFIG, "hashrig config", "CONFIG", true, vec![config(view, level)]),
        "devdetails" => Reply::ok(
            MSG_DEVDETAILS,
            "Device Details",
            "DEVDETAILS",
            false,
            view.devices.iter().enumerate().map(|(i, d)| devdetails(i, d)).collect(),
        ),
        "privileged" => Reply::status(Severity::Success, MSG_ACCOK, "Privileged access OK"),
        "switchpool" | "enablepool" | "disablepool" => pool_command(command, param, view, actions),
        "ascenable" | "ascdisable" => device_command(command, param, view, actions),
        "quit" => {
            if actions.quit() {
                Reply::status(Severity::Success, MSG_BYE, "BYE")
            } else {
                Reply::error(MSG_INVCMD, "quit is not supported by this run")
            }
        }
        _ => Reply::error(MSG_INVCMD, "Invalid command"),
    }
}

fn parse_id(param: Option<&str>) -> Option<Result<u32, ()>> {
    let p = param?.split(',').next()?.trim();
    if p.is_empty() {
        return None;
    }
    Some(p.parse::<u32>().map_err(|_| ()))
}

fn pool_command(command: &str, param: Option<&str>, view: &RunView, actions: &dyn Actions) -> Reply {
    let max = view.pools.len().saturating_sub(1);
    let id = match parse_id(param) {
        None => return Reply::error(MSG_MISPID, "Missing pool id parameter"),
        Some(Err(())) => return Reply::error(MSG_INVPID, format!("Invalid pool id - range is 0 - {max}")),
        Some(Ok(id)) => id,
    };
    let Some(p) = view.pools.iter().find(|p| p.id == id) else {
        return Reply::error(MSG_INVPID, format!("Invalid pool id {id} - range is 0 - {max}"));
    };
    let (done, code, verb) = match command {
        "switchpool" => (actions.switch_pool(id), MSG_SWITCHP, "Switching to"),
        "enablepool" => (actions.set_pool_enabled(id, true), MSG_ENAPOOL, "Enabling"),
        _ => (actions.set_pool_enabled(id, false), MSG_DISPOOL, "Disabling"),
    };
    if done {
        Reply::status(Severity::Success, code, format!("{verb} pool {id}:'{}'", p.url))
    } else {
        Reply::error(MSG_INVCMD, format!("{command} is not supported by this run"))
    }
}

fn device_command(command: &str, param: Option<&str>, view: &RunView, actions: &dyn Actions) -> Reply {
    let max = view.devices.len().saturating_sub(1);
    let id = match parse_id(param) {
        None => return Reply::error(MSG_MISID, "Missing device id parameter"),
        Some(Err(())) => return Reply::error(MSG_INVASC, format!("Invalid ASC id - range is 0 - {max}")),
        Some(Ok(id)) => id,
    };
    if !view.devices.iter().any(|d| d.id == id) {
        return Reply::error(MSG_INVASC, format!("Invalid ASC id {id} - range is 0 - {max}"));
    }
    let enable = command == "ascenable";
    if actions.set_device_enabled(id, enable) {
        let (code, verb) = if enable { (MSG_ASCENA, "sent enable message") } else { (MSG_ASCDIS, "set disable flag") };
        Reply::status(Severity::Info, code, format!("ASC {id} {verb}"))
    } else {
        Reply::error(
            MSG_INVCMD,
            format!("{command} is not supported by this run: it cannot pause or resume one device (quit stops the run)"),
        )
    }
}

pub(super) fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::*;

    fn view() -> RunView {
        RunView {
            mode: RunMode::Bench,
            elapsed_s: 60.0,
            hashrate: Rates { avg: 2.5e6, s5: 2.4e6, m1: 2.6e6 },
            hashes: 1.5e8,
            devices: vec![DeviceView { id: 0, kind: DeviceKind::Cpu, enabled: true, valid_nonces: 99, hw_errors: 1, ..Default::default() }],
            pools: vec![PoolView { id: 0, url: "stratum+tcp://pool.example:3333".into(), state: PoolState::Alive, active: true, ..Default::default() }],
            ..Default::default()
        }
    }

    fn text(b: Vec<u8>) -> String {
        assert_eq!(b.last(), Some(&0), "reply ends with NUL");
        String::from_utf8(b[..b.len() - 1].to_vec()).unwrap()
    }

    #[test]
    fn json_summary_has_cgminer_layout() {
        let r = text(respond(br#"{"command":"summary"}"#, &view(), Level::Read, &NoActions));
        let v: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["STATUS"][0]["STATUS"], "S");
        assert_eq!(v["STATUS"][0]["Code"], 11);
        assert_eq!(v["SUMMARY"][0]["MHS av"], 2.5);
        assert_eq!(v["SUMMARY"][0]["Hardware Errors"], 1);
        assert_eq!(v["SUMMARY"][0]["Device Hardware%"], 1.0);
        assert_eq!(v["id"], 1);
    }

    #[test]
    fn plain_pools_is_pipe_separated() {
        let r = text(respond(b"pools|0", &view(), Level::Read, &NoActions));
        let sections: Vec<&str> = r.split('|').collect();
        assert!(sections[0].starts_with("STATUS=S,When="), "{r}");
        assert!(sections[0].contains("Code=7,Msg=1 Pool(s)"), "{r}");
        assert!(sections[1].starts_with("POOL=0,URL=stratum+tcp://pool.example:3333,Status=Alive"), "{r}");
        assert_eq!(sections.last(), Some(&""), "ends with a separator");
    }

    #[test]
    fn plain_escapes_separators_in_values() {
        assert_eq!(plain_escape("a,b|c=d\\"), "a\\,b\\|c\\=d\\\\");
    }

    #[test]
    fn write_command_denied_without_write_access() {
        let r = text(respond(br#"{"command":"switchpool","parameter":0}"#, &view(), Level::Read, &NoActions));
        let v: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["STATUS"][0]["STATUS"], "E");
        assert_eq!(v["STATUS"][0]["Code"], 45);
    }

    #[test]
    fn joined_commands_nest_each_reply() {
        let r = text(respond(br#"{"command":"summary+devs"}"#, &view(), Level::Read, &NoActions));
        let v: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["summary"][0]["SUMMARY"][0]["MHS 5s"], 2.4);
        assert_eq!(v["devs"][0]["DEVS"][0]["CPU"], 0);
    }

    #[test]
    fn garbage_gets_error_status() {
        for req in [&b"{not json"[..], b"\xff\xfe", b"nosuchcommand", br#"{"parameter":1}"#, br#"{"command":5}"#] {
            let r = text(respond(req, &view(), Level::Read, &NoActions));
            assert!(r.contains("STATUS=E") || r.contains("\"STATUS\":\"E\""), "{r}");
        }
    }
}
