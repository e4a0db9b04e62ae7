//! `hashrig econ`: the figures a miner decides by, for a machine described on the command line
//! or read from a saved `hashrig bench --json`. Hashes nothing.
//!
//! Revenue comes from a hashprice (USD per PH/s per day) or from the network difficulty and the
//! coin price; the power price gives the cost; a rental price per hour and a price the power
//! sells for are the alternatives. The math is `hashrig_work::econ`; this module turns flags
//! into its inputs (refusing, with exit 2, what does not add up) and prints the result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use hashrig_work::econ::{BLOCK_SUBSIDY_BTC, Decision, DecisionInputs, Hashrate, IMPLAUSIBLE_J_PER_TH, Use, decide, hashprice_from_network, parse_amount, parse_hashrate};

use crate::{bad_input, fmt_rate};

#[derive(Debug, Args)]
pub struct EconArgs {
    /// Hashrate with an SI prefix: 255T is 255 TH/s (k, M, G, T, P, E, case as written; an
    /// optional H or H/s may follow). A bare number is H/s.
    #[arg(long, value_name = "RATE", value_parser = parse_hashrate, allow_negative_numbers = true)]
    pub hashrate: Option<Hashrate>,
    /// Power draw, plain watts (5304, not 5.3k).
    #[arg(long, value_name = "W", value_parser = parse_amount, allow_negative_numbers = true)]
    pub watts: Option<f64>,
    /// Efficiency, J/TH. Alone: figures per TH/s. With --hashrate the watts follow, with
    /// --watts the hashrate follows.
    #[arg(long, value_name = "J/TH", value_parser = parse_amount, allow_negative_numbers = true)]
    pub efficiency: Option<f64>,
    /// A saved `hashrig bench --json`: its hashrate and power (--watts or --efficiency set the
    /// power instead, and must when the bench has none).
    #[arg(long, value_name = "BENCH_JSON")]
    pub from: Option<PathBuf>,
    /// Hashprice, USD per PH/s per day (instead of --difficulty and --btc-price).
    #[arg(long, value_name = "USD/PH/day", value_parser = parse_amount, allow_negative_numbers = true)]
    pub hashprice: Option<f64>,
    /// Network difficulty (with --btc-price, instead of --hashprice).
    #[arg(long, value_name = "D", value_parser = parse_amount, allow_negative_numbers = true)]
    pub difficulty: Option<f64>,
    /// Bitcoin price, USD (with --difficulty).
    #[arg(long, value_name = "USD", value_parser = parse_amount, allow_negative_numbers = true)]
    pub btc_price: Option<f64>,
    /// Average fees per block, BTC, added to the 3.125 BTC subsidy (with --difficulty; default 0).
    #[arg(long, value_name = "BTC", value_parser = parse_amount, allow_negative_numbers = true)]
    pub fees_btc: Option<f64>,
    /// Electricity price, USD per kWh.
    #[arg(long, value_name = "USD/kWh", value_parser = parse_amount, allow_negative_numbers = true)]
    pub power_price: Option<f64>,
    /// The alternative: what the machine rents for, USD per hour (its power still paid by you).
    #[arg(long, value_name = "USD/hour", value_parser = parse_amount, allow_negative_numbers = true)]
    pub rent: Option<f64>,
    /// The alternative: what the power sells for, USD per kWh, with the machine off.
    #[arg(long, value_name = "USD/kWh", value_parser = parse_amount, allow_negative_numbers = true)]
    pub power_sale: Option<f64>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// The machine the figures are for.
#[derive(Debug, Clone, PartialEq)]
struct Machine {
    hashrate_hs: f64,
    power_w: f64,
    /// Only an efficiency was given: the figures are for 1 TH/s.
    per_ths: bool,
    /// Where the hashrate and power came from, for people.
    source: String,
}

/// Difficulty, coin price and block reward, when the hashprice was worked out from them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Network {
    pub difficulty: f64,
    pub btc_price_usd: f64,
    pub subsidy_btc: f64,
    pub fees_btc: f64,
}

