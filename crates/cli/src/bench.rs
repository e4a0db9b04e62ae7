//! `hashrig bench`: a synthetic job on one backend for a while; hashrate (with its 95 %
//! interval where it is estimated), power and its source, J/TH, hardware errors, economics.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use hashrig_engine::{DiscardShares, Engine, EngineConfig, HashCount, Stats};
use hashrig_power::{PowerChoice, PowerReport};
use hashrig_work::Job;
use hashrig_work::econ::{BLOCK_SUBSIDY_BTC, Decision, EconInputs, Economics, economics, parse_amount};
use hashrig_work::target::target_from_difficulty;

use crate::backend::{self, BackendSpec, CpuOptions};
use crate::{bad_input, fmt_rate};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub device: backend::DeviceArgs,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[command(flatten)]
    pub power: crate::metering::PowerArgs,
    /// Electricity price, USD per kWh (economics; needs --hashprice, or --btc-price and
    /// --difficulty).
    #[arg(long)]
    pub power_price: Option<f64>,
    /// Bitcoin price, USD (economics; needs --power-price and --difficulty).
    #[arg(long, requires = "power_price")]
    pub btc_price: Option<f64>,
    /// Network difficulty for the economics (the bench job is synthetic and has none).
    #[arg(long)]
    pub difficulty: Option<f64>,
    /// Average fees per block, BTC (economics; default 0).
    #[arg(long, default_value_t = 0.0)]
    pub fees: f64,
    /// Hashprice, USD per PH/s per day (economics, instead of --btc-price and --difficulty).
    #[arg(long, value_name = "USD/PH/day", value_parser = parse_amount, allow_negative_numbers = true, conflicts_with = "btc_price")]
    pub hashprice: Option<f64>,
    /// The alternative: what the machine rents for, USD per hour (its power still paid by you).
    #[arg(long, value_name = "USD/hour", value_parser = parse_amount, allow_negative_numbers = true)]
    pub rent: Option<f64>,
    /// The alternative: what the power sells for, USD per kWh, with the machine off.
    #[arg(long, value_name = "USD/kWh", value_parser = parse_amount, allow_negative_numbers = true)]
    pub power_sale: Option<f64>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub monitor: crate::monitoring::MonitorArgs,
}

/// The bench result, as `--json` prints it.
#[derive(Debug, serde::Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub devices: Vec<String>,
    pub kernel: String,
    /// CPU threads (null for other backends).
    pub threads: Option<usize>,
    pub hashes: u64,
    pub seconds: f64,
    /// Hashes per second.
    pub hashrate: f64,
    /// 95 % interval [low, high] when the hashrate is estimated; null when counted exactly.
    pub hashrate_ci95: Option<[f64; 2]>,
    /// Average watts over the run; null when unknown.
    pub power_w: Option<f64>,
    /// Where the power figure came from, or "unknown".
    pub power_source: String,
    pub energy_j: Option<f64>,
    pub j_per_th: Option<f64>,
    pub hw_errors: u64,
    /// Shares (difficulty 1/1024) found and verified along the way.
    pub shares: u64,
    pub economics: Option<Economics>,
    /// The figures of `hashrig econ --json` for the measured rate and power (profit, break-even
    /// power price and hashprice, the alternative, the best use); null without prices or power.
    pub decision: Option<Decision>,
    /// Why power counters were not used, when none was.
    pub power_notes: Vec<String>,
    pub stats: Stats,
    /// BM13xx chains (asic/emu backends): per-chip counts, duplicates, late nonces, CRC errors,
    /// the driver's own estimate with its interval, and for an emulator its true hashrate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub asic_chains: Vec<hashrig_hasher_asic::ChainSnapshot>,
    /// GPU backends: each adapter benched and its type ("discrete", "integrated", "cpu" for a
    /// software adapter such as lavapipe, which is not a GPU).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpu_adapters: Vec<GpuAdapter>,
}

/// One adapter a GPU bench ran on.
#[derive(Debug, serde::Serialize)]
pub struct GpuAdapter {
    pub name: String,
    pub backend: String,
    pub adapter_type: String,
    pub software: bool,
    pub pci_bus_id: String,
}

