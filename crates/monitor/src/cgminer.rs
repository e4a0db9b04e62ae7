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

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::access::{Access, Level};
use crate::view::{DeviceView, PoolView, RunView, SharedView, percent};
use crate::Error;

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
const MSG_INVCMD: u32 = 14;
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
type Fields = Vec<(String, Value)>;

/// One command's answer before encoding.
#[derive(Debug)]
struct Reply {
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

    fn error(code: u32, msg: impl Into<String>) -> Self {
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

    fn to_json(&self, when: u64) -> String {
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

    fn to_plain(&self, when: u64) -> String {
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

fn description() -> String {
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

/// A finite JSON number (NaN and infinities become 0: JSON has no such numbers).
fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { json!(0.0) }
}

/// A rate in MH/s, rounded as cgminer prints it (2 decimals is too coarse for CPUs: keep 3).
fn mhs(hs: f64) -> Value {
    num((hs / 1e6 * 1000.0).round() / 1000.0)
}

/// A rate in GH/s, as bmminer and Bitmain's cgminer builds report it (and pyasic reads it);
/// 6 decimals so a CPU's few MH/s do not round to 0.
fn ghs(hs: f64) -> Value {
    num((hs / 1e9 * 1e6).round() / 1e6)
}

/// The software record that Bitmain's cgminer builds put in `version` and first in `stats`
/// (`{"CGMiner":"4.9.0","Miner":"1.0.1.3","CompileTime":"..","Type":"Antminer L3+"}`); pyasic's
/// CGMiner backend reads `VERSION[0]["CGMiner"]` as the firmware version. We name ourselves
/// there rather than claim a cgminer version.
fn version_record(view: &RunView) -> Fields {
    vec![
        f("CGMiner", json!(description())),
        f("Miner", json!(env!("CARGO_PKG_VERSION"))),
        f("CompileTime", json!("")),
        f("Type", json!(format!("hashrig {}", view.mode).trim_end())),
    ]
}

fn f(name: &str, v: Value) -> (String, Value) {
    (name.to_string(), v)
}

/// "sell power" -> "Sell Power": an alternative's name as a field name.
fn title_case(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|first| first.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
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

fn summary(v: &RunView) -> Fields {
    let s = &v.shares;
    let minutes = v.elapsed_s / 60.0;
    let diff_total = s.difficulty_accepted + s.difficulty_rejected + s.difficulty_stale;
    let mut out = vec![
        f("Elapsed", json!(v.elapsed_s.max(0.0) as u64)),
        f("MHS av", mhs(v.hashrate.avg)),
        f("MHS 5s", mhs(v.hashrate.s5)),
        f("MHS 1m", mhs(v.hashrate.m1)),
        // bmminer / Bitmain cgminer builds report GH/s; pyasic reads "GHS 5s".
        f("GHS 5s", ghs(v.hashrate.s5)),
        f("GHS av", ghs(v.hashrate.avg)),
        f("Found Blocks", json!(v.blocks_found)),
        f("Accepted", json!(s.accepted)),
        f("Rejected", json!(s.rejected)),
        f("Hardware Errors", json!(v.hw_errors())),
        f("Utility", num(if minutes > 0.0 { s.accepted as f64 / minutes } else { 0.0 })),
        f("Stale", json!(s.stale)),
        f("Total MH", num(v.hashes / 1e6)),
        f("Diff1 Work", json!(v.valid_nonces())),
        f("Difficulty Accepted", num(s.difficulty_accepted)),
        f("Difficulty Rejected", num(s.difficulty_rejected)),
        f("Difficulty Stale", num(s.difficulty_stale)),
        f("Best Share", num(v.best_share)),
        f("Device Hardware%", num(v.hw_error_percent())),
        f("Device Rejected%", num(percent(s.rejected, s.accepted + s.rejected + s.stale))),
        f("Pool Rejected%", num(if diff_total > 0.0 { s.difficulty_rejected * 100.0 / diff_total } else { 0.0 })),
        f("Pool Stale%", num(if diff_total > 0.0 { s.difficulty_stale * 100.0 / diff_total } else { 0.0 })),
    ];
    if let Some(p) = &v.power {
        out.push(f("Power", num(p.watts)));
        out.push(f("Power Source", json!(p.source)));
    }
    if let Some(j) = v.j_per_th {
        out.push(f("J/TH", num(j)));
    }
    // hashrig's live economics (not in cgminer), in the currency named.
    if let Some(e) = &v.economics {
        out.push(f("Currency", json!(e.currency)));
        out.push(f("Network Difficulty", num(e.network_difficulty)));
        out.push(f("Power Price", num(e.power_price_kwh)));
        out.push(f("Revenue Per Day", num(e.revenue_per_day)));
        if let Some(h) = e.hashprice_per_ph_day {
            out.push(f("Hashprice", num(h)));
        }
        if let Some(c) = e.cost_per_day {
            out.push(f("Power Cost Per Day", num(c)));
        }
        if let Some(p) = e.profit_per_day.or(e.cost_per_day.map(|c| e.revenue_per_day - c)) {
            out.push(f("Profit Per Day", num(p)));
        }
        if let Some(b) = e.break_even_power_price_kwh {
            out.push(f("Break Even Power Price", num(b)));
        }
        if let Some(b) = e.break_even_hashprice_per_ph_day {
            out.push(f("Break Even Hashprice", num(b)));
        }
        for a in &e.alternatives {
            out.push(f(&format!("{} Profit Per Day", title_case(&a.name)), num(a.profit_per_day)));
        }
        if let Some(b) = &e.best {
            out.push(f("Best Use", json!(b)));
        }
    }
    // hashrig's share ledger (not in cgminer): found = accepted + rejected + stale + in flight.
    if let Some(l) = &v.ledger {
        out.push(f("Shares Found", json!(l.found)));
        out.push(f("Shares In Flight", json!(l.in_flight)));
        out.push(f("Ledger Stale", json!(l.stale)));
        out.push(f("Ledger Reconciles", json!(l.reconciles)));
    }
    // hashrig's curtailment on a live power price (not in cgminer).
    if let Some(c) = &v.curtail {
        out.push(f("Curtailed", json!(c.curtailed)));
        out.push(f("Curtailed Seconds", num(c.curtailed_s)));
        out.push(f("Curtail Cost Avoided", num(c.cost_avoided_usd)));
        out.push(f("Power Price", c.price_usd_kwh.map_or(json!(null), num)));
        out.push(f("Curtail Above", c.threshold_usd_kwh.map_or(json!(null), num)));
        out.push(f("Power Price Errors", json!(c.price_errors)));
    }
    out
}

fn dev_key(d: &DeviceView) -> &'static str {
    match d.kind.as_str() {
        "gpu" => "GPU",
        "cpu" => "CPU",
        _ => "ASC",
    }
}

fn dev(d: &DeviceView, v: &RunView) -> Fields {
    let max_temp = d.temperatures.iter().map(|t| t.celsius).fold(f64::NAN, f64::max);
    let minutes = v.elapsed_s / 60.0;
    let mut out = vec![
        f(dev_key(d), json!(d.id)),
        f("Name", json!(d.kind.to_uppercase())),
        f("ID", json!(d.id)),
        f("Enabled", json!(if d.enabled { "Y" } else { "N" })),
        f("Status", json!(if d.enabled { "Alive" } else { "Disabled" })),
        f("Temperature", num(if max_temp.is_nan() { 0.0 } else { max_temp })),
        f("MHS av", mhs(d.hashrate.avg)),
        f("MHS 5s", mhs(d.hashrate.s5)),
        f("MHS 1m", mhs(d.hashrate.m1)),
        f("Accepted", json!(d.accepted)),
        f("Rejected", json!(d.rejected)),
        f("Hardware Errors", json!(d.hw_errors)),
        f("Utility", num(if minutes > 0.0 { d.accepted as f64 / minutes } else { 0.0 })),
        f("Last Share Time", json!(d.last_share_unix.unwrap_or(0))),
        f("Total MH", num(d.hashes / 1e6)),
        f("Diff1 Work", json!(d.valid_nonces)),
        f("Difficulty Accepted", num(d.difficulty_accepted)),
        f("Difficulty Rejected", num(d.difficulty_rejected)),
        f("Stale", json!(d.stale)),
        f("Best Share", num(d.best_share)),
        f("Device Hardware%", num(d.hw_error_percent())),
        f("Device Rejected%", num(percent(d.rejected, d.accepted + d.rejected + d.stale))),
        f("Device Elapsed", json!(v.elapsed_s.max(0.0) as u64)),
        f("Kernel", json!(d.kernel)),
    ];
    if let Some(n) = d.nominal_hashrate {
        out.push(f("Nominal MHS", mhs(n)));
    }
    if !d.chips.is_empty() {
        out.push(f("Chips", json!(d.chips.len())));
    }
    out
}

fn pool(p: &PoolView) -> Fields {
    let s = &p.shares;
    let stratum = p.url.starts_with("stratum");
    let diff_total = s.difficulty_accepted + s.difficulty_rejected + s.difficulty_stale;
    vec![
        f("POOL", json!(p.id)),
        f("URL", json!(p.url)),
        f("Status", json!(p.state.cgminer_status())),
        f("Priority", json!(p.priority)),
        f("Quota", json!(1)),
        f("Long Poll", json!("N")),
        f("Accepted", json!(s.accepted)),
        f("Rejected", json!(s.rejected)),
        f("Stale", json!(s.stale)),
        f("User", json!(p.user)),
        f("Last Share Time", json!(p.last_share_unix.unwrap_or(0))),
        f("Difficulty Accepted", num(s.difficulty_accepted)),
        f("Difficulty Rejected", num(s.difficulty_rejected)),
        f("Difficulty Stale", num(s.difficulty_stale)),
        f("Work Difficulty", num(p.difficulty)),
        f("Has Stratum", json!(stratum)),
        f("Stratum Active", json!(stratum && p.active && p.state == crate::PoolState::Alive)),
        f("Stratum URL", json!(if stratum { p.url.split("://").nth(1).unwrap_or("") } else { "" })),
        f("Stratum Difficulty", num(if stratum { p.difficulty } else { 0.0 })),
        f("Has GBT", json!(!stratum)),
        f("Best Share", num(p.best_share)),
        f("Pool Rejected%", num(if diff_total > 0.0 { s.difficulty_rejected * 100.0 / diff_total } else { 0.0 })),
        f("Pool Stale%", num(if diff_total > 0.0 { s.difficulty_stale * 100.0 / diff_total } else { 0.0 })),
        f("Current Block Height", json!(p.block_height.unwrap_or(0))),
        // hashrig's: stratum (v1), stratum2 (V2) or gbt, and the V2 channel kind
        f("Protocol", json!(p.protocol())),
        f("Channel", json!(p.channel.as_deref().unwrap_or(""))),
    ]
}

/// `stats` in the layout of Bitmain's cgminer/bmminer builds, which is what pyasic and rig
/// monitors parse: `STATS[0]` is the software record, `STATS[1]` the whole miner (`Elapsed`,
/// `GHS 5s`, `GHS av`, and per ASIC chain `i` from 1: `chain_acn{i}` chips, `chain_acs{i}` chip
/// states, `chain_hw{i}`, `chain_rate{i}` in GH/s, `temp{i}`), then one record per device with
/// our per-chip and per-core counts.
fn stats(v: &RunView) -> Vec<Fields> {
    let elapsed = json!(v.elapsed_s.max(0.0) as u64);
    let mut out = vec![version_record(v)];
    let asics: Vec<&DeviceView> = v.devices.iter().filter(|d| !d.chips.is_empty()).collect();
    let mut miner = vec![
        f("STATS", json!(0)),
        f("ID", json!("HASHRIG0")),
        f("Elapsed", elapsed.clone()),
        f("Calls", json!(0)),
        f("Wait", num(0.0)),
        f("Max", num(0.0)),
        f("Min", num(99999999.0)),
        f("GHS 5s", ghs(v.hashrate.s5)),
        f("GHS av", ghs(v.hashrate.avg)),
        f("miner_count", json!(asics.len())),
    ];
    let temps: Vec<(usize, f64)> = asics
        .iter()
        .enumerate()
        .filter_map(|(n, d)| {
            let max = d.temperatures.iter().map(|t| t.celsius).fold(f64::NAN, f64::max);
            (!max.is_nan()).then_some((n + 1, max))
        })
        .collect();
    miner.push(f("temp_num", json!(temps.len())));
    let nominal: f64 = v.devices.iter().filter_map(|d| d.nominal_hashrate).sum();
    if nominal > 0.0 {
        miner.push(f("total_rateideal", ghs(nominal)));
        miner.push(f("rate_unit", json!("GH")));
    }
    for (i, t) in temps {
        miner.push(f(&format!("temp{i}"), num(t)));
    }
    miner.push(f("Device Hardware%", num(v.hw_error_percent())));
    for (n, d) in asics.iter().enumerate() {
        miner.push(f(&format!("chain_acn{}", n + 1), json!(d.chips.len())));
    }
    for (n, d) in asics.iter().enumerate() {
        miner.push(f(&format!("chain_acs{}", n + 1), json!(chain_acs(d))));
    }
    for (n, d) in asics.iter().enumerate() {
        miner.push(f(&format!("chain_hw{}", n + 1), json!(d.hw_errors)));
    }
    for (n, d) in asics.iter().enumerate() {
        // Bitmain's builds send this one as a string with 2 decimals ("126.12"); so do we,
        // with more decimals for chains under 1 GH/s (emulators) so they do not read as 0.
        let gh = d.hashrate.s5 / 1e9;
        let rate = if gh >= 1.0 { format!("{gh:.2}") } else { format!("{gh:.6}") };
        miner.push(f(&format!("chain_rate{}", n + 1), json!(rate)));
    }
    out.push(miner);
    out.extend(v.devices.iter().enumerate().map(|(i, d)| device_stats(i + 1, d, &elapsed)));
    out
}

/// bmminer's `chain_acs`: one letter per chip, 'o' healthy, 'x' weak, in groups of 8 each
/// preceded by a space (" oooooooo oooxoooo").
fn chain_acs(d: &DeviceView) -> String {
    let weak = d.weak_chips();
    let mut acs = String::new();
    for i in 0..d.chips.len() {
        if i % 8 == 0 {
            acs.push(' ');
        }
        acs.push(if weak.contains(&i) { 'x' } else { 'o' });
    }
    acs
}

fn device_stats(index: usize, d: &DeviceView, elapsed: &Value) -> Fields {
    let mut out = vec![
        f("STATS", json!(index)),
        f("ID", json!(format!("{}{}", dev_key(d), d.id))),
        f("Elapsed", elapsed.clone()),
        f("Calls", json!(0)),
        f("Wait", num(0.0)),
        f("Max", num(0.0)),
        f("Min", num(99999999.0)),
    ];
    for (n, t) in d.temperatures.iter().enumerate() {
        out.push(f(&format!("temp{n}"), num(t.celsius)));
        out.push(f(&format!("temp{n}_sensor"), json!(t.sensor)));
    }
    if !d.chips.is_empty() {
        out.push(f("chain_acn", json!(d.chips.len())));
        out.push(f("chain_acs", json!(chain_acs(d))));
        for c in &d.chips {
            let k = c.index;
            out.push(f(&format!("chip{k}_nonces"), json!(c.nonces)));
            out.push(f(&format!("chip{k}_hw"), json!(c.hw_errors)));
            out.push(f(&format!("chip{k}_mhs"), mhs(c.est_hashrate)));
            if let Some(t) = c.temperature {
                out.push(f(&format!("chip{k}_temp"), num(t)));
            }
            if !c.cores.is_empty() {
                // `core:count` pairs: a driver may list only the cores that answered.
                let nonces: Vec<String> = c.cores.iter().map(|x| format!("{}:{}", x.index, x.nonces)).collect();
                let hw: Vec<String> = c.cores.iter().map(|x| format!("{}:{}", x.index, x.hw_errors)).collect();
                out.push(f(&format!("chip{k}_core_nonces"), json!(nonces.join(" "))));
                out.push(f(&format!("chip{k}_core_hw"), json!(hw.join(" "))));
            }
        }
    }
    out
}

fn config(v: &RunView, level: Level) -> Fields {
    let count = |k: &str| v.devices.iter().filter(|d| d.kind == k).count();
    vec![
        f("ASC Count", json!(count("asic"))),
        f("GPU Count", json!(count("gpu"))),
        f("CPU Count", json!(count("cpu"))),
        f("PGA Count", json!(0)),
        f("Pool Count", json!(v.pools.len())),
        f("Strategy", json!("Failover")),
        f("Log Interval", json!(5)),
        f("Device Code", json!("CPU GPU ASC")),
        f("OS", json!(std::env::consts::OS)),
        f("Hotplug", json!("None")),
        f("Mode", json!(v.mode)),
        f("Privileged", json!(level == Level::Write)),
    ]
}

fn devdetails(i: usize, d: &DeviceView) -> Fields {
    vec![
        f("DEVDETAILS", json!(i)),
        f("Name", json!(d.kind.to_uppercase())),
        f("ID", json!(d.id)),
        f("Driver", json!(format!("hashrig-{}", d.kind))),
        f("Kernel", json!(d.kernel)),
        f("Model", json!(d.name)),
        f("Device Path", json!("")),
    ]
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

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
pub struct ApiServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Bind and serve `view` in a background thread.
    pub fn start(config: ApiConfig, view: SharedView, actions: Arc<dyn Actions>) -> Result<Self, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).map_err(|source| Error::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: config.listen, source })?;
        listener.set_nonblocking(true).map_err(|source| Error::Bind { addr, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cgminer-api".into())
            .spawn(move || accept_loop(listener, config, view, actions, stop2))
            .map_err(|source| Error::Bind { addr, source })?;
        tracing::info!(%addr, "cgminer API listening");
        Ok(ApiServer { addr, stop, thread: Some(thread) })
    }

    /// The address actually bound (port 0 resolves here).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Logs refused connections without letting a flood of them flood the log: the first at
/// once, then at most one line every 10 s with how many were refused meanwhile.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn refused(&mut self, peer: SocketAddr, cap: usize) {
        self.unlogged += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(%peer, refused = self.unlogged, cap, "cgminer API: too many connections, closing new ones");
            self.last = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

fn accept_loop(listener: TcpListener, config: ApiConfig, view: SharedView, actions: Arc<dyn Actions>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut refusals = RefusalLog::default();
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
                    refusals.refused(peer, config.max_connections);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::*;

    fn view() -> RunView {
        RunView {
            mode: "bench".into(),
            elapsed_s: 60.0,
            hashrate: Rates { avg: 2.5e6, s5: 2.4e6, m1: 2.6e6 },
            hashes: 1.5e8,
            devices: vec![DeviceView { id: 0, kind: "cpu".into(), enabled: true, valid_nonces: 99, hw_errors: 1, ..Default::default() }],
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