/// What `hashrig econ --json` prints.
#[derive(Debug, serde::Serialize)]
pub struct EconReport {
    /// True when only an efficiency was given and every figure is per TH/s.
    pub per_ths: bool,
    /// Where the hashrate and power came from.
    pub machine_source: String,
    /// "given" (--hashprice) or "network" (--difficulty and --btc-price).
    pub hashprice_source: &'static str,
    /// The network figures behind the hashprice (null when it was given).
    pub network: Option<Network>,
    #[serde(flatten)]
    pub decision: Decision,
}

pub fn run(a: &EconArgs) -> anyhow::Result<ExitCode> {
    let report = report(a)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_summary(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Validate the flags and compute; every refusal is bad input (exit 2).
pub fn report(a: &EconArgs) -> anyhow::Result<EconReport> {
    let machine = machine(a)?;
    let (hashprice, network) = hashprice(a)?;
    let Some(power_price) = a.power_price else {
        return Err(bad_input("no power price: give --power-price USD/kWh (what the machine's electricity costs)"));
    };
    let decision = decide(&DecisionInputs {
        hashrate_hs: machine.hashrate_hs,
        power_w: machine.power_w,
        hashprice_usd_ph_day: hashprice,
        power_price_usd_kwh: power_price,
        rent_usd_hour: a.rent,
        power_sale_usd_kwh: a.power_sale,
    })
    .map_err(|e| bad_input(e.to_string()))?;
    Ok(EconReport {
        per_ths: machine.per_ths,
        machine_source: machine.source,
        hashprice_source: if network.is_some() { "network" } else { "given" },
        network,
        decision,
    })
}

fn positive(flag: &str, unit: &str, v: f64) -> anyhow::Result<f64> {
    if v > 0.0 { Ok(v) } else { Err(bad_input(format!("{flag} must be above zero {unit}, got {v}"))) }
}

fn machine(a: &EconArgs) -> anyhow::Result<Machine> {
    let watts = a.watts.map(|w| positive("--watts", "W", w)).transpose()?;
    let eff = a.efficiency.map(|e| positive("--efficiency", "J/TH", e)).transpose()?;
    if let Some(path) = &a.from {
        if a.hashrate.is_some() {
            return Err(bad_input("--from and --hashrate both give the hashrate: leave out one of them"));
        }
        if watts.is_some() && eff.is_some() {
            return Err(bad_input("--watts and --efficiency both give the power for --from: leave out one of them"));
        }
        return from_bench(path, watts, eff);
    }
    match (a.hashrate, watts, eff) {
        (Some(h), Some(w), Some(e)) => Err(bad_input(format!(
            "--efficiency with both --hashrate and --watts contradicts itself ({} at {w} W is already {} J/TH, not {e}): give two of the three",
            fmt_rate(h.hs),
            hashrig_hasher::estimate::j_per_th(w, h.hs).map_or_else(|| "?".into(), sig)
        ))),
        (Some(h), Some(w), None) => {
            let j_per_th = hashrig_hasher::estimate::j_per_th(w, h.hs).unwrap_or(0.0);
            if !h.unit_given && j_per_th > IMPLAUSIBLE_J_PER_TH {
                return Err(bad_input(format!(
                    "--hashrate {} is {} H/s, which at {w} W would be {j_per_th:.2e} J/TH: the hashrate probably lacks its unit suffix \
                     (e.g. 255T is 255 TH/s; write {}H if you do mean H/s)",
                    h.hs, h.hs, h.hs
                )));
            }
            Ok(Machine { hashrate_hs: h.hs, power_w: w, per_ths: false, source: "declared: --hashrate, --watts".into() })
        }
        (Some(h), None, Some(e)) => {
            Ok(Machine { hashrate_hs: h.hs, power_w: e * h.hs / 1e12, per_ths: false, source: "declared: --hashrate, --efficiency".into() })
        }
        (None, Some(w), Some(e)) => Ok(Machine { hashrate_hs: w / e * 1e12, power_w: w, per_ths: false, source: "declared: --watts, --efficiency".into() }),
        (None, None, Some(e)) => Ok(Machine { hashrate_hs: 1e12, power_w: e, per_ths: true, source: "declared: --efficiency".into() }),
        (Some(_), None, None) => Err(bad_input("--hashrate needs the power too: give --watts W or --efficiency J/TH")),
        (None, Some(_), None) => Err(bad_input("--watts needs the hashrate too: give --hashrate (e.g. 255T) or --efficiency J/TH")),
        (None, None, None) => Err(bad_input(
            "no machine: give --hashrate and --watts (e.g. --hashrate 255T --watts 5304), --efficiency J/TH (figures per TH/s), or --from a saved `hashrig bench --json`",
        )),
    }
}

/// Hashrate and power from a saved `hashrig bench --json`; `watts` or `eff` replace its power.
fn from_bench(path: &Path, watts: Option<f64>, eff: Option<f64>) -> anyhow::Result<Machine> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| bad_input(format!("--from {shown}: cannot read it: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad_input(format!("--from {shown}: not JSON ({e}); save one with `hashrig bench --json > bench.json`")))?;
    let hashrate = v.get("hashrate").and_then(serde_json::Value::as_f64).filter(|h| h.is_finite() && *h > 0.0).ok_or_else(|| {
        bad_input(format!("--from {shown}: no `hashrate` above zero in it; is it the output of `hashrig bench --json`?"))
    })?;
    let bench_w = v.get("power_w").and_then(serde_json::Value::as_f64).filter(|w| w.is_finite() && *w > 0.0);
    let backend = v.get("backend").and_then(serde_json::Value::as_str).unwrap_or("unknown backend");
    let what = format!("bench {shown} ({backend}, {})", fmt_rate(hashrate));
    let (power_w, source) = match (watts, eff, bench_w) {
        (Some(w), _, _) => (w, format!("{what}; power {w} W from --watts")),
        (None, Some(e), _) => (e * hashrate / 1e12, format!("{what}; power from --efficiency {e} J/TH")),
        (None, None, Some(w)) => {
            let src = v.get("power_source").and_then(serde_json::Value::as_str).unwrap_or("unnamed");
            (w, format!("{what}; power {w:.1} W ({src})"))
        }
        (None, None, None) => {
            return Err(bad_input(format!(
                "--from {shown}: the bench has no power figure (it ran without a meter); give --watts W or --efficiency J/TH"
            )));
        }
    };
    Ok(Machine { hashrate_hs: hashrate, power_w, per_ths: false, source })
}

fn hashprice(a: &EconArgs) -> anyhow::Result<(f64, Option<Network>)> {
    let network_flags = a.difficulty.is_some() || a.btc_price.is_some() || a.fees_btc.is_some();
    if let Some(hp) = a.hashprice {
        if network_flags {
            return Err(bad_input(
                "--hashprice and --difficulty/--btc-price/--fees-btc both set what the hashes earn: give --hashprice, or --difficulty with --btc-price",
            ));
        }
        return Ok((hp, None));
    }
    match (a.difficulty, a.btc_price) {
        (Some(d), Some(p)) => {
            if d <= 0.0 {
                return Err(bad_input(format!("--difficulty must be above zero, got {d}")));
            }
            let fees = a.fees_btc.unwrap_or(0.0);
            let hp = hashprice_from_network(d, p, BLOCK_SUBSIDY_BTC, fees).map_err(|e| bad_input(e.to_string()))?;
            Ok((hp, Some(Network { difficulty: d, btc_price_usd: p, subsidy_btc: BLOCK_SUBSIDY_BTC, fees_btc: fees })))
        }
        (Some(_), None) => Err(bad_input("--difficulty needs --btc-price USD too (or give --hashprice USD/PH/day instead)")),
        (None, Some(_)) => Err(bad_input("--btc-price needs --difficulty too (or give --hashprice USD/PH/day instead)")),
        (None, None) if a.fees_btc.is_some() => Err(bad_input("--fees-btc needs --difficulty and --btc-price")),
        (None, None) => Err(bad_input("no revenue figure: give --hashprice USD/PH/day, or --difficulty D and --btc-price USD")),
    }
}

/// Four significant figures, however small or large ("0.08333", "9.690", "1.660e-5").
fn sig(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || !a.is_finite() {
        return format!("{x}");
    }
    if (1e-4..1e9).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.3e}")
    }
}

fn print_summary(r: &EconReport) -> std::io::Result<()> {
    let d = &r.decision;
    let basis = if r.per_ths { "; every figure below is per TH/s" } else { "" };
    crate::outln!(
        "machine      {} at {} W, {} J/TH ({}{basis})",
        if r.per_ths { "1 TH/s".to_owned() } else { fmt_rate(d.hashrate_hs) },
        sig(d.power_w),
        sig(d.j_per_th),
        r.machine_source
    )?;
    crate::outln!("energy       {} kWh/day", sig(d.energy_kwh_day))?;
    match &r.network {
        Some(n) => crate::outln!(
            "hashprice    {} USD/PH/day (difficulty {:.4e}, {} USD/BTC, {} BTC subsidy + {} BTC fees per block)",
            sig(d.hashprice_usd_ph_day),
            n.difficulty,
            n.btc_price_usd,
            n.subsidy_btc,
            n.fees_btc
        )?,
        None => crate::outln!("hashprice    {} USD/PH/day (--hashprice)", d.hashprice_usd_ph_day)?,
    }
    crate::outln!("power price  {} USD/kWh", d.power_price_usd_kwh)?;
    let m = &d.mining;
    crate::outln!(
        "mining       revenue {} USD/day - power {} USD/day = profit {} USD/day",
        sig(m.revenue_usd_day),
        sig(m.power_cost_usd_day),
        sig(m.profit_usd_day)
    )?;
    crate::outln!("             a kWh hashed earns {} USD/kWh, {} USD/kWh after its price", sig(m.revenue_usd_kwh), sig(m.profit_usd_kwh))?;
    crate::outln!("break-even   power price {} USD/kWh: mining pays below it", sig(d.break_even_power_price_usd_kwh))?;
    crate::outln!(
        "             hashprice {} USD/PH/day: at {} USD/kWh mining stops paying below it",
        sig(d.break_even_hashprice_usd_ph_day),
        d.power_price_usd_kwh
    )?;
    if let (Some(rent), Some(f)) = (d.rent_usd_hour, &d.rent) {
        crate::outln!(
            "rent         {rent} USD/hour = {} USD/day ({} USD/kWh) - power {} USD/day = profit {} USD/day",
            sig(f.revenue_usd_day),
            sig(f.revenue_usd_kwh),
            sig(f.power_cost_usd_day),
            sig(f.profit_usd_day)
        )?;
    }
    if let (Some(sale), Some(f)) = (d.power_sale_usd_kwh, &d.sell_power) {
        crate::outln!(
            "sell power   {sale} USD/kWh x {} kWh/day = {} USD/day - power {} USD/day = profit {} USD/day",
            sig(d.energy_kwh_day),
            sig(f.revenue_usd_day),
            sig(f.power_cost_usd_day),
            sig(f.profit_usd_day)
        )?;
    }
    let best = match d.best {
        Use::Off => "switch off (every use loses money)".to_owned(),
        u => u.label().to_owned(),
    };
    crate::outln!("best         {best}, by {} USD/day over {}", sig(d.best_by_usd_day), d.runner_up.label())?;
    let fee = if r.network.is_some() { "no pool fee" } else { "pool fee only as the hashprice given has it" };
    crate::outln!("note         expected values, no luck; {fee}; every use draws the same power, bought at the power price")?;
    Ok(())
}