/// Share difficulty of the synthetic job: ~4 M hashes per share, so verification is exercised
/// a few times a second on a CPU and costs nothing measurable.
const BENCH_SHARE_DIFFICULTY: f64 = 1.0 / 1024.0;

struct Plan {
    spec: BackendSpec,
    cpu: CpuOptions,
    duration: Duration,
    power: PowerChoice,
    econ: Option<(f64, f64, f64)>,
    /// The live figures' prices (with `difficulty` when the hashprice comes from it).
    prices: Option<crate::live_econ::Prices>,
    difficulty: Option<f64>,
}

fn plan(a: &BenchArgs) -> anyhow::Result<Plan> {
    let (spec, cpu) = a.device.resolve()?;
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 7.0 * 86_400.0) {
        return Err(bad_input(format!("--duration {} must be a number of seconds above 0 (at most a week)", a.duration)));
    }
    let econ = match (a.power_price, a.btc_price) {
        (Some(pp), Some(bp)) => {
            let Some(d) = a.difficulty else {
                return Err(bad_input("economics need --difficulty: the bench job is synthetic and has no network difficulty"));
            };
            for (name, v) in [("--power-price", pp), ("--btc-price", bp), ("--fees", a.fees)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(bad_input(format!("{name} {v} must be a number >= 0")));
                }
            }
            if !(d.is_finite() && d > 0.0) {
                return Err(bad_input(format!("--difficulty {d} must be a number above 0")));
            }
            Some((pp, bp, d))
        }
        _ => None,
    };
    let prices = crate::live_econ::Prices::from_flags(a.power_price, a.hashprice, a.btc_price, a.fees, a.rent, a.power_sale)?;
    let power = a.power.choice(matches!(spec, BackendSpec::Gpu(_)), "--watts", "--power-cmd")?;
    Ok(Plan { spec, cpu, duration: Duration::from_secs_f64(a.duration), power, econ, prices, difficulty: a.difficulty })
}

