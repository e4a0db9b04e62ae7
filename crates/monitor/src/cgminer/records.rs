//! The cgminer API's records (SUMMARY, DEVS, POOLS, STATS, CONFIG, DEVDETAILS, VERSION):
//! field names, order and units as cgminer and the clients that read it expect them.

use serde_json::{Value, json};

use super::{Fields, description};
use crate::access::Level;
use crate::view::{DeviceKind, DeviceView, PoolView, RunView, percent};

/// A finite JSON number (NaN and infinities become 0: JSON has no such numbers).
pub(super) fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { json!(0.0) }
}

/// A rate in MH/s, rounded as cgminer prints it (2 decimals is too coarse for CPUs: keep 3).
pub(super) fn mhs(hs: f64) -> Value {
    num((hs / 1e6 * 1000.0).round() / 1000.0)
}

/// A rate in GH/s, as bmminer and Bitmain's cgminer builds report it (and pyasic reads it);
/// 6 decimals so a CPU's few MH/s do not round to 0.
pub(super) fn ghs(hs: f64) -> Value {
    num((hs / 1e9 * 1e6).round() / 1e6)
}

/// The software record that Bitmain's cgminer builds put in `version` and first in `stats`
/// (`{"CGMiner":"4.9.0","Miner":"1.0.1.3","CompileTime":"..","Type":"Antminer L3+"}`); pyasic's
/// CGMiner backend reads `VERSION[0]["CGMiner"]` as the firmware version. We name ourselves
/// there rather than claim a cgminer version.
pub(super) fn version_record(view: &RunView) -> Fields {
    vec![
        f("CGMiner", json!(description())),
        f("Miner", json!(env!("CARGO_PKG_VERSION"))),
        f("CompileTime", json!("")),
        f("Type", json!(format!("hashrig {}", view.mode).trim_end())),
    ]
}

pub(super) fn f(name: &str, v: Value) -> (String, Value) {
    (name.to_string(), v)
}

/// "sell power" -> "Sell Power": an alternative's name as a field name.
pub(super) fn title_case(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|first| first.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn summary(v: &RunView) -> Fields {
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

pub(super) fn dev_key(d: &DeviceView) -> &'static str {
    match d.kind {
        DeviceKind::Gpu => "GPU",
        DeviceKind::Cpu => "CPU",
        DeviceKind::Asic => "ASC",
    }
}

pub(super) fn dev(d: &DeviceView, v: &RunView) -> Fields {
    let max_temp = d.temperatures.iter().map(|t| t.celsius).fold(f64::NAN, f64::max);
    let minutes = v.elapsed_s / 60.0;
    let mut out = vec![
        f(dev_key(d), json!(d.id)),
        f("Name", json!(d.kind.as_str().to_uppercase())),
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

pub(super) fn pool(p: &PoolView) -> Fields {
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
pub(super) fn stats(v: &RunView) -> Vec<Fields> {
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
pub(super) fn chain_acs(d: &DeviceView) -> String {
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

pub(super) fn device_stats(index: usize, d: &DeviceView, elapsed: &Value) -> Fields {
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

pub(super) fn config(v: &RunView, level: Level) -> Fields {
    let count = |k: DeviceKind| v.devices.iter().filter(|d| d.kind == k).count();
    vec![
        f("ASC Count", json!(count(DeviceKind::Asic))),
        f("GPU Count", json!(count(DeviceKind::Gpu))),
        f("CPU Count", json!(count(DeviceKind::Cpu))),
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

pub(super) fn devdetails(i: usize, d: &DeviceView) -> Fields {
    vec![
        f("DEVDETAILS", json!(i)),
        f("Name", json!(d.kind.as_str().to_uppercase())),
        f("ID", json!(d.id)),
        f("Driver", json!(format!("hashrig-{}", d.kind))),
        f("Kernel", json!(d.kernel)),
        f("Model", json!(d.name)),
        f("Device Path", json!("")),
    ]
}