pub fn run(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(a)?;
    let report = bench(&plan, a.fees, &a.monitor)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_summary(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(plan: &Plan, fees: f64, monitor: &crate::monitoring::MonitorArgs) -> anyhow::Result<BenchReport> {
    let mut mon = crate::monitoring::Monitoring::start(monitor, hashrig_monitor::RunMode::Bench, None)?;
    let hashers = backend::open(&plan.spec, &plan.cpu)?;
    let infos: Vec<_> = hashers.iter().map(|h| h.info().clone()).collect();
    let kernel = infos.iter().map(|i| i.kernel.clone()).collect::<Vec<_>>().join(",");
    let threads = plan.spec.is_cpu().then(|| plan.cpu.threads.unwrap_or_else(hashrig_hasher_cpu::available_threads));

    // The adapters the GPU backend opened (the same selection, listed again): their types for
    // the report, and their PCI bus ids so NVML measures those boards and no other.
    let mut power_choice = plan.power.clone();
    let gpu_adapters = match &plan.spec {
        BackendSpec::Gpu(sel) => hashrig_hasher_gpu::resolve(sel)?,
        _ => Vec::new(),
    };
    if let Some(ids) = hashrig_hasher_gpu::power::nvml_bus_ids(&gpu_adapters) {
        power_choice.gpu_pci_bus_ids = ids;
    }
    for a in gpu_adapters.iter().filter(|a| a.is_software()) {
        eprintln!("warning: {} is a {}: its rate is not a GPU's", a.name, hashrig_hasher_gpu::SOFTWARE_LABEL);
    }

    // Power: what the user named must work; an auto-detected counter that fails is only a note.
    let mut meter = crate::metering::RunMeter::start(&power_choice)?;

    let engine = Engine::start(hashers, DiscardShares, EngineConfig::default())?;
    mon.attach_engine(&engine);
    let share_target = target_from_difficulty(BENCH_SHARE_DIFFICULTY).expect("a valid constant difficulty");
    engine.set_job(Job::synthetic("bench", 1, share_target));

    let live = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let tick = Duration::from_millis(500);
    while started.elapsed() < plan.duration && !mon.quit_requested() {
        let left = plan.duration.saturating_sub(started.elapsed());
        std::thread::sleep(tick.min(left));
        let now = Instant::now();
        meter.poll_due(now);
        mon.extras.power = meter.live();
        if let Some(p) = &plan.prices {
            let elapsed = engine.elapsed().as_secs_f64();
            let rate = if elapsed > 0.0 { engine.hashes() as f64 / elapsed } else { 0.0 };
            let watts = mon.extras.power.as_ref().map(|p| p.watts);
            mon.extras.economics = p.figures(rate, watts, plan.difficulty).map(|f| f.view);
        }
        mon.update(&engine.stats());
        if live {
            let hashes = engine.hashes();
            let dt = now.duration_since(last.0).as_secs_f64();
            let rate_now = if dt > 0.0 { (hashes - last.1) as f64 / dt } else { 0.0 };
            let elapsed = engine.elapsed().as_secs_f64();
            let avg = if elapsed > 0.0 { hashes as f64 / elapsed } else { 0.0 };
            let watts = meter.recent_watts().map(|w| format!(", {w:.1} W")).unwrap_or_default();
            eprint!("\r\x1b[2K{} now, {} avg, {hashes} hashes, {elapsed:.1} s{watts}", fmt_rate(rate_now), fmt_rate(avg));
            let _ = std::io::stderr().flush();
            last = (now, hashes);
        }
    }
    let stats = engine.stop();
    if live {
        eprint!("\r\x1b[2K");
    }
    let (power, notes): (Option<PowerReport>, Vec<String>) = meter.finish();

    let estimated = infos.iter().any(|i| matches!(i.hash_count, HashCount::Estimated { .. }));
    let hashrate_ci95 = if estimated {
        let mut lo = 0.0;
        let mut hi = 0.0;
        for d in &stats.devices {
            let [l, h] = d.hashrate_ci95.unwrap_or([d.hashrate, d.hashrate]);
            lo += l;
            hi += h;
        }
        Some([lo, hi])
    } else {
        None
    };
    let power_w = power.as_ref().map(|p| p.watts);
    let j_per_th = power_w.and_then(|w| hashrig_hasher::estimate::j_per_th(w, stats.hashrate));
    let econ = match plan.econ {
        Some((power_price, btc_price, difficulty)) => Some(economics(&EconInputs {
            hashrate: stats.hashrate,
            watts: power_w,
            difficulty,
            btc_price_usd: btc_price,
            power_price_usd_kwh: power_price,
            fees_btc: fees,
            subsidy_btc: BLOCK_SUBSIDY_BTC,
        })?),
        None => None,
    };
    let live = plan.prices.as_ref().and_then(|p| p.figures(stats.hashrate, power_w, plan.difficulty));
    mon.extras.power = power.as_ref().map(crate::monitoring::power_view);
    mon.extras.economics = match &live {
        Some(f) => Some(f.view.clone()),
        None => econ.as_ref().map(crate::monitoring::economics_view),
    };
    mon.finish(&stats)?;
    // Each chain's telemetry, as the engine sampled it with its final stats.
    let asic_chains = stats.devices.iter().filter_map(|d| d.health.as_ref()?.chain().cloned()).collect();
    Ok(BenchReport {
        backend: plan.spec.to_string(),
        devices: infos.iter().map(|i| i.name.clone()).collect(),
        kernel,
        threads,
        hashes: stats.hashes,
        seconds: stats.elapsed_s,
        hashrate: stats.hashrate,
        hashrate_ci95,
        power_w,
        power_source: power.as_ref().map_or_else(|| "unknown".to_owned(), |p| p.source.clone()),
        energy_j: power.as_ref().map(|p| p.joules),
        j_per_th,
        hw_errors: stats.hw_errors,
        shares: stats.shares,
        economics: econ,
        decision: live.and_then(|f| f.decision),
        power_notes: if power.is_some() { Vec::new() } else { notes },
        stats,
        asic_chains,
        gpu_adapters: gpu_adapters
            .iter()
            .map(|a| GpuAdapter {
                name: a.name.clone(),
                backend: a.backend.clone(),
                adapter_type: a.device_type.clone(),
                software: a.is_software(),
                pci_bus_id: a.pci_bus_id.clone(),
            })
            .collect(),
    })
}

fn print_summary(r: &BenchReport) -> std::io::Result<()> {
    crate::outln!("backend     {} ({})", r.backend, r.devices.join("; "))?;
    for a in r.gpu_adapters.iter().filter(|a| a.software) {
        crate::outln!("WARNING     {} is a {}", a.name, hashrig_hasher_gpu::SOFTWARE_LABEL)?;
    }
    match r.threads {
        Some(t) => crate::outln!("kernel      {} on {t} thread{}", r.kernel, if t == 1 { "" } else { "s" })?,
        None => crate::outln!("kernel      {}", r.kernel)?,
    }
    crate::outln!("hashes      {}", r.hashes)?;
    crate::outln!("seconds     {:.2}", r.seconds)?;
    match r.hashrate_ci95 {
        Some([lo, hi]) => crate::outln!("hashrate    {} (95 % CI {} .. {}, estimated from returned nonces)", fmt_rate(r.hashrate), fmt_rate(lo), fmt_rate(hi))?,
        None => crate::outln!("hashrate    {} ({:.0} H/s, counted exactly)", fmt_rate(r.hashrate), r.hashrate)?,
    }
    match r.power_w {
        Some(w) => crate::outln!("power       {w:.1} W ({})", r.power_source)?,
        None => {
            crate::outln!("power       unknown (no energy counter readable; give --watts or --power-cmd)")?;
            for n in &r.power_notes {
                crate::outln!("              {n}")?;
            }
        }
    }
    match r.j_per_th {
        Some(j) => crate::outln!("efficiency  {j:.0} J/TH")?,
        None => crate::outln!("efficiency  unknown J/TH")?,
    }
    crate::outln!("hw errors   {}", r.hw_errors)?;
    crate::outln!("shares      {} verified (difficulty 1/1024)", r.shares)?;
    if let Some(e) = &r.economics {
        crate::outln!("economics   at difficulty {:.4e}, {:.0} USD/BTC, {} USD/kWh, subsidy {} BTC + fees {} BTC:", e.difficulty, e.btc_price_usd, e.power_price_usd_kwh, e.subsidy_btc, e.fees_btc)?;
        crate::outln!("  revenue     {} USD/day ({:.3e} BTC/day)", money(e.revenue_usd_day), e.btc_per_day)?;
        match (e.cost_usd_day, e.break_even_usd_kwh) {
            (Some(c), Some(b)) => {
                crate::outln!("  power cost  {} USD/day", money(c))?;
                crate::outln!("  break-even  {} USD/kWh", money(b))?;
            }
            _ => crate::outln!("  power cost  unknown (power unknown)")?,
        }
        crate::outln!("  hashprice   {:.2} USD/PH/day", e.hashprice_usd_ph_day)?;
    }
    if let Some(d) = &r.decision {
        crate::outln!("decision    at {:.2} USD/PH/day and {} USD/kWh, as `hashrig econ` works it out:", d.hashprice_usd_ph_day, d.power_price_usd_kwh)?;
        crate::outln!("  mining      {} USD/day revenue, {} power, {} profit", money(d.mining.revenue_usd_day), money(d.mining.power_cost_usd_day), money(d.mining.profit_usd_day))?;
        crate::outln!("  break-even  {} USD/kWh; hashprice floor {} USD/PH/day", money(d.break_even_power_price_usd_kwh), money(d.break_even_hashprice_usd_ph_day))?;
        for (name, f) in [("rent", &d.rent), ("sell power", &d.sell_power)] {
            if let Some(f) = f {
                crate::outln!("  {name:<11} {} USD/day, {} after power", money(f.revenue_usd_day), money(f.profit_usd_day))?;
            }
        }
        crate::outln!("  best        {}, by {} USD/day over {}", d.best.label(), money(d.best_by_usd_day), d.runner_up.label())?;
    }
    Ok(())
}

/// Money with four significant digits, however small (a CPU earns millionths of a dollar a day).
fn money(x: f64) -> String {
    if x == 0.0 || (0.01..1e9).contains(&x.abs()) { format!("{x:.4}") } else { format!("{x:.4e}") }
}
